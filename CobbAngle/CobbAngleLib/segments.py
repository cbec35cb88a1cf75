"""Vertebra segments drawn from the corners: what the radiologist sees as the segmentation.

Each vertebra's segment is the convex hull of its four corners (the quadrilateral the corners
span), so it lies on its own vertebra and agrees with the corners by construction. Where two
neighbouring quadrilaterals overlap, each pixel goes to the vertebra whose centre is nearer, and
a segment that this clipping splits keeps only its largest piece: every segment is one region,
no label bleeds into a neighbour. The network's own segmentation head is not shown (it is a
training aid of the Seg4Reg+ design; see the model card).
"""
from __future__ import annotations

import numpy as np

# numpy and scipy only: this module is imported in Slicer's own process (pipeline.py), where
# OpenCV and torch are not loaded


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices (monotone chain), counter-clockwise in (x, y)."""
    pts = sorted(map(tuple, points))

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def _inside(hull: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Pixel centres (xx, yy) inside (or on) the convex polygon ``hull`` (counter-clockwise)."""
    inside = np.ones(xx.shape, bool)
    if len(hull) < 3:
        return np.zeros(xx.shape, bool)
    for a, b in zip(hull, np.roll(hull, -1, axis=0)):
        inside &= (b[0] - a[0]) * (yy - a[1]) - (b[1] - a[1]) * (xx - a[0]) >= -1e-9
    return inside


def vertebra_labelmap(landmarks, shape) -> np.ndarray:
    """(H, W) uint8 label map from (17, 4, 2) corners in pixels: 0 background, k + 1 on vertebra k
    (T1 = 1 ... L5 = 17). Vertebrae with missing (non-finite) corners get no segment."""
    v = np.asarray(landmarks, dtype=np.float64).reshape(-1, 4, 2)
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), np.uint8)
    nearest = np.full((h, w), np.inf, np.float32)  # distance of each labelled pixel to its vertebra's centre
    boxes = {}
    for k, q in enumerate(v):
        if not np.all(np.isfinite(q)):
            continue
        x0, y0 = np.floor(q.min(0)).astype(int)
        x1, y1 = np.ceil(q.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        mask = _inside(_convex_hull(q), xx, yy)
        cx, cy = q.mean(0)
        dist = np.hypot(xx - cx, yy - cy).astype(np.float32)
        take = mask & (dist < nearest[y0:y1, x0:x1])
        labels[y0:y1, x0:x1][take] = k + 1
        nearest[y0:y1, x0:x1][take] = dist[take]
        boxes[k + 1] = (slice(y0, y1), slice(x0, x1))
    return _largest_pieces(labels, boxes)


_EIGHT = np.ones((3, 3), bool)


def _largest_pieces(labels: np.ndarray, boxes: dict) -> np.ndarray:
    """Keep each label's largest 8-connected piece; ``boxes``: {label: the (rows, columns) slices
    it was drawn in} (a label never leaves its box)."""
    from scipy import ndimage

    for k, box in boxes.items():
        window = labels[box]
        pieces, count = ndimage.label(window == k, structure=_EIGHT)
        if count <= 1:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        window[(pieces > 0) & (pieces != 1 + int(np.argmax(sizes)))] = 0
    return labels


def pieces_per_segment(labels: np.ndarray, n: int = 17) -> list[int]:
    """How many 8-connected pieces each label 1..n has (0 when absent)."""
    from scipy import ndimage

    return [int(ndimage.label(labels == k, structure=_EIGHT)[1]) for k in range(1, n + 1)]


def dice_per_vertebra(labels: np.ndarray, reference: np.ndarray, n: int = 17) -> np.ndarray:
    """Dice of each label 1..n against a reference label map (nan where both lack it)."""
    out = np.full(n, np.nan)
    for k in range(1, n + 1):
        a, b = labels == k, reference == k
        den = int(a.sum()) + int(b.sum())
        if den:
            out[k - 1] = 2.0 * int(np.logical_and(a, b).sum()) / den
    return out
