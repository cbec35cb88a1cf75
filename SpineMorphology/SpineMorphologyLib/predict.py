"""Back photo -> depth, back mask and the nine spine keypoints (GAMA-Net), in photo pixels.

    BackPredictor(weights=None, device="auto").predict(rgb) -> BackPrediction

The network predicts a relief (height towards the camera relative to the back's median, in photo
pixels): the back's shape up to its scale. With the camera scale (focal length in pixels and the
camera-to-back distance) it becomes depth in mm; without it, ``depth`` is relative (pixels,
growing away from the camera, 0 at the back's median) and measures in length units come out in
pixels of the photo (angles do not need the scale).

Backends: ONNX Runtime (default; gamanet_back.onnx) or torch (gamanet_back.pt); both give the
same named numpy outputs (``OUTPUTS``) and share all the numpy/OpenCV code around them (``frame``).
The onnx path never imports torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from scipy import ndimage

from MSKCommonLib.resources import packaged

from . import morphology, person
from .photo import (  # noqa: F401  (the photo checks, also used here)
    MIN_COLOURFULNESS, NotABackPhoto, as_rgb_uint8, colourfulness, require_colour_photo, skin_fraction,
)
from .frame import INPUT_HEIGHT, INPUT_WIDTH, RELIEF_SCALE, decode_simcc, sigmoid

DEFAULT_WEIGHTS = packaged("SpineMorphologyLib", "models", "gamanet_back.pt")  # the .onnx lies beside it
OUTPUTS = ("relief", "mask_logit", "simcc_x", "simcc_y")  # what inference reads (= the .onnx outputs)
MIN_BACK_FRACTION = 0.04  # of the photo
MIN_SKIN_FRACTION = 0.3  # of the predicted back that has a skin-like colour
MIN_KEYPOINT_CONFIDENCE = 0.25


@dataclass
class BackPrediction:
    relief_px: np.ndarray  # H x W, height towards the camera, photo pixels, 0 = back median
    mask: np.ndarray  # H x W bool, the back
    keypoints_px: np.ndarray  # 9 x 2 (morphology.KEYPOINT_NAMES order)
    confidences: np.ndarray  # 9, probability mass within 3 px of the SimCC peak
    mask_probability: np.ndarray  # H x W
    device: str
    seconds: float
    depth_mm: Optional[np.ndarray] = None  # when the camera scale is known
    focal_px: Optional[float] = None
    crop: Optional["person.Crop"] = None  # the region the networks saw, when not the whole photo
    framing: str = "whole photo"  # or how the crop was found ("BlazePose", "given")

    @property
    def depth(self) -> np.ndarray:
        """Depth in mm when the scale is known, else relative depth in pixels."""
        return self.depth_mm if self.depth_mm is not None else -self.relief_px

    @property
    def depth_units(self) -> str:
        return "mm" if self.depth_mm is not None else "px (relative)"

    def surface(self) -> morphology.Surface:
        if self.depth_mm is not None:
            h, w = self.mask.shape
            return morphology.surface_from_depth(self.depth_mm, self.mask, self.focal_px, (w - 1) / 2, (h - 1) / 2,
                                                 estimated=True)
        return morphology.surface_from_relief(self.relief_px, self.mask, estimated=True)


class BackPredictor:
    """``framing``: "auto" frames the trunk with BlazePose when mediapipe is installed (module
    ``person``), "off" always gives the whole photo to the networks."""

    def __init__(self, weights=None, device: str = "auto", framing: str = "auto", threads: Optional[int] = None,
                 backend: str = "onnx"):
        from MSKCommonLib.runtime import OnnxNetwork, check_backend, onnx_file

        self.backend = check_backend(backend)
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        if self.backend == "onnx":
            self.network = OnnxNetwork(onnx_file(path), device=device, threads=threads)
        else:
            self.network = _torch_network(path, device, threads)
            self.model = self.network.model
        self.device, self.threads = self.network.device, self.network.threads
        self.weights = path
        if framing not in ("auto", "off"):
            raise ValueError(f"framing must be 'auto' or 'off', not {framing!r}")
        self.finder = person.PersonFinder() if framing == "auto" and person.pose_model_available() else None

    def predict(self, rgb: np.ndarray, focal_px: Optional[float] = None, distance_mm: Optional[float] = None,
                check: bool = True, trunk: Optional["person.Trunk"] = None) -> BackPrediction:
        """rgb: H x W x 3 (uint8 or float). focal_px and distance_mm (camera to back) give depth in mm.
        ``trunk`` (shoulders and hips in photo pixels) frames the networks' input; without it the
        pose model finds them when it is available."""
        start = time.perf_counter()
        rgb = as_rgb_uint8(rgb)
        if check:
            require_colour_photo(rgb)
        h, w = rgb.shape[:2]
        if trunk is None and self.finder is not None:
            trunk = self.finder.find(rgb)
        crop = person.trunk_crop(trunk, (h, w), (INPUT_HEIGHT, INPUT_WIDTH)) if trunk is not None else None
        if crop is None:
            small = cv2.resize(rgb, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)
        else:
            small = person.cut(rgb, crop, (INPUT_HEIGHT, INPUT_WIDTH))
        x = small.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
        out = self.network(x)
        kp, conf = decode_simcc(out["simcc_x"], out["simcc_y"])
        frame_h = h if crop is None else crop.height  # the network frame's height in photo pixels
        relief = out["relief"][0] / RELIEF_SCALE * frame_h  # photo pixels (vertical)
        prob = sigmoid(out["mask_logit"][0])
        if crop is None:
            relief = cv2.resize(relief, (w, h), interpolation=cv2.INTER_LINEAR)
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
            keypoints = kp[0] * [w / INPUT_WIDTH, h / INPUT_HEIGHT]
        else:
            relief = person.paste(relief, crop, (h, w))
            prob = person.paste(prob, crop, (h, w))
            keypoints = crop.to_photo(kp[0], INPUT_WIDTH, INPUT_HEIGHT)
        mask = _largest_component(prob > 0.5)
        if mask.any():
            relief = relief - np.median(relief[mask])
        pred = BackPrediction(
            relief_px=relief.astype(np.float32), mask=mask, keypoints_px=keypoints.astype(np.float64),
            confidences=conf[0].astype(np.float64), mask_probability=prob.astype(np.float32),
            device=str(self.device), seconds=0.0, crop=crop,
            framing="whole photo" if crop is None else f"trunk crop ({trunk.source})",
        )
        if focal_px is not None and distance_mm is not None:
            pred.focal_px = float(focal_px)
            pred.depth_mm = np.where(mask, distance_mm - relief * distance_mm / focal_px, 0.0).astype(np.float32)
        pred.seconds = time.perf_counter() - start
        if check:
            require_back(rgb, pred)
        return pred


def require_back(rgb: np.ndarray, pred: BackPrediction, name: str = "the photo") -> None:
    frac = float(pred.mask.mean())
    if frac < MIN_BACK_FRACTION:
        raise NotABackPhoto(f"no bare back found in {name} (back region {100 * frac:.1f}% of the photo)")
    skin = skin_fraction(rgb, pred.mask)
    if skin < MIN_SKIN_FRACTION:
        raise NotABackPhoto(f"no bare back found in {name}: only {100 * skin:.0f}% of the region the network "
                            "marked has a skin colour")
    core = [morphology.I_C7, 5, 4, 3, 2, morphology.I_L5]
    if float(np.median(pred.confidences[core])) < MIN_KEYPOINT_CONFIDENCE:
        raise NotABackPhoto(f"no spine found in {name} (keypoint confidence {np.median(pred.confidences[core]):.2f})")


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def _torch_network(path: Path, device: str, threads):
    from MSKCommonLib.runtime import TorchNetwork, require_torch

    torch = require_torch("the torch backend")
    from .network import GAMANet

    if not path.is_file():
        raise FileNotFoundError(f"no back network weights at {path}; train them with 'mskmorph train back' or pass --weights")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = GAMANet(pretrained=False)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return TorchNetwork(model, OUTPUTS, device=device, threads=threads)
