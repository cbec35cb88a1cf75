"""The archive's parts that need no PACS: the SR UIDs derived from the film and the model, the date
windows of the listing, which request failures are tried again, and the state file's guard
against another run's file."""
from __future__ import annotations

import pytest
import requests
from pydicom.uid import UID

from MSKCommonLib import archive


def test_result_uids_are_the_films_and_the_models_only():
    a = archive.result_uids("1.2.3.4", "0.1.0+abc")
    assert a == archive.result_uids("1.2.3.4", "0.1.0+abc")  # the same film and model: the same UIDs
    assert len(set(a.values())) == 4 and all(UID(u).is_valid for u in a.values())
    assert set(a.values()).isdisjoint(archive.result_uids("1.2.3.5", "0.1.0+abc").values())
    assert set(a.values()).isdisjoint(archive.result_uids("1.2.3.4", "0.1.0+abd").values())


def test_model_version_names_the_package_and_the_network_files(tmp_path):
    version = archive.model_version("cobb")
    assert version.startswith("0.") and "+" in version and version == archive.model_version("cobb")
    weights = tmp_path / "mine.onnx"
    weights.write_bytes(b"one")
    other = archive.model_version("cobb", str(weights))
    weights.write_bytes(b"two")
    assert other != version and other != archive.model_version("cobb", str(weights))


def test_date_windows_cover_the_range_without_gaps():
    assert archive.date_windows(None, None, 31) == [None]
    windows = archive.date_windows("20240125", "20240305", 14)
    assert windows == ["20240125-20240207", "20240208-20240221", "20240222-20240305"]
    assert archive.date_windows("20240101", "20240101", 31) == ["20240101-20240101"]
    assert archive.date_windows(None, "20240101", 31) == ["-20240101"]  # no first date: one open range
    with pytest.raises(archive.PacsError, match="before"):
        archive.date_windows("20240102", "20240101", 31)
    with pytest.raises(archive.PacsError, match="YYYYMMDD"):
        archive.date_windows("2024-01-01", None, 31)


def _http_error(code: int) -> requests.exceptions.HTTPError:
    response = requests.Response()
    response.status_code = code
    return requests.exceptions.HTTPError(f"{code}", response=response)


def test_passing_failures_are_tried_again_then_the_pacs_is_said_unavailable():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise _http_error(503)
        return "stored"

    assert archive.with_retries(flaky, "http://pacs/dicom-web", attempts=4, first_wait=0.01) == "stored"
    assert len(calls) == 3

    def down():
        raise requests.exceptions.ConnectionError("refused")

    with pytest.raises(archive.PacsUnavailable, match="cannot reach the PACS at http://pacs/dicom-web"):
        archive.with_retries(down, "http://pacs/dicom-web", attempts=2, first_wait=0.01)


def test_credentials_refused_stop_at_once_and_a_films_own_error_is_the_films():
    calls = []

    def refused():
        calls.append(1)
        raise _http_error(401)

    with pytest.raises(archive.PacsUnavailable, match="401"):
        archive.with_retries(refused, "http://pacs/dicom-web", attempts=4, first_wait=0.01)
    assert len(calls) == 1

    def gone():
        raise _http_error(404)

    with pytest.raises(ValueError, match="404") as info:
        archive.with_retries(gone, "http://pacs/dicom-web", attempts=4, first_wait=0.01)
    assert not isinstance(info.value, archive.PacsUnavailable)


def test_a_state_file_of_another_module_or_model_is_refused(tmp_path):
    state = archive.State(tmp_path / "s.sqlite")
    state.check_meta({"module": "cobb", "model_version": "1"})
    state.check_meta({"module": "cobb", "model_version": "1"})
    with pytest.raises(archive.PacsError, match="another run"):
        state.check_meta({"module": "knee", "model_version": "1"})
    state.add([{"sop": "1.2", "study": "1", "series": "1.1", "date": "20240101", "modality": "DX", "sr": "9"}])
    state.add([{"sop": "1.2", "study": "1", "series": "1.1", "date": "20240101", "modality": "DX", "sr": "9"}])
    assert [f["sop"] for f in state.pending()] == ["1.2"]
    state.record("1.2", {"status": "failed", "reason": "unreadable"})
    assert list(state.pending()) == [] and state.count("failed") == 1
    state.reopen_failed()
    assert state.count("pending") == 1
    state.close()


class _FakeQido:
    """QIDO-RS instance searches over a list of instances, paged by offset and limit, filtered
    by Modality (what ``list_films`` asks a PACS)."""

    def __init__(self, instances):
        self.instances, self.calls = instances, []

    def search_for_instances(self, search_filters, offset, limit, fields):
        self.calls.append((dict(search_filters), offset, limit))
        found = [i for i in self.instances if i["00080060"]["Value"][0] == search_filters["Modality"]]
        return found[offset: offset + limit]


def _instance(sop, modality="DX", series_number=1, description="AP spine"):
    return {"00080018": {"Value": [sop]}, "0020000D": {"Value": ["1.1"]}, "0020000E": {"Value": [f"2.{modality}"]},
            "00080060": {"Value": [modality]}, "00080020": {"Value": ["20240105"]},
            "00200011": {"Value": [series_number]}, "0008103E": {"Value": [description]}}


def test_listing_pages_through_every_film_and_marks_those_whose_sr_is_stored(tmp_path):
    model = "0.1.0+test"
    films = [_instance(f"1.2.{k}") for k in range(23)]
    ours = _instance("9.9", "OT", 9700, "MSKMorphometry copy of film.png")  # our Secondary Capture
    srs = [_instance(archive.result_uids("1.2.4", model)["sr"], "SR", 9701), _instance("7.7", "SR")]
    client = _FakeQido([*films, ours, *srs, _instance("3.3", "CR")])
    state = archive.State(tmp_path / "s.sqlite")
    listed = archive.list_films(client, state, ["DX", "CR", "OT", "SR"], ["20240101-20240131"], 5, model)
    assert listed == 24  # 23 DX + 1 CR; not our copy (OT), not the SRs (never films)
    assert sorted(f["sop"] for f in state.pending()) == sorted({f"1.2.{k}" for k in range(23)} - {"1.2.4"} | {"3.3"})
    assert state.count("already") == 1
    dx_pages = [c for c in client.calls if c[0]["Modality"] == "DX"]
    assert [c[1] for c in dx_pages] == [0, 5, 10, 15, 20] and all(c[0]["StudyDate"] == "20240101-20240131"
                                                                  for c in client.calls)
    state.close()


def test_the_measuring_version_changes_with_the_options_that_change_a_result():
    import argparse

    def version(*extra):
        parser = argparse.ArgumentParser(prog="mskmorph archive cobb")
        archive.configure_parser(parser)
        args = parser.parse_args(["--url", "http://pacs", "--state", "s.sqlite", *extra])
        return archive.measuring_version("cobb", archive.module_values(args, "cobb"))

    clinical = version()
    assert clinical.startswith(archive.model_version("cobb")) and "convention=clinical" in clinical
    assert version("--device", "cpu") == clinical  # where it runs does not change the result
    assert version("--convention", "aasce") != clinical
    assert version("--backend", "torch") != clinical
