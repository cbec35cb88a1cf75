"""Overlay PNG: the radiograph with the vertebrae, the lines used by each angle and the angles."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from . import geometry
from .colors import CURVE_COLORS, LANDMARK_COLOR, VERTEBRA_COLORS


def _bgr(rgb, alpha: float = 1.0):
    return tuple(int(255 * alpha * c) for c in reversed(rgb))


def draw_overlay(
    gray_uint8: np.ndarray,
    landmarks: np.ndarray,
    result: geometry.CobbMeasurement,
    *,
    labelmap: Optional[np.ndarray] = None,
    warning: Optional[str] = None,
    max_height: int = 1600,
    checks: Optional[dict] = None,
) -> np.ndarray:
    """An RGB image (H', W', 3 uint8), downscaled to at most ``max_height`` rows. ``checks``:
    {curve: the CHECK label (``check.check_label``)}, written beside each angle (red when CHECK)."""
    scale = min(1.0, max_height / gray_uint8.shape[0])
    # downscaled first, then tinted (the vertebra regions by nearest label): a third of the work
    gray = gray_uint8 if scale == 1.0 else cv2.resize(gray_uint8, None, fx=scale, fy=scale,
                                                     interpolation=cv2.INTER_AREA)
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    if labelmap is not None:
        labels = np.asarray(labelmap, np.uint8)
        if labels.shape != gray.shape:
            labels = cv2.resize(labels, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST)
        colours = np.zeros((geometry.N_VERTEBRAE + 1, 3), np.uint8)
        colours[1:] = (VERTEBRA_COLORS[:, ::-1] * 255).astype(np.uint8)
        blend = cv2.addWeighted(img, 0.65, colours[labels], 0.35, 0.0)
        np.copyto(img, blend, where=(labels > 0)[:, :, None])
    pts = geometry.as_vertebra_array(landmarks) * scale
    thick = max(1, int(round(img.shape[0] / 800)))
    font = 0.45 * img.shape[0] / 800 + 0.25

    for v in range(geometry.N_VERTEBRAE):
        q = pts[v]
        if not np.all(np.isfinite(q)):
            continue
        poly = q[[0, 1, 3, 2]].round().astype(np.int32)
        cv2.polylines(img, [poly], True, _bgr(VERTEBRA_COLORS[v], 0.9), thick, cv2.LINE_AA)
        for p in q:
            cv2.circle(img, tuple(int(round(c)) for c in p), thick + 1, _bgr(LANDMARK_COLOR), -1, cv2.LINE_AA)
        at = tuple(int(c) for c in (q[0] + [-6 * font * 10, 8]))
        for colour, width in (((0, 0, 0), thick + 2), ((235, 235, 235), max(1, thick - 1))):
            cv2.putText(img, geometry.VERTEBRA_NAMES[v], at, cv2.FONT_HERSHEY_SIMPLEX, font * 0.8, colour, width, cv2.LINE_AA)

    text_rows = [f"Cobb angles ({result.convention} convention)"]
    for c in result.curves:
        if c.angle_deg is None:
            text_rows.append((f"{c.name}: {c.role or 'not measured'}", c.name))  # "no curve", "not on film"
            continue
        if c.upper_line is not None and c.lower_line is not None:
            for vertebra, kind in (c.upper_line, c.lower_line):
                a, b = geometry.line_endpoints(pts, vertebra, kind)
                d = b - a
                a, b = a - 0.6 * d, b + 0.6 * d
                cv2.line(img, tuple(a.round().astype(int)), tuple(b.round().astype(int)),
                         _bgr(CURVE_COLORS[c.name]), thick + 1, cv2.LINE_AA)
        ends = f" {c.upper_end_vertebra}-{c.lower_end_vertebra}" if c.upper_end_vertebra else ""
        role = f" ({c.role.split(',')[0]})" if result.convention == "aasce" else ""
        text_rows.append((f"{c.name}{role}: {c.angle_deg:.1f} deg{ends}", c.name))
        label = (checks or {}).get(c.name)
        if label:  # the CHECK of this angle, on its own row under it
            text_rows.append((f"    {label}", "warning" if label.startswith("CHECK") else c.name))
    if warning:
        import textwrap

        for line in textwrap.wrap("CHECK: " + warning, 48):
            text_rows.append((line, "warning"))

    # the legend goes in a panel beside the film, never over the anatomy
    sizes = [cv2.getTextSize(r if isinstance(r, str) else r[0], cv2.FONT_HERSHEY_SIMPLEX, font, thick)[0] for r in text_rows]
    panel_width = min(max(w for w, _ in sizes) + 24, 3 * img.shape[1])
    panel = np.zeros((img.shape[0], panel_width, 3), np.uint8)
    y = int(30 * font * 2)
    for row, (w, h) in zip(text_rows, sizes):
        text, key = (row, None) if isinstance(row, str) else row
        colour = (60, 60, 255) if key == "warning" else _bgr(CURVE_COLORS.get(key, (1, 1, 1)))
        cv2.putText(panel, text, (12, y), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thick, cv2.LINE_AA)
        y += int(h * 2.0)
    img = np.hstack([img, panel])
    return img[:, :, ::-1]


def write_overlay(path, rgb: np.ndarray) -> Path:
    path = Path(path)
    # zlib level 1 and one row filter (SUB): a picture to look at, written in half the time of
    # OpenCV's default (level 3, adaptive filters), about 10 % larger
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), params):
        raise OSError(f"could not write {path}")
    return path
