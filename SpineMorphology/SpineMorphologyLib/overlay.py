"""Overlay PNG of a back result: the photo with the back mask, keypoints, midline, dimples and the
measures; and the 16-bit depth PNG."""
from __future__ import annotations

import cv2
import numpy as np

from . import morphology


def encode_depth_png(depth: np.ndarray, mask: np.ndarray, units: str) -> np.ndarray:
    if units == "mm":
        return np.where(mask, np.clip(np.round(depth), 0, 65535), 0).astype(np.uint16)
    rel = depth - (depth[mask].min() if mask.any() else 0.0)
    return np.where(mask, np.clip(np.round(rel * 100) + 1, 1, 65535), 0).astype(np.uint16)


def draw_overlay(rgb, result: morphology.BackMorphology, keypoints, mask) -> np.ndarray:
    img = rgb[..., ::-1].copy()
    tint = img.copy()
    tint[mask] = (0.6 * tint[mask] + 0.4 * np.array([255, 160, 60])).astype(np.uint8)
    img = cv2.addWeighted(img, 0.5, tint, 0.5, 0)
    scale = max(1, int(round(max(img.shape[:2]) / 500)))
    line = np.round(result.line_px).astype(np.int32)
    cv2.polylines(img, [line.reshape(-1, 1, 2)], False, (40, 40, 255), 2 * scale, cv2.LINE_AA)
    cv2.line(img, tuple(np.round(result.vp_px).astype(int)), tuple(np.round(result.dm_px).astype(int)),
             (255, 255, 255), scale, cv2.LINE_AA)
    for (x, y), name in zip(np.asarray(keypoints), morphology.KEYPOINT_NAMES):
        cv2.circle(img, (int(round(x)), int(round(y))), 4 * scale, (30, 220, 250), 2, cv2.LINE_AA)
        cv2.putText(img, name, (int(x) + 6 * scale, int(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale,
                    (30, 220, 250), 1, cv2.LINE_AA)
    if result.dimples_px is not None:
        for x, y in result.dimples_px:
            cv2.drawMarker(img, (int(round(x)), int(round(y))), (250, 230, 40), cv2.MARKER_CROSS, 10 * scale, 2)
    m = result.measures
    u = m.units
    text = [
        f"trunk length {m.trunk_length:.0f} {u}",
        f"lat. deviation max {m.lateral_deviation_max:+.1f} {u}, rms {m.lateral_deviation_rms:.1f}",
        f"surface rotation max {m.surface_rotation_max_deg:+.1f} deg, rms {m.surface_rotation_rms_deg:.1f}",
        f"kyphosis {m.kyphotic_angle_deg:.0f} deg, lordosis {m.lordotic_angle_deg:.0f} deg",
        "pelvic obliquity " + ("-" if m.pelvic_obliquity_deg is None else f"{m.pelvic_obliquity_deg:+.1f} deg"),
    ]
    for i, t in enumerate(text):
        y = 16 * scale * (i + 1)
        cv2.putText(img, t, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, t, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img
