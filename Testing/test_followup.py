"""Follow-up of one patient's two films (``mskmorph compare``, ``CobbAngleLib.followup``): the
phantom of one spine at two times, a film against its own re-acquisition, end vertebrae that moved,
the interval from the tool's repeatability or the readers', and the DICOM SR of both films."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pydicom
import pytest

from CobbAngleLib import followup, geometry
from CobbAngleLib.pipeline import result_from_landmarks
from MSKCommonLib.cli import main
from MSKCommonLib.result import ImageInfo
from conftest import DOUBLE_CURVE_TILTS, SAMPLE_DATA, synthetic_spine, write_dicom
from dicom_checks import dciodvfy_errors, read_sr, require_tool, vertebra_name


def record(tilts, source="network (cpu)", edited=None, check=None, spacing=None):
    """A clinical record of a synthetic spine (what NAME_cobb.json holds)."""
    info = ImageInfo("film.png", 1000, 2400, spacing)
    rec = result_from_landmarks(info, synthetic_spine(tilts), "clinical", source).to_record()
    if edited is not None:
        rec["review"] = {"edited": True, "edited_points": {"landmarks": edited}}
    if check is not None:
        rec["check"] = check
    return rec


def readings(prior, current):
    return followup.reading_from_record(prior), followup.reading_from_record(current)


SDC = {"PT": 4.1, "MT": 4.1, "TL_L": 4.1, "_source": "the issue's figure"}


@pytest.fixture(scope="module")
def phantom_pair(tmp_path_factory):
    """`mskmorph phantom spine --follow-up 8`: one spine at two times, the truth of the change."""
    out = tmp_path_factory.mktemp("follow-up-phantom")
    assert main(["phantom", "spine", "--follow-up", "8", "--out", str(out), "--seed", "0"]) == 0
    truth = json.loads((out / "spine_phantom_0000_follow_up.json").read_text())
    return out, truth


def test_phantom_renders_one_spine_at_two_times_with_exact_labels(phantom_pair):
    out, truth = phantom_pair
    prior = cv2.imread(str(out / "spine_phantom_0000_prior.png"), cv2.IMREAD_GRAYSCALE)
    current = cv2.imread(str(out / "spine_phantom_0000_current.png"), cv2.IMREAD_GRAYSCALE)
    assert prior.shape == current.shape
    labels = {k: np.array(json.loads((out / f"spine_phantom_0000_{k}.json").read_text())["landmarks_px"]).reshape(17, 4, 2)
              for k in ("prior", "current")}
    mt = truth["curves"]["MT"]
    upper, lower = (geometry.VERTEBRA_NAMES.index(n) for n in mt["end_vertebrae"])
    # the labels' own angles: exactly +8 deg between the prior's end vertebrae
    a = geometry.curve_between(labels["prior"], "MT", upper, lower).angle_deg
    b = geometry.curve_between(labels["current"], "MT", upper, lower).angle_deg
    assert b - a == pytest.approx(8.0, abs=0.01) and mt["change_deg"] == pytest.approx(8.0, abs=0.01)
    assert a == pytest.approx(geometry.cobb_angles(labels["prior"], "clinical").curve("MT").angle_deg)
    for name in ("PT", "TL_L"):  # the rest unchanged
        assert abs(truth["curves"][name]["change_deg"]) < 0.5
    # the same patient: every vertebra as wide (mm) as before, and the same film otherwise
    spacing = {k: json.loads((out / f"spine_phantom_0000_{k}.json").read_text())["pixel_spacing_mm"][0]
               for k in ("prior", "current")}
    widths = {k: np.linalg.norm(labels[k][:, 1] - labels[k][:, 0], axis=1) * spacing[k] for k in labels}
    assert np.allclose(widths["prior"], widths["current"], atol=0.01)
    assert np.corrcoef(prior.ravel().astype(float), current.ravel().astype(float))[0, 1] > 0.85


def test_phantom_pair_at_plus_8_deg_is_progressed(phantom_pair, tmp_path, capsys):
    out, truth = phantom_pair
    code = main(["compare", str(out / "spine_phantom_0000_prior.png"), str(out / "spine_phantom_0000_current.png"),
                 "--out", str(tmp_path), "--prior-landmarks", str(out / "spine_phantom_0000_prior.png.mat"),
                 "--current-landmarks", str(out / "spine_phantom_0000_current.png.mat")])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads((tmp_path / "follow_up.json").read_text())
    curves = {c["name"]: c for c in result["curves"]}
    assert curves["MT"]["verdict"] == "progressed"
    assert curves["MT"]["change_deg"] == pytest.approx(truth["curves"]["MT"]["change_deg"], abs=2.0)
    assert curves["MT"]["end_vertebrae"] == truth["curves"]["MT"]["end_vertebrae"]
    for name in ("PT", "TL_L"):
        assert curves[name]["verdict"] == "stable"
    # corners from a file are a reader's: the interval is the readers' with the end vertebrae given
    assert curves["MT"]["interval_deg"] == pytest.approx(followup.READER_LIMITS_DEG["between_given_ends"])
    line = (tmp_path / "follow_up.txt").read_text()
    assert "MT (T" in line and "progressed" in line and line.strip() in printed
    rows = (tmp_path / "follow_up.csv").read_text().splitlines()
    assert rows[0].startswith("prior,current,curve") and len(rows) == 1 + len(result["curves"])
    figure = cv2.imread(str(tmp_path / "follow_up.png"))
    assert figure.shape[1] > 2 * figure.shape[0] * 0.3  # two films side by side


def test_a_film_and_its_reacquisition_are_stable(tmp_path):
    from CobbAngleTools.repeatability import reacquire
    from MSKCommonLib.image import read_image

    film = SAMPLE_DATA / "SpinePhantom_AP.png"
    x, _, _ = reacquire(read_image(film).pixels, np.random.default_rng(0))  # turned, rescaled, other exposure
    again = tmp_path / "again.png"
    cv2.imwrite(str(again), np.round(x * 255).astype(np.uint8))
    figures = tmp_path / "repeatability.json"
    figures.write_text(json.dumps({"command": "test", "films": 1, "repeats": 2, "measures": {
        "clinical_same_levels": {c: {"smallest_detectable_change_deg": 4.1} for c in geometry.CURVE_NAMES}}}))
    out = tmp_path / "out"
    assert main(["compare", str(film), str(again), "--out", str(out), "--device", "cpu", "--no-dicom",
                 "--repeatability", str(figures)]) == 0
    curves = json.loads((out / "follow_up.json").read_text())["curves"]
    assert {c["name"] for c in curves} == {"PT", "MT", "TL_L"}
    for c in curves:  # the network read the same spine twice; with an SDC of 4.1 deg: stable
        assert c["verdict"] == "stable", c
        assert abs(c["change_deg"]) < followup.PROGRESSION_DEG
        assert c["interval_deg"] == pytest.approx(4.1)
    # the shipped figures: both films read by the network, the interval is the tool's SDC itself
    shipped = followup.load_repeatability()
    prior, current = (followup.reading_from_record(json.loads((out / f"{k}_cobb.json").read_text()))
                      for k in ("prior", "current"))
    result = followup.compare(prior, current)
    for c in result.curves:
        assert c.interval_deg == pytest.approx(shipped[c.name])
        wide = shipped[c.name] > followup.WIDEST_INTERVAL_DEG
        assert c.verdict == ("cannot tell" if wide else "stable"), c


def test_changed_end_vertebrae_are_reported_and_the_prior_levels_measured():
    later = list(DOUBLE_CURVE_TILTS)
    later[4], later[5], later[11] = 14, 24, -20  # the thoracic curve now runs T6-T12
    result = followup.compare(*readings(record(DOUBLE_CURVE_TILTS), record(later)), repeatability=SDC)
    mt = result.curve("MT")
    assert mt.end_vertebrae == ["T5", "T11"] and mt.levels_from == "prior"
    assert mt.prior_deg == pytest.approx(35.0, abs=0.01) and mt.current_deg == pytest.approx(later[4] - later[10], abs=0.01)
    assert mt.current_own_end_vertebrae == ["T6", "T12"] and mt.current_own_deg == pytest.approx(44.0, abs=0.01)
    assert "the curve now spans T6-T12 (44.0 deg)" in mt.levels_note
    assert "now spans T6-T12" in result.report_line()
    # unchanged levels say nothing
    same = followup.compare(*readings(record(DOUBLE_CURVE_TILTS), record(DOUBLE_CURVE_TILTS)), repeatability=SDC)
    assert all(c.levels_note == "" and c.change_deg == pytest.approx(0.0, abs=0.01) and c.verdict == "stable" for c in same.curves)


def test_interval_from_the_tool_or_the_readers():
    later = list(DOUBLE_CURVE_TILTS)
    later[4] += 6  # MT and PT grow by 6 deg at their levels (T5 is their shared end vertebra)
    prior, current = record(DOUBLE_CURVE_TILTS), record(later)
    network = followup.compare(*readings(prior, current), repeatability=SDC).curve("MT")
    assert network.change_deg == pytest.approx(6.0, abs=0.01) and network.interval_deg == pytest.approx(4.1)
    assert network.verdict == "progressed"
    # a reader moved a corner of T8 on the current film: the readers' variability for that film
    edited = record(later, edited=["T8 inf-R"])
    mixed = followup.compare(*readings(prior, edited), repeatability=SDC).curve("MT")
    assert mixed.interval_deg == pytest.approx(math.sqrt((4.1 ** 2 + 6.3 ** 2) / 2))
    assert "reader" in mixed.interval_from and "network" in mixed.interval_from
    # moved points outside the curve (L4) leave the network's figure
    assert followup.compare(*readings(prior, record(later, edited=["L4 sup-L"])), repeatability=SDC).curve(
        "MT").interval_deg == pytest.approx(4.1)
    # both films edited: 6.3 between readers, 3.8 for one reader
    both = readings(record(DOUBLE_CURVE_TILTS, edited=["T6 sup-R"]), edited)
    assert followup.compare(*both, repeatability=SDC).curve("MT").interval_deg == pytest.approx(6.3)
    assert followup.compare(*both, repeatability=SDC).curve("MT").verdict == "cannot tell"  # +6 inside +-6.3
    one = followup.compare(*both, repeatability=SDC, same_reader=True).curve("MT")
    assert one.interval_deg == pytest.approx(3.8) and one.verdict == "progressed"


def test_cannot_tell_says_why():
    later = list(DOUBLE_CURVE_TILTS)
    later[4] += 9
    prior = record(DOUBLE_CURVE_TILTS)
    flagged = record(later, check={"PT": False, "MT": True, "TL_L": False})
    mt = followup.compare(*readings(prior, flagged), repeatability=SDC).curve("MT")
    assert mt.verdict == "cannot tell" and "CHECK on the current film's MT angle" in mt.reason
    # no repeatability figures for the network's reading
    none = followup.compare(*readings(prior, record(later)), repeatability={}).curve("MT")
    assert none.verdict == "cannot tell" and "repeatability" in none.reason
    # the prior's end vertebra is not on the current film (a film cropped above T6)
    cropped = record(later)
    for label in list(cropped["landmarks_px"]):
        if label.split()[0] in ("T1", "T2", "T3", "T4", "T5"):
            cropped["landmarks_px"][label] = [None, None]
    mt = followup.compare(*readings(prior, cropped), repeatability=SDC).curve("MT")
    assert mt.verdict == "cannot tell" and mt.change_deg is None and "not measurable on the current film" in mt.reason
    # an interval wider than between two readers
    wide = followup.compare(*readings(prior, record(later)), repeatability={"MT": 9.0}).curve("MT")
    assert wide.verdict == "cannot tell" and "wider than between two readers" in wide.reason
    # a curve that shrank beyond the interval
    smaller = list(DOUBLE_CURVE_TILTS)
    smaller[4] -= 10
    assert followup.compare(*readings(prior, record(smaller)), repeatability=SDC).curve("MT").verdict == "decreased"


def test_a_record_that_cannot_be_compared_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "x_cobb.json"
    bad.write_text(json.dumps({"image": "x.png"}))
    assert main(["compare", str(bad), str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a Cobb record" in err[0]
    assert not (tmp_path / "o").exists()


def test_sr_references_both_films_and_the_prior_sr_and_passes_dciodvfy(phantom_pair, tmp_path):
    require_tool("dciodvfy")
    out, truth = phantom_pair
    films = tmp_path / "films"
    films.mkdir()
    paths = {}
    for k in ("prior", "current"):
        pixels = cv2.imread(str(out / f"spine_phantom_0000_{k}.png"), cv2.IMREAD_GRAYSCALE)
        paths[k] = write_dicom(films / f"{k}.dcm", pixels, spacing=(0.2, 0.2))
    # the prior film measured earlier, with its SR (mskmorph cobb --dicom); the record is compared
    first = films / "first"
    assert main(["cobb", str(paths["prior"]), "--out", str(first), "--dicom", "--landmarks",
                 str(out / "spine_phantom_0000_prior.png.mat")]) == 0
    prior_sr = pydicom.dcmread(first / "prior_sr.dcm")
    result_dir = tmp_path / "follow"
    assert main(["compare", str(first / "prior_cobb.json"), str(paths["current"]), "--out", str(result_dir),
                 "--current-landmarks", str(out / "spine_phantom_0000_current.png.mat")]) == 0
    sr_path = result_dir / "follow_up_sr.dcm"
    assert dciodvfy_errors(sr_path) == []
    sr = pydicom.dcmread(sr_path)
    prior, current = pydicom.dcmread(paths["prior"]), pydicom.dcmread(paths["current"])
    assert sr.StudyInstanceUID == current.StudyInstanceUID and sr.PatientID == current.PatientID
    same = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
            for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    other = {i.ReferencedSOPInstanceUID for s in sr.PertinentOtherEvidenceSequence
             for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert same == {current.SOPInstanceUID}  # the prior film and its SR lie in the prior study
    assert other == {prior.SOPInstanceUID, prior_sr.SOPInstanceUID}
    result = json.loads((result_dir / "follow_up.json").read_text())
    groups = {g["tracking"].split()[0]: g for g in read_sr(sr)}
    assert sorted(groups) == sorted(c["name"] for c in result["curves"])
    mt = next(c for c in result["curves"] if c["name"] == "MT")
    g = groups["MT"]
    assert g["measurements"]["Cobb angle"]["value"] == pytest.approx(mt["current_deg"], abs=0.01)
    assert g["measurements"]["Cobb angle on the prior film"]["value"] == pytest.approx(mt["prior_deg"], abs=0.01)
    assert g["measurements"]["Change of the Cobb angle since the prior film"]["value"] == pytest.approx(8.0, abs=0.05)
    assert g["evaluations"]["Progression verdict"] == "progressed"
    assert vertebra_name(g["evaluations"]["Upper end vertebra"]) == mt["end_vertebrae"][0]
    assert set(g["source"]) == {prior.SOPInstanceUID, current.SOPInstanceUID}
    # the lines of the angle on the current film are its endplates at the prior's levels
    lines = g["measurements"]["Cobb angle"]["lines"]
    labels = np.array(json.loads((out / "spine_phantom_0000_current.json").read_text())["landmarks_px"]).reshape(17, 4, 2)
    upper = geometry.VERTEBRA_NAMES.index(mt["end_vertebrae"][0])
    assert np.allclose(lines[0], labels[upper, :2], atol=0.01)
    def walk(items):
        for item in items:
            yield item
            yield from walk(item.get("ContentSequence", []))

    composite = [item for item in walk(sr.ContentSequence) if item.ValueType == "COMPOSITE"]
    assert len(composite) == len(groups) and all(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == prior_sr.SOPInstanceUID
                             for item in composite)


def test_the_prior_reading_recorded_in_its_sr_stands_for_the_prior(tmp_path):
    """A prior SR (CobbAngleLib.dicom) whose MT corners a reader moved: its angle and end vertebrae
    are the prior reading, with the readers' interval; a move outside the curve leaves the network's."""
    from CobbAngleLib import dicom
    from CobbAngleLib.followup_dicom import recorded_curves

    from MSKCommonLib.dicom_export import source_dataset

    film = write_dicom(tmp_path / "film.dcm", np.zeros((2400, 1000), np.uint8), spacing_kw=None)
    source, _ = source_dataset(film, None, tmp_path, "film")
    moved = record(DOUBLE_CURVE_TILTS, edited=["T8 inf-R"])
    recorded = recorded_curves(dicom.build(source, moved)[0])
    assert recorded["MT"] == {"angle_deg": pytest.approx(35.0, abs=0.01), "end_vertebrae": ["T5", "T11"],
                              "by_reader": True}
    assert recorded["TL_L"]["by_reader"] is False  # T8 is not one of T11-L3
    later = list(DOUBLE_CURVE_TILTS)
    later[4] += 6
    # the network re-reads the prior film differently (T5 tilted 3 deg more); the report's reading stands
    reread = list(DOUBLE_CURVE_TILTS)
    reread[4] += 3
    result = followup.compare(*readings(record(reread), record(later)), repeatability=SDC, prior_recorded=recorded)
    mt = result.curve("MT")
    assert mt.prior_deg == pytest.approx(35.0, abs=0.01) and mt.change_deg == pytest.approx(6.0, abs=0.02)
    assert mt.interval_deg == pytest.approx(math.sqrt((6.3 ** 2 + 4.1 ** 2) / 2))
    assert result.curve("TL_L").interval_deg == pytest.approx(4.1)
    # an AASCE-convention SR records no clinical curve
    aasce = record(DOUBLE_CURVE_TILTS)
    aasce.update(geometry.cobb_angles(synthetic_spine(DOUBLE_CURVE_TILTS), "aasce", image_height=2400).to_dict())
    assert recorded_curves(dicom.build(source, aasce)[0]) == {}
