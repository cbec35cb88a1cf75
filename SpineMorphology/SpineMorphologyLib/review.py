"""SpineMorphology's MRML layer: the only SpineMorphology code that touches Slicer.

A result is a set of ordinary nodes tied to the photo's volume node:
- the photo as an RGB volume (vtkMRMLVectorVolumeNode), with the depth (scalar volume, mm or
  relative pixels) and the back mask (label map) on exactly the same grid;
- a fiducial node with the nine spine keypoints (sacrum ... C1, editable) and one with the two
  lumbar dimples DL, DR (editable);
- the spine midline as a curve on the photo (editable) and as a curve on the 3D surface (locked,
  follows), and the back surface as a model node (photo colours);
- a table node with the surface measures.

Moving a keypoint or a dimple re-detects the midline and recomputes everything; moving a point of
the photo midline keeps that line as drawn and recomputes the measures along it (both through
``morphology``, the code the command line uses). The positions the computation produced are kept
on the keypoints node, so a re-run never replaces a user's edits silently:
``present(on_existing="update")`` raises ``EditedResultExists`` then; "overwrite" replaces,
"new" keeps the old result and makes new nodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import vtk
from vtk.util import numpy_support

from MSKCommonLib import mrml as common

from . import morphology, surface as surface_lib

ROLE_RESULT = "SpineMorphology.Result"  # photo -> its latest keypoints node
ROLE_PHOTO = "SpineMorphology.Photo"  # keypoints -> photo
ROLE_DEPTH = "SpineMorphology.Depth"
ROLE_MASK = "SpineMorphology.Mask"
ROLE_DIMPLES = "SpineMorphology.Dimples"
ROLE_CURVE = "SpineMorphology.Midline"
ROLE_CURVE3D = "SpineMorphology.Midline3D"
ROLE_MODEL = "SpineMorphology.Surface"
ROLE_TABLE = "SpineMorphology.Table"
ATTR_COMPUTED = "SpineMorphology.Computed"  # {"keypoints": ..., "dimples": ..., "midline": ...} pixels
ATTR_UNITS = "SpineMorphology.DepthUnits"  # "mm" (depth along the optical axis) or "px" (relative)
ATTR_CAMERA = "SpineMorphology.Camera"  # {"focal_px", "cx", "cy"}
ATTR_SOURCE = "SpineMorphology.Source"
ATTR_ESTIMATED = "SpineMorphology.DepthEstimated"  # "1": the network's estimate, "0": measured
EDIT_TOLERANCE_PX = 1e-3
N_CURVE_POINTS = 21

KEYPOINT_COLOR = (1.0, 0.85, 0.1)
DIMPLE_COLOR = (0.2, 0.9, 0.9)
CURVE_COLOR = (1.0, 0.2, 0.2)


class EditedResultExists(RuntimeError):
    """A previous result on this photo has points a user moved; choose on_existing="new" (keep
    them, make a new result) or "overwrite"."""


@dataclass
class BackNodes:
    photo: object
    depth: object
    mask: object
    keypoints: object
    dimples: object = None
    midline: object = None  # curve on the photo
    midline3d: object = None  # curve on the surface
    model: object = None
    table: object = None
    result: Optional[morphology.BackMorphology] = None
    error: str = ""


_observers = common.PointObservers()  # keypoints, dimples, midline node -> the BackNodes kept current


# --------------------------------------------------------------------------------------------
# volumes

def _geometry(node, spacing_mm: float):
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 0, -spacing_mm)  # as MSKCommon lays out a 2D picture (LPS axes along the image)
    m.SetElement(1, 1, -spacing_mm)
    m.SetElement(2, 2, 1.0)
    node.SetIJKToRASMatrix(m)


def _image(array: np.ndarray, vtk_type, components=1):
    h, w = array.shape[:2]
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    image.AllocateScalars(vtk_type, components)
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    flat[:] = array.reshape(flat.shape)
    return image


def photo_volume(scene, rgb: np.ndarray, name: str, spacing_mm: Optional[float] = None, source: str = ""):
    """The photo as an RGB vector volume with one slice (pixel size ``spacing_mm`` or 1)."""
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", scene.GenerateUniqueName(name))
    node.SetAndObserveImageData(_image(rgb, vtk.VTK_UNSIGNED_CHAR, 3))
    _geometry(node, spacing_mm or 1.0)
    node.CreateDefaultDisplayNodes()
    node.SetAttribute(ATTR_SOURCE, source)
    return node


def photo_array(photo_node) -> np.ndarray:
    image = photo_node.GetImageData()
    w, h, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)[..., :3].copy()


def _aligned_scalar(scene, photo_node, array, name, class_name, vtk_type):
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    node.SetAndObserveImageData(_image(array, vtk_type))
    m = vtk.vtkMatrix4x4()
    photo_node.GetIJKToRASMatrix(m)
    node.SetIJKToRASMatrix(m)
    node.CreateDefaultDisplayNodes()
    return node


def depth_volume(scene, photo_node, depth: np.ndarray, units: str, focal_px: Optional[float] = None,
                 cx: Optional[float] = None, cy: Optional[float] = None, name: Optional[str] = None,
                 estimated: bool = True):
    """Depth on the photo's grid: mm along the optical axis (units "mm", needs focal_px) or relative
    depth in photo pixels (units "px"). ``estimated``: the network's depth (the midline then leans
    on the keypoints) or a measured one, e.g. from an RGB-D camera (the midline follows the
    surface's symmetry)."""
    if units not in ("mm", "px"):
        raise ValueError(f"depth units must be 'mm' or 'px', not {units!r}")
    if units == "mm" and not focal_px:
        raise ValueError("depth in mm needs the camera focal length in pixels")
    h, w = np.asarray(depth).shape
    node = _aligned_scalar(scene, photo_node, np.asarray(depth, np.float32), name or f"{photo_node.GetName()} depth",
                           "vtkMRMLScalarVolumeNode", vtk.VTK_FLOAT)
    node.SetAttribute(ATTR_UNITS, units)
    node.SetAttribute(ATTR_ESTIMATED, "1" if estimated else "0")
    common.json_attribute(node, ATTR_CAMERA, {
        "focal_px": None if focal_px is None else float(focal_px),
        "cx": float((w - 1) / 2 if cx is None else cx), "cy": float((h - 1) / 2 if cy is None else cy)})
    return node


def mask_volume(scene, photo_node, mask: np.ndarray, name: Optional[str] = None):
    return _aligned_scalar(scene, photo_node, np.asarray(mask, np.uint8), name or f"{photo_node.GetName()} back mask",
                           "vtkMRMLLabelMapVolumeNode", vtk.VTK_UNSIGNED_CHAR)


def _array(node) -> np.ndarray:
    image = node.GetImageData()
    w, h, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w).copy()


