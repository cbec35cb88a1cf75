"""Synthetic knee radiographs (PA, one or both knees) with exact KNEEL landmarks.

    mskmorph phantom knee --out DIR [--shapes KNEEL.csv] [--n N] [--seed S] [--single-knee-fraction F]
                          [--allow-cut-knees]

Bone shapes come from the statistical shape model of the real KNEEL annotations
(``shape_model``), or are given as rows of a KNEEL CSV (two consecutive rows make one bilateral
film). The renderer builds femur, tibia, fibula and patella outlines from the 16 landmarks
(the tibial plateau passes exactly through T1..T9, the femoral condyle contour exactly through
F1..F7), adds osteophytes at the four joint margins and subchondral sclerosis that grow with the
KL grade, sums the bones' attenuation (cortex bright, trabecular texture, overlaps add up) over a
soft-tissue leg silhouette, and applies a film response, blur, heel effect, noise and a side
marker. Left knees are the mirror image of the right-knee frame; on a bilateral film the
patient's right knee is on the viewer's left, as on a standard PA film.

Per film NAME in DIR: NAME.dcm (12-bit DICOM, MONOCHROME2, PixelSpacing), preview/NAME.png (8-bit,
no pixel spacing: kept out of DIR so that ``mskmorph knee DIR`` measures the DICOM films only;
with --no-dicom the PNG is the film and lies in DIR), NAME.json (exact ground truth: per knee side, KL grade, 16 landmarks in pixels and mm, knee
centre, true joint space widths, points_outside_film / cut: none unless --allow-cut-knees); for the run ground_truth.csv (one row per knee) and films.json.

The same ``render`` draws a whole film or any window of it at any pixel size (the training data
for the networks are windows rendered at the networks' resolution). No torch, no Slicer.
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from KneeLandmarksLib import measure
from . import shape_model as sm

APPEARANCE_PATH = Path(__file__).resolve().parent / "real_crop_appearance.json"
KL_OSTEOPHYTE_MM = {0: (0.0, 0.0), 1: (0.0, 1.5), 2: (1.0, 3.0), 3: (2.0, 5.0), 4: (3.0, 7.0)}


# --------------------------------------------------------------------------------------------
# what a film is made of

@dataclass
class KneeSpec:
    side: str  # "right" or "left" (the patient's)
    shape_mm: np.ndarray  # (16, 2) right-knee frame, origin T5
    kl: int
    centre_mm: tuple  # where T5 lies on the film (x, y) in mm
    angle_deg: float = 0.0
    scale: float = 1.0
    osteophytes_mm: tuple = (0.0, 0.0, 0.0, 0.0)  # tibia lateral, tibia medial, femur lateral, femur medial
    sclerosis: float = 0.0
    fibula: tuple = (4.0, 22.0, 11.0)  # head offset x, y from T1 and head half-width (mm)
    patella: tuple = (2.0, -24.0, 21.0, 25.0)  # centre offset from F4 and half-axes (mm)
    shaft_half_width: tuple = (14.0, 16.0)  # femur, tibia (mm)
    leg_half_width: float = 55.0
    subject_id: str = ""

    def to_film(self, points_knee_mm: np.ndarray) -> np.ndarray:
        """Knee frame (right-knee, mm) -> film mm: mirror for a left knee, scale, rotate, move."""
        p = np.asarray(points_knee_mm, float) * self.scale
        if self.side == "left":
            p = p * np.array([-1.0, 1.0])
        a = np.radians(self.angle_deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return p @ rot.T + np.asarray(self.centre_mm, float)

    @property
    def landmarks_film_mm(self) -> np.ndarray:
        return self.to_film(self.shape_mm)


@dataclass
class FilmSpec:
    width_mm: float
    height_mm: float
    spacing_mm: float
    knees: list
    appearance: dict = field(default_factory=dict)
    seed: int = 0

    @property
    def shape_px(self) -> tuple:
        return int(round(self.height_mm / self.spacing_mm)), int(round(self.width_mm / self.spacing_mm))

    def landmarks_px(self, knee: KneeSpec) -> np.ndarray:
        """Film pixel coordinates (x right, y down; pixel centres at integers)."""
        return knee.landmarks_film_mm / self.spacing_mm


# --------------------------------------------------------------------------------------------
# sampling films

def sample_appearance(rng: np.random.Generator) -> dict:
    return {
        "soft_tissue": float(rng.uniform(0.15, 0.45)),
        "bone": float(rng.uniform(0.45, 0.8)),
        "cortex": float(rng.uniform(0.3, 0.9)),
        "cortex_mm": float(rng.uniform(0.8, 2.2)),
        "texture": float(rng.uniform(0.05, 0.25)),
        "texture_mm": float(rng.uniform(0.4, 1.2)),
        "patella": float(rng.uniform(0.15, 0.45)),
        "attenuation": float(rng.uniform(0.5, 1.4)),
        "gamma": float(rng.uniform(0.7, 1.5)),
        "blur_mm": float(rng.uniform(0.1, 0.6)),
        "noise": float(rng.uniform(0.005, 0.04)),
        "heel": float(rng.uniform(-0.15, 0.15)),
        "background": float(rng.uniform(0.0, 0.12)),
        "marker": bool(rng.random() < 0.7),
        "collimation": bool(rng.random() < 0.4),
    }


def sample_knee(rng, model: sm.ShapeModel, side: str, centre_mm, kl: Optional[int] = None,
                shape_mm: Optional[np.ndarray] = None, subject_id: str = "") -> KneeSpec:
    kl = int(rng.integers(0, 5)) if kl is None or kl < 0 else int(kl)
    shape = model.sample(rng, kl=kl) if shape_mm is None else np.asarray(shape_mm, float)
    lo, hi = KL_OSTEOPHYTE_MM[kl]
    return KneeSpec(
        side=side, shape_mm=shape, kl=kl, centre_mm=tuple(float(c) for c in centre_mm),
        angle_deg=float(rng.normal(0, 3.0)), scale=float(rng.uniform(0.92, 1.1)),
        osteophytes_mm=tuple(float(v) for v in rng.uniform(lo, hi, 4) * (rng.random(4) < 0.85)),
        sclerosis=float(0.08 * kl * rng.uniform(0.5, 1.5)),
        fibula=(float(rng.uniform(1, 8)), float(rng.uniform(16, 26)), float(rng.uniform(9, 13))),
        patella=(float(rng.uniform(-4, 6)), float(rng.uniform(-32, -14)), float(rng.uniform(18, 24)),
                 float(rng.uniform(21, 28))),
        shaft_half_width=(float(rng.uniform(12, 16)), float(rng.uniform(13, 18))),
        leg_half_width=float(rng.uniform(48, 70)), subject_id=subject_id,
    )


def _given(g) -> dict:
    return {} if not g else {"shape_mm": g[0], "kl": g[1], "subject_id": g[2] if len(g) > 2 else ""}


FILM_MARGIN_MM = 12.0  # every landmark at least this far inside the film (the bone margins, osteophytes)


def keep_knees_on_film(film: FilmSpec, margin_mm: float = FILM_MARGIN_MM) -> FilmSpec:
    """Move the knees and widen the film (in place) so that every landmark of every knee lies at
    least ``margin_mm`` inside it: films are framed on the knees, and a knee partly off the film
    has no ground truth to measure against."""
    pts = np.vstack([k.landmarks_film_mm for k in film.knees])
    lo, hi = pts.min(0) - margin_mm, pts.max(0) + margin_mm
    move = np.maximum(-lo, 0.0)  # knees too close to the left / top edge move right / down
    for k in film.knees:
        k.centre_mm = tuple(float(c) for c in np.asarray(k.centre_mm) + move)
    size = np.maximum([film.width_mm, film.height_mm] + move, hi + move)
    film.width_mm, film.height_mm = float(size[0]), float(size[1])
    return film


def points_outside(film: FilmSpec, knee: KneeSpec) -> int:
    """How many of a knee's landmarks lie outside the film's pixels."""
    h, w = film.shape_px
    p = film.landmarks_px(knee)
    return int(np.sum((p[:, 0] < -0.5) | (p[:, 0] > w - 0.5) | (p[:, 1] < -0.5) | (p[:, 1] > h - 0.5)))


def sample_film(seed: int, model: Optional[sm.ShapeModel] = None, n_knees: Optional[int] = None,
                shapes: Optional[list] = None, single_knee_fraction: float = 0.2,
                spacing_range=(0.14, 0.3), keep_on_film: bool = True) -> FilmSpec:
    """A random film. ``shapes``: up to two (shape_mm, kl, subject_id) to use instead of sampled ones.
    With ``keep_on_film`` (default) a knee that would lie partly off the film moves onto it (the
    film grows): every landmark lies at least ``FILM_MARGIN_MM`` inside. Without it knees may be
    cut (``points_outside`` counts the landmarks off the film)."""
    rng = np.random.default_rng(seed)
    model = model or sm.load()
    if n_knees is None:
        n_knees = len(shapes) if shapes else (1 if rng.random() < single_knee_fraction else 2)
    spacing = float(rng.uniform(*spacing_range))
    given = list(shapes or []) + [None] * 2
    knees = []
    if n_knees == 2:
        width, height = float(rng.uniform(300, 430)), float(rng.uniform(250, 430))
        separation = float(rng.uniform(150, 230))
        cx, cy = width / 2 + rng.uniform(-25, 25), height / 2 + rng.uniform(-0.12, 0.12) * height
        for side, sign in (("right", -1), ("left", 1)):
            g = given.pop(0)
            centre = (cx + sign * separation / 2 + rng.normal(0, 4), cy + rng.normal(0, 6))
            knees.append(sample_knee(rng, model, side, centre, **_given(g)))
    else:
        width, height = float(rng.uniform(150, 260)), float(rng.uniform(170, 320))
        g = given.pop(0)
        side = "right" if rng.random() < 0.5 else "left"
        centre = (width / 2 + rng.uniform(-0.12, 0.12) * width, height / 2 + rng.uniform(-0.15, 0.15) * height)
        knees.append(sample_knee(rng, model, side, centre, **_given(g)))
    film = FilmSpec(width, height, spacing, knees, sample_appearance(rng), seed)
    return keep_knees_on_film(film) if keep_on_film else film


# --------------------------------------------------------------------------------------------
# outlines in the knee frame (mm, right-knee frame, origin T5, y down)

catmull_rom = measure.catmull_rom


def knee_outlines(k: KneeSpec) -> dict:
    """Closed polygons (knee frame, mm): tibia, femur, fibula, patella, osteophytes, leg; and the
    plateau line used for sclerosis."""
    s = k.shape_mm
    t, f = s[sm.TIBIA], s[sm.FEMUR]
    fem_half, tib_half = k.shaft_half_width
    lat_t, med_t = t[0], t[8]
    tibia_ctrl = [
        (-tib_half - 2, lat_t[1] + 400), (-tib_half, lat_t[1] + 80), (lat_t[0] + 9, lat_t[1] + 42),
        (lat_t[0] + 0.8, lat_t[1] + 15), lat_t + (-0.8, 4.5), *t,
        med_t + (0.8, 4.5), (med_t[0] - 0.8, med_t[1] + 15), (med_t[0] - 9, med_t[1] + 42),
        (tib_half, med_t[1] + 80), (tib_half + 2, med_t[1] + 400),
    ]
    tibia = catmull_rom(np.array(tibia_ctrl, float))
    lat_f, med_f = f[0], f[6]
    femur_ctrl = [
        (fem_half + 3, med_f[1] - 400), (fem_half, med_f[1] - 90), (med_f[0] - 11, med_f[1] - 50),
        (med_f[0] + 2.0, med_f[1] - 20), med_f + (1.2, -7), *f[::-1],
        lat_f + (-1.2, -7), (lat_f[0] - 2.0, lat_f[1] - 20), (lat_f[0] + 11, lat_f[1] - 50),
        (-fem_half, lat_f[1] - 90), (-fem_half - 3, lat_f[1] - 400),
    ]
    femur = catmull_rom(np.array(femur_ctrl, float))
    fx, fy, fw = k.fibula
    head = np.array([lat_t[0] + fx, lat_t[1] + fy])
    fibula_ctrl = [
        head + (-2, 400), head + (-fw * 0.45, 45), head + (-fw * 0.7, 14), head + (-fw, 1),
        head + (-fw * 0.55, -fw * 0.75), head + (0, -fw * 0.85), head + (fw * 0.7, -fw * 0.45),
        head + (fw, 3), head + (fw * 0.55, 18), head + (fw * 0.4, 45), head + (4, 400),
    ]
    fibula = catmull_rom(np.array(fibula_ctrl, float))
    px_, py_, ax, ay = k.patella
    theta = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    patella = np.column_stack([f[3, 0] + px_ + ax * np.cos(theta), f[3, 1] + py_ + ay * np.sin(theta)])
    spurs = []
    for size, base, direction in zip(
        k.osteophytes_mm, (lat_t, med_t, lat_f, med_f), ((-1, 1), (1, 1), (-1, -1), (1, -1))
    ):
        if size <= 0.2:
            continue
        dx, dy = direction
        b0 = base + (-dx * 1.0, dy * 1.0)
        b1 = base + (-dx * 1.0, dy * (1.5 + 1.8 * size))
        tip = base + (dx * size, dy * (0.4 + 0.2 * size))
        spurs.append(np.array([b0, tip, b1]))
    ys = np.linspace(-420, 420, 43)
    half = k.leg_half_width * (1 + 0.25 * np.clip(-ys / 250, 0, 1)) * (1 - 0.12 * np.clip(ys / 250, 0, 1) + 0.1 * np.exp(-(ys / 40) ** 2))
    leg = np.vstack([np.column_stack([-half, ys]), np.column_stack([half, ys])[::-1]])
    plateau = catmull_rom(t)
    return {"tibia": tibia, "femur": femur, "fibula": fibula, "patella": patella, "spurs": spurs,
            "leg": leg, "plateau": plateau}


# --------------------------------------------------------------------------------------------
# rendering

SUBROW_PITCH_MM = 0.025  # vertical sampling of the polygon coverage (horizontal is exact)


def _coverage(shape_hw, polygon_px, subrows: int = 64) -> np.ndarray:
    """Area of each pixel covered by a closed polygon (0..1, float32): pixel (i, j) is the square
    [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5] (pixel centres at integers, as everywhere else).

    Each pixel row is cut into ``subrows`` horizontal lines; on each line the polygon's inside is
    the sum of its signed edge crossings (the winding number), whose overlap with every pixel
    is integrated exactly (a ramp per crossing, accumulated as second differences and summed
    twice). So an edge falls where it lies, to a fraction of a pixel, at any pixel size; a
    scan-converted fill (``cv2.fillPoly``) takes every pixel its edge touches instead, which
    makes a shape half a pixel too large per edge."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    p = np.asarray(polygon_px, np.float64)
    if len(p) < 3 or h <= 0 or w <= 0:
        return np.zeros((max(h, 0), max(w, 0)), np.float32)
    k = max(1, int(subrows))
    a, b = p, np.roll(p, -1, axis=0)
    moving = a[:, 1] != b[:, 1]
    a, b = a[moving], b[moving]
    # sub-row m (0 .. h*k-1) lies at y = (m + 0.5) / k - 0.5; an edge crosses the sub-rows with
    # y in [min(y_a, y_b), max(y_a, y_b))
    lo = np.minimum(a[:, 1], b[:, 1])
    hi = np.maximum(a[:, 1], b[:, 1])
    m0 = np.clip(np.ceil((lo + 0.5) * k - 0.5), 0, h * k).astype(np.int64)
    m1 = np.clip(np.ceil((hi + 0.5) * k - 0.5), 0, h * k).astype(np.int64)
    count = m1 - m0
    if count.sum() == 0:
        return np.zeros((h, w), np.float32)
    edge = np.repeat(np.arange(len(a)), count)
    m = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + m0[edge]
    y = (m + 0.5) / k - 0.5
    ya, yb, xa, xb = a[edge, 1], b[edge, 1], a[edge, 0], b[edge, 0]
    x = xa + (y - ya) * (xb - xa) / (yb - ya)
    sign = np.where(yb > ya, 1.0, -1.0) / k
    # along a sub-row the inside is sum sign * step(x' - x): pixel j (the interval j -/+ 0.5) holds
    # sum sign * (ramp(j + 0.5 - x) - ramp(j - 0.5 - x)), ramp(u) = max(u, 0). Sampled at the pixel
    # borders (index i = border + 0.5), a ramp starting at t = x + 0.5 = n + f has the first
    # differences 0 .. 0, 1 - f (at n + 1), 1, 1, ...: so each crossing adds 1 - f at n + 1 and f
    # at n + 2 to a difference array whose running sum is the coverage.
    t = np.clip(x + 0.5, 0.0, None)  # a crossing left of the window covers its whole row width
    keep = t < w
    if not keep.any():
        return np.zeros((h, w), np.float32)
    cut_right = not keep.all()  # then some rows stay inside up to the window's right border
    t, sign, row = t[keep], sign[keep], (m[keep] // k)
    n = np.floor(t).astype(np.int64)
    f = t - n
    # only the rows and columns the polygon reaches (right of a row's last crossing its winding is 0)
    r0, r1, c0 = int(row.min()), int(row.max()) + 1, int(n.min())
    c1 = w if cut_right else min(int(n.max()) + 2, w)
    width = c1 - c0 + 2
    idx = np.concatenate([(row - r0) * width + (n + 1 - c0), (row - r0) * width + (n + 2 - c0)])
    flat = np.bincount(idx, np.concatenate([sign * (1.0 - f), sign * f]), minlength=(r1 - r0) * width)
    cover = np.zeros((h, w), np.float32)
    part = np.cumsum(flat.reshape(r1 - r0, width), axis=1)[:, 1: c1 - c0 + 1]
    cover[r0:r1, c0:c1] = np.clip(np.abs(part), 0.0, 1.0)
    return cover


def _subrows(spacing_mm: float) -> int:
    return int(np.clip(np.ceil(spacing_mm / SUBROW_PITCH_MM), 4, 256))


def _fill(shape_hw, polygons_px, subrows: int = 64) -> np.ndarray:
    """Coverage (0..1, float32) of the union of polygons (overlapping ones do not cancel out)."""
    mask = np.zeros(tuple(int(v) for v in shape_hw), np.float32)
    for q in polygons_px:
        if len(q) >= 3:
            np.maximum(mask, _coverage(shape_hw, q, subrows), out=mask)
    return mask


def _smooth_noise(rng, shape_hw, sigma_px: float) -> np.ndarray:
    """Gaussian-smoothed white noise, unit variance; a coarse one is drawn on a coarser grid and
    interpolated (the same texture statistics, a fraction of the work)."""
    q = int(np.clip(sigma_px // 2, 1, 8))
    h, w = int(shape_hw[0]), int(shape_hw[1])
    n = rng.standard_normal((-(-h // q) + 1, -(-w // q) + 1) if q > 1 else (h, w)).astype(np.float32)
    if sigma_px / q > 0.3:
        n = cv2.GaussianBlur(n, (0, 0), sigma_px / q)
        n /= max(float(n.std()), 1e-6)
    if q > 1:
        n = cv2.resize(n, (n.shape[1] * q, n.shape[0] * q), interpolation=cv2.INTER_LINEAR)[:h, :w]
        n /= max(float(n.std()), 1e-6)
    return np.ascontiguousarray(n)


def _bone_density(cover: np.ndarray, px_mm: float, app: dict, rng, density: float) -> np.ndarray:
    """A bone's attenuation from its pixel coverage (0..1): trabecular density with texture, and a
    cortex that decays from the outline inwards, integrated over the part of each pixel that the
    bone covers (so a partly covered edge pixel holds its share of both, at any pixel size)."""
    out = np.zeros(cover.shape, np.float32)
    rows, cols = np.nonzero(cover.any(1))[0], np.nonzero(cover.any(0))[0]
    if not len(rows):
        return out
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    cov = cover[box]
    inside = cv2.distanceTransform((cov >= 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    # depth of the pixel centre below the outline (pixels): from the coverage on the outline,
    # from the distance to the nearest outside pixel further in
    depth = np.where(cov < 1 - 1e-4, cov - 0.5, np.maximum(inside - 0.5, 0.5)).astype(np.float32)
    c = np.float32(app["cortex_mm"] / px_mm)  # cortex decay length in pixels
    lo, hi = np.maximum(depth - 0.5, 0), np.maximum(depth + 0.5, 0)
    cortex = c * (np.exp(-lo / c) - np.exp(-hi / c))  # = coverage x mean of exp(-depth / c) over it
    tex = _smooth_noise(rng, cov.shape, app["texture_mm"] / px_mm) + 0.5 * _smooth_noise(
        rng, cov.shape, 4 * app["texture_mm"] / px_mm)
    # texture finer than a pixel averages out in a coarse render
    tex *= np.float32(app["texture"] * min(1.0, app["texture_mm"] / px_mm))
    out[box] = cov * np.float32(density) * (1 + tex) + np.float32(app["cortex"]) * cortex
    return out


def render(film: FilmSpec, origin_mm=(0.0, 0.0), spacing_mm: Optional[float] = None, shape_hw=None,
           noise_seed: Optional[int] = None, appearance: Optional[dict] = None) -> np.ndarray:
    """Render the window of the film whose pixel (0, 0) centre lies at ``origin_mm`` with square
    pixels of ``spacing_mm`` (default: the whole film at its own spacing). Returns float32 in
    [0, 1] (bone bright)."""
    spacing = film.spacing_mm if spacing_mm is None else float(spacing_mm)
    shape_hw = film.shape_px if shape_hw is None else tuple(int(v) for v in shape_hw)
    app = dict(film.appearance, **(appearance or {}))
    rng = np.random.default_rng(film.seed * 7919 + 17 if noise_seed is None else noise_seed)
    origin = np.asarray(origin_mm, float)
    to_px = lambda pts_film_mm: (np.asarray(pts_film_mm) - origin) / spacing  # noqa: E731
    attenuation = np.full(shape_hw, np.float32(app["background"]))
    for k in film.knees:
        o = knee_outlines(k)
        px = {name: to_px(k.to_film(v)) for name, v in o.items() if name != "spurs"}
        spurs = [to_px(k.to_film(s)) for s in o["spurs"]]
        sub = _subrows(spacing)
        edge = max(0.5, 6.0 / spacing)
        lx, ly = px["leg"][:, 0], px["leg"][:, 1]
        if lx.min() > shape_hw[1] + 4 * edge or lx.max() < -4 * edge or ly.min() > shape_hw[0] + 4 * edge \
                or ly.max() < -4 * edge:
            continue  # this knee (its leg holds all its bones) is far from the window
        leg = _fill(shape_hw, [px["leg"]], sub)
        leg = cv2.GaussianBlur(leg, (0, 0), edge)
        attenuation += leg * np.float32(app["soft_tissue"])
        tibia = _fill(shape_hw, [px["tibia"], *spurs[:2]], sub)
        femur = _fill(shape_hw, [px["femur"], *spurs[2:]], sub)
        fibula = _fill(shape_hw, [px["fibula"]], sub)
        patella = _fill(shape_hw, [px["patella"]], sub)
        bone = app["bone"]
        attenuation += _bone_density(tibia, spacing, app, rng, bone)
        attenuation += _bone_density(femur, spacing, app, rng, bone)
        attenuation += _bone_density(fibula, spacing, app, rng, 0.55 * bone)
        attenuation += cv2.GaussianBlur(_bone_density(patella, spacing, app, rng, app["patella"]), (0, 0),
                                        max(0.3, 1.0 / spacing))
        if k.sclerosis > 0 and tibia.any():
            line = np.ones(shape_hw, np.uint8)
            pts = np.round(px["plateau"] * 16).astype(np.int32)
            cv2.polylines(line, [pts], False, 0, 1, cv2.LINE_8, shift=4)
            if not line.all():  # the plateau crosses this window
                d = cv2.distanceTransform(line, cv2.DIST_L2, 5) * np.float32(spacing)
                attenuation += tibia * np.float32(k.sclerosis) * np.exp(-d / np.float32(3.0))
    if app.get("marker") and film.knees:
        _draw_marker(attenuation, film, origin, spacing, rng)
    image = 1.0 - np.exp(-np.float32(app["attenuation"]) * attenuation)
    image = np.clip(image / max(1e-6, 1.0 - np.exp(-app["attenuation"] * 2.2)), 0, 1) ** np.float32(app["gamma"])
    blur = app["blur_mm"] / spacing
    if blur > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    ys = (np.arange(shape_hw[0], dtype=np.float32) * spacing + origin[1]) / max(film.height_mm, 1.0)
    image *= (1 + np.float32(app["heel"]) * (ys[:, None] - 0.5))
    if app.get("collimation"):
        image = _collimate(image, film, origin, spacing, rng)
    # detector noise at the film's pixel size, averaged down for coarser renders
    sigma = app["noise"] * min(1.0, film.spacing_mm / spacing)
    image += rng.standard_normal(shape_hw).astype(np.float32) * np.float32(sigma) * np.sqrt(0.05 + image)
    return np.clip(image, 0, 1).astype(np.float32)


def _draw_marker(attenuation, film, origin, spacing, rng):
    """A lead side letter (R/L) near the top outer corner, as on clinical films."""
    letter = "R" if film.knees[0].side == "right" else "L"
    at_mm = np.array([film.width_mm * (0.08 if letter == "R" else 0.85), film.height_mm * 0.08])
    at = (at_mm - origin) / spacing
    size_px = 12.0 / spacing
    h, w = attenuation.shape
    if not (-size_px < at[0] < w + size_px and -size_px < at[1] < h + size_px):
        return
    mark = np.zeros(attenuation.shape, np.uint8)
    scale = size_px / 22.0
    cv2.putText(mark, letter, (int(at[0]), int(at[1] + size_px)), cv2.FONT_HERSHEY_SIMPLEX, scale, 1,
                max(1, int(2.5 / spacing)), cv2.LINE_AA)
    attenuation += mark.astype(np.float32) * np.float32(3.0)


def _collimate(image, film, origin, spacing, rng):
    margin = 8.0 / spacing
    h, w = image.shape
    x0 = (film.width_mm * 0.02 - origin[0]) / spacing
    x1 = (film.width_mm * 0.98 - origin[0]) / spacing
    xs = np.arange(w, dtype=np.float32)
    outside = (xs < x0) | (xs > x1)
    if outside.any():
        image[:, outside] = image[:, outside] * 0.2 + 0.75
    del margin, h
    return image


# --------------------------------------------------------------------------------------------
# real-crop appearance (intensity statistics of the real OAI crops, for domain randomisation)

QUANTILES = np.linspace(0, 1, 33)


def fit_real_appearance(folder) -> dict:
    """Intensity quantiles of each real crop (knee-kl224-val layout) -> small statistics."""
    rows = []
    for path in sorted(Path(folder).glob("*/*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        rows.append(np.round(np.quantile(img, QUANTILES)).astype(int).tolist())
    if not rows:
        raise ValueError(f"no crops found under {folder}")
    return {"format": "mskmorph-knee-real-appearance-v1",
            "source": "Chen P., Knee Osteoarthritis Severity Grading Dataset (Mendeley Data 2018, CC BY 4.0), "
                      "validation split: crops of OAI radiographs; only intensity quantiles are stored",
            "quantiles": QUANTILES.round(5).tolist(), "crops": rows}


_appearance_cache: dict = {}


def real_quantiles() -> Optional[np.ndarray]:
    if "q" not in _appearance_cache:
        _appearance_cache["q"] = (np.array(json.loads(APPEARANCE_PATH.read_text())["crops"], np.float32) / 255.0
                                  if APPEARANCE_PATH.is_file() else None)
    return _appearance_cache["q"]


def match_histogram(image: np.ndarray, target_quantiles: np.ndarray) -> np.ndarray:
    """Map the image's intensity quantiles onto a real crop's (monotone, piecewise linear)."""
    src = np.quantile(image, QUANTILES)
    src = np.maximum.accumulate(src + np.arange(len(src)) * 1e-6)
    return np.interp(image, src, target_quantiles).astype(np.float32)


# --------------------------------------------------------------------------------------------
# files

def to_uint16(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 4095).astype(np.uint16)


def write_dicom(path, pixels_u16: np.ndarray, spacing_mm: float, patient_id: str = "PHANTOM",
                description: str = "synthetic knee PA") -> Path:
    import datetime

    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path), patient_id])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient_id, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[patient_id, "series"])
    ds.Modality = "DX"
    ds.PatientName = "Phantom^Knee"
    ds.PatientID = patient_id
    ds.StudyDate = ds.ContentDate = datetime.date(2020, 1, 1).strftime("%Y%m%d")
    ds.SeriesDescription = description
    ds.BodyPartExamined = "KNEE"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = pixels_u16.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [f"{spacing_mm:.6f}", f"{spacing_mm:.6f}"]
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.PixelData = np.ascontiguousarray(pixels_u16, np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


def ground_truth(film: FilmSpec, name: str) -> dict:
    knees = []
    for k in film.knees:
        px = film.landmarks_px(k)
        mm = k.landmarks_film_mm
        jsw = measure.joint_space_width(px, k.side, film.spacing_mm)
        knees.append({
            "side": k.side, "kl": k.kl, "subject_id": k.subject_id,
            "centre_px": [round(float(v), 4) for v in px[sm.CENTRE_INDEX]],
            "landmarks_px": {lab: [round(float(v), 4) for v in p] for lab, p in zip(sm.LANDMARK_LABELS, px)},
            "landmarks_mm": {lab: [round(float(v), 4) for v in p] for lab, p in zip(sm.LANDMARK_LABELS, mm)},
            "jsw_medial_mm": jsw.medial_mm, "jsw_lateral_mm": jsw.lateral_mm,
            "points_outside_film": points_outside(film, k), "cut": points_outside(film, k) > 0,
            "scale": k.scale, "angle_deg": k.angle_deg, "osteophytes_mm": list(k.osteophytes_mm),
        })
    h, w = film.shape_px
    return {"image": name, "width_px": w, "height_px": h, "pixel_spacing_mm": film.spacing_mm, "seed": film.seed,
            "pixel_convention": "x right, y down, pixel centres at integer coordinates",
            "knees": knees, "appearance": film.appearance}


def write_film(film: FilmSpec, out_dir, name: str, png: bool = True, dicom: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = render(film)
    truth = ground_truth(film, name)
    files = {}
    if dicom:
        files["dicom"] = str(write_dicom(out_dir / f"{name}.dcm", to_uint16(image), film.spacing_mm,
                                         patient_id=f"PHANTOM-{film.seed}"))
    if png:
        png_dir = out_dir / "preview" if dicom else out_dir
        png_dir.mkdir(exist_ok=True)
        path = png_dir / f"{name}.png"
        cv2.imwrite(str(path), np.round(image * 255).astype(np.uint8))
        files["png"] = str(path)
    truth["files"] = {k: Path(v).relative_to(out_dir).as_posix() for k, v in files.items()}
    (out_dir / f"{name}.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return truth


def shapes_from_csv(path) -> list:
    """(shape_mm, kl, subject_id) per row of a KNEEL CSV."""
    return [(a.landmarks_mm, a.kl, f"{a.subject_id}{a.side}") for a in sm.read_kneel_csv(path)]


def generate(out_dir, n: int, seed: int = 0, shapes_csv=None, single_knee_fraction: float = 0.2,
             png: bool = True, dicom: bool = True, spacing_range=(0.14, 0.3), keep_on_film: bool = True) -> list:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    given = shapes_from_csv(shapes_csv) if shapes_csv else None
    truths = []
    cursor = 0
    for i in range(n):
        film_seed = seed * 100_003 + i
        shapes = None
        if given:
            rng = np.random.default_rng(film_seed)
            count = 1 if rng.random() < single_knee_fraction else 2
            shapes = [given[(cursor + j) % len(given)] for j in range(count)]
            cursor += count
        film = sample_film(film_seed, shapes=shapes, single_knee_fraction=single_knee_fraction,
                           spacing_range=spacing_range, keep_on_film=keep_on_film)
        truths.append(write_film(film, out_dir, f"knee_{seed:03d}_{i:04d}", png=png, dicom=dicom))
    with open(out_dir / "ground_truth.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "side", "kl", "pixel_spacing_mm",
                    *[f"{lab}_{a}_px" for lab in sm.LANDMARK_LABELS for a in "xy"],
                    "jsw_medial_mm", "jsw_lateral_mm", "points_outside_film"])
        for t in truths:
            for k in t["knees"]:
                w.writerow([t["files"].get("dicom", t["files"].get("png")), k["side"], k["kl"], t["pixel_spacing_mm"],
                            *[v for lab in sm.LANDMARK_LABELS for v in k["landmarks_px"][lab]],
                            k["jsw_medial_mm"], k["jsw_lateral_mm"], k["points_outside_film"]])
    (out_dir / "films.json").write_text(json.dumps({"seed": seed, "n": n, "shapes": str(shapes_csv or "shape model"),
                                                    "films": [t["image"] for t in truths]}, indent=1))
    return truths


# --------------------------------------------------------------------------------------------
# command line

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--shapes", type=Path, metavar="CSV",
                        help="render these landmark sets (KNEEL bf_landmarks CSV layout, 0.3 mm ROI pixels) "
                             "instead of sampling the shape model")
    parser.add_argument("--n", type=int, default=10, help="number of films")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single-knee-fraction", type=float, default=0.2)
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument("--no-dicom", action="store_true")
    parser.add_argument("--allow-cut-knees", action="store_true",
                        help="leave knees partly off the film (default: every landmark lies at least "
                             f"{FILM_MARGIN_MM:g} mm inside; the ground truth counts points_outside_film)")


def run(args) -> int:
    truths = generate(args.out, args.n, args.seed, args.shapes, args.single_knee_fraction,
                      png=not args.no_png, dicom=not args.no_dicom, keep_on_film=not args.allow_cut_knees)
    knees = sum(len(t["knees"]) for t in truths)
    cut = sum(k["cut"] for t in truths for k in t["knees"])
    print(f"{len(truths)} films with {knees} knees in {args.out} (ground truth: {args.out / 'ground_truth.csv'})"
          + (f"; {cut} knee(s) partly off the film (points_outside_film in the ground truth)" if cut else ""))
    return 0
