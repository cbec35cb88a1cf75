"""The review layer: a module's result shown as ordinary Slicer nodes that stay editable, measured
again whenever a user moves a point, and never replaced without asking. One layer for every
module and every front end (the command line, the Slicer modules, the browser review).

A module plugs in a ``Presenter`` (how to build its nodes from a pipeline result, how to measure
the current points, how to draw a measurement); this layer does the rest the same way for all:

- **node roles**: a result is a table node (its *root*, named "<image> <title>") that references
  each of the result's nodes under a role ("landmarks", "line.MT.upper", "segmentation", ...);
  the image's volume references its latest root. Everything is node references and attributes,
  so it survives saving and loading the scene (.mrb).
- **computed positions**: each editable point node keeps the pixel positions the computation
  gave it (``ATTR_COMPUTED``); a point that differs by more than ``EDIT_TOLERANCE_PX`` is
  *edited*. Edited points are drawn in ``EDITED_COLOR`` (unselected) and listed in the record.
- **live measurement**: observers on the point nodes call the presenter's ``measure`` (the same
  code the pipeline measured with) and ``draw`` when a point moves; points that cannot be
  measured leave ``error`` on the result (and a note in the table), never a crash.
- **the re-run choice**: ``show(..., on_existing=...)`` with "ask" raises ``EditedResultExists``
  before anything is created or changed when the previous result has edited points (a previous
  result without edits is replaced); "keep" leaves the previous result and makes a new one;
  "replace" removes it first. ``check_rerun`` asks the same question before any work is done.
- **reset** of edited points and clean **removal** of a result's nodes.

The record (``LiveResult.record()``) is the result as JSON, with the current points and
measurement and a ``review`` section (points, computed points, edited points): what the command
line writes and what the browser review writes on Accept.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Optional

import numpy as np

from . import mrml as common

ON_EXISTING = ("ask", "keep", "replace")
REF_VOLUME = "MSKMorphometry.Volume"  # root -> the image's volume
REF_NODE = "MSKMorphometry.Node."  # root -> node, + role
ATTR_MODULE = "MSKMorphometry.Module"
ATTR_ROLE = "MSKMorphometry.Role"
ATTR_RECORD = "MSKMorphometry.Record"  # on the root: the result's record as the pipeline made it
ATTR_COMPUTED = "MSKMorphometry.ComputedPoints"  # on a point node: pixels the computation produced
ATTR_LABELS = "MSKMorphometry.PointLabels"
ATTR_SIGN_OFF = "MSKMorphometry.SignOff"  # on the root: who accepted the result, when, which CHECKs they saw
EDIT_TOLERANCE_PX = 1e-3
EDITED_COLOR = (0.2, 1.0, 1.0)  # points a user moved: cyan
EDITED_MARKERS = "edited.markers"  # a ring around each moved point (on the image), so that it stands out


def result_reference(module: str) -> str:
    """The reference role from an image's volume to its latest result of ``module``."""
    return f"MSKMorphometry.{module}.Result"


class EditedResultExists(RuntimeError):
    """The previous result on this image has points a user moved: choose ``on_existing="keep"``
    (leave it, make a new result) or ``"replace"``; nothing was created or changed."""


class MeasureError(ValueError):
    """Points that cannot be measured (the message says why, for the user)."""


class ChecksOpen(ValueError):
    """Accept on a result with CHECK warnings the reviewer has not confirmed (``checks``: them)."""

    def __init__(self, checks):
        self.checks = list(checks)
        super().__init__("the result has CHECK warnings; confirm that you have looked at them: " + "; ".join(self.checks))


