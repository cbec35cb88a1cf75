"""CobbAngle's nodes in the review layer with real Slicer nodes (slicer-core): points, lines,
table, live updates when a corner moves, re-runs that never replace a user's edits, files and
scenes."""
import numpy as np
import pytest

from CobbAngleLib import geometry
from CobbAngleLib import review as cobb_review
from CobbAngleLib.pipeline import result_from_landmarks
from CobbAngleLib.review import CobbPresenter, landmarks_px
from MSKCommonLib import mrml as common
from MSKCommonLib.image import image_from_array
from MSKCommonLib.review import EditedResultExists, Review
from conftest import DOUBLE_CURVE_TILTS, synthetic_spine


def make_image(shape=(2200, 900), spacing=(0.2, 0.2), name="film"):
    pixels = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    return image_from_array(pixels, spacing, source=name)


def make_volume(scene, shape=(2200, 900), spacing=(0.2, 0.2), name="film"):
    return common.volume_from_image(scene, make_image(shape, spacing, name), name)


def show(review, scene, volume, landmarks, convention="clinical", on_existing="ask", **extra):
    image = common.image_from_volume(volume)
    return review.show(scene, volume, result_from_landmarks(image, landmarks, convention, **extra), on_existing)


def angle_column(table_node):
    return {row["Curve"]: row["Angle (deg)"] for row in common.table_rows(table_node)}


def move_corner(live, index, dx_px, dy_px):
    node = live.node("landmarks")
    xy = common.ras_to_pixels(live.volume, common.control_points(node)[index])[0]
    ras = common.pixels_to_ras(live.volume, xy + [dx_px, dy_px])[0]
    node.SetNthControlPointPosition(index, *ras)


@pytest.fixture
def review():
    r = Review(CobbPresenter())
    yield r
    r.detach_all()


def test_volume_keeps_pixel_spacing_and_pixels(slicer_app):
    volume = make_volume(slicer_app.scene, spacing=(0.2, 0.25))
    assert volume.GetSpacing() == pytest.approx((0.25, 0.2, 1.0))  # x = columns, y = rows
    assert common.image_from_volume(volume).pixels.shape == (2200, 900)
    # pixel (x=10, y=20) sits 10 columns and 20 rows from the origin, in mm
    ras = common.pixels_to_ras(volume, [[10, 20]])[0]
    assert ras == pytest.approx([-2.5, -4.0, 0.0])
    assert common.ras_to_pixels(volume, [ras])[0] == pytest.approx([10, 20])


def test_present_makes_labelled_points_lines_and_table(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene)
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    live = show(review, scene, volume, spine)
    landmarks = live.node("landmarks")
    assert landmarks.GetNumberOfControlPoints() == 68
    assert landmarks.GetNthControlPointLabel(0) == "T1 sup-R"
    assert landmarks.GetNthControlPointLabel(26) == "T7 inf-R"
    assert landmarks.GetNthControlPointLabel(67) == "L5 inf-L"
    assert landmarks_px(live) == pytest.approx(spine)
    assert angle_column(live.table) == pytest.approx({"PT": 23.0, "MT": 35.0, "TL_L": 23.0}, abs=0.01)
    rows = {r["Curve"]: r for r in common.table_rows(live.table)}
    assert rows["MT"]["Upper end vertebra"] == "T5" and rows["MT"]["Lower end vertebra"] == "T11"
    assert rows["MT"]["Convention"] == "clinical"
    # the MT lines lie on T5's superior and T11's inferior endplate
    upper = common.ras_to_pixels(volume, common.control_points(live.node("line.MT.upper")))
    direction = upper[1] - upper[0]
    assert np.degrees(np.arctan2(direction[1], direction[0])) == pytest.approx(20.0, abs=1e-6)
    lower = common.ras_to_pixels(volume, common.control_points(live.node("line.MT.lower")))
    direction = lower[1] - lower[0]
    assert np.degrees(np.arctan2(direction[1], direction[0])) == pytest.approx(-15.0, abs=1e-6)
    assert live.node("line.MT.upper").GetLocked() and not landmarks.GetLocked()
    assert not live.edited()


