"""KneeLandmarks' MRML layer on a real (headless) Slicer scene: labelled landmark nodes, contour
curves, JSW lines that follow a moved point, the edit-safety policy and the .mrk.json round trip."""
from __future__ import annotations

import numpy as np
import pytest

from KneeLandmarksLib import measure
from KneeLandmarksTools import shape_model as sm

SPACING = 0.2  # mm per pixel


@pytest.fixture
def knee_app(slicer_app):
    from KneeLandmarksLib import review as mrml

    yield slicer_app
    mrml.detach_all()


def _film(scene, h=900, w=1400, spacing=SPACING):
    from MSKCommonLib import mrml as common
    from MSKCommonLib.image import radiograph_from_array

    pixels = np.random.default_rng(0).normal(100, 5, (h, w)).astype(np.float32)
    return common.volume_from_radiograph(scene, radiograph_from_array(pixels, (spacing, spacing)), "film")


def _knee(side: str, centre_px, spacing=SPACING) -> np.ndarray:
    """The mean KNEEL shape placed on the film (mirrored for a left knee), in pixels."""
    shape = sm.load().mean_mm * np.array([-1.0 if side == "left" else 1.0, 1.0])
    return shape / spacing + np.asarray(centre_px, float)


def test_present_makes_labelled_nodes_with_measured_jsw(knee_app):
    from MSKCommonLib import mrml as common
    from KneeLandmarksLib import review as mrml

    scene = knee_app.scene
    volume = _film(scene)
    knees = [{"side": "right", "landmarks_px": _knee("right", (350, 450)), "confidence": 0.9},
             {"side": "left", "landmarks_px": _knee("left", (1050, 450)), "confidence": 0.8}]
    result = mrml.present(scene, volume, knees)
    assert [n.side for n in result] == ["right", "left"]
    right = result[0]
    fid = right.landmarks
    assert fid.GetNumberOfControlPoints() == 16
    assert [fid.GetNthControlPointLabel(i) for i in range(16)] == list(sm.LANDMARK_LABELS)
    # the pixel -> RAS -> pixel round trip through the volume's geometry is exact
    assert np.allclose(mrml.landmarks_px(right), knees[0]["landmarks_px"], atol=1e-6)
    assert set(right.contours) == {"tibia", "femur"} and set(right.jsw_lines) == {"medial", "lateral"}
    # contours pass through the landmarks (every 4th curve point is a landmark)
    tib = common.ras_to_pixels(volume, common.control_points(right.contours["tibia"]))
    assert np.allclose(tib[:: mrml.CONTOUR_SAMPLES_PER_SEGMENT], knees[0]["landmarks_px"][:9], atol=1e-6)
    expected = measure.joint_space_width(knees[0]["landmarks_px"], "right", (SPACING, SPACING))
    row = common.table_rows(right.table)[0]
    assert row["Knee"] == "right"
    assert row["Medial JSW (mm)"] == pytest.approx(expected.medial_mm, abs=1e-3)
    assert row["Lateral JSW (mm)"] == pytest.approx(expected.lateral_mm, abs=1e-3)
    # the line node's own length (Slicer, in RAS mm) equals the measured width
    assert right.jsw_lines["medial"].GetLineLengthWorld() == pytest.approx(expected.medial_mm, abs=1e-3)
    # mirrored left knee: same shape, same widths
    left_row = common.table_rows(result[1].table)[0]
    assert left_row["Medial JSW (mm)"] == pytest.approx(expected.medial_mm, abs=1e-3)


def test_moving_a_tibial_point_updates_the_jsw_line_and_table(knee_app):
    from MSKCommonLib import mrml as common
    from KneeLandmarksLib import review as mrml

    scene = knee_app.scene
    volume = _film(scene)
    pts = _knee("right", (400, 450))
    nodes = mrml.present(scene, volume, [{"side": "right", "landmarks_px": pts}])[0]
    before = nodes.measurement.medial_mm
    # lower the whole medial plateau (T7..T9) by 1 mm: the medial gap widens by about 1 mm
    moved = pts.copy()
    for i in (6, 7, 8):
        moved[i, 1] += 1.0 / SPACING
        ras = common.pixels_to_ras(volume, moved[i])[0]
        nodes.landmarks.SetNthControlPointPosition(i, *ras)
    after = measure.joint_space_width(moved, "right", (SPACING, SPACING)).medial_mm
    assert after > before + 0.5
    row = common.table_rows(nodes.table)[0]
    assert row["Medial JSW (mm)"] == pytest.approx(after, abs=1e-3)
    assert nodes.jsw_lines["medial"].GetLineLengthWorld() == pytest.approx(after, abs=1e-3)
    assert "edited" in row["Note"]
    assert mrml.result_was_edited(nodes)


def test_edited_points_are_never_replaced_silently(knee_app):
    from MSKCommonLib import mrml as common
    from KneeLandmarksLib import review as mrml

    scene = knee_app.scene
    volume = _film(scene)
    pts = _knee("right", (400, 450))
    nodes = mrml.present(scene, volume, [{"side": "right", "landmarks_px": pts}])[0]
    # an unedited result is simply updated in place
    again = mrml.present(scene, volume, [{"side": "right", "landmarks_px": pts + 1.0}])[0]
    assert again.landmarks is nodes.landmarks
    ras = common.control_points(nodes.landmarks)
    nodes.landmarks.SetNthControlPointPosition(3, ras[3, 0] + 2.0, ras[3, 1], ras[3, 2])
    edited = mrml.landmarks_px(nodes).copy()
    with pytest.raises(mrml.EditedResultExists):
        mrml.present(scene, volume, [{"side": "right", "landmarks_px": pts}])
    assert np.allclose(mrml.landmarks_px(nodes), edited)  # nothing changed
    kept = mrml.present(scene, volume, [{"side": "right", "landmarks_px": pts}], on_existing="new")[0]
    assert kept.landmarks is not nodes.landmarks
    assert np.allclose(mrml.landmarks_px(nodes), edited)  # the edited result is still there
    assert len(mrml.all_results(scene, volume)) == 2
    # the latest result on the volume is now the new one; overwrite replaces even edited points
    kept.landmarks.SetNthControlPointPosition(0, *(common.control_points(kept.landmarks)[0] + [1, 0, 0]))
    replaced = mrml.present(scene, volume, [{"side": "right", "landmarks_px": pts}], on_existing="overwrite")[0]
    assert replaced.landmarks is kept.landmarks
    assert np.allclose(mrml.landmarks_px(replaced), pts, atol=1e-6)
    mrml.reset_edited_points(nodes)
    assert not mrml.result_was_edited(nodes)


def test_landmarks_round_trip_through_mrk_json(knee_app, tmp_path):
    from MSKCommonLib import mrml as common
    from KneeLandmarksLib import review as mrml

    scene = knee_app.scene
    volume = _film(scene)
    pts = _knee("left", (900, 450))
    nodes = mrml.present(scene, volume, [{"side": "left", "landmarks_px": pts}])[0]
    path = common.save_node(nodes.landmarks, tmp_path / "left_knee.mrk.json")
    text = path.read_text()
    assert '"label": "T1"' in text and '"label": "F7"' in text and '"LPS"' in text
    back = common.read_node(scene, "vtkMRMLMarkupsFiducialNode", path)
    assert [back.GetNthControlPointLabel(i) for i in range(16)] == list(sm.LANDMARK_LABELS)
    assert np.allclose(common.ras_to_pixels(volume, common.control_points(back)), pts, atol=1e-4)
