"""Inference: vertebrae T1..L5, their corners and the three Cobb angles on a spine AP radiograph.

    predictor = CobbPredictor()            # CobbAngleLib/models/cobb_seg4reg.onnx (ONNX Runtime)
    predictor = CobbPredictor(backend="torch")   # CobbAngleLib/models/cobb_seg4reg.pt (PyTorch)
    result = predictor.predict(pixels)     # float32 H x W, the film's own intensity units

Both backends give the same named outputs (``OUTPUTS``) as numpy arrays; everything before and
after the network call is the same numpy/OpenCV code (``frame``, ``decode``). The onnx path
never imports torch.

The landmarks (corners) are what the user sees; ``landmark_angles`` are computed from them by
``geometry`` (AASCE convention). The regression head's angles are an independent second opinion:
when the two disagree by more than ``consistency_threshold_deg`` the result carries a warning (the
old rule). The CHECK (``check``): per angle, the features of ``check.FEATURES`` (regression gap,
end-vertebra sharpness, ordered vs chain decoding, mirrored film) give ``angle_confidence`` and
``check`` through the model fitted on training films (``models/cobb_check.json``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from MSKCommonLib.resources import packaged

from . import geometry
from .check import CHECK_FILE, CheckModel
from .check import FEATURES as CHECK_FEATURES
from .decode import decode_landmarks, ordered_landmarks, vertebra_confidence
from .frame import FLIP_CORNERS, INPUT_HW, intensity_window, invert_affine, letterbox_matrix, to_network_frame

DEFAULT_WEIGHTS = packaged("CobbAngleLib", "models", "cobb_seg4reg.pt")  # the .onnx lies beside it
WEIGHTS_FORMAT = "mskmorph-cobb-seg4reg-lite0-v1"
# the network outputs inference reads (the exported .onnx has exactly these, in this order)
OUTPUTS = ("segmentation", "heatmap", "offsets", "angles")
# how the vertebrae are read from the heatmaps (``decode``): "ordered" (the default: found without
# their names, then named in order from T1), "chain" (each heatmap's peak chosen jointly along the
# spine) or "plain" (each heatmap's own maximum)
DECODINGS = ("ordered", "chain", "plain")


class Cancelled(Exception):
    """The caller's ``should_cancel()`` returned True."""


@dataclass
class CobbPrediction:
    landmarks: np.ndarray  # (17, 4, 2) float64, original image pixels (x right, y down), AASCE corner order
    vertebra_labelmap: np.ndarray  # (H, W) uint8, 0 background, 1..17 = T1..L5
    regressed_angles: dict  # {'PT', 'MT', 'TL_L'} degrees from the regression head, organisers' order
    landmark_angles: dict  # same keys, geometry.cobb_angles(landmarks, 'aasce', H).angles
    consistency_warning: Optional[str]
    vertebra_confidence: np.ndarray  # (17,) 0..1
    device: str
    seconds: float
    # the CHECK, per angle (same keys): probability that the angle is within 10 deg of the truth
    # (None: not measured, or the old rule), CHECK, and the features it was read from
    angle_confidence: dict = field(default_factory=dict)
    check: dict = field(default_factory=dict)
    check_features: dict = field(default_factory=dict)
    check_note: str = ""  # why the old rule is used, when it is
    # the cascade: stage 1's corners (whole film) and stage 2's endplate scales (degrees, (17, 2)
    # superior / inferior; None without the second stage)
    stage1_landmarks: Optional[np.ndarray] = None
    endplate_scale_deg: Optional[np.ndarray] = None
    # the names by anatomy (``vertebra_level``): by how many levels the level network moved stage
    # 1's names (0: none, -1: stage 1's "T1" was C7; None: no level network) and its probability of
    # each named level (17,)
    level_shift: Optional[int] = None
    level_probability: Optional[np.ndarray] = None


