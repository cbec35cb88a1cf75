"""Vertebra segments drawn from the corners: what the radiologist sees as the segmentation.

Each vertebra's segment is the convex hull of its four corners (the quadrilateral the corners
span), so it lies on its own vertebra and agrees with the corners by construction. Where two
neighbouring quadrilaterals overlap, each pixel goes to the vertebra whose centre is nearer, and
a segment that this clipping splits keeps only its largest piece: every segment is one region,
no label bleeds into a neighbour. The network's own segmentation head is not shown (it is a
training aid of the Seg4Reg+ design; see the model card).
"""
from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel precision of the polygon fill


def vertebra_labelmap(landmarks, shape) -> np.ndarray:
    """(H, W) uint8 label map from (17, 4, 2) corners in pixels: 0 background, k + 1 on vertebra k
    (T1 = 1 ... L5 = 17). Vertebrae with missing (non-finite) corners get no segment."""
    v = np.asarray(landmarks, dtype=np.float64).reshape(-1, 4, 2)
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), np.uint8)
    nearest = np.full((h, w), np.inf, np.float32)  # distance of each labelled pixel to its vertebra's centre
    for k, q in enumerate(v):
        if not np.all(np.isfinite(q)):
            continue
        hull = cv2.convexHull(np.round(q * (1 << _SHIFT)).astype(np.int32))
        x0, y0 = np.floor(q.min(0)).astype(int) - 1
        x1, y1 = np.ceil(q.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        offset = np.array([x0, y0]) * (1 << _SHIFT)
        cv2.fillConvexPoly(mask, hull - offset.astype(np.int32), 1, lineType=cv2.LINE_8, shift=_SHIFT)
        cy, cx = q.mean(0)[::-1]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = np.hypot(xx - cx, yy - cy).astype(np.float32)
        take = (mask > 0) & (dist < nearest[y0:y1, x0:x1])
        labels[y0:y1, x0:x1][take] = k + 1
        nearest[y0:y1, x0:x1][take] = dist[take]
    return _largest_pieces(labels, v.shape[0])


def _largest_pieces(labels: np.ndarray, n: int) -> np.ndarray:
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        window = labels[y0:y1, x0:x1]
        count, pieces = cv2.connectedComponents((window == k).astype(np.uint8), connectivity=8)
        if count <= 2:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        window[(pieces > 0) & (pieces != 1 + int(np.argmax(sizes)))] = 0
    return labels


def pieces_per_segment(labels: np.ndarray, n: int = 17) -> list[int]:
    """How many 8-connected pieces each label 1..n has (0 when absent)."""
    out = []
    for k in range(1, n + 1):
        mask = (labels == k).astype(np.uint8)
        out.append(0 if not mask.any() else cv2.connectedComponents(mask, connectivity=8)[0] - 1)
    return out


def dice_per_vertebra(labels: np.ndarray, reference: np.ndarray, n: int = 17) -> np.ndarray:
    """Dice of each label 1..n against a reference label map (nan where both lack it)."""
    out = np.full(n, np.nan)
    for k in range(1, n + 1):
        a, b = labels == k, reference == k
        den = int(a.sum()) + int(b.sum())
        if den:
            out[k - 1] = 2.0 * int(np.logical_and(a, b).sum()) / den
    return out
