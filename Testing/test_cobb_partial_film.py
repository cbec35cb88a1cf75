"""A partial film (issue 25, item 3): corners of only some vertebrae (T6-L5, T3-L5), the others NaN,
as the predictor gives them for a film that does not show T1-L5. Everything after the prediction
names what the film shows: the record, the CSV, the landmark files and their round trip, the review
layer's nodes (points, level labels, segments), measuring after an edit, the end vertebrae a reader
may choose, the overlay, and the DICOM SR and SEG. Built from a constructed spine with rows set to
NaN (``mskmorph cobb --landmarks`` and the review layer on real Slicer nodes)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from CobbAngleLib import geometry
from CobbAngleLib.landmarks_io import write_aasce_mat
from MSKCommonLib import mrml as common
from MSKCommonLib.cli import main
from conftest import DOUBLE_CURVE_TILTS, synthetic_spine

T6 = geometry.VERTEBRA_NAMES.index("T6")


def partial_film(folder: Path, name: str, first: int):
    """A drawn film showing vertebrae ``first``..L5 of a double-curve spine and its landmark file
    with NaN rows for the vertebrae above (as the predictor's ``landmarks`` for such a film)."""
    spine = synthetic_spine(DOUBLE_CURVE_TILTS, spacing=120, width=95, height=80, x0=450, y0=170)
    spine[:first] = np.nan
    image = np.full((2300, 900), 40, np.uint8)
    for q in spine[first:]:
        cv2.fillPoly(image, [q[[0, 1, 3, 2]].round().astype(np.int32)], 200)
    cv2.imwrite(str(folder / name), image)
    write_aasce_mat(folder / f"{name}.mat", spine)
    return folder / name, spine


def test_a_film_showing_t6_l5_is_measured_written_and_read_back_with_only_its_vertebrae(tmp_path, slicer_app):
    from CobbAngleLib.pipeline import record_landmarks
    from dicom_checks import dciodvfy_errors, read_sr, require_tool

    require_tool("dciodvfy")
    films = tmp_path / "films"
    films.mkdir()
    film, spine = partial_film(films, "t6.png", T6)
    out = tmp_path / "out"
    assert main(["cobb", str(film), "--landmarks", str(films), "--out", str(out), "--dicom"]) == 0
    expected = geometry.cobb_angles(spine, image_height=2300)
    # the record: the shown vertebrae's corners only, never "NaN" (which JSON readers refuse)
    text = (out / "t6_cobb.json").read_text()
    assert "NaN" not in text and "nan" not in text.lower().replace("nans", "")
    record = json.loads(text)
    shown = [geometry.corner_label(i, c) for i in range(T6, 17) for c in range(4)]
    assert list(record["landmarks_px"]) == shown
    assert record["vertebrae_present"] == list(geometry.VERTEBRA_NAMES[T6:])
    np.testing.assert_allclose(record_landmarks(record), spine, atol=1e-3)  # NaN where NaN
    curves = {c["name"]: c for c in record["curves"]}
    assert curves["PT"]["angle_deg"] is None and curves["PT"]["role"] == geometry.NOT_ON_FILM
    assert curves["MT"]["angle_deg"] == pytest.approx(expected.curve("MT").angle_deg)
    assert curves["MT"]["upper_end_vertebra"] == "T6" and "film edge" in curves["MT"]["role"]
    # the CSV: an empty PT with its status, and which vertebrae the film shows
    with open(out / "cobb.csv", newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["PT"], row["PT_status"], row["vertebrae"]) == ("", "not on film", "T6-L5")
    assert float(row["MT"]) == pytest.approx(expected.curve("MT").angle_deg, abs=1e-3)
    assert "nan" not in (out / "cobb.csv").read_text().lower()
    # the landmark file Slicer loads: 48 corners labelled T6 sup-R .. L5 inf-L, mapped back by label
    from MSKCommonLib.image import read_image

    app = slicer_app
    volume = common.volume_from_image(app.scene, read_image(film), "t6")
    node = common.read_node(app.scene, "vtkMRMLMarkupsFiducialNode", out / "t6_landmarks.mrk.json")
    labels = [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())]
    assert labels == shown
    read_back = geometry.corners_by_label(common.ras_to_pixels(volume, common.control_points(node)), labels)
    np.testing.assert_allclose(read_back, spine, atol=1e-3)
    # the SR: PT "not on film", every group names the vertebrae measured; valid DICOM
    sr = out / "t6_sr.dcm"
    assert dciodvfy_errors(sr) == []
    groups = {g["tracking"].split()[0]: g for g in read_sr(sr)}
    assert groups["PT"]["evaluations"]["Curve status"] == "not on film" and not groups["PT"]["measurements"]
    assert all(g["texts"]["Vertebrae on the film"] == "T6-L5" for g in groups.values())
    assert groups["MT"]["measurements"]["Cobb angle"]["value"] == pytest.approx(expected.curve("MT").angle_deg, abs=0.01)
    assert "film edge" in groups["MT"]["texts"]["Curve role"]  # the edge note, beside the coded role
    # run again on the same output: the files written are read back as unedited (no refusal)
    assert main(["cobb", str(film), "--landmarks", str(films), "--out", str(out), "--no-overlay"]) == 0
    # the AASCE computation needs T1-L5: refused with the geometry's reason
    assert main(["cobb", str(film), "--landmarks", str(films), "--out", str(tmp_path / "aasce"),
                 "--convention", "aasce", "--no-overlay"]) == 1
    with open(tmp_path / "aasce" / "cobb.csv", newline="", encoding="utf-8") as f:
        assert "needs all 17 vertebrae" in next(csv.DictReader(f))["error"]


