"""KneeLandmarks' MRML layer: the only KneeLandmarks code that touches Slicer.

Per knee a result is a set of ordinary nodes tied to the radiograph's volume node:
- a fiducial node with the 16 KNEEL landmarks labelled T1..T9 (tibia) and F1..F7 (femur),
  editable,
- a tibial and a femoral contour (curve nodes, locked: they follow the landmarks),
- a medial and a lateral minimum joint space width (line nodes, locked, length in mm),
- a table with the side, both widths, the confidence and notes.

Moving a landmark recomputes contours, lines and table through ``KneeLandmarksLib.measure`` (the
same code as the network path and the command line). The positions the computation produced are
kept on the fiducial node, so a later run can tell whether a user moved points and never replaces
them silently: ``present(on_existing="update")`` raises ``EditedResultExists`` in that case
(the same policy as CobbAngleLib.mrml). References and attributes carry everything, so a saved
scene (.mrb) keeps working.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from MSKCommonLib import mrml as common

from . import measure
from . import landmarks as sm

ROLE_RESULT = "KneeLandmarks.Result."  # + side: volume -> that knee's latest landmarks node
ROLE_VOLUME = "KneeLandmarks.SourceVolume"  # landmarks -> volume
ROLE_TABLE = "KneeLandmarks.Table"
ROLE_CONTOUR = "KneeLandmarks.Contour"  # two references: tibia, femur
ROLE_JSW = "KneeLandmarks.JointSpaceWidth"  # two references: medial, lateral
ATTR_COMPUTED = "KneeLandmarks.ComputedLandmarks"  # pixel positions the computation produced (JSON)
ATTR_SIDE = "KneeLandmarks.Side"
ATTR_CONFIDENCE = "KneeLandmarks.Confidence"
ATTR_SOURCE = "KneeLandmarks.Source"
ATTR_PART = "KneeLandmarks.Part"  # on a curve/line node: "tibia", "femur", "medial", "lateral"
EDIT_TOLERANCE_PX = 1e-3
CONTOUR_SAMPLES_PER_SEGMENT = 4

COLORS = {"landmarks": (1.0, 0.85, 0.1), "tibia": (0.2, 0.8, 1.0), "femur": (1.0, 0.45, 0.2),
          "medial": (0.3, 1.0, 0.3), "lateral": (1.0, 0.3, 1.0)}


class EditedResultExists(RuntimeError):
    """A previous result on this volume has points a user moved; the caller must choose
    ``on_existing="new"`` (keep them, make a new result) or ``"overwrite"``."""


@dataclass
class KneeNodes:
    volume: object
    side: str
    landmarks: object
    contours: dict = field(default_factory=dict)  # "tibia"/"femur" -> curve node
    jsw_lines: dict = field(default_factory=dict)  # "medial"/"lateral" -> line node
    table: object = None
    measurement: Optional[measure.KneeMeasurement] = None
    error: str = ""


_observers = common.PointObservers()  # landmarks node -> the KneeNodes its observer keeps current


# --------------------------------------------------------------------------------------------
# public API

def _as_knee(p) -> tuple:
    if isinstance(p, dict):
        return p["side"], np.asarray(p["landmarks_px"], float), p.get("confidence"), p.get("source", "")
    return p.side, np.asarray(p.landmarks_px, float), getattr(p, "confidence", None), getattr(p, "source", "")


def present(scene, volume_node, knees: Sequence, *, on_existing: str = "update", source: str = "") -> list[KneeNodes]:
    """Show knees (objects or dicts with ``side``, ``landmarks_px`` (16, 2 pixels), optional
    ``confidence``) as nodes on ``volume_node``.

    on_existing: "update" reuses a knee's previous nodes unless a user edited its points (then
    EditedResultExists, before anything changes); "overwrite" reuses and replaces them; "new"
    keeps the previous result and makes new nodes."""
    if on_existing not in ("update", "overwrite", "new"):
        raise ValueError(f"on_existing must be update, overwrite or new, not {on_existing!r}")
    common.require_single_slice(volume_node)
    parsed = [_as_knee(k) for k in knees]
    spacing = volume_spacing(volume_node)
    for side, pts, conf, _ in parsed:  # measure first: bad landmarks fail before any node changes
        measure.joint_space_width(pts, side, spacing)
    if len({p[0] for p in parsed}) != len(parsed):
        raise ValueError("two results for the same knee side")
    existing = {side: find_result(scene, volume_node, side) for side, *_ in parsed}
    if on_existing == "update":
        edited = [s for s, n in existing.items() if n is not None and result_was_edited(n)]
        if edited:
            raise EditedResultExists(
                f"the {' and '.join(edited)} knee landmarks on '{volume_node.GetName()}' were edited by hand; "
                "choose to keep them (new result) or replace them")
    out = []
    for side, pts, conf, src in parsed:
        nodes = existing[side]
        if nodes is None or on_existing == "new":
            nodes = _new_nodes(scene, volume_node, side)
        _detach(nodes.landmarks)
        nodes.volume = volume_node
        fid = nodes.landmarks
        fid.SetAttribute(ATTR_SIDE, side)
        fid.SetAttribute(ATTR_CONFIDENCE, "" if conf is None else f"{float(conf):.6f}")
        fid.SetAttribute(ATTR_SOURCE, src or source)
        common.json_attribute(fid, ATTR_COMPUTED, np.round(pts, 6).tolist())
        _set_points_from_pixels(nodes, pts)
        volume_node.SetNodeReferenceID(ROLE_RESULT + side, fid.GetID())
        recompute(nodes)
        _attach(nodes)
        out.append(nodes)
    return out


def volume_spacing(volume_node) -> tuple:
    """(row, column) pixel spacing in mm of the radiograph volume."""
    sx, sy, _ = volume_node.GetSpacing()
    return (float(sy), float(sx))


def find_result(scene, volume_node, side: str) -> Optional[KneeNodes]:
    """The latest result for this knee side on this volume (live updates attached), or None."""
    fid_id = volume_node.GetNodeReferenceID(ROLE_RESULT + side)
    fid = scene.GetNodeByID(fid_id) if fid_id else None
    if fid is None:
        return None
    if fid in _observers:
        nodes = _observers.result_of(fid)
        _refresh_references(nodes)
    else:
        nodes = _attach(_nodes_of(scene, fid))
        recompute(nodes)
    return nodes


def all_results(scene, volume_node) -> list[KneeNodes]:
    found = common.nodes_referencing(scene, "vtkMRMLMarkupsFiducialNode", ROLE_VOLUME, volume_node)
    return [_nodes_of(scene, f) for f in found]


def landmarks_px(nodes: KneeNodes) -> np.ndarray:
    return common.ras_to_pixels(nodes.volume, common.control_points(nodes.landmarks))


def result_was_edited(nodes: KneeNodes) -> bool:
    computed = np.array(common.json_attribute(nodes.landmarks, ATTR_COMPUTED) or [])
    current = landmarks_px(nodes)
    if computed.shape != current.shape:
        return True
    return bool(np.nanmax(np.abs(computed - current), initial=0.0) > EDIT_TOLERANCE_PX)


def reset_edited_points(nodes: KneeNodes) -> None:
    """Move the landmarks back to where the computation put them; measurements follow."""
    _set_points_from_pixels(nodes, np.array(common.json_attribute(nodes.landmarks, ATTR_COMPUTED)))
    recompute(nodes)


def recompute(nodes: KneeNodes) -> Optional[measure.KneeMeasurement]:
    """Measure the current landmarks; update contours, JSW lines and table. Called by observers."""
    side = nodes.landmarks.GetAttribute(ATTR_SIDE) or nodes.side
    conf_text = nodes.landmarks.GetAttribute(ATTR_CONFIDENCE) or ""
    try:
        pts = landmarks_px(nodes)
        m = measure.joint_space_width(pts, side, volume_spacing(nodes.volume),
                                      confidence=float(conf_text) if conf_text else None)
        nodes.error = ""
    except measure.LandmarkError as e:
        m, nodes.error = None, str(e)
    nodes.measurement = m
    _update_contours(nodes)
    _update_lines(nodes)
    _update_table(nodes)
    return m


def detach_all() -> None:
    """Remove every observer this layer added (module cleanup, end of tests)."""
    _observers.forget_all()


# --------------------------------------------------------------------------------------------
# internals

def _new_nodes(scene, volume_node, side: str) -> KneeNodes:
    base = f"{volume_node.GetName()} {side} knee"
    fid = common.new_markups(scene, "vtkMRMLMarkupsFiducialNode", f"{base} landmarks", COLORS["landmarks"])
    if fid.GetDisplayNode() is not None:
        fid.GetDisplayNode().SetGlyphScale(1.5)
    fid.SetNodeReferenceID(ROLE_VOLUME, volume_node.GetID())
    fid.SetAttribute(ATTR_SIDE, side)
    nodes = KneeNodes(volume=volume_node, side=side, landmarks=fid)
    for part, title in (("tibia", "tibial contour"), ("femur", "femoral contour")):
        curve = common.new_markups(scene, "vtkMRMLMarkupsCurveNode", f"{base} {title}", COLORS[part], locked=True)
        curve.SetCurveTypeToLinear()  # the points are the dense contour of ``measure``
        curve.SetAttribute(ATTR_PART, part)
        if curve.GetDisplayNode() is not None:
            curve.GetDisplayNode().SetPointLabelsVisibility(False)
            curve.GetDisplayNode().SetPropertiesLabelVisibility(False)
            curve.GetDisplayNode().SetGlyphScale(0.5)
        fid.AddNodeReferenceID(ROLE_CONTOUR, curve.GetID())
        nodes.contours[part] = curve
    for part in ("medial", "lateral"):
        line = common.new_markups(scene, "vtkMRMLMarkupsLineNode", f"{base} {part} JSW", COLORS[part], locked=True)
        line.SetAttribute(ATTR_PART, part)
        fid.AddNodeReferenceID(ROLE_JSW, line.GetID())
        nodes.jsw_lines[part] = line
    nodes.table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{base} joint space"))
    fid.SetNodeReferenceID(ROLE_TABLE, nodes.table.GetID())
    return nodes


def _nodes_of(scene, fid) -> KneeNodes:
    volume = scene.GetNodeByID(fid.GetNodeReferenceID(ROLE_VOLUME))
    nodes = KneeNodes(volume=volume, side=fid.GetAttribute(ATTR_SIDE) or "right", landmarks=fid)
    for role, target in ((ROLE_CONTOUR, nodes.contours), (ROLE_JSW, nodes.jsw_lines)):
        for i in range(fid.GetNumberOfNodeReferences(role)):
            node = fid.GetNthNodeReference(role, i)
            if node is not None:
                target[node.GetAttribute(ATTR_PART)] = node
    nodes.table = fid.GetNodeReference(ROLE_TABLE)
    return nodes


def _set_points_from_pixels(nodes: KneeNodes, pts: np.ndarray) -> None:
    ras = common.pixels_to_ras(nodes.volume, np.asarray(pts).reshape(-1, 2))
    with _observers.paused(nodes.landmarks):
        common.set_control_points(nodes.landmarks, ras, list(sm.LANDMARK_LABELS))
        for i, description in enumerate(sm.LANDMARK_DESCRIPTIONS):
            nodes.landmarks.SetNthControlPointDescription(i, description)


def _update_contours(nodes: KneeNodes) -> None:
    m = nodes.measurement
    tib_fem = None if m is None else measure.contours(m.landmarks_px, CONTOUR_SAMPLES_PER_SEGMENT)
    for i, part in enumerate(("tibia", "femur")):
        curve = nodes.contours.get(part)
        if curve is None:
            continue
        if tib_fem is None:
            curve.RemoveAllControlPoints()
            continue
        common.set_control_points(curve, common.pixels_to_ras(nodes.volume, tib_fem[i]))


def _update_lines(nodes: KneeNodes) -> None:
    m = nodes.measurement
    for part, line in nodes.jsw_lines.items():
        display = line.GetDisplayNode()
        if m is None:
            if display is not None:
                display.SetVisibility(False)
            line.SetDescription("not measured")
            continue
        ends = measure.jsw_line_points(m, part)
        common.set_control_points(line, common.pixels_to_ras(nodes.volume, ends))
        width = m.medial_mm if part == "medial" else m.lateral_mm
        line.SetDescription(f"{part} minimum joint space width {width:.2f} mm")
        if display is not None:
            display.SetVisibility(True)


def _update_table(nodes: KneeNodes) -> None:
    m = nodes.measurement
    side = nodes.landmarks.GetAttribute(ATTR_SIDE) or nodes.side
    if nodes.table is None:
        return
    if m is None:
        common.fill_table(nodes.table, [("Knee", [side]), ("Medial JSW (mm)", [None]), ("Lateral JSW (mm)", [None]),
                                        ("Note", [nodes.error])])
        return
    edited = "edited by hand" if result_was_edited(nodes) else ""
    notes = "; ".join([*m.notes, edited] if edited else m.notes)
    common.fill_table(nodes.table, [
        ("Knee", [side]),
        ("Medial JSW (mm)", [round(m.medial_mm, 3)]),
        ("Lateral JSW (mm)", [round(m.lateral_mm, 3)]),
        ("Confidence", [None if m.confidence is None else round(m.confidence, 3)]),
        ("Source", [nodes.landmarks.GetAttribute(ATTR_SOURCE) or ""]),
        ("Note", [notes]),
    ])


def _attach(nodes: KneeNodes) -> KneeNodes:

    def on_points_changed(current: KneeNodes) -> None:
        _refresh_references(current)
        recompute(current)

    return _observers.observe(nodes.landmarks, nodes, on_points_changed)


def _refresh_references(nodes: KneeNodes) -> None:
    fresh = _nodes_of(nodes.landmarks.GetScene(), nodes.landmarks)
    nodes.contours, nodes.jsw_lines, nodes.table = fresh.contours, fresh.jsw_lines, fresh.table


def _detach(fid) -> None:
    _observers.forget(fid)