class CobbPredictor:
    def __init__(self, weights=None, device: str = "auto", consistency_threshold_deg: float = 10.0,
                 test_time_flip: bool = False, decoding: str = "ordered", threads: Optional[int] = None,
                 backend: str = "onnx", check_file=None, read_mirrored: Optional[bool] = None,
                 all_check_features: bool = False, stage2: Optional[bool] = None, stage2_weights=None,
                 naming: Optional[bool] = None, level_weights=None, zoom: bool = True):
        """``check_file``: the fitted CHECK (default ``models/cobb_check.json``); ``read_mirrored``:
        also read the mirrored film for the CHECK's flip feature (None: when the CHECK uses it);
        ``all_check_features``: compute every feature of ``check.FEATURES`` (for fitting the CHECK),
        not only those the CHECK in use reads (the others are then nan); ``stage2``: read each
        vertebra again from the film's own pixels (``vertebra_read``; None: when its weights are
        shipped)."""
        from MSKCommonLib.runtime import check_backend, load_network

        self.backend = check_backend(backend)
        self.weights_path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.consistency_threshold_deg = float(consistency_threshold_deg)
        self.test_time_flip = bool(test_time_flip)  # also read the mirrored film and average
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}")
        self.decoding = decoding
        self.zoom = bool(zoom)
        self.network = load_network(self.weights_path, WEIGHTS_FORMAT, build_network, OUTPUTS, device, threads,
                                    self.backend, "Cobb")
        self.device, self.threads, self.config = self.network.device, self.network.threads, self.network.config
        self.input_hw = (int(self.config.get("input_height", INPUT_HW[0])), int(self.config.get("input_width", INPUT_HW[1])))
        from . import vertebra_level, vertebra_read

        if naming is None:
            naming = vertebra_level.available(level_weights)
        self.level_reader = (vertebra_level.LevelReader(level_weights, device, self.threads, self.backend)
                             if naming else None)
        if stage2 is None:
            stage2 = vertebra_read.available(stage2_weights)
        self.vertebra_reader = (vertebra_read.VertebraReader(stage2_weights, device, self.threads, self.backend)
                                if stage2 else None)
        self.check_model = CheckModel.from_json(CHECK_FILE if check_file is None else check_file,
                                                self.networks_fingerprint())
        self.read_mirrored = self.check_model.needs_flip if read_mirrored is None else bool(read_mirrored)
        used = self.check_model.features if self.check_model.fitted else ("regression_gap",)
        self.check_feature_names = tuple(CHECK_FEATURES) if all_check_features else tuple(used)

    def networks_fingerprint(self) -> str:
        """sha256 of the network files in use (stage 1, '+' the level network and '+' stage 2 when
        they run): the CHECK was fitted for exactly these."""
        from MSKCommonLib.runtime import sha256

        out = sha256(self.network.path if self.backend == "onnx" else self.weights_path)
        for reader in (self.level_reader, self.vertebra_reader):
            if reader is not None:
                out += "+" + sha256(reader.path if self.backend == "onnx" else reader.weights_path)
        return out

    def predict(self, pixels: np.ndarray, progress: Optional[Callable[[float, str], None]] = None,
                should_cancel: Optional[Callable[[], bool]] = None, named=()) -> CobbPrediction:
        """``named``: [(name, x, y)], the reader's names for vertebrae at (x, y) film pixels (e.g.
        [("T1", 412, 380)]: "this is T1"); the vertebrae are then counted from them instead of from
        where T1's heatmap fires (``decode.ordered_peaks``)."""
        t0 = time.perf_counter()

        def step(fraction: float, message: str) -> None:
            if should_cancel is not None and should_cancel():
                raise Cancelled("Cobb angle measurement cancelled")
            if progress is not None:
                progress(fraction, message)

        a = np.asarray(pixels)
        if a.ndim != 2 or min(a.shape) < 32:  # colour is made gray by the reader (MSKCommonLib.image)
            raise ValueError(f"expected a 2-D grayscale radiograph, got an array of shape {np.shape(pixels)}")
        h, w = a.shape
        anchored = named_vertebrae(named, a.shape)  # refused before any work
        step(0.05, "Normalising the radiograph")
        m = letterbox_matrix(h, w, self.input_hw)
        film01 = intensity_window(a)

        def read(m):
            x = to_network_frame(film01, m, self.input_hw)[None, None]
            if self.test_time_flip or self.read_mirrored:
                x = np.concatenate([x, x[..., ::-1]])
            out = self.network(x)
            return out, *read_corners(out, self.decoding)

        step(0.2, "Finding the vertebrae")
        out, corners, prob = read(m)
        zoomed = zoom_matrix(m, spine_found(corners[0], anchored, m), self.input_hw) if self.zoom else None
        if zoomed is not None:  # the spine is small on this film: read again at the training films' scale,
            m = zoomed  # then once more centred on the vertebrae that reading found
            out, corners, prob = read(m)
            m = zoom_matrix(m, spine_found(corners[0], anchored, m), self.input_hw, centre_only=True)
            out, corners, prob = read(m)
        if anchored:  # the reader's names for some vertebrae: counted from them
            net = [(k, *(np.asarray(xy, dtype=np.float64) @ m[:, :2].T + m[:, 2])) for k, xy in anchored]
            mirrored_net = [(k, self.input_hw[1] - 1 - x, y) for k, x, y in net]
            corners, prob = ordered_landmarks(out["heatmap"], out["offsets"],
                                              anchors=[net, mirrored_net][:len(out["heatmap"])])
        step(0.7, "Measuring the Cobb angles")
        confidence = vertebra_confidence(prob[0])
        seg = out["segmentation"].astype(np.float32)
        lm_net = corners[0]
        mirrored = None
        if len(corners) > 1:  # mirror the second reading back: x -> W-1-x, left/right corners swap
            mirrored = corners[1][:, FLIP_CORNERS].copy()
            mirrored[..., 0] = self.input_hw[1] - 1 - mirrored[..., 0]
        if self.test_time_flip:
            lm_net = (lm_net + mirrored) / 2
            confidence = (confidence + vertebra_confidence(prob[1])) / 2
            seg = (seg[:1] + seg[1:, :, :, ::-1]) / 2
        inv = invert_affine(m)

        def to_film(points):
            return points @ inv[:, :2].T + inv[:, 2]

        landmarks = to_film(lm_net)
        if anchored:  # counted from the reader's names: the vertebrae beyond the film's edge are not on it
            landmarks = beyond_the_film(landmarks, a.shape, anchored)
        labels_net = upsampled_labels(seg[0], self.input_hw)
        level_shift = level_probability = None
        if self.level_reader is not None and not anchored:
            from .vertebra_level import renamed_corners, renamed_labels

            step(0.4, "Naming the vertebrae by their anatomy")
            naming = self.level_reader.name(film01, landmarks)
            if naming.shift < 0 and self.decoding == "ordered":
                # stage 1's "T1" lies above T1 (on C7): the chain is found again from the true T1
                # down, so that the lowest vertebrae are found rather than extrapolated
                first = lm_net[-naming.shift].mean(axis=0)
                again = to_film(ordered_landmarks(out["heatmap"][:1], out["offsets"][:1],
                                                  anchors=[[(0, *first)]])[0][0])
                if not geometry.vertebrae_out_of_order(again):
                    moved = naming.shift
                    landmarks = again
                    naming = self.level_reader.name(film01, landmarks)
                    naming.shift_from_stage1 = moved + naming.shift
            level_shift, level_probability = naming.shift_from_stage1, naming.level_probability()
            confidence = naming.renamed(confidence, fill=0.0)
            labels_net = renamed_labels(labels_net, naming)
            landmarks = renamed_corners(landmarks, naming)
        stage1_landmarks = landmarks
        endplate_scale = None
        if self.vertebra_reader is not None:
            step(0.5, "Reading each vertebra at the film's resolution")
            landmarks, endplate_scale = self.vertebra_reader.read(film01, stage1_landmarks)
        labelmap = cv2.warpAffine(labels_net, m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # the regression head on the readings averaged (the mirrored one only with test-time flip)
        regressed = np.maximum(out["angles"][:2 if self.test_time_flip else 1].astype(np.float64).mean(0), 0.0)
        regressed_angles = {c: float(v) for c, v in zip(geometry.CURVE_NAMES, regressed)}
        try:
            measured = geometry.cobb_angles(landmarks, "aasce", h)
            landmark_angles = measured.angles
        except geometry.LandmarkError:
            measured, landmark_angles = None, {c: None for c in geometry.CURVE_NAMES}
        warning = self._consistency(regressed_angles, landmark_angles)
        one = {k: out[k][:1] for k in ("heatmap", "offsets")}
        wanted = self.check_feature_names

        def angles_decoded(decoding: str, feature: str):  # only when the CHECK reads that feature
            return aasce_angles(to_film(read_corners(one, decoding)[0][0]), h) if feature in wanted else None

        features = check_features(measured, regressed_angles, confidence,
                                  angles_decoded("chain" if self.decoding != "chain" else "ordered", "decoding_gap"),
                                  None if mirrored is None else aasce_angles(to_film(mirrored), h), landmarks,
                                  angles_decoded("plain", "plain_gap"), h, wanted,
                                  endplate_scale=endplate_scale,
                                  stage1=None if endplate_scale is None else aasce_angles(stage1_landmarks, h))
        angle_confidence, check = self.check_model.assess(features)
        step(1.0, "Done")
        return CobbPrediction(
            landmarks=landmarks.astype(np.float64),
            vertebra_labelmap=labelmap.astype(np.uint8),
            regressed_angles=regressed_angles,
            landmark_angles=landmark_angles,
            consistency_warning=warning,
            vertebra_confidence=confidence,
            device=str(self.device),
            seconds=time.perf_counter() - t0,
            angle_confidence=angle_confidence,
            check=check,
            check_features=features,
            check_note=self.check_model.note,
            stage1_landmarks=stage1_landmarks.astype(np.float64),
            endplate_scale_deg=endplate_scale,
            level_shift=level_shift,
            level_probability=level_probability,
        )

    def _consistency(self, regressed: dict, from_landmarks: dict) -> Optional[str]:
        notes = []
        for c in geometry.CURVE_NAMES:
            a, b = regressed.get(c), from_landmarks.get(c)
            if a is None or b is None:
                continue
            diff = abs(a - b)
            if diff > self.consistency_threshold_deg:
                notes.append(f"{c} ({geometry.CURVE_TITLES[c]}): landmarks give {b:.1f} deg, "
                             f"the regression network {a:.1f} deg (difference {diff:.1f} deg)")
        if not notes:
            return None
        return ("The two networks disagree by more than %.0f deg; check the vertebra corners. " %
                self.consistency_threshold_deg) + "; ".join(notes)


# the step between neighbouring vertebrae's centres in the network frame (384 x 192): on the AASCE
# validation films its median per film lies between 16.5 and 22.5 px (the corners' widths do not tell: the offsets come out
# at about the training films' size whatever the film shows). A film whose spine comes out with
# steps below ZOOM_BELOW_PX (a spine on a larger cassette, a full-spine film) is read again with
# the letterbox magnified so that they are ZOOM_TO_PX long, centred on the vertebrae found.
ZOOM_BELOW_PX = 15.5
ZOOM_TO_PX = 20.5
ZOOM_MAX = 3.0


def zoom_matrix(m: np.ndarray, corners_net: np.ndarray, input_hw, centre_only: bool = False) -> Optional[np.ndarray]:
    """The film -> network affine of a second, magnified reading, or None when the vertebrae found
    at ``m`` (corners (17, 4, 2) in the network frame) lie far enough apart; ``centre_only``: the
    same scale as ``m``, centred on these vertebrae."""
    centres_net = np.asarray(corners_net, dtype=np.float64).mean(axis=1)
    step = float(np.median(np.linalg.norm(np.diff(centres_net, axis=0), axis=1)))
    if centre_only:
        factor = 1.0
    elif not np.isfinite(step) or step <= 0 or step >= ZOOM_BELOW_PX:
        return None
    else:
        factor = min(ZOOM_TO_PX / step, ZOOM_MAX)
    inv = invert_affine(m)
    centres = centres_net @ inv[:, :2].T + inv[:, 2]  # film pixels
    cx, cy = float(np.median(centres[:, 0])), float((centres[:, 1].min() + centres[:, 1].max()) / 2)
    s = float(m[0, 0]) * factor
    return np.array([[s, 0, (input_hw[1] - 1) / 2 - s * cx], [0, s, (input_hw[0] - 1) / 2 - s * cy]], dtype=np.float64)


def spine_found(corners_net: np.ndarray, anchored: list, m: np.ndarray) -> np.ndarray:
    """The vertebrae (17, n, 2) a zoom is decided on: those found, unless the reader named two or
    more whose spacing disagrees with theirs (``decode.spacing_agrees``: a
    full-spine film: stage 1 spreads T1..L5 over C1..S1); then where the named ones say T1..L5 lie."""
    from .decode import spacing_agrees

    if len(anchored) < 2:
        return corners_net
    named = named_chain(anchored, m)
    centres = np.asarray(corners_net, dtype=np.float64).mean(axis=1)
    ratio = np.linalg.norm(named[-1] - named[0]) / max(float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum()), 1e-6)
    return corners_net if spacing_agrees(ratio) else named[:, None, :]


