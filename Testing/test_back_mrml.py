"""SpineMorphology's nodes in the review layer with real Slicer nodes (slicer-core): photo, depth
and mask volumes on one grid, keypoints, dimples, midline curves, surface model and measures
table; live updates when a point moves; re-runs that never replace a user's edits; files."""
import json

import numpy as np
import pytest

from MSKCommonLib import mrml as common
from MSKCommonLib.image import image_from_array
from MSKCommonLib.review import EditedResultExists, Review
from SpineMorphologyLib import morphology
from SpineMorphologyLib.pipeline import result_from_surface
from SpineMorphologyLib.review import N_CURVE_POINTS, BackPresenter, dimples_px, surface_of
from SpineMorphologyTools import phantom


@pytest.fixture(scope="module")
def photo():
    return phantom.make_back_photo(phantom.photo_seed(7, 2))


def exact_result(photo, volume, estimated=False):
    cam = photo.camera
    return result_from_surface(common.image_from_volume(volume), photo.depth_mm, "mm", photo.back_mask,
                               photo.keypoints_px, cam.focal_px, (cam.cx, cam.cy), estimated=estimated)


@pytest.fixture
def back(slicer_app, photo):
    scene = slicer_app.scene
    volume = common.volume_from_image(scene, image_from_array(photo.rgb, source="back.png"), "back", colour=True)
    review = Review(BackPresenter())
    yield scene, volume, review
    review.detach_all()


def show(back, photo, on_existing="ask"):
    scene, volume, review = back
    return review.show(scene, volume, exact_result(photo, volume), on_existing)


def value(live, key):
    return {r["Key"]: r["Value"] for r in common.table_rows(live.table)}[key]


def move(live, role, index, dx, dy):
    node = live.node(role)
    xy = common.ras_to_pixels(live.volume, common.control_points(node)[index])[0]
    node.SetNthControlPointPosition(index, *common.pixels_to_ras(live.volume, xy + [dx, dy])[0])


def test_volumes_share_the_photo_grid(back, photo):
    scene, volume, review = back
    live = show(back, photo)
    assert volume.IsA("vtkMRMLVectorVolumeNode")
    assert volume.GetImageData().GetNumberOfScalarComponents() == 3
    assert np.array_equal(common.volume_array(volume), photo.rgb)
    for node in (live.node("depth"), live.node("mask")):
        assert node.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
        assert common.pixels_to_ras(node, [[10, 20]]) == pytest.approx(common.pixels_to_ras(volume, [[10, 20]]))
    surface = surface_of(live.node("depth"), live.node("mask"))
    assert surface.units == "mm" and np.array_equal(surface.mask, photo.back_mask)


def test_present_makes_points_curves_model_and_table(back, photo):
    live = show(back, photo)
    keypoints = live.node("keypoints")
    assert keypoints.GetNumberOfControlPoints() == 9
    assert keypoints.GetNthControlPointLabel(6) == "C7"
    assert live.points_px("keypoints") == pytest.approx(photo.keypoints_px)
    assert live.node("dimples").GetNumberOfControlPoints() == 2
    assert np.abs(dimples_px(live) - photo.dimples_px).max() < 2.0
    assert live.node("midline").GetNumberOfControlPoints() == N_CURVE_POINTS
    midline3d = live.node("midline3d")
    assert midline3d.GetNumberOfControlPoints() == N_CURVE_POINTS and midline3d.GetLocked()
    assert live.node("surface").GetPolyData().GetNumberOfPoints() > 1000
    # table = the measures of morphology on the same surface
    surface = surface_of(live.node("depth"), live.node("mask"))
    direct = morphology.measure_back_in_its_frame(surface, photo.keypoints_px).measures
    assert value(live, "trunk_length") == pytest.approx(round(direct.trunk_length, 2))
    assert value(live, "lateral_deviation_max") == pytest.approx(photo.measures["lateral_deviation_max"], abs=6)
    assert {r["Key"]: r["Unit"] for r in common.table_rows(live.table)}["surface_rotation_max_deg"] == "deg"
    # the 3D midline lies on the surface model (RAS = x, -z, -y of the camera-frame surface)
    first = common.control_points(midline3d)[0]
    vp = morphology.sample_surface(surface, photo.keypoints_px[6:7])[0]
    assert first == pytest.approx([vp[0], -vp[2], -vp[1]], abs=1e-6)
    assert not live.edited()


