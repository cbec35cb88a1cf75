"""The SpineMorphology MRML layer with real Slicer nodes (slicer-core): photo, depth and mask
volumes on one grid, keypoints, dimples, midline curves, surface model and measures table; live
updates when a point moves; re-runs that never replace a user's edits; files."""
import json

import numpy as np
import pytest

from MSKCommonLib import mrml as common
from SpineMorphologyLib import morphology, review as mrml
from SpineMorphologyTools import phantom


@pytest.fixture(scope="module")
def photo():
    return phantom.make_back_photo(phantom.photo_seed(7, 2))


@pytest.fixture
def back(slicer_app, photo):
    scene = slicer_app.scene
    cam = photo.camera
    volume = mrml.photo_volume(scene, photo.rgb, "back")
    depth = mrml.depth_volume(scene, volume, photo.depth_mm, "mm", cam.focal_px, cam.cx, cam.cy,
                              estimated=False)
    mask = mrml.mask_volume(scene, volume, photo.back_mask)
    yield scene, volume, depth, mask
    mrml.detach_all()


def value(nodes, key):
    return {r["Key"]: r["Value"] for r in common.table_rows(nodes.table)}[key]


def move(nodes, node, index, dx, dy):
    xy = common.ras_to_pixels(nodes.photo, common.control_points(node)[index])[0]
    node.SetNthControlPointPosition(index, *common.pixels_to_ras(nodes.photo, xy + [dx, dy])[0])


def test_volumes_share_the_photo_grid(back, photo):
    scene, volume, depth, mask = back
    assert volume.IsA("vtkMRMLVectorVolumeNode")
    assert volume.GetImageData().GetNumberOfScalarComponents() == 3
    assert np.array_equal(mrml.photo_array(volume), photo.rgb)
    for node in (depth, mask):
        assert node.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
        assert common.pixels_to_ras(node, [[10, 20]]) == pytest.approx(common.pixels_to_ras(volume, [[10, 20]]))
    surface = mrml.surface_of(depth, mask)
    assert surface.units == "mm" and np.array_equal(surface.mask, photo.back_mask)


def test_present_makes_points_curves_model_and_table(back, photo):
    scene, volume, depth, mask = back
    nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    assert nodes.keypoints.GetNumberOfControlPoints() == 9
    assert nodes.keypoints.GetNthControlPointLabel(6) == "C7"
    assert mrml.keypoints_px(nodes) == pytest.approx(photo.keypoints_px)
    assert nodes.dimples.GetNumberOfControlPoints() == 2
    assert np.abs(mrml.dimples_px(nodes) - photo.dimples_px).max() < 2.0
    assert nodes.midline.GetNumberOfControlPoints() == mrml.N_CURVE_POINTS
    assert nodes.midline3d.GetNumberOfControlPoints() == mrml.N_CURVE_POINTS and nodes.midline3d.GetLocked()
    assert nodes.model.GetPolyData().GetNumberOfPoints() > 1000
    # table = the measures of morphology on the same surface
    direct = morphology.measure_back(mrml.surface_of(depth, mask), photo.keypoints_px).measures
    assert value(nodes, "trunk_length") == pytest.approx(round(direct.trunk_length, 2))
    assert value(nodes, "lateral_deviation_max") == pytest.approx(photo.measures["lateral_deviation_max"], abs=6)
    assert {r["Key"]: r["Unit"] for r in common.table_rows(nodes.table)}["surface_rotation_max_deg"] == "deg"
    # the 3D midline lies on the surface model (RAS = x, -z, -y of the camera-frame surface)
    first = common.control_points(nodes.midline3d)[0]
    vp = morphology.sample_surface(mrml.surface_of(depth, mask), photo.keypoints_px[6:7])[0]
    assert first == pytest.approx([vp[0], -vp[2], -vp[1]], abs=1e-6)
    assert not mrml.result_was_edited(nodes)


def test_moving_c7_updates_midline_and_measures_at_once(back, photo):
    scene, volume, depth, mask = back
    nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    before = value(nodes, "trunk_imbalance")
    move(nodes, nodes.keypoints, 6, 12, 0)  # C7 12 px to the right
    after = value(nodes, "trunk_imbalance")
    mm_per_px = photo.camera.distance_mm / photo.camera.focal_px
    assert after - before == pytest.approx(12 * mm_per_px, rel=0.15)
    assert mrml.midline_px(nodes)[0] == pytest.approx(mrml.keypoints_px(nodes)[6])
    assert mrml.result_was_edited(nodes)