@pytest.fixture
def partial(slicer_app):
    """A T3-L5 result with its vertebra segments on the review layer (as the network path shows it)."""
    from CobbAngleLib.pipeline import result_from_landmarks
    from CobbAngleLib.review import CobbPresenter
    from CobbAngleLib.segments import vertebra_labelmap
    from MSKCommonLib.image import image_from_array
    from MSKCommonLib.review import Review

    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    spine[:2] = np.nan
    pixels = np.random.default_rng(0).uniform(0, 255, (2200, 900)).astype(np.float32)
    image = image_from_array(pixels, (0.2, 0.2), source="t3.png")
    result = result_from_landmarks(image, spine, source="constructed corners",
                                   vertebra_labelmap=vertebra_labelmap(spine, (2200, 900)))
    volume = common.volume_from_image(slicer_app.scene, image, "t3")
    review = Review(CobbPresenter())
    live = review.show(slicer_app.scene, volume, result, on_existing="replace")
    yield live, spine
    review.detach_all()


def test_the_review_shows_only_the_vertebrae_on_the_film_and_measures_them_after_an_edit(partial):
    from CobbAngleLib.review import choose_ends, landmarks_px

    live, spine = partial
    names = list(geometry.VERTEBRA_NAMES[2:])
    node = live.node("landmarks")
    assert node.GetNumberOfControlPoints() == 60 and live.labels("landmarks")[:5] == [
        "T3 sup-R", "T3 sup-L", "T3 inf-R", "T3 inf-L", "T4 sup-R"]
    np.testing.assert_allclose(landmarks_px(live), spine, atol=1e-6)  # NaN rows for T1, T2
    levels = live.node("labels")
    assert [levels.GetNthControlPointLabel(i) for i in range(levels.GetNumberOfControlPoints())] == names
    segmentation = live.node("segmentation").GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == names
    expected = geometry.cobb_angles(spine, spacing_mm=(0.2, 0.2))
    rows = {r["Curve"]: r for r in common.table_rows(live.table)}
    assert rows["MT"]["Angle (deg)"] == pytest.approx(expected.curve("MT").angle_deg, abs=0.01)
    assert live.saved_record()["vertebrae_present"] == names  # what the browser's end vertebra selectors offer
    # a corner dragged: the points are mapped back by their labels and measured as the pipeline measures
    index = live.labels("landmarks").index("T9 inf-L")
    xy = live.points_px("landmarks")[index] + [0, 30]
    node.SetNthControlPointPosition(index, *common.pixels_to_ras(live.volume, [xy])[0])
    moved = spine.copy()
    moved[8, 3] = xy
    assert live.error == ""
    assert live.measurement.angles == pytest.approx(geometry.cobb_angles(moved, spacing_mm=(0.2, 0.2)).angles)
    record = live.record()
    assert list(record["landmarks_px"])[0] == "T3 sup-R" and len(record["landmarks_px"]) == 60
    assert record["review"]["edited_points"] == {"landmarks": ["T9 inf-L"]}
    # end vertebrae: only those on the film
    with pytest.raises(ValueError, match="not both on the film"):
        choose_ends(live, "PT", "T1", "T5")
    choose_ends(live, "PT", "T3", "T6")
    assert live.measurement.curve("PT").upper_end_vertebra == "T3"
    # a corner deleted: a clear message naming it, no angles, no crash; undo brings it back
    node.RemoveNthControlPoint(live.labels("landmarks").index("T7 inf-R"))
    assert live.measurement is None and "T7 inf-R removed" in live.error and "of the result's 60 corners" in live.error
    assert all(r["Angle (deg)"] in ("", None) for r in common.table_rows(live.table))
    assert live.undo() and live.error == "" and live.measurement is not None


