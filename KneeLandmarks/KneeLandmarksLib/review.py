"""KneeLandmarks' nodes for the review layer (``MSKCommonLib.review``): how a knee result is drawn.

Per knee found (``<side>`` = right / left, the patient's):
- ``<side>.landmarks``: a fiducial node with the 16 KNEEL landmarks labelled T1..T9 (tibia) and
  F1..F7 (femur), editable; moving one measures again through ``measure`` (the pipeline's code);
- ``<side>.contour.tibia`` / ``<side>.contour.femur``: the contours (curve nodes, locked);
- ``<side>.jsw.medial`` / ``<side>.jsw.lateral``: the minimum joint space width as line nodes
  (locked; the width in mm is in their description and the table: it is measured with the
  result's pixel spacing, which for a PNG the user gave and the volume does not carry);
- the root table: one row per knee with both widths, the confidence and notes.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from MSKCommonLib import mrml as common
from MSKCommonLib.review import MeasureError, Presenter

from . import landmarks as lm
from . import measure

SIDES = ("right", "left")
CONTOUR_SAMPLES_PER_SEGMENT = 4
COLORS = {"landmarks": (1.0, 0.85, 0.1), "tibia": (0.2, 0.8, 1.0), "femur": (1.0, 0.45, 0.2),
          "medial": (0.3, 1.0, 0.3), "lateral": (1.0, 0.3, 1.0)}


class KneePresenter(Presenter):
    module = "KneeLandmarks"
    title = "knee joint space"

    def build(self, live, result) -> None:
        base = live.volume.GetName()
        for m in result.knees:
            side = m.side
            node = live.add_points(f"{side}.landmarks", "vtkMRMLMarkupsFiducialNode", f"{base} {side} knee landmarks",
                                   m.landmarks_px, list(lm.LANDMARK_LABELS), COLORS["landmarks"])
            if node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetGlyphScale(1.5)
            for i, description in enumerate(lm.LANDMARK_DESCRIPTIONS):
                node.SetNthControlPointDescription(i, description)
            for part, title in (("tibia", "tibial contour"), ("femur", "femoral contour")):
                curve = live.add_points(f"{side}.contour.{part}", "vtkMRMLMarkupsCurveNode", f"{base} {side} knee {title}",
                                        np.zeros((0, 2)), color=COLORS[part], locked=True, editable=False)
                curve.SetCurveTypeToLinear()  # the points are the dense contour of ``measure``
                display = curve.GetDisplayNode()
                if display is not None:
                    display.SetPointLabelsVisibility(False)
                    display.SetPropertiesLabelVisibility(False)
                    display.SetGlyphScale(0.5)
            for part in ("medial", "lateral"):
                line = live.add_points(f"{side}.jsw.{part}", "vtkMRMLMarkupsLineNode", f"{base} {side} knee {part} JSW",
                                       np.zeros((0, 2)), color=COLORS[part], locked=True, editable=False)
                if line.GetDisplayNode() is not None:
                    line.GetDisplayNode().SetPropertiesLabelVisibility(False)

    def measurement(self, result):
        return list(result.knees)

    def measure(self, live, changed_role: Optional[str]):
        record = live.saved_record()
        spacing = record["pixel_spacing_mm"]
        confidence = {k["side"]: k.get("confidence") for k in record.get("knees", [])}
        out = []
        for side in sides_of(live):
            points = live.points_px(f"{side}.landmarks")
            try:
                out.append(measure.joint_space_width(points, side, spacing, confidence=confidence.get(side)))
            except measure.LandmarkError as e:
                raise MeasureError(f"{side} knee: {e}") from None
        return out

    def draw(self, live, measurement) -> None:
        by_side = {m.side: m for m in (measurement or [])}
        for side in sides_of(live):
            m = by_side.get(side)
            tib_fem = None if m is None else measure.contours(m.landmarks_px, CONTOUR_SAMPLES_PER_SEGMENT)
            for i, part in enumerate(("tibia", "femur")):
                live.set_points(f"{side}.contour.{part}", np.zeros((0, 2)) if tib_fem is None else tib_fem[i])
            for part in ("medial", "lateral"):
                line = live.node(f"{side}.jsw.{part}")
                display = line.GetDisplayNode()
                if m is None:
                    if display is not None:
                        display.SetVisibility(False)
                    line.SetDescription("not measured")
                    continue
                live.set_points(f"{side}.jsw.{part}", measure.jsw_line_points(m, part))
                line.SetDescription(f"{part} minimum joint space width {measure.format_mm(m.reported_mm(part))}")
                if display is not None:
                    display.SetVisibility(True)
        _fill_table(live, measurement)

    def record(self, live, record: dict, measurement) -> dict:
        if measurement is not None:
            extra = {k["side"]: {key: k[key] for key in ("presence", "centre_px", "landmark_confidence") if key in k}
                     for k in record.get("knees", [])}
            record["knees"] = [{**m.to_dict(), **extra.get(m.side, {})} for m in measurement]
        return record


def sides_of(live) -> list[str]:
    return [side for side in SIDES if live.node(f"{side}.landmarks") is not None]


def _fill_table(live, measurement) -> None:
    sides = sides_of(live)
    edited = live.edited_labels()
    if measurement is None:
        common.fill_table(live.table, [("Knee", sides), ("Medial JSW (mm)", [None] * len(sides)),
                                       ("Lateral JSW (mm)", [None] * len(sides)), ("Note", [live.error] * len(sides))])
        return
    source = live.saved_record().get("landmarks_from", "")
    warnings = live.saved_record().get("warnings", [])
    common.fill_table(live.table, [
        ("Knee", [m.side for m in measurement]),
        ("Medial JSW (mm)", [_round(m.reported_mm("medial")) for m in measurement]),
        ("Lateral JSW (mm)", [_round(m.reported_mm("lateral")) for m in measurement]),
        ("Confidence", [None if m.confidence is None else round(m.confidence, 3) for m in measurement]),
        ("Source", [source] * len(measurement)),
        ("Edited points", [", ".join(edited.get(f"{m.side}.landmarks", [])) for m in measurement]),
        ("Note", ["; ".join(m.notes + [w for w in warnings if w.startswith(f"{m.side} knee not")])
                  for m in measurement]),
    ])


def _round(v, digits: int = 3):
    return None if v is None else round(float(v), digits)