def utc_now() -> str:
    """The time now as ISO 8601 in UTC, to the second (``2026-12-06T14:05:09Z``)."""
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class PointObservers:
    """Observers on markups nodes' control points, each with the object (here a ``LiveResult``)
    that its callback keeps current when a point is moved, added or removed.

    ``observe`` is idempotent: a node already observed keeps its first object, which is returned.
    ``paused(node)`` silences a node while the layer itself writes its points."""

    EVENTS = ("PointModifiedEvent", "PointAddedEvent", "PointRemovedEvent")
    # a drag by a markups widget: one edit from its start to its end (for undo)
    INTERACTION = ("PointStartInteractionEvent", "PointEndInteractionEvent")

    def __init__(self):
        self._entries: dict = {}  # node -> (observer tags, kept object, callback)
        self._muted: dict = {}  # node -> depth of nested paused() blocks

    def __contains__(self, node) -> bool:
        return node in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def result_of(self, node):
        """The object kept for an observed node."""
        return self._entries[node][1]

    def observe(self, node, result, callback, interaction=None):
        """Call ``callback(result)`` whenever a control point of ``node`` changes, and
        ``interaction(result, started)`` when a widget starts (True) or ends (False) a drag."""
        if node is None:
            return result
        if node in self._entries:
            return self._entries[node][1]

        def changed(caller, event):
            entry = self._entries.get(caller)
            if entry is not None and not self._muted.get(caller):
                entry[2](entry[1])

        def dragged(caller, event, started):
            entry = self._entries.get(caller)
            if entry is not None and interaction is not None:
                interaction(entry[1], started)

        tags = [node.AddObserver(getattr(node, event), changed) for event in self.EVENTS]
        tags += [node.AddObserver(getattr(node, event), lambda c, e, started=(event == self.INTERACTION[0]):
                                  dragged(c, e, started)) for event in self.INTERACTION]
        self._entries[node] = (tags, result, callback)
        return result

    def forget(self, node) -> None:
        entry = self._entries.pop(node, None)
        self._muted.pop(node, None)
        if entry is not None:
            for tag in entry[0]:
                node.RemoveObserver(tag)

    def forget_all(self) -> None:
        for node in list(self._entries):
            self.forget(node)

    @contextmanager
    def paused(self, node):
        """No callbacks from ``node`` inside the block."""
        self._muted[node] = self._muted.get(node, 0) + 1
        try:
            yield
        finally:
            self._muted[node] -= 1


class Presenter:
    """What a module supplies to the review layer (subclass it; see each module's ``review``)."""

    module = ""  # e.g. "CobbAngle": names the volume's reference to its result
    title = ""  # e.g. "Cobb angles": the root table is "<image name> <title>"

    def build(self, live: "LiveResult", result) -> None:
        """Create the result's nodes with ``live.add_node`` / ``live.add_points`` from a pipeline
        result (no measuring: the result carries its measurement)."""
        raise NotImplementedError

    def measurement(self, result):
        """The measurement the pipeline made (drawn as it is when the result is shown)."""
        raise NotImplementedError

    def measure(self, live: "LiveResult", changed_role: Optional[str]):
        """Measure the current points (the pipeline's own measuring code); raise ``MeasureError``
        (or another ValueError) with the reason when they cannot be measured."""
        raise NotImplementedError

    def draw(self, live: "LiveResult", measurement) -> None:
        """Update the derived nodes and the table; ``measurement`` None: not measurable
        (``live.error`` says why)."""
        raise NotImplementedError

    def record(self, live: "LiveResult", record: dict, measurement) -> dict:
        """The saved record updated with the current points and measurement."""
        return record

    def restore(self, live: "LiveResult") -> None:
        """Prepare a result found in a loaded scene (caches); called before it is measured."""

    def edited(self, live: "LiveResult") -> None:
        """An edit is complete (the end of a drag, a reset, an undo): update what is too slow to
        follow every mouse move (e.g. the vertebra segments)."""

    def open_checks(self, live: "LiveResult") -> list[str]:
        """The CHECK warnings a reviewer must confirm before accepting (default: the notes of the
        result's table, as the pages show them: the result's warnings and why its points cannot be
        measured)."""
        notes = [str(row.get("Note") or "") for row in common.table_rows(live.table)]
        lines = [w.strip() for note in notes for w in note.split("\n")]
        return [f"CHECK: {w}" for w in dict.fromkeys(lines) if w and w != "None"]