def surface_of(depth_node, mask_node) -> morphology.Surface:
    """The measurement surface from the depth and mask volumes (what the observers measure)."""
    depth = _array(depth_node).astype(np.float64)
    mask = _array(mask_node) > 0
    units = depth_node.GetAttribute(ATTR_UNITS) or "mm"
    cam = common.json_attribute(depth_node, ATTR_CAMERA) or {}
    estimated = depth_node.GetAttribute(ATTR_ESTIMATED) != "0"
    if units == "mm":
        return morphology.surface_from_depth(depth, mask, cam["focal_px"], cam.get("cx"), cam.get("cy"), estimated)
    return morphology.surface_from_relief(-depth, mask, estimated)


# --------------------------------------------------------------------------------------------
# public API

def present(scene, photo_node, depth_node, mask_node, keypoints_px, dimples_px=None, *,
            on_existing: str = "update", mesh_step: int = 2) -> BackNodes:
    """Measure the back and show it as nodes on ``photo_node``. keypoints_px: (9, 2)."""
    if on_existing not in ("update", "overwrite", "new"):
        raise ValueError(f"on_existing must be update, overwrite or new, not {on_existing!r}")
    common.require_single_slice(photo_node)
    surf = surface_of(depth_node, mask_node)
    # measure first: points that cannot be measured fail before any node changes
    result = morphology.measure_back(surf, keypoints_px, dimples_px)

    nodes = find_result(scene, photo_node)
    if nodes is not None and on_existing == "update" and result_was_edited(nodes):
        raise EditedResultExists(
            f"the spine points on '{photo_node.GetName()}' were edited by hand; "
            "choose to keep them (new result) or replace them"
        )
    if nodes is None or on_existing == "new":
        nodes = _new_nodes(scene, photo_node)
    for node in (nodes.keypoints, nodes.dimples, nodes.midline):
        _detach(node)
    nodes.photo, nodes.depth, nodes.mask = photo_node, depth_node, mask_node
    kp = nodes.keypoints
    kp.SetNodeReferenceID(ROLE_DEPTH, depth_node.GetID())
    kp.SetNodeReferenceID(ROLE_MASK, mask_node.GetID())
    dimples = result.dimples_px
    common.json_attribute(kp, ATTR_COMPUTED, {
        "keypoints": np.round(np.asarray(keypoints_px, float), 6).tolist(),
        "dimples": None if dimples is None else np.round(dimples, 6).tolist(),
        "midline": np.round(_curve_points(result.line_px), 6).tolist(),
    })
    _set_px(nodes.photo, kp, np.asarray(keypoints_px, float), list(morphology.KEYPOINT_NAMES))
    if dimples is not None:
        _set_px(nodes.photo, nodes.dimples, dimples, ["DL", "DR"])
    else:
        nodes.dimples.RemoveAllControlPoints()
    # the surface model
    rgb = photo_array(photo_node)
    poly = surface_lib.mesh_from_surface(surf, rgb, step=mesh_step)
    nodes.model.SetAndObservePolyData(poly)
    display = nodes.model.GetDisplayNode()
    if display is not None:
        display.SetActiveScalarName("Colors")
        display.SetScalarVisibility(True)
        if hasattr(display, "SetScalarRangeFlag"):
            display.SetScalarRangeFlag(display.UseDirectMapping if hasattr(display, "UseDirectMapping") else 4)
    nodes.model.SetAttribute(ATTR_UNITS, surf.units)
    photo_node.SetNodeReferenceID(ROLE_RESULT, kp.GetID())
    _show(nodes, result, update_photo_curve=True)
    _attach(nodes)
    return nodes


