"""``mskmorph archive cobb`` on Dask distributed against a real PACS (Debian's Orthanc with its
DICOMweb plugin on loopback, started as in ``test_pacs_orthanc``).

Films: 24 generated spine phantoms (1200 x 450 pixels, DX), with the shared data folder present
also 4 AASCE training films as DICOM, and one corrupt film (its pixel data cut short). One test
runs the whole story, as an archive run would live it:

1. ``--workers 2``; once a few films are stored, one worker process is killed (SIGKILL); the run
   goes on (more films are stored after it); then the whole run is killed (SIGKILL to its process
   group) with films still to go;
2. the same command again completes the archive: every film ends with exactly one SR (and one
   SEG) whose angles and end vertebrae equal those of ``mskmorph cobb --dicom`` on the same file
   (a film that command cannot measure is failed by the archive too), the corrupt film is failed
   with its reason, in the state file and the CSV, and the CSV's angles are ``cobb.csv``'s;
3. the same command a third time stores nothing new;
4. with the state file removed it stores nothing new either (the SRs' UIDs come from the film and
   the model, and the listing finds them in the PACS).

Films are fewer than an archive's 40 to keep CI's time modest (about 2 minutes on 2 cores):
each property needs a run that is mid-way when it is killed, which 28 films give.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import AASCE, write_dicom
from dicom_checks import read_sr, vertebra_name
from test_pacs_orthanc import PASSWORD, USER, running_orthanc, store

N_PHANTOMS = 24
N_AASCE = 4


def _films(folder: Path) -> tuple[list[Path], Path]:
    import cv2

    from CobbAngleTools.phantom import render_spine_phantom

    films = []
    for seed in range(N_PHANTOMS):
        phantom = render_spine_phantom(100 + seed, height=1200, width=450)
        films.append(write_dicom(folder / f"phantom{seed:02d}.dcm", phantom.pixels, spacing=phantom.spacing_mm))
    if (AASCE / "images").is_dir():
        for path in sorted((AASCE / "images").glob("*.jpg"))[:N_AASCE]:
            pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            films.append(write_dicom(folder / f"aasce_{len(films):02d}.dcm", pixels, spacing_kw=None))
    corrupt = write_dicom(folder / "corrupt.dcm", np.zeros((800, 300), np.uint16), spacing=(0.2, 0.2))
    ds = pydicom.dcmread(corrupt)
    ds.PixelData = ds.PixelData[:5000]  # cut short: the header says 800 x 300 pixels
    ds.save_as(corrupt, enforce_file_format=True)
    return films, corrupt


def _statistics(server) -> int:
    import requests

    reply = requests.get(f"{server['base']}/statistics", auth=server["auth"], timeout=30)
    reply.raise_for_status()
    return int(reply.json()["CountInstances"])


def _instances(server, study: str, modality: str) -> list[dict]:
    import requests

    reply = requests.get(f"{server['dicomweb']}/studies/{study}/instances", params={"Modality": modality},
                         auth=server["auth"], timeout=30)
    reply.raise_for_status()
    return reply.json() if reply.text.strip() else []


def _download(server, study: str, series: str, sop: str):
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = server["auth"]
    return DICOMwebClient(server["dicomweb"], session=session).retrieve_instance(study, series, sop)


def _state(path: Path) -> dict:
    import sqlite3

    db = sqlite3.connect(str(path), timeout=30)
    try:
        return {sop: (status, reason) for sop, status, reason in
                db.execute("SELECT sop_instance_uid, status, reason FROM films")}
    finally:
        db.close()


def _missing_sr(server, state: Path, name: str, sop: str, study: str, srs: list) -> str:
    """What to know when a film's SR count is wrong (a failure seen once in about ten runs): its
    row in the state, and every object in its study by modality and SOP Instance UID."""
    import sqlite3
    import requests

    db = sqlite3.connect(str(state), timeout=30)
    try:
        row = db.execute("SELECT status, reason, stored, worker, updated, sr_instance_uid FROM films "
                         "WHERE sop_instance_uid=?", (sop,)).fetchone()
    finally:
        db.close()
    reply = requests.get(f"{server['dicomweb']}/studies/{study}/instances", auth=server["auth"], timeout=30)
    found = [(i.get("00080060", {}).get("Value", ["?"])[0], i["00080018"]["Value"][0])
             for i in (reply.json() if reply.text.strip() else [])]
    return f"{name}: {len(srs)} SRs; state row {row}; the study holds {found}"


def _count(path: Path, status: str) -> int:
    if not path.is_file():
        return 0
    try:
        return sum(1 for s, _ in _state(path).values() if s == status)
    except Exception:  # the table is not made yet
        return 0


def _workers(pid: int) -> list:
    """The run's Dask worker processes (multiprocessing children of its nannies)."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _wait_for(condition, process, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"the archive run ended ({process.returncode}) before {what}: "
                        f"{process.stderr.read()[-3000:] if process.stderr else ''}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_archive_measures_every_film_once_through_lost_workers_and_restarts(tmp_path):
    pytest.importorskip("distributed")

    from MSKCommonLib.cli import main

    films_dir = tmp_path / "films"
    films_dir.mkdir()
    films, corrupt = _films(films_dir)
    datasets = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in [*films, corrupt]}
    with running_orthanc() as server:
        for path in [*films, corrupt]:
            store(server, path)
        state = tmp_path / "archive.sqlite"
        env = dict(os.environ, MSKMORPH_PACS_USERNAME=USER, MSKMORPH_PACS_PASSWORD=PASSWORD,
                   PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "MSKCommonLib.cli", "archive", "cobb", "--url", server["dicomweb"],
                   "--state", str(state), "--workers", "2", "--device", "cpu"]

        # 1. a worker process killed mid-run; then the whole run killed
        run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        try:
            _wait_for(lambda: _count(state, "done") >= 3, run, 300, "3 films were stored")
            workers = _workers(run.pid)
            assert len(workers) == 2, workers
            workers[0].kill()
            killed_at = _count(state, "done")
            _wait_for(lambda: _count(state, "done") >= killed_at + 4, run, 300, "4 more films after a lost worker")
            os.killpg(run.pid, signal.SIGKILL)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=60)
        assert _count(state, "pending") > 0, "the run was not killed mid-way"
        assert PASSWORD not in run.stdout.read() + run.stderr.read()

        # 2. the same command completes it
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 1, again.stderr  # 1: the corrupt film failed
        assert PASSWORD not in again.stdout + again.stderr
        outcomes = _state(state)
        assert _count(state, "pending") == 0

        # what mskmorph cobb --dicom gives on the same files
        reference = tmp_path / "reference"
        main(["cobb", str(films_dir), "--out", str(reference), "--dicom", "--device", "cpu"])
        with open(reference / "cobb.csv", newline="") as f:
            expected_csv = {row["image"]: row for row in csv.DictReader(f)}
        with open(state.with_suffix(".csv"), newline="") as f:
            archive_csv = {row["sop_instance_uid"]: row for row in csv.DictReader(f)}
        assert set(archive_csv) == set(outcomes) == {ds.SOPInstanceUID for ds in datasets.values()}

        status, reason = outcomes[datasets[corrupt].SOPInstanceUID]
        assert status == "failed" and "truncated" in reason, reason
        assert archive_csv[datasets[corrupt].SOPInstanceUID]["status"] == "failed"
        assert "truncated" in again.stdout, again.stdout  # the summary names the reason

        measured = 0
        for path in films:
            ds = datasets[path]
            sop, study = ds.SOPInstanceUID, ds.StudyInstanceUID
            reference_sr = reference / f"{path.stem}_sr.dcm"
            srs = _instances(server, study, "SR")
            if not reference_sr.is_file():  # mskmorph cobb --dicom could not report it: neither may the archive
                assert expected_csv[path.name]["status"] == "failed"
                assert outcomes[sop][0] == "failed" and srs == [], (path.name, outcomes[sop])
                continue
            assert outcomes[sop][0] in ("done", "already"), (path.name, outcomes[sop])
            assert len(srs) == 1, _missing_sr(server, state, path.name, sop, study, srs)
            assert len(_instances(server, study, "SEG")) == 1
            sr = _download(server, study, srs[0]["0020000E"]["Value"][0], srs[0]["00080018"]["Value"][0])
            got = {g["tracking"].split()[0]: g for g in read_sr(sr)}
            want = {g["tracking"].split()[0]: g for g in read_sr(reference_sr)}
            assert sorted(got) == sorted(want), path.name
            for name, group in want.items():
                assert sorted(got[name]["measurements"]) == sorted(group["measurements"]), (path.name, name)
                assert got[name]["source"] == [sop]
                if "Cobb angle" not in group["measurements"]:  # a curve reported absent ("no curve")
                    assert got[name]["evaluations"] == group["evaluations"], (path.name, name)
                    continue
                assert got[name]["measurements"]["Cobb angle"]["value"] == pytest.approx(
                    group["measurements"]["Cobb angle"]["value"], abs=1e-6), (path.name, name)
                for end in ("Upper end vertebra", "Lower end vertebra"):
                    assert vertebra_name(got[name]["evaluations"][end]) == vertebra_name(group["evaluations"][end])
            if outcomes[sop][0] == "done":  # measured in these runs: its CSV row holds the angles
                row = archive_csv[sop]
                for curve in ("PT", "MT", "TL_L"):
                    assert row[curve] == expected_csv[path.name][curve], (path.name, curve)
            measured += 1
        assert measured >= N_PHANTOMS // 2

        # 3. the same command again: nothing new
        before = _statistics(server)
        third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert "this run: 0 films measured" in third.stdout, third.stdout + third.stderr
        assert _statistics(server) == before

        # 4. the state file lost: nothing new either
        for suffix in ("", "-wal", "-shm"):
            Path(str(state) + suffix).unlink(missing_ok=True)
        fourth = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert "this run: 0 films measured" in fourth.stdout, fourth.stdout + fourth.stderr
        assert _statistics(server) == before
        assert _count(state, "already") == measured