def beyond_the_film(landmarks: np.ndarray, film_hw, anchored: list) -> np.ndarray:
    """``landmarks`` (17, 4, 2) counted from the reader's names ``anchored``, with NaN for the
    vertebrae the film does not show: counting outwards from the highest and the lowest named
    vertebra, the first whose centre lies off the film or that does not follow its neighbour along
    the spine (the count ran out of vertebrae: a film cut through the spine), and all beyond it."""
    v = np.array(landmarks, dtype=np.float64, copy=True)
    on = geometry.points_on_film(v.mean(axis=1), film_hw)
    wrong = set(geometry.vertebrae_out_of_order(v))  # i: vertebra i + 1 does not follow i
    top, bottom = min(k for k, _ in anchored), max(k for k, _ in anchored)
    for j in range(top - 1, -1, -1):
        if not on[j] or j in wrong:
            v[:j + 1] = np.nan
            break
    for j in range(bottom + 1, len(v)):
        if not on[j] or (j - 1) in wrong:
            v[j:] = np.nan
            break
    return v


def named_chain(anchored: list, m: np.ndarray) -> np.ndarray:
    """(17, 2) where T1..L5 would lie in the network frame ``m`` if they were evenly spaced along
    the line through the reader's named vertebrae (two or more; ``named_vertebrae``)."""
    k = np.array([i for i, _ in anchored], dtype=np.float64)
    xy = np.array([p for _, p in anchored], dtype=np.float64) @ m[:, :2].T + m[:, 2]
    fit = [np.polyfit(k, xy[:, c], 1) for c in (0, 1)]
    ks = np.arange(geometry.N_VERTEBRAE, dtype=np.float64)
    return np.stack([np.polyval(fit[0], ks), np.polyval(fit[1], ks)], axis=-1)


