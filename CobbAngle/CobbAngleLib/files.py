"""The files a Cobb result is written to, from its live nodes and record: by the command line and by
the browser review's Accept (with the user's moved points), the same way.

Per image (NAME = the file name without extension):
  NAME_landmarks.mrk.json   the corners of the vertebrae on the film (68 for T1-L5; Slicer markups,
                            LPS), labelled T1 sup-R ... L5 inf-L
  NAME_cobb.json            the record: angles, end vertebrae, apices, convention, corners in pixels,
                            warnings, and which points were moved by hand
  NAME_overlay.png          the radiograph with the vertebrae, the angle lines and the angles
  NAME_vertebrae.seg.nrrd   the vertebra segments, drawn from the network's corners (network path only)
  NAME.mrb                  (scene=True) the whole Slicer scene
  NAME_sr.dcm, NAME_seg.dcm (dicom=...) the DICOM SR of the angles and the SEG of the vertebrae
                            (``CobbAngleLib.dicom``); NAME_sc.dcm: the film as DICOM when it was not
"""
from __future__ import annotations

import json
from pathlib import Path

from MSKCommonLib import mrml as common

from . import geometry
from .pipeline import vertebrae_shown

COLUMNS = (
    "PT", "MT", "TL_L", "convention",
    "PT_upper", "PT_lower", "PT_apex", "MT_upper", "MT_lower", "MT_apex", "TL_L_upper", "TL_L_lower", "TL_L_apex",
    "landmarks_from", "warning", "edited", "PT_check", "MT_check", "TL_L_check",
    "PT_confidence", "MT_confidence", "TL_L_confidence",
    "PT_status", "MT_status", "TL_L_status", "vertebrae",
)
POINT_FILES = {"landmarks": "{stem}_landmarks.mrk.json"}
RECORD_FILE = "{stem}_cobb.json"


def write_outputs(live, out: Path, stem: str, *, overlay: bool = True, scene: bool = False, dicom=None) -> dict:
    """Write the result's files into ``out``; returns {kind: path}. ``dicom``: a
    ``MSKCommonLib.dicom_export.DicomRequest`` to write the DICOM SR and SEG too."""
    from .check import check_label
    from .overlay import draw_overlay, write_overlay
    from .review import landmarks_px

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = live.record()
    outputs = {"landmarks": common.save_node(live.node("landmarks"), out / POINT_FILES["landmarks"].format(stem=stem))}
    if live.node("segmentation") is not None:
        outputs["segmentation"] = common.save_node(live.node("segmentation"), out / f"{stem}_vertebrae.seg.nrrd")
    if scene:
        outputs["scene"] = common.save_scene(live.scene, out / f"{stem}.mrb")
    path = out / RECORD_FILE.format(stem=stem)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    outputs["angles"] = path
    if overlay and live.measurement is not None:
        from MSKCommonLib.mrml import image_from_volume

        labelmap = live.result.vertebra_labelmap if live.result is not None else None
        rgb = draw_overlay(image_from_volume(live.volume).windowed_uint8(), landmarks_px(live), live.measurement,
                           labelmap=labelmap, warning=record.get("warning"),
                           checks={c: check_label(record, c) for c in geometry.CURVE_NAMES})
        outputs["overlay"] = write_overlay(out / f"{stem}_overlay.png", rgb)
    if dicom is not None:
        from MSKCommonLib.dicom_export import export

        from .dicom import build

        outputs.update(export(dicom, live, record, out, stem, build))
    return outputs


def curve_status(curve: dict) -> str:
    """"measured", or why a curve has no angle: "no curve" (its region is on the film and bends
    nowhere), "not on film", "not measured" (the corners cannot be measured)."""
    if curve.get("angle_deg") is not None:
        return "measured"
    role = curve.get("role")
    return role if role in (geometry.NO_CURVE, geometry.NOT_ON_FILM) else "not measured"


def csv_values(record: dict) -> dict:
    """One CSV row's values (``COLUMNS``) from a record."""
    values = {}
    curves = {c["name"]: c for c in record.get("curves", [])}
    for name in geometry.CURVE_NAMES:
        c = curves.get(name, {})
        values[name] = c.get("angle_deg")
        values[f"{name}_upper"] = c.get("upper_end_vertebra")
        values[f"{name}_lower"] = c.get("lower_end_vertebra")
        values[f"{name}_apex"] = c.get("apex")
        values[f"{name}_status"] = curve_status(c)
    from .check import check_label

    for name in geometry.CURVE_NAMES:  # the CHECK: "CHECK, confidence 0.41", "edited", ...
        values[f"{name}_check"] = check_label(record, name) or None
        edited = name in (record.get("check_edited") or [])
        values[f"{name}_confidence"] = None if edited else (record.get("angle_confidence") or {}).get(name)
    values["convention"] = record.get("convention")
    values["landmarks_from"] = record.get("landmarks_from")
    values["vertebrae"] = vertebrae_shown(record) or None  # the vertebrae on the film: "T1-L5", "T6-L5"
    values["warning"] = record.get("warning")
    values["edited"] = ", ".join(sum(record.get("review", {}).get("edited_points", {}).values(), [])) or None
    return values


def report_line(record: dict) -> str:
    """One plain-text line a radiologist can paste into a report, e.g. "Cobb angles (clinical
    convention): PT no curve; MT 45.1 deg T5-T11 (apex T8, major); TL/L 22.7 deg T11-L3 (apex L1)"."""
    parts = []
    for c in record.get("curves", []):
        label = c["name"].replace("_", "/")
        if c.get("angle_deg") is None:
            parts.append(f"{label} {curve_status(c)}")
            continue
        role = (c.get("role") or "").split(",")[0]
        detail = ", ".join(x for x in (f"apex {c['apex']}" if c.get("apex") else "",
                                       role if role in ("major", "chosen") else "") if x)
        parts.append(f"{label} {c['angle_deg']:.1f} deg {c.get('upper_end_vertebra')}-{c.get('lower_end_vertebra')}"
                     + (f" ({detail})" if detail else ""))
    from .review import counted_from

    named = counted_from(record)
    return f"Cobb angles ({record.get('convention', 'clinical')} convention): " + "; ".join(parts) + (
        f"; {named[0].lower()}{named[1:]}" if named else "")
