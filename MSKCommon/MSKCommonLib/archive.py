"""``mskmorph archive cobb|knee|back``: every film of a PACS measured once, on Dask distributed.

    mskmorph archive cobb --url https://pacs/dicom-web --state cobb-archive.sqlite \\
        [--since 20160101] [--until 20261231] [--modality DX CR] [--workers 8 | --scheduler tcp://host:8786]

1. **Listing** (here, in the command's process): QIDO-RS lists the films (instances of the given
   modalities) in windows of study dates (``--window-days``), each window paged (``--page-size``),
   and the SRs already in the PACS in the same window. Objects of our own (the SR, SEG and
   Secondary Capture series) are left out. Each film goes into the state file (SQLite) as
   ``pending``, unless the state says it is done or it already carries the SR of this algorithm
   and version (see UIDs below): then it is ``already``.
2. **Measuring** (one Dask task per film, at most a few per worker thread in flight): each worker
   process loads the module's pipeline once (``ArchiveWorker``, a Dask worker plugin), fetches the
   film by WADO-RS, reads it with ``read_image`` and measures it with the pipeline every front end
   runs, builds its SR (and the Cobb SEG) with the module's ``<Module>Lib.dicom.build`` from the
   result's record (the ``--dicom`` objects, without the review files: no overlay, no .mrk.json,
   no MRML scene), and stores them by STOW-RS into the film's study. A film is ``done`` only after
   the PACS accepted its SR.
3. **UIDs**: the SR's (and SEG's) Series and SOP Instance UIDs are derived from the film's SOP
   Instance UID and the model version (``measuring_version``: the package version, the sha256 of
   the module's network files and the options that change a result, such as the convention),
   with pydicom's ``generate_uid(entropy_srcs=...)``. The same film
   measured again by the same model gives the same UIDs, so the PACS keeps one SR per film even
   when the state file is lost or a worker died after the PACS accepted the SR; the listing finds
   these UIDs in the PACS and skips those films.
4. **Failures**: HTTP 5xx, 429, timeouts and dropped connections are tried again with back-off
   (``--attempts``); a worker process that dies (killed, out of memory) has its films run again by
   Dask, and a film that kills ``distributed.scheduler.allowed-failures`` + 1 workers is
   ``failed``; a film that cannot be read or measured is ``failed`` with the reason and the run
   goes on. The PACS going away (unreachable after the retries, credentials refused) stops the
   run with one line; the state file keeps what was done, and the same command goes on from there.
5. **Report**: a progress bar (films/s, time left), a summary (stored, already done, failed with
   reasons) and a CSV of every film with its angles (``--csv``, default beside the state file).

Credentials come as for ``mskmorph pacs`` (environment or config file, never the command line).
With ``--scheduler`` they travel to the workers inside the worker plugin over Dask's comms: use
Dask's TLS (``tls://`` addresses) on a network that is not trusted.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Optional

from .modules import MODULES
from .pacs import NOT_FILMS, PacsError, _public, access, add_access_options, add_module_options, connect, explain

PLUGIN_NAME = "mskmorph-archive"
DEFAULT_MODALITIES = {"cobb": ("DX", "CR"), "knee": ("DX", "CR"), "back": ("XC", "OT")}
# our own series (dicom_export: Secondary Capture, SR, SEG), never measured
OWN_SERIES_NUMBERS = ("9700", "9701", "9702")
OWN_DESCRIPTION = "MSKMorphometry"
# module options about input files, which a PACS film does not have
LEAVE_OUT = ("--landmarks", "--depth", "--keypoints", "--no-overlay", "--surface-format", "--scene")
# study date of films without a date window
ALL_DATES = None


class PacsUnavailable(RuntimeError):
    """The PACS cannot be used any more (the message: one line, without credentials)."""


# --------------------------------------------------------------------------------------------
# the command line

def configure_parser(parser: argparse.ArgumentParser) -> None:
    key = parser.prog.split()[-1]
    parser.add_argument("--state", required=True, type=Path, metavar="FILE",
                        help="SQLite file with each film's outcome (created; the same file resumes the run)")
    query = parser.add_argument_group("which films (QIDO-RS)")
    query.add_argument("--since", metavar="YYYYMMDD", help="first study date (default: no lower bound, and one "
                                                           "query instead of date windows)")
    query.add_argument("--until", metavar="YYYYMMDD", help="last study date (default: today with --since, else none)")
    query.add_argument("--modality", nargs="+", metavar="MOD",
                       help=f"film modalities (default {' '.join(DEFAULT_MODALITIES[key])})")
    query.add_argument("--window-days", type=int, default=31, help="study dates per QIDO-RS query (default 31)")
    query.add_argument("--page-size", type=int, default=500, help="results per QIDO-RS page (default 500)")
    engine = parser.add_argument_group("where it runs (Dask distributed)").add_mutually_exclusive_group()
    engine.add_argument("--workers", type=int, metavar="N",
                        help="a local cluster of N worker processes (default: one per core)")
    engine.add_argument("--scheduler", metavar="ADDRESS",
                        help="a running Dask scheduler, e.g. tcp://host:8786 (dask scheduler / dask worker)")
    parser.add_argument("--attempts", type=int, default=4,
                        help="tries of a request that failed for a passing reason (5xx, timeout), with back-off")
    parser.add_argument("--retry-failed", action="store_true",
                        help="measure again the films the state file records as failed")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="every film with its outcome and values (default: the state file's name with .csv)")
    add_access_options(parser)
    add_module_options(parser, key, LEAVE_OUT)


def module_values(args, key: str) -> dict:
    """The module command's arguments (its defaults, with the measuring options given here)."""
    module_cli = importlib.import_module(f"{MODULES[key].package}.cli")
    parser = argparse.ArgumentParser(prog=f"mskmorph {key}")
    module_cli.configure_parser(parser)
    ns = parser.parse_args(["film.dcm", "--out", "."])
    values = {name: getattr(args, name) if hasattr(args, name) and name not in ("inputs", "out", "modality") else value
              for name, value in vars(ns).items()}
    for name in ("landmarks", "depth", "keypoints"):
        if name in values:
            values[name] = None
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


