"""``mskmorph pacs compare`` against a real PACS (Debian's Orthanc with DICOMweb, as in
test_pacs_orthanc.py): two films of one patient in two studies a year apart, the prior one with our
SR; the command finds the prior, compares and stores the follow-up SR in the current study."""
from __future__ import annotations

import json

import cv2
import pydicom
import pytest

from CobbAngleTools.phantom import render_follow_up, write_follow_up
from MSKCommonLib.cli import main
from conftest import write_dicom
from dicom_checks import dciodvfy_errors, read_sr, require_tool
from test_pacs_orthanc import PASSWORD, USER, download, running_orthanc, series_of, store


def film(path, png, study_date, patient="FOLLOW1"):
    ds = pydicom.dcmread(write_dicom(path, cv2.imread(str(png), cv2.IMREAD_GRAYSCALE), spacing=(0.2, 0.2)))
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.StudyTime = patient, "Follow^Up", study_date, "101500"
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_pacs_compare_finds_the_prior_and_stores_the_follow_up(tmp_path, monkeypatch, capsys):
    require_tool("dciodvfy")
    pair = write_follow_up(render_follow_up(3, 8.0), tmp_path / "phantom", "spine")
    with running_orthanc() as server:
        monkeypatch.setenv("MSKMORPH_PACS_USERNAME", USER)
        monkeypatch.setenv("MSKMORPH_PACS_PASSWORD", PASSWORD)
        prior = film(tmp_path / "prior.dcm", pair["prior"]["image"], "20251201")
        current = film(tmp_path / "current.dcm", pair["current"]["image"], "20261201")
        other = film(tmp_path / "other.dcm", pair["current"]["image"], "20261202", patient="SOMEONE-ELSE")
        for path in ("prior.dcm", "current.dcm", "other.dcm"):
            store(server, tmp_path / path)
        # our SR of the prior film, stored in its study as mskmorph pacs cobb stores it
        first = tmp_path / "first"
        assert main(["cobb", str(tmp_path / "prior.dcm"), "--out", str(first), "--dicom",
                     "--landmarks", str(pair["prior"]["landmarks"])]) == 0
        store(server, first / "prior_sr.dcm")
        prior_sr = pydicom.dcmread(first / "prior_sr.dcm")
        capsys.readouterr()

        out = tmp_path / "work"
        # the prior reading is what its SR recorded (corners from a file: a reader's); the current
        # film's corners are given too, so that the change is exact
        code = main(["pacs", "compare", "--url", server["dicomweb"], "--patient-id", "FOLLOW1", "--out", str(out),
                     "--current-landmarks", str(pair["current"]["landmarks"]), "--device", "cpu"])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        assert PASSWORD not in printed.out + printed.err
        assert f"prior: {prior.SOPInstanceUID}" in printed.out and "with its SR" in printed.out
        assert f"current: {current.SOPInstanceUID}" in printed.out
        result = json.loads((out / "follow_up" / "follow_up.json").read_text())
        assert (result["prior"], result["current"]) == (f"{prior.SOPInstanceUID}.dcm", f"{current.SOPInstanceUID}.dcm")
        mt = next(c for c in result["curves"] if c["name"] == "MT")
        assert mt["verdict"] == "progressed" and mt["change_deg"] == pytest.approx(8.0, abs=2.0)
        recorded = {g["tracking"].split()[0]: g for g in read_sr(prior_sr)}["MT"]
        assert mt["prior_deg"] == pytest.approx(recorded["measurements"]["Cobb angle"]["value"], abs=1e-6)
        assert "as its report recorded it" in mt["levels_note"] and mt["interval_deg"] == pytest.approx(6.3)

        found = series_of(server, current.StudyInstanceUID)
        assert sorted(found.values()) == ["DX", "SR"]
        (sr,) = download(server, current.StudyInstanceUID, next(u for u, m in found.items() if m == "SR"))
        path = tmp_path / "stored_sr.dcm"
        sr.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []
        other_refs = {i.ReferencedSOPInstanceUID for s in sr.PertinentOtherEvidenceSequence
                      for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
        assert other_refs == {prior.SOPInstanceUID, prior_sr.SOPInstanceUID}
        groups = {g["tracking"].split()[0]: g for g in read_sr(sr)}
        assert groups["MT"]["evaluations"]["Progression verdict"] == "progressed"
        assert other.SOPInstanceUID not in str(result)

        # a UID that is not among the patient's films: one line, exit 1, nothing stored
        code = main(["pacs", "compare", "--url", server["dicomweb"], "--patient-id", "FOLLOW1",
                     "--prior", other.SOPInstanceUID, "--no-store"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and "not among the patient's films" in err[0]
        # a patient with one film: nothing to compare
        code = main(["pacs", "compare", "--url", server["dicomweb"], "--patient-id", "SOMEONE-ELSE"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and "a follow-up needs two" in err[-1]
