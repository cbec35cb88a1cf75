"""The Cobb network's outputs -> vertebra corners, in numpy (both backends, no torch).

The same decoding as ``network.decode_landmarks`` / ``network.chain_peaks`` (the torch versions,
differentiable, used in training), for inference: centre = soft-argmax of each vertebra's
heatmap within ``window`` cells of its peak, corners = centre + the corner offsets averaged
under the same weights; with ``chain`` the peaks are chosen jointly along the spine (Viterbi over
each heatmap's strongest local maxima, see ``chain_peaks``).

``ordered_landmarks`` (the default at inference since 2026-12-02) keeps the 17 vertebrae in order:
the vertebrae are found without their names first (local maxima of the sum of the 17 heatmaps,
which peaks on every vertebra even where two heatmaps fire on one), a Viterbi pass picks 17 of
them running down the spine with regular steps, anchored at T1 by T1's own heatmap, and the names
follow from the order (T1, T2, ... counted down from the anchor). A skipped vertebra would double
a step and is penalised; the sacrum is not reached by counting. Measured on the AASCE films: see
the model card ("Ordered decoding").
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


def expected_steps(plain: np.ndarray, w: int) -> np.ndarray:
    """(K-1,) the film's expected step (cells) between consecutive vertebrae: a Theil-Sen line
    through the steps between the heatmaps' own peaks ``plain`` (K,) flat indices (robust to one
    skipped vertebra)."""
    steps = np.hypot(np.diff((plain // w).astype(np.float64)), np.diff((plain % w).astype(np.float64)))
    j = np.arange(len(steps), dtype=np.float64)
    jj, ii = np.triu_indices(len(steps), 1)
    slope = float(np.median((steps[ii] - steps[jj]) / (ii - jj))) if len(steps) > 1 else 0.0
    return np.maximum(1.0, float(np.median(steps - slope * j)) + slope * j)


def spine_viterbi(unary: np.ndarray, cy: np.ndarray, cx: np.ndarray, expected: np.ndarray,
                  gap_weight: float) -> np.ndarray:
    """(K,) candidate index chosen per vertebra T1..L5: minimises the unary costs (K, M) plus, for
    each step, ``gap_weight`` times its squared relative departure from ``expected`` and a large
    cost when it does not go downwards; cy, cx (K, M) the candidates' cells."""
    k = unary.shape[0]
    cost = unary[0].copy()
    back = []
    for v in range(1, k):
        dy = cy[v][None, :] - cy[v - 1][:, None]
        length = np.hypot(dy, cx[v][None, :] - cx[v - 1][:, None])
        step = float(expected[v - 1])
        total = cost[:, None] + gap_weight * ((length - step) / step) ** 2 + 1e3 * (dy < 0.3 * step)  # (M prev, M cur)
        arg = total.argmin(0)
        back.append(arg)
        cost = total[arg, np.arange(total.shape[1])] + unary[v]
    m = int(cost.argmin())
    chosen = [m]
    for arg in reversed(back):
        m = int(arg[m])
        chosen.append(m)
    return np.array(chosen[::-1])


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
        chosen = spine_viterbi(unary, cy, cx, expected_steps(plain[i], w), gap_weight)
        out[i] = cand[np.arange(k), chosen]
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


# how far the spacing of the reader's named vertebrae may differ from the one the heatmaps give (a
# ratio) before the named spacing is taken instead (a full-spine film: the heatmaps spread T1..L5
# over C1..S1)
NAMED_SPACING_AGREES = 1.25


def spacing_agrees(ratio: float) -> bool:
    """Whether a named spacing over the one found (a ratio) is within ``NAMED_SPACING_AGREES``."""
    return 1 / NAMED_SPACING_AGREES <= ratio <= NAMED_SPACING_AGREES


