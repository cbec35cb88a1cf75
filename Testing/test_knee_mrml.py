"""KneeLandmarks' nodes in the review layer on a real (headless) Slicer scene: labelled landmark
nodes, contour curves, JSW lines that follow a moved point, the edit-safety policy and the
.mrk.json round trip."""
from __future__ import annotations

import numpy as np
import pytest

from KneeLandmarksLib import measure
from KneeLandmarksLib.pipeline import result_from_landmarks
from KneeLandmarksLib.review import CONTOUR_SAMPLES_PER_SEGMENT, KneePresenter
from KneeLandmarksTools import shape_model as sm
from MSKCommonLib import mrml as common
from MSKCommonLib.image import image_from_array
from MSKCommonLib.review import EditedResultExists, Review

SPACING = 0.2  # mm per pixel


@pytest.fixture
def review(slicer_app):
    r = Review(KneePresenter())
    yield r
    r.detach_all()


def _film(scene, h=900, w=1400, spacing=SPACING):
    pixels = np.random.default_rng(0).normal(100, 5, (h, w)).astype(np.float32)
    return common.volume_from_image(scene, image_from_array(pixels, (spacing, spacing), source="film"), "film")


def _knee(side: str, centre_px, spacing=SPACING) -> np.ndarray:
    """The mean KNEEL shape placed on the film (mirrored for a left knee), in pixels."""
    shape = sm.load().mean_mm * np.array([-1.0 if side == "left" else 1.0, 1.0])
    return shape / spacing + np.asarray(centre_px, float)


def show(review, volume, knees, on_existing="ask"):
    image = common.image_from_volume(volume)
    return review.show(volume.GetScene(), volume, result_from_landmarks(image, knees), on_existing)


def landmarks(live, side="right"):
    return live.points_px(f"{side}.landmarks")


def test_present_makes_labelled_nodes_with_measured_jsw(slicer_app, review):
    scene = slicer_app.scene
    volume = _film(scene)
    right_pts, left_pts = _knee("right", (350, 450)), _knee("left", (1050, 450))
    live = show(review, volume, [("right", right_pts, 0.9), ("left", left_pts, 0.8)])
    assert [m.side for m in live.measurement] == ["right", "left"]
    fid = live.node("right.landmarks")
    assert fid.GetNumberOfControlPoints() == 16
    assert [fid.GetNthControlPointLabel(i) for i in range(16)] == list(sm.LANDMARK_LABELS)
    # the pixel -> RAS -> pixel round trip through the volume's geometry is exact
    assert np.allclose(landmarks(live), right_pts, atol=1e-6)
    assert all(live.node(f"right.{part}") is not None
               for part in ("contour.tibia", "contour.femur", "jsw.medial", "jsw.lateral"))
    # contours pass through the landmarks (every 4th curve point is a landmark)
    tib = common.ras_to_pixels(volume, common.control_points(live.node("right.contour.tibia")))
    assert np.allclose(tib[::CONTOUR_SAMPLES_PER_SEGMENT], right_pts[:9], atol=1e-6)
    expected = measure.joint_space_width(right_pts, "right", (SPACING, SPACING))
    rows = common.table_rows(live.table)
    assert rows[0]["Knee"] == "right"
    assert rows[0]["Medial JSW (mm)"] == pytest.approx(expected.medial_mm, abs=1e-3)
    assert rows[0]["Lateral JSW (mm)"] == pytest.approx(expected.lateral_mm, abs=1e-3)
    # the line node's own length (Slicer, in RAS mm) equals the measured width
    assert live.node("right.jsw.medial").GetLineLengthWorld() == pytest.approx(expected.medial_mm, abs=1e-3)
    # mirrored left knee: same shape, same widths
    assert rows[1]["Knee"] == "left"
    assert rows[1]["Medial JSW (mm)"] == pytest.approx(expected.medial_mm, abs=1e-3)


def test_moving_a_tibial_point_updates_the_jsw_line_and_table(slicer_app, review):
    scene = slicer_app.scene
    volume = _film(scene)
    pts = _knee("right", (400, 450))
    live = show(review, volume, [("right", pts)])
    before = live.measurement[0].medial_mm
    # lower the whole medial plateau (T7..T9) by 1 mm: the medial gap widens by about 1 mm
    moved = pts.copy()
    for i in (6, 7, 8):
        moved[i, 1] += 1.0 / SPACING
        ras = common.pixels_to_ras(volume, moved[i])[0]
        live.node("right.landmarks").SetNthControlPointPosition(i, *ras)
    after = measure.joint_space_width(moved, "right", (SPACING, SPACING)).medial_mm
    assert after > before + 0.5
    row = common.table_rows(live.table)[0]
    assert row["Medial JSW (mm)"] == pytest.approx(after, abs=1e-3)
    assert live.node("right.jsw.medial").GetLineLengthWorld() == pytest.approx(after, abs=1e-3)
    assert row["Edited points"] == "T7, T8, T9"
    assert live.edited()


