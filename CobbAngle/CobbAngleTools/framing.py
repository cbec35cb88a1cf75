"""Framing a labelled film otherwise, to measure whether the vertebrae keep their names.

    mskmorph bench cobb --framings [--limit 81]

Clinical films are framed as they come: some show the neck and the skull base above T1, some the
pelvis below L5, some are taken on a long cassette with the spine small in the middle. Each
validation film is measured four ways (``FRAMINGS``), its labels moved with it:

* ``as-is``: the film as stored;
* ``cut-above-T1``: the film's top edge 0.3 vertebra heights above T1 (the neck cut away);
* ``cut-below-L5``: the bottom edge 0.3 vertebra heights below L5;
* ``shrunk``: the film shrunk to 60 % and centred on a canvas of its own size (the padding at the
  film's 1st-percentile gray), as a spine on a larger cassette.

Per framing: the share of vertebrae misnamed (a predicted vertebra nearer another vertebra's true
centre than its own), the films shifted a level as a whole (most vertebrae nearest the true
vertebra one above or one below), and across framings the share of vertebrae that keep their name
(the predicted vertebra nearest each true vertebra carries the same name in every framing).
"""
from __future__ import annotations

import numpy as np

FRAMINGS = ("as-is", "cut-above-T1", "cut-below-L5", "shrunk")
CUT_HEIGHTS = 0.3
SHRINK = 0.6


def vertebra_height(v: np.ndarray, k: int) -> float:
    """Vertebra ``k``'s height: the mean length of its two sides."""
    return float((np.linalg.norm(v[k, 2] - v[k, 0]) + np.linalg.norm(v[k, 3] - v[k, 1])) / 2)


def reframe(pixels: np.ndarray, landmarks: np.ndarray, framing: str):
    """(pixels, landmarks (17, 4, 2), 2x3 affine original -> reframed) of one framing."""
    import cv2

    v = np.asarray(landmarks, dtype=np.float64).reshape(17, 4, 2)
    h, w = pixels.shape
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    if framing == "as-is":
        return pixels, v, identity
    if framing == "cut-above-T1":
        y = int(np.floor(min(v[0, 0, 1], v[0, 1, 1]) - CUT_HEIGHTS * vertebra_height(v, 0)))
        y = max(0, y)
        m = np.array([[1.0, 0, 0], [0, 1.0, -y]])
        return pixels[y:], v - np.array([0, y]), m
    if framing == "cut-below-L5":
        y = int(np.ceil(max(v[16, 2, 1], v[16, 3, 1]) + CUT_HEIGHTS * vertebra_height(v, 16))) + 1
        return pixels[:min(h, y)], v.copy(), identity
    if framing == "shrunk":
        m = np.array([[SHRINK, 0, (1 - SHRINK) * (w - 1) / 2], [0, SHRINK, (1 - SHRINK) * (h - 1) / 2]])
        background = float(np.percentile(pixels[::4, ::4], 1))
        out = cv2.warpAffine(np.asarray(pixels, np.float32), m, (w, h), flags=cv2.INTER_AREA,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=background)
        return out, v @ m[:, :2].T + m[:, 2], m
    raise ValueError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")


def names_of_true_vertebrae(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(17,) for each true vertebra, the index (name) of the predicted vertebra whose centre is
    nearest its centre (vertebrae the prediction leaves out, NaN corners, are nearest nothing)."""
    p = np.asarray(predicted, float).reshape(17, 4, 2).mean(1)
    t = np.asarray(truth, float).reshape(17, 4, 2).mean(1)
    d = np.linalg.norm(t[:, None] - p[None], axis=-1)
    return np.argmin(np.where(np.isfinite(d), d, np.inf), axis=1)


def level_offsets(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(17,) for each predicted vertebra, (index of the nearest true vertebra) - (its own index): 0
    when it is named right, +1 when it sits on the vertebra below the one it is named (a "T1" on T2),
    -1 on the one above. A "T1" put on C7 is nearest the true T1 (no true vertebra lies above it)
    and shows as 0, but then its neighbours below show -1. A vertebra the prediction leaves out (NaN
    corners) on a film that shows it counts as misnamed (``NOT_SHOWN``)."""
    p = np.asarray(predicted, float).reshape(17, 4, 2).mean(1)
    t = np.asarray(truth, float).reshape(17, 4, 2).mean(1)
    d = np.linalg.norm(p[:, None] - t[None], axis=-1)
    out = np.argmin(np.where(np.isfinite(d), d, np.inf), axis=1) - np.arange(17)
    out[~np.isfinite(p).all(axis=1)] = NOT_SHOWN
    return out


NOT_SHOWN = 99  # the level offset of a vertebra the prediction leaves out


def shifted_as_whole(offsets: np.ndarray) -> bool:
    """Most of the film's vertebrae (at least 9 of 17) carry the name of a neighbour, all the same way."""
    for s in (-1, 1):
        if np.count_nonzero(offsets == s) >= 9:
            return True
    return False


def framing_figures(films: list, predict, named_levels=()) -> dict:
    """``films``: [(name, pixels, landmarks)]; ``predict(pixels, named) -> (17, 4, 2) corners``,
    ``named`` the reader's names [(name, x, y)]: the vertebrae of ``named_levels`` (e.g. ("T1",
    "T12")) at their true centres in each framing, as a reader who named them would (empty: the
    network counts alone). Returns per framing {misnamed_share, films_shifted, films}, and
    ``same_name_share`` across framings."""
    from CobbAngleLib.geometry import VERTEBRA_NAMES, points_on_film

    out = {f: {"misnamed": 0, "vertebrae": 0, "films_shifted": 0, "films": 0, "shifted": []} for f in FRAMINGS}
    same, total = 0, 0
    for name, pixels, truth in films:
        names = []
        for framing in FRAMINGS:
            px, lm, m = reframe(pixels, truth, framing)
            named = [(n, *lm[VERTEBRA_NAMES.index(n)].mean(axis=0)) for n in named_levels]
            # a reader names only what the film shows (a label set whose T1 lies below the cut of a
            # film cut below L5 is a label error: 1 validation film)
            named = [(n, x, y) for n, x, y in named if points_on_film((x, y), px.shape)[0]]
            # nor names a vertebra above one it names higher up the spine (an out-of-order label set:
            # the organisers' files hold a few)
            named = [p for i, p in enumerate(named) if all(q[2] < p[2] for q in named[:i])]
            predicted = predict(px, named)
            offsets = level_offsets(predicted, lm)
            row = out[framing]
            row["misnamed"] += int(np.count_nonzero(offsets))
            row["vertebrae"] += 17
            row["films"] += 1
            if shifted_as_whole(offsets):
                row["films_shifted"] += 1
                row["shifted"].append(name)
            names.append(names_of_true_vertebrae(predicted, lm))
        names = np.array(names)
        same += int(np.count_nonzero(np.all(names == names[0], axis=0)))
        total += 17
    for row in out.values():
        row["misnamed_share"] = row["misnamed"] / max(row["vertebrae"], 1)
    return {"framings": out, "same_name_share": same / max(total, 1)}
