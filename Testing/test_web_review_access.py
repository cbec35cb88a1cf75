"""``mskmorph review`` bound beyond loopback: it prints its URL with an access token once, and
every request without the token (HTTP or websocket) is refused with 403; with the printed URL
the page works in headless Chromium (the token travels as a same-site cookie). With the token it
serves only its page: not the inputs, nor any other file."""
from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import SAMPLE_DATA

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("trame_slicer")
from browser import CHROMIUM, browser_page, review_server, status  # noqa: E402

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/setup installs it)", allow_module_level=True)


def http_status(url) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def websocket_status(url, cookie=None) -> int:
    import asyncio

    import aiohttp

    async def connect():
        async with aiohttp.ClientSession(cookies=cookie or {}) as session:
            try:
                async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_receive=10)):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    return asyncio.run(connect())


def test_beyond_loopback_every_request_needs_the_printed_token(tmp_path):
    from MSKCommonLib import webreview

    sample = SAMPLE_DATA / "SpinePhantom_AP.png"
    with review_server(sample, "--host", "0.0.0.0", "--out", tmp_path / "out") as (url, _):
        # the URL names the machine (a browser elsewhere cannot open 0.0.0.0)
        m = re.fullmatch(r"http://" + re.escape(webreview.url_host("0.0.0.0")) + r":(\d+)/\?token=([A-Za-z0-9_-]{20,})", url)
        assert m and "0.0.0.0" not in url, url
        assert webreview.url_host("0.0.0.0") in (socket.getfqdn(), socket.gethostname())
        port, token = m.groups()
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/index.html", "/index.html?token=wrong" + token[5:], "/ws"):
            assert http_status(base + path) == 403, path
        assert websocket_status(f"ws://127.0.0.1:{port}/ws") == 403
        assert websocket_status(f"ws://127.0.0.1:{port}/ws", {webreview.COOKIE: "not-" + token}) == 403
        assert http_status(f"{base}/?token={token}") == 200
        # with the token it serves its page, never the inputs or other files
        for path in (f"/{sample.name}", f"/{sample}", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"):
            assert http_status(f"{base}{path}?token={token}") == 404, path
        assert websocket_status(f"ws://127.0.0.1:{port}/ws", {webreview.COOKIE: token}) == 101
        with browser_page(playwright, f"{base}/?token={token}") as page:  # the printed URL, reached here
            assert status(page, sample.name) == "new"
