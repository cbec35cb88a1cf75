"""CobbAngle's pipeline: a spine AP radiograph in, a ``CobbResult`` out; the one path every front
end runs (the ``mskmorph cobb`` command, the Slicer module through its worker process, the
browser review).

    result = CobbPipeline().run(image, CobbOptions(convention="clinical"))

``image`` is an ``MSKCommonLib.image.Image`` (from ``read_image`` for a file or
``MSKCommonLib.mrml.image_from_volume`` for a Slicer volume: the same rules). The corners come from
the network, or from an AASCE landmark file (``landmarks_file``); they are measured here, once,
by ``geometry`` (in millimetres when the spacing is known). No Slicer, no files written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from MSKCommonLib.result import ImageInfo

from . import geometry
from .landmarks_io import check_landmarks_fit_image, read_aasce_mat
from .segments import vertebra_labelmap

# a colour photo is not a radiograph: mean saturation above this is refused
MAX_COLOURFULNESS = 0.12
# "no spine, no angles": a vertebra is found when its heatmap holds at least SURE_VERTEBRA of its
# mass near its peak; a film with fewer than MIN_VERTEBRAE found is refused. Measured with the
# shipped network: 13-17 found on every one of the 81 validation films (median confidence
# 0.49-0.80), 0-4 on a knee film, a real knee crop, noise and a gradient (median 0.07-0.27).
SURE_VERTEBRA = 0.4
MIN_VERTEBRAE = 8


NAMED_WITH_LANDMARKS = "named vertebrae guide the network's count; they cannot be used with a landmark file"


@dataclass
class CobbOptions:
    convention: str = "clinical"  # or "aasce" (the AASCE challenge's own computation)
    landmarks_file: Optional[str] = None  # AASCE .mat corners to use instead of the network
    device: str = "auto"
    backend: str = "onnx"  # or "torch" (development; needs the torch extra)
    weights: Optional[str] = None  # network weights (default: the shipped ones)
    # the reader's names for some vertebrae: ((name, x, y) film pixels, ...), e.g. (("T1", 412, 380),);
    # the network counts the vertebrae from them (``CobbPredictor.predict``'s ``named``)
    named_vertebrae: tuple = ()


@dataclass
class CobbResult:
    image: ImageInfo
    landmarks_px: np.ndarray  # (17, 4, 2) pixels, AASCE corner order
    landmarks_from: str  # "network (cpu)" or "file NAME.mat"
    measurement: geometry.CobbMeasurement
    # (H, W) uint8, 1..17 = T1..L5, drawn from the network's corners (segments.vertebra_labelmap; network only)
    vertebra_labelmap: Optional[np.ndarray] = None
    regressed_angles: Optional[dict] = None  # the regression head's angles (organisers' order)
    warnings: list = field(default_factory=list)
    vertebra_confidence: Optional[np.ndarray] = None  # (17,) 0..1
    # the CHECK per curve of ``measurement`` (network only; see CobbAngleLib.check): probability
    # that the angle is within 10 deg of the truth (None: not given), and CHECK
    angle_confidence: Optional[dict] = None
    check: Optional[dict] = None
    check_note: str = ""  # why the old rule is used, when it is
    named_vertebrae: tuple = ()  # the reader's names the network counted from ((name, x, y), ...)

    @property
    def warning(self) -> Optional[str]:
        return "; ".join(self.warnings) or None

    def to_record(self) -> dict:
        """The JSON record (``NAME_cobb.json``)."""
        return {
            **self.image.to_record(),
            "landmarks_from": self.landmarks_from,
            **self.measurement.to_dict(),
            "network_angles_deg": self.regressed_angles,
            "warning": self.warning,
            "vertebra_confidence": None if self.vertebra_confidence is None else [
                round(float(c), 4) if np.isfinite(c) else None for c in self.vertebra_confidence],
            "angle_confidence": self.angle_confidence,
            "check": self.check,
            "check_edited": [],
            "check_note": self.check_note or None,
            "named_by_reader": [{"vertebra": n, "x": round(float(x), 3), "y": round(float(y), 3)}
                                for n, x, y in self.named_vertebrae],
            "landmarks_px": labelled_landmarks(self.landmarks_px),
        }


def labelled_landmarks(landmarks_px) -> dict:
    """{"T7 inf-R": [x, y], ...} for the vertebrae on the film only: a vertebra not on the film
    (NaN) is absent, never "NaN" (the record's ``vertebrae_present`` names those shown);
    ``geometry.corners_by_label`` reads it back."""
    points, labels = geometry.shown_corners(landmarks_px)
    return {label: [round(float(x), 3) for x in xy] for label, xy in zip(labels, points)}


def record_landmarks(record: dict) -> np.ndarray:
    """The record's corners (``landmarks_px``, ``labelled_landmarks``) back in the (17, 4, 2)
    layout, NaN for the vertebrae not on the film (absent, or [null, null])."""
    given = {label: xy for label, xy in (record.get("landmarks_px") or {}).items()
             if xy is not None and len(xy) == 2 and None not in xy}
    return geometry.corners_by_label(list(given.values()), list(given))


def vertebrae_shown(record: dict) -> str:
    """The vertebrae on the film, as a radiologist writes them: "T1-L5", "T6-L5" ("" when none)."""
    shown = geometry.shown_vertebrae(record_landmarks(record))
    return f"{geometry.VERTEBRA_NAMES[shown[0]]}-{geometry.VERTEBRA_NAMES[shown[-1]]}" if shown else ""


def result_from_landmarks(image, landmarks, convention: str = "clinical", source: str = "given landmarks",
                          check_order: bool = True, **extra) -> CobbResult:
    """A result from corners measured here (a landmark file, or corners a script gives); ``image``
    is an ``Image`` (or anything with its ``name``, ``width``, ``height`` and ``spacing_mm``);
    ``check_order=False``: vertebrae out of order are measured as stored (the organisers' files in
    their own convention only); ``extra``: the network's fields (``vertebra_labelmap``, ...)."""
    landmarks = geometry.as_vertebra_array(landmarks)
    info = image if isinstance(image, ImageInfo) else ImageInfo.of(image)
    measurement = geometry.cobb_angles(landmarks, convention, image_height=info.height, spacing_mm=info.spacing_mm,
                                       check_order=check_order)
    return CobbResult(info, landmarks, source, measurement, **extra)


def order_of_file(landmarks, convention: str, file_name: str) -> tuple[bool, list]:
    """(check_order, warnings) for corners read from an AASCE landmark file: in the ``aasce``
    convention a file whose vertebrae are out of order is measured as the organisers measured it
    (their angles were computed from the files as stored), with a warning naming the vertebrae; in
    the clinical convention it is refused by the geometry, with the same names."""
    v = geometry.as_vertebra_array(landmarks)
    complete = bool(np.all(np.isfinite(v)))
    wrong = geometry.vertebrae_out_of_order(v) if complete else []
    if convention != "aasce" or not wrong:
        return True, []
    names = ", ".join(f"{geometry.VERTEBRA_NAMES[i + 1]} is not below {geometry.VERTEBRA_NAMES[i]}" for i in wrong)
    return False, [f"the vertebrae in {file_name} are out of order ({names}): measured as stored, as the AASCE "
                   "organisers computed their angles; the clinical convention refuses this file"]


class CobbPipeline:
    """Keeps the network loaded between films (one per device and weights file)."""

    def __init__(self):
        self._predictors: dict = {}

    def predictor(self, device: str = "auto", weights=None, backend: str = "onnx"):
        key = (device, str(weights or ""), backend)
        if key not in self._predictors:
            from .predict import CobbPredictor

            self._predictors[key] = CobbPredictor(weights=weights, device=device, backend=backend)
        return self._predictors[key]

    def run(self, image, options: Optional[CobbOptions] = None, progress: Optional[Callable] = None,
            should_cancel: Optional[Callable[[], bool]] = None) -> CobbResult:
        options = options or CobbOptions()
        if options.convention not in geometry.CONVENTIONS:
            raise ValueError(f"unknown convention {options.convention!r}; choose one of {', '.join(geometry.CONVENTIONS)}")
        if image.was_colour and image.colourfulness > MAX_COLOURFULNESS:
            raise ValueError(f"{image.name} is a colour picture (mean saturation {image.colourfulness:.2f}), "
                             "not a radiograph; Cobb angles need a spine AP radiograph")
        labelmap = regressed = confidence = prediction = None
        warnings = []
        check_order = True
        if options.landmarks_file and options.named_vertebrae:
            raise ValueError(NAMED_WITH_LANDMARKS)
        if options.landmarks_file:
            from pathlib import Path

            path = Path(options.landmarks_file)
            landmarks = read_aasce_mat(path)
            check_landmarks_fit_image(landmarks, image.pixels.shape, image.name)
            source = f"file {path.name}"
            check_order, warnings = order_of_file(landmarks, options.convention, path.name)
        else:
            prediction = self.predictor(options.device, options.weights, options.backend).predict(
                image.pixels, progress=progress, should_cancel=should_cancel, named=options.named_vertebrae)
            found = int((prediction.vertebra_confidence >= SURE_VERTEBRA).sum())
            if found < MIN_VERTEBRAE:
                raise ValueError(f"no spine found on {image.name}: the network is sure of {found} of the 17 vertebrae "
                                 f"T1-L5 (at least {MIN_VERTEBRAE} are needed); Cobb angles need a spine AP radiograph")
            landmarks = prediction.landmarks
            # the segments shown are drawn from the corners (one region per vertebra, on its own
            # vertebra), not the segmentation head's output; see segments.py and the model card
            labelmap = vertebra_labelmap(landmarks, image.pixels.shape)
            regressed, confidence = prediction.regressed_angles, prediction.vertebra_confidence
            if prediction.check_note and prediction.consistency_warning:  # the old rule
                warnings.append(prediction.consistency_warning)
            source = f"network ({prediction.device})" + (
                "; counted from " + ", ".join(str(n[0]).upper() for n in options.named_vertebrae) + " as named by the reader"
                if options.named_vertebrae else "")
        result = result_from_landmarks(image, landmarks, options.convention, source, check_order,
                                       vertebra_labelmap=labelmap,
                                       regressed_angles=regressed, warnings=warnings, vertebra_confidence=confidence)
        if prediction is not None:
            from .check import for_curves

            result.named_vertebrae = tuple(options.named_vertebrae)

            try:
                aasce = geometry.cobb_angles(landmarks, "aasce", image.pixels.shape[0])
            except geometry.LandmarkError:
                aasce = None
            result.angle_confidence, result.check = for_curves(result.measurement, aasce, prediction.angle_confidence,
                                                               prediction.check)
            result.check_note = prediction.check_note
            flagged = [c for c, v in result.check.items() if v]
            if flagged and not prediction.check_note:  # the fitted CHECK
                result.warnings.append("the angle may be off by more than 10 deg: " + ", ".join(
                    c + ("" if result.angle_confidence.get(c) is None else
                         f" (confidence {result.angle_confidence[c]:.2f})") for c in flagged)
                    + "; check the vertebra corners")
        return result