def model_version(key: str, weights: Optional[str] = None) -> str:
    """The package version and a digest of the module's network files (``models/*.onnx``, the
    ``.json`` beside them, or the ``--weights`` file): a new model gives new SR UIDs."""
    import hashlib

    from .dicom_export import version
    from .resources import packaged
    from .runtime import sha256

    files = [Path(weights)] if weights else sorted(
        p for p in Path(packaged(MODULES[key].package, "models")).iterdir() if p.suffix in (".onnx", ".json"))
    digest = hashlib.sha256("".join(f"{p.name}:{sha256(p)};" for p in files).encode()).hexdigest()
    return f"{version()}+{digest[:12]}"


def module_options(key: str, values: dict, path=None, image=None):
    """The module's pipeline options from its command's arguments (``module_values``), as its
    command makes them for a film."""
    from .batch import Item

    spec = MODULES[key]
    runner = importlib.import_module(f"{spec.package}.cli")._Runner
    owner = SimpleNamespace(args=SimpleNamespace(**values), spec=spec, single=False)
    return runner.options_for(owner, Item(Path(path or "film.dcm")), image)


def measuring_version(key: str, values: dict) -> str:
    """``model_version`` and the options that change a result (the convention, the backend, a
    knee film's spacing, a back photo's camera): what the SR UIDs and the state file are tied to."""
    import dataclasses

    options = dataclasses.asdict(module_options(key, values))
    chosen = {k: v for k, v in sorted(options.items()) if k not in ("device", "weights") and not k.endswith("_file")}
    return f"{model_version(key, values.get('weights'))} " + ",".join(f"{k}={v}" for k, v in chosen.items())


def result_uids(film_sop_uid: str, model: str) -> dict:
    """The SR's and SEG's Series and SOP Instance UIDs of a film, from its SOP Instance UID and the
    model version (the same inputs always give the same UIDs)."""
    from pydicom.uid import generate_uid

    return {kind: generate_uid(entropy_srcs=[film_sop_uid, model, kind])
            for kind in ("sr_series", "sr", "seg_series", "seg")}


