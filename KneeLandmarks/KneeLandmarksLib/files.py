"""The files a knee result is written to, from its live nodes and record: by the command line and
by the browser review's Accept (with the user's moved points), the same way.

Per image (NAME = the file name without extension):
  NAME_right_knee.mrk.json / NAME_left_knee.mrk.json
                      the 16 landmarks of each knee found (Slicer markups, LPS), labelled T1..T9, F1..F7
  NAME_knee.json      the record: per knee side, landmarks in pixels and mm, medial/lateral minimum JSW
                      (mm) with the closest points, confidence, notes; which points were moved by hand
  NAME_overlay.png    the film with landmarks, contours, JSW lines and values
  NAME_sr.dcm         (dicom=...) the DICOM SR of the widths (``KneeLandmarksLib.dicom``);
                      NAME_sc.dcm: the film as DICOM when it was not
"""
from __future__ import annotations

import json
from pathlib import Path

from MSKCommonLib import mrml as common

from . import landmarks as lm

RECORD_FILE = "{stem}_knee.json"
POINT_FILES = {f"{side}.landmarks": "{stem}_" + side + "_knee.mrk.json" for side in ("right", "left")}
COLUMNS = ("knees", "right_jsw_medial_mm", "right_jsw_lateral_mm", "left_jsw_medial_mm", "left_jsw_lateral_mm",
           "edited")
KNEE_COLUMNS = (["image", "side"] + [f"{lab}_{a}_px" for lab in lm.LANDMARK_LABELS for a in "xy"]
                + [f"{lab}_{a}_mm" for lab in lm.LANDMARK_LABELS for a in "xy"]
                + ["jsw_medial_mm", "jsw_lateral_mm", "confidence", "pixel_spacing_mm", "notes"])


def write_outputs(live, out: Path, stem: str, *, overlay: bool = True, scene: bool = False, dicom=None) -> dict:
    """Write the result's files into ``out``; returns {kind: path}. ``dicom``: a
    ``MSKCommonLib.dicom_export.DicomRequest`` to write the DICOM SR too."""
    from MSKCommonLib.mrml import image_from_volume

    from .overlay import draw_overlay, write_overlay

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = live.record()
    outputs = {}
    for role, name in POINT_FILES.items():
        if live.node(role) is not None:
            outputs[role.replace(".", "_")] = common.save_node(live.node(role), out / name.format(stem=stem))
    if scene:
        outputs["scene"] = common.save_scene(live.scene, out / f"{stem}.mrb")
    path = out / RECORD_FILE.format(stem=stem)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    outputs["measurements"] = path
    if overlay and live.measurement is not None:
        rgb = draw_overlay(image_from_volume(live.volume).windowed_uint8(), live.measurement, title=record["image"])
        outputs["overlay"] = write_overlay(out / f"{stem}_overlay.png", rgb)
    if dicom is not None:
        from MSKCommonLib.dicom_export import export

        from .dicom import build

        outputs.update(export(dicom, live, record, out, stem, build))
    return outputs


def csv_values(record: dict) -> dict:
    values = {"knees": ",".join(k["side"] for k in record.get("knees", []))}
    for k in record.get("knees", []):
        values[f"{k['side']}_jsw_medial_mm"] = k["jsw_medial_mm"]
        values[f"{k['side']}_jsw_lateral_mm"] = k["jsw_lateral_mm"]
    values["edited"] = ", ".join(f"{role.split('.')[0]} {label}" for role, labels in
                                 record.get("review", {}).get("edited_points", {}).items() for label in labels) or None
    return values


def knee_rows(record: dict) -> list[dict]:
    """One row per knee (``KNEE_COLUMNS``): landmarks in pixels and mm, both widths."""
    rows = []
    for k in record.get("knees", []):
        row = {"image": record["image"], "side": k["side"]}
        for lab in lm.LANDMARK_LABELS:
            row[f"{lab}_x_px"], row[f"{lab}_y_px"] = k["landmarks_px"][lab]
        for lab in lm.LANDMARK_LABELS:
            row[f"{lab}_x_mm"], row[f"{lab}_y_mm"] = k["landmarks_mm"][lab]
        row["jsw_medial_mm"], row["jsw_lateral_mm"] = k["jsw_medial_mm"], k["jsw_lateral_mm"]
        row["confidence"] = k.get("confidence")
        row["pixel_spacing_mm"] = record["pixel_spacing_mm"][1]
        row["notes"] = "; ".join(k.get("notes", []))
        rows.append(row)
    return rows
