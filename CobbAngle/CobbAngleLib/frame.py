"""The Cobb network's frame: how a film becomes the network input and back (used by inference
and by training).

A portrait film is letterboxed into ``INPUT_HW`` (height x width) pixels, intensity windowed to
its 1st..99th percentile and scaled to [0, 1]; padding is 0 (black). Landmarks are (17, 4, 2)
arrays in the AASCE corner order top-left, top-right, bottom-left, bottom-right.
No torch, no Slicer.
"""
from __future__ import annotations

import cv2
import numpy as np

INPUT_HW = (512, 256)  # network input, height x width
STRIDE = 4  # output grid of the segmentation / landmark heads
# A horizontal flip swaps each vertebra's left and right corners (the labels do not change).
FLIP_CORNERS = [1, 0, 3, 2]


def intensity_window(pixels: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Scale a film of any bit depth to [0, 1] by its percentile window (robust to burnt-in text)."""
    a = np.asarray(pixels, dtype=np.float32)
    step = max(1, int(np.sqrt(a.size / 250_000)))
    sample = a[::step, ::step]
    sample = sample[np.isfinite(sample)]
    lo, hi = (np.percentile(sample, [low, high]) if sample.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def letterbox_matrix(h: int, w: int, out_hw=INPUT_HW) -> np.ndarray:
    """2x3 affine from film pixels to the network frame: aspect kept, centred."""
    s = min(out_hw[0] / h, out_hw[1] / w)
    tx = (out_hw[1] - w * s) / 2
    ty = (out_hw[0] - h * s) / 2
    return np.array([[s, 0, tx], [0, s, ty]], dtype=np.float64)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def to_network_frame(pixels01: np.ndarray, m: np.ndarray, out_hw=INPUT_HW) -> np.ndarray:
    """Warp a [0, 1] film into the network frame (area filtering when shrinking)."""
    from MSKCommonLib.resample import warp_affine_area

    return warp_affine_area(pixels01, m, (out_hw[1], out_hw[0]), shrink_below=0.5)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine a after b (both 2x3)."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]