# --------------------------------------------------------------------------------------------
# the state file

class State:
    """The SQLite state: one row per film (pending, done, already, failed) with its reason, the
    SR's UID, the module's CSV values and the seconds it took."""

    STATUSES = ("pending", "done", "already", "failed")

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS films (
                sop_instance_uid TEXT PRIMARY KEY, study_instance_uid TEXT, series_instance_uid TEXT,
                study_date TEXT, modality TEXT, status TEXT NOT NULL DEFAULT 'pending', reason TEXT,
                sr_instance_uid TEXT, stored INTEGER DEFAULT 0, values_json TEXT, seconds REAL,
                stages_json TEXT, worker TEXT, updated TEXT);
            CREATE INDEX IF NOT EXISTS films_status ON films(status);
        """)
        self.db.commit()

    def check_meta(self, values: dict) -> None:
        """Record the run's module, model and PACS; refuse a state file made for others."""
        known = dict(self.db.execute("SELECT key, value FROM meta"))
        for k, v in values.items():
            if k in known and known[k] != v:
                raise PacsError(f"the state file {self.path} belongs to another run ({k} {known[k]}, not {v}); "
                                "give a new --state file")
        self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", list(values.items()))
        self.db.commit()

    def add(self, films: list[dict]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO films (sop_instance_uid, study_instance_uid, series_instance_uid, study_date, "
            "modality, sr_instance_uid) VALUES (:sop, :study, :series, :date, :modality, :sr)", films)
        self.db.commit()

    def mark_already(self, sops: list[str]) -> None:
        self.db.executemany("UPDATE films SET status='already', reason='its SR of this model is in the PACS', "
                            "updated=? WHERE sop_instance_uid=? AND status IN ('pending', 'failed')",
                            [(_now(), s) for s in sops])
        self.db.commit()

    def reopen_failed(self) -> None:
        self.db.execute("UPDATE films SET status='pending' WHERE status='failed'")
        self.db.commit()

    def pending(self) -> Iterator[dict]:
        """The films still to measure (read in blocks, so a large archive is never all in memory)."""
        last = ""
        while True:
            rows = self.db.execute(
                "SELECT sop_instance_uid, study_instance_uid, series_instance_uid, sr_instance_uid FROM films "
                "WHERE status='pending' AND sop_instance_uid > ? ORDER BY sop_instance_uid LIMIT 1000",
                (last,)).fetchall()
            if not rows:
                return
            for sop, study, series, sr in rows:
                yield {"sop": sop, "study": study, "series": series, "sr": sr}
            last = rows[-1][0]

    def count(self, status: str) -> int:
        return self.db.execute("SELECT count(*) FROM films WHERE status=?", (status,)).fetchone()[0]

    def record(self, sop: str, outcome: dict) -> None:
        self.db.execute(
            "UPDATE films SET status=?, reason=?, stored=?, values_json=?, seconds=?, stages_json=?, worker=?, "
            "updated=? WHERE sop_instance_uid=?",
            (outcome["status"], outcome.get("reason"), outcome.get("stored", 0),
             json.dumps(outcome.get("values")) if outcome.get("values") is not None else None,
             outcome.get("seconds"), json.dumps(outcome.get("stages") or {}), outcome.get("worker"), _now(), sop))
        self.db.commit()

    def write_csv(self, path: Path, columns) -> None:
        import csv

        head = ["sop_instance_uid", "study_instance_uid", "series_instance_uid", "study_date", "status", "reason",
                "sr_instance_uid"]
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([*head, *columns])
            for row in self.db.execute(f"SELECT {', '.join(head)}, values_json FROM films ORDER BY study_date, "
                                       "study_instance_uid, sop_instance_uid"):
                values = json.loads(row[-1]) if row[-1] else {}
                writer.writerow([*("" if v is None else v for v in row[:-1]),
                                 *(_csv_value(values.get(c)) for c in columns)])

    def close(self) -> None:
        self.db.close()


def _csv_value(v):
    if v is None:
        return ""
    return f"{v:.4f}" if isinstance(v, float) else v


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# listing (QIDO-RS)

def date_windows(since: Optional[str], until: Optional[str], days: int) -> list[Optional[str]]:
    """QIDO-RS StudyDate ranges covering [since, until] (until: today when not given), ``days``
    dates each; one open range "-until" without ``since``; [None] (no date filter) without both."""
    if not since and not until:
        return [ALL_DATES]
    parse = lambda s: datetime.datetime.strptime(s, "%Y%m%d").date()  # noqa: E731
    try:
        if not since:  # no first date: one open range (DICOM range matching), paged
            return [f"-{parse(until):%Y%m%d}"]
        first = parse(since)
        last = parse(until) if until else datetime.date.today()
    except ValueError:
        raise PacsError(f"dates are YYYYMMDD (got {since or ''} {until or ''})".strip()) from None
    if last < first:
        raise PacsError(f"--until {until} is before --since {since}")
    windows = []
    while first <= last:
        end = min(first + datetime.timedelta(days=max(days, 1) - 1), last)
        windows.append(f"{first:%Y%m%d}-{end:%Y%m%d}")
        first = end + datetime.timedelta(days=1)
    return windows


def _value(item: dict, tag: str) -> Optional[str]:
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def _instances(client, filters: dict, page: int, fields=()) -> Iterator[dict]:
    offset = 0
    while True:
        found = client.search_for_instances(search_filters=filters, offset=offset, limit=page, fields=list(fields))
        yield from found
        if len(found) < page:
            return
        offset += len(found)


def list_films(client, state: State, modalities, windows, page: int, model: str, progress=None) -> int:
    """Put every film of the windows into the state (QIDO-RS); mark those whose SR of this model
    is already in the PACS. Returns the number of films listed."""
    listed = 0
    for window in windows:
        base = {} if window is ALL_DATES else {"StudyDate": window}
        films = []
        for modality in modalities:
            if modality.upper() in NOT_FILMS:
                continue
            for item in _instances(client, {**base, "Modality": modality}, page,
                                   ("StudyDate", "SeriesNumber", "SeriesDescription")):
                if (_value(item, "00200011") or "") in OWN_SERIES_NUMBERS and (
                        _value(item, "0008103E") or "").startswith(OWN_DESCRIPTION):
                    continue  # our own Secondary Capture copy
                sop = _value(item, "00080018")
                if sop is None:
                    continue
                films.append({"sop": sop, "study": _value(item, "0020000D"), "series": _value(item, "0020000E"),
                              "date": _value(item, "00080020"), "modality": _value(item, "00080060") or modality,
                              "sr": result_uids(sop, model)["sr"]})
        state.add(films)
        listed += len(films)
        expected = {f["sr"]: f["sop"] for f in films}
        if expected:
            present = [expected[_value(item, "00080018")]
                       for item in _instances(client, {**base, "Modality": "SR"}, page)
                       if _value(item, "00080018") in expected]
            state.mark_already(present)
        if progress is not None:
            progress(window, len(films))
    return listed


# --------------------------------------------------------------------------------------------
# on the workers

def _transient(error: Exception) -> bool:
    import requests

    if isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return not isinstance(error, requests.exceptions.SSLError)
    if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
        return error.response.status_code >= 500 or error.response.status_code == 429
    return False


def with_retries(call, url: str, attempts: int, first_wait: float = 0.5):
    """``call()``, tried again after 0.5, 1, 2 ... s while it fails for a passing reason (5xx, 429,
    timeout, dropped connection). The PACS unreachable after the tries, or refusing the
    credentials, raises ``PacsUnavailable``; another HTTP error (404, 400, 409) is the film's."""
    import requests

    wait = first_wait
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            return call()
        except requests.exceptions.RequestException as e:
            code = getattr(getattr(e, "response", None), "status_code", None)
            if code in (401, 403) or isinstance(e, requests.exceptions.SSLError):
                raise PacsUnavailable(explain(e, url)) from None
            if not _transient(e):
                raise ValueError(explain(e, url)) from None
            if attempt == attempts:
                raise PacsUnavailable(explain(e, url) + f" ({attempts} tries)") from None
            time.sleep(wait)
            wait *= 2


def _plugin_base():
    try:
        from distributed.diagnostics.plugin import WorkerPlugin
    except ImportError:  # without distributed the class is only used in this process (no Dask)
        return object
    return WorkerPlugin


class ArchiveWorker(_plugin_base()):
    """What each worker process keeps: the module's pipeline (one model load per process), the
    DICOMweb client and the run's settings. ``measure_film`` uses it."""

    name = PLUGIN_NAME

    def __init__(self, key: str, settings: dict, timeout: float, values: dict, model: str, attempts: int,
                 threads: Optional[int] = None):
        self.key, self.settings, self.timeout, self.values = key, settings, timeout, values
        self.model, self.attempts, self.threads = model, attempts, threads

    def setup(self, worker=None):
        import tempfile

        if self.threads:  # the cores shared between the local workers (the networks read it at load)
            os.environ["MSKMORPH_THREADS"] = str(self.threads)
        spec = MODULES[self.key]
        self.spec = spec
        self.pipeline = spec.pipeline()
        self.build = importlib.import_module(f"{spec.package}.dicom").build
        self.files = spec.files()
        self.lock = threading.Lock()  # one film at a time through the pipeline (a worker may run threads)
        self.local = threading.local()
        self.folder = tempfile.mkdtemp(prefix="mskmorph-archive-")
        self.address = getattr(worker, "address", f"pid {os.getpid()}")
        import highdicom  # noqa: F401 (imported now, not inside the first film's time)

        if not self.values.get("landmarks"):  # load the network now, not inside the first film's time
            options = self.options(None, None)
            if hasattr(self.pipeline, "predictor") and hasattr(options, "device"):
                self.pipeline.predictor(options.device, options.weights, options.backend)

    def teardown(self, worker=None):
        import shutil

        shutil.rmtree(getattr(self, "folder", ""), ignore_errors=True)

    def client(self):
        if getattr(self.local, "client", None) is None:  # a requests session per thread
            self.local.client = connect(self.settings, self.timeout)
        return self.local.client

    def options(self, path, image):
        return module_options(self.key, self.values, path, image)

    def measure(self, film: dict) -> dict:
        """Fetch, measure, store one film; returns its outcome (status done or failed)."""
        import resource

        from .dicom_export import DicomOptions, source_dataset
        from .image import read_image

        url = self.settings["url"]
        stages, cpu = {}, {}  # seconds per stage: wall, and this process's CPU
        start = clock = time.perf_counter()
        cpu_clock = time.process_time()

        def lap(name):
            nonlocal clock, cpu_clock
            now, now_cpu = time.perf_counter(), time.process_time()
            stages[name] = stages.get(name, 0.0) + now - clock
            cpu[name] = cpu.get(name, 0.0) + now_cpu - cpu_clock
            clock, cpu_clock = now, now_cpu

        client = self.client()
        outcome = {"sop": film["sop"], "worker": self.address, "stages": stages, "cpu_stages": cpu, "stored": 0}
        try:
            try:
                ds = with_retries(lambda: client.retrieve_instance(film["study"], film["series"], film["sop"]),
                                  url, self.attempts)
            except ValueError as e:
                raise ValueError(f"the film could not be fetched: {e}") from None
            lap("fetch")
            if getattr(ds, "Manufacturer", "") == "MSKMorphometry":
                raise ValueError("an object MSKMorphometry made (not a film)")
            path = Path(self.folder) / f"{threading.get_ident()}.dcm"
            ds.save_as(str(path), enforce_file_format=True)
            image = read_image(path)
            lap("read")
            with self.lock:
                result = self.pipeline.run(image, self.options(path, image))
            lap("measure")
            record = result.to_record()
            record.setdefault("review", {"edited": False, "edited_points": {}})
            source, _ = source_dataset(path, image, self.folder, "film", DicomOptions())
            sr, seg = self.build(source, record, SimpleNamespace(result=result), DicomOptions())
            uids = result_uids(film["sop"], self.model)
            objects = [_with_uids(sr, uids["sr_series"], uids["sr"])]
            if seg is not None:
                objects.append(_with_uids(seg, uids["seg_series"], uids["seg"]))
            lap("dicom")
            response = with_retries(lambda: client.store_instances(objects, study_instance_uid=film["study"]),
                                    url, self.attempts)
            refused = len(getattr(response, "FailedSOPSequence", []) or [])
            lap("store")
            if refused:
                raise ValueError(f"the PACS refused {refused} of the {len(objects)} objects (STOW-RS)")
            outcome.update(status="done", stored=len(objects), values=self.files.csv_values(record))
        except PacsUnavailable as e:  # said as an outcome: the run stops (an exception would cross Dask)
            outcome.update(status="unavailable", reason=str(e))
        except (ValueError, OSError, RuntimeError) as e:  # the film's own failure, with its reason
            outcome.update(status="failed", reason=str(e) or type(e).__name__)
        except Exception as e:  # a bug: the film fails with what it was; the run goes on
            outcome.update(status="failed", reason=f"internal error ({type(e).__name__}: {e})")
        outcome["seconds"] = time.perf_counter() - start
        outcome["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return outcome


def _with_uids(ds, series_uid: str, sop_uid: str):
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    return ds


def measure_film(film: dict) -> dict:
    """The Dask task: one film on this worker's pipeline (``ArchiveWorker``)."""
    from distributed import get_worker

    return get_worker().plugins[PLUGIN_NAME].measure(film)


# --------------------------------------------------------------------------------------------
# the run

def run(args) -> int:
    key = getattr(args, "subject", None) or "cobb"
    try:
        settings = access(args)
        import distributed  # noqa: F401
    except PacsError as e:
        print(f"mskmorph archive: {e}", file=sys.stderr)
        return 2
    except ImportError:
        print("mskmorph archive: needs Dask distributed: pip install 'mskmorphometry[archive]'", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("mskmorph archive: --workers must be 1 or more", file=sys.stderr)
        return 2
    values = module_values(args, key)
    model = measuring_version(key, values)
    state = State(args.state)
    try:
        state.check_meta({"module": key, "model_version": model, "pacs": _public(settings["url"])})
        return _run(args, key, settings, values, model, state)
    except PacsError as e:
        print(f"mskmorph archive: {e}", file=sys.stderr)
        return 2
    except PacsUnavailable as e:
        print(f"mskmorph archive: {e}; stopped, {_progress_line(state)} in {args.state} (run the same command "
              "to go on)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mskmorph archive: interrupted; {_progress_line(state)} in {args.state}", file=sys.stderr)
        return 130
    finally:
        state.close()


def _progress_line(state: State) -> str:
    return f"{state.count('done')} stored, {state.count('pending')} to go"


def _run(args, key: str, settings: dict, values: dict, model: str, state: State) -> int:
    import requests
    from tqdm import tqdm

    client = connect(settings, args.timeout)
    modalities = [m.upper() for m in (args.modality or DEFAULT_MODALITIES[key])]
    windows = date_windows(args.since, args.until, args.window_days)
    listing = tqdm(total=len(windows), desc="Listing (QIDO-RS)", unit="window", file=sys.stderr,
                   disable=len(windows) < 2)
    try:
        listed = with_retries(lambda: list_films(client, state, modalities, windows, args.page_size, model,
                                                 lambda *_: listing.update()), settings["url"], args.attempts)
    except ValueError as e:  # a listing error is the PACS's, not a film's
        raise PacsUnavailable(str(e)) from None
    except requests.exceptions.RequestException as e:
        raise PacsUnavailable(explain(e, settings["url"])) from None
    finally:
        listing.close()
    if args.retry_failed:
        state.reopen_failed()
    todo = state.count("pending")
    print(f"{listed} films listed in {_public(settings['url'])} ({' '.join(modalities)}); {todo} to measure, "
          f"{state.count('done') + state.count('already')} done before, {state.count('failed')} failed before",
          file=sys.stderr)
    outcomes, seconds = _measure(args, key, settings, values, model, state, todo) if todo else ([], 0.0)
    return _report(args, key, state, outcomes, seconds)


def _cluster(args):
    """A Dask client: on the scheduler given, or on a local cluster of worker processes."""
    import logging

    from distributed import Client, LocalCluster

    if args.scheduler:
        return Client(args.scheduler, timeout="30s"), None
    n = args.workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _measure(args, key, settings, values, model, state: State, todo: int) -> tuple[list, float]:
    """Measure the pending films on the cluster; returns their outcomes and the seconds from the
    first film sent to the last outcome (the cluster's start and the model loads left out)."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    from tqdm import tqdm

    client, cluster = _cluster(args)
    outcomes = []
    try:
        threads = None
        if cluster is not None:  # the local workers share the cores
            threads = max(1, (os.cpu_count() or 1) // len(cluster.workers))
        try:
            client.register_plugin(ArchiveWorker(key, settings, args.timeout, values, model, args.attempts, threads),
                                   name=PLUGIN_NAME)
        except Exception as e:  # e.g. a remote worker without this package (or another version of it)
            raise PacsError(f"the Dask workers could not load the measuring ({type(e).__name__}: {e}); is the same "
                            "mskmorphometry installed where they run?") from None

        def slots() -> int:  # a film in flight and one waiting per worker thread (workers may join later)
            return max(2, 2 * sum(client.nthreads().values()))

        films = state.pending()
        futures = as_completed()
        flying = {}

        def submit_next() -> bool:
            film = next(films, None)
            if film is None:
                return False
            future = client.submit(measure_film, film, key=f"film-{film['sop']}", pure=False)
            flying[future] = film
            futures.add(future)
            return True

        start = time.perf_counter()
        for _ in range(slots()):
            if not submit_next():
                break
        bar = tqdm(total=todo, desc=f"Measuring ({MODULES[key].name})", unit="film", file=sys.stderr,
                   smoothing=0.1)
        try:
            for future in futures:
                film = flying.pop(future)
                try:
                    outcome = future.result()
                except KilledWorker:
                    outcome = {"status": "failed", "reason": "the worker process died each time it measured this "
                                                             "film (out of memory?)"}
                except Exception as e:
                    outcome = {"status": "failed", "reason": f"internal error ({type(e).__name__}: {e})"}
                if outcome["status"] == "unavailable":  # the film stays to go
                    for other in flying:
                        other.cancel()
                    raise PacsUnavailable(outcome["reason"])
                state.record(film["sop"], outcome)
                outcomes.append(outcome)
                bar.update()
                if outcome["status"] == "failed":
                    bar.write(f"FAILED {film['sop']}: {outcome.get('reason')}", file=sys.stderr)
                while len(flying) < slots() and submit_next():
                    pass
            seconds = time.perf_counter() - start
        finally:
            bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes, seconds


def _report(args, key: str, state: State, outcomes: list, seconds: float) -> int:
    spec = MODULES[key]
    columns = list(spec.files().COLUMNS)
    csv_path = args.csv or args.state.with_suffix(".csv")
    state.write_csv(csv_path, columns)
    done = [o for o in outcomes if o["status"] == "done"]
    failed = [o for o in outcomes if o["status"] == "failed"]
    print(f"this run: {len(done)} films measured and stored ({sum(o.get('stored', 0) for o in done)} DICOM objects), "
          f"{len(failed)} failed" + (f", in {seconds:.1f} s ({len(outcomes) / seconds:.2f} films/s)" if seconds else ""))
    if done:
        stages = Counter()
        for o in done:
            stages.update(o.get("stages") or {})
        print("seconds per film: " + ", ".join(f"{k} {v / len(done):.3f}" for k, v in stages.items()))
    reasons = Counter(state.db.execute("SELECT reason FROM films WHERE status='failed'").fetchall())
    print(f"archive: {state.count('done')} stored, {state.count('already')} already carried this model's SR, "
          f"{state.count('failed')} failed, {state.count('pending')} to go; every film in {csv_path}")
    for (reason,), n in reasons.most_common(5):
        print(f"  failed x{n}: {reason}")
    return 0 if state.count("failed") == 0 and state.count("pending") == 0 else 1