def test_overlay_and_seg_of_a_partial_film_hold_only_its_vertebrae(partial, tmp_path):
    import pydicom

    from CobbAngleLib.files import write_outputs
    from MSKCommonLib.dicom_export import DicomRequest
    from dicom_checks import dciodvfy_errors, require_tool

    require_tool("dciodvfy")
    live, spine = partial
    image = common.image_from_volume(live.volume)
    outputs = write_outputs(live, tmp_path, "t3", dicom=DicomRequest(None, image))
    overlay = cv2.imread(str(outputs["overlay"]))
    assert overlay is not None and overlay.shape[0] == 1600
    seg = pydicom.dcmread(outputs["dicom_seg"])
    assert [s.SegmentLabel for s in seg.SegmentSequence] == list(geometry.VERTEBRA_NAMES[2:])
    assert seg.SeriesDescription == "MSKMorphometry vertebrae T3-L5"
    assert dciodvfy_errors(outputs["dicom_seg"]) == [] and dciodvfy_errors(outputs["dicom_sr"]) == []


def test_corners_by_label_puts_the_shown_corners_back_and_names_what_it_cannot_place():
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    spine[:5] = np.nan
    points, labels = geometry.shown_corners(spine)
    assert geometry.shown_vertebrae(spine) == list(range(5, 17)) and labels[0] == "T6 sup-R" and len(points) == 48
    order = np.random.default_rng(1).permutation(len(labels))  # the order of the points does not matter
    np.testing.assert_array_equal(geometry.corners_by_label(points[order], [labels[i] for i in order]), spine)
    with pytest.raises(geometry.LandmarkError, match="T7 has 3 of its 4 corners .T7 inf-L missing"):
        geometry.corners_by_label(np.delete(points, 7, axis=0), labels[:7] + labels[8:])
    with pytest.raises(geometry.LandmarkError, match="'F-1' is not a vertebra corner"):
        geometry.corners_by_label(points, labels[:-1] + ["F-1"])
    with pytest.raises(geometry.LandmarkError, match="T6 sup-R is given twice"):
        geometry.corners_by_label(points, ["T6 sup-R"] + labels[1:4] + ["T6 sup-R"] + labels[5:])


def test_the_networks_check_never_flags_a_curve_off_the_film():
    """The network's CHECK is given per AASCE curve; a film without T1-L5 has no AASCE curves to take
    it from: no CHECK on a curve that is not on the film (it has no angle), and CHECK without a
    confidence on each measured one (before: the AASCE columns by name, PT's CHECK on "not on film")."""
    from CobbAngleLib.check import for_curves

    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    spine[:5] = np.nan
    measurement = geometry.cobb_angles(spine)
    confidence, check = for_curves(measurement, None, {"PT": 0.2, "MT": 0.9, "TL_L": 0.9},
                                   {"PT": True, "MT": False, "TL_L": False})
    assert measurement.curve("PT").role == geometry.NOT_ON_FILM
    assert (confidence["PT"], check["PT"]) == (None, None)
    assert all((confidence[n], check[n]) == (None, True) for n in ("MT", "TL_L"))
