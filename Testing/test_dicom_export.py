"""``--dicom``: every module's result as DICOM objects that pass dicom3tools' ``dciodvfy`` without
errors and read back through highdicom with the JSON record's values, for a DICOM film (its own
UIDs referenced) and for a PNG (a Secondary Capture made first); points moved by hand appear in
the SR with the person who moved them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from CobbAngleLib import geometry
from CobbAngleLib.colors import VERTEBRA_COLORS
from MSKCommonLib.cli import main
from conftest import SAMPLE_DATA, write_dicom
from dicom_checks import dciodvfy_errors, person_observers, read_sr, require_tool, vertebra_name

SAMPLE = SAMPLE_DATA / "SpinePhantom_AP.png"
SPACING = (0.2, 0.2)


def assert_valid(*paths):
    for path in paths:
        errors = dciodvfy_errors(path)
        assert errors == [], f"{Path(path).name}: {errors}"


def spine_dicom(folder: Path) -> Path:
    """The sample spine film as a DX DICOM file (pixel spacing 0.2 mm)."""
    import cv2

    pixels = cv2.imread(str(SAMPLE), cv2.IMREAD_UNCHANGED)
    return write_dicom(folder / "spine.dcm", pixels, spacing=SPACING)


@pytest.fixture(scope="module", params=["dicom", "png"])
def cobb_run(request, tmp_path_factory):
    """``mskmorph cobb FILM --dicom`` with the network (so that there is a vertebra segmentation)."""
    require_tool("dciodvfy")
    folder = tmp_path_factory.mktemp(f"cobb-{request.param}")
    film = spine_dicom(folder) if request.param == "dicom" else SAMPLE
    out = folder / "out"
    assert main(["cobb", str(film), "--out", str(out), "--device", "cpu", "--dicom", "--no-overlay"]) == 0
    stem = film.stem
    return request.param, film, out, stem, json.loads((out / f"{stem}_cobb.json").read_text())


def test_cobb_sr_holds_the_json_angles_vertebrae_lines_and_warning(cobb_run):
    kind, film, out, stem, record = cobb_run
    sr_path, seg_path = out / f"{stem}_sr.dcm", out / f"{stem}_seg.dcm"
    assert_valid(sr_path, seg_path, *([out / f"{stem}_sc.dcm"] if kind == "png" else []))
    groups = {g["tracking"].split()[0]: g for g in read_sr(sr_path)}
    measured = [c for c in record["curves"] if c["angle_deg"] is not None]
    assert sorted(groups) == sorted(geometry.CURVE_NAMES) and measured  # absent curves say so (below)
    landmarks = np.array([[record["landmarks_px"][geometry.corner_label(v, c)] for c in range(4)]
                          for v in range(17)])
    for curve in measured:
        group = groups[curve["name"]]
        cobb = group["measurements"]["Cobb angle"]
        assert cobb["code"] == ("285285000", "SCT") and cobb["unit"] == "deg"
        assert cobb["value"] == pytest.approx(curve["angle_deg"], abs=0.01)
        ev = group["evaluations"]
        assert vertebra_name(ev["Upper end vertebra"]) == curve["upper_end_vertebra"]
        assert vertebra_name(ev["Lower end vertebra"]) == curve["lower_end_vertebra"]
        assert vertebra_name(ev["Apical vertebra"]) == curve["apex"]
        assert ev["Cobb angle convention"].startswith(record["convention"])
        expected = [geometry.line_endpoints(landmarks, geometry.VERTEBRA_NAMES.index(curve[k]["vertebra"]),
                                            curve[k]["line"]) for k in ("upper_line", "lower_line")]
        assert len(cobb["lines"]) == 2
        for line, want in zip(cobb["lines"], expected):
            np.testing.assert_allclose(line, want, atol=2e-3)
        assert group["texts"]["Landmarks from"] == record["landmarks_from"]
        if record["warning"]:
            assert group["texts"]["Check warning"] == "CHECK: " + record["warning"]
        # the angle's own CHECK (the network's confidence): "CHECK, confidence 0.41", "confidence 0.93"
        from CobbAngleLib.check import check_label

        assert check_label(record, curve["name"]).endswith(f"confidence {record['angle_confidence'][curve['name']]:.2f}")
        assert group["texts"]["Check of this angle"] == check_label(record, curve["name"])
        assert "Points edited by hand" not in group["texts"]


def test_cobb_objects_refer_to_the_film_or_its_secondary_capture(cobb_run):
    kind, film, out, stem, record = cobb_run
    sr = pydicom.dcmread(out / f"{stem}_sr.dcm")
    seg = pydicom.dcmread(out / f"{stem}_seg.dcm")
    if kind == "dicom":
        source = pydicom.dcmread(film)
        assert not (out / f"{stem}_sc.dcm").exists()
    else:
        source = pydicom.dcmread(out / f"{stem}_sc.dcm")
        import cv2

        assert source.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and source.PatientID == ""
        np.testing.assert_array_equal(source.pixel_array, cv2.imread(str(SAMPLE), cv2.IMREAD_UNCHANGED))
    for obj in (sr, seg):
        assert obj.StudyInstanceUID == source.StudyInstanceUID and obj.PatientID == source.PatientID
    group_sources = {uid for g in read_sr(sr) for uid in g["source"]}
    assert group_sources == {source.SOPInstanceUID}
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
        source.SOPInstanceUID


def test_cobb_seg_holds_the_slicer_segmentation_vertebrae_labels_and_colours(cobb_run):
    import highdicom as hd
    import slicerio

    kind, film, out, stem, record = cobb_run
    slicer_seg = slicerio.read_segmentation(str(out / f"{stem}_vertebrae.seg.nrrd"))
    assert list(slicer_seg["referenceImageExtentOffset"]) == [0, 0, 0]
    labels = slicer_seg["voxels"][..., 0].T  # IJK (column, row) -> rows x columns
    segments = sorted(slicer_seg["segments"], key=lambda s: s["labelValue"])
    assert len(segments) >= 8
    seg = hd.seg.segread(out / f"{stem}_seg.dcm")
    assert list(seg.segment_numbers) == list(range(1, len(segments) + 1))
    source_uid = pydicom.dcmread(out / f"{stem}_sc.dcm" if kind == "png" else film).SOPInstanceUID
    masks = seg.get_pixels_by_source_instance([source_uid], segment_numbers=list(seg.segment_numbers))[0]
    for number, segment in enumerate(segments, start=1):
        description = seg.get_segment_description(number)
        assert description.SegmentLabel == segment["name"]
        assert vertebra_name(description.SegmentedPropertyTypeCodeSequence[0].CodeMeaning) == segment["name"]
        rgb = np.array(hd.color.CIELabColor.from_dicom_value(description.RecommendedDisplayCIELabValue).to_rgb(),
                       float)
        np.testing.assert_allclose(rgb / 255.0, segment["color"], atol=0.02)
        np.testing.assert_allclose(segment["color"], VERTEBRA_COLORS[geometry.VERTEBRA_NAMES.index(segment["name"])],
                                   atol=1e-3)
        np.testing.assert_array_equal(masks[..., number - 1].astype(bool), labels == segment["labelValue"])


def test_cobb_sr_says_which_points_were_moved_and_by_whom(slicer_app, tmp_path):
    from CobbAngleLib import files
    from CobbAngleLib.pipeline import CobbOptions, CobbPipeline
    from CobbAngleLib.review import CobbPresenter
    from MSKCommonLib import mrml as common
    from MSKCommonLib.dicom_export import DicomOptions, DicomRequest
    from MSKCommonLib.image import read_image
    from MSKCommonLib.review import Review

    require_tool("dciodvfy")
    film = spine_dicom(tmp_path)
    image = read_image(film)
    result = CobbPipeline().run(image, CobbOptions(landmarks_file=str(SAMPLE_DATA / "SpinePhantom_AP.png.mat")))
    volume = common.volume_from_image(slicer_app.scene, image, "film")
    review = Review(CobbPresenter())
    live = review.show(slicer_app.scene, volume, result, on_existing="replace")
    before = {c.name: c for c in live.measurement.curves}
    upper = before["MT"].upper_end_vertebra  # the main thoracic curve's upper end vertebra (T6)
    node = live.node("landmarks")
    index = 4 * geometry.VERTEBRA_NAMES.index(upper)  # its sup-R corner
    xy, other = common.ras_to_pixels(volume, common.control_points(node)[index:index + 2])
    step = np.array([0.0, -4.0 * np.sign(other[1] - xy[1])])  # tilt the endplate further: the curve grows
    node.SetNthControlPointPosition(index, *common.pixels_to_ras(volume, xy + step)[0])
    out = tmp_path / "out"
    written = files.write_outputs(live, out, "film", overlay=False,
                                  dicom=DicomRequest(film, image, DicomOptions(editor="Jane Doe")))
    review.detach_all()
    record = json.loads(written["angles"].read_text())
    assert record["review"]["edited_points"] == {"landmarks": [f"{upper} sup-R"]}
    assert_valid(written["dicom_sr"])
    assert "dicom_seg" not in written  # corners from a file: no network, no segmentation
    groups = {g["tracking"].split()[0]: g for g in read_sr(written["dicom_sr"])}
    mt = next(c for c in record["curves"] if c["name"] == "MT")
    assert mt["upper_end_vertebra"] == upper and mt["angle_deg"] != pytest.approx(before["MT"].angle_deg, abs=0.5)
    for curve in record["curves"]:
        assert groups[curve["name"]]["measurements"]["Cobb angle"]["value"] == pytest.approx(curve["angle_deg"],
                                                                                             abs=0.01)
    assert all(g["texts"]["Points edited by hand"] == f"{upper} sup-R" for g in groups.values())
    moved = groups["MT"]["measurements"]["Cobb angle"]["lines"][0][0]  # the upper line starts at sup-R
    np.testing.assert_allclose(moved, record["landmarks_px"][f"{upper} sup-R"], atol=2e-3)
    np.testing.assert_allclose(moved, xy + step, atol=2e-3)
    assert person_observers(written["dicom_sr"]) == ["Doe^Jane"]


@pytest.mark.parametrize("kind", ["dicom", "png"])
def test_slicer_export_writes_the_same_objects_from_the_shown_result(slicer_app, tmp_path, kind):
    """What the Export to DICOM button writes before Slicer's database import (the import itself
    needs desktop Slicer): the logic on a volume loaded as Slicer loads it."""
    from conftest import load_like_slicer
    from MSKCommonLib.logic import ModuleLogic

    require_tool("dciodvfy")
    film = spine_dicom(tmp_path) if kind == "dicom" else SAMPLE
    logic = ModuleLogic("cobb")
    volume = load_like_slicer(slicer_app, film, "Spine film")
    try:
        live = logic.process(volume, logic.options(landmarks_file=str(SAMPLE_DATA / "SpinePhantom_AP.png.mat")))
        record = live.record()
        written = logic.export_dicom(live, tmp_path / "export", editor="Jane Doe")
    finally:
        logic.cleanup()
    assert sorted(written) == (["dicom_sr"] if kind == "dicom" else ["dicom_sc", "dicom_sr"])
    assert written["dicom_sr"].name == "Spine_film_sr.dcm"
    assert_valid(*written.values())
    groups = {g["tracking"].split()[0]: g for g in read_sr(written["dicom_sr"])}
    for curve in record["curves"]:
        assert groups[curve["name"]]["measurements"]["Cobb angle"]["value"] == pytest.approx(curve["angle_deg"],
                                                                                             abs=0.01)
    source = pydicom.dcmread(film if kind == "dicom" else written["dicom_sc"])
    assert {uid for g in groups.values() for uid in g["source"]} == {source.SOPInstanceUID}
    assert person_observers(written["dicom_sr"]) == []  # nothing edited: no person observer


@pytest.fixture(scope="module")
def knee_film(tmp_path_factory):
    from KneeLandmarksTools import phantom

    out = tmp_path_factory.mktemp("knee-films")
    phantom.generate(out, n=1, seed=2, single_knee_fraction=0.0, spacing_range=(0.3, 0.3))
    return out / "knee_002_0000.dcm"


@pytest.mark.parametrize("kind", ["dicom", "png"])
def test_knee_sr_holds_the_json_widths_and_their_lines(knee_film, tmp_path, kind):
    import cv2

    require_tool("dciodvfy")
    if kind == "png":
        ds = pydicom.dcmread(knee_film)
        film = tmp_path / "knee.png"
        cv2.imwrite(str(film), ds.pixel_array)
        extra = ["--spacing", "0.3"]
    else:
        film, extra = knee_film, []
    out = tmp_path / "out"
    assert main(["knee", str(film), "--out", str(out), "--device", "cpu", "--dicom", "--no-overlay", *extra]) == 0
    stem = film.stem
    record = json.loads((out / f"{stem}_knee.json").read_text())
    sr_path = out / f"{stem}_sr.dcm"
    assert_valid(sr_path, *([out / f"{stem}_sc.dcm"] if kind == "png" else []))
    assert not (out / f"{stem}_seg.dcm").exists()
    groups = {g["tracking"]: g for g in read_sr(sr_path)}
    assert sorted(groups) == sorted(f"{k['side']} knee" for k in record["knees"]) and len(groups) == 2
    for knee in record["knees"]:
        group = groups[f"{knee['side']} knee"]
        for compartment in ("medial", "lateral"):
            m = group["measurements"][f"{compartment.capitalize()} minimum joint space width"]
            assert m["unit"] == "mm" and m["value"] == pytest.approx(knee[f"jsw_{compartment}_mm"], abs=0.01)
            np.testing.assert_allclose(m["lines"][0], knee[f"jsw_{compartment}_points_px"], atol=2e-3)
    source = pydicom.dcmread(knee_film if kind == "dicom" else out / f"{stem}_sc.dcm")
    assert {uid for g in groups.values() for uid in g["source"]} == {source.SOPInstanceUID}
    if kind == "png":
        assert [float(v) for v in source.PixelSpacing] == [0.3, 0.3]  # the spacing the widths were measured with


def test_back_photo_becomes_a_secondary_capture_and_the_sr_holds_the_measures(tmp_path):
    from SpineMorphologyTools import phantom

    require_tool("dciodvfy")
    photo = phantom.make_back_photo(phantom.photo_seed(7, 2))
    paths = phantom.write_photo(photo, tmp_path, "patient")
    out = tmp_path / "out"
    assert main(["back", str(paths["photo"]), "--depth", str(paths["depth"]), "--keypoints", str(paths["truth"]),
                 "--focal-px", str(photo.camera.focal_px), "--out", str(out), "--no-overlay", "--dicom",
                 "--patient-name", "Doe^John", "--patient-id", "P42"]) == 0
    record = json.loads((out / "patient_back.json").read_text())
    sc = pydicom.dcmread(out / "patient_sc.dcm")
    assert_valid(out / "patient_sr.dcm", out / "patient_sc.dcm")
    assert sc.PhotometricInterpretation == "RGB" and sc.PatientID == "P42" and str(sc.PatientName) == "Doe^John"
    import cv2

    np.testing.assert_array_equal(sc.pixel_array, cv2.imread(str(paths["photo"]))[..., ::-1])
    (group,) = read_sr(out / "patient_sr.dcm")
    measures = {k: v for k, v in record["measures"].items() if isinstance(v, (int, float))}
    by_code = {m["code"][0]: m for m in group["measurements"].values()}
    assert sorted(by_code) == sorted(measures)
    for key, value in measures.items():
        assert by_code[key]["value"] == pytest.approx(value, abs=0.01)
        assert by_code[key]["unit"] == ("deg" if key.endswith("_deg") else "mm")
    np.testing.assert_allclose(by_code["lateral_deviation_max"]["lines"][0], record["midline_px"], atol=2e-3)
    assert group["source"] == [sc.SOPInstanceUID]
    sr = pydicom.dcmread(out / "patient_sr.dcm")
    assert sr.StudyInstanceUID == sc.StudyInstanceUID and sr.PatientID == "P42"


def test_a_dicom_without_uids_is_refused_with_its_reason(tmp_path):
    import cv2

    pixels = cv2.imread(str(SAMPLE), cv2.IMREAD_UNCHANGED)
    film = write_dicom(tmp_path / "nouid.dcm", pixels, spacing=SPACING)
    ds = pydicom.dcmread(film)
    del ds.StudyInstanceUID
    ds.save_as(film, enforce_file_format=True)
    out = tmp_path / "out"
    assert main(["cobb", str(film), "--landmarks", str(SAMPLE_DATA / "SpinePhantom_AP.png.mat"), "--out", str(out),
                 "--dicom", "--no-overlay"]) == 1
    reason = json.loads((out / "cobb.json").read_text())["results"][0]["error"]
    assert "StudyInstanceUID" in reason and "SR" in reason
    assert sorted(p.name for p in out.iterdir()) == ["cobb.csv", "cobb.json"]  # nothing written for the film


def test_knee_sr_names_the_moved_landmark_on_its_own_knee(knee_film, slicer_app, tmp_path):
    from conftest import load_like_slicer
    from MSKCommonLib import mrml as common
    from MSKCommonLib.logic import ModuleLogic

    require_tool("dciodvfy")
    logic = ModuleLogic("knee")
    volume = load_like_slicer(slicer_app, knee_film, "knee film")
    try:
        live = logic.process(volume, logic.options(device="cpu"))
        node = live.node("left.landmarks")
        ras = common.control_points(node)[2]
        node.SetNthControlPointPosition(2, ras[0] + 1.5, ras[1], ras[2])  # T3 of the left knee, 1.5 mm
        record = live.record()
        written = logic.export_dicom(live, tmp_path / "export", source_file=knee_film, editor="Jane Doe")
    finally:
        logic.cleanup()
    assert record["review"]["edited_points"] == {"left.landmarks": ["T3"]}
    assert_valid(written["dicom_sr"])
    groups = {g["tracking"]: g for g in read_sr(written["dicom_sr"])}
    assert groups["left knee"]["texts"]["Points edited by hand"] == "T3"
    assert "Points edited by hand" not in groups["right knee"]["texts"]
    for knee in record["knees"]:
        m = groups[f"{knee['side']} knee"]["measurements"]
        assert m["Medial minimum joint space width"]["value"] == pytest.approx(knee["jsw_medial_mm"], abs=0.01)
        assert m["Lateral minimum joint space width"]["value"] == pytest.approx(knee["jsw_lateral_mm"], abs=0.01)
    assert person_observers(written["dicom_sr"]) == ["Doe^Jane"]


C_CURVE = [10] * 5 + [5, 0, -5] + [-10] * 9  # one main thoracic curve: PT and TL/L are on the film, straight


def absent_curve_film(folder: Path):
    """A DX film and the corners of a spine with one curve (T1-T9) as an AASCE .mat landmark file."""
    import scipy.io

    from conftest import synthetic_spine

    pixels = np.random.default_rng(5).integers(40, 200, (2300, 900), dtype=np.uint8)
    film = write_dicom(folder / "single.dcm", pixels, spacing=SPACING)
    marks = folder / "single.mat"
    scipy.io.savemat(marks, {"p2": synthetic_spine(C_CURVE).reshape(68, 2)})
    return film, marks


def test_a_film_with_an_absent_curve_writes_a_valid_sr_that_says_no_curve(tmp_path, capsys):
    """Issue 26: a curve that is absent is "no curve" (no angle, never 0.0) in the JSON, the CSV and
    the printed line, and with --dicom the SR (it failed with a TypeError before) has its group with
    the status and no measurement."""
    import csv

    require_tool("dciodvfy")
    film, marks = absent_curve_film(tmp_path)
    out = tmp_path / "out"
    assert main(["cobb", str(film), "--landmarks", str(marks), "--out", str(out), "--dicom"]) == 0
    printed = capsys.readouterr().out
    assert "PT no curve" in printed and "TL_L no curve" in printed and "MT 20.0 deg" in printed
    record = json.loads((out / "single_cobb.json").read_text())
    curves = {c["name"]: c for c in record["curves"]}
    assert curves["PT"]["angle_deg"] is None and curves["PT"]["role"] == "no curve"
    assert curves["TL_L"]["angle_deg"] is None and curves["TL_L"]["upper_end_vertebra"] is None
    with open(out / "cobb.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["PT"], row["PT_status"], row["TL_L"], row["TL_L_status"]) == ("", "no curve", "", "no curve")
    assert float(row["MT"]) == pytest.approx(20.0) and row["MT_status"] == "measured"
    assert_valid(out / "single_sr.dcm")
    groups = {g["tracking"].split()[0]: g for g in read_sr(out / "single_sr.dcm")}
    assert sorted(groups) == sorted(geometry.CURVE_NAMES)
    for name in ("PT", "TL_L"):
        assert groups[name]["measurements"] == {} and groups[name]["evaluations"]["Curve status"] == "no curve"
    assert groups["MT"]["measurements"]["Cobb angle"]["value"] == pytest.approx(20.0, abs=0.01)
    assert "Curve status" not in groups["MT"]["evaluations"]
