"""The Cobb network's outputs -> vertebra corners, in numpy (both backends, no torch).

The same decoding as ``network.decode_landmarks`` / ``network.chain_peaks`` (the torch versions,
differentiable, used in training), for inference: centre = soft-argmax of each vertebra's
heatmap within ``window`` cells of its peak, corners = centre + the corner offsets averaged
under the same weights; with ``chain`` the peaks are chosen jointly along the spine (Viterbi over
each heatmap's strongest local maxima, see ``chain_peaks``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .frame import STRIDE


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cell_centres(h: int, w: int):
    """Input-pixel coordinates (x, y) of the stride-4 output cells' centres."""
    ys = np.arange(h, dtype=np.float32) * STRIDE + (STRIDE - 1) / 2
    xs = np.arange(w, dtype=np.float32) * STRIDE + (STRIDE - 1) / 2
    return xs, ys


def chain_peaks(prob: np.ndarray, candidates: int = 6, gap_weight: float = 12.0) -> np.ndarray:
    """(B, K) flat peak indices chosen jointly along the spine; prob (B, K, h, w).

    Each heatmap offers its ``candidates`` strongest local maxima; a Viterbi pass picks one per
    vertebra minimising -log p plus a penalty on each step T1->...->L5 whose length departs from
    the film's typical step (a Theil-Sen line through the plain peaks' steps) or that does not go
    downwards."""
    b, k, h, w = prob.shape
    logp = np.log(np.maximum(prob, 1e-12))
    is_max = prob == ndimage.maximum_filter(prob, size=(1, 1, 3, 3), mode="nearest")
    score = np.where(is_max, prob, 0).reshape(b, k, -1)
    m_count = min(candidates, h * w)
    top = np.argsort(-score, axis=-1, kind="stable")[..., :m_count]  # (B, K, M)
    plain = prob.reshape(b, k, -1).argmax(-1)  # (B, K)
    out = np.empty((b, k), dtype=np.int64)
    for i in range(b):
        cand = top[i]
        cy = (cand // w).astype(np.float64)
        cx = (cand % w).astype(np.float64)
        unary = -np.take_along_axis(logp[i].reshape(k, -1), cand, axis=1).astype(np.float64)  # (K, M)
        py, px = (plain[i] // w).astype(np.float64), (plain[i] % w).astype(np.float64)
        steps = np.hypot(np.diff(py), np.diff(px))
        j = np.arange(len(steps), dtype=np.float64)
        jj, ii = np.triu_indices(len(steps), 1)
        slope = float(np.median((steps[ii] - steps[jj]) / (ii - jj))) if len(steps) > 1 else 0.0
        icpt = float(np.median(steps - slope * j))
        expected = np.maximum(1.0, icpt + slope * j)
        cost = unary[0].copy()
        back = []
        for v in range(1, k):
            dy = cy[v][None, :] - cy[v - 1][:, None]
            dx = cx[v][None, :] - cx[v - 1][:, None]
            length = np.hypot(dy, dx)
            step = float(expected[v - 1])
            pair = gap_weight * ((length - step) / step) ** 2 + 1e3 * (dy < 0.3 * step)
            total = cost[:, None] + pair  # (M prev, M cur)
            arg = total.argmin(0)
            back.append(arg)
            cost = total[arg, np.arange(total.shape[1])] + unary[v]
        m = int(cost.argmin())
        chosen = [m]
        for arg in reversed(back):
            m = int(arg[m])
            chosen.append(m)
        chosen.reverse()
        out[i] = cand[np.arange(k), np.array(chosen)]
    return out


def decode_landmarks(heatmap: np.ndarray, offsets: np.ndarray, window: int | None = 3, chain: bool = True):
    """Vertebra corners (B, 17, 4, 2) float64 in input pixels, and the heatmap probabilities
    (B, 17, h, w) float32. heatmap (B, 17, h, w) logits, offsets (B, 8, h, w) input pixels."""
    b, k, h, w = heatmap.shape
    prob = softmax(heatmap.reshape(b, k, h * w).astype(np.float32), -1)
    weights = prob
    if window is not None:
        peak = chain_peaks(prob.reshape(b, k, h, w)) if chain else prob.argmax(-1)
        py, px = peak // w, peak % w
        yy = np.arange(h)[None, None, :, None]
        xx = np.arange(w)[None, None, None, :]
        near = (np.abs(yy - py[..., None, None]) <= window) & (np.abs(xx - px[..., None, None]) <= window)
        weights = prob * near.reshape(b, k, -1)
        weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-12)
    xs, ys = cell_centres(h, w)
    gx = np.broadcast_to(xs[None, :], (h, w)).reshape(-1)
    gy = np.broadcast_to(ys[:, None], (h, w)).reshape(-1)
    cx = (weights * gx).sum(-1)
    cy = (weights * gy).sum(-1)
    off = np.einsum("bkn,bcn->bkc", weights, offsets.reshape(b, offsets.shape[1], -1).astype(np.float32))
    centre = np.stack([cx, cy], -1)
    corners = centre[:, :, None, :] + off.reshape(b, k, 4, 2)
    return corners.astype(np.float64), prob.reshape(b, k, h, w)


def vertebra_confidence(prob: np.ndarray, radius: int = 2) -> np.ndarray:
    """Share of each vertebra's centre heatmap within ``radius`` cells of its peak (0..1); prob (K, h, w)."""
    k, h, w = prob.shape
    peak = prob.reshape(k, -1).argmax(-1)
    py, px = peak // w, peak % w
    conf = []
    for i in range(k):
        y0, y1 = max(0, int(py[i]) - radius), int(py[i]) + radius + 1
        x0, x1 = max(0, int(px[i]) - radius), int(px[i]) + radius + 1
        conf.append(float(prob[i, y0:y1, x0:x1].sum(dtype=np.float64)))
    return np.clip(np.array(conf, dtype=np.float64), 0.0, 1.0)