class LiveResult:
    """One result on one image, as nodes, kept measured (see the module docstring)."""

    def __init__(self, review: "Review", root):
        self.review = review
        self.root = root
        self.scene = root.GetScene()
        self.volume = root.GetNodeReference(REF_VOLUME)
        self.measurement = None
        self.error = ""
        self.result = None  # the pipeline's result when it was shown in this session
        self.cache: dict = {}  # the presenter's own (e.g. the back surface)
        self._reusable: dict = {}  # role -> node of the result this one replaces (updated in place)
        # undo / redo: the points of every editable node before each edit (this session only)
        self._undo: list = []
        self._redo: list = []
        self._settled: Optional[dict] = None  # the points after the last edit
        self._dragging = False

    # --- nodes

    @property
    def table(self):
        return self.root

    @property
    def roles(self) -> list[str]:
        out = []
        for i in range(self.root.GetNumberOfNodeReferenceRoles()):
            role = self.root.GetNthNodeReferenceRole(i)
            if role.startswith(REF_NODE) and self.root.GetNodeReference(role) is not None:
                out.append(role[len(REF_NODE):])
        return out

    def node(self, role: str):
        return self.root.GetNodeReference(REF_NODE + role)

    @property
    def nodes(self) -> dict:
        return {role: self.node(role) for role in self.roles}

    def reusable(self, role: str, class_name: Optional[str] = None):
        """The node of the same role of the result being replaced, to update in place (so a re-run
        keeps the same nodes), or None."""
        node = self._reusable.get(role)
        if node is None or (class_name is not None and node.GetClassName() != class_name):
            return None
        return self._reusable.pop(role)

    def add_node(self, role: str, node):
        node.SetAttribute(ATTR_ROLE, role)
        self.root.SetNodeReferenceID(REF_NODE + role, node.GetID())
        return node

    def add_points(self, role: str, class_name: str, name: str, points_px, labels=None, color=(1.0, 0.85, 0.1),
                   locked: bool = False, editable: bool = True):
        """A markups node for a role with its points (pixels). ``editable``: its computed positions
        are kept and it is observed (a locked, derived node is not)."""
        node = self.reusable(role, class_name)
        if node is None:
            node = common.new_markups(self.scene, class_name, name, color, locked=locked)
        else:
            node.SetLocked(locked)
            node.RemoveAttribute(ATTR_COMPUTED)
        self.add_node(role, node)
        if editable:
            display = node.GetDisplayNode()
            if display is not None:
                display.SetColor(*EDITED_COLOR)  # unselected = edited (see _mark_edited)
        self.set_points(role, points_px, labels, computed=editable)
        return node

    @property
    def point_roles(self) -> list[str]:
        """The roles of the editable point nodes (those that keep computed positions)."""
        return [r for r in self.roles if self.node(r).GetAttribute(ATTR_COMPUTED) is not None]

    # --- points

    def points_px(self, role: str) -> np.ndarray:
        node = self.node(role)
        return common.ras_to_pixels(self.volume, common.control_points(node)).reshape(-1, 2)

    def computed_px(self, role: str) -> np.ndarray:
        return np.asarray(common.json_attribute(self.node(role), ATTR_COMPUTED) or [], float).reshape(-1, 2)

    def labels(self, role: str) -> list:
        node = self.node(role)
        return [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())]

    def set_points(self, role: str, points_px, labels=None, computed: bool = False) -> None:
        """Write a node's points (pixels) without triggering its observers; ``computed``: these are
        the computation's positions (what an edit is measured against)."""
        node = self.node(role)
        points_px = np.asarray(points_px, float).reshape(-1, 2)
        with self.review.observers.paused(node):
            common.set_control_points(node, common.pixels_to_ras(self.volume, points_px), labels)
            if computed:
                common.json_attribute(node, ATTR_COMPUTED, np.round(points_px, 6).tolist())
                if labels is not None:
                    common.json_attribute(node, ATTR_LABELS, list(labels))

    def edited_points(self, role: str) -> list[int]:
        """Indices of the points of ``role`` a user moved (all of them when points were added or
        removed)."""
        computed, current = self.computed_px(role), self.points_px(role)
        if computed.shape != current.shape:
            return list(range(len(current)))
        moved = np.max(np.abs(computed - current), axis=1, initial=0.0) > EDIT_TOLERANCE_PX if len(current) else []
        return [int(i) for i in np.flatnonzero(moved)]

    def edited(self) -> bool:
        return any(self.edited_points(role) for role in self.point_roles)

    def edited_labels(self) -> dict:
        out = {}
        for role in self.point_roles:
            idx = self.edited_points(role)
            if idx:
                labels = self.labels(role)
                out[role] = [labels[i] if i < len(labels) and labels[i] else str(i + 1) for i in idx]
        return out

    # --- measuring

    def remeasure(self, changed_role: Optional[str] = None):
        """Measure the current points and redraw (what the observers call)."""
        presenter = self.review.presenter
        try:
            measurement, self.error = presenter.measure(self, changed_role), ""
        except ValueError as e:  # MeasureError and the modules' own landmark errors
            measurement, self.error = None, str(e) or type(e).__name__
        self.measurement = measurement
        presenter.draw(self, measurement)
        self._mark_edited()
        return measurement

    def _mark_edited(self) -> None:
        markers = self.node(EDITED_MARKERS)
        if markers is not None:  # rings around the moved points of the nodes on the image (not on a 3D surface)
            moved = [self.points_px(r)[self.edited_points(r)] for r in self.point_roles if not r.endswith("3d")]
            self.set_points(EDITED_MARKERS, np.concatenate(moved) if moved else np.zeros((0, 2)))
        for role in self.point_roles:
            node = self.node(role)
            edited = set(self.edited_points(role))
            with self.review.observers.paused(node):
                for i in range(node.GetNumberOfControlPoints()):
                    selected = i not in edited
                    if bool(node.GetNthControlPointSelected(i)) != selected:
                        node.SetNthControlPointSelected(i, selected)

    def reset_edited_points(self) -> None:
        """Move every point back to where the computation put it; the measurement follows (one edit
        for undo)."""
        for role in self.point_roles:
            saved_labels = common.json_attribute(self.node(role), ATTR_LABELS)
            self.set_points(role, self.computed_px(role), saved_labels)
        self.changed_by_user(None)

    def changed_by_user(self, role: Optional[str]):
        """A user changed the points (a drag, a reset, an undo): measure again; an acceptance given
        before no longer holds. A change outside a widget's drag is one edit for undo."""
        if not self._dragging:
            self._remember()
        self.withdraw_acceptance()
        return self.remeasure(role)

    # --- undo / redo: one step per edit (a whole drag, a reset, a point set by a script)

    def snapshot(self) -> dict:
        return {role: self.points_px(role).copy() for role in self.point_roles}

    def settle(self) -> None:
        """The points as they are now are the state an undo returns to (called when shown)."""
        self._settled = self.snapshot()

    def _remember(self) -> None:
        before, now = self._settled, self.snapshot()
        if before is not None and not _same_points(before, now):
            self._undo.append(before)
            self._redo.clear()
            self.review.presenter.edited(self)
        self._settled = now

    def dragging(self, started: bool) -> None:
        """A markups widget starts or ends a drag: the drag is one edit."""
        if started and not self._dragging:
            self._dragging = True
        elif not started and self._dragging:
            self._dragging = False
            self._remember()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Put the points back as they were before the last edit; False when there is none."""
        return self._restore(self._undo, self._redo)

    def redo(self) -> bool:
        return self._restore(self._redo, self._undo)

    def _restore(self, source: list, target: list) -> bool:
        if not source:
            return False
        target.append(self.snapshot())
        points = source.pop()
        for role, px in points.items():
            if self.node(role) is not None:
                labels = common.json_attribute(self.node(role), ATTR_LABELS)
                self.set_points(role, px, labels if labels is not None and len(labels) == len(px) else None)
        self._settled = self.snapshot()
        self.withdraw_acceptance()
        self.remeasure(None)
        self.review.presenter.edited(self)
        return True

    def reset_point(self, role: str, index: int) -> None:
        """Put one point back where the computation put it (one edit for undo)."""
        computed = self.computed_px(role)
        current = self.points_px(role)
        if computed.shape != current.shape or not 0 <= index < len(current):
            raise ValueError(f"no computed position for point {index + 1} of {role}")
        current[index] = computed[index]
        self.set_points(role, current)
        self.changed_by_user(role)

    # --- sign-off

    def open_checks(self) -> list[str]:
        return self.review.presenter.open_checks(self)

    def acceptance(self) -> dict:
        """{"accepted_by", "accepted_at", "checks_acknowledged"} of the reviewer's Accept, or {}."""
        return common.json_attribute(self.root, ATTR_SIGN_OFF) or {}

    def accept(self, reviewer: str, checks_acknowledged=None, at: Optional[str] = None) -> dict:
        """The reviewer signs the result as it is now: their name and the time (ISO 8601, UTC) go
        into the record's review section. With CHECK warnings open (``open_checks``) every one of
        them must be in ``checks_acknowledged`` (the reviewer confirmed them), else ``ChecksOpen``;
        a missing name is a ``ValueError``. Nothing changes when it refuses."""
        reviewer = " ".join(str(reviewer or "").split())
        if not reviewer:
            raise ValueError("Accept needs the reviewer's name")
        checks = self.open_checks()
        missing = [c for c in checks if c not in (checks_acknowledged or ())]
        if missing:
            raise ChecksOpen(missing)
        signed = {"accepted_by": reviewer, "accepted_at": at or utc_now(), "checks_acknowledged": checks}
        common.json_attribute(self.root, ATTR_SIGN_OFF, signed)
        return signed

    def withdraw_acceptance(self) -> None:
        if self.root.GetAttribute(ATTR_SIGN_OFF) is not None:
            self.root.RemoveAttribute(ATTR_SIGN_OFF)

    # --- the record

    def saved_record(self) -> dict:
        return json.loads(self.root.GetAttribute(ATTR_RECORD) or "{}")

    def record(self) -> dict:
        """The result as JSON with the current points and measurement, and the review section."""
        record = self.review.presenter.record(self, self.saved_record(), self.measurement)
        record["review"] = {
            "edited": self.edited(),
            "edited_points": self.edited_labels(),
            "points_px": {r: np.round(self.points_px(r), 3).tolist() for r in self.point_roles},
            "computed_points_px": {r: np.round(self.computed_px(r), 3).tolist() for r in self.point_roles},
            "point_nodes": {r: self.node(r).GetClassName() for r in self.point_roles},
        }
        signed = self.acceptance()  # null until a reviewer accepts (and again after a later edit)
        for key in ("accepted_by", "accepted_at", "checks_acknowledged"):
            record["review"][key] = signed.get(key)
        if self.error:
            record["error"] = self.error
        return record

    # --- removal

    def remove(self) -> None:
        """Remove the result's nodes (not the image) and forget their observers."""
        observers = self.review.observers
        for role, node in list(self.nodes.items()):
            observers.forget(node)
            if node is not None and node.GetScene() is not None:
                self.scene.RemoveNode(node)
        if self.volume is not None and self.volume.GetNodeReferenceID(self.review.reference) == self.root.GetID():
            self.volume.SetNodeReferenceID(self.review.reference, None)
        self.review._lives.pop(self.root.GetID(), None)
        if self.root.GetScene() is not None:
            self.scene.RemoveNode(self.root)


