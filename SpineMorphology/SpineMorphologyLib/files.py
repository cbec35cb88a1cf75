"""The files a back result is written to, from its live nodes and record: by the command line and by
the browser review's Accept (with the user's moved points), the same way.

Per photo (NAME = the file name without extension):
  NAME_depth.png          16-bit depth: mm along the optical axis when the scale is known (measured
                          depth, or the focal length with the distance); otherwise relative depth in
                          1/100 photo pixels, offset so that the nearest back point is 1 (0 = no back)
  NAME_depth.nrrd         the same as a Slicer scalar volume (float, mm or relative px)
  NAME_surface.vtk|.ply   the back surface mesh in RAS (photo colours)
  NAME_keypoints.mrk.json the nine spine keypoints (sacrum ... C1), Slicer markups (LPS)
  NAME_dimples.mrk.json   the lumbar dimples DL, DR
  NAME_midline.mrk.json   the spine midline on the photo;  NAME_midline3d.mrk.json on the surface
  NAME_overlay.png        the photo with back mask, keypoints, midline, dimples and measures
  NAME_back.json          the record: everything above in numbers, with units, and which points
                          were moved by hand
  NAME_sc.dcm, NAME_sr.dcm  (dicom=...) the photo as a DICOM Secondary Capture and the DICOM SR of the
                          measures referring to it (``SpineMorphologyLib.dicom``)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from MSKCommonLib import mrml as common

from . import morphology

RECORD_FILE = "{stem}_back.json"
POINT_FILES = {"keypoints": "{stem}_keypoints.mrk.json", "dimples": "{stem}_dimples.mrk.json",
               "midline": "{stem}_midline.mrk.json"}
MEASURE_KEYS = tuple(morphology.MEASURE_TITLES)
COLUMNS = ("units", *MEASURE_KEYS, "depth_from", "warnings", "edited")


def write_outputs(live, out: Path, stem: str, *, overlay: bool = True, scene: bool = False,
                  surface_format: str = "vtk", dicom=None) -> dict:
    import cv2

    from .overlay import draw_overlay, encode_depth_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = live.record()
    depth_node, mask_node = live.node("depth"), live.node("mask")
    depth, mask = common.volume_array(depth_node), common.volume_array(mask_node) > 0
    units = depth_node.GetAttribute("SpineMorphology.DepthUnits") or "mm"
    outputs = {"depth_png": out / f"{stem}_depth.png"}
    cv2.imwrite(str(outputs["depth_png"]), encode_depth_png(depth, mask, units))
    outputs["depth"] = common.save_node(depth_node, out / f"{stem}_depth.nrrd")
    outputs["surface"] = common.save_node(live.node("surface"), out / f"{stem}_surface.{surface_format}")
    for role in ("keypoints", "dimples", "midline"):
        outputs[role] = common.save_node(live.node(role), out / POINT_FILES[role].format(stem=stem))
    outputs["midline3d"] = common.save_node(live.node("midline3d"), out / f"{stem}_midline3d.mrk.json")
    if scene:
        outputs["scene"] = common.save_scene(live.scene, out / f"{stem}.mrb")
    path = out / RECORD_FILE.format(stem=stem)
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    outputs["json"] = path
    if overlay and live.measurement is not None:
        rgb = common.volume_array(live.volume)[..., :3]
        path = out / f"{stem}_overlay.png"
        cv2.imwrite(str(path), draw_overlay(rgb, live.measurement, live.points_px("keypoints"), mask))
        outputs["overlay"] = path
    if dicom is not None:
        from MSKCommonLib.dicom_export import export

        from .dicom import ORIENTATION, build

        outputs.update(export(dicom, live, record, out, stem, build, ORIENTATION))
    return outputs


def csv_values(record: dict) -> dict:
    values = dict(record.get("measures", {}))
    values["depth_from"] = record.get("depth_from")
    values["warnings"] = "; ".join(record.get("warnings", []))
    values["edited"] = "; ".join(f"{role}: {', '.join(labels)}" for role, labels in
                                 record.get("review", {}).get("edited_points", {}).items()) or None
    return values
