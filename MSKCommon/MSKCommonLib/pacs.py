"""``mskmorph pacs cobb|knee|back``: measure films from a PACS and store the results back in it.

    mskmorph pacs cobb --url https://pacs.example.org/dicom-web --study 1.2.3... [--out DIR]
    mskmorph pacs knee --url URL --patient-id 12345 --date 20261201-20261202 --modality DX

DICOMweb (the API that Orthanc, dcm4chee, Google Healthcare, DICOMcloud and most hospital
archives serve): QIDO-RS finds the series (a study, or a patient, date range and modality),
WADO-RS downloads each image, the module's own command measures them with ``--dicom`` (the same
pipeline, review layer and files as ``mskmorph cobb ... --dicom``), and STOW-RS stores each
film's SR (and Cobb SEG) back into the film's study. A progress bar, then one line per film and
a summary; exit status 0 when every film was measured and stored, 1 when some failed, 2 when the
PACS could not be used at all (unreachable, credentials refused, TLS), with one line saying why.

Credentials never appear on the command line or in any output: the user name and password come
from the environment (``MSKMORPH_PACS_USERNAME``, ``MSKMORPH_PACS_PASSWORD``) or from a config
file (``--config FILE``, default ``~/.config/mskmorph/pacs.ini`` when it exists)::

    [pacs]
    url = https://pacs.example.org/dicom-web
    username = mskmorph
    password = ...
    ca_bundle = /etc/ssl/certs/hospital-ca.pem

HTTPS is verified against the system's certificate store, or ``--ca-bundle`` / ``ca_bundle``
(the hospital's own CA). ``MSKMORPH_PACS_TOKEN`` (or ``token``) sends a bearer token instead of a
password.
"""
from __future__ import annotations

import argparse
import configparser
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from .modules import MODULES

DEFAULT_CONFIG = Path("~/.config/mskmorph/pacs.ini").expanduser()
NOT_FILMS = ("SR", "SEG", "PR", "KO", "RTSTRUCT", "REG", "DOC")  # modalities that are not films
# module options of the module's own command that the pacs command does not take
_OWN = {"-h", "--help", "--out", "--dicom", "--on-existing", "--patient-name", "--patient-id", "--study-uid",
        "--scene"}


class PacsError(RuntimeError):
    """The PACS could not be used (the message says why, one line, without credentials)."""


def _subject(parser) -> str:
    return parser.prog.split()[-1]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    key = _subject(parser)
    query = parser.add_argument_group("which films (QIDO-RS)")
    query.add_argument("--study", action="append", metavar="UID", help="Study Instance UID (repeat for several)")
    query.add_argument("--series", metavar="UID", help="only this Series Instance UID")
    query.add_argument("--patient-id", metavar="ID", help="all studies of this patient ID")
    query.add_argument("--date", metavar="YYYYMMDD[-YYYYMMDD]", help="study date or range")
    query.add_argument("--modality", metavar="MOD", help="series modality (e.g. DX, CR)")
    query.add_argument("--limit", type=int, default=200, help="at most this many series (default 200)")
    add_access_options(parser)
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="keep the downloaded films and all the module's files here (default: a temporary "
                             "folder, removed at the end)")
    parser.add_argument("--no-store", action="store_true", help="measure and write, but store nothing in the PACS")
    parser.add_argument("--reviewer", "--editor", dest="editor", metavar="NAME", help=argparse.SUPPRESS)
    add_module_options(parser, key)


def add_module_options(parser: argparse.ArgumentParser, key: str, leave_out=()) -> None:
    """The options of ``mskmorph KEY`` that measure (``--convention``, ``--device``, ...), less
    those about its inputs and files (``_OWN``) and the ``leave_out`` ones (option strings)."""
    module_cli = importlib.import_module(f"{MODULES[key].package}.cli")
    own = argparse.ArgumentParser(add_help=False)
    module_cli.configure_parser(own)
    group = parser.add_argument_group(f"{key} options (as in mskmorph {key})")
    skip = _OWN | set(leave_out)
    for action in own._actions:
        if action.option_strings and not set(action.option_strings) & skip and action.dest not in (
                "editor", "url", "config"):
            group._add_action(action)


def add_access_options(parser: argparse.ArgumentParser) -> None:
    """--url, --config, --username, --ca-bundle, --timeout (every ``mskmorph pacs`` command)."""
    parser.add_argument("--url", help="the PACS's DICOMweb root, e.g. https://pacs.example.org/dicom-web "
                                      "(default: MSKMORPH_PACS_URL or the config file's url)")
    access = parser.add_argument_group("access")
    access.add_argument("--config", type=Path, metavar="FILE",
                        help=f"INI file with a [pacs] section: url, username, password, token, ca_bundle "
                             f"(default {DEFAULT_CONFIG} when it exists)")
    access.add_argument("--username", metavar="NAME", help="user name (the password only from the environment "
                                                           "or the config file)")
    access.add_argument("--ca-bundle", type=Path, metavar="PEM", help="CA certificates to verify the PACS's HTTPS")
    access.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")