def ordered_peaks(prob: np.ndarray, candidates: int = 40, gap_weight: float = 12.0, t1_weight: float = 1.0,
                  floor: float = 0.02, own_candidates: int = 3, anchors=()) -> tuple[np.ndarray, np.ndarray]:
    """(K,) flat indices of the vertebra centres T1..L5 found in order, and the name-free
    vertebra map (h, w) (sum of the K heatmaps); prob (K, h, w) softmaxed heatmaps.

    Candidates: the ``candidates`` strongest local maxima (3 x 3) of the name-free map above
    ``floor`` times its maximum, and each heatmap's ``own_candidates`` strongest local maxima. Viterbi over them for T1..L5: the unary cost is -log of the
    name-free map (and, for T1 only, ``t1_weight`` times -log of T1's heatmap: the anchor); each
    step must go downwards and is penalised by ``gap_weight`` times its squared relative departure
    from the film's expected step (a Theil-Sen line through the steps between the heatmaps' own
    peaks, robust to one skipped vertebra). ``anchors``: [(k, x, y)], vertebra k (0 = T1 .. 16 = L5)
    is known to lie at (x, y) input pixels (a reader's click, or the level network's name for one
    of the vertebrae found): that cell is a candidate and vertebra k's only one."""
    k, h, w = prob.shape
    vertebrae = prob.sum(0)
    is_max = (vertebrae == ndimage.maximum_filter(vertebrae, size=3, mode="nearest")) & (vertebrae > floor * vertebrae.max())
    flat = np.flatnonzero(is_max)
    flat = flat[np.argsort(-vertebrae.reshape(-1)[flat], kind="stable")[:candidates]]
    # where small vertebrae lie 3..4 cells apart the name-free map can merge two of them: each
    # heatmap's own strongest local maxima are candidates too
    own = prob == ndimage.maximum_filter(prob, size=(1, 3, 3), mode="nearest")
    own_score = np.where(own, prob, 0).reshape(k, -1)
    flat = np.unique(np.concatenate([flat, np.argsort(-own_score, axis=-1, kind="stable")[:, :own_candidates].ravel()]))
    cells = [anchor_cell(a[1:], h, w) for a in anchors]
    flat = np.unique(np.append(flat, cells)).astype(np.int64)
    cy, cx = (flat // w).astype(np.float64), (flat % w).astype(np.float64)
    unary = np.repeat(-np.log(np.maximum(vertebrae.reshape(-1)[flat], 1e-12))[None, :], k, axis=0)
    unary[0] -= t1_weight * np.log(np.maximum(prob[0].reshape(-1)[flat], 1e-12))
    for a, cell in zip(anchors, cells):
        unary[int(a[0])] = np.where(flat == cell, 0.0, 1e6)
    expected = expected_steps(prob.reshape(k, -1).argmax(-1), w)
    if len(anchors) >= 2:  # two named vertebrae say how far apart the vertebrae between them lie:
        # where the heatmaps' steps disagree with that by more than NAMED_SPACING_AGREES, the steps
        # keep their growth down the spine, scaled to span the named distance
        a = sorted((int(k_), float(x), float(y)) for k_, x, y in anchors)
        (k0, x0, y0), (k1, x1, y1) = a[0], a[-1]
        ratio = (np.hypot(x1 - x0, y1 - y0) / STRIDE) / max(float(expected[k0:k1].sum()), 1e-6)
        if not spacing_agrees(ratio):
            expected = expected * ratio
    chosen = spine_viterbi(unary, np.broadcast_to(cy, unary.shape), np.broadcast_to(cx, unary.shape),
                           expected, gap_weight)
    return flat[chosen], vertebrae


def anchor_cell(xy, h: int, w: int) -> int:
    """The flat index of the output cell (stride 4) nearest (x, y) input pixels."""
    row = int(np.clip(round((float(xy[1]) - (STRIDE - 1) / 2) / STRIDE), 0, h - 1))
    col = int(np.clip(round((float(xy[0]) - (STRIDE - 1) / 2) / STRIDE), 0, w - 1))
    return row * w + col


def ordered_landmarks(heatmap: np.ndarray, offsets: np.ndarray, centre_window: int = 2, offset_window: int = 3,
                      anchors=None):
    """Vertebra corners (B, 17, 4, 2) float64 in input pixels, found in order (``ordered_peaks``),
    and the heatmap probabilities (B, 17, h, w). Each centre = the name-free map's soft-argmax
    within ``centre_window`` cells of its peak (neighbours lie 3..6 cells away); corners = centre +
    the offsets averaged under the name-free map within ``offset_window`` cells. (The windows were
    chosen on 240 training films: see the model card.) ``anchors``: per film a list of (k, x, y)
    (``ordered_peaks``), or None."""
    b, k, h, w = heatmap.shape
    prob = softmax(heatmap.reshape(b, k, h * w).astype(np.float32), -1).reshape(b, k, h, w)
    xs, ys = cell_centres(h, w)
    gx = np.broadcast_to(xs[None, :], (h, w)).reshape(-1)
    gy = np.broadcast_to(ys[:, None], (h, w)).reshape(-1)
    yy = np.arange(h)[None, :, None]
    xx = np.arange(w)[None, None, :]
    out = np.empty((b, k, 4, 2), dtype=np.float64)
    for i in range(b):
        peaks, vertebrae = ordered_peaks(prob[i], anchors=() if anchors is None else anchors[i])
        py, px = (peaks // w)[:, None, None], (peaks % w)[:, None, None]

        def weights(window: int) -> np.ndarray:
            near = (np.abs(yy - py) <= window) & (np.abs(xx - px) <= window)
            wgt = (vertebrae[None] * near).reshape(k, -1).astype(np.float64)
            return wgt / np.maximum(wgt.sum(-1, keepdims=True), 1e-12)

        wc, wo = weights(centre_window), weights(offset_window)
        centre = np.stack([wc @ gx, wc @ gy], -1)
        for a in (() if anchors is None else anchors[i]):  # a named vertebra lies where it was named
            centre[int(a[0])] = (float(a[1]), float(a[2]))
        off = wo @ offsets[i].reshape(offsets.shape[1], -1).astype(np.float64).T
        out[i] = centre[:, None, :] + off.reshape(k, 4, 2)
    return out, prob