def test_moving_a_dimple_changes_the_pelvic_obliquity(back, photo):
    scene, volume, depth, mask = back
    nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    before = value(nodes, "pelvic_obliquity_deg")
    move(nodes, nodes.dimples, 1, 0, -10)  # right dimple 10 px up
    assert value(nodes, "pelvic_obliquity_deg") > before + 5


def test_an_edited_midline_is_kept_and_measured(back, photo):
    scene, volume, depth, mask = back
    nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    line = mrml.midline_px(nodes)
    move(nodes, nodes.midline, 10, 20, 0)
    # the curve stays where the user put it, the measures follow it
    assert mrml.midline_px(nodes)[10] == pytest.approx(line[10] + [20, 0])
    expected = morphology.measure_along_line(mrml.surface_of(depth, mask), mrml.midline_px(nodes),
                                             mrml.dimples_px(nodes)).measures
    assert value(nodes, "lateral_deviation_max") == pytest.approx(round(expected.lateral_deviation_max, 2))


def test_rerun_never_replaces_edits_silently(back, photo):
    scene, volume, depth, mask = back
    nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    same = mrml.present(scene, volume, depth, mask, photo.keypoints_px)  # unedited: updated in place
    assert same.keypoints is nodes.keypoints
    move(nodes, nodes.keypoints, 4, 5, 0)
    with pytest.raises(mrml.EditedResultExists):
        mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    new = mrml.present(scene, volume, depth, mask, photo.keypoints_px, on_existing="new")
    assert new.keypoints is not nodes.keypoints and len(mrml.all_results(scene, volume)) == 2
    assert mrml.keypoints_px(nodes)[4] == pytest.approx(photo.keypoints_px[4] + [5, 0])  # kept
    mrml.present(scene, volume, depth, mask, photo.keypoints_px, on_existing="overwrite")
    mrml.reset_edited_points(nodes)
    assert not mrml.result_was_edited(nodes)


def test_unmeasurable_points_leave_a_note_not_a_crash(back, photo):
    scene, volume, depth, mask = back
    nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    move(nodes, nodes.keypoints, 6, 0, 400)  # C7 below the sacrum
    assert nodes.result is None and ("C7" in nodes.error or "downwards" in nodes.error)
    assert "not measured" in common.table_rows(nodes.table)[0]["Measure"]


def test_files_round_trip(back, photo, tmp_path, slicer_app):
    scene, volume, depth, mask = back
    nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
    common.save_node(nodes.keypoints, tmp_path / "kp.mrk.json")
    common.save_node(nodes.midline3d, tmp_path / "m3.mrk.json")
    common.save_node(nodes.model, tmp_path / "surface.vtk")
    common.save_node(depth, tmp_path / "depth.nrrd")
    data = json.loads((tmp_path / "kp.mrk.json").read_text())
    labels = [p["label"] for p in data["markups"][0]["controlPoints"]]
    assert labels == list(morphology.KEYPOINT_NAMES)
    read = common.read_node(scene, "vtkMRMLMarkupsFiducialNode", tmp_path / "kp.mrk.json")
    assert common.control_points(read) == pytest.approx(common.control_points(nodes.keypoints), abs=1e-3)
    model = common.read_node(scene, "vtkMRMLModelNode", tmp_path / "surface.vtk")
    assert model.GetPolyData().GetNumberOfPoints() == nodes.model.GetPolyData().GetNumberOfPoints()
    d = common.read_node(scene, "vtkMRMLScalarVolumeNode", tmp_path / "depth.nrrd")
    from vtk.util import numpy_support

    arr = numpy_support.vtk_to_numpy(d.GetImageData().GetPointData().GetScalars())
    assert arr.reshape(photo.depth_mm.shape) == pytest.approx(photo.depth_mm)
    assert scene.WriteToMRB(str(tmp_path / "back.mrb"))


def test_depth_volume_remembers_whether_depth_was_estimated(slicer_app, photo):
    scene = slicer_app.scene
    cam = photo.camera
    volume = mrml.photo_volume(scene, photo.rgb, "back")
    mask = mrml.mask_volume(scene, volume, photo.back_mask)
    for estimated in (True, False):
        depth = mrml.depth_volume(scene, volume, photo.depth_mm, "mm", cam.focal_px, cam.cx, cam.cy,
                                  estimated=estimated)
        assert mrml.surface_of(depth, mask).estimated is estimated