def test_edited_points_are_never_replaced_silently(slicer_app, review):
    scene = slicer_app.scene
    volume = _film(scene)
    pts = _knee("right", (400, 450))
    live = show(review, volume, [("right", pts)])
    node = live.node("right.landmarks")
    # an unedited result is simply updated in place
    again = show(review, volume, [("right", pts + 1.0)])
    assert again.node("right.landmarks") is node
    ras = common.control_points(node)
    node.SetNthControlPointPosition(3, ras[3, 0] + 2.0, ras[3, 1], ras[3, 2])
    edited = landmarks(again).copy()
    n_nodes = scene.GetNumberOfNodes()
    with pytest.raises(EditedResultExists):
        show(review, volume, [("right", pts)])
    assert np.allclose(landmarks(again), edited)  # nothing changed
    assert scene.GetNumberOfNodes() == n_nodes
    kept = show(review, volume, [("right", pts)], on_existing="keep")
    assert kept.node("right.landmarks") is not node
    assert np.allclose(landmarks(again), edited)  # the edited result is still there
    assert len(review.all(scene, volume)) == 2
    # the latest result on the volume is now the new one; replace replaces even edited points
    kept_node = kept.node("right.landmarks")
    kept_node.SetNthControlPointPosition(0, *(common.control_points(kept_node)[0] + [1, 0, 0]))
    replaced = show(review, volume, [("right", pts)], on_existing="replace")
    assert replaced.node("right.landmarks") is kept_node
    assert np.allclose(landmarks(replaced), pts, atol=1e-6)
    again.reset_edited_points()
    assert not again.edited()


def test_landmarks_round_trip_through_mrk_json(slicer_app, review, tmp_path):
    scene = slicer_app.scene
    volume = _film(scene)
    pts = _knee("left", (900, 450))
    live = show(review, volume, [("left", pts)])
    path = common.save_node(live.node("left.landmarks"), tmp_path / "left_knee.mrk.json")
    text = path.read_text()
    assert '"label": "T1"' in text and '"label": "F7"' in text and '"LPS"' in text
    back = common.read_node(scene, "vtkMRMLMarkupsFiducialNode", path)
    assert [back.GetNthControlPointLabel(i) for i in range(16)] == list(sm.LANDMARK_LABELS)
    assert np.allclose(common.ras_to_pixels(volume, common.control_points(back)), pts, atol=1e-4)


def test_a_spacing_the_user_gives_measures_without_changing_the_volume(slicer_app, review):
    """A PNG has no spacing; the width is measured with the one the user gives, and the user's
    volume keeps its own geometry."""
    scene = slicer_app.scene
    pixels = np.random.default_rng(0).normal(100, 5, (900, 1400)).astype(np.float32)
    volume = common.volume_from_image(scene, image_from_array(pixels, None, source="film.png"), "film")
    before = volume.GetSpacing()
    pts = _knee("right", (400, 450), spacing=0.3)
    image = common.image_from_volume(volume)
    assert image.spacing_mm is None
    live = review.show(scene, volume, result_from_landmarks(image, [("right", pts)], spacing_mm=(0.3, 0.3)))
    assert volume.GetSpacing() == before
    expected = measure.joint_space_width(pts, "right", (0.3, 0.3)).medial_mm
    assert common.table_rows(live.table)[0]["Medial JSW (mm)"] == pytest.approx(expected, abs=1e-3)
    # moving a point measures with the same given spacing
    node = live.node("right.landmarks")
    ras = common.control_points(node)
    node.SetNthControlPointPosition(8, ras[8, 0], ras[8, 1] - 2.0, ras[8, 2])  # 2 pixels down (RAS S-)
    moved = pts.copy()
    moved[8, 1] += 2.0
    assert live.measurement[0].medial_mm == pytest.approx(
        measure.joint_space_width(moved, "right", (0.3, 0.3)).medial_mm, abs=1e-6)


def test_a_removed_landmark_leaves_a_note_not_a_crash(slicer_app, review):
    volume = _film(slicer_app.scene)
    live = show(review, volume, [("right", _knee("right", (400, 450)))])
    live.node("right.landmarks").RemoveNthControlPoint(3)
    assert live.measurement is None and "right knee" in live.error and "16 landmarks" in live.error
    row = common.table_rows(live.table)[0]
    assert row["Medial JSW (mm)"] in ("", None) and "16 landmarks" in row["Note"]
    assert not live.node("right.jsw.medial").GetDisplayNode().GetVisibility()
