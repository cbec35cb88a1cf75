"""The CHECK: a per-angle confidence that the measured Cobb angle is within 10 deg of the truth.

For each of the three angles (AASCE order: PT, MT, TL_L) the predictor measures a few signs of
trouble from the network outputs it already has (``FEATURES``):

* ``regression_gap``  |regression head's angle - landmark angle| (deg)
* ``end_sharpness``   the smaller heatmap sharpness (``decode.vertebra_confidence``) of the angle's
                      two end vertebrae
* ``decoding_gap``    |angle from the default decoding - angle from the other one| (ordered vs
                      chain: the same network outputs, read twice)
* ``flip_gap``        |angle - angle read on the mirrored film| (one more network call, in the
                      same batch; only when the fitted model uses it)
* ``angle``           the landmark angle itself (deg)
* ``min_sharpness``   the smallest sharpness of the 17 vertebrae
* ``endplate_scale``  stage 2's uncertainty of the two end vertebrae's endplates (deg): the mean
                      of each vertebra's superior and inferior Laplace scales, in quadrature
* ``stage_gap``       |angle from stage 2's corners - angle from stage 1's| (deg)

A logistic regression per angle (numpy only; coefficients, feature scaling and the threshold in
``models/cobb_check.json``, written by ``CobbAngleTools.check_fit``, fitted on training films
only) turns them into ``angle_confidence[angle]`` (0..1); ``check[angle]`` is True when the
confidence is below the threshold, which was chosen by cross-validation on the training films.

The model was fitted for one set of network weights (their sha256 is in the JSON): with other
weights, or without the JSON, the old rule applies (CHECK when the regression and landmark angles
differ by more than ``OLD_RULE_DEG``) and ``CheckModel.note`` says so.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from MSKCommonLib.resources import packaged

CHECK_FILE = packaged("CobbAngleLib", "models", "cobb_check.json")
FEATURES = ("regression_gap", "end_sharpness", "decoding_gap", "flip_gap", "angle", "min_sharpness",
            "span_sharpness", "tilt_jump", "endplate_gap", "plain_gap", "regressed",
            "jitter_spread", "at_film_end", "endplate_scale", "stage_gap")
GAP_FEATURES = ("regression_gap", "decoding_gap", "flip_gap", "plain_gap", "tilt_jump", "endplate_gap", "jitter_spread",
                "endplate_scale", "stage_gap")  # log(1 + x)
ERROR_DEG = 10.0  # an angle is "off" when its error is larger than this
OLD_RULE_DEG = 10.0
FORMAT = "mskmorph-cobb-check-v1"


def transformed(features: dict, names) -> np.ndarray:
    """The model's inputs for one angle: the gaps as log(1 + gap), the rest as they are."""
    return np.array([math.log1p(max(float(features[n]), 0.0)) if n in GAP_FEATURES else float(features[n])
                     for n in names], dtype=np.float64)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass
class CheckModel:
    """A fitted CHECK (``from_json``), or the old rule (``weights`` empty) with the reason in ``note``."""

    features: tuple = ()
    weights: dict = field(default_factory=dict)  # {angle: {"mean": [...], "scale": [...], "coef": [...], "intercept": b}}
    threshold: float = 0.5
    note: str = ""
    source: Optional[Path] = None

    @property
    def fitted(self) -> bool:
        return bool(self.weights)

    @property
    def needs_flip(self) -> bool:
        return self.fitted and "flip_gap" in self.features

    def confidence(self, angle: str, features: dict) -> float:
        w = self.weights[angle]
        x = (transformed(features, self.features) - np.asarray(w["mean"])) / np.asarray(w["scale"])
        return float(sigmoid(float(x @ np.asarray(w["coef"])) + float(w["intercept"])))

    def assess(self, features: dict) -> tuple[dict, dict]:
        """({angle: confidence or None}, {angle: CHECK}) from {angle: features or None} (None: the
        angle could not be measured: CHECK, no confidence)."""
        confidence, check = {}, {}
        for angle, f in features.items():
            if f is None:
                confidence[angle], check[angle] = None, True
            elif self.fitted:
                confidence[angle] = round(self.confidence(angle, f), 4)
                check[angle] = confidence[angle] < self.threshold
            else:  # the old rule: no confidence, CHECK when the two networks disagree
                confidence[angle] = None
                check[angle] = bool(f["regression_gap"] > OLD_RULE_DEG)
        return confidence, check

    @classmethod
    def old_rule(cls, note: str) -> "CheckModel":
        return cls(note=note)

    @classmethod
    def from_json(cls, path: Path, weights_sha256: Optional[str] = None) -> "CheckModel":
        """The fitted model in ``path``; the old rule (with a note) when the file is missing, is not
        a CHECK file, or was fitted for other weights than ``weights_sha256``."""
        path = Path(path)
        if not path.is_file():
            return cls.old_rule(f"no fitted CHECK ({path.name} missing): CHECK = the regression and landmark "
                                f"angles differ by more than {OLD_RULE_DEG:.0f} deg")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            return cls.old_rule(f"{path.name} is not a {FORMAT} file: CHECK = the regression and landmark angles "
                                f"differ by more than {OLD_RULE_DEG:.0f} deg")
        fitted_for = {data.get("weights_sha256"), data.get("source_sha256")} - {None}
        if weights_sha256 is not None and weights_sha256 not in fitted_for:
            return cls.old_rule(f"the CHECK in {path.name} was fitted for other network weights "
                                f"(sha256 {data.get('weights_sha256', '?')[:12]}..., these are {weights_sha256[:12]}...; "
                                "re-run mskmorph check cobb-fit): CHECK = the regression and landmark angles differ "
                                f"by more than {OLD_RULE_DEG:.0f} deg")
        return cls(features=tuple(data["features"]), weights=data["models"], threshold=float(data["threshold"]),
                   source=path)


