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


def draw_text(img: np.ndarray, text: str, org, font_scale: float, colour, thickness: int = 1,
              outline=(0, 0, 0), outline_px: int = 1) -> np.ndarray:
    """Text legible on any photo: the glyphs in ``colour`` with a dark outline ``outline_px`` wide
    around exactly those glyphs (in place on a BGR uint8 image, which is returned).

    The outline is the glyphs' own coverage dilated, not a second, thicker ``putText``: OpenCV's
    Hershey fonts advance further per character the thicker they are drawn, so a thick dark copy
    drifts off the letters along the line."""
    h, w = img.shape[:2]
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    pad = outline_px + thickness + 2
    x0, y0 = int(org[0]) - pad, int(org[1]) - th - pad
    x1, y1 = int(org[0]) + tw + pad, int(org[1]) + base + pad
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.putText(canvas, text, (int(org[0]) - x0, int(org[1]) - y0), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255,
                thickness, cv2.LINE_AA)
    r = np.arange(-outline_px, outline_px + 1)
    disk = ((r[:, None] ** 2 + r[None, :] ** 2) <= (outline_px + 0.5) ** 2).astype(np.uint8)  # diagonals too
    ring = cv2.dilate(canvas, disk)
    # the part of the canvas inside the image
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return img
    sl = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    fill_a = canvas[sl].astype(np.float32)[..., None] / 255.0
    ring_a = ring[sl].astype(np.float32)[..., None] / 255.0
    region = img[cy0:cy1, cx0:cx1].astype(np.float32)
    region = region * (1 - ring_a) + np.asarray(outline, np.float32) * ring_a
    region = region * (1 - fill_a) + np.asarray(colour, np.float32) * fill_a
    img[cy0:cy1, cx0:cx1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return img


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
        draw_text(img, name, (int(x) + 6 * scale, int(y) + 4), 0.35 * scale, (30, 220, 250), scale, outline_px=scale)
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
    tilt = getattr(result, "back_tilt_deg", None)
    if tilt:
        text.append(f"back to camera: turned {tilt['yaw']:+.0f} deg, tipped {tilt['pitch']:+.0f} deg (removed)")
    for i, t in enumerate(text):
        y = 16 * scale * (i + 1)
        draw_text(img, t, (6, y), 0.4 * scale, (255, 255, 255), scale, outline_px=scale)
    return img