# --------------------------------------------------------------------------------------------
# access

def _public(url: str) -> str:
    """The URL without any user:password part (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def access(args) -> dict:
    """url, username, password, token, ca_bundle from the command line, the environment and the
    config file (in that order)."""
    config = {}
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    if path is not None:
        if not Path(path).is_file():
            raise PacsError(f"config file not found: {path}")
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as e:
            raise PacsError(f"config file {path} cannot be read: {type(e).__name__}") from None
        if parser.has_section("pacs"):
            config = dict(parser.items("pacs"))
    env = os.environ
    got = {
        "url": args.url or env.get("MSKMORPH_PACS_URL") or config.get("url"),
        "username": args.username or env.get("MSKMORPH_PACS_USERNAME") or config.get("username"),
        "password": env.get("MSKMORPH_PACS_PASSWORD") or config.get("password"),
        "token": env.get("MSKMORPH_PACS_TOKEN") or config.get("token"),
        "ca_bundle": str(args.ca_bundle) if args.ca_bundle else (env.get("MSKMORPH_PACS_CA_BUNDLE")
                                                                 or config.get("ca_bundle")),
    }
    if not got["url"]:
        raise PacsError("no PACS given: --url, MSKMORPH_PACS_URL or url in the config file")
    if urlsplit(got["url"]).scheme not in ("http", "https"):
        raise PacsError(f"the PACS URL must start with http:// or https:// ({_public(got['url'])})")
    if got["ca_bundle"] and not Path(got["ca_bundle"]).is_file():
        raise PacsError(f"CA bundle not found: {got['ca_bundle']}")
    return got


def connect(settings: dict, timeout: float = 60.0):
    """A DICOMweb client with the credentials and TLS verification."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    class Session(requests.Session):
        """The CA bundle on every request: a session's own ``verify`` loses to REQUESTS_CA_BUNDLE /
        CURL_CA_BUNDLE in the environment (requests merges the environment over the session)."""

        def request(self, method, url, **kwargs):
            kwargs.setdefault("verify", self.verify)
            return super().request(method, url, **kwargs)

    session = Session()
    if settings.get("token"):
        session.headers["Authorization"] = f"Bearer {settings['token']}"
    elif settings.get("username"):
        session.auth = (settings["username"], settings.get("password") or "")
    session.verify = settings.get("ca_bundle") or True
    client = DICOMwebClient(url=settings["url"].rstrip("/"), session=session, timeout=timeout)
    # a busy PACS (429, 503, ...) and a dropped connection are tried 3 times (0.5 s, 1 s apart), not
    # the client's default 5 times over 30 s: an unreachable server is said at once
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)
    return client


def explain(error: Exception, url: str) -> str:
    """One line for a failed request, without credentials."""
    import requests

    where = _public(url)
    if isinstance(error, requests.exceptions.SSLError):
        return f"the TLS certificate of {where} could not be verified (give the hospital's CA with --ca-bundle)"
    if isinstance(error, requests.exceptions.ConnectionError):
        return f"cannot reach the PACS at {where} (connection failed: is the address right and the server up?)"
    if isinstance(error, requests.exceptions.Timeout):
        return f"the PACS at {where} did not answer in time"
    if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
        code = error.response.status_code
        if code == 401:
            return f"the PACS at {where} refused the credentials (HTTP 401): check the user name and password"
        if code == 403:
            return f"the PACS at {where} does not allow this user to do that (HTTP 403)"
        if code == 404:
            return f"the PACS at {where} has no DICOMweb service there (HTTP 404): check the URL's path"
        return f"the PACS at {where} answered HTTP {code} {error.response.reason or ''}".strip()
    return f"the PACS at {where} could not be used ({type(error).__name__})"


# --------------------------------------------------------------------------------------------
# the run

def _value(item: dict, tag: str) -> Optional[str]:
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def find_series(client, args) -> list[tuple[str, str, str]]:
    """(study UID, series UID, modality) of the series to measure (QIDO-RS)."""
    filters = {}
    if args.patient_id:
        filters["PatientID"] = args.patient_id
    if args.date:
        filters["StudyDate"] = args.date
    if args.modality:
        filters["Modality"] = args.modality
    if args.series:
        filters["SeriesInstanceUID"] = args.series
    if not (args.study or filters):
        raise PacsError("say which films: --study UID, --series UID, --patient-id ID or --date DATE")
    found = []
    for study in (args.study or [None]):
        for item in client.search_for_series(study_instance_uid=study, search_filters=filters, limit=args.limit):
            modality = _value(item, "00080060") or ""
            if modality.upper() in NOT_FILMS:
                continue
            found.append((_value(item, "0020000D") or study, _value(item, "0020000E"), modality))
    return found[: args.limit]


