"""Inference: vertebrae T1..L5, their corners and the three Cobb angles on a spine AP radiograph.

    predictor = CobbPredictor()            # CobbAngleLib/models/cobb_seg4reg.onnx (ONNX Runtime)
    predictor = CobbPredictor(backend="torch")   # CobbAngleLib/models/cobb_seg4reg.pt (PyTorch)
    result = predictor.predict(pixels)     # float32 H x W, the film's own intensity units

Both backends give the same named outputs (``OUTPUTS``) as numpy arrays; everything before and
after the network call is the same numpy/OpenCV code (``frame``, ``decode``). The onnx path
never imports torch.

The landmarks (corners) are what the user sees; ``landmark_angles`` are computed from them by
``geometry`` (AASCE convention). The regression head's angles are an independent second opinion:
when the two disagree by more than ``consistency_threshold_deg`` the result carries a warning.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from MSKCommonLib.resources import packaged

from . import geometry
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


class CobbPredictor:
    def __init__(self, weights=None, device: str = "auto", consistency_threshold_deg: float = 10.0,
                 test_time_flip: bool = False, decoding: str = "ordered", threads: Optional[int] = None,
                 backend: str = "onnx"):
        from MSKCommonLib.runtime import check_backend

        self.backend = check_backend(backend)
        self.weights_path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.consistency_threshold_deg = float(consistency_threshold_deg)
        self.test_time_flip = bool(test_time_flip)  # also read the mirrored film and average
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}")
        self.decoding = decoding
        self.network = (_torch_network if self.backend == "torch" else _onnx_network)(self.weights_path, device, threads)
        self.device, self.threads, self.config = self.network.device, self.network.threads, self.network.config
        self.input_hw = (int(self.config.get("input_height", INPUT_HW[0])), int(self.config.get("input_width", INPUT_HW[1])))

    def predict(self, pixels: np.ndarray, progress: Optional[Callable[[float, str], None]] = None,
                should_cancel: Optional[Callable[[], bool]] = None) -> CobbPrediction:
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
        step(0.05, "Normalising the radiograph")
        m = letterbox_matrix(h, w, self.input_hw)
        net = to_network_frame(intensity_window(a), m, self.input_hw)
        x = net[None, None]
        if self.test_time_flip:
            x = np.concatenate([x, x[..., ::-1]])
        step(0.2, "Finding the vertebrae")
        out = self.network(x)
        if self.decoding == "ordered":
            corners, prob = ordered_landmarks(out["heatmap"], out["offsets"])
        else:
            corners, prob = decode_landmarks(out["heatmap"], out["offsets"], window=3, chain=self.decoding == "chain")
        step(0.7, "Measuring the Cobb angles")
        confidence = vertebra_confidence(prob[0])
        seg = out["segmentation"].astype(np.float32)
        lm_net = corners[0]
        if self.test_time_flip:  # mirror the second reading back: x -> W-1-x, left/right corners swap
            mirrored = corners[1][:, FLIP_CORNERS].copy()
            mirrored[..., 0] = self.input_hw[1] - 1 - mirrored[..., 0]
            lm_net = (lm_net + mirrored) / 2
            confidence = (confidence + vertebra_confidence(prob[1])) / 2
            seg = (seg[:1] + seg[1:, :, :, ::-1]) / 2
        inv = invert_affine(m)
        landmarks = lm_net @ inv[:, :2].T + inv[:, 2]
        labels_net = upsampled_labels(seg[0], self.input_hw)
        labelmap = cv2.warpAffine(labels_net, m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        regressed = np.maximum(out["angles"].astype(np.float64).mean(0), 0.0)
        regressed_angles = {c: float(v) for c, v in zip(geometry.CURVE_NAMES, regressed)}
        try:
            landmark_angles = geometry.cobb_angles(landmarks, "aasce", h).angles
        except geometry.LandmarkError:
            landmark_angles = {c: None for c in geometry.CURVE_NAMES}
        warning = self._consistency(regressed_angles, landmark_angles)
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


def upsampled_labels(segmentation: np.ndarray, input_hw) -> np.ndarray:
    """(classes, h, w) stride-4 logits -> (H, W) uint8 labels: bilinear (pixel centres, as torch's
    align_corners=False) to the network input, then the most likely class."""
    planes = np.ascontiguousarray(segmentation.transpose(1, 2, 0), dtype=np.float32)
    up = cv2.resize(planes, (int(input_hw[1]), int(input_hw[0])), interpolation=cv2.INTER_LINEAR)
    return up.argmax(-1).astype(np.uint8)


def _onnx_network(weights: Path, device: str, threads):
    from MSKCommonLib.runtime import OnnxNetwork, onnx_file
    from MSKCommonLib.weights import WeightsError

    network = OnnxNetwork(onnx_file(weights), device=device, threads=threads)
    if network.config.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{network.path} has format {network.config.get('format')!r}; expected {WEIGHTS_FORMAT!r}")
    return network


def _torch_network(weights: Path, device: str, threads):
    from MSKCommonLib.runtime import TorchNetwork, require_torch
    from MSKCommonLib.weights import WeightsError, load_state

    require_torch("the torch backend")
    from .network import Seg4RegNet

    saved = load_state(weights, map_location="cpu")
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise WeightsError(f"{weights} is not a Cobb weights file (no 'state_dict')")
    config = dict(saved.get("config", {}))
    if config.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{weights} has format {config.get('format')!r}; expected {WEIGHTS_FORMAT!r}")
    model = Seg4RegNet(pretrained=False)
    model.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
    return TorchNetwork(model, OUTPUTS, device=device, threads=threads, config=config)
