"""The follow-up figure: both films side by side at the same scale, each curve's two endplate lines
and its angle on each film, and the change with its interval and verdict below."""
from __future__ import annotations

import textwrap
from typing import Optional

import cv2
import numpy as np

from . import geometry
from .colors import CURVE_COLORS, VERTEBRA_COLORS
from .followup import FollowUp, Reading
from .overlay import _bgr

VERDICT_COLOURS = {"progressed": (60, 60, 255), "decreased": (255, 200, 60), "stable": (120, 220, 120),
                   "cannot tell": (0, 200, 255)}  # BGR


def _mm_per_px(reading: Reading) -> Optional[float]:
    return None if reading.spacing_mm is None else float(np.mean(reading.spacing_mm))


def scales(follow_up: FollowUp, shapes, max_height: int = 1400) -> tuple[list[float], str]:
    """Display scale (display pixels per film pixel) of each film: the same millimetres per display
    pixel on both when both spacings are known, else the same film pixels per display pixel."""
    mm = [_mm_per_px(follow_up.prior), _mm_per_px(follow_up.current)]
    if None not in mm:
        heights_mm = [h * m for (h, _), m in zip(shapes, mm)]
        per_mm = max_height / max(heights_mm)
        return [per_mm * m for m in mm], f"same scale: {1 / per_mm:.2f} mm per display pixel"
    s = max_height / max(h for h, _ in shapes)
    return [s, s], "same scale in film pixels (a film without pixel spacing)"


def _film_panel(gray: Optional[np.ndarray], reading: Reading, follow_up: FollowUp, scale: float, shape,
                which: str) -> np.ndarray:
    h, w = shape
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if gray is None:
        img = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.putText(img, "film not found", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (200, 200, 200), 1, cv2.LINE_AA)
    else:
        img = cv2.cvtColor(cv2.resize(gray, size, interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    pts = reading.landmarks * scale
    thick = max(1, int(round(img.shape[0] / 700)))
    font = 0.4 * img.shape[0] / 700 + 0.2
    for v in range(geometry.N_VERTEBRAE):
        q = pts[v]
        if np.all(np.isfinite(q)):
            cv2.polylines(img, [q[[0, 1, 3, 2]].round().astype(np.int32)], True, _bgr(VERTEBRA_COLORS[v], 0.7), 1,
                          cv2.LINE_AA)
    for c in follow_up.curves:
        value = c.prior_deg if which == "prior" else c.current_deg
        ends = []
        for vertebra, kind in c.lines:
            if not np.all(np.isfinite(pts[vertebra])):
                continue
            a, b = geometry.line_endpoints(pts, vertebra, kind)
            d = b - a
            a, b = a - 0.7 * d, b + 0.7 * d
            cv2.line(img, tuple(a.round().astype(int)), tuple(b.round().astype(int)), _bgr(CURVE_COLORS[c.name]),
                     thick + 1, cv2.LINE_AA)
            ends.append(b)
        if value is not None and ends:
            label = f"{c.name} {value:.1f}"
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font * 1.3, thick + 3)
            x, y = np.mean(ends, axis=0) + [8, th / 2]
            at = (int(np.clip(x, 4, img.shape[1] - tw - 4)), int(np.clip(y, th + 4, img.shape[0] - 4)))
            for colour, width in (((0, 0, 0), thick + 3), (_bgr(CURVE_COLORS[c.name]), thick)):
                cv2.putText(img, label, at, cv2.FONT_HERSHEY_SIMPLEX, font * 1.3, colour, width, cv2.LINE_AA)
    title = which.upper()
    (tw, th), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, font * 1.3, thick + 3)
    for colour, width in (((0, 0, 0), thick + 3), ((255, 255, 255), thick)):
        cv2.putText(img, title, (img.shape[1] - tw - 8, th + 8), cv2.FONT_HERSHEY_SIMPLEX, font * 1.3, colour, width,
                    cv2.LINE_AA)
    return img


def draw_follow_up(follow_up: FollowUp, prior_gray: Optional[np.ndarray], current_gray: Optional[np.ndarray],
                   prior_shape=None, current_shape=None, max_height: int = 1400) -> np.ndarray:
    """An RGB image: the two films side by side (same scale), and a table of the change below."""
    shapes = [prior_shape or prior_gray.shape[:2], current_shape or current_gray.shape[:2]]
    (s_prior, s_current), scale_note = scales(follow_up, shapes, max_height)
    left = _film_panel(prior_gray, follow_up.prior, follow_up, s_prior, shapes[0], "prior")
    right = _film_panel(current_gray, follow_up.current, follow_up, s_current, shapes[1], "current")
    height = max(left.shape[0], right.shape[0])
    gap = np.zeros((height, 12, 3), np.uint8)
    def pad(p):
        return np.vstack([p, np.zeros((height - p.shape[0], p.shape[1], 3), np.uint8)])

    films = np.hstack([pad(left), gap, pad(right)])
    width = films.shape[1]
    font = 0.5
    rows = []
    for c in follow_up.curves:
        ends = "-".join(c.end_vertebrae or [])
        if c.change_deg is None:
            rows.append((f"{c.name} {ends}: cannot tell", VERDICT_COLOURS["cannot tell"], c.name))
        else:
            rows.append((f"{c.name} {ends}: {c.prior_deg:.1f} -> {c.current_deg:.1f} deg, {c.change_text()}"
                         f"  {c.verdict.upper()}", VERDICT_COLOURS[c.verdict], c.name))
        notes = ([c.reason] if c.verdict == "cannot tell" else []) + ([c.levels_note] if c.levels_note else [])
        for note in notes:
            for line in textwrap.wrap(note, max(30, int(width / (11 * font * 1.9)))):
                rows.append(("    " + line, (200, 200, 200), None))
    rows.insert(0, (f"prior: {follow_up.prior.name}    current: {follow_up.current.name}", (230, 230, 230), None))
    rows.append((f"clinical convention; {scale_note}", (170, 170, 170), None))
    line_h = int(30 * font * 1.6)
    panel = np.zeros((line_h * (len(rows) + 1), width, 3), np.uint8)
    for k, (text, colour, curve) in enumerate(rows):
        y = line_h * (k + 1)
        x = 10
        if curve:
            cv2.rectangle(panel, (x, y - line_h // 2), (x + 14, y), _bgr(CURVE_COLORS[curve]), -1)
            x += 22
        cv2.putText(panel, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font, colour, 1, cv2.LINE_AA)
    return np.vstack([films, panel])[:, :, ::-1]
