"""The pixel grids of the two KNEEL stages, shared by inference and training.

- Detector: the whole film letterboxed into a DET x DET square (aspect kept by physical size,
  centred, zero pad).
- ROI: 140 mm around a knee centre at 0.3 mm/pixel, 466 x 466 pixels with the centre on pixel
  233 (as in KNEEL's CSV); a left knee's ROI is mirrored so every knee looks like a right knee.
  The landmark network sees the ROI resized to S x S (pixel u <-> ROI pixel (u+0.5)*466/S - 0.5).
Film pixels: x right, y down; ``spacing_mm`` is (row, column). No torch, no Slicer.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .landmarks import KNEEL_ROI_CENTRE_PX, KNEEL_ROI_SIZE_PX, KNEEL_ROI_SPACING_MM

ROI_PX = KNEEL_ROI_SIZE_PX  # 466
ROI_CENTRE = KNEEL_ROI_CENTRE_PX  # 233
ROI_SPACING = KNEEL_ROI_SPACING_MM  # 0.3
SIDES = ("right", "left")


def net_to_roi(u, size: int):
    return (np.asarray(u, float) + 0.5) * ROI_PX / size - 0.5


def roi_to_net(r, size: int):
    return (np.asarray(r, float) + 0.5) * size / ROI_PX - 0.5


def roi_to_film_px(points_roi: np.ndarray, centre_px, side: str, spacing_mm) -> np.ndarray:
    """ROI pixels (mirrored for a left knee) -> film pixels. spacing_mm = (row, col)."""
    p = np.asarray(points_roi, float)
    sign = -1.0 if side == "left" else 1.0
    x = centre_px[0] + sign * (p[..., 0] - ROI_CENTRE) * ROI_SPACING / spacing_mm[1]
    y = centre_px[1] + (p[..., 1] - ROI_CENTRE) * ROI_SPACING / spacing_mm[0]
    return np.stack([x, y], -1)


def film_px_to_roi(points_px: np.ndarray, centre_px, side: str, spacing_mm) -> np.ndarray:
    p = np.asarray(points_px, float)
    sign = -1.0 if side == "left" else 1.0
    x = sign * (p[..., 0] - centre_px[0]) * spacing_mm[1] / ROI_SPACING + ROI_CENTRE
    y = (p[..., 1] - centre_px[1]) * spacing_mm[0] / ROI_SPACING + ROI_CENTRE
    return np.stack([x, y], -1)


def extract_roi(pixels: np.ndarray, spacing_mm, centre_px, side: str, size: Optional[int] = None) -> np.ndarray:
    """The 140 mm ROI at 0.3 mm/pixel (466 x 466, mirrored for a left knee), resized to ``size``."""
    sign = -1.0 if side == "left" else 1.0
    ax, ay = sign * ROI_SPACING / spacing_mm[1], ROI_SPACING / spacing_mm[0]
    # film = A @ roi + b  -> warpAffine with WARP_INVERSE_MAP takes the roi->film map
    m = np.array([[ax, 0, centre_px[0] - ax * ROI_CENTRE], [0, ay, centre_px[1] - ay * ROI_CENTRE]], np.float64)
    background = float(np.percentile(pixels[::8, ::8], 1))
    # only the part of the film under the ROI (and a margin for the smoothing) is touched
    corners = np.array([[0, 0, 1], [ROI_PX - 1, ROI_PX - 1, 1]], float) @ m.T
    margin = 4 + int(np.ceil(1.5 * ROI_SPACING / min(spacing_mm)))
    x0 = int(np.clip(np.floor(corners[:, 0].min()) - margin, 0, pixels.shape[1]))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()) + margin + 1, 0, pixels.shape[1]))
    y0 = int(np.clip(np.floor(corners[:, 1].min()) - margin, 0, pixels.shape[0]))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()) + margin + 1, 0, pixels.shape[0]))
    if x1 <= x0 or y1 <= y0:
        return np.full((size or ROI_PX, size or ROI_PX), background, np.float32)
    src = np.ascontiguousarray(pixels[y0:y1, x0:x1], dtype=np.float32)
    m[:, 2] -= (x0, y0)
    sigma = 0.5 * ROI_SPACING / min(spacing_mm)
    if sigma > 0.6:  # film finer than the ROI: smooth first so the 0.3 mm samples do not alias
        src = cv2.GaussianBlur(src, (0, 0), sigma)
    roi = cv2.warpAffine(src, m, (ROI_PX, ROI_PX), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    if size is not None and size != ROI_PX:
        roi = cv2.resize(roi, (size, size), interpolation=cv2.INTER_AREA)
    return roi


def letterbox(pixels: np.ndarray, spacing_mm, size: int):
    """Film -> size x size (aspect kept by physical size, centred). Returns (image, scale, offset):
    film pixel (x, y) -> detector pixel (x * scale[0] + offset[0], y * scale[1] + offset[1])."""
    h, w = pixels.shape
    height_mm, width_mm = h * spacing_mm[0], w * spacing_mm[1]
    mm_per_px = max(height_mm, width_mm) / size
    nw, nh = max(1, int(round(width_mm / mm_per_px))), max(1, int(round(height_mm / mm_per_px)))
    small = cv2.resize(pixels.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size), np.float32)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    out[oy:oy + nh, ox:ox + nw] = normalise(small)
    scale = (nw / w, nh / h)
    offset = (ox + 0.5 * scale[0] - 0.5, oy + 0.5 * scale[1] - 0.5)
    return out, scale, offset


def normalise(img: np.ndarray) -> np.ndarray:
    """Robust per-image standardisation (1st-99th percentile to about -1..1)."""
    img = img.astype(np.float32)
    lo, hi = np.percentile(img[:: max(1, img.shape[0] // 128), :: max(1, img.shape[1] // 128)], [1, 99])
    return ((img - (lo + hi) / 2) / max((hi - lo) / 2, 1e-6)).astype(np.float32)
