"""Inference: vertebrae T1..L5, their corners and the three Cobb angles on a spine AP radiograph.

    predictor = CobbPredictor()            # weights: CobbAngleLib/models/cobb_seg4reg.pt
    result = predictor.predict(pixels)     # float32 H x W, the film's own intensity units

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
import torch
import torch.nn.functional as F

from MSKCommonLib.resources import packaged

from . import geometry
from .frame import FLIP_CORNERS, INPUT_HW, intensity_window, invert_affine, letterbox_matrix, to_network_frame
from .network import Seg4RegNet, decode_landmarks

DEFAULT_WEIGHTS = packaged("CobbAngleLib", "models", "cobb_seg4reg.pt")
WEIGHTS_FORMAT = "mskmorph-cobb-seg4reg-lite0-v1"


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
                 test_time_flip: bool = False, chain_decoding: bool = True, threads: Optional[int] = None):
        from MSKCommonLib.device import choose_device, inference_threads
        from MSKCommonLib.weights import WeightsError, load_state

        self.weights_path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.device = choose_device(device)
        self.threads = int(threads or inference_threads())
        self.consistency_threshold_deg = float(consistency_threshold_deg)
        self.test_time_flip = bool(test_time_flip)  # also read the mirrored film and average
        self.chain_decoding = bool(chain_decoding)  # vertebra peaks chosen jointly along the spine
        saved = load_state(self.weights_path, map_location="cpu")
        if not isinstance(saved, dict) or "state_dict" not in saved:
            raise WeightsError(f"{self.weights_path} is not a Cobb weights file (no 'state_dict')")
        self.config = dict(saved.get("config", {}))
        if self.config.get("format") != WEIGHTS_FORMAT:
            raise WeightsError(
                f"{self.weights_path} has format {self.config.get('format')!r}; expected {WEIGHTS_FORMAT!r}"
            )
        self.input_hw = (int(self.config.get("input_height", INPUT_HW[0])), int(self.config.get("input_width", INPUT_HW[1])))
        model = Seg4RegNet(pretrained=False)
        model.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
        self.model = model.to(self.device).eval()

    @torch.no_grad()
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
        x = torch.from_numpy(net)[None, None].to(self.device)
        if self.test_time_flip:
            x = torch.cat([x, x.flip(-1)])
        step(0.2, "Finding the vertebrae")
        from MSKCommonLib.device import fixed_threads

        with fixed_threads(self.threads):
            out = self.model(x)
        corners, prob = decode_landmarks(out["heatmap"].float(), out["offsets"].float(), window=3,
                                        chain=self.chain_decoding)
        step(0.7, "Measuring the Cobb angles")
        corners = corners.cpu().double().numpy()
        confidence = self._confidence(prob[0].cpu())
        seg = out["segmentation"].float()
        lm_net = corners[0]
        if self.test_time_flip:  # mirror the second reading back: x -> W-1-x, left/right corners swap
            mirrored = corners[1][:, FLIP_CORNERS].copy()
            mirrored[..., 0] = self.input_hw[1] - 1 - mirrored[..., 0]
            lm_net = (lm_net + mirrored) / 2
            confidence = (confidence + self._confidence(prob[1].cpu())) / 2
            seg = (seg[:1] + seg[1:].flip(-1)) / 2
        inv = invert_affine(m)
        landmarks = lm_net @ inv[:, :2].T + inv[:, 2]
        seg = F.interpolate(seg[:1], size=self.input_hw, mode="bilinear", align_corners=False)
        labels_net = seg[0].argmax(0).to(torch.uint8).cpu().numpy()
        labelmap = cv2.warpAffine(labels_net, m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        regressed = out["angles"].float().mean(0).clamp_min(0).cpu().numpy()
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

    @staticmethod
    def _confidence(prob: torch.Tensor, radius: int = 2) -> np.ndarray:
        """Share of each vertebra's centre heatmap within ``radius`` cells of its peak (0..1)."""
        k, h, w = prob.shape
        flat = prob.view(k, -1)
        peak = flat.argmax(-1)
        py, px = peak // w, peak % w
        conf = []
        for i in range(k):
            y0, y1 = max(0, int(py[i]) - radius), int(py[i]) + radius + 1
            x0, x1 = max(0, int(px[i]) - radius), int(px[i]) + radius + 1
            conf.append(float(prob[i, y0:y1, x0:x1].sum()))
        return np.clip(np.array(conf, dtype=np.float64), 0.0, 1.0)

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
