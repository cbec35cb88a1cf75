"""The review layer itself (MSKCommonLib.review), on real MRML nodes (slicer-core), with a small
presenter of its own: a ruler whose measurement is the distance between its first two points.

What a user and the front ends rely on, whatever the module: node roles that name the result's
nodes, points that remember where the computation put them, a measurement that follows a moved
point (with the role that moved), moved points drawn unselected and listed in the record, a
reason instead of a crash when the points cannot be measured, re-runs that never replace edits
silently, reset, removal, and the check of point files changed after a run wrote them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from MSKCommonLib import mrml as common
from MSKCommonLib.image import image_from_array
from MSKCommonLib.review import (
    ATTR_COMPUTED, ATTR_MODULE, ATTR_ROLE, EDITED_COLOR, EditedResultExists, LiveResult, MeasureError, Presenter,
    Review, edited_files, result_reference,
)

FIDUCIAL, LINE = "vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsLineNode"
RULER_COLOR = (0.9, 0.3, 0.1)


@dataclass
class RulerResult:
    points: np.ndarray  # (N, 2) pixels
    labels: list = None
    measurement: float = 0.0  # what the "pipeline" measured
    extra: np.ndarray = None  # a second editable point node, when given
    point_class: str = FIDUCIAL
    editable: bool = True

    def to_record(self) -> dict:
        return {"module": "Ruler", "length_px": self.measurement}


@dataclass
class RulerPresenter(Presenter):
    module: str = "Ruler"
    title: str = "ruler"
    measured: list = field(default_factory=list)  # changed roles the layer measured with
    restored: int = 0

    def build(self, live, result):
        live.add_points("points", result.point_class, "ruler points", result.points, result.labels,
                        color=RULER_COLOR, editable=result.editable)
        if result.extra is not None:
            live.add_points("extra", FIDUCIAL, "ruler extra", result.extra)
        line = live.reusable("line", LINE) or common.new_markups(live.scene, LINE, "ruler line", locked=True)
        live.add_node("line", line)

    def measurement(self, result):
        return result.measurement

    def measure(self, live, changed_role):
        self.measured.append(changed_role)
        p = live.points_px("points")
        if len(p) < 2:
            raise MeasureError("the ruler needs two points")
        if np.allclose(p[0], p[1]):
            raise MeasureError()  # no message: the layer names the error
        return float(np.linalg.norm(p[1] - p[0]))

    def draw(self, live, measurement):
        line = live.node("line")
        if measurement is not None:
            live.set_points("line", live.points_px("points")[:2])
        common.fill_table(live.table, [("Length (px)", [measurement]), ("Note", [live.error])])
        line.SetAttribute("drawn", "none" if measurement is None else f"{measurement:.6f}")

    def record(self, live, record, measurement):
        return {**record, "length_px": measurement}

    def restore(self, live):
        self.restored += 1
        live.cache["restored"] = self.restored


POINTS = np.array([[10.0, 20.0], [40.0, 60.0], [70.0, 20.0]])  # 50 px between the first two
LABELS = ["A", "B", "C"]


def volume(scene, name="film", spacing=(0.5, 0.25)):
    image = image_from_array(np.arange(12000, dtype=np.float32).reshape(100, 120), spacing, source=name)
    return common.volume_from_image(scene, image, name)


def ruler(points=POINTS, labels=LABELS, measurement=50.0, **kw):
    return RulerResult(np.asarray(points, float), labels, measurement, **kw)


def move(live, role, index, dx, dy):
    """Move one point by (dx, dy) pixels, as a drag in a view does (one modified event)."""
    node = live.node(role)
    xy = live.points_px(role)[index]
    node.SetNthControlPointPosition(index, *common.pixels_to_ras(live.volume, xy + [dx, dy])[0])


@pytest.fixture
def layer():
    review = Review(RulerPresenter())
    yield review
    review.detach_all()


def shown(slicer_app, layer, result=None, name="film"):
    v = volume(slicer_app.scene, name)
    return v, layer.show(slicer_app.scene, v, result or ruler())


def table_length(live):
    return common.table_rows(live.table)[0]["Length (px)"]


# --- showing a result


def test_show_makes_the_root_table_the_nodes_of_each_role_and_draws_the_pipeline_measurement(slicer_app, layer):
    v, live = shown(slicer_app, layer)
    assert live.table is live.root and live.root.GetName() == "film ruler"
    assert live.root.GetAttribute(ATTR_MODULE) == "Ruler"
    assert v.GetNodeReference(result_reference("Ruler")) is live.root
    assert layer.reference == "MSKMorphometry.Ruler.Result"
    assert live.volume is v and live.scene is slicer_app.scene
    # the presenter's nodes, and the layer's own rings around moved points (none yet)
    assert sorted(live.roles) == ["edited.markers", "line", "points"] and live.point_roles == ["points"]
    assert set(live.nodes) == {"edited.markers", "line", "points"} and live.nodes["points"] is live.node("points")
    assert live.node("edited.markers").GetNumberOfControlPoints() == 0 and live.node("edited.markers").GetLocked()
    for role in live.roles:
        assert live.node(role).GetAttribute(ATTR_ROLE) == role
    # drawn with the pipeline's own measurement, not measured again
    assert live.measurement == 50.0 and layer.presenter.measured == []
    assert table_length(live) == 50.0 and live.error == ""
    assert live.saved_record() == {"module": "Ruler", "length_px": 50.0}
    # the points are where the result put them, in pixels of the film (0.5 x 0.25 mm)
    assert live.points_px("points") == pytest.approx(POINTS)
    assert live.computed_px("points") == pytest.approx(POINTS)
    assert live.labels("points") == LABELS
    assert live.points_px("line") == pytest.approx(POINTS[:2])
    assert not live.edited() and live.edited_labels() == {} and live.edited_points("points") == []


def test_editable_points_are_drawn_in_the_edited_colour_when_unselected_derived_ones_keep_theirs(slicer_app, layer):
    _, live = shown(slicer_app, layer)
    points, line = live.node("points"), live.node("line")
    assert points.GetDisplayNode().GetColor() == pytest.approx(EDITED_COLOR)
    assert points.GetDisplayNode().GetSelectedColor() == pytest.approx(RULER_COLOR)
    assert not points.GetLocked() and line.GetLocked()
    assert all(points.GetNthControlPointSelected(i) for i in range(3))  # nothing edited: all selected
    _, fixed = shown(slicer_app, Review(RulerPresenter()), ruler(editable=False), name="other")
    node = fixed.node("points")
    assert node.GetDisplayNode().GetColor() == pytest.approx(RULER_COLOR)
    assert node.GetAttribute(ATTR_COMPUTED) is None and fixed.point_roles == []


# --- live measurement


def test_a_moved_point_is_measured_again_with_its_role_and_listed_as_edited(slicer_app, layer):
    _, live = shown(slicer_app, layer, ruler(extra=np.array([[5.0, 5.0], [6.0, 6.0]])))
    presenter = layer.presenter
    move(live, "points", 1, 30.0, -40.0)  # B moves onto (70, 20): 60 px from A
    assert presenter.measured == ["points"]
    assert live.measurement == pytest.approx(60.0) and table_length(live) == pytest.approx(60.0)
    assert live.points_px("line") == pytest.approx(np.array([[10, 20], [70, 20]]))
    assert live.edited_points("points") == [1] and live.edited()
    assert live.edited_labels() == {"points": ["B"]}
    node = live.node("points")
    assert [bool(node.GetNthControlPointSelected(i)) for i in range(3)] == [True, False, True]
    assert live.points_px("edited.markers") == pytest.approx(live.points_px("points")[[1]])  # a ring around it
    assert live.node("edited.markers").GetDisplayNode().GetGlyphTypeAsString() == "Circle2D"
    assert live.computed_px("points") == pytest.approx(POINTS)  # the computation's positions stay
    move(live, "extra", 0, 2.0, 0.0)
    assert presenter.measured == ["points", "extra"]  # each node's observer names its own role
    assert live.edited_labels() == {"points": ["B"], "extra": [live.labels("extra")[0]]}


def test_half_a_pixel_is_an_edit_a_thousandth_is_not(slicer_app, layer):
    _, live = shown(slicer_app, layer)
    move(live, "points", 2, 0.0, 0.5)
    assert live.edited_points("points") == [2]
    _, other = shown(slicer_app, layer, name="second")
    move(other, "points", 2, 0.0004, 0.0)
    assert other.edited_points("points") == [] and not other.edited()


def test_points_added_or_removed_make_every_point_edited(slicer_app, layer):
    _, live = shown(slicer_app, layer)
    node = live.node("points")
    node.AddControlPoint(*common.pixels_to_ras(live.volume, [[90.0, 90.0]])[0])
    node.SetNthControlPointLabel(3, "")
    assert live.edited_points("points") == [0, 1, 2, 3]
    assert live.edited_labels() == {"points": ["A", "B", "C", "4"]}
    node.RemoveNthControlPoint(3)
    node.RemoveNthControlPoint(2)
    assert live.edited_points("points") == [0, 1]
    assert live.measurement == pytest.approx(50.0)


def test_unmeasurable_points_leave_the_reason_not_a_crash(slicer_app, layer):
    _, live = shown(slicer_app, layer)
    node = live.node("points")
    node.RemoveNthControlPoint(2)
    node.RemoveNthControlPoint(1)
    assert live.measurement is None and live.error == "the ruler needs two points"
    assert live.node("line").GetAttribute("drawn") == "none"
    assert common.table_rows(live.table)[0]["Note"] == "the ruler needs two points"
    record = live.record()
    assert record["error"] == "the ruler needs two points" and record["length_px"] is None
    # an error without a message is named by its type
    _, other = shown(slicer_app, layer, name="second")
    move(other, "points", 1, -30.0, -40.0)  # B onto A
    assert other.measurement is None and other.error == "MeasureError"
    move(other, "points", 1, 3.0, 4.0)  # measurable again: the reason goes
    assert other.measurement == pytest.approx(5.0) and other.error == "" and "error" not in other.record()


def test_reset_moves_points_back_with_their_labels_and_the_measurement_follows(slicer_app, layer):
    _, live = shown(slicer_app, layer)
    node = live.node("points")
    move(live, "points", 0, 5.0, 5.0)
    node.SetNthControlPointLabel(0, "renamed")
    node.AddControlPoint(*common.pixels_to_ras(live.volume, [[1.0, 1.0]])[0])
    live.reset_edited_points()
    assert live.points_px("points") == pytest.approx(POINTS) and live.labels("points") == LABELS
    assert not live.edited() and live.measurement == pytest.approx(50.0) and table_length(live) == pytest.approx(50.0)
    assert all(node.GetNthControlPointSelected(i) for i in range(3))
    assert layer.presenter.measured[-1] is None  # a reset is no point's move


def test_set_points_writes_without_measuring_and_computed_ones_become_the_reference(slicer_app, layer):
    _, live = shown(slicer_app, layer)
    moved = POINTS + [[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]
    live.set_points("points", moved)
    assert layer.presenter.measured == [] and live.measurement == 50.0
    assert live.points_px("points") == pytest.approx(moved) and live.edited_points("points") == [0]
    live.set_points("points", moved, ["P", "Q", "R"], computed=True)
    assert live.edited_points("points") == [] and live.computed_px("points") == pytest.approx(moved)
    assert live.labels("points") == ["P", "Q", "R"]
    live.reset_edited_points()
    assert live.labels("points") == ["P", "Q", "R"]


# --- the record


def test_the_record_has_the_current_points_and_measurement_and_the_review_section(slicer_app, layer):
    _, live = shown(slicer_app, layer)
    move(live, "points", 1, 0.12345, 0.0)
    record = live.record()
    assert record["module"] == "Ruler" and record["length_px"] == pytest.approx(live.measurement)
    review = record["review"]
    assert review["edited"] is True and review["edited_points"] == {"points": ["B"]}
    assert review["points_px"] == {"points": [[10.0, 20.0], [40.123, 60.0], [70.0, 20.0]]}
    assert review["computed_points_px"] == {"points": POINTS.tolist()}
    assert review["point_nodes"] == {"points": FIDUCIAL}
    assert "error" not in record
    _, other = shown(slicer_app, layer, ruler(point_class=LINE, points=POINTS[:2], labels=None), name="line film")
    assert other.record()["review"]["point_nodes"] == {"points": LINE}
    assert other.record()["review"]["edited"] is False


# --- re-runs


def test_a_rerun_without_edits_replaces_the_result_in_place(slicer_app, layer):
    scene = slicer_app.scene
    v, first = shown(slicer_app, layer, ruler(extra=np.array([[5.0, 5.0], [6.0, 6.0]])))
    root, points, line, extra = first.root, first.node("points"), first.node("line"), first.node("extra")
    tables = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    second = layer.show(scene, v, ruler(points=POINTS + 1.0, measurement=49.0))
    assert second.root is root and second.node("points") is points and second.node("line") is line
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    assert extra.GetScene() is None and "extra" not in second.roles  # a role the new result lacks is removed
    assert second.points_px("points") == pytest.approx(POINTS + 1.0) and second.measurement == 49.0
    assert second.saved_record()["length_px"] == 49.0 and table_length(second) == 49.0
    assert layer.find(scene, v) is second and layer.all(scene, v) == [second]
    move(second, "points", 0, 1.0, 0.0)  # the kept node is observed once more, for the new result
    assert layer.presenter.measured == ["points"] and second.edited_points("points") == [0]


def test_a_rerun_over_moved_points_asks_first_and_changes_nothing(slicer_app, layer):
    scene = slicer_app.scene
    v, first = shown(slicer_app, layer)
    move(first, "points", 0, 3.0, 0.0)
    move(first, "points", 2, 3.0, 0.0)
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(EditedResultExists, match=r"2 point\(s\) .*'film'"):
        layer.show(scene, v, ruler(measurement=1.0))
    with pytest.raises(EditedResultExists):
        layer.check_rerun(scene, v)
    assert scene.GetNumberOfNodes() == nodes and layer.find(scene, v) is first
    assert first.edited_points("points") == [0, 2] and first.saved_record()["length_px"] == 50.0
    with pytest.raises(ValueError, match="on_existing must be one of ask, keep, replace, not 'overwrite'"):
        layer.show(scene, v, ruler(), on_existing="overwrite")
    assert scene.GetNumberOfNodes() == nodes


def test_keep_makes_a_new_result_beside_the_edited_one_replace_removes_it(slicer_app, layer):
    scene = slicer_app.scene
    v, first = shown(slicer_app, layer)
    move(first, "points", 0, 3.0, 0.0)
    assert layer.check_rerun(scene, v, "keep") is first and layer.check_rerun(scene, v, "replace") is first
    kept = layer.show(scene, v, ruler(measurement=7.0), on_existing="keep")
    assert kept.root is not first.root and first.root.GetScene() is scene
    assert kept.root.GetName() != first.root.GetName() and kept.root.GetName().startswith("film ruler")
    assert first.edited_points("points") == [0] and not kept.edited()
    assert layer.find(scene, v) is kept and layer.all(scene, v) == [first, kept]
    replaced = layer.show(scene, v, ruler(measurement=8.0), on_existing="replace")
    assert replaced.root is kept.root and replaced.measurement == 8.0
    assert layer.all(scene, v) == [first, replaced]


def test_results_are_per_image_and_per_module(slicer_app, layer):
    scene = slicer_app.scene
    a, on_a = shown(slicer_app, layer, name="a")
    b, on_b = shown(slicer_app, layer, name="b")
    other = Review(RulerPresenter(module="Other", title="other"))
    try:
        on_other = other.show(scene, a, ruler())
        assert layer.find(scene, a) is on_a and layer.find(scene, b) is on_b and other.find(scene, a) is on_other
        assert layer.all(scene, a) == [on_a] and other.all(scene, a) == [on_other] and other.all(scene, b) == []
        assert other.find(scene, b) is None and layer.find(scene, None) is None
    finally:
        other.detach_all()


# --- a result found in the scene (another front end, a loaded scene)


def test_a_result_found_in_the_scene_is_restored_measured_and_observed(slicer_app, layer):
    scene = slicer_app.scene
    v, live = shown(slicer_app, layer)
    move(live, "points", 1, 30.0, -40.0)
    layer.detach_all()
    again = Review(RulerPresenter())
    try:
        found = again.find(scene, v)
        assert isinstance(found, LiveResult) and found is not live and found.root is live.root
        assert live.result is not None and found.result is None  # the pipeline's result is this session's only
        assert again.presenter.restored == 1 and again.presenter.measured == [None]
        assert found.cache == {"restored": 1}
        assert found.measurement == pytest.approx(60.0) and found.edited_labels() == {"points": ["B"]}
        assert again.find(scene, v) is found and again.presenter.restored == 1  # kept, not rebuilt
        assert again.all(scene, v) == [found]
        move(found, "points", 1, 0.0, 20.0)
        assert again.presenter.measured == [None, "points"]
        assert found.measurement == pytest.approx(np.hypot(60.0, 20.0))
    finally:
        again.detach_all()


def test_detach_all_stops_the_live_measurement(slicer_app, layer):
    v, live = shown(slicer_app, layer)
    layer.detach_all()
    move(live, "points", 1, 30.0, -40.0)
    assert layer.presenter.measured == [] and live.measurement == 50.0
    assert len(layer.observers) == 0
    found = layer.find(slicer_app.scene, v)  # found again: a new live result, measured and observed
    assert found is not live and found.measurement == pytest.approx(60.0)
    assert len(layer.observers) == 1


# --- removal


def test_remove_takes_away_the_result_but_not_the_image(slicer_app, layer):
    scene = slicer_app.scene
    v, live = shown(slicer_app, layer)
    nodes = [live.root, live.node("points"), live.node("line")]
    live.remove()
    assert all(n.GetScene() is None for n in nodes) and v.GetScene() is scene
    assert v.GetNodeReferenceID(layer.reference) is None
    assert layer.find(scene, v) is None and layer.all(scene, v) == [] and len(layer.observers) == 0


def test_removing_an_older_result_keeps_the_newer_one_current(slicer_app, layer):
    scene = slicer_app.scene
    v, first = shown(slicer_app, layer)
    newer = layer.show(scene, v, ruler(), on_existing="keep")
    first.remove()
    assert layer.find(scene, v) is newer and layer.all(scene, v) == [newer]
    assert newer.node("points").GetScene() is scene
    move(newer, "points", 1, 30.0, -40.0)
    assert newer.measurement == pytest.approx(60.0)


# --- point files changed after a run wrote them


def test_edited_files_finds_point_files_changed_after_the_run(slicer_app, layer, tmp_path):
    scene = slicer_app.scene
    v, live = shown(slicer_app, layer, ruler(extra=np.array([[5.0, 5.0], [6.0, 6.0]])))
    paths = {role: common.save_node(live.node(role), tmp_path / f"{role}.mrk.json") for role in ("points", "extra")}
    record = live.record()
    assert edited_files(scene, v, record, paths) == []
    nodes = scene.GetNumberOfNodes()
    move(live, "points", 0, 0.02, 0.0)  # more than 0.01 px: changed
    common.save_node(live.node("points"), paths["points"])
    assert edited_files(scene, v, record, paths) == [paths["points"]]
    assert scene.GetNumberOfNodes() == nodes  # the files' nodes (and their display and storage nodes) are read and removed again
    move(live, "points", 0, -0.015, 0.0)  # 0.005 px from what the run wrote: rounding, not an edit
    common.save_node(live.node("points"), paths["points"])
    assert edited_files(scene, v, record, paths) == []
    live.node("extra").RemoveNthControlPoint(1)  # a point removed
    common.save_node(live.node("extra"), paths["extra"])
    assert edited_files(scene, v, record, paths) == [paths["extra"]]
    # a record that says points were moved by hand; files that are missing or not the run's
    moved = {**record, "review": {**record["review"], "edited_points": {"points": ["A"]}}}
    assert edited_files(scene, v, moved, {"points": paths["points"]}) == [paths["points"]]
    assert edited_files(scene, v, record, {"points": tmp_path / "missing.mrk.json", "line": paths["extra"]}) == []
    assert edited_files(scene, v, {}, paths) == [] and edited_files(scene, v, None, paths) == []
    # every file is looked at: after a missing one, after one the record says was moved by hand
    assert edited_files(scene, v, record, {"line": paths["points"], "extra": paths["extra"]}) == [paths["extra"]]
    assert edited_files(scene, v, moved, paths) == [paths["points"], paths["extra"]]
    # a record written before the review section named the node classes and the moved points
    older = {"review": {"points_px": record["review"]["points_px"]}}
    assert edited_files(scene, v, older, paths) == [paths["extra"]]


def test_edited_files_reads_line_files_as_lines(slicer_app, layer, tmp_path):
    scene = slicer_app.scene
    v, live = shown(slicer_app, layer, ruler(point_class=LINE, points=POINTS[:2], labels=None))
    path = common.save_node(live.node("points"), tmp_path / "points.mrk.json")
    record = live.record()
    assert edited_files(scene, v, record, {"points": path}) == []
    move(live, "points", 1, 1.0, 0.0)
    common.save_node(live.node("points"), path)
    assert edited_files(scene, v, record, {"points": path}) == [path]


def test_a_rerun_makes_a_new_node_where_the_kind_of_node_changed(slicer_app, layer):
    scene = slicer_app.scene
    v, first = shown(slicer_app, layer)
    old = first.node("points")
    second = layer.show(scene, v, ruler(point_class=LINE, points=POINTS[:2], labels=None))
    assert second.node("points").GetClassName() == LINE and old.GetScene() is None
    assert second.points_px("points") == pytest.approx(POINTS[:2]) and second.point_roles == ["points"]
    # the same node again, no longer editable: it keeps no computed points and is not observed
    third = layer.show(scene, v, ruler(point_class=LINE, points=POINTS[:2], labels=None, editable=False))
    assert third.node("points") is second.node("points") and third.point_roles == []
    assert third.node("points").GetAttribute(ATTR_COMPUTED) is None
    move(third, "points", 0, 4.0, 0.0)
    assert layer.presenter.measured == []


def test_forgetting_a_node_removes_the_layers_observers_from_it(slicer_app):
    from MSKCommonLib.review import PointObservers

    node = common.new_markups(slicer_app.scene, FIDUCIAL, "points")
    common.set_control_points(node, np.zeros((2, 3)))
    before = {e: node.HasObserver(getattr(node, e)) for e in PointObservers.EVENTS}
    observers = PointObservers()
    assert observers.observe(None, "r", print) == "r" and len(observers) == 0  # no node: nothing observed
    seen = []
    observers.observe(node, "r", seen.append)
    assert all(node.HasObserver(getattr(node, e)) for e in PointObservers.EVENTS)
    with observers.paused(node):
        with observers.paused(node):  # nested: the outer block still silences the node
            pass
        node.SetNthControlPointPosition(0, 1.0, 1.0, 1.0)
        assert seen == []
    node.SetNthControlPointPosition(0, 2.0, 1.0, 1.0)
    assert seen == ["r"]
    observers.forget(node)
    assert {e: node.HasObserver(getattr(node, e)) for e in PointObservers.EVENTS} == before