class Review:
    """The review layer of one module (one per front end: the CLI run, the Slicer logic, the web
    app); it owns the observers of the results it shows or finds."""

    def __init__(self, presenter: Presenter):
        self.presenter = presenter
        self.reference = result_reference(presenter.module)
        self.observers = PointObservers()
        self._lives: dict = {}  # root id -> LiveResult

    def find(self, scene, volume) -> Optional[LiveResult]:
        """The latest result on this image (observed and measured), or None."""
        if volume is None:
            return None
        root_id = volume.GetNodeReferenceID(self.reference)
        root = scene.GetNodeByID(root_id) if root_id else None
        return None if root is None else self._live(root)

    def all(self, scene, volume) -> list[LiveResult]:
        """Every result on this image (older ones kept with "keep"), oldest first."""
        roots = []
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
            node = scene.GetNthNodeByClass(i, "vtkMRMLTableNode")
            if node.GetAttribute(ATTR_MODULE) == self.presenter.module and node.GetNodeReference(REF_VOLUME) is volume:
                roots.append(node)
        return [self._live(root) for root in roots]

    def check_rerun(self, scene, volume, on_existing: str = "ask") -> Optional[LiveResult]:
        """The previous result, after checking the re-run choice: raises EditedResultExists (and
        changes nothing) when it has edited points and ``on_existing`` is "ask"."""
        if on_existing not in ON_EXISTING:
            raise ValueError(f"on_existing must be one of {', '.join(ON_EXISTING)}, not {on_existing!r}")
        previous = self.find(scene, volume)
        if previous is not None and on_existing == "ask" and previous.edited():
            moved = sum(len(v) for v in previous.edited_labels().values())
            raise EditedResultExists(
                f"{moved} point(s) of the previous result on '{volume.GetName()}' were moved by hand; "
                "keep that result (a new one is made beside it) or replace it")
        return previous

    def show(self, scene, volume, result, on_existing: str = "ask") -> LiveResult:
        """Show a pipeline result as nodes on ``volume`` (see the module docstring for
        ``on_existing``); returns the live result, drawn with the result's own measurement."""
        previous = self.check_rerun(scene, volume, on_existing)
        presenter = self.presenter
        old = {}
        if previous is not None and on_existing != "keep":  # replaced in place: the same nodes where possible
            root, old = previous.root, previous.nodes
            for role, node in old.items():
                self.observers.forget(node)
                root.RemoveNodeReferenceIDs(REF_NODE + role)
            self._lives.pop(root.GetID(), None)
        else:
            root = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{volume.GetName()} {presenter.title}"))
        root.SetAttribute(ATTR_MODULE, presenter.module)
        root.SetNodeReferenceID(REF_VOLUME, volume.GetID())
        root.SetAttribute(ATTR_RECORD, json.dumps(result.to_record()))
        volume.SetNodeReferenceID(self.reference, root.GetID())
        live = LiveResult(self, root)
        live.result = result
        live._reusable = dict(old)
        presenter.build(live, result)
        markers = live.add_points(EDITED_MARKERS, "vtkMRMLMarkupsFiducialNode", f"{volume.GetName()} moved points",
                                  np.zeros((0, 2)), color=EDITED_COLOR, locked=True, editable=False)
        if markers.GetDisplayNode() is not None:
            markers.GetDisplayNode().SetGlyphTypeFromString("Circle2D")  # a translucent halo: the point shows through
            markers.GetDisplayNode().SetGlyphScale(4.0)
            markers.GetDisplayNode().SetOpacity(0.45)
            markers.GetDisplayNode().SetPointLabelsVisibility(False)
            markers.GetDisplayNode().SetPropertiesLabelVisibility(False)
        for node in live._reusable.values():  # nodes of roles the new result does not have
            if node is not None and node.GetScene() is not None:
                scene.RemoveNode(node)
        live._reusable = {}
        live.measurement = presenter.measurement(result)
        presenter.draw(live, live.measurement)
        live._mark_edited()
        self._attach(live)
        return live

    def detach_all(self) -> None:
        """Remove every observer this layer added (module cleanup, scene close, end of a run)."""
        self.observers.forget_all()
        self._lives.clear()

    # --- internals

    def _live(self, root) -> LiveResult:
        live = self._lives.get(root.GetID())
        if live is not None and live.root is root:
            return live
        live = LiveResult(self, root)
        self.presenter.restore(live)
        live.remeasure(None)
        self._attach(live)
        return live

    def _attach(self, live: LiveResult) -> None:
        self._lives[live.root.GetID()] = live
        for role in live.point_roles:
            self.observers.observe(live.node(role), live, lambda current, role=role: current.changed_by_user(role),
                                   interaction=lambda current, started: current.dragging(started))
        live.settle()


def _same_points(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a)


def edited_files(scene, volume, record: dict, paths: dict) -> list:
    """The point files (``{role: path}``) of an earlier run that were changed after that run wrote
    them (their points differ from the record's), or whose record says points were moved by hand.
    ``volume``: the image, to read the files' points in its pixels."""
    review = (record or {}).get("review") or {}
    written, classes = review.get("points_px", {}), review.get("point_nodes", {})
    edited = []
    for role, path in paths.items():
        if not path.is_file() or role not in written:
            continue
        if review.get("edited_points", {}).get(role):
            edited.append(path)
            continue
        node = common.read_node(scene, classes.get(role, "vtkMRMLMarkupsFiducialNode"), path)
        try:
            now = common.ras_to_pixels(volume, common.control_points(node))
            before = np.asarray(written[role], float).reshape(-1, 2)
            if now.shape != before.shape or np.max(np.abs(now - before), initial=0.0) > 0.01:
                edited.append(path)
        finally:
            helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())] + [node.GetStorageNode()]
            scene.RemoveNode(node)
            for helper in helpers:  # the file's display and storage nodes too: nothing left in the scene
                if helper is not None and helper.GetScene() is not None:
                    scene.RemoveNode(helper)
    return edited
