"""Resampling an image through a 2x3 affine with area averaging when it shrinks.

``cv2.warpAffine`` with linear interpolation aliases when the affine shrinks the image a lot (a
3000-pixel film into a 384-pixel network input). ``warp_affine_area`` first shrinks with
``INTER_AREA`` to 1.5 times the output scale, then warps the rest of the way. Used by the Cobb
network's input (the film into the letterboxed frame) and by the back photo's trunk crop.
"""
from __future__ import annotations

import cv2
import numpy as np


def warp_affine_area(image: np.ndarray, m: np.ndarray, out_wh: tuple[int, int], shrink_below: float = 0.5,
                     border_mode: int = cv2.BORDER_CONSTANT, border_value: float = 0.0,
                     pixel_centres: bool = False) -> np.ndarray:
    """``image`` warped by ``m`` (2x3, image pixels -> output pixels) into ``out_wh`` (width,
    height), linear interpolation; when the affine's scale is below ``shrink_below`` the image is
    area-averaged first. ``pixel_centres``: map the area-averaged pixels by their centres (exact;
    the Cobb second stage's patches); without it the shrunk image is placed as the whole-film
    network's input always was (and was trained), half a shrunk pixel off."""
    m = np.asarray(m, dtype=np.float64)
    s = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if s < shrink_below:
        f = 1.0 / s / 1.5
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
        # the output from the small image: m after (small -> image); a small pixel's centre x lies
        # at (x + 0.5) * fx - 0.5 in the image (pixel centres at integers, as warpAffine reads them)
        fx, fy = w / small.shape[1], h / small.shape[0]
        back = np.array([[fx, 0, (fx - 1) / 2 if pixel_centres else 0.0], [0, fy, (fy - 1) / 2 if pixel_centres else 0.0],
                         [0, 0, 1]])
        m = (np.vstack([m, [0, 0, 1]]) @ back)[:2]
        image = small
    return cv2.warpAffine(image, m, (int(out_wh[0]), int(out_wh[1])), flags=cv2.INTER_LINEAR,
                          borderMode=border_mode, borderValue=border_value)