def named_vertebrae(named, film_hw) -> list:
    """[(index 0..16, (x, y))] of a reader's names [(name, x, y)] (sorted down the spine), or
    ValueError saying what is wrong with them."""
    out = []
    h, w = film_hw
    for item in named or ():
        try:
            name, x, y = item
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise ValueError(f"a named vertebra is (name, x, y), e.g. ('T1', 412, 380); got {item!r}") from None
        k = geometry.vertebra_index(name)
        if not geometry.points_on_film((x, y), film_hw)[0]:
            raise ValueError(f"the point ({x:.0f}, {y:.0f}) named {name} lies off the film ({w} x {h} pixels)")
        out.append((k, (x, y)))
    out.sort()
    for (k0, p0), (k1, p1) in zip(out, out[1:]):
        if k0 == k1:
            raise ValueError(f"{geometry.VERTEBRA_NAMES[k0]} is named twice")
        if p1[1] - p0[1] <= 0:
            raise ValueError(f"{geometry.VERTEBRA_NAMES[k1]} is named above {geometry.VERTEBRA_NAMES[k0]}")
    return out


def read_corners(out: dict, decoding: str):
    """(B, 17, 4, 2) corners in network pixels and the heatmap probabilities, by ``decoding``."""
    if decoding == "ordered":
        corners, prob = ordered_landmarks(out["heatmap"], out["offsets"])
        # on a film where fewer distinct vertebrae are found than 17 the ordered pass can put one
        # out of order (the geometry would refuse the film): those films are read by the chain
        wrong = [i for i in range(len(corners)) if geometry.vertebrae_out_of_order(corners[i])]
        if wrong:
            chained, _ = decode_landmarks(out["heatmap"][wrong], out["offsets"][wrong], window=3, chain=True)
            corners[wrong] = chained
        return corners, prob
    return decode_landmarks(out["heatmap"], out["offsets"], window=3, chain=decoding == "chain")


