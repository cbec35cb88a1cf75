"""The CobbAngle MRML layer with real Slicer nodes (slicer-core): points, lines, table, live
updates when a corner moves, re-runs that never replace a user's edits, files and scenes."""
import types

import numpy as np
import pytest

from CobbAngleLib import geometry, review as mrml
from MSKCommonLib import mrml as common
from conftest import DOUBLE_CURVE_TILTS, synthetic_spine


def make_volume(scene, shape=(2200, 900), spacing=(0.2, 0.25), name="film"):
    pixels = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    radiograph = types.SimpleNamespace(pixels=pixels, spacing_mm=spacing, source="test")
    return common.volume_from_radiograph(scene, radiograph, name)


def angle_column(table_node):
    return {row["Curve"]: row["Angle (deg)"] for row in common.table_rows(table_node)}


def move_corner(nodes, index, dx_px, dy_px):
    xy = common.ras_to_pixels(nodes.volume, common.control_points(nodes.landmarks)[index])[0]
    ras = common.pixels_to_ras(nodes.volume, xy + [dx_px, dy_px])[0]
    nodes.landmarks.SetNthControlPointPosition(index, *ras)


def test_volume_keeps_pixel_spacing_and_pixels(slicer_app):
    volume = make_volume(slicer_app.scene)
    assert volume.GetSpacing() == pytest.approx((0.25, 0.2, 1.0))  # x = columns, y = rows
    assert common.pixel_array(volume).shape == (2200, 900)
    # pixel (x=10, y=20) sits 10 columns and 20 rows from the origin, in mm
    ras = common.pixels_to_ras(volume, [[10, 20]])[0]
    assert ras == pytest.approx([-2.5, -4.0, 0.0])
    assert common.ras_to_pixels(volume, [ras])[0] == pytest.approx([10, 20])


def test_present_makes_labelled_points_lines_and_table(slicer_app):
    scene = slicer_app.scene
    volume = make_volume(scene)
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    nodes = mrml.present(scene, volume, spine, convention="clinical")

    assert nodes.landmarks.GetNumberOfControlPoints() == 68
    assert nodes.landmarks.GetNthControlPointLabel(0) == "T1 sup-R"
    assert nodes.landmarks.GetNthControlPointLabel(26) == "T7 inf-R"
    assert nodes.landmarks.GetNthControlPointLabel(67) == "L5 inf-L"
    assert mrml.landmarks_px(nodes) == pytest.approx(spine)
    assert angle_column(nodes.table) == pytest.approx({"PT": 23.0, "MT": 35.0, "TL_L": 23.0}, abs=0.01)
    rows = {r["Curve"]: r for r in common.table_rows(nodes.table)}
    assert rows["MT"]["Upper end vertebra"] == "T5" and rows["MT"]["Lower end vertebra"] == "T11"
    assert rows["MT"]["Convention"] == "clinical"
    # the MT lines lie on T5's superior and T11's inferior endplate
    upper = common.ras_to_pixels(volume, common.control_points(nodes.lines["MT upper"]))
    direction = upper[1] - upper[0]
    assert np.degrees(np.arctan2(direction[1], direction[0])) == pytest.approx(20.0, abs=1e-6)
    lower = common.ras_to_pixels(volume, common.control_points(nodes.lines["MT lower"]))
    direction = lower[1] - lower[0]
    assert np.degrees(np.arctan2(direction[1], direction[0])) == pytest.approx(-15.0, abs=1e-6)
    assert nodes.lines["MT upper"].GetLocked() and not nodes.landmarks.GetLocked()
    assert not mrml.result_was_edited(nodes)


def test_moving_a_corner_updates_lines_and_table_at_once(slicer_app):
    scene = slicer_app.scene
    volume = make_volume(scene)
    nodes = mrml.present(scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS), convention="clinical")
    before = angle_column(nodes.table)["MT"]
    # lift T5's superior-left corner (index 4*4+1): its endplate tilts less, MT shrinks
    move_corner(nodes, 17, 0, -20)
    expected = geometry.cobb_angles(mrml.landmarks_px(nodes), "clinical").curve("MT").angle_deg
    after = angle_column(nodes.table)["MT"]
    assert after == pytest.approx(round(expected, 2)) and after < before - 5
    # the MT upper line now lies along the (new) upper end vertebra's superior endplate
    vertebra, kind = nodes.result.curve("MT").upper_line
    a, b = geometry.line_endpoints(mrml.landmarks_px(nodes), vertebra, kind)
    line = common.ras_to_pixels(volume, common.control_points(nodes.lines["MT upper"]))
    def cross(u, v):
        return u[0] * v[1] - u[1] * v[0]

    assert abs(cross(b - a, line[1] - line[0])) / (np.linalg.norm(b - a) * np.linalg.norm(line[1] - line[0])) < 1e-9
    assert abs(cross(b - a, line[0] - a)) / np.linalg.norm(b - a) < 1e-6
    assert mrml.result_was_edited(nodes)
    mrml.reset_edited_points(nodes)
    assert not mrml.result_was_edited(nodes)
    assert angle_column(nodes.table)["MT"] == pytest.approx(before)


