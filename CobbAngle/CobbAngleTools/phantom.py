"""Synthetic spine AP radiographs ("phantoms") with exactly known vertebra corner landmarks.

Plain numpy/scipy/OpenCV: no torch, no Slicer. One seed gives one film, always the same one.

The film imitates an AASCE-style adolescent standing spine AP radiograph (portrait, 8-bit,
bone bright, the field from about C7 to the top of the sacrum): a trunk of soft tissue that
thins towards the sides, dark lungs with a bright mediastinum and heart, the diaphragm domes,
12 pairs of ribs (projected from a 3-D model of each rib), clavicles, scapulae, the iliac wings
and the sacrum, and the 17 vertebrae T1..L5 (plus C6/C7 above and S1 below) with their
cortical rims, endplates, pedicle rings, spinous and transverse processes and laminae. The
spine follows a scoliotic curve (single C, double S or triple) built so that its Cobb angles are
those the generator intends; the vertebrae rotate axially at the apex (the pedicles and spinous
processes migrate towards the concavity). The film then goes through scatter, blur, quantum
noise, a heel-effect gradient, random contrast/gamma and optionally JPEG compression.

Landmarks are (17, 4, 2) float64 image pixels (x right, y down, pixel centres at integer
coordinates), vertebrae T1..L5 from top to bottom, corners top-left, top-right, bottom-left,
bottom-right (the AASCE order). Each vertebral body is drawn as a polygon whose corners are
exactly these points, so the picture and the landmarks agree by construction.

Orientation: radiological convention, the patient's right on the image's left. A "right
thoracic" curve is convex towards the image's left.

    mskmorph phantom spine --out DIR [--n N] [--seed S] [--height H] [--width W] [--field aasce|full]

``--field full`` draws a standing long-cassette full-spine film instead: the skull base and the
mandible, C1..C7 (small, no ribs; C1's lateral masses, C2's dens), T1..L5 (ribs on T1..T12 only),
the sacrum, the whole pelvis and the proximal femora, C1 to the ischia filling most of the height.
The same 68 corners of T1..L5, and in NAME.json the corners of C1..C7 and S1 as well.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import PchipInterpolator

GENERATOR_VERSION = 2
N_VERT = 17
NAMES = ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12",
         "L1", "L2", "L3", "L4", "L5")

# Vertebral body width and height (mm), T1..L5: medians of the AASCE 2019 training labels at
# about 0.2 mm per pixel (widths 155..221 px, heights 63..117 px on a 900 x 2400 film).
_BODY_W_MM = np.array([31.0, 28.4, 26.9, 26.9, 26.6, 27.2, 28.7, 28.9, 30.9, 31.4, 34.0, 34.3,
                       37.6, 38.2, 40.7, 42.4, 44.2])
_BODY_H_MM = np.array([12.7, 13.6, 14.8, 16.3, 16.6, 16.3, 17.4, 17.8, 18.3, 18.6, 19.8, 20.3,
                       21.4, 21.9, 22.5, 23.5, 21.9])
# Disc heights (mm) below each vertebra (T1/T2 .. L5/S1).
_DISC_MM = np.array([4.0, 4.2, 4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6, 5.9, 6.2, 6.6,
                     7.2, 7.8, 8.4, 9.0, 9.0])

# attenuation of each drawn bone layer (the film's brightness of bone)
BONE_WEIGHTS = {
    "body": 0.16, "body_core": -0.07, "rim": 0.2, "endplate": 0.26, "ghost": 0.05, "pedicle_fill": 0.06,
    "pedicle_ring": 0.16, "spinous": 0.10, "arch": 0.10, "transverse": 0.10,
    "rib_post": 0.19, "rib_post_in": -0.08, "rib_ant": 0.08, "rib_ant_in": -0.04,
    "clav": 0.28, "clav_in": -0.03, "scapula": 0.06, "ilium": 0.16, "ilium_rim": 0.14, "sacrum": 0.18,
}

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_SCALE = 1 << _SHIFT
_LR = 4  # the smooth soft-tissue layers are computed at 1/_LR resolution


FIELDS = ("aasce", "full")
# the vertebrae drawn above T1: C6, C7 on an AASCE-like film, C1..C7 on a full-spine film
_ABOVE = {"aasce": ("C6", "C7"), "full": ("C1", "C2", "C3", "C4", "C5", "C6", "C7")}


@dataclass
class SpinePhantom:
    pixels: np.ndarray  # uint8 H x W
    landmarks: np.ndarray  # (17, 4, 2) float64, pixels, T1..L5, TL TR BL BR
    spacing_mm: tuple[float, float]  # (row, column) mm per pixel
    seed: int
    curve_description: str  # the generator's intent, e.g. "double curve: thoracic right 34 deg, ..."
    field: str = "aasce"  # "aasce": C7 to the top of the sacrum; "full": C1 to the pelvis (long cassette)
    # the corners (4, 2) of the drawn vertebrae outside T1..L5, by name: C6, C7, S1 ("aasce") or
    # C1..C7, S1 ("full"); S1's lower corners are those of its drawn body (the first sacral segment)
    other_landmarks: dict | None = None
    layers: dict | None = None  # with ``keep_layers``: the drawn bone layers by name (uint8, H x W), to check the drawing


# --------------------------------------------------------------------------------------------
# drawing helpers (OpenCV on uint8 layers, anti-aliased, sub-pixel)

def _pts(p) -> np.ndarray:
    return np.round(np.asarray(p, dtype=np.float64).reshape(-1, 2) * _SCALE).astype(np.int32)


def _fill(layer, poly, value=255):
    cv2.fillPoly(layer, [_pts(poly)], int(value), cv2.LINE_AA, _SHIFT)


def _line(layer, poly, thickness, value=255, closed=False):
    t = max(1, int(round(thickness)))
    cv2.polylines(layer, [_pts(poly)], closed, int(value), t, cv2.LINE_AA, _SHIFT)


def _seg(layer, p0, p1, thickness, value=255):
    t = max(1, int(round(thickness)))
    a, b = _pts(p0)[0], _pts(p1)[0]
    cv2.line(layer, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), int(value), t, cv2.LINE_AA, _SHIFT)


def _bilinear(c: np.ndarray, u, v) -> np.ndarray:
    """Body-local (u across, v down; 0..1 over the body) to image, from the corners TL TR BL BR."""
    u = np.asarray(u, dtype=np.float64)[..., None]
    v = np.asarray(v, dtype=np.float64)[..., None]
    top = (1 - u) * c[0] + u * c[1]
    bot = (1 - u) * c[2] + u * c[3]
    return (1 - v) * top + v * bot


def _ellipse_uv(cu, cv, au, av, n=28):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return cu + au * np.cos(t), cv + av * np.sin(t)


def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    n = rng.standard_normal(shape).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma)
    return n / (n.std() + 1e-6)


# --------------------------------------------------------------------------------------------
# the curve

def _curve_plan(rng, mt_change_deg: float = 0.0):
    """End vertebrae (as vertebra levels, 0 = T1 .. 16 = L5) and the tangent-angle change of
    each curve between consecutive ends, in degrees, plus a description of the intent.
    ``mt_change_deg``: the thoracic curve's change grown by this much (the same spine later),
    every random draw as without it."""
    kind = rng.choice(["double", "thoracic", "lumbar", "triple", "mild"], p=[0.42, 0.25, 0.15, 0.1, 0.08])
    thoracic_right = rng.random() < 0.8
    s = 1.0 if thoracic_right else -1.0  # + : tangent angle increases: convex to the image left
    side = {1.0: "right", -1.0: "left"}

    def words(sign):
        return side[sign]

    if kind == "double":
        u = int(rng.integers(3, 7)); n = int(rng.integers(10, 13)); l = int(rng.integers(14, 17))
        mt = rng.uniform(18, 60); tl = rng.uniform(12, 0.9 * mt + 10); pt = rng.uniform(2, 12)
        ends = [0, u, n, l]
        mags = [-s * pt, s * mt, -s * tl]
        desc = f"double curve: thoracic {words(s)} {mt:.0f} deg, lumbar {words(-s)} {tl:.0f} deg"
    elif kind == "thoracic":
        u = int(rng.integers(4, 7)); n = int(rng.integers(10, 13))
        mt = rng.uniform(15, 60); pt = rng.uniform(2, 12); tl = rng.uniform(4, 0.45 * mt + 4)
        ends = [0, u, n, 16]
        mags = [-s * pt, s * mt, -s * tl]
        desc = f"single thoracic curve: {words(s)} {mt:.0f} deg"
    elif kind == "lumbar":
        s = -s
        u = int(rng.integers(8, 11)); l = int(rng.integers(14, 17))
        tl = rng.uniform(15, 50); mt = rng.uniform(4, 0.45 * tl + 4)
        ends = [0, u, l]
        mags = [-s * mt, s * tl]
        desc = f"single thoracolumbar/lumbar curve: {words(s)} {tl:.0f} deg"
    elif kind == "triple":
        u = int(rng.integers(4, 6)); n = int(rng.integers(10, 12)); l = int(rng.integers(14, 17))
        pt = rng.uniform(12, 30); mt = rng.uniform(pt + 5, 60); tl = rng.uniform(12, 0.9 * mt + 8)
        ends = [0, u, n, l]
        mags = [-s * pt, s * mt, -s * tl]
        desc = (f"triple curve: proximal thoracic {words(-s)} {pt:.0f} deg, thoracic {words(s)} "
                f"{mt:.0f} deg, lumbar {words(-s)} {tl:.0f} deg")
    else:
        u = int(rng.integers(4, 8)); n = int(rng.integers(11, 15))
        mt = rng.uniform(3, 10)
        ends = [0, u, n, 16]
        mags = [-s * rng.uniform(0, 4), s * mt, -s * rng.uniform(0, 5)]
        desc = f"nearly straight spine: thoracic {words(s)} {mt:.0f} deg"
    # the thoracic curve (mags[1]; in a single lumbar curve the thoracic one above it, mags[0])
    # grows, bending the same way; the curves above and below keep their own change
    k = 0 if kind == "lumbar" else 1
    mags[k] += np.sign(mags[k]) * mt_change_deg
    # the end vertebrae are where the tangent peaks: centre of the vertebra a touch inside
    levels = np.array(ends, dtype=np.float64)
    theta = np.concatenate([[0.0], np.cumsum(mags)])
    if levels[-1] < 16:  # flatten below the last end vertebra
        levels = np.append(levels, 17.5); theta = np.append(theta, theta[-1] - np.sign(mags[-1]) * rng.uniform(0, 4))
    else:
        levels = np.append(levels, 17.5); theta = np.append(theta, theta[-1] - np.sign(mags[-1]) * rng.uniform(2, 8))
    levels = np.concatenate([[-2.5], levels]); theta = np.concatenate([[theta[0] - np.sign(mags[0]) * rng.uniform(0, 4)], theta])
    return levels, theta, desc, kind


# --------------------------------------------------------------------------------------------
# the generator

def render_spine_phantom(seed: int = 0, *, height: int = 2400, width: int = 900, mt_change_deg: float = 0.0,
                         landmarks_only: bool = False, field: str = "aasce", keep_layers: bool = False) -> SpinePhantom:
    """One synthetic spine AP radiograph and its 68 exact corner landmarks. ``mt_change_deg``:
    the same spine (same anatomy, same film) with the thoracic curve's bend grown by this much
    (``render_follow_up`` makes it an exact change of the Cobb angle); ``landmarks_only``: the
    corners without the picture (``pixels`` empty). ``field``: "aasce" (default) frames the film
    as an AASCE film (T1 near the top, L5 near the bottom); "full" is a standing long-cassette
    full-spine film: the skull base, C1..C7 (small, no ribs), T1..L5, the sacrum, the whole pelvis
    and the femoral heads, the spine from C1 to the ischia filling most of the height. The same
    seed gives the same spine and curve in both fields. ``keep_layers``: keep the drawn bone layers
    (``layers``: "rib_post", "body", ... before exposure and noise)."""
    if height < 256 or width < 128:
        raise ValueError("a spine phantom needs at least 256 x 128 pixels")
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; choose one of {', '.join(FIELDS)}")
    full = field == "full"
    n_above = len(_ABOVE[field])  # vertebrae drawn above T1 (T1 is corners[n_above])
    rng = np.random.default_rng(int(seed))
    H, W = int(height), int(width)

    # ---------------- anatomy in mm along the spine
    size = rng.uniform(0.9, 1.08)
    bw = _BODY_W_MM * size * rng.uniform(0.95, 1.05) * (1 + 0.025 * rng.standard_normal(N_VERT))
    bh = _BODY_H_MM * size * (1 + 0.03 * rng.standard_normal(N_VERT))
    dh = _DISC_MM * size * rng.uniform(0.8, 1.2) * (1 + 0.08 * rng.standard_normal(N_VERT))
    # C6, C7 above and S1 below (index -2, -1, 17 in the extended list)
    ext_w = np.concatenate([[bw[0] * 0.68, bw[0] * 0.8], bw, [bw[-1] * 1.05]])
    ext_h = np.concatenate([[bh[0] * 0.82, bh[0] * 0.9], bh, [bh[-1] * 1.25]])
    ext_d = np.concatenate([[3.5 * size, 3.8 * size], dh, [0.0]])
    if full:  # C1..C5 above C6: C1 the atlas (its lateral masses), C2 the axis body (the dens drawn above it)
        ext_w = np.concatenate([bw[0] * np.array([1.45, 0.6, 0.6, 0.62, 0.65]), ext_w])
        ext_h = np.concatenate([bh[0] * np.array([0.7, 1.15, 0.8, 0.8, 0.82]), ext_h])
        ext_d = np.concatenate([size * np.array([2.5, 3.2, 3.3, 3.4, 3.5]), ext_d])
    n_ext = ext_w.size  # 20: C6 C7 T1..L5 S1 (25 on a full-spine film: C1..C7 T1..L5 S1)
    tops = np.zeros(n_ext); bots = np.zeros(n_ext)
    s_acc = 0.0
    for i in range(n_ext):
        tops[i] = s_acc; bots[i] = s_acc + ext_h[i]; s_acc = bots[i] + ext_d[i]
    centres = (tops + bots) / 2
    ext_level = np.arange(n_ext) - float(n_above)  # T1 = 0

    levels, theta_knots, desc, kind = _curve_plan(rng, mt_change_deg)
    theta_of_level = PchipInterpolator(levels, np.radians(theta_knots), extrapolate=True)
    s_grid = np.arange(tops[0] - 10.0, bots[-1] + 40.0, 0.25)
    lev_grid = np.interp(s_grid, centres, ext_level, left=None, right=None)
    # extrapolate the level linearly beyond the ends
    lev_grid = np.where(s_grid < centres[0], ext_level[0] + (s_grid - centres[0]) / (ext_h[0] + ext_d[0]), lev_grid)
    lev_grid = np.where(s_grid > centres[-1], ext_level[-1] + (s_grid - centres[-1]) / (ext_h[-1] + 8.0), lev_grid)
    # a full film's neck continues the curve's tangent above C7 (no cubic extrapolation far above T1)
    th0 = theta_of_level(np.maximum(lev_grid, -2.5) if full else lev_grid)
    # balance: the sacrum roughly below C7 (a random decompensation of a few mm)
    decomp = rng.normal(0, 8.0)
    off = 0.0
    for _ in range(30):
        th = th0 + off
        xs = np.concatenate([[0.0], np.cumsum(np.sin(th[1:]) * np.diff(s_grid))])
        i_top = np.searchsorted(s_grid, centres[n_above - 1]); i_bot = np.searchsorted(s_grid, centres[-1])
        err = (xs[i_bot] - xs[i_top]) - decomp
        off -= err / (s_grid[i_bot] - s_grid[i_top])
    th = th0 + off
    xs = np.concatenate([[0.0], np.cumsum(np.sin(th[1:]) * np.diff(s_grid))])
    ys = np.concatenate([[0.0], np.cumsum(np.cos(th[1:]) * np.diff(s_grid))])

    def at(s):
        return (np.interp(s, s_grid, xs), np.interp(s, s_grid, ys), np.interp(s, s_grid, th))

    # ---------------- mm -> pixels: T1 top near the top of the film, L5 bottom near the bottom
    # framing as on the AASCE films: T1's upper endplate at 2.5..4.4 % of the film height, L5's
    # lower endplate at 91..95 % (the quartiles of 161 AASCE training films; generator version 1
    # drew 2.5..6.5 % and 87..95 %, leaving more film below L5 than most AASCE films have, and the
    # network then read the sacrum as L5)
    top_frac = rng.uniform(0.025, 0.044)
    bot_frac = rng.uniform(0.911, 0.945)
    y_t1 = at(tops[2])[1]; y_l5 = at(bots[-2])[1]
    if full:  # a long cassette: C1's top at 4..8 % of the height (the skull base above), the ischia
        # (about 185 mm below S1's upper endplate) at 88..93 %, the femora below
        # (the same random draws as the AASCE framing, mapped: the rest of the spine stays the same)
        top_frac = 0.04 + (top_frac - 0.025) * (0.04 / 0.019)
        bot_frac = 0.88 + (bot_frac - 0.911) * (0.05 / 0.034)
        y_t1 = at(tops[0])[1]; y_l5 = at(tops[-1])[1] + 185.0
    spacing = (y_l5 - y_t1) / ((bot_frac - top_frac) * H)  # mm per pixel
    y0_px = top_frac * H - y_t1 / spacing
    mm = 1.0 / spacing  # pixels per mm

    # ---------------- vertebra corners (C6..S1), in mm first
    tilt_noise = np.radians(rng.normal(0, 1.2, n_ext - n_above + 2))
    wedge_noise = np.radians(rng.normal(0, 0.8, n_ext - n_above + 2))
    if full:  # C1..C5 from their own stream: C6..S1 as on the AASCE-framed film of the same seed
        neck_rng = np.random.default_rng([int(seed), 25])
        tilt_noise = np.concatenate([np.radians(neck_rng.normal(0, 1.2, n_above - 2)), tilt_noise])
        wedge_noise = np.concatenate([np.radians(neck_rng.normal(0, 0.8, n_above - 2)), wedge_noise])
    corners = np.zeros((n_ext, 4, 2))
    angles = np.zeros(n_ext)
    for i in range(n_ext):
        xt, yt, tt = at(tops[i]); xb, yb, tb = at(bots[i])
        a_top = tt + tilt_noise[i] + wedge_noise[i] / 2
        a_bot = tb + tilt_noise[i] - wedge_noise[i] / 2
        w_top = ext_w[i] * 0.985; w_bot = ext_w[i] * 1.015
        e_top = np.array([np.cos(a_top), -np.sin(a_top)]); e_bot = np.array([np.cos(a_bot), -np.sin(a_bot)])
        pt = np.array([xt, yt]); pb = np.array([xb, yb])
        c = np.stack([pt - e_top * w_top / 2, pt + e_top * w_top / 2, pb - e_bot * w_bot / 2, pb + e_bot * w_bot / 2])
        corners[i] = c
        angles[i] = (a_top + a_bot) / 2
    # the sacrum near the middle of the film, unless a large curve would then leave the film:
    # then the spine moves sideways (keeping a margin for the pedicles and transverse processes)
    x_sacrum = at(centres[-1])[0]
    x0_px = W / 2 + rng.normal(0, 0.025 * W) - x_sacrum / spacing
    xs_lm = corners[n_above:n_above + N_VERT, :, 0] / spacing
    margin = 0.08 * W
    lo_x, hi_x = x0_px + xs_lm.min(), x0_px + xs_lm.max()
    if hi_x - lo_x > W - 2 * margin:
        x0_px += W / 2 - (lo_x + hi_x) / 2
    elif lo_x < margin:
        x0_px += margin - lo_x
    elif hi_x > W - margin:
        x0_px -= hi_x - (W - margin)

    def to_px(x_mm, y_mm):
        return np.stack([x0_px + np.asarray(x_mm) / spacing, y0_px + np.asarray(y_mm) / spacing], axis=-1)

    corners = to_px(corners[..., 0], corners[..., 1])
    line_px = to_px(xs, ys)  # the spine's centre line (for the trunk, lungs, ribs)
    landmarks = corners[n_above:n_above + N_VERT].copy()
    other = {name: corners[i].astype(np.float64) for i, name in enumerate(_ABOVE[field])}
    other["S1"] = corners[-1].astype(np.float64)
    if landmarks_only:
        return SpinePhantom(pixels=np.zeros((0, 0), np.uint8), landmarks=landmarks.astype(np.float64),
                            spacing_mm=(float(spacing), float(spacing)), seed=int(seed), curve_description=desc,
                            field=field, other_landmarks=other)
    centres_px = corners.mean(axis=1)

    # axial rotation: posterior elements migrate towards the concavity, by the body's deviation
    # from the line C7 - S1
    ref0, ref1 = centres_px[n_above - 1], centres_px[-1]
    tref = (centres_px[:, 1] - ref0[1]) / (ref1[1] - ref0[1])
    x_ref = ref0[0] + tref * (ref1[0] - ref0[0])
    body_w_px = ext_w * mm
    k_rot = rng.uniform(0.12, 0.24)
    rot_u = np.clip(-k_rot * (centres_px[:, 0] - x_ref) / body_w_px, -0.22, 0.22)

    # ---------------- layers
    Hs, Ws = (H + _LR - 1) // _LR, (W + _LR - 1) // _LR
    soft = _soft_tissue(rng, H, W, Hs, Ws, line_px, centres_px[n_above - 2:], corners[n_above - 2:], mm, spacing,
                        full)

    L = {k: np.zeros((H, W), np.uint8) for k in (
        "body", "body_core", "rim", "endplate", "ghost", "pedicle_fill", "pedicle_ring", "spinous", "arch",
        "transverse", "rib_post", "rib_post_in", "rib_ant", "rib_ant_in", "clav", "clav_in",
        "ilium", "ilium_rim", "sacrum", "scapula")}
    y_central = H * rng.uniform(0.45, 0.6)
    for i in range(n_ext):
        _draw_vertebra(L, corners[i], i - n_above, rot_u[i], mm, (centres_px[i, 1] - y_central) / H, rng)
    _draw_ribs(L, rng, corners[n_above - 2:], angles[n_above - 2:], rot_u[n_above - 2:], mm, W)
    _draw_shoulders(L, rng, corners[n_above - 2:], mm)
    _draw_pelvis(L, rng, corners[n_above - 2:], angles[n_above - 2:], mm, full)
    if full:
        _draw_skull_base(L, rng, corners, mm)

    f = {k: v.astype(np.float32) * (1.0 / 255.0) for k, v in L.items()}
    bone = sum(weight * f[layer] for layer, weight in BONE_WEIGHTS.items())
    # bone grows denser downwards (lumbar bodies are thicker in the beam direction)
    bone *= (0.8 + 0.45 * np.linspace(0, 1, H, dtype=np.float32))[:, None]
    tex = _smooth_noise(rng, (H, W), 2.0) - 0.5 * _smooth_noise(rng, (H, W), 5.0)
    bone *= 1.0 + 0.13 * tex + 0.12 * cv2.resize(_smooth_noise(rng, (Hs, Ws), 4.0), (W, H))
    bone *= rng.uniform(0.85, 1.2)

    if full:  # a long cassette's exposure is set for the whole trunk: the abdomen and pelvis less saturated
        soft *= np.interp(np.arange(H, dtype=np.float32), [0.0, 0.45 * H, H], [0.95, 0.85, 0.7]).astype(np.float32)[:, None]
    A = soft + bone
    # heel effect: exposure falls off towards the anode side (top or bottom)
    heel = rng.uniform(0.0, 0.18) * (1 if rng.random() < 0.5 else -1)
    A += (heel * np.linspace(-0.5, 0.5, H, dtype=np.float32))[:, None]
    D = 1.0 - np.exp(-np.maximum(A, 0))
    # scatter (veiling): a wide low-pass of the signal
    small = cv2.resize(D, (Ws, Hs), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 40.0 / _LR * (W / 900))
    sc = rng.uniform(0.05, 0.2)
    D = (1 - sc) * D + sc * cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    D = cv2.GaussianBlur(D, (0, 0), rng.uniform(1.4, 2.4) * (H / 2400))
    # quantum noise (larger where the detector saw more photons, i.e. the dark areas) + grain
    n0 = rng.uniform(800, 4000)
    noise = rng.standard_normal((H, W)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 0.7) * 1.6
    D = D + np.sqrt(np.clip(1 - D, 0.02, 1) / n0) * noise
    # contrast / gamma (film and scanner)
    lo = rng.uniform(0.14, 0.26)
    hi = rng.uniform(0.86, 0.95)
    gamma = rng.uniform(0.8, 1.3)
    V = np.clip((D - lo) / (hi - lo), 0, 1) ** gamma
    img = np.clip(V * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = _film_details(rng, img, landmarks)

    return SpinePhantom(
        pixels=img, landmarks=landmarks.astype(np.float64), spacing_mm=(float(spacing), float(spacing)),
        seed=int(seed), curve_description=desc, field=field, other_landmarks=other,
        layers=L if keep_layers else None,
    )


def _soft_tissue(rng, H, W, Hs, Ws, line_px, centres_px, corners, mm, spacing, full=False) -> np.ndarray:
    """Trunk thickness, lungs, mediastinum and heart, diaphragm, bowel gas, psoas; at 1/_LR
    resolution (all smooth), returned full size as attenuation. ``centres_px`` and ``corners``
    from C6 down; ``full``: a full-spine film (the neck and the head above the shoulders)."""
    r = 1.0 / _LR
    yy = (np.arange(Hs, dtype=np.float32) + 0.5) * _LR - 0.5
    xx = (np.arange(Ws, dtype=np.float32) + 0.5) * _LR - 0.5
    # spine x at each row
    order = np.argsort(line_px[:, 1])
    x_spine = np.interp(yy, line_px[order, 1], line_px[order, 0]).astype(np.float32)
    cy = centres_px[:, 1]  # C6 .. S1

    def level_y(lev):  # y of a (fractional) vertebra level, T1 = 0
        return float(np.interp(lev, np.arange(cy.size) - 2.0, cy, left=cy[0] + (lev + 2) * (cy[1] - cy[0]),
                               right=cy[-1] + (lev - 17) * (cy[-1] - cy[-2])))

    # trunk half width (mm) along the body: shoulders, chest, waist, hips
    chest = rng.uniform(112, 140); waist = chest * rng.uniform(0.78, 0.92); hips = waist * rng.uniform(1.1, 1.3)
    ky = [level_y(-3), level_y(2), level_y(8), level_y(13.5), level_y(17.5)]
    kw = [chest * 1.25, chest * 0.98, chest, waist, hips]
    if full:  # the head, the neck (narrowest at C2..C4) and the shoulders at C7/T1 above the chest
        ky = [level_y(-16), level_y(-9.5), level_y(-6), level_y(-2.5), level_y(-0.5)] + ky[1:]
        kw = [80.0, 72.0, 50.0, 58.0, chest * 1.22] + kw[1:]
    hw = np.interp(yy, ky, kw).astype(np.float32) * mm
    trunk_cx = (0.5 * x_spine + 0.5 * (np.median(x_spine))).astype(np.float32) + rng.normal(0, 4) * mm
    dx = (xx[None, :] - trunk_cx[:, None]) / hw[:, None]
    thick = np.sqrt(np.clip(1 - dx ** 2, 0, 1))
    # depth of the trunk: thicker at the abdomen
    if full:  # the neck is thinner than the chest, the head about as thick
        depth = np.interp(yy, [level_y(-10), level_y(-6), level_y(-1.5), level_y(0), level_y(10), level_y(17)],
                          [0.8, 0.55, 0.6, 0.8, 0.95, 1.05]).astype(np.float32)
    else:
        depth = np.interp(yy, [level_y(0), level_y(10), level_y(17)], [0.8, 0.95, 1.05]).astype(np.float32)
    A = 1.35 * thick * depth[:, None]

    # lungs: between the mediastinum and the chest wall, down to the diaphragm domes
    lung = np.zeros((Hs, Ws), np.uint8)
    level_h = cy[12] - cy[11]
    dome_r = level_y(rng.uniform(8.8, 10.2))
    dome_l = dome_r + rng.uniform(0.2, 1.0) * level_h
    wall = hw * rng.uniform(0.84, 0.9)
    med = rng.uniform(15, 22) * mm
    heart_w = rng.uniform(28, 52) * mm  # left heart border beyond the mediastinum (image right)
    atrium = rng.uniform(6, 16) * mm  # right atrium bulge (image left)
    knob = rng.uniform(8, 18) * mm  # aortic knob (image right)
    y_top = level_y(-3.0)
    y_knob = level_y(rng.uniform(2.5, 3.5))
    y_h0 = level_y(rng.uniform(4.5, 5.5))

    def medial(side, y, dome):
        m = med
        if side > 0:
            m += knob * np.exp(-((y - y_knob) / (0.8 * level_h)) ** 2)
            t = np.clip((y - y_h0) / (dome - y_h0), 0, 1)
            m += heart_w * np.sin(np.pi / 2 * min(1.0, t / 0.85)) ** 1.2
        else:
            t = np.clip((y - y_h0) / (dome - y_h0), 0, 1)
            m += atrium * np.sin(np.pi * min(1.0, 0.3 + 0.7 * t)) ** 0.5 * (t > 0)
        return m

    x_mid = (0.4 * x_spine + 0.6 * np.median(x_spine)).astype(np.float32)
    half_body = np.interp(yy, centres_px[:, 1], np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1) / 2)
    for side in (-1, 1):
        dome = dome_r if side < 0 else dome_l
        para = rng.uniform(4, 8) * mm
        pts_out, pts_in = [], []
        for k in range(48):
            y = y_top + (dome - y_top) * k / 47
            iy = min(Hs - 1, max(0, int(y / _LR)))
            apex = np.clip((y - y_top) / (level_y(3.0) - y_top), 0, 1)
            wl = wall[iy] * (0.5 + 0.5 * np.sqrt(apex))
            # the mediastinum stays near the midline; a scoliotic spine bulges into the lung
            x_in = x_mid[iy] + side * medial(side, y, dome)
            x_para = x_spine[iy] + side * (half_body[iy] + para)
            x_in = max(x_in, x_para) if side > 0 else min(x_in, x_para)
            pts_in.append((x_in, y))
            pts_out.append((x_mid[iy] + side * wl, y))
        # diaphragm: highest at mid lung, lowest in the lateral costophrenic angle
        x_in, x_out = pts_in[-1][0], pts_out[-1][0]
        cardio = rng.uniform(6, 14) * mm
        recess = rng.uniform(18, 35) * mm
        dome_pts = []
        for k in range(1, 24):
            t = k / 24
            x = x_in + (x_out - x_in) * t
            y = dome + cardio * (1 - t / 0.45) ** 2 * (t < 0.45) + recess * max(0.0, (t - 0.5) / 0.5) ** 2.2
            dome_pts.append((x, y))
        pts_out[-1] = (x_out, dome + recess)
        poly = np.array(pts_in + dome_pts + pts_out[::-1]) * r
        _fill(lung, poly)
    lungf = cv2.GaussianBlur(lung.astype(np.float32) / 255, (0, 0), 2.0 * mm * r)
    # lung markings: vessels fanning out from the hila, thinning outwards
    vessels = np.zeros((Hs, Ws), np.uint8)
    for side in (-1, 1):
        y_hilum = level_y(rng.uniform(5.5, 6.5))
        iy = min(Hs - 1, int(y_hilum / _LR))
        hx = x_mid[iy] + side * (med + rng.uniform(15, 25) * mm)
        for _ in range(int(rng.integers(14, 22))):
            ang = rng.uniform(-1.4, 1.4) + (np.pi / 2 if side > 0 else -np.pi / 2)
            p = np.array([hx, y_hilum]); width = rng.uniform(2.5, 4.5) * mm
            pts = [p.copy()]
            for _ in range(int(rng.integers(8, 16))):
                ang += rng.normal(0, 0.3)
                p = p + rng.uniform(5, 9) * mm * np.array([np.sin(ang), np.cos(ang)])
                pts.append(p.copy())
            pts = np.array(pts)
            for j in range(len(pts) - 1):
                wj = width * (1 - j / len(pts)) ** 1.5
                _seg(vessels, pts[j] * r, pts[j + 1] * r, max(1.0, wj * r), int(110 + 100 * (1 - j / len(pts))))
    vessels = cv2.GaussianBlur(vessels.astype(np.float32) / 255, (0, 0), 1.2)
    markings = _smooth_noise(rng, (Hs, Ws), 3.0)
    lung_depth = rng.uniform(0.6, 0.8)
    # the air column is deepest in the middle of each lung, shallower at the apex and the edges
    A -= lungf * lung_depth * thick ** 0.6 * (1 - 0.15 * vessels - 0.06 * markings)
    # trachea: a darker air column over C6..T4
    tr = np.zeros((Hs, Ws), np.uint8)
    tw = rng.uniform(7, 9) * mm
    ptsL, ptsR = [], []
    for lev in np.linspace(-7.5 if full else -3, 4, 15):
        y = level_y(lev); iy = min(Hs - 1, max(0, int(y / _LR)))
        xc = x_spine[iy] + (lev - 4) * 0.0
        ptsL.append((xc - tw, y)); ptsR.append((xc + tw, y))
    _fill(tr, np.array(ptsL + ptsR[::-1]) * r)
    A -= 0.10 * cv2.GaussianBlur(tr.astype(np.float32) / 255, (0, 0), 2.0 * mm * r)
    # abdomen: stomach bubble under the left dome, some bowel gas
    gas = np.zeros((Hs, Ws), np.uint8)
    if rng.random() < 0.6:
        iy = min(Hs - 1, int(dome_l / _LR))
        c = (x_spine[iy] + rng.uniform(45, 75) * mm, dome_l + rng.uniform(15, 30) * mm)
        cv2.ellipse(gas, (int(c[0] * r), int(c[1] * r)), (int(rng.uniform(15, 28) * mm * r), int(rng.uniform(10, 18) * mm * r)),
                    0, 0, 360, 160, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 7))):
        y = level_y(rng.uniform(11, 18)); iy = min(Hs - 1, int(y / _LR))
        x = x_spine[iy] + rng.uniform(-1, 1) * hw[iy] * 0.75
        ax = (max(1, int(rng.uniform(6, 20) * mm * r)), max(1, int(rng.uniform(5, 14) * mm * r)))
        cv2.ellipse(gas, (int(x * r), int(y * r)), ax, float(rng.uniform(0, 180)), 0, 360, int(rng.uniform(60, 200)), -1, cv2.LINE_AA)
    A -= 0.25 * cv2.GaussianBlur(gas.astype(np.float32) / 255, (0, 0), 2.5 * mm * r)
    # psoas shadows: slightly denser bands diverging from T12 to the pelvis
    ps = np.zeros((Hs, Ws), np.uint8)
    for side in (-1, 1):
        p0 = corners[14][1 if side > 0 else 0]; p1 = corners[19][3 if side > 0 else 2]
        p2 = p1 + np.array([side * rng.uniform(35, 55) * mm, 0])
        _fill(ps, np.array([p0, p0 + [0, 5 * mm], p2, p1]) * r)
    A += 0.05 * cv2.GaussianBlur(ps.astype(np.float32) / 255, (0, 0), 3.0 * mm * r)
    # below the diaphragm the liver/spleen make the abdomen a touch denser
    A += 0.06 * np.clip((yy[:, None] - dome_r) / (30 * mm), 0, 1) * thick
    A = A * rng.uniform(0.9, 1.15)
    return cv2.resize(A.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)


def _draw_vertebra(L, c, level, ru, mm, obliquity, rng):
    """One vertebra from its four corners (TL TR BL BR): body with cortex and endplates, pedicle
    rings, laminae, spinous and transverse processes. level: T1 = 0, C7 = -1, S1 = 17."""
    n = 10
    t = np.linspace(0, 1, n + 1)
    waist = 0.035; bow = 0.012
    top = _bilinear(c, t, bow * np.sin(np.pi * t))
    right = _bilinear(c, 1 - waist * np.sin(np.pi * t), t)
    bottom = _bilinear(c, t[::-1], 1 - bow * np.sin(np.pi * t[::-1]))
    left = _bilinear(c, waist * np.sin(np.pi * t[::-1]), t[::-1])
    body = np.concatenate([top, right[1:], bottom[1:], left[1:-1]])
    if level == -7:  # C1, the atlas: its lateral masses either side of the dens, the arches between
        for u0, u1 in ((0.0, 0.3), (0.7, 1.0)):
            m = _bilinear(c, np.array([u0, u1, u1 - 0.03, u0 + 0.03]), np.array([0.0, 0.05, 1.0, 1.0]))
            _fill(L["body"], m)
            _line(L["rim"], m, max(2.0, 0.9 * mm), closed=True)
        _line(L["arch"], _bilinear(c, t, 0.45 + 0.1 * np.sin(np.pi * t)), max(2.0, 2.0 * mm), 200)
        for side in (-1, 1):  # the transverse processes, wide at C1
            tp = _bilinear(c, np.array([0.5 + side * 0.5, 0.5 + side * 0.68, 0.5 + side * 0.68, 0.5 + side * 0.5]),
                           np.array([0.25, 0.3, 0.7, 0.75]))
            _fill(L["transverse"], tp, 160)
        return
    if level == -6:  # C2: the dens rising from its body between C1's lateral masses
        h_v = np.linalg.norm(c[2] - c[0])
        rise = 0.8 * h_v
        eu, ev = _ellipse_uv(0.5, -0.5 * rise / h_v, 0.13, 0.6 * rise / h_v, 24)
        _fill(L["body"], _bilinear(c, eu, ev))
        _line(L["rim"], _bilinear(c, eu, ev), max(2.0, 0.8 * mm), closed=True)
    if level == 17:  # S1: the sacrum is drawn by the pelvis
        _fill(L["sacrum"], body, 200)
        _line(L["endplate"], top, 1.2 * mm, 255)
        return
    w_px = np.linalg.norm(c[1] - c[0]); h_px = np.linalg.norm(c[2] - c[0])
    _fill(L["body"], body)
    rim_t = max(2.0, 0.9 * mm)
    _line(L["rim"], right, rim_t)
    _line(L["rim"], left, rim_t)
    _line(L["endplate"], top, max(2.0, 1.1 * mm))
    _line(L["endplate"], bottom, max(2.0, 1.1 * mm))
    # the far rim of an endplate seen obliquely by the diverging beam
    eps = float(np.clip(abs(obliquity) * 0.35, 0.0, 0.14))
    if obliquity < 0:
        _line(L["ghost"], _bilinear(c, t, eps * np.sin(np.pi * t) + 0.01), max(2.0, 0.7 * mm))
    else:
        _line(L["ghost"], _bilinear(c, t, 1 - eps * np.sin(np.pi * t) - 0.01), max(2.0, 0.7 * mm))

    lumbar = level >= 12
    cervical = level < 0
    # the middle of the body looks lighter-weight (the pedicles and the walls carry the density)
    eu, ev = _ellipse_uv(0.5 + 0.5 * ru, 0.48, 0.24, 0.26, 24)
    _fill(L["body_core"], _bilinear(c, eu, ev), int(rng.uniform(120, 255)))
    # pedicles: vertical ovals hugging the side walls in the upper two thirds, shifted by the
    # axial rotation (the convex-side one migrates towards the middle and narrows)
    if lumbar:
        pu, au, av, pv = 0.15, 0.085, 0.24, 0.36
    else:
        pu, au, av, pv = 0.17, 0.08, 0.2, 0.34
    if not cervical:
        for side, base in ((-1, pu), (1, 1 - pu)):
            cu = base + ru
            a_u = au * (1 - 1.5 * abs(ru) if (side * ru) < 0 else 1 + 0.5 * abs(ru))
            eu, ev = _ellipse_uv(cu, pv, max(a_u, 0.03), av)
            e = _bilinear(c, eu, ev)
            _fill(L["pedicle_fill"], e)
            _line(L["pedicle_ring"], e, max(2.0, 1.2 * mm), closed=True)
    # laminae / posterior arch: a faint butterfly spanning the body and the disc below
    arch_uv = [(0.1, 0.12), (0.9, 0.12), (0.88, 0.8), (0.66, 1.22), (0.34, 1.22), (0.12, 0.8)]
    arch = _bilinear(c, np.array([a for a, _ in arch_uv]) + ru, np.array([b for _, b in arch_uv]))
    _fill(L["arch"], arch, 110)
    # laminae edges converging to the spinous process
    for side in (-1, 1):
        lam = _bilinear(c, np.array([0.5 + side * 0.36, 0.5 + side * 0.12]) + ru, np.array([0.7, 1.08]))
        _line(L["arch"], lam, max(2.0, 1.5 * mm), 200)
    # inferior articular processes (facets) reaching into the disc space
    for fu in (0.22, 0.78):
        eu, ev = _ellipse_uv(fu + ru, 1.02, 0.07, 0.16 if lumbar else 0.1, 16)
        f = _bilinear(c, eu, ev)
        _fill(L["arch"], f, 150)
        _line(L["arch"], f, max(2.0, 0.8 * mm), 220, closed=True)
    # spinous process: a teardrop on the midline, long and pointing down in the thorax
    if lumbar:
        v0, v1, wu = 0.42, 1.1, 0.06
    elif cervical:
        v0, v1, wu = 0.5, 1.25, 0.05
    else:
        v0, v1, wu = 0.55 + 0.02 * level, 1.5 + 0.02 * level, 0.045
    su = 0.5 + 1.3 * ru
    tt = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    vv = (v0 + v1) / 2 + (v1 - v0) / 2 * np.sin(tt)
    uu = su + wu * np.cos(tt) * (0.55 + 0.45 * np.sin(tt) if not lumbar else 1.0)
    sp = _bilinear(c, uu, vv)
    _fill(L["spinous"], sp, 120)
    _line(L["spinous"], sp, max(2.0, 0.8 * mm), 255, closed=True)
    # transverse processes: tapering bars from the pedicles
    if lumbar:
        reach = {12: 0.33, 13: 0.45, 14: 0.58, 15: 0.48, 16: 0.42}[level] * rng.uniform(0.85, 1.15)
        v_tp, thick = (0.42, 0.2) if level < 16 else (0.38, 0.32)
        tilt_v = -0.06
    elif not cervical or level == -1:
        reach, v_tp, thick, tilt_v = (0.3 if not cervical else 0.25), 0.32, 0.3, -0.12
    else:
        reach = 0.0
    if reach > 0:
        for side in (-1, 1):
            u0 = (0.12 if side < 0 else 0.88) + ru
            u1 = (-reach if side < 0 else 1 + reach) + 0.5 * ru
            uu = np.array([u0, u1, u1, u0])
            vv = np.array([v_tp - thick / 2, v_tp + tilt_v - thick / 4, v_tp + tilt_v + thick / 4, v_tp + thick / 2])
            tp = _bilinear(c, uu, vv)
            _fill(L["transverse"], tp, 160)
            _line(L["transverse"], tp, max(2.0, 0.8 * mm), 220, closed=True)


def _draw_ribs(L, rng, corners, angles, rot_u, mm, W):
    """12 pairs of ribs from T1..T12, each an elliptic arc around the chest, inclined downwards
    anteriorly, projected on the film."""
    reach = np.array([48, 70, 84, 94, 102, 108, 112, 115, 115, 112, 100, 78], dtype=np.float64)
    reach *= rng.uniform(0.88, 1.1)
    depth = rng.uniform(55, 75)
    for k in range(12):
        i = k + 2
        c = corners[i]
        a_tilt = angles[i]
        for side in (-1, 1):
            origin = _bilinear(c, -0.04 if side < 0 else 1.04, 0.32)
            a = reach[k] * (1 + 0.12 * side * rot_u[i] * 4) * (1 + 0.03 * rng.standard_normal())
            b = depth * (0.55 + 0.45 * min(1.0, k / 5))
            incl = np.radians(14 + 1.4 * k + rng.normal(0, 2) - 40 * side * rot_u[i])
            phi_end = {0: 2.4, 6: 2.6, 7: 2.3, 8: 2.0, 9: 1.85, 10: 1.6, 11: 1.3}.get(k, np.pi - np.arcsin(0.3))
            half_w = np.linalg.norm(c[1] - c[0]) / mm / 2
            phi0 = np.arcsin(min(0.9, 0.15 * half_w / a))
            phi = np.linspace(phi0, phi_end, 70)
            lat = a * np.sin(phi) - a * np.sin(phi0)
            z = -b * np.cos(phi)
            slope = np.radians(4 + 0.9 * k + rng.normal(0, 2) - 25 * side * rot_u[i])
            lat_out = np.maximum.accumulate(lat)  # lateral travel so far (not undone anteriorly)
            drop = ((z + b) * np.tan(incl) + lat_out * np.tan(slope)
                    - (1.0 - 0.6 * k / 11) * 7 * np.sin(np.minimum(phi / 1.0, 1) * np.pi))
            x = side * lat
            y = drop
            ta = 0.6 * a_tilt
            ca, sa = np.cos(ta), np.sin(ta)
            xr = x * ca + y * sa
            yr = -x * sa + y * ca
            pts = origin + np.stack([xr, yr], axis=1) * mm
            thick_post = (8.5 if k > 0 else 10.0) * mm * rng.uniform(0.85, 1.1) * (1 + 0.15 * min(k, 6) / 6)
            post = phi <= 1.75
            ant = phi >= 1.6
            _line(L["rib_post"], pts[post], thick_post)
            _line(L["rib_post_in"], pts[post], thick_post * 0.55)
            if ant.sum() > 1:
                _line(L["rib_ant"], pts[ant], thick_post * 1.2)
                _line(L["rib_ant_in"], pts[ant], thick_post * 0.7)


def _draw_shoulders(L, rng, corners, mm):
    """Clavicles (an S-shaped bar from the sternal end up and out) and the scapulae's medial
    parts."""
    c_t1 = corners[2].mean(axis=0)
    h = np.linalg.norm(corners[4].mean(axis=0) - corners[3].mean(axis=0))
    y_med = corners[2 + int(rng.integers(1, 3))].mean(axis=0)[1] + rng.uniform(-0.3, 0.3) * h
    for side in (-1, 1):
        tilt = rng.uniform(0.12, 0.35)
        x0 = rng.uniform(18, 28)
        x = np.linspace(x0, x0 + 140, 40)
        y = -tilt * (x - x0) + 5 * np.sin(2 * np.pi * (x - x0) / 130)
        pts = np.stack([c_t1[0] + side * x * mm, y_med + y * mm], axis=1)
        t = rng.uniform(10, 13) * mm
        _line(L["clav"], pts, t)
        _line(L["clav_in"], pts, t * 0.45)
        head = pts[0]
        cv2.ellipse(L["clav"], (int(head[0]), int(head[1])), (int(9 * mm), int(8 * mm)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        # scapula: medial border from T2 to the inferior angle at T7..T8
        a = corners[3].mean(axis=0); b = corners[2 + int(rng.integers(6, 8))].mean(axis=0)
        mx0 = rng.uniform(65, 85); mx1 = mx0 + rng.uniform(5, 20)
        p = [(a[0] + side * mx0 * mm, a[1] - 10 * mm), (b[0] + side * mx1 * mm, b[1]),
             (b[0] + side * (mx1 + 60) * mm, a[1] - 20 * mm), (a[0] + side * (mx0 + 40) * mm, a[1] - 40 * mm)]
        _fill(L["scapula"], np.array(p))
        _line(L["scapula"], np.array(p[:2]), 3 * mm)


def _draw_pelvis(L, rng, corners, angles, mm, full=False):
    """Sacrum below L5 and the iliac wings, their crests about the level of L4; ``full``: the
    whole pelvis (the wings down to the acetabula, the pubic and ischial rami round the obturator
    foramina, the symphysis) and the proximal femora."""
    s1 = corners[19]
    l4 = corners[17].mean(axis=0); l5 = corners[18].mean(axis=0)
    tilt = angles[19] + np.radians(rng.normal(0, 2))
    ex = np.array([np.cos(tilt), -np.sin(tilt)]); ey = np.array([np.sin(tilt), np.cos(tilt)])
    o = (s1[0] + s1[1]) / 2
    w_s1 = np.linalg.norm(s1[1] - s1[0]) / mm

    def P(x, y):  # mm in the pelvis frame -> pixels
        return o + (np.asarray(x)[..., None] * ex + np.asarray(y)[..., None] * ey) * mm

    # sacrum: alae out to the sacroiliac joints, the body tapering down, foramina
    sx = w_s1 / 2
    x_si = sx + rng.uniform(20, 28)
    sac = P(np.array([-sx, sx, x_si, x_si + 2, 24, 12, -12, -24, -x_si - 2, -x_si]),
            np.array([0, 0, -4, 60, 105, 130, 130, 105, 60, -4]))
    _fill(L["sacrum"], sac, 130)
    _line(L["sacrum"], P(np.array([-x_si, -sx, sx, x_si]), np.array([-4, 0, 0, -4])), 1.5 * mm, 230)
    for row in range(4):
        for side in (-1, 1):
            cc = P(side * (sx * 0.62 - row * 3), 30 + row * 22)
            ax = (max(1, int(5.5 * mm * (1 - row * 0.12))), max(1, int(4.5 * mm * (1 - row * 0.12))))
            cv2.ellipse(L["sacrum"], (int(cc[0]), int(cc[1])), ax, 0, 0, 360, 50, -1, cv2.LINE_AA)
    # iliac wings: a fan from the sacroiliac joint, the crest arching up to about L4/L5
    crest_y = float(((l4 + l5) / 2 - o) @ ey) / mm + rng.uniform(-8, 10)
    for side in (-1, 1):
        peak_x = rng.uniform(75, 100)
        k = (-2 - crest_y) / (peak_x - x_si) ** 2
        xs = np.linspace(x_si, 150 if full else 190, 40)  # a full film shows the crest's lateral end
        ycrest = crest_y + k * (xs - peak_x) ** 2 * np.where(xs < peak_x, 1.0, rng.uniform(0.45, 0.7))
        crest = P(side * xs, ycrest)
        if full:  # the wing narrows down to the acetabular roof
            wing = np.concatenate([crest, P(side * np.array([146, 128, 116, 104, 92, x_si + 8, x_si + 2]),
                                            np.array([50, 78, 90, 94, 96, 110, 40]))])
        else:
            wing = np.concatenate([crest, P(side * np.array([205, 120, x_si + 8, x_si + 2]), np.array([200, 200, 110, 40]))])
        _fill(L["ilium"], wing, int(rng.uniform(170, 230)))
        _line(L["ilium_rim"], crest, rng.uniform(4, 7) * mm)
        _line(L["ilium_rim"], P(side * np.array([x_si + 1, x_si + 3, x_si + 8]), np.array([-2, 50, 110])), 2.5 * mm, 200)
        # the inner cortex of the wing (arcuate line), a faint curve
        arc = P(side * np.linspace(x_si + 10, 160, 20), 60 + 0.004 * (np.linspace(x_si + 10, 160, 20) - 60) ** 2)
        _line(L["ilium_rim"], arc, 2.5 * mm, 120)
        if full:
            _draw_hip(L, rng, P, side, x_si, mm)


def _draw_hip(L, rng, P, side, x_si, mm):
    """One side of the lower pelvis and the proximal femur, in the pelvis frame ``P`` (mm, y down
    from the middle of S1's upper endplate): acetabulum, femoral head, neck and trochanters, the
    shaft to the film's edge, the pubic and ischial rami round the obturator foramen."""
    hx = rng.uniform(84, 96); hy = rng.uniform(112, 124); r = rng.uniform(21, 25)
    # the pelvic ring below the acetabulum: ischium, the rami and the symphysis, the foramen cut out
    ring = P(*_rounded(side * np.array([hx - 20, hx - 8, hx - 12, hx - 22, 55, 20, 4, 4, 30, hx - 42]),
                       np.array([hy - 6, hy + 24, hy + 55, hy + 68, hy + 72, hy + 60, hy + 52, hy + 10, hy + 2, hy - 8])))
    _fill(L["ilium"], ring, int(rng.uniform(150, 200)))
    _line(L["ilium_rim"], ring, 2.5 * mm, 170, closed=True)
    fc = P(side * (hx - 45 + rng.uniform(-3, 3)), hy + 36)
    ax = (max(1, int(rng.uniform(14, 18) * mm)), max(1, int(rng.uniform(19, 24) * mm)))
    cv2.ellipse(L["ilium"], (int(fc[0]), int(fc[1])), ax, float(side * rng.uniform(10, 30)), 0, 360, 0, -1, cv2.LINE_AA)
    cv2.ellipse(L["ilium_rim"], (int(fc[0]), int(fc[1])), ax, float(side * rng.uniform(10, 30)), 0, 360, 160,
                max(1, int(2.5 * mm)), cv2.LINE_AA)
    # the acetabular roof, a dense arc over the head
    t = np.linspace(np.pi * 1.05, np.pi * 1.95, 20)
    _line(L["ilium_rim"], P(side * (hx + (r + 2) * np.cos(t)), hy + (r + 2) * np.sin(t)), 4 * mm, 230)
    # the femur: head, neck (about 130 deg to the shaft), greater and lesser trochanters, shaft
    neck_end = np.array([hx + 32, hy + 24]); shaft_top = np.array([hx + 34, hy + 36])
    shaft_end = shaft_top + np.array([-0.16, 1.0]) * 500
    for a, b, t_mm in ((np.array([hx, hy]), neck_end, 30), (shaft_top, shaft_end, 32)):
        _line(L["ilium"], P(side * np.array([a[0], b[0]]), np.array([a[1], b[1]])), t_mm * mm, 170)
    for dx in (-15, 15):  # the shaft's cortices
        _line(L["ilium_rim"], P(side * (np.array([shaft_top[0], shaft_end[0]]) + dx), np.array([shaft_top[1] + 15, shaft_end[1]])),
              6 * mm, 210)
    head = P(side * hx, hy)
    cv2.circle(L["ilium"], (int(head[0]), int(head[1])), max(1, int(r * mm)), 215, -1, cv2.LINE_AA)
    cv2.circle(L["ilium_rim"], (int(head[0]), int(head[1])), max(1, int(r * mm)), 170, max(1, int(2 * mm)), cv2.LINE_AA)
    for (cx, cy), (a, b), v in (((hx + 42, hy + 18), (13, 19), 190), ((hx + 16, hy + 56), (8, 11), 170)):
        c = P(side * cx, cy)
        cv2.ellipse(L["ilium"], (int(c[0]), int(c[1])), (max(1, int(a * mm)), max(1, int(b * mm))), 0, 0, 360, v, -1,
                    cv2.LINE_AA)


def _rounded(x, y, cuts: int = 3):
    """A closed polygon's corners rounded off (Chaikin's corner cutting)."""
    p = np.stack([x, y], axis=1).astype(np.float64)
    for _ in range(cuts):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p[:, 0], p[:, 1]


def _draw_skull_base(L, rng, corners, mm):
    """Above C1 on a full-spine film: the occiput and mastoids (a dense band over and beside C1),
    the skull's outline above, and the mandible overlapping C2..C4."""
    c1 = corners[0].mean(axis=0); c3 = corners[2].mean(axis=0)
    up = c1 - c3; up /= np.linalg.norm(up); right = np.array([-up[1], up[0]])
    if right[0] < 0:
        right = -right

    def Q(x, y):  # mm, x right and y up from C1's centre -> pixels
        return c1 + (np.asarray(x, float)[..., None] * right + np.asarray(y, float)[..., None] * up) * mm

    w = rng.uniform(68, 80)
    t = np.linspace(0, np.pi, 40)
    vault = Q(w * np.cos(t), 8 + rng.uniform(95, 115) * np.sin(t))
    _fill(L["scapula"], vault, int(rng.uniform(170, 230)))  # the skull, seen through
    _line(L["ilium_rim"], vault, 5 * mm, 200)
    base = Q(np.array([-w, -45, -15, 15, 45, w]), np.array([8, 2, 14, 14, 2, 8]) + rng.uniform(-3, 3))
    _line(L["ilium"], base, 11 * mm, 220)  # the occipital condyles and the petrous ridges
    for side in (-1, 1):
        m = Q(side * rng.uniform(48, 56), -rng.uniform(4, 10))
        cv2.ellipse(L["ilium"], (int(m[0]), int(m[1])), (max(1, int(8 * mm)), max(1, int(13 * mm))), 0, 0, 360, 200, -1,
                    cv2.LINE_AA)
    # the mandible: a U from its angles beside C2 down round the chin over C3..C4
    xm = rng.uniform(42, 50); ym = -rng.uniform(12, 20); drop = rng.uniform(28, 38)
    s = np.linspace(-1, 1, 40)
    mand = Q(xm * s, ym - drop * (1 - s ** 2) ** 0.7)
    _line(L["ilium"], mand, 9 * mm, 190)
    for side in (-1, 1):  # the rami up to the skull base
        _line(L["ilium"], Q(side * np.array([xm, xm + 4]), np.array([ym, ym + 35])), 8 * mm, 170)


def _film_details(rng, img, landmarks):
    """Collimation edges, a side marker and JPEG compression, as on scanned films."""
    H, W = img.shape
    if rng.random() < 0.3:
        xl = landmarks[..., 0].min(); xr = landmarks[..., 0].max()
        for side in (-1, 1):
            if rng.random() < 0.6:
                wpx = int(rng.uniform(0.0, 0.05) * W)
                if side < 0:
                    wpx = min(wpx, int(xl) - 20)
                    if wpx > 0:
                        img[:, :wpx] = (img[:, :wpx] * rng.uniform(0, 0.2)).astype(np.uint8)
                else:
                    wpx = min(wpx, W - int(xr) - 20)
                    if wpx > 0:
                        img[:, W - wpx:] = (img[:, W - wpx:] * rng.uniform(0, 0.2)).astype(np.uint8)
    if rng.random() < 0.5:
        scale = H / 2400 * rng.uniform(1.6, 2.4)
        x = int(W * rng.uniform(0.86, 0.93)); y = int(H * rng.uniform(0.55, 0.85))
        cv2.putText(img, "L", (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 245, max(2, int(3 * scale)), cv2.LINE_AA)
    if rng.random() < 0.7:
        q = int(rng.integers(75, 96))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return img


# --------------------------------------------------------------------------------------------
# files and command line

def phantom_angles(phantom: SpinePhantom) -> dict:
    """The ground truth: AASCE-convention angles (the challenge's own computation) and the
    clinical result."""
    from CobbAngleLib import geometry

    height = phantom.pixels.shape[0]
    return {
        "aasce": geometry.cobb_angles(phantom.landmarks, "aasce", image_height=height).angles,
        "clinical": geometry.cobb_angles(phantom.landmarks, "clinical").to_dict(),
    }


def write_phantom(phantom: SpinePhantom, out_dir, name: str) -> dict:
    """<name>.png (8-bit), <name>.png.mat (``p2``: 68 x 2 pixels, the AASCE label layout) and
    <name>.json (ground truth: landmarks, spacing, seed, curve, angles in both conventions).
    Returns the paths: ``image``, ``landmarks`` (the .mat) and ``truth`` (the .json)."""
    from CobbAngleLib.landmarks_io import write_aasce_mat

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    if not cv2.imwrite(str(png), phantom.pixels):
        raise OSError(f"could not write {png}")
    mat = write_aasce_mat(out_dir / f"{name}.png.mat", phantom.landmarks)
    angles = phantom_angles(phantom)
    truth = {
        "image": png.name,
        "generator": "mskmorph phantom spine (MSKMorphometry), free to redistribute",
        "generator_version": GENERATOR_VERSION,
        "seed": phantom.seed,
        "size_px": [phantom.pixels.shape[1], phantom.pixels.shape[0]],
        "pixel_spacing_mm": list(phantom.spacing_mm),
        "curve": phantom.curve_description,
        "aasce_angles_deg": angles["aasce"],
        "clinical": angles["clinical"],
        "vertebrae": list(NAMES),
        "corner_order": ["top-left", "top-right", "bottom-left", "bottom-right"],
        "landmarks_px": phantom.landmarks.reshape(-1, 2).round(4).tolist(),
    }
    if phantom.field == "full":  # the vertebrae outside T1..L5 (not in the .mat: the AASCE layout has 17)
        truth["field"] = "full"
        truth["other_vertebrae"] = list(phantom.other_landmarks)
        truth["other_landmarks_px"] = {name: c.round(4).tolist() for name, c in phantom.other_landmarks.items()}
    js = out_dir / f"{name}.json"
    js.write_text(json.dumps(truth, indent=2), encoding="utf-8")
    return {"image": png, "landmarks": mat, "truth": js}


@dataclass
class FollowUpPhantom:
    """One spine filmed twice: ``prior``, and ``current`` with the main thoracic curve grown."""

    prior: SpinePhantom
    current: SpinePhantom
    truth: dict  # per curve: the end vertebrae of the prior, both angles at them, the change


def render_follow_up(seed: int = 0, change_deg: float = 8.0, *, height: int = 2400, width: int = 900,
                     tolerance_deg: float = 0.01) -> FollowUpPhantom:
    """The same spine (the same patient, anatomy and film) at two times: the main thoracic curve,
    measured (clinical convention) between the prior's end vertebrae, larger by exactly
    ``change_deg`` on the current film (to ``tolerance_deg``); the other curves keep their bend
    (their angles at the prior's end vertebrae change by what the truth says, a few tenths of a
    degree at most on the seeds tried). Raises ``ValueError`` when the seed's spine has no main
    thoracic curve."""
    from CobbAngleLib import geometry

    prior = render_spine_phantom(seed, height=height, width=width)
    before = geometry.cobb_angles(prior.landmarks, "clinical")
    mt = before.curve("MT")
    if not mt.angle_deg or not mt.upper_end_vertebra:
        raise ValueError(f"seed {seed}: the spine has no main thoracic curve to grow; choose another seed")
    ends = {c.name: (geometry.VERTEBRA_NAMES.index(c.upper_end_vertebra), geometry.VERTEBRA_NAMES.index(c.lower_end_vertebra))
            for c in before.curves if c.angle_deg and c.upper_end_vertebra}

    def mt_at_prior_ends(extra: float) -> float:
        lm = render_spine_phantom(seed, height=height, width=width, mt_change_deg=extra, landmarks_only=True).landmarks
        return geometry.curve_between(lm, "MT", *ends["MT"]).angle_deg

    target = mt.angle_deg + change_deg
    x0, f0 = 0.0, mt.angle_deg - target
    x1 = change_deg
    f1 = mt_at_prior_ends(x1) - target
    for _ in range(20):  # secant: the bend that gives the exact change
        if abs(f1) <= tolerance_deg:
            break
        x0, x1, f0 = x1, x1 - f1 * (x1 - x0) / (f1 - f0), f1
        f1 = mt_at_prior_ends(x1) - target
    else:
        raise ValueError(f"seed {seed}: a change of {change_deg} deg could not be made exactly (off by {f1:.2f} deg)")
    current = render_spine_phantom(seed, height=height, width=width, mt_change_deg=x1)
    current.curve_description = f"{prior.curve_description}; main thoracic curve {change_deg:+.1f} deg later"
    after = geometry.cobb_angles(current.landmarks, "clinical")
    truth = {"change_asked_deg": change_deg, "bend_added_deg": round(float(x1), 4), "curves": {}}
    for name, (upper, lower) in ends.items():
        a = geometry.curve_between(prior.landmarks, name, upper, lower).angle_deg
        b = geometry.curve_between(current.landmarks, name, upper, lower).angle_deg
        own = after.curve(name)
        truth["curves"][name] = {
            "end_vertebrae": [geometry.VERTEBRA_NAMES[upper], geometry.VERTEBRA_NAMES[lower]],
            "prior_deg": round(a, 4), "current_deg": round(b, 4), "change_deg": round(b - a, 4),
            "current_own_end_vertebrae": [own.upper_end_vertebra, own.lower_end_vertebra],
            "current_own_deg": None if own.angle_deg is None else round(own.angle_deg, 4)}
    return FollowUpPhantom(prior, current, truth)


def write_follow_up(pair: FollowUpPhantom, out_dir, name: str) -> dict:
    """<name>_prior.* and <name>_current.* (as ``write_phantom``) and <name>_follow_up.json (the
    truth of the change). Returns the paths: ``prior``, ``current`` (each ``write_phantom``'s) and ``truth``."""
    paths = {"prior": write_phantom(pair.prior, out_dir, f"{name}_prior"),
             "current": write_phantom(pair.current, out_dir, f"{name}_current")}
    truth = Path(out_dir) / f"{name}_follow_up.json"
    truth.write_text(json.dumps({"prior": paths["prior"]["image"].name, "current": paths["current"]["image"].name,
                                 "seed": pair.prior.seed, **pair.truth}, indent=2), encoding="utf-8")
    paths["truth"] = truth
    return paths


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--n", type=int, default=1, help="number of films (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; film i uses seed + i (default 0)")
    parser.add_argument("--height", type=int, default=2400, help="film height in pixels (default 2400)")
    parser.add_argument("--width", type=int, default=900, help="film width in pixels (default 900)")
    parser.add_argument("--field", default="aasce", choices=FIELDS,
                        help="aasce (default): framed as an AASCE film, C7 to the top of the sacrum; full: a standing "
                             "long-cassette full-spine film, the skull base and C1..C7 to the pelvis and femoral heads "
                             "(the corners of C1..C7 and S1 also in NAME.json)")
    parser.add_argument("--follow-up", type=float, default=None, metavar="DEG",
                        help="film each spine twice: NAME_prior.png and NAME_current.png, the main thoracic curve "
                             "larger by DEG (exactly, between the prior's end vertebrae), the rest unchanged; the "
                             "truth of the change in NAME_follow_up.json")


def run(args) -> int:
    if args.n < 1:
        raise SystemExit("--n must be at least 1")
    field = getattr(args, "field", "aasce")
    if field != "aasce" and args.follow_up is not None:
        raise SystemExit("--follow-up films are AASCE-framed; leave out --field")
    for i in range(args.n):
        seed = args.seed + i
        if args.follow_up is not None:
            try:
                pair = render_follow_up(seed, args.follow_up, height=args.height, width=args.width)
            except ValueError as e:
                print(f"spine_phantom_{seed:04d}: {e}")
                continue
            paths = write_follow_up(pair, args.out, f"spine_phantom_{seed:04d}")
            print(f"{paths['prior']['image']} -> {paths['current']['image'].name}: " + ", ".join(
                f"{c} {t['prior_deg']:.1f} -> {t['current_deg']:.1f} ({'-'.join(t['end_vertebrae'])})"
                for c, t in pair.truth["curves"].items()) + " deg (clinical)")
            continue
        ph = render_spine_phantom(seed, height=args.height, width=args.width, field=field)
        paths = write_phantom(ph, args.out, f"spine_phantom_{seed:04d}")
        mt = phantom_angles(ph)["aasce"]
        ang = ", ".join(f"{k} {v:.1f}" for k, v in mt.items() if v is not None)
        print(f"{paths['image']}: {ph.curve_description}; AASCE angles {ang} deg")
    return 0
