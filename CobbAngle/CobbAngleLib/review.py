"""CobbAngle's MRML layer: the only CobbAngle code that touches Slicer.

A result is a set of ordinary nodes tied to the radiograph's volume node:
- a fiducial node with the 68 vertebra corners, labelled ``T7 inf-R`` etc. (editable),
- one line node per endplate (or mid-axis) used by an angle, locked (they follow the corners),
- a table node with the three angles, their end vertebrae, apices and the convention,
- optionally a segmentation node with one segment per vertebra (the network's output).

Moving a corner recomputes everything at once through ``CobbAngleLib.geometry`` (the same code
the network path and the command line use). The positions the computation produced are kept on
the fiducial node, so a later run can tell whether a user moved points, and never replaces them
silently: ``present(on_existing="update")`` raises ``EditedResultExists`` in that case.
Node references and attributes carry all of this, so it survives saving the scene (.mrb).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import vtk

from MSKCommonLib import mrml as common

from . import geometry
from .colors import CURVE_COLORS, LANDMARK_COLOR, VERTEBRA_COLORS

ROLE_RESULT = "CobbAngle.Result"  # volume -> its latest landmarks node
ROLE_VOLUME = "CobbAngle.SourceVolume"  # landmarks -> volume
ROLE_TABLE = "CobbAngle.Table"
ROLE_LINE = "CobbAngle.Line"  # several references, one per line
ROLE_SEGMENTATION = "CobbAngle.Segmentation"
ATTR_COMPUTED = "CobbAngle.ComputedLandmarks"  # pixel positions the computation produced (JSON)
ATTR_CONVENTION = "CobbAngle.Convention"
ATTR_IMAGE_HEIGHT = "CobbAngle.ImageHeight"
ATTR_REGRESSED = "CobbAngle.RegressedAngles"
ATTR_WARNING = "CobbAngle.Warning"
ATTR_LINE = "CobbAngle.LineName"  # on a line node: e.g. "MT upper"
EDIT_TOLERANCE_PX = 1e-3

LINE_NAMES = tuple(f"{curve} {end}" for curve in geometry.CURVE_NAMES for end in ("upper", "lower"))


class EditedResultExists(RuntimeError):
    """A previous result on this volume has points a user moved; the caller must choose
    ``on_existing="new"`` (keep them, make a new result) or ``"overwrite"``."""


@dataclass
class CobbNodes:
    volume: object
    landmarks: object
    lines: dict = field(default_factory=dict)
    table: object = None
    segmentation: object = None
    result: Optional[geometry.CobbResult] = None
    error: str = ""  # why the current points cannot be measured, if they cannot


_observers = common.PointObservers()  # landmarks node -> the CobbNodes its observer keeps current


# --------------------------------------------------------------------------------------------
# public API

def present(
    scene,
    volume_node,
    landmarks_px,
    *,
    convention: str = "clinical",
    labelmap: Optional[np.ndarray] = None,
    regressed_angles: Optional[dict] = None,
    warning: Optional[str] = None,
    on_existing: str = "update",
) -> CobbNodes:
    """Show landmarks (17, 4, 2 pixels) and their Cobb angles as nodes on ``volume_node``.

    on_existing: "update" reuses the previous result's nodes unless a user edited its points
    (then EditedResultExists); "overwrite" reuses and replaces them; "new" keeps the previous
    result and makes a new set of nodes."""
    if on_existing not in ("update", "overwrite", "new"):
        raise ValueError(f"on_existing must be update, overwrite or new, not {on_existing!r}")
    if convention not in geometry.CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}")
    common.require_single_slice(volume_node)
    landmarks_px = geometry.as_vertebra_array(landmarks_px)
    height = volume_node.GetImageData().GetDimensions()[1]
    # measure first: bad landmarks must fail before any node changes
    result = geometry.cobb_angles(landmarks_px, convention, image_height=height)

    nodes = find_result(scene, volume_node)
    if nodes is not None and on_existing == "update" and result_was_edited(nodes):
        raise EditedResultExists(
            f"the Cobb landmarks on '{volume_node.GetName()}' were edited by hand; "
            "choose to keep them (new result) or replace them"
        )
    if nodes is None or on_existing == "new":
        nodes = _new_nodes(scene, volume_node)
    _detach(nodes.landmarks)
    nodes.volume = volume_node

    fiducial = nodes.landmarks
    fiducial.SetAttribute(ATTR_CONVENTION, convention)
    fiducial.SetAttribute(ATTR_IMAGE_HEIGHT, str(height))
    common.json_attribute(fiducial, ATTR_COMPUTED, np.round(landmarks_px.reshape(-1, 2), 6).tolist())
    fiducial.SetAttribute(ATTR_REGRESSED, "" if regressed_angles is None else _dumps(regressed_angles))
    fiducial.SetAttribute(ATTR_WARNING, warning or "")
    labels = [geometry.corner_label(v, c) for v in range(geometry.N_VERTEBRAE) for c in range(4)]
    _set_points_from_pixels(nodes, landmarks_px, labels)

    if labelmap is not None:
        nodes.segmentation = common.segmentation_from_labelmap(
            scene,
            labelmap,
            volume_node,
            geometry.VERTEBRA_NAMES,
            VERTEBRA_COLORS,
            f"{volume_node.GetName()} vertebrae",
            node=nodes.segmentation,
        )
        fiducial.SetNodeReferenceID(ROLE_SEGMENTATION, nodes.segmentation.GetID())
    volume_node.SetNodeReferenceID(ROLE_RESULT, fiducial.GetID())
    nodes.result = result
    recompute(nodes)
    _attach(nodes)
    return nodes


def find_result(scene, volume_node) -> Optional[CobbNodes]:
    """The latest result on this volume (with live updates attached), or None."""
    fiducial_id = volume_node.GetNodeReferenceID(ROLE_RESULT)
    fiducial = scene.GetNodeByID(fiducial_id) if fiducial_id else None
    if fiducial is None:
        return None
    if fiducial in _observers:
        nodes = _observers.result_of(fiducial)
        _refresh_references(nodes)
    else:
        nodes = _attach(_nodes_of(scene, fiducial))
    if nodes.result is None:
        recompute(nodes)
    return nodes


def all_results(scene, volume_node) -> list[CobbNodes]:
    """Every result made on this volume (older ones kept with on_existing="new"), oldest first."""
    found = common.nodes_referencing(scene, "vtkMRMLMarkupsFiducialNode", ROLE_VOLUME, volume_node)
    return [_nodes_of(scene, f) for f in found]


def result_was_edited(nodes: CobbNodes) -> bool:
    computed = np.array(common.json_attribute(nodes.landmarks, ATTR_COMPUTED) or [])
    current = landmarks_px(nodes)
    if computed.shape != current.reshape(-1, 2).shape:
        return True
    return bool(np.nanmax(np.abs(computed - current.reshape(-1, 2)), initial=0.0) > EDIT_TOLERANCE_PX)


def reset_edited_points(nodes: CobbNodes) -> None:
    """Move the corners back to where the computation put them; measurements follow."""
    computed = np.array(common.json_attribute(nodes.landmarks, ATTR_COMPUTED))
    labels = [geometry.corner_label(v, c) for v in range(geometry.N_VERTEBRAE) for c in range(4)]
    _set_points_from_pixels(nodes, computed.reshape(geometry.N_VERTEBRAE, 4, 2), labels)
    recompute(nodes)


def set_convention(nodes: CobbNodes, convention: str) -> None:
    if convention not in geometry.CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}")
    nodes.landmarks.SetAttribute(ATTR_CONVENTION, convention)
    recompute(nodes)


def landmarks_px(nodes: CobbNodes) -> np.ndarray:
    """The corners as they are now (pixels): (17, 4, 2) when all 68 exist, else (N, 2)."""
    points = common.ras_to_pixels(nodes.volume, common.control_points(nodes.landmarks))
    if len(points) == geometry.N_VERTEBRAE * 4:
        return points.reshape(geometry.N_VERTEBRAE, 4, 2)
    return points


def recompute(nodes: CobbNodes) -> Optional[geometry.CobbResult]:
    """Measure the current corners and update lines and table. Called by the observers."""
    fiducial = nodes.landmarks
    convention = fiducial.GetAttribute(ATTR_CONVENTION) or "clinical"
    height = float(fiducial.GetAttribute(ATTR_IMAGE_HEIGHT) or nodes.volume.GetImageData().GetDimensions()[1])
    try:
        points = landmarks_px(nodes)
        result = geometry.cobb_angles(points, convention, image_height=height)
        nodes.error = ""
    except geometry.LandmarkError as e:
        result, nodes.error = None, str(e)
    nodes.result = result
    _update_lines(nodes, points if result is not None else None)
    _update_table(nodes)
    return result


def detach_all() -> None:
    """Remove every observer this layer added (module cleanup, end of tests)."""
    _observers.forget_all()


# --------------------------------------------------------------------------------------------
# internals

def _dumps(d: dict) -> str:
    import json

    return json.dumps({k: (None if v is None else float(v)) for k, v in d.items()})


def _new_nodes(scene, volume_node) -> CobbNodes:
    base = volume_node.GetName()
    fiducial = common.new_markups(scene, "vtkMRMLMarkupsFiducialNode", f"{base} Cobb landmarks", LANDMARK_COLOR)
    display = fiducial.GetDisplayNode()
    if display is not None:
        display.SetPointLabelsVisibility(False)  # 68 labels clutter the film; they show on hover
        display.SetGlyphScale(1.5)
    fiducial.SetNodeReferenceID(ROLE_VOLUME, volume_node.GetID())
    nodes = CobbNodes(volume=volume_node, landmarks=fiducial)
    for name in LINE_NAMES:
        line = common.new_markups(
            scene, "vtkMRMLMarkupsLineNode", f"{base} {name}", CURVE_COLORS[name.split()[0]], locked=True
        )
        line.SetAttribute(ATTR_LINE, name)
        if line.GetDisplayNode() is not None:
            line.GetDisplayNode().SetPropertiesLabelVisibility(False)
        fiducial.AddNodeReferenceID(ROLE_LINE, line.GetID())
        nodes.lines[name] = line
    nodes.table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{base} Cobb angles"))
    fiducial.SetNodeReferenceID(ROLE_TABLE, nodes.table.GetID())
    return nodes


def _nodes_of(scene, fiducial) -> CobbNodes:
    volume = scene.GetNodeByID(fiducial.GetNodeReferenceID(ROLE_VOLUME))
    nodes = CobbNodes(volume=volume, landmarks=fiducial)
    for i in range(fiducial.GetNumberOfNodeReferences(ROLE_LINE)):
        line = fiducial.GetNthNodeReference(ROLE_LINE, i)
        if line is not None:
            nodes.lines[line.GetAttribute(ATTR_LINE)] = line
    nodes.table = fiducial.GetNodeReference(ROLE_TABLE)
    nodes.segmentation = fiducial.GetNodeReference(ROLE_SEGMENTATION)
    return nodes


def _set_points_from_pixels(nodes: CobbNodes, landmarks: np.ndarray, labels) -> None:
    ras = common.pixels_to_ras(nodes.volume, landmarks.reshape(-1, 2))
    with _observers.paused(nodes.landmarks):
        common.set_control_points(nodes.landmarks, ras, labels)


def _update_lines(nodes: CobbNodes, points: Optional[np.ndarray]) -> None:
    curves = {} if nodes.result is None else {c.name: c for c in nodes.result.curves}
    for name, line in nodes.lines.items():
        curve_name, end = name.split()
        curve = curves.get(curve_name)
        spec = None if curve is None else (curve.upper_line if end == "upper" else curve.lower_line)
        display = line.GetDisplayNode()
        if spec is None or points is None or curve.angle_deg is None:
            if display is not None:
                display.SetVisibility(False)
            line.SetDescription("not measured")
            continue
        vertebra, kind = spec
        a, b = geometry.line_endpoints(points, vertebra, kind)
        extend = 0.35 * (b - a)  # drawn a little longer than the endplate, as on a film
        common.set_control_points(line, common.pixels_to_ras(nodes.volume, np.array([a - extend, b + extend])))
        line.SetDescription(
            f"{geometry.CURVE_TITLES[curve_name]} {end} end vertebra {geometry.VERTEBRA_NAMES[vertebra]} ({kind})"
        )
        if display is not None:
            display.SetVisibility(True)


def _update_table(nodes: CobbNodes) -> None:
    fiducial = nodes.landmarks
    convention = fiducial.GetAttribute(ATTR_CONVENTION) or "clinical"
    regressed_raw = fiducial.GetAttribute(ATTR_REGRESSED) or ""
    regressed = common.json_attribute(fiducial, ATTR_REGRESSED) if regressed_raw else None
    warning = fiducial.GetAttribute(ATTR_WARNING) or ""
    if nodes.result is None:
        common.fill_table(
            nodes.table,
            [("Curve", list(geometry.CURVE_NAMES)), ("Angle (deg)", [None] * 3), ("Note", [nodes.error] * 3)],
        )
        return
    curves = nodes.result.curves
    columns = [
        ("Curve", [c.name for c in curves]),
        ("Region", [geometry.CURVE_TITLES[c.name] for c in curves]),
        ("Angle (deg)", [None if c.angle_deg is None else round(c.angle_deg, 2) for c in curves]),
        ("Upper end vertebra", [c.upper_end_vertebra or "" for c in curves]),
        ("Lower end vertebra", [c.lower_end_vertebra or "" for c in curves]),
        ("Apex", [c.apex or "" for c in curves]),
        ("Role", [c.role for c in curves]),
        ("Convention", [convention] * len(curves)),
    ]
    if regressed:
        columns.append(("Network angle (deg)", [regressed.get(c.name) for c in curves]))
    columns.append(("Note", [warning] * len(curves)))
    common.fill_table(nodes.table, columns)
    nodes.table.SetAttribute(ATTR_WARNING, warning)


def _attach(nodes: CobbNodes) -> CobbNodes:
    """Observe the corners of ``nodes`` (once); returns the node set the observer keeps current."""

    def on_points_changed(current: CobbNodes) -> None:
        _refresh_references(current)
        recompute(current)

    return _observers.observe(nodes.landmarks, nodes, on_points_changed)


def _refresh_references(nodes: CobbNodes) -> None:
    """Lines, table and segmentation as the landmarks node references them now."""
    fresh = _nodes_of(nodes.landmarks.GetScene(), nodes.landmarks)
    nodes.lines, nodes.table, nodes.segmentation = fresh.lines, fresh.table, fresh.segmentation


def _detach(fiducial) -> None:
    _observers.forget(fiducial)
