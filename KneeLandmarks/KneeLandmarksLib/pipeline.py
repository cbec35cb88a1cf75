"""KneeLandmarks' pipeline: a knee radiograph in, a ``KneeResult`` out; the one path every front
end runs (``mskmorph knee``, the Slicer module through its worker process, the browser review).

    result = KneePipeline().run(image, KneeOptions(spacing_mm=None))

Both knees are found (a single-knee film gives one), each gets the 16 KNEEL landmarks, and the
medial and lateral minimum joint space width are measured here, once, by ``measure``. Millimetres
need the pixel spacing: the image's own (DICOM) or ``spacing_mm`` for a film that states none; a
film without either is refused with that reason. No Slicer, no files written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from MSKCommonLib.result import ImageInfo

from . import measure

MAX_COLOURFULNESS = 0.12
# "No knee, no JSW" (chosen on synthetic knee films vs non-knee inputs and the 826 real crops at an assumed
# 0.4 mm/px, see models/MODEL_CARD.md "Refusal and confidence"): the mean landmark confidence (heatmap
# sharpness) of non-knee inputs (the spine phantom at 0.14-0.3 mm/px, blank, noise and hand-like
# films) is at most 0.004; of the real crops 0.013-0.423 (5th percentile 0.162; 9 of 826 below 0.05,
# refused); of 22 synthetic knees (12 films) 0.61-0.87.
MIN_KNEE_CONFIDENCE = 0.05
LOW_CONFIDENCE = 0.5  # below: a warning (every real crop falls below, every synthetic knee above)
TIBIA_WIDTH_MM = (45.0, 130.0)  # T1-T9, adult tibial plateau about 60-95 mm
JSW_DEFINITION = ("minimum distance between the femoral and tibial contours: lateral T1-T3 vs F1-F3, medial T7-T9 vs "
                  "F5-F7 (see KneeLandmarksLib.measure)")


@dataclass
class KneeOptions:
    spacing_mm: Optional[float] = None  # pixel spacing for a film that does not state one
    device: str = "auto"
    backend: str = "onnx"  # or "torch" (development; needs the torch extra)
    weights: Optional[str] = None  # folder with knee_detector.pt and knee_landmarks.pt


@dataclass
class KneeResult:
    image: ImageInfo  # with the spacing the widths were measured with
    knees: list  # measure.KneeMeasurement per knee found (right first)
    detections: list = field(default_factory=list)  # per knee: presence, centre, per-landmark confidence
    landmarks_from: str = ""
    warnings: list = field(default_factory=list)

    def to_record(self) -> dict:
        """The JSON record (``NAME_knee.json``)."""
        knees = []
        for m, d in zip(self.knees, self.detections or [{}] * len(self.knees)):
            knees.append({**m.to_dict(), **d})
        return {**self.image.to_record(), "landmarks_from": self.landmarks_from, "jsw_definition": JSW_DEFINITION,
                "knees": knees, "warnings": list(self.warnings)}


def result_from_landmarks(image, knees, spacing_mm=None, source: str = "given landmarks") -> KneeResult:
    """A result from landmarks measured here: ``knees`` = [(side, (16, 2) pixels[, confidence])];
    ``spacing_mm`` (row, column) when the image states none."""
    spacing = image.spacing_mm if spacing_mm is None else tuple(float(s) for s in spacing_mm)
    if spacing is None:
        raise ValueError(f"{image.name} has no pixel spacing; give spacing_mm")
    measured = [measure.joint_space_width(k[1], k[0], spacing, confidence=k[2] if len(k) > 2 else None) for k in knees]
    return KneeResult(ImageInfo.of(image, spacing, "given" if spacing_mm is not None else None), measured, [], source)


def no_knee_reason(prediction, spacing_mm) -> Optional[str]:
    """Why the landmarks of one prediction are not a knee joint (None when they are): diffuse
    heatmaps, a tibia not below the femur, points not running lateral -> medial, or a tibial
    plateau of implausible width in mm."""
    spacing = (float(spacing_mm), float(spacing_mm)) if np.isscalar(spacing_mm) else tuple(map(float, spacing_mm))
    conf = float(np.mean(prediction.point_confidence))
    if conf < MIN_KNEE_CONFIDENCE:
        return (f"no knee joint found: the landmark network's heatmaps are diffuse (mean landmark confidence "
                f"{conf:.3f} < {MIN_KNEE_CONFIDENCE}; detector presence {prediction.presence:.2f})")
    p = np.asarray(prediction.landmarks_px, float) * np.array([spacing[1], spacing[0]])
    tib, fem = p[:9], p[9:]
    if not fem[:, 1].mean() < tib[:, 1].mean():
        return "no knee joint found: the femoral landmarks are not above the tibial ones"
    sign = 1.0 if prediction.side == "right" else -1.0
    if not ((np.diff(tib[:, 0]) * sign > 0).all() and (np.diff(fem[:, 0]) * sign > 0).all()):
        return "no knee joint found: the landmarks do not run from the lateral to the medial margin"
    width = float(np.hypot(*(tib[8] - tib[0])))
    if not TIBIA_WIDTH_MM[0] <= width <= TIBIA_WIDTH_MM[1]:
        return (f"no knee joint found: the tibial plateau would be {width:.0f} mm wide "
                f"(a knee's is {TIBIA_WIDTH_MM[0]:.0f}-{TIBIA_WIDTH_MM[1]:.0f} mm)")
    return None


class KneePipeline:
    def __init__(self):
        self._predictors: dict = {}

    def predictor(self, device: str = "auto", weights=None, backend: str = "onnx"):
        key = (device, str(weights or ""), backend)
        if key not in self._predictors:
            from .predict import KneePredictor

            self._predictors[key] = KneePredictor(weights=weights, device=device, backend=backend)
        return self._predictors[key]

    def run(self, image, options: Optional[KneeOptions] = None, progress: Optional[Callable] = None,
            should_cancel: Optional[Callable[[], bool]] = None) -> KneeResult:
        options = options or KneeOptions()
        if image.was_colour and image.colourfulness > MAX_COLOURFULNESS:
            raise ValueError(f"{image.name} is a colour picture (mean saturation {image.colourfulness:.2f}), "
                             "not a radiograph")
        spacing, spacing_from = image.spacing_mm, image.spacing_source or "file"
        if spacing is None:
            if options.spacing_mm is None:
                raise ValueError(
                    f"{image.name} does not state its pixel spacing (PNG/JPEG files do not carry it); joint space "
                    "width needs millimetres: give the pixel spacing in mm (--spacing MM on the command line, the pixel spacing "
                    "field in Slicer and in the browser review), or use the DICOM")
            if not options.spacing_mm > 0:
                raise ValueError(f"the pixel spacing must be a positive number of mm, not {options.spacing_mm}")
            spacing, spacing_from = (float(options.spacing_mm),) * 2, "given by the user"
        if progress is not None:
            progress(0.1, "Finding the knees")
        if should_cancel is not None and should_cancel():
            raise RuntimeError("cancelled")
        predictor = self.predictor(options.device, options.weights, options.backend)
        predictions = predictor.predict(image.pixels, spacing)
        warnings, kept = [], []
        for p in predictions:
            reason = no_knee_reason(p, spacing)
            if reason is None:
                kept.append(p)
            else:
                warnings.append(f"{p.side} knee not reported: {reason}")
        if not kept:
            raise ValueError(f"{image.name}: " + (warnings[0].split(": ", 1)[1] if len(warnings) == 1 else
                                                  "; ".join(warnings)))
        predictions = kept
        if progress is not None:
            progress(0.9, "Measuring the joint space")
        knees = [measure.joint_space_width(p.landmarks_px, p.side, spacing, confidence=p.confidence) for p in predictions]
        for m, p in zip(knees, predictions):
            conf = float(np.mean(p.point_confidence))
            if conf < LOW_CONFIDENCE:
                note = (f"low landmark confidence {conf:.2f} (< {LOW_CONFIDENCE}): the landmarks may be off, "
                        "check them before using the widths")
                m.notes.append(note)
                warnings.append(f"{p.side} knee: {note}")
            for c in (m.medial, m.lateral):
                if c.overlap:
                    warnings.append(f"{p.side} knee: {c.name} JSW not measurable (contours touch or cross)")
        detections = [{"presence": round(float(p.presence), 4), "centre_px": np.round(p.centre_px, 3).tolist(),
                       "landmark_confidence": np.round(p.point_confidence, 4).tolist()} for p in predictions]
        return KneeResult(ImageInfo.of(image, spacing, spacing_from), knees, detections,
                          f"network ({predictor.device})", warnings)