def aasce_angles(landmarks, image_height) -> dict:
    """{angle: degrees or None} (AASCE convention) of corners in film pixels."""
    try:
        return geometry.cobb_angles(landmarks, "aasce", image_height).angles
    except geometry.LandmarkError:
        return {c: None for c in geometry.CURVE_NAMES}


JITTER_READINGS = 8
JITTER_SHARE = 0.05
JITTER_SEED = 14


# a gap that cannot be read (the other reading has no angle) counts as this large
UNREADABLE_GAP_DEG = 90.0


def check_features(measured, regressed: dict, confidence, other_decoding: Optional[dict], mirrored: Optional[dict],
                   landmarks=None, plain: Optional[dict] = None, image_height: Optional[float] = None,
                   names=None, endplate_scale=None, stage1: Optional[dict] = None) -> dict:
    """{angle: {feature: value} or None (not measured)} for the CHECK (``check.FEATURES``);
    ``measured``: the AASCE measurement of the reported corners (None when not measurable);
    ``other_decoding`` / ``mirrored``: the angles of the other decoding / the mirrored reading
    (``mirrored`` None: not read, flip_gap = nan); ``landmarks``: the reported corners (film pixels);
    ``plain``: the angles of the plain decoding; ``image_height``: the film's, in pixels;
    ``names``: the features to compute (default all; the others are nan, and the readings they
    need may be None); ``endplate_scale``: stage 2's (17, 2) endplate scales (degrees) and
    ``stage1``: the angles of stage 1's corners (both None without the second stage: nan)."""
    if measured is None:
        return {c: None for c in geometry.CURVE_NAMES}
    confidence = np.asarray(confidence, dtype=np.float64)

    def gap(a, b):
        return UNREADABLE_GAP_DEG if a is None or b is None else min(abs(a - b), UNREADABLE_GAP_DEG)

    v = geometry.as_vertebra_array(landmarks)
    tilt = geometry.tilt_deg(geometry.endplate_vectors(v, "mid"))
    jumps = np.abs((np.diff(tilt) + 90) % 180 - 90)  # between neighbours, (16,)
    endplates = np.abs((geometry.tilt_deg(geometry.endplate_vectors(v, "sup"))
                        - geometry.tilt_deg(geometry.endplate_vectors(v, "inf")) + 90) % 180 - 90)
    # the AASCE computation's choices (S-shaped or not, which half the major curve lies in, the end
    # vertebrae) can flip on a small change of the corners: the angles re-measured on corners moved
    # by JITTER_SHARE of the median endplate width (fixed pseudo-random moves)
    width = float(np.median(np.linalg.norm(geometry.endplate_vectors(v, "mid"), axis=-1)))
    moves = np.random.default_rng(JITTER_SEED).standard_normal((JITTER_READINGS,) + v.shape) * JITTER_SHARE * width
    wanted = set(CHECK_FEATURES if names is None else names)
    jittered = [aasce_angles(v + d, image_height) for d in moves] if "jitter_spread" in wanted else []
    out = {}
    for curve in measured.curves:
        c, angle = curve.name, curve.angle_deg
        ends = [curve.upper_line[0], curve.lower_line[0]]
        lo, hi = min(ends), max(ends)
        out[c] = {"regression_gap": gap(angle, regressed.get(c)),
                  "end_sharpness": float(confidence[ends].min()),
                  "span_sharpness": float(confidence[lo:hi + 1].min()),
                  "tilt_jump": float(jumps[max(lo - 1, 0):hi + 1].max()),
                  "endplate_gap": float(endplates[lo:hi + 1].max()),
                  "plain_gap": float("nan") if plain is None else gap(angle, plain.get(c)),
                  "regressed": float(regressed.get(c) or 0.0),
                  "jitter_spread": max((gap(angle, j.get(c)) for j in jittered), default=float("nan")),
                  "at_film_end": float(lo == 0 or hi == geometry.N_VERTEBRAE - 1),
                  "decoding_gap": float("nan") if other_decoding is None else gap(angle, other_decoding.get(c)),
                  "flip_gap": float("nan") if mirrored is None else gap(angle, mirrored.get(c)),
                  "angle": float(angle),
                  "min_sharpness": float(confidence.min()),
                  # stage 2: how sure it is of the two end vertebrae's endplates (their scales, the
                  # mean of superior and inferior per vertebra, added in quadrature as the angle's
                  # two tilts are subtracted), and how far it moved the angle from stage 1's
                  "endplate_scale": float("nan") if endplate_scale is None else float(
                      np.hypot(*np.asarray(endplate_scale, dtype=np.float64)[ends].mean(axis=1))),
                  "stage_gap": float("nan") if stage1 is None else gap(angle, stage1.get(c))}
        out[c] = {k: (v if k in wanted else float("nan")) for k, v in out[c].items()}
    return out


def upsampled_labels(segmentation: np.ndarray, input_hw) -> np.ndarray:
    """(classes, h, w) stride-4 logits -> (H, W) uint8 labels: bilinear (pixel centres, as torch's
    align_corners=False) to the network input, then the most likely class."""
    planes = np.ascontiguousarray(segmentation.transpose(1, 2, 0), dtype=np.float32)
    up = cv2.resize(planes, (int(input_hw[1]), int(input_hw[0])), interpolation=cv2.INTER_LINEAR)
    return up.argmax(-1).astype(np.uint8)


def build_network(config: dict):
    """The torch module for a stage-1 weights file (its config names nothing to change)."""
    from .network import Seg4RegNet

    return Seg4RegNet(pretrained=False)