def test_moving_c7_updates_midline_and_measures_at_once(back, photo):
    live = show(back, photo)
    before = value(live, "trunk_imbalance")
    move(live, "keypoints", 6, 12, 0)  # C7 12 px to the right
    after = value(live, "trunk_imbalance")
    mm_per_px = photo.camera.distance_mm / photo.camera.focal_px
    assert after - before == pytest.approx(12 * mm_per_px, rel=0.15)
    assert live.points_px("midline")[0] == pytest.approx(live.points_px("keypoints")[6])
    assert live.edited()


def test_moving_a_dimple_changes_the_pelvic_obliquity(back, photo):
    live = show(back, photo)
    before = value(live, "pelvic_obliquity_deg")
    move(live, "dimples", 1, 0, -10)  # right dimple 10 px up
    assert value(live, "pelvic_obliquity_deg") > before + 5


def test_an_edited_midline_is_kept_and_measured(back, photo):
    live = show(back, photo)
    line = live.points_px("midline")
    move(live, "midline", 10, 20, 0)
    # the curve stays where the user put it, the measures follow it
    assert live.points_px("midline")[10] == pytest.approx(line[10] + [20, 0])
    surface = surface_of(live.node("depth"), live.node("mask"))
    expected = morphology.measure_back_in_its_frame(surface, live.points_px("keypoints"), dimples_px(live),
                                                    line_px=live.points_px("midline")).measures
    assert value(live, "lateral_deviation_max") == pytest.approx(round(expected.lateral_deviation_max, 2))


def test_rerun_never_replaces_edits_silently(back, photo):
    scene, volume, review = back
    live = show(back, photo)
    same = show(back, photo)  # unedited: updated in place
    assert same.node("keypoints") is live.node("keypoints")
    move(same, "keypoints", 4, 5, 0)
    n_nodes = scene.GetNumberOfNodes()
    with pytest.raises(EditedResultExists):
        show(back, photo)
    assert scene.GetNumberOfNodes() == n_nodes  # nothing was made before the answer
    new = show(back, photo, on_existing="keep")
    assert new.node("keypoints") is not same.node("keypoints") and len(review.all(scene, volume)) == 2
    assert same.points_px("keypoints")[4] == pytest.approx(photo.keypoints_px[4] + [5, 0])  # kept
    show(back, photo, on_existing="replace")
    same.reset_edited_points()
    assert not same.edited()


def test_unmeasurable_points_leave_a_note_not_a_crash(back, photo):
    live = show(back, photo)
    move(live, "keypoints", 6, 0, 400)  # C7 below the sacrum
    assert live.measurement is None and ("C7" in live.error or "downwards" in live.error)
    assert "not measured" in common.table_rows(live.table)[0]["Measure"]


def test_files_round_trip(back, photo, tmp_path):
    scene, volume, review = back
    live = show(back, photo)
    common.save_node(live.node("keypoints"), tmp_path / "kp.mrk.json")
    common.save_node(live.node("midline3d"), tmp_path / "m3.mrk.json")
    common.save_node(live.node("surface"), tmp_path / "surface.vtk")
    common.save_node(live.node("depth"), tmp_path / "depth.nrrd")
    data = json.loads((tmp_path / "kp.mrk.json").read_text())
    labels = [p["label"] for p in data["markups"][0]["controlPoints"]]
    assert labels == list(morphology.KEYPOINT_NAMES)
    read = common.read_node(scene, "vtkMRMLMarkupsFiducialNode", tmp_path / "kp.mrk.json")
    assert common.control_points(read) == pytest.approx(common.control_points(live.node("keypoints")), abs=1e-3)
    model = common.read_node(scene, "vtkMRMLModelNode", tmp_path / "surface.vtk")
    assert model.GetPolyData().GetNumberOfPoints() == live.node("surface").GetPolyData().GetNumberOfPoints()
    d = common.read_node(scene, "vtkMRMLScalarVolumeNode", tmp_path / "depth.nrrd")
    from vtk.util import numpy_support

    arr = numpy_support.vtk_to_numpy(d.GetImageData().GetPointData().GetScalars())
    assert arr.reshape(photo.depth_mm.shape) == pytest.approx(photo.depth_mm)
    assert scene.WriteToMRB(str(tmp_path / "back.mrb"))


def test_depth_volume_remembers_whether_depth_was_estimated(back, photo):
    scene, volume, review = back
    for estimated in (True, False):
        live = review.show(scene, volume, exact_result(photo, volume, estimated), on_existing="keep")
        assert surface_of(live.node("depth"), live.node("mask")).estimated is estimated