def find_result(scene, photo_node) -> Optional[BackNodes]:
    kp_id = photo_node.GetNodeReferenceID(ROLE_RESULT)
    kp = scene.GetNodeByID(kp_id) if kp_id else None
    if kp is None:
        return None
    if kp in _observers:
        return _observers.result_of(kp)
    nodes = _nodes_of(scene, kp)
    _attach(nodes)
    if nodes.result is None and nodes.depth is not None:
        recompute(nodes)
    return nodes


def all_results(scene, photo_node) -> list:
    found = common.nodes_referencing(scene, "vtkMRMLMarkupsFiducialNode", ROLE_PHOTO, photo_node)
    return [_nodes_of(scene, f) for f in found]


def keypoints_px(nodes: BackNodes) -> np.ndarray:
    return common.ras_to_pixels(nodes.photo, common.control_points(nodes.keypoints))


def dimples_px(nodes: BackNodes) -> Optional[np.ndarray]:
    if nodes.dimples is None or nodes.dimples.GetNumberOfControlPoints() != 2:
        return None
    return common.ras_to_pixels(nodes.photo, common.control_points(nodes.dimples))


def midline_px(nodes: BackNodes) -> np.ndarray:
    return common.ras_to_pixels(nodes.photo, common.control_points(nodes.midline))


def result_was_edited(nodes: BackNodes) -> bool:
    computed = common.json_attribute(nodes.keypoints, ATTR_COMPUTED) or {}

    def moved(saved, current):
        if saved is None:
            return current is not None and len(current) > 0
        saved = np.asarray(saved, float)
        if current is None or saved.shape != np.asarray(current).shape:
            return True
        return bool(np.max(np.abs(saved - current), initial=0.0) > EDIT_TOLERANCE_PX)

    return (moved(computed.get("keypoints"), keypoints_px(nodes))
            or moved(computed.get("dimples"), dimples_px(nodes))
            or moved(computed.get("midline"), midline_px(nodes)))


def recompute(nodes: BackNodes, from_midline: bool = False) -> Optional[morphology.BackMorphology]:
    """Measure again from the current points: keypoints + dimples (midline re-detected), or the
    photo midline as it is (``from_midline``)."""
    try:
        surf = surface_of(nodes.depth, nodes.mask)
        if from_midline:
            result = morphology.measure_along_line(surf, midline_px(nodes), dimples_px(nodes))
        else:
            result = morphology.measure_back(surf, keypoints_px(nodes), dimples_px(nodes))
        nodes.error = ""
    except (morphology.MorphologyError, ValueError) as e:
        result, nodes.error = None, str(e)
    _show(nodes, result, update_photo_curve=not from_midline)
    return result


def reset_edited_points(nodes: BackNodes) -> None:
    """Put keypoints, dimples and midline back where the computation put them."""
    computed = common.json_attribute(nodes.keypoints, ATTR_COMPUTED)
    for node in (nodes.keypoints, nodes.dimples, nodes.midline):
        _detach(node)
    _set_px(nodes.photo, nodes.keypoints, np.asarray(computed["keypoints"]), list(morphology.KEYPOINT_NAMES))
    if computed.get("dimples") is not None:
        _set_px(nodes.photo, nodes.dimples, np.asarray(computed["dimples"]), ["DL", "DR"])
    recompute(nodes)
    _attach(nodes)