def test_rerun_never_silently_replaces_edited_points(slicer_app):
    scene = slicer_app.scene
    volume = make_volume(scene)
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    first = mrml.present(scene, volume, spine, convention="clinical")
    n_nodes = scene.GetNumberOfNodes()

    # unedited: a re-run updates the same nodes, creating none
    again = mrml.present(scene, volume, spine + 1.0, convention="clinical")
    assert again.landmarks.GetID() == first.landmarks.GetID()
    assert scene.GetNumberOfNodes() == n_nodes

    move_corner(again, 17, 0, -20)
    edited = mrml.landmarks_px(again).copy()
    with pytest.raises(mrml.EditedResultExists):
        mrml.present(scene, volume, spine, convention="clinical")
    assert mrml.landmarks_px(again) == pytest.approx(edited)  # nothing changed
    assert scene.GetNumberOfNodes() == n_nodes

    newer = mrml.present(scene, volume, spine, convention="clinical", on_existing="new")
    assert newer.landmarks.GetID() != again.landmarks.GetID()
    assert mrml.landmarks_px(again) == pytest.approx(edited)  # the edited result is kept
    assert mrml.find_result(scene, volume).landmarks.GetID() == newer.landmarks.GetID()
    assert len(mrml.all_results(scene, volume)) == 2

    move_corner(newer, 0, 3, 3)
    replaced = mrml.present(scene, volume, spine, convention="clinical", on_existing="overwrite")
    assert replaced.landmarks.GetID() == newer.landmarks.GetID()
    assert mrml.landmarks_px(replaced) == pytest.approx(spine)


def test_bad_landmarks_change_nothing(slicer_app):
    scene = slicer_app.scene
    volume = make_volume(scene)
    n_nodes = scene.GetNumberOfNodes()
    with pytest.raises(geometry.LandmarkError):
        mrml.present(scene, volume, np.zeros((10, 2)), convention="clinical")
    assert scene.GetNumberOfNodes() == n_nodes


def test_a_3d_volume_is_refused(slicer_app):
    scene = slicer_app.scene
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    import vtk

    image = vtk.vtkImageData()
    image.SetDimensions(64, 64, 30)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    ct.SetAndObserveImageData(image)
    with pytest.raises(ValueError, match="3D volume with 30 slices"):
        mrml.present(scene, ct, synthetic_spine(DOUBLE_CURVE_TILTS), convention="clinical")


def test_convention_switch_recomputes(slicer_app):
    scene = slicer_app.scene
    volume = make_volume(scene)
    nodes = mrml.present(scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS), convention="clinical")
    mrml.set_convention(nodes, "aasce")
    rows = common.table_rows(nodes.table)
    assert {r["Convention"] for r in rows} == {"aasce"}
    expected = geometry.cobb_angles(synthetic_spine(DOUBLE_CURVE_TILTS), "aasce", image_height=2200).angles
    assert angle_column(nodes.table) == pytest.approx({k: round(v, 2) for k, v in expected.items()})


def test_markups_json_round_trip_keeps_labels_and_positions(slicer_app, tmp_path):
    scene = slicer_app.scene
    volume = make_volume(scene)
    nodes = mrml.present(scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS), convention="clinical")
    path = common.save_node(nodes.landmarks, tmp_path / "film landmarks.mrk.json")
    text = path.read_text()
    assert '"coordinateSystem": "LPS"' in text and "T7 inf-R" in text
    loaded = common.read_node(scene, "vtkMRMLMarkupsFiducialNode", path)
    assert loaded.GetNthControlPointLabel(26) == "T7 inf-R"
    assert common.control_points(loaded) == pytest.approx(common.control_points(nodes.landmarks), abs=1e-4)


def test_moved_points_and_angles_survive_saving_and_reloading_the_scene(slicer_app, tmp_path):
    from MSKCommonLib.headless import make_app

    scene = slicer_app.scene
    volume = make_volume(scene)
    nodes = mrml.present(scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS), convention="clinical")
    move_corner(nodes, 17, 0, -20)
    moved = mrml.landmarks_px(nodes).copy()
    angles = angle_column(nodes.table)
    path = tmp_path / "study.mrb"
    assert scene.WriteToMRB(str(path))
    mrml.detach_all()

    other = make_app()
    try:
        assert other.scene.ReadFromMRB(str(path))
        volume2 = other.scene.GetFirstNodeByName("film")
        reloaded = mrml.find_result(other.scene, volume2)
        assert reloaded is not None
        assert mrml.landmarks_px(reloaded) == pytest.approx(moved, abs=1e-4)
        assert angle_column(reloaded.table) == pytest.approx(angles)
        assert mrml.result_was_edited(reloaded)  # still known as edited after reload
        # live again after reload
        move_corner(reloaded, 17, 0, 20)
        assert angle_column(reloaded.table)["MT"] == pytest.approx(35.0, abs=0.01)
    finally:
        mrml.detach_all()
        other.scene.Clear(1)


def test_vertebra_segmentation_has_17_named_segments_and_round_trips(slicer_app, tmp_path):
    import slicerio
    import nrrd  # noqa: F401  (slicerio reads through pynrrd)

    scene = slicer_app.scene
    volume = make_volume(scene, shape=(400, 200))
    labelmap = np.zeros((400, 200), np.uint8)
    for v in range(17):
        labelmap[20 + v * 20 : 35 + v * 20, 60 + v : 140 - v] = v + 1
    spine = synthetic_spine([0] * 17, spacing=20, width=60, height=15, x0=100, y0=27)
    nodes = mrml.present(scene, volume, spine, convention="clinical", labelmap=labelmap)
    segmentation = nodes.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 17
    names = [segmentation.GetNthSegment(i).GetName() for i in range(17)]
    assert names == list(geometry.VERTEBRA_NAMES)
    path = common.save_node(nodes.segmentation, tmp_path / "vertebrae.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == list(geometry.VERTEBRA_NAMES)
    t7 = next(s for s in seg["segments"] if s["name"] == "T7")
    voxels = seg["voxels"]
    if voxels.ndim == 4:  # one layer per segment group
        voxels = voxels[..., t7.get("layer", 0)]
    assert int(np.count_nonzero(voxels == t7["labelValue"])) == int(np.count_nonzero(labelmap == 7))