def test_moving_a_corner_updates_lines_and_table_at_once(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene)
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS))
    before = angle_column(live.table)["MT"]
    # lift T5's superior-left corner (index 4*4+1): its endplate tilts less, MT shrinks
    move_corner(live, 17, 0, -20)
    expected = geometry.cobb_angles(landmarks_px(live), "clinical").curve("MT").angle_deg
    after = angle_column(live.table)["MT"]
    assert after == pytest.approx(round(expected, 2)) and after < before - 5
    # the MT upper line now lies along the (new) upper end vertebra's superior endplate
    vertebra, kind = live.measurement.curve("MT").upper_line
    a, b = geometry.line_endpoints(landmarks_px(live), vertebra, kind)
    line = common.ras_to_pixels(volume, common.control_points(live.node("line.MT.upper")))

    def cross(u, v):
        return u[0] * v[1] - u[1] * v[0]

    assert abs(cross(b - a, line[1] - line[0])) / (np.linalg.norm(b - a) * np.linalg.norm(line[1] - line[0])) < 1e-9
    assert abs(cross(b - a, line[0] - a)) / np.linalg.norm(b - a) < 1e-6
    assert live.edited() and live.edited_labels() == {"landmarks": ["T5 sup-L"]}
    # the moved point is marked (drawn unselected, in the edited colour), the others are not
    node = live.node("landmarks")
    assert not node.GetNthControlPointSelected(17) and node.GetNthControlPointSelected(16)
    assert {r["Edited points"] for r in common.table_rows(live.table)} == {"T5 sup-L"}
    live.reset_edited_points()
    assert not live.edited()
    assert node.GetNthControlPointSelected(17)
    assert angle_column(live.table)["MT"] == pytest.approx(before)


def test_rerun_never_silently_replaces_edited_points(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene)
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    first = show(review, scene, volume, spine)
    n_nodes = scene.GetNumberOfNodes()

    # unedited: a re-run updates the same nodes, creating none
    again = show(review, scene, volume, spine + 1.0)
    assert again.node("landmarks").GetID() == first.node("landmarks").GetID()
    assert scene.GetNumberOfNodes() == n_nodes

    move_corner(again, 17, 0, -20)
    edited = landmarks_px(again).copy()
    with pytest.raises(EditedResultExists):
        show(review, scene, volume, spine)
    assert landmarks_px(again) == pytest.approx(edited)  # nothing changed
    assert scene.GetNumberOfNodes() == n_nodes

    newer = show(review, scene, volume, spine, on_existing="keep")
    assert newer.node("landmarks").GetID() != again.node("landmarks").GetID()
    assert landmarks_px(again) == pytest.approx(edited)  # the edited result is kept
    assert review.find(scene, volume).node("landmarks").GetID() == newer.node("landmarks").GetID()
    assert len(review.all(scene, volume)) == 2

    move_corner(newer, 0, 3, 3)
    replaced = show(review, scene, volume, spine, on_existing="replace")
    assert replaced.node("landmarks").GetID() == newer.node("landmarks").GetID()
    assert landmarks_px(replaced) == pytest.approx(spine)
    assert not replaced.edited()


def test_removing_a_result_leaves_only_the_film(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene)
    n_nodes = scene.GetNumberOfNodes()
    labelmap = np.zeros((2200, 900), np.uint8)
    labelmap[100:200, 100:200] = 1
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS), vertebra_labelmap=labelmap)
    assert scene.GetNumberOfNodes() > n_nodes + 8
    live.remove()
    assert review.find(scene, volume) is None
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode") == 0
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0


def test_bad_landmarks_change_nothing(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene)
    n_nodes = scene.GetNumberOfNodes()
    with pytest.raises(geometry.LandmarkError):
        show(review, scene, volume, np.zeros((10, 2)))
    assert scene.GetNumberOfNodes() == n_nodes


def test_a_3d_volume_is_refused(slicer_app):
    from MSKCommonLib.image import ImageReadError

    scene = slicer_app.scene
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    import vtk

    image = vtk.vtkImageData()
    image.SetDimensions(64, 64, 30)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    ct.SetAndObserveImageData(image)
    with pytest.raises(ImageReadError, match="3D volume with 30 slices"):
        common.image_from_volume(ct)