def test_the_pacs_going_away_stops_the_run_in_one_line_and_keeps_the_state(tmp_path):
    """Orthanc stopped mid-run: the run ends with exit 2 and one line naming the PACS and the state
    file; the films stored before are recorded as done, the rest stay to go."""
    pytest.importorskip("distributed")
    films_dir = tmp_path / "films"
    films_dir.mkdir()
    films = []
    for seed in range(8):
        from CobbAngleTools.phantom import render_spine_phantom

        phantom = render_spine_phantom(200 + seed, height=1200, width=450)
        films.append(write_dicom(films_dir / f"p{seed}.dcm", phantom.pixels, spacing=phantom.spacing_mm))
    state = tmp_path / "archive.sqlite"
    with running_orthanc() as server:
        for path in films:
            store(server, path)
        env = dict(os.environ, MSKMORPH_PACS_USERNAME=USER, MSKMORPH_PACS_PASSWORD=PASSWORD)
        command = [sys.executable, "-m", "MSKCommonLib.cli", "archive", "cobb", "--url", server["dicomweb"],
                   "--state", str(state), "--workers", "1", "--device", "cpu", "--attempts", "2", "--timeout", "5"]
        run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        try:
            _wait_for(lambda: _count(state, "done") >= 1, run, 300, "a film was stored")
            server["process"].terminate()  # the PACS goes away
            server["process"].wait(timeout=30)
            out, err = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=60)
    assert run.returncode == 2, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mskmorph archive: cannot reach the PACS at http://127.0.0.1:"), err
    assert str(state) in last and "to go" in last
    assert PASSWORD not in out + err
    done, pending = _count(state, "done"), _count(state, "pending")
    assert done >= 1 and pending >= 1 and done + pending + _count(state, "failed") == len(films)
    assert _count(state, "failed") == 0, [v for v in _state(state).values() if v[0] == "failed"]  # the PACS's absence is no film's failure
