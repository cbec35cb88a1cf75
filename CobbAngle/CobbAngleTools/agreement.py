"""Agreement of measured and true Cobb angles as clinicians judge it: Bland-Altman limits of
agreement per angle, and the plots (Bland-Altman, predicted against true) as PNG files.

Plots are drawn with matplotlib when it is installed, else with OpenCV (no new dependency).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def limits_of_agreement(truth, measured) -> dict:
    """Bland-Altman: bias (mean of measured - truth), its SD and the 95 % limits bias +- 1.96 SD (deg)."""
    d = np.asarray(measured, float) - np.asarray(truth, float)
    bias, sd = float(np.mean(d)), float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    return {"bias": bias, "sd": sd, "lower": bias - 1.96 * sd, "upper": bias + 1.96 * sd, "n": int(len(d))}


def draw_agreement(truth, measured, angle: str, title: str, out_dir: Path) -> list[Path]:
    """``<out_dir>/bland_altman_<angle>.png`` and ``predicted_vs_true_<angle>.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t, m = np.asarray(truth, float), np.asarray(measured, float)
    loa = limits_of_agreement(t, m)
    paths = [out_dir / f"bland_altman_{angle}.png", out_dir / f"predicted_vs_true_{angle}.png"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _draw_opencv(t, m, loa, title, paths)
        return paths
    mean, diff = (t + m) / 2, m - t
    fig, ax = plt.subplots(figsize=(4.2, 3.4), dpi=100)
    ax.scatter(mean, diff, s=10, alpha=0.7)
    for y, style, label in ((loa["bias"], "-", f"bias {loa['bias']:+.1f}"),
                            (loa["upper"], "--", f"+1.96 SD {loa['upper']:+.1f}"),
                            (loa["lower"], "--", f"-1.96 SD {loa['lower']:+.1f}")):
        ax.axhline(y, color="k", linestyle=style, linewidth=1)
        ax.text(0.99, y, label, va="bottom", ha="right", fontsize=7, transform=ax.get_yaxis_transform())
    for y in (-7.2, 7.2):  # manual inter-observer variability (Morrissy 1990)
        ax.axhline(y, color="tab:red", linestyle=":", linewidth=1)
    ax.set_xlabel("mean of measured and true (deg)")
    ax.set_ylabel("measured - true (deg)")
    ax.set_title(f"Bland-Altman, {title} (n={loa['n']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[0])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=100)
    top = max(5.0, float(np.nanmax(np.r_[t, m])) * 1.05)
    ax.plot([0, top], [0, top], color="k", linewidth=1)
    ax.scatter(t, m, s=10, alpha=0.7)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("true (deg)")
    ax.set_ylabel("measured (deg)")
    ax.set_title(f"{title} (n={loa['n']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _draw_opencv(t, m, loa, title, paths) -> None:
    import cv2

    size, pad = 360, 40

    def canvas():
        return np.full((size, size, 3), 255, np.uint8)

    mean, diff = (t + m) / 2, m - t
    img = canvas()
    xmax = max(5.0, float(mean.max()) * 1.05)
    ymax = max(10.0, float(np.abs(diff).max()) * 1.1)

    def to_px(x, y):
        return (int(pad + x / xmax * (size - 2 * pad)), int(size / 2 - y / ymax * (size / 2 - pad)))

    for y, colour in ((loa["bias"], (0, 0, 0)), (loa["upper"], (90, 90, 90)), (loa["lower"], (90, 90, 90)),
                      (7.2, (0, 0, 200)), (-7.2, (0, 0, 200))):
        cv2.line(img, to_px(0, y), to_px(xmax, y), colour, 1)
    for x, y in zip(mean, diff):
        cv2.circle(img, to_px(x, y), 2, (180, 100, 30), -1)
    cv2.putText(img, f"{title}: bias {loa['bias']:+.1f}, LoA {loa['lower']:+.1f}..{loa['upper']:+.1f}",
                (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(paths[0]), img)
    img = canvas()
    top = max(5.0, float(max(t.max(), m.max())) * 1.05)

    def to_px2(x, y):
        return (int(pad + x / top * (size - 2 * pad)), int(size - pad - y / top * (size - 2 * pad)))

    cv2.line(img, to_px2(0, 0), to_px2(top, top), (0, 0, 0), 1)
    for x, y in zip(t, m):
        cv2.circle(img, to_px2(x, y), 2, (180, 100, 30), -1)
    cv2.putText(img, f"{title}: measured (y) vs true (x)", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(paths[1]), img)