def detach_all() -> None:
    _observers.forget_all()


# --------------------------------------------------------------------------------------------
# internals

def _curve_points(line_px: np.ndarray) -> np.ndarray:
    idx = np.round(np.linspace(0, len(line_px) - 1, N_CURVE_POINTS)).astype(int)
    return np.asarray(line_px)[idx]


def _set_px(photo, node, px, labels=None):
    common.set_control_points(node, common.pixels_to_ras(photo, np.asarray(px, float)), labels)


def _new_nodes(scene, photo) -> BackNodes:
    base = photo.GetName()
    kp = common.new_markups(scene, "vtkMRMLMarkupsFiducialNode", f"{base} spine keypoints", KEYPOINT_COLOR)
    kp.SetNodeReferenceID(ROLE_PHOTO, photo.GetID())
    dimples = common.new_markups(scene, "vtkMRMLMarkupsFiducialNode", f"{base} lumbar dimples", DIMPLE_COLOR)
    midline = common.new_markups(scene, "vtkMRMLMarkupsCurveNode", f"{base} spine midline", CURVE_COLOR)
    midline3d = common.new_markups(scene, "vtkMRMLMarkupsCurveNode", f"{base} spine midline 3D", CURVE_COLOR, locked=True)
    for curve in (midline, midline3d):
        if curve.GetDisplayNode() is not None:
            curve.GetDisplayNode().SetPointLabelsVisibility(False)
            curve.GetDisplayNode().SetPropertiesLabelVisibility(False)
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", scene.GenerateUniqueName(f"{base} back surface"))
    model.CreateDefaultDisplayNodes()
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{base} back measures"))
    for role, node in ((ROLE_DIMPLES, dimples), (ROLE_CURVE, midline), (ROLE_CURVE3D, midline3d),
                       (ROLE_MODEL, model), (ROLE_TABLE, table)):
        kp.SetNodeReferenceID(role, node.GetID())
    return BackNodes(photo=photo, depth=None, mask=None, keypoints=kp, dimples=dimples, midline=midline,
                     midline3d=midline3d, model=model, table=table)


def _nodes_of(scene, kp) -> BackNodes:
    return BackNodes(
        photo=kp.GetNodeReference(ROLE_PHOTO), depth=kp.GetNodeReference(ROLE_DEPTH),
        mask=kp.GetNodeReference(ROLE_MASK), keypoints=kp, dimples=kp.GetNodeReference(ROLE_DIMPLES),
        midline=kp.GetNodeReference(ROLE_CURVE), midline3d=kp.GetNodeReference(ROLE_CURVE3D),
        model=kp.GetNodeReference(ROLE_MODEL), table=kp.GetNodeReference(ROLE_TABLE),
    )


def _show(nodes: BackNodes, result, update_photo_curve: bool) -> None:
    nodes.result = result
    if result is not None:
        if update_photo_curve:
            with _observers.paused(nodes.midline):
                _set_px(nodes.photo, nodes.midline, _curve_points(result.line_px))
        common.set_control_points(nodes.midline3d, surface_lib.to_ras(_curve_points(result.line_xyz)))
    _update_table(nodes)


def _update_table(nodes: BackNodes) -> None:
    if nodes.result is None:
        common.fill_table(nodes.table, [("Measure", ["(not measured)"]), ("Value", [None]), ("Unit", [""]),
                                        ("Note", [nodes.error])])
        return
    m = nodes.result.measures.to_dict()
    units = m.pop("units")
    keys = list(morphology.MEASURE_TITLES)
    unit_of = lambda k: "deg" if k.endswith("_deg") else units  # noqa: E731
    note = "; ".join(nodes.result.warnings)
    common.fill_table(nodes.table, [
        ("Measure", [morphology.MEASURE_TITLES[k] for k in keys]),
        ("Value", [None if m[k] is None else round(float(m[k]), 2) for k in keys]),
        ("Unit", [unit_of(k) for k in keys]),
        ("Key", keys),
        ("Note", [note] * len(keys)),
    ])


def _attach(nodes: BackNodes) -> BackNodes:
    _observers.observe(nodes.keypoints, nodes, recompute)
    _observers.observe(nodes.dimples, nodes, recompute)
    _observers.observe(nodes.midline, nodes, lambda current: recompute(current, from_midline=True))
    return nodes


def _detach(node) -> None:
    _observers.forget(node)