# --------------------------------------------------------------------------------------------
# the CHECK of a result's curves (the record's "angle_confidence", "check", "check_edited")

def spans_overlap(a: tuple, b: tuple) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)


def for_curves(measurement, aasce_measurement, angle_confidence: dict, check: dict) -> tuple[dict, dict]:
    """The network's CHECK (per AASCE angle) for the curves of ``measurement``: the same in the
    AASCE convention; in the clinical one, each curve takes that of the AASCE curve whose end
    vertebrae span the most vertebrae in common with it (none in common: CHECK, no confidence). A
    film the AASCE computation cannot measure (``aasce_measurement`` None: it does not show T1-L5)
    gives no AASCE curve to take it from: CHECK, no confidence, for each measured curve."""
    if measurement.convention == "aasce":
        names = [c.name for c in measurement.curves]
        return ({n: angle_confidence.get(n) for n in names}, {n: check.get(n, True) for n in names})
    spans = {} if aasce_measurement is None else {
        c.name: (c.upper_line[0], c.lower_line[0]) for c in aasce_measurement.curves}
    confidence_out, check_out = {}, {}
    for c in measurement.curves:
        if c.angle_deg is None or c.upper_line is None:
            confidence_out[c.name], check_out[c.name] = None, None
            continue
        span = (c.upper_line[0], c.lower_line[0])
        best = max(spans, key=lambda n: spans_overlap(span, spans[n]), default=None)
        if best is None or spans_overlap(span, spans[best]) == 0:
            confidence_out[c.name], check_out[c.name] = None, True
        else:
            confidence_out[c.name], check_out[c.name] = angle_confidence.get(best), check.get(best, True)
    return confidence_out, check_out


def edited_curves(measurement, edited_labels, computed_curves=()) -> list:
    """The curves whose end vertebrae or a vertebra between them has a moved corner (labels such as
    ``T7 inf-R``), now or as the network's corners measured them (``computed_curves``: the saved
    record's "curves"): the network's confidence no longer applies to them."""
    from .geometry import VERTEBRA_NAMES

    moved = {VERTEBRA_NAMES.index(label.split()[0]) for label in edited_labels if label.split()[0] in VERTEBRA_NAMES}
    spans = {}
    for c in computed_curves or ():
        if c.get("upper_end_vertebra") in VERTEBRA_NAMES and c.get("lower_end_vertebra") in VERTEBRA_NAMES:
            spans.setdefault(c["name"], []).append(
                sorted((VERTEBRA_NAMES.index(c["upper_end_vertebra"]), VERTEBRA_NAMES.index(c["lower_end_vertebra"]))))
    for c in [] if measurement is None else measurement.curves:
        if c.upper_line is not None and c.lower_line is not None:
            spans.setdefault(c.name, []).append(sorted((c.upper_line[0], c.lower_line[0])))
    names = [] if measurement is None else [c.name for c in measurement.curves]
    return [n for n in names if any(lo <= v <= hi for lo, hi in spans.get(n, []) for v in moved)]


def check_label(record: dict, curve: str) -> str:
    """What is shown beside an angle: "CHECK, confidence 0.41", "confidence 0.93", "CHECK" (the
    old rule, or not measured), "edited" (its corners were moved: checked by the user), or ""."""
    if curve in (record.get("check_edited") or []):
        return "edited"
    check = (record.get("check") or {}).get(curve)
    confidence = (record.get("angle_confidence") or {}).get(curve)
    parts = (["CHECK"] if check else []) + ([f"confidence {confidence:.2f}"] if confidence is not None else [])
    return ", ".join(parts)