def test_convention_switch_recomputes(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene, spacing=None)
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS))
    cobb_review.set_convention(live, "aasce")
    rows = common.table_rows(live.table)
    assert {r["Convention"] for r in rows} == {"aasce"}
    expected = geometry.cobb_angles(synthetic_spine(DOUBLE_CURVE_TILTS), "aasce", image_height=2200).angles
    assert angle_column(live.table) == pytest.approx({k: round(v, 2) for k, v in expected.items()})


def test_non_square_pixels_give_the_angle_slicer_measures_between_the_lines(slicer_app, review):
    """A 20 deg tilt in pixels on a 0.2 x 0.25 mm film is not 20 deg on the patient: the angle is
    the one between the lines as Slicer draws them in millimetres."""
    scene = slicer_app.scene
    volume = make_volume(scene, spacing=(0.2, 0.25))
    tilts = [0] * 5 + [20] + [0] * 5 + [0] * 6
    live = show(review, scene, volume, synthetic_spine(tilts))
    mt = max(live.measurement.curves, key=lambda c: c.angle_deg or 0.0)
    name = mt.name
    upper = common.control_points(live.node(f"line.{name}.upper"))
    lower = common.control_points(live.node(f"line.{name}.lower"))
    u, v = upper[1] - upper[0], lower[1] - lower[0]
    slicer_angle = np.degrees(np.arccos(abs(u @ v) / np.linalg.norm(u) / np.linalg.norm(v)))
    in_pixels = geometry.cobb_angles(synthetic_spine(tilts), "clinical").curve(name).angle_deg
    assert mt.angle_deg == pytest.approx(slicer_angle, abs=1e-6)
    assert abs(in_pixels - slicer_angle) > 3  # measuring in pixels would be off by degrees


def test_markups_json_round_trip_keeps_labels_and_positions(slicer_app, review, tmp_path):
    scene = slicer_app.scene
    volume = make_volume(scene)
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS))
    path = common.save_node(live.node("landmarks"), tmp_path / "film landmarks.mrk.json")
    text = path.read_text()
    assert '"coordinateSystem": "LPS"' in text and "T7 inf-R" in text
    loaded = common.read_node(scene, "vtkMRMLMarkupsFiducialNode", path)
    assert loaded.GetNthControlPointLabel(26) == "T7 inf-R"
    assert common.control_points(loaded) == pytest.approx(common.control_points(live.node("landmarks")), abs=1e-4)


def test_moved_points_and_angles_survive_saving_and_reloading_the_scene(slicer_app, review, tmp_path):
    from MSKCommonLib.headless import make_app

    scene = slicer_app.scene
    volume = make_volume(scene)
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS))
    move_corner(live, 17, 0, -20)
    moved = landmarks_px(live).copy()
    angles = angle_column(live.table)
    path = tmp_path / "study.mrb"
    assert scene.WriteToMRB(str(path))
    review.detach_all()

    other = make_app()
    other_review = Review(CobbPresenter())
    try:
        assert other.scene.ReadFromMRB(str(path))
        volume2 = other.scene.GetFirstNodeByName("film")
        reloaded = other_review.find(other.scene, volume2)
        assert reloaded is not None
        assert landmarks_px(reloaded) == pytest.approx(moved, abs=1e-4)
        assert angle_column(reloaded.table) == pytest.approx(angles)
        assert reloaded.edited()  # still known as edited after reload
        # live again after reload
        move_corner(reloaded, 17, 0, 20)
        assert angle_column(reloaded.table)["MT"] == pytest.approx(35.0, abs=0.01)
    finally:
        other_review.detach_all()
        other.scene.Clear(1)


