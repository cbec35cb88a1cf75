"""Two-stage KNEEL inference on a knee radiograph.

1. The whole film, letterboxed into a small square, goes through the knee detector: one point
   and one presence score for the patient's right knee and one for the left knee.
2. Around each knee found, a 140 mm ROI is resampled to 0.3 mm/pixel (left knees mirrored),
   resized to the landmark network's input and the 16 landmarks are read out by soft-argmax;
   the ROI is then re-centred on the predicted T5 and the network runs once more.
Landmarks come back in the ORIGINAL image's pixels (x right, y down), in anatomical order
(T1/F1 lateral, see ``shape_model``).

Backends: ONNX Runtime (default; knee_detector.onnx, knee_landmarks.onnx) or torch (the .pt
files); both give the same named numpy outputs (``OUTPUTS``) and share all the numpy code around
them. The onnx path never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from MSKCommonLib.resources import packaged

from . import roi as D
from . import landmarks as sm

MODELS_DIR = packaged("KneeLandmarksLib", "models")
DETECTOR_FILE, LANDMARKS_FILE = "knee_detector.pt", "knee_landmarks.pt"
PRESENCE_THRESHOLD = 0.5
SHARP_SPREAD_MM, SPREAD_SCALE_MM = 3.0, 3.0
MIN_KNEE_SEPARATION_MM = 80.0  # knee centres on a bilateral film are 150-250 mm apart
OUTPUTS = ("coords", "prob", "presence")  # what inference reads (the exported .onnx has exactly these)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def heatmap_spread(prob: np.ndarray, coords: np.ndarray, input_size: int) -> np.ndarray:
    """Standard deviation (input pixels) of each point's soft-argmax distribution, (B, K): small
    for one sharp peak, large for a spread or multi-modal heatmap (numpy: both backends)."""
    b, k, h, w = prob.shape
    s = input_size / w
    ys = (np.arange(h, dtype=np.float32) + 0.5) * s - 0.5
    xs = (np.arange(w, dtype=np.float32) + 0.5) * s - 0.5
    d2 = (xs[None, None, None, :] - coords[..., 0, None, None]) ** 2 + (ys[None, None, :, None] - coords[..., 1, None, None]) ** 2
    return np.sqrt((prob * d2).sum((2, 3)))


def point_confidence(spread_mm: np.ndarray) -> np.ndarray:
    """0..1 from the spread (standard deviation, mm) of a landmark's heatmap: 1 up to
    ``SHARP_SPREAD_MM``, falling by e every ``SPREAD_SCALE_MM`` beyond."""
    return np.exp(-np.maximum(0.0, np.asarray(spread_mm) - SHARP_SPREAD_MM) / SPREAD_SCALE_MM)


@dataclass
class KneePrediction:
    side: str  # "right" / "left" (the patient's)
    landmarks_px: np.ndarray  # (16, 2) original image pixels
    confidence: float  # 0..1: detection probability x mean landmark confidence (heatmap sharpness)
    centre_px: np.ndarray  # (2,) the detector's knee centre
    presence: float  # detector probability that this knee is on the film
    point_confidence: np.ndarray  # (16,)

    def to_dict(self) -> dict:
        return {"side": self.side, "confidence": round(self.confidence, 4), "presence": round(self.presence, 4),
                "centre_px": np.round(self.centre_px, 3).tolist(),
                "landmarks_px": {lab: np.round(p, 3).tolist() for lab, p in zip(sm.LANDMARK_LABELS, self.landmarks_px)}}


def _load(path: Path, stage: str, device, backend: str = "onnx", threads: Optional[int] = None):
    """The ``stage`` network (``detector`` / ``landmarks``) of ``path`` (.pt; its .onnx beside it
    for the onnx backend) as an ``MSKCommonLib.runtime`` network."""
    from MSKCommonLib.runtime import OnnxNetwork, TorchNetwork, onnx_file, require_torch
    from MSKCommonLib.weights import WeightsError, load_state

    if backend == "onnx":
        network = OnnxNetwork(onnx_file(path), device=device, threads=threads)
        if network.config.get("stage") != stage:
            raise WeightsError(f"{network.path} holds the {network.config.get('stage')!r} network, "
                               f"expected the {stage!r} one")
        return network
    require_torch("the torch backend")
    from .network import KneelNet

    saved = load_state(path, map_location="cpu")
    if not isinstance(saved, dict) or "state_dict" not in saved or "config" not in saved:
        raise WeightsError(f"{path} is not a KneeLandmarks weights file (no state_dict/config)")
    cfg = saved["config"]
    if cfg.get("stage") != stage:
        raise WeightsError(f"{path} holds the {cfg.get('stage')!r} network, expected the {stage!r} one")
    model = KneelNet(int(cfg["n_points"]), int(cfg["width"]), int(cfg["depth"]), int(cfg["input_size"]),
                     presence=str(cfg.get("presence", "global")))
    model.load_state_dict(saved["state_dict"])
    return TorchNetwork(model, OUTPUTS, device=device, threads=threads, config=dict(cfg))


class KneePredictor:
    """``weights``: a folder holding knee_detector.pt and knee_landmarks.pt, or a pair of files
    (detector, landmarks); default the shipped ones in KneeLandmarksLib/models."""

    def __init__(self, weights=None, device: str = "auto", refine: bool = True, threads: Optional[int] = None,
                 backend: str = "onnx"):
        from MSKCommonLib.runtime import check_backend

        self.backend = check_backend(backend)
        if isinstance(weights, (tuple, list)):
            detector_path, landmarks_path = (Path(p) for p in weights)
        else:
            folder = MODELS_DIR if weights is None else Path(weights)
            detector_path, landmarks_path = folder / DETECTOR_FILE, folder / LANDMARKS_FILE
        self.detector = _load(detector_path, "detector", device, self.backend, threads)
        self.landmarks = _load(landmarks_path, "landmarks", device, self.backend, threads)
        self.device, self.threads = self.detector.device, self.detector.threads
        self.det_size = int(self.detector.config["input_size"])
        self.roi_size = int(self.landmarks.config["input_size"])
        self.refine = refine

    def detect(self, pixels: np.ndarray, spacing_mm) -> list[tuple[str, np.ndarray, float]]:
        """[(side, centre in film pixels, presence probability)] for the knees found."""
        img, scale, offset = D.letterbox(pixels, spacing_mm, self.det_size)
        out = self.detector(img[None, None])
        coords = out["coords"][0].astype(np.float64)
        presence = sigmoid(out["presence"][0])
        found = []
        for i, side in enumerate(D.SIDES):
            centre = (coords[i] - np.array(offset)) / np.array(scale)
            found.append((side, centre, float(presence[i])))
        kept = [f for f in found if f[2] >= PRESENCE_THRESHOLD]
        if len(kept) == 2:  # two knees cannot overlap: both heads on one knee means one knee
            gap_mm = np.hypot(*((kept[0][1] - kept[1][1]) * np.array([spacing_mm[1], spacing_mm[0]])))
            if gap_mm < MIN_KNEE_SEPARATION_MM:
                kept = [max(kept, key=lambda f: f[2])]
        return kept or [max(found, key=lambda f: f[2])]

    def _landmarks(self, pixels, spacing_mm, sides: Sequence[str], centres: Sequence[np.ndarray]):
        batch = np.stack([D.normalise(D.extract_roi(pixels, spacing_mm, c, s, self.roi_size))
                          for s, c in zip(sides, centres)])
        out = self.landmarks(batch[:, None])
        coords = out["coords"]
        spread_mm = heatmap_spread(out["prob"], coords, self.roi_size) * D.ROI_PX * D.ROI_SPACING / self.roi_size
        conf = point_confidence(spread_mm)
        pts = [D.roi_to_film_px(D.net_to_roi(coords[i], self.roi_size), centres[i], sides[i], spacing_mm)
               for i in range(len(sides))]
        return pts, conf

    def predict(self, pixels: np.ndarray, spacing_mm) -> list[KneePrediction]:
        """Per knee found (right first): side, 16 landmarks in the image's pixels, confidence."""
        if spacing_mm is None:
            raise ValueError("the pixel spacing is needed (140 mm regions at 0.3 mm/pixel); give it in mm")
        if np.isscalar(spacing_mm):
            spacing_mm = (float(spacing_mm), float(spacing_mm))
        spacing_mm = (float(spacing_mm[0]), float(spacing_mm[1]))
        pixels = np.asarray(pixels, np.float32)
        if pixels.ndim != 2:
            raise ValueError(f"expected a 2D gray image, got shape {pixels.shape}")
        knees = self.detect(pixels, spacing_mm)
        sides = [k[0] for k in knees]
        centres = [k[1] for k in knees]
        pts, conf = self._landmarks(pixels, spacing_mm, sides, centres)
        if self.refine:
            pts, conf = self._landmarks(pixels, spacing_mm, sides, [p[sm.CENTRE_INDEX] for p in pts])
        result = []
        for (side, centre, presence), p, c in zip(knees, pts, conf):
            result.append(KneePrediction(side, p, float(presence * c.mean()), centre, presence, c))
        return result
