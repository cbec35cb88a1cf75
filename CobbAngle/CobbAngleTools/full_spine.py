"""Full-spine phantoms: are T1 and L5 named by their anatomy when the film shows C1 to the pelvis?

    mskmorph bench cobb --full-spine N [--full-spine-seed S]

Renders N full-spine phantoms (``phantom.render_spine_phantom(field="full")``, seeds S..S+N-1),
reads each with the shipped predictor and names every predicted vertebra by the nearest true
vertebra, the cervical vertebrae C1..C7 and S1 counted as true vertebrae too (a "T1" put on C7 is
then misnamed, which ``framing.level_offsets`` on T1..L5 alone cannot see). Figures: the share of
films whose predicted T1 lies on the true T1, the same for L5, and the share of all predicted
vertebrae that lie on another vertebra than the one they are named; then the same figures on the
same spines framed as AASCE films (``field="aasce"``: T1..L5 are the same vertebrae, scaled and
moved), which separates the framing from the phantom's look.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .phantom import NAMES, render_spine_phantom


def true_vertebrae(phantom) -> tuple[list[str], np.ndarray]:
    """(names, centres (n, 2)) of every drawn vertebra with corners, top to bottom: C1..C7, T1..L5, S1."""
    other = phantom.other_landmarks
    above = [n for n in other if n != "S1"]
    names = above + list(NAMES) + ["S1"]
    corners = [other[n] for n in above] + list(phantom.landmarks) + [other["S1"]]
    return names, np.array([np.asarray(c, float).mean(axis=0) for c in corners])


def names_under(predicted: np.ndarray, names: list[str], centres: np.ndarray) -> list[str]:
    """For each predicted vertebra (17, 4, 2; T1..L5), the name of the true vertebra whose centre is
    nearest its centre ("not shown" where the prediction leaves it out: NaN corners)."""
    p = np.asarray(predicted, float).reshape(17, 4, 2).mean(axis=1)
    d = np.linalg.norm(p[:, None] - centres[None], axis=-1)
    shown = np.isfinite(p).all(axis=1)
    nearest = np.argmin(np.where(np.isfinite(d), d, np.inf), axis=1)
    return [names[j] if ok else "not shown" for j, ok in zip(nearest, shown)]


def naming_row(phantom, predicted: np.ndarray) -> dict:
    """One film: what lies under each predicted vertebra (names, T1..L5 order) and how many are misnamed."""
    names, centres = true_vertebrae(phantom)
    under = names_under(predicted, names, centres)
    return {"seed": phantom.seed, "under": under, "misnamed": sum(u != n for u, n in zip(under, NAMES))}


def summarise(rows: list) -> dict:
    """The shares (T1 named right, L5 named right, vertebrae misnamed), what lies under the
    predicted T1 and L5 (counts by name), and the rows."""
    n = max(len(rows), 1)
    return {
        "films": len(rows),
        "t1_right_share": sum(r["under"][0] == "T1" for r in rows) / n,
        "l5_right_share": sum(r["under"][-1] == "L5" for r in rows) / n,
        "misnamed_share": sum(r["misnamed"] for r in rows) / (17 * n),
        "under_t1": dict(Counter(r["under"][0] for r in rows).most_common()),
        "under_l5": dict(Counter(r["under"][-1] for r in rows).most_common()),
        "rows": rows,
    }


def full_spine_figures(seeds, predict, height: int = 2400, width: int = 900, field: str = "full",
                       named_levels=()) -> dict:
    """``predict(pixels, named) -> (17, 4, 2)`` corners, on the full-spine phantom of each seed
    (``field`` "aasce": the same spines framed as AASCE films, C6, C7 and S1 the extra true
    vertebrae); ``named``: the vertebrae of ``named_levels`` at their true centres, as a reader
    names them (``mskmorph cobb --named``); ``summarise``'s figures."""
    rows = []
    for seed in seeds:
        ph = render_spine_phantom(int(seed), height=height, width=width, field=field)
        named = [(n, *np.asarray(ph.landmarks[NAMES.index(n)], float).mean(axis=0)) for n in named_levels]
        rows.append(naming_row(ph, predict(ph.pixels, named)))
    return summarise(rows)


def print_full_spine(n: int, first_seed: int, predict, named_levels=()) -> dict:
    """The figures of the full-spine films, then of the same spines framed as AASCE films (the control)."""
    figures = full_spine_figures(range(first_seed, first_seed + n), predict, named_levels=named_levels)
    print(f"full-spine phantoms (seeds {first_seed}..{first_seed + n - 1}, {figures['films']} films, C1 to the pelvis)"
          + (f", {', '.join(named_levels)} named by the reader:" if named_levels else ":"))
    print(f"  T1 named right on {figures['t1_right_share']:.0%} of films; the predicted T1 lies on: "
          + ", ".join(f"{k} {v}" for k, v in figures["under_t1"].items()))
    print(f"  L5 named right on {figures['l5_right_share']:.0%} of films; the predicted L5 lies on: "
          + ", ".join(f"{k} {v}" for k, v in figures["under_l5"].items()))
    print(f"  vertebrae misnamed (nearest true vertebra, C1..C7 and S1 included, not their own): "
          f"{figures['misnamed_share']:.1%}")
    control = full_spine_figures(range(first_seed, first_seed + n), predict, field="aasce", named_levels=named_levels)
    print(f"the same spines framed as AASCE films (C7 to the sacrum): T1 named right on {control['t1_right_share']:.0%}, "
          f"L5 on {control['l5_right_share']:.0%}, vertebrae misnamed {control['misnamed_share']:.1%} (C6, C7, S1 included)")
    figures["aasce_framed"] = control
    return figures