def test_vertebra_segmentation_has_17_named_segments_and_round_trips(slicer_app, review, tmp_path):
    import slicerio
    import nrrd  # noqa: F401  (slicerio reads through pynrrd)

    scene = slicer_app.scene
    volume = make_volume(scene, shape=(400, 200))
    labelmap = np.zeros((400, 200), np.uint8)
    for v in range(17):
        labelmap[20 + v * 20: 35 + v * 20, 60 + v: 140 - v] = v + 1
    spine = synthetic_spine([0] * 17, spacing=20, width=60, height=15, x0=100, y0=27)
    live = show(review, scene, volume, spine, vertebra_labelmap=labelmap)
    segmentation = live.node("segmentation").GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 17
    names = [segmentation.GetNthSegment(i).GetName() for i in range(17)]
    assert names == list(geometry.VERTEBRA_NAMES)
    path = common.save_node(live.node("segmentation"), tmp_path / "vertebrae.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == list(geometry.VERTEBRA_NAMES)
    t7 = next(s for s in seg["segments"] if s["name"] == "T7")
    voxels = seg["voxels"]
    if voxels.ndim == 4:  # one layer per segment group
        voxels = voxels[..., t7.get("layer", 0)]
    assert int(np.count_nonzero(voxels == t7["labelValue"])) == int(np.count_nonzero(labelmap == 7))


def test_a_removed_corner_leaves_a_note_not_a_crash(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene)
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS))
    live.node("landmarks").RemoveNthControlPoint(30)
    assert live.measurement is None and "68 corners" in live.error
    rows = common.table_rows(live.table)
    assert all(r["Angle (deg)"] in ("", None) for r in rows)  # no number: not measured
    assert all("68 corners" in r["Note"] for r in rows)
    assert "68 corners" in live.record()["error"]


def test_a_curve_whose_corners_move_shows_edited_instead_of_the_networks_confidence(slicer_app, review):
    """The network's CHECK applies to the network's corners: once a corner of a curve (its end
    vertebrae or one between them) is moved, that curve's Check says "edited"; the others keep
    theirs, and resetting the points brings it back."""
    from CobbAngleLib.check import check_label

    scene = slicer_app.scene
    volume = make_volume(scene)
    confidence, check = {"PT": 0.93, "MT": 0.41, "TL_L": 0.88}, {"PT": False, "MT": True, "TL_L": False}
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS), angle_confidence=confidence, check=check)

    def column():
        return {r["Curve"]: r["Check"] for r in common.table_rows(live.table)}

    assert column() == {"PT": "confidence 0.93", "MT": "CHECK, confidence 0.41", "TL_L": "confidence 0.88"}
    before = {c.name: sorted((c.upper_line[0], c.lower_line[0])) for c in live.measurement.curves}
    move_corner(live, 17, 0, -20)  # T5 sup-L: MT (T5-T11 on the computed corners) shrinks, its end may move
    t5 = geometry.VERTEBRA_NAMES.index("T5")
    after = {c.name: sorted((c.upper_line[0], c.lower_line[0])) for c in live.measurement.curves}
    spans = after
    moved = {c for c in after if any(lo <= t5 <= hi for lo, hi in (before[c], after[c]))}
    assert "MT" in moved and "TL_L" not in moved  # TL_L lies below T11
    record = live.record()
    assert set(record["check_edited"]) == moved
    assert column() == {c: "edited" if c in moved else check_label(record, c) for c in spans}
    assert column()["TL_L"] == "confidence 0.88"
    live.reset_edited_points()
    assert column()["MT"] == "CHECK, confidence 0.41" and live.record()["check_edited"] == []


def test_a_vertebra_dragged_out_of_order_cannot_be_measured_until_it_is_put_back(slicer_app, review):
    scene = slicer_app.scene
    volume = make_volume(scene)
    live = show(review, scene, volume, synthetic_spine(DOUBLE_CURVE_TILTS))
    before = angle_column(live.table)
    for corner in range(4 * 5, 4 * 6):  # T6's four corners dragged 330 px down, below T8 (110 px a level)
        move_corner(live, corner, 0, 330)
    assert live.measurement is None and "T7 is not below T6" in live.error
    assert live.error.startswith("the vertebrae do not run T1 -> L5 down the spine")
    rows = common.table_rows(live.table)
    assert all(r["Angle (deg)"] in ("", None) for r in rows)  # no number: not measured
    assert all("T7 is not below T6" in r["Note"] for r in rows)
    assert "T7 is not below T6" in live.record()["error"]
    for corner in range(4 * 5, 4 * 6):  # and back where they were: measured again, as before
        move_corner(live, corner, 0, -330)
    assert live.measurement is not None and live.error == ""
    assert angle_column(live.table) == pytest.approx(before)
