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
