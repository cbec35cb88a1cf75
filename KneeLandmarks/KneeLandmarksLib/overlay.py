"""Overlay PNG: the radiograph with each knee's landmarks, contours, minimum JSW lines and values."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from . import measure

BGR = {"landmarks": (30, 215, 255), "tibia": (255, 200, 50), "femur": (50, 115, 255),
       "medial": (80, 255, 80), "lateral": (255, 80, 255), "text": (235, 235, 235), "warn": (60, 60, 255)}


def draw_overlay(gray_uint8: np.ndarray, measurements: Sequence[measure.KneeMeasurement], *,
                 max_height: int = 1400, title: str = "") -> np.ndarray:
    """RGB image (downscaled to at most ``max_height`` rows) with a legend panel beside the film."""
    scale = min(1.0, max_height / gray_uint8.shape[0])
    img = cv2.cvtColor(gray_uint8, cv2.COLOR_GRAY2BGR)
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    thick = max(1, int(round(img.shape[0] / 700)))
    font = 0.4 * img.shape[0] / 700 + 0.3
    rows = [(title or "KNEEL landmarks, minimum joint space width", "text")]
    for m in measurements:
        tib, fem = measure.contours(m.landmarks_px)
        for curve, key in ((tib, "tibia"), (fem, "femur")):
            cv2.polylines(img, [np.round(curve * scale * 16).astype(np.int32)], False, BGR[key], thick,
                          cv2.LINE_AA, shift=4)
        for name in ("medial", "lateral"):
            a, b = measure.jsw_line_points(m, name) * scale
            cv2.line(img, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), BGR[name], thick + 1,
                     cv2.LINE_AA)
        for p in m.landmarks_px * scale:
            cv2.circle(img, tuple(np.round(p).astype(int)), thick + 1, BGR["landmarks"], -1, cv2.LINE_AA)
        conf = "" if m.confidence is None else f", confidence {m.confidence:.2f}"
        rows.append((f"{m.side} knee{conf}", "text"))
        rows.append((f"  medial JSW {measure.format_mm(m.reported_mm('medial'))}", "medial"))
        rows.append((f"  lateral JSW {measure.format_mm(m.reported_mm('lateral'))}", "lateral"))
        rows.extend((f"  CHECK: {n}", "warn") for n in m.notes)
    if not measurements:
        rows.append(("no knee found", "warn"))
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, font, thick)[0] for t, _ in rows]
    panel = np.zeros((img.shape[0], min(max(w for w, _ in sizes) + 24, 2 * img.shape[1]), 3), np.uint8)
    y = int(40 * font)
    for (text, key), (_, h) in zip(rows, sizes):
        cv2.putText(panel, text, (12, y), cv2.FONT_HERSHEY_SIMPLEX, font, BGR[key], thick, cv2.LINE_AA)
        y += int(h * 2.0)
    return np.hstack([img, panel])[:, :, ::-1]


def write_overlay(path, rgb: np.ndarray) -> Path:
    path = Path(path)
    if not cv2.imwrite(str(path), rgb[:, :, ::-1]):
        raise OSError(f"could not write {path}")
    return path