def run(args) -> int:
    key = getattr(args, "subject", None) or "cobb"
    return run_session(args, lambda client, settings, work: _run(args, key, client, settings, work))


def run_session(args, body, prefix: str = "mskmorph-pacs-") -> int:
    """The PACS's access and client, a work folder (``--out``, or a temporary one removed at the
    end), then ``body(client, settings, work)``; a ``PacsError`` or a failed request is one line
    and exit status 2."""
    try:
        settings = access(args)
    except PacsError as e:
        print(f"mskmorph pacs: {e}", file=sys.stderr)
        return 2
    client = connect(settings, args.timeout)
    keep = args.out is not None
    work = Path(args.out) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return body(client, settings, work)
    except PacsError as e:
        print(f"mskmorph pacs: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        import requests

        if isinstance(e, requests.exceptions.RequestException):
            print(f"mskmorph pacs: {explain(e, settings['url'])}", file=sys.stderr)
            return 2
        raise
    finally:
        if not keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def _run(args, key: str, client, settings: dict, work: Path) -> int:
    from tqdm import tqdm

    series = find_series(client, args)
    if not series:
        print("mskmorph pacs: no films found in the PACS for that query", file=sys.stderr)
        return 1
    films = work / "films"
    films.mkdir(parents=True, exist_ok=True)
    downloaded: list[tuple[Path, str]] = []  # (file, study UID)
    for study, uid, _ in tqdm(series, desc="Downloading (WADO-RS)", unit="series", file=sys.stderr,
                              disable=len(series) < 2):
        for ds in client.retrieve_series(study, uid):
            if getattr(ds, "Manufacturer", "") == "MSKMorphometry" or "PixelData" not in ds:
                continue  # our own objects, and anything without pixels
            path = films / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(str(path), enforce_file_format=True)
            downloaded.append((path, ds.StudyInstanceUID))
    if not downloaded:
        print("mskmorph pacs: the series found hold no images", file=sys.stderr)
        return 1
    results = work / "results"
    module_args = _module_args(args, key, [str(p) for p, _ in downloaded], results)
    module_cli = importlib.import_module(f"{MODULES[key].package}.cli")
    module_cli.run(module_args)
    stored = failed = 0
    to_store = []
    for path, study in downloaded:
        objects = [results / f"{path.stem}_{kind}.dcm" for kind in ("sr", "seg")]
        objects = [p for p in objects if p.is_file()]
        if objects:
            to_store.append((path, study, objects))
        else:
            failed += 1
    if args.no_store:
        print(f"{len(to_store)} of {len(downloaded)} films measured; nothing stored (--no-store); files in {results}")
        return 0 if failed == 0 else 1
    import pydicom

    for path, study, objects in tqdm(to_store, desc="Storing (STOW-RS)", unit="film", file=sys.stderr,
                                     disable=len(to_store) < 2):
        datasets = [pydicom.dcmread(str(p)) for p in objects]
        try:
            response = client.store_instances(datasets, study_instance_uid=study)
        except Exception as e:
            import requests

            if isinstance(e, requests.exceptions.RequestException):
                raise PacsError(explain(e, settings["url"])) from None
            raise
        refused = len(getattr(response, "FailedSOPSequence", []) or [])
        if refused:
            failed += 1
            print(f"{path.name}: the PACS refused {refused} of {len(datasets)} objects", file=sys.stderr)
        else:
            stored += len(datasets)
            kinds = ", ".join(p.stem.rsplit("_", 1)[1].upper() for p in objects)
            print(f"{path.stem}: stored {kinds} in study {study}")
    print(f"{len(downloaded)} films from {_public(settings['url'])}: {len(to_store)} measured, {stored} DICOM objects "
          f"stored, {failed} failed")
    return 0 if failed == 0 else 1


def _module_args(args, key: str, inputs: list, out: Path):
    """The module command's own arguments for the downloaded films (its defaults, the options
    given to the pacs command, --dicom)."""
    module_cli = importlib.import_module(f"{MODULES[key].package}.cli")
    parser = argparse.ArgumentParser(prog=f"mskmorph {key}")
    module_cli.configure_parser(parser)
    ns = parser.parse_args([*inputs, "--out", str(out), "--dicom", "--on-existing", "replace"])
    for name, value in vars(args).items():
        if hasattr(ns, name) and name not in ("inputs", "out", "dicom", "on_existing", "patient_id", "patient_name",
                                             "study_uid"):
            setattr(ns, name, value)
    return ns
