"""SpineMorphology's nodes for the review layer (``MSKCommonLib.review``): how a back result is drawn.

The photo is the image's volume (an RGB vector volume); a result adds:
- ``depth``: the depth on the photo's grid (scalar volume: mm along the optical axis, or relative
  depth in photo pixels), remembering its units, the camera and whether it was estimated;
- ``mask``: the back (label map on the same grid);
- ``keypoints``: the nine spine keypoints (sacrum ... C1) and ``dimples``: the lumbar dimples DL,
  DR (editable: moving one re-detects the midline and measures again);
- ``midline``: the spine midline on the photo (editable: moving one of its points keeps the line
  as drawn and measures along it) and ``midline3d``: the same on the surface (locked);
- ``surface``: the back surface as a model (photo colours);
- the root table with the surface measures.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from MSKCommonLib import mrml as common
from MSKCommonLib.review import Presenter

from . import morphology, surface as surface_lib

ATTR_UNITS = "SpineMorphology.DepthUnits"  # "mm" or "px"
ATTR_CAMERA = "SpineMorphology.Camera"  # {"focal_px", "cx", "cy"}
ATTR_ESTIMATED = "SpineMorphology.DepthEstimated"  # "1": the network's estimate, "0": measured
N_CURVE_POINTS = 21
KEYPOINT_COLOR = (1.0, 0.85, 0.1)
DIMPLE_COLOR = (0.2, 0.9, 0.9)
CURVE_COLOR = (1.0, 0.2, 0.2)


class BackPresenter(Presenter):
    module = "SpineMorphology"
    title = "back measures"

    def build(self, live, result) -> None:
        base = live.volume.GetName()
        depth = live.add_node("depth", common.aligned_volume(live.scene, live.volume, result.depth, f"{base} depth",
                                                             node=live.reusable("depth", "vtkMRMLScalarVolumeNode")))
        depth.SetAttribute(ATTR_UNITS, result.depth_units)
        depth.SetAttribute(ATTR_ESTIMATED, "1" if result.depth_estimated else "0")
        common.json_attribute(depth, ATTR_CAMERA, result.camera)
        live.add_node("mask", common.aligned_volume(live.scene, live.volume, result.mask.astype(np.uint8),
                                                    f"{base} back mask", "vtkMRMLLabelMapVolumeNode",
                                                    node=live.reusable("mask", "vtkMRMLLabelMapVolumeNode")))
        m = result.measurement
        live.add_points("keypoints", "vtkMRMLMarkupsFiducialNode", f"{base} spine keypoints", result.keypoints_px,
                        list(morphology.KEYPOINT_NAMES), KEYPOINT_COLOR)
        live.add_points("dimples", "vtkMRMLMarkupsFiducialNode", f"{base} lumbar dimples",
                        np.zeros((0, 2)) if m.dimples_px is None else m.dimples_px,
                        None if m.dimples_px is None else ["DL", "DR"], DIMPLE_COLOR)
        live.add_points("midline", "vtkMRMLMarkupsCurveNode", f"{base} spine midline", curve_points(m.line_px),
                        color=CURVE_COLOR)
        live.add_points("midline3d", "vtkMRMLMarkupsCurveNode", f"{base} spine midline 3D", np.zeros((0, 2)),
                        color=CURVE_COLOR, locked=True, editable=False)
        for role in ("midline", "midline3d"):
            display = live.node(role).GetDisplayNode()
            if display is not None:
                display.SetPointLabelsVisibility(False)
                display.SetPropertiesLabelVisibility(False)
        model = live.reusable("surface", "vtkMRMLModelNode")
        if model is None:
            model = live.scene.AddNewNodeByClass("vtkMRMLModelNode", live.scene.GenerateUniqueName(f"{base} back surface"))
            model.CreateDefaultDisplayNodes()
        live.add_node("surface", model)
        live.cache["surface"] = surface = result.surface()
        model.SetAndObservePolyData(surface_lib.mesh_from_surface(surface, common.volume_array(live.volume)[..., :3]))
        display = model.GetDisplayNode()
        if display is not None:
            display.SetActiveScalarName("Colors")
            display.SetScalarVisibility(True)
            display.SetScalarRangeFlag(display.UseDirectMapping if hasattr(display, "UseDirectMapping") else 4)
        model.SetAttribute(ATTR_UNITS, surface.units)

    def restore(self, live) -> None:
        live.cache["surface"] = surface_of(live.node("depth"), live.node("mask"))

    def measurement(self, result):
        return result.measurement

    def measure(self, live, changed_role: Optional[str]):
        live.cache["changed_role"] = changed_role
        surface = live.cache.get("surface") or surface_of(live.node("depth"), live.node("mask"))
        if changed_role == "midline":  # in the back's own frame, as the pipeline measures
            return morphology.measure_back_in_its_frame(surface, live.points_px("keypoints"), dimples_px(live),
                                                        line_px=live.points_px("midline"))
        return morphology.measure_back_in_its_frame(surface, live.points_px("keypoints"), dimples_px(live))

    def draw(self, live, measurement) -> None:
        if measurement is not None:
            if live.cache.get("changed_role") != "midline":  # re-detected from the points: computed again
                live.set_points("midline", curve_points(measurement.line_px), computed=True)
            node = live.node("midline3d")
            with live.review.observers.paused(node):
                common.set_control_points(node, surface_lib.to_ras(curve_points(measurement.line_xyz)))
        live.cache["changed_role"] = None
        _fill_table(live, measurement)

    def record(self, live, record: dict, measurement) -> dict:
        record["keypoints_px"] = np.round(live.points_px("keypoints"), 3).tolist()
        if measurement is not None:
            record.update(measurement.to_dict())
        return record


def curve_points(line: np.ndarray) -> np.ndarray:
    idx = np.round(np.linspace(0, len(line) - 1, N_CURVE_POINTS)).astype(int)
    return np.asarray(line)[idx]


def dimples_px(live) -> Optional[np.ndarray]:
    node = live.node("dimples")
    if node is None or node.GetNumberOfControlPoints() != 2:
        return None
    return live.points_px("dimples")


def surface_of(depth_node, mask_node) -> morphology.Surface:
    """The measurement surface from the depth and mask volumes (a result found in a loaded scene)."""
    cam = common.json_attribute(depth_node, ATTR_CAMERA) or {}
    return morphology.surface_for(common.volume_array(depth_node).astype(np.float64), common.volume_array(mask_node) > 0,
                                  depth_node.GetAttribute(ATTR_UNITS) or "mm", cam.get("focal_px"), cam.get("cx"),
                                  cam.get("cy"), depth_node.GetAttribute(ATTR_ESTIMATED) != "0")


def _fill_table(live, measurement) -> None:
    if measurement is None:
        common.fill_table(live.table, [("Measure", ["(not measured)"]), ("Value", [None]), ("Unit", [""]),
                                       ("Note", [live.error])])
        return
    m = measurement.measures.to_dict()
    units = m.pop("units")
    keys = list(morphology.MEASURE_TITLES)
    note = "; ".join(measurement.warnings)
    edited = "; ".join(f"{role}: {', '.join(labels)}" for role, labels in live.edited_labels().items())
    common.fill_table(live.table, [
        ("Measure", [morphology.MEASURE_TITLES[k] for k in keys]),
        ("Value", [None if m[k] is None else round(float(m[k]), 2) for k in keys]),
        ("Unit", ["deg" if k.endswith("_deg") else units for k in keys]),
        ("Key", keys),
        ("Edited points", [edited] * len(keys)),
        ("Note", [note] * len(keys)),
    ])
