"""The browser review's access token: when ``mskmorph review`` binds beyond loopback, every HTTP
request and the websocket must carry the token the command printed once in its URL.

The first request carries it in the query (``?token=...``, the printed URL); the answer sets it as
an HTTP-only, same-site cookie, which the browser then sends with every further request of the
page, the websocket's handshake included. A request with neither is refused (403) before it
reaches trame; nothing else is served.
"""
from __future__ import annotations

import secrets

COOKIE = "mskmorph_review_token"
REFUSED = "mskmorph review: this server needs its access token (open the URL the command printed)"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _same(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def token_middleware(token: str):
    """An aiohttp middleware refusing any request that carries neither ``token`` (query) nor its
    cookie."""
    from aiohttp import web

    @web.middleware
    async def check_token(request, handler):
        in_query = _same(request.query.get("token", ""), token)
        in_cookie = _same(request.cookies.get(COOKIE, ""), token)
        if not (in_query or in_cookie):
            raise web.HTTPForbidden(text=REFUSED)
        response = await handler(request)
        if in_query and not in_cookie and not getattr(response, "prepared", False):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check_token


def protect(wslink_server, token: str) -> None:
    """Put the token check in front of every route of trame's aiohttp server (called from
    trame's ``on_server_bind``, before the server starts)."""
    wslink_server.app.middlewares.insert(0, token_middleware(token))
