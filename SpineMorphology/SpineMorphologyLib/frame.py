"""The back network's frame and its output decoding, in numpy (both backends, no torch).

Input: RGB resized (or cut, see ``person``) to INPUT_HEIGHT x INPUT_WIDTH, scaled to [0, 1].
Outputs: ``relief`` = height towards the camera as a fraction of the input height x
RELIEF_SCALE, ``mask_logit``, SimCC keypoint logits ``simcc_x`` (B, 9, W*k), ``simcc_y`` (B, 9, H*k).
"""
from __future__ import annotations

import numpy as np

INPUT_HEIGHT, INPUT_WIDTH = 192, 160
PATCH = 32
N_KEYPOINTS = 9
SIMCC_SPLIT = 2
RELIEF_SCALE = 10.0  # network relief = 10 x (relief in px / image height)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, np.float32)))).astype(np.float32)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray):
    """Keypoints (B, 9, 2) in input pixels and confidences (B, 9) from SimCC logits: soft-argmax
    within 3 input pixels of the peak; the confidence is the probability mass there (the numpy
    twin of ``network.decode_simcc``)."""
    px = softmax(np.asarray(simcc_x, np.float32))
    py = softmax(np.asarray(simcc_y, np.float32))

    def local(p):
        bins = np.arange(p.shape[-1], dtype=np.float32) / SIMCC_SPLIT
        peak = p.argmax(-1)[..., None]
        near = np.abs(np.arange(p.shape[-1])[None, None, :] - peak) <= 3 * SIMCC_SPLIT
        w = p * near
        mass = w.sum(-1)
        return (w * bins).sum(-1) / np.maximum(mass, 1e-9), mass

    x, cx = local(px)
    y, cy = local(py)
    return np.stack([x, y], -1), np.minimum(cx, cy)
