"""Rasterstereography surface measures of a back (DIERS formetric style), numpy and scipy only.

Frame and signs (the photo is taken from behind the patient, camera upright):
- x: to the image right = the patient's RIGHT side; y: down (the camera's vertical is taken as the
  plumb line); z: posterior, towards the camera. Units are mm when the surface is metric
  (measured depth, or estimated depth with a known camera scale), else pixels ("px") of the photo.
- VP: vertebra prominens (C7). DM: midpoint of the two lumbar dimples (DL left, DR right).

Definitions (all computed along the spine midline from VP to DM, resampled evenly in height):
- trunk_length: 3D distance VP-DM.
- trunk_imbalance: x(VP) - x(DM) (+: VP to the right); trunk_imbalance_deg its angle to the vertical
  in the frontal plane.
- trunk_inclination: z(DM) - z(VP) (+: VP anterior of DM, leaning forwards); _deg: sagittal angle.
- lateral_deviation: frontal distance of the midline from the straight VP-DM line (+: right);
  rms over the line and max = the signed value of largest magnitude.
- surface_rotation_deg: the transverse-plane angle of the back surface on the midline, i.e.
  atan of the least-squares slope dz/dx of the surface over +-ROTATION_HALF_WINDOW_MM around the
  midline (+: the right side is more posterior, e.g. a right rib hump); rms and signed max. This is
  a surface rotation, not the vertebral axial rotation and not an ATR scoliometer reading.
- sagittal profile s(y): z of the midline minus the VP-DM line in the sagittal plane.
  kyphotic apex: the most posterior point of s in the upper part; lordotic apex: the most
  anterior point below it. With the tangent angle phi(y) = atan(dz/dy) of the profile:
  ICT = max phi between VP and the kyphotic apex, ITL = min phi between the apices,
  ILS = max phi between the lordotic apex and DM;
  kyphotic_angle_deg = phi(ICT) - phi(ITL), lordotic_angle_deg = phi(ILS) - phi(ITL).
  Apex heights are the vertical distances below VP; apex depths are s at the apex.
- pelvic_obliquity_deg: angle of the DL-DR line to the horizontal (+: right dimple higher);
  pelvic_obliquity (units): height difference y(DL) - y(DR).

Midline: the surface symmetry line. For every image row between VP and DM, the lateral position
where the row's height profile is most symmetric (the odd part of the profile, after removing its
linear part, which is the rotation, is smallest) within a window around the seed line through the
keypoints; then a median and a Gaussian filter along the rows. Lumbar dimples: the two most
concave points of the detrended surface on either side of the seed line at the level between the
L5 and sacrum keypoints.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

ROTATION_HALF_WINDOW_MM = 25.0
ROTATION_HALF_WINDOW_FRACTION = 0.06  # of the trunk length, for surfaces in pixels
SYMMETRY_SEARCH_FRACTION = 0.08  # half width of the symmetry-line search, fraction of trunk length
SYMMETRY_OFFSETS_FRACTION = (0.01, 0.075)  # offsets compared left/right, fraction of trunk length
N_LINE = 101
SEED_WEIGHT = 0.5  # weight of the pull towards the keypoint line in the symmetry search (measured depth)
# On a surface the network estimated, its small depth errors move the symmetry line more than the
# keypoints are off: the midline then follows the keypoint line more closely. Chosen on tuning photos
# (seed base 3000, neither training nor held-out): estimated depth 4.9 -> 3.4 mm mean lateral error;
# the weight 0.5 keeps measured (exact) depth at 1.0 mm, where 20 would give 1.4 mm.
SEED_WEIGHT_ESTIMATED = 20.0

KEYPOINT_NAMES = ("sacrum", "L5", "L3", "T12/L1", "T8", "T3", "C7", "C3/C4", "C1")
I_SACRUM, I_L5, I_C7 = 0, 1, 6


class MorphologyError(ValueError):
    """The points or the surface cannot be measured (message for the user)."""


@dataclass
class Surface:
    """Back surface sampled on the photo's pixel grid: xyz (H, W, 3) in the measurement frame."""

    xyz: np.ndarray
    mask: np.ndarray
    units: str = "mm"
    estimated: bool = False  # depth estimated by the network (True) or measured (False)

    @property
    def shape(self):
        return self.mask.shape


def surface_from_depth(depth_mm: np.ndarray, mask: np.ndarray, focal_px: float, cx: Optional[float] = None,
                       cy: Optional[float] = None, estimated: bool = False) -> Surface:
    """Metric surface from a depth map (mm along the optical axis) and the pinhole focal length."""
    depth = np.asarray(depth_mm, dtype=np.float64)
    h, w = depth.shape
    cx = (w - 1) / 2 if cx is None else cx
    cy = (h - 1) / 2 if cy is None else cy
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    mask = np.asarray(mask, bool) & (depth > 0)
    if mask.any() and not mask.all():  # no data outside: nearest measured depth (for sampling near the edge)
        idx = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
        depth = depth[idx[0], idx[1]]
    xyz = np.stack([(u - cx) * depth / focal_px, (v - cy) * depth / focal_px, -depth], -1)
    return Surface(xyz=xyz, mask=mask, units="mm", estimated=estimated)


def surface_from_relief(relief_px: np.ndarray, mask: np.ndarray, estimated: bool = True) -> Surface:
    """Surface in photo pixels from a relief (height towards the camera, in pixels): the network's."""
    relief = np.asarray(relief_px, dtype=np.float64)
    h, w = relief.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return Surface(xyz=np.stack([u, v, relief], -1), mask=np.asarray(mask, bool), units="px", estimated=estimated)


def surface_for(depth: np.ndarray, mask: np.ndarray, units: str, focal_px: Optional[float] = None,
                cx: Optional[float] = None, cy: Optional[float] = None, estimated: bool = True) -> Surface:
    """The measurement surface of a depth map in its units: "mm" (depth along the optical axis,
    with the focal length in pixels) or "px" (relative depth in photo pixels, growing away from
    the camera). The one rule the pipeline and the review layer's nodes share."""
    if units == "mm":
        if not focal_px:
            raise ValueError("depth in mm needs the camera focal length in pixels")
        return surface_from_depth(depth, mask, focal_px, cx, cy, estimated)
    if units == "px":
        return surface_from_relief(-np.asarray(depth, np.float64), mask, estimated)
    raise ValueError(f"depth units must be 'mm' or 'px', not {units!r}")


@dataclass
class SurfaceMeasures:
    units: str
    trunk_length: float
    trunk_imbalance: float
    trunk_imbalance_deg: float
    trunk_inclination: float
    trunk_inclination_deg: float
    lateral_deviation_rms: float
    lateral_deviation_max: float
    surface_rotation_rms_deg: float
    surface_rotation_max_deg: float
    kyphotic_apex_height: float
    kyphotic_apex_depth: float
    lordotic_apex_height: float
    lordotic_apex_depth: float
    kyphotic_angle_deg: float
    lordotic_angle_deg: float
    pelvic_obliquity_deg: Optional[float]
    pelvic_obliquity: Optional[float]

    def to_dict(self) -> dict:
        return {k: (round(float(v), 4) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(self).items()}


MEASURE_TITLES = {
    "trunk_length": "Trunk length VP-DM",
    "trunk_imbalance": "Trunk imbalance VP-DM",
    "trunk_imbalance_deg": "Trunk imbalance VP-DM (deg)",
    "trunk_inclination": "Trunk inclination VP-DM",
    "trunk_inclination_deg": "Trunk inclination VP-DM (deg)",
    "lateral_deviation_rms": "Lateral deviation rms",
    "lateral_deviation_max": "Lateral deviation max",
    "surface_rotation_rms_deg": "Surface rotation rms (deg)",
    "surface_rotation_max_deg": "Surface rotation max (deg)",
    "kyphotic_apex_height": "Kyphotic apex below VP",
    "kyphotic_apex_depth": "Kyphotic apex depth",
    "lordotic_apex_height": "Lordotic apex below VP",
    "lordotic_apex_depth": "Lordotic apex depth",
    "kyphotic_angle_deg": "Kyphotic angle ICT-ITL (deg)",
    "lordotic_angle_deg": "Lordotic angle ITL-ILS (deg)",
    "pelvic_obliquity_deg": "Pelvic obliquity DL-DR (deg)",
    "pelvic_obliquity": "Pelvic obliquity DL-DR (height)",
}


def _signed_max(values: np.ndarray) -> float:
    return float(values[np.argmax(np.abs(values))])


def _resample_by_height(line: np.ndarray, rotation: np.ndarray, n: int = N_LINE):
    order = np.argsort(line[:, 1])
    y = line[order, 1]
    keep = np.concatenate([[True], np.diff(y) > 1e-9])
    y = y[keep]
    ys = np.linspace(line[0, 1], line[-1, 1], n)
    cols = [np.interp(ys, y, line[order][keep][:, k]) for k in (0, 2)]
    rot = np.interp(ys, y, np.asarray(rotation)[order][keep])
    return np.column_stack([cols[0], ys, cols[1]]), rot


def surface_measures(line_xyz, rotation_deg, dimple_left=None, dimple_right=None, units: str = "mm") -> SurfaceMeasures:
    """All measures from a midline (N, 3) running from VP (first) to DM (last), the surface
    rotation on it (N degrees) and the two dimples (3,) or None."""
    line = np.asarray(line_xyz, dtype=np.float64)
    if line.ndim != 2 or line.shape[1] != 3 or len(line) < 5 or not np.all(np.isfinite(line)):
        raise MorphologyError("the spine midline needs at least 5 finite 3D points")
    if line[-1, 1] - line[0, 1] <= 0:
        raise MorphologyError("the vertebra prominens (C7) must lie above the lumbar dimples")
    line, rot = _resample_by_height(line, rotation_deg)
    vp, dm = line[0], line[-1]
    height = dm[1] - vp[1]
    trunk_length = float(np.linalg.norm(vp - dm))
    frac = (line[:, 1] - vp[1]) / height
    straight = vp[None, :] + frac[:, None] * (dm - vp)[None, :]
    lateral = line[:, 0] - straight[:, 0]
    sag = line[:, 2] - straight[:, 2]

    # sagittal profile: apices and inflection tangents
    z = ndimage.gaussian_filter1d(line[:, 2], 2.0, mode="nearest")
    dy = line[1, 1] - line[0, 1]
    phi = np.degrees(np.arctan(np.gradient(z, dy)))
    sag_s = ndimage.gaussian_filter1d(sag, 2.0, mode="nearest")
    upper = int(0.7 * len(line))
    k = int(np.argmax(sag_s[:upper]))
    k = max(k, 1)
    lo = int(np.argmin(sag_s[k:])) + k
    lo = min(max(lo, k + 1), len(line) - 2)
    ict = int(np.argmax(phi[: k + 1]))
    itl = int(np.argmin(phi[k: lo + 1])) + k
    ils = int(np.argmax(phi[lo:])) + lo

    obliquity_deg = obliquity = None
    if dimple_left is not None and dimple_right is not None:
        dl, dr = np.asarray(dimple_left, float), np.asarray(dimple_right, float)
        obliquity = float(dl[1] - dr[1])
        obliquity_deg = float(np.degrees(np.arctan2(dl[1] - dr[1], dr[0] - dl[0])))
    return SurfaceMeasures(
        units=units,
        trunk_length=trunk_length,
        trunk_imbalance=float(vp[0] - dm[0]),
        trunk_imbalance_deg=float(np.degrees(np.arctan2(vp[0] - dm[0], height))),
        trunk_inclination=float(dm[2] - vp[2]),
        trunk_inclination_deg=float(np.degrees(np.arctan2(dm[2] - vp[2], height))),
        lateral_deviation_rms=float(np.sqrt(np.mean(lateral**2))),
        lateral_deviation_max=_signed_max(lateral),
        surface_rotation_rms_deg=float(np.sqrt(np.mean(rot**2))),
        surface_rotation_max_deg=_signed_max(rot),
        kyphotic_apex_height=float(line[k, 1] - vp[1]),
        kyphotic_apex_depth=float(sag[k]),
        lordotic_apex_height=float(line[lo, 1] - vp[1]),
        lordotic_apex_depth=float(sag[lo]),
        kyphotic_angle_deg=float(phi[ict] - phi[itl]),
        lordotic_angle_deg=float(phi[ils] - phi[itl]),
        pelvic_obliquity_deg=obliquity_deg,
        pelvic_obliquity=obliquity,
    )


# --------------------------------------------------------------------------------------------
# from a surface and points on the photo

@dataclass
class BackMorphology:
    """The midline and measures of one back (pixel coordinates x right, y down)."""

    vp_px: np.ndarray
    dm_px: np.ndarray
    dimples_px: Optional[np.ndarray]  # (2, 2) left, right; None if not found
    line_px: np.ndarray  # (N, 2) VP..DM
    line_xyz: np.ndarray  # (N, 3)
    rotation_deg: np.ndarray  # (N,)
    measures: SurfaceMeasures
    warnings: list = field(default_factory=list)
    dimples_absent: Optional[str] = None  # why no dimples were found on the surface (None: found or given)
    back_tilt_deg: Optional[dict] = None  # the back's plane against the camera, when measured in its frame

    def to_dict(self) -> dict:
        return {
            "units": self.measures.units,
            "measures": self.measures.to_dict(),
            "vp_px": np.round(self.vp_px, 3).tolist(),
            "dm_px": np.round(self.dm_px, 3).tolist(),
            "dimples_px": None if self.dimples_px is None else np.round(self.dimples_px, 3).tolist(),
            "dimples_absent": self.dimples_absent,
            "back_tilt_deg": self.back_tilt_deg,
            "midline_px": np.round(self.line_px, 3).tolist(),
            "midline_xyz": np.round(self.line_xyz, 3).tolist(),
            "surface_rotation_deg": np.round(self.rotation_deg, 3).tolist(),
            "warnings": list(self.warnings),
        }


def sample_surface(surface: Surface, px: np.ndarray) -> np.ndarray:
    """xyz at pixel positions (N, 2) (bilinear; positions are clipped into the image)."""
    px = np.asarray(px, dtype=np.float64).reshape(-1, 2)
    h, w = surface.shape
    coords = np.array([np.clip(px[:, 1], 0, h - 1), np.clip(px[:, 0], 0, w - 1)])
    return np.column_stack([ndimage.map_coordinates(surface.xyz[..., k], coords, order=1) for k in range(3)])


def _filled_z(surface: Surface) -> np.ndarray:
    """z with the holes outside the mask filled by the nearest masked value (for filtering)."""
    if not surface.mask.any():
        raise MorphologyError("the back mask is empty: no back surface to measure")
    idx = ndimage.distance_transform_edt(~surface.mask, return_distances=False, return_indices=True)
    return surface.xyz[..., 2][idx[0], idx[1]]


def _trunk_px(keypoints_px) -> float:
    kp = np.asarray(keypoints_px, float)
    dm_guess = 0.5 * (kp[I_L5] + kp[I_SACRUM])
    return float(np.linalg.norm(kp[I_C7] - dm_guess))


def _scale(surface: Surface, where_px) -> float:
    """Surface units per pixel around a point (mm/px, or 1 for pixel surfaces)."""
    if surface.units == "px":
        return 1.0
    p = np.asarray(where_px, float)
    a, b = sample_surface(surface, np.array([p - [5, 0], p + [5, 0]]))
    return max(float(np.linalg.norm(a - b)) / 10.0, 1e-6)


def find_dimples(surface: Surface, keypoints_px, z_filled=None) -> Optional[np.ndarray]:
    """(2, 2) pixels (patient's left = image left, right) or None when none stands out."""
    return look_for_dimples(surface, keypoints_px, z_filled)[0]


def look_for_dimples(surface: Surface, keypoints_px, z_filled=None):
    """``(dimples, note)``: the (2, 2) dimple pixels, or None and why none were found (a sentence
    for the record, the table and the overlay); when dimples were taken from shallow hollows
    (below) the note says so.

    A dimple is a bowl (both principal curvatures of the smoothed surface positive). On a measured
    surface (not the network's estimate) where no bowl pair stands out, a hollow of positive mean
    curvature is taken instead: shallow dimples on a curved lower back are hollows in one direction
    only (on exact anny surfaces: 12 of 12 found against 4 of 12, obliquity within 3.8 deg; on the
    network's smoothed relief that looser test found misplaced pairs, so it is not used there)."""
    dimples, reason = _look_for_dimples(surface, keypoints_px, z_filled, "bowl")
    if dimples is None and not surface.estimated:
        hollows, _ = _look_for_dimples(surface, keypoints_px, z_filled, "hollow")
        if hollows is not None:
            return hollows, ("lumbar dimples taken from shallow hollows of the measured surface (no bowl stands "
                             "out): check them")
    return dimples, reason


def _look_for_dimples(surface: Surface, keypoints_px, z_filled, kind: str):
    kp = np.asarray(keypoints_px, float)
    T = _trunk_px(kp)
    z = _filled_z(surface) if z_filled is None else z_filled
    # a dimple is a bowl: both principal curvatures of the smoothed surface positive
    zs = ndimage.gaussian_filter(z, 0.022 * T)
    zyy = np.gradient(np.gradient(zs, axis=0), axis=0)
    zxx = np.gradient(np.gradient(zs, axis=1), axis=1)
    zxy = np.gradient(np.gradient(zs, axis=0), axis=1)
    bowl = 0.5 * (zxx + zyy) - np.sqrt(0.25 * (zxx - zyy) ** 2 + zxy**2)  # smaller eigenvalue
    if kind == "hollow":
        bowl = 0.5 * (zxx + zyy)  # mean curvature
    detail = -bowl
    centre = 0.5 * (kp[I_L5] + kp[I_SACRUM])
    h, w = z.shape
    y0, y1 = int(max(centre[1] - 0.09 * T, 0)), int(min(centre[1] + 0.09 * T, h - 1))
    found = []
    for side in (-1, 1):
        xa = centre[0] + side * 0.05 * T
        xb = centre[0] + side * 0.24 * T
        x0, x1 = int(max(min(xa, xb), 0)), int(min(max(xa, xb), w - 1))
        if x1 <= x0 or y1 <= y0:
            return None, "the dimple level lies outside the photo"
        win = detail[y0: y1 + 1, x0: x1 + 1]
        inside = surface.mask[y0: y1 + 1, x0: x1 + 1]
        if inside.mean() < 0.5:
            return None, (f"the back mask covers only {100 * inside.mean():.0f}% of the dimple region on the "
                          f"{'left' if side < 0 else 'right'} (clothing or the photo's edge)")
        win = np.where(inside, win, np.inf)
        r, c = np.unravel_index(np.argmin(win), win.shape)
        depth = -win[r, c]
        typical = np.median(np.abs(detail[y0: y1 + 1, x0: x1 + 1][inside]))
        if not np.isfinite(depth) or depth <= 0.2 * typical:  # no bowl (both curvatures concave)
            return None, f"no hollow stands out on the surface on the {'left' if side < 0 else 'right'} at the dimple level"
        dx = dy = 0.0
        if 0 < r < win.shape[0] - 1 and 0 < c < win.shape[1] - 1 and np.all(np.isfinite(win[r - 1: r + 2, c - 1: c + 2])):
            den_x = win[r, c - 1] - 2 * win[r, c] + win[r, c + 1]
            den_y = win[r - 1, c] - 2 * win[r, c] + win[r + 1, c]
            dx = 0.5 * (win[r, c - 1] - win[r, c + 1]) / den_x if den_x > 0 else 0.0
            dy = 0.5 * (win[r - 1, c] - win[r + 1, c]) / den_y if den_y > 0 else 0.0
        found.append([x0 + c + np.clip(dx, -1, 1), y0 + r + np.clip(dy, -1, 1)])
    found = np.array(found, dtype=np.float64)
    # plausible anatomy: the pair about level, a hand's width apart, around the keypoint estimate
    mid = found.mean(axis=0)
    if abs(found[0, 1] - found[1, 1]) > 0.1 * T:
        return None, "the two hollows found at the dimple level are not level with each other"
    if not 0.12 * T < found[1, 0] - found[0, 0] < 0.45 * T:
        return None, "the two hollows found at the dimple level are not a dimple pair's distance apart"
    if np.linalg.norm(mid - centre) > 0.07 * T:
        return None, "the two hollows found lie away from the L5-sacrum keypoints"
    return found, None


def _symmetry_centres(surface: Surface, z, rows, seed_x, T, seed_weight: float = SEED_WEIGHT):
    """Per row: the column where the profile is most symmetric (after removing its rotation)."""
    h, w = z.shape
    search = np.linspace(-SYMMETRY_SEARCH_FRACTION * T, SYMMETRY_SEARCH_FRACTION * T, 41)
    offs = np.linspace(SYMMETRY_OFFSETS_FRACTION[0] * T, SYMMETRY_OFFSETS_FRACTION[1] * T, 16)
    cols = np.arange(w, dtype=np.float64)
    xs = np.zeros(len(rows))
    valid = np.ones(len(rows), bool)
    for i, (r, sx) in enumerate(zip(rows, seed_x)):
        prof = z[r]
        lo, hi = int(max(sx - (search[-1] + offs[-1]), 0)), int(min(sx + search[-1] + offs[-1], w - 1))
        if surface.mask[r, lo: hi + 1].mean() < 0.9:  # clothing across the back (a strap): skip
            valid[i] = False
            xs[i] = sx
            continue
        cand = sx + search
        plus = np.interp((cand[:, None] + offs[None, :]).ravel(), cols, prof).reshape(len(cand), -1)
        minus = np.interp((cand[:, None] - offs[None, :]).ravel(), cols, prof).reshape(len(cand), -1)
        odd = 0.5 * (plus - minus)
        a = (odd @ offs) / (offs @ offs)
        resid = np.sum((odd - a[:, None] * offs[None, :]) ** 2, axis=1)
        # mild pull towards the seed line through the keypoints
        resid = resid + seed_weight * np.median(resid) * (search / search[-1]) ** 2
        j = int(np.argmin(resid))
        if 0 < j < len(cand) - 1:  # parabola through the three lowest
            d = resid[j - 1] - 2 * resid[j] + resid[j + 1]
            step = 0.5 * (resid[j - 1] - resid[j + 1]) / d if d > 0 else 0.0
            xs[i] = cand[j] + np.clip(step, -1, 1) * (search[1] - search[0])
        else:
            xs[i] = cand[j]
    if valid.sum() >= 2 and not valid.all():
        xs[~valid] = np.interp(np.flatnonzero(~valid), np.flatnonzero(valid), xs[valid])
    return xs


def rotation_along(surface: Surface, line_px: np.ndarray, half_window=None) -> np.ndarray:
    """Surface rotation (degrees) at each midline point: atan of the least-squares slope dz/dx over
    +-half_window (surface units) around the point, along its image row."""
    line_px = np.asarray(line_px, float)
    h, w = surface.shape
    out = np.zeros(len(line_px))
    for i, (x, y) in enumerate(line_px):
        scale = _scale(surface, (x, y))
        hw = half_window if half_window is not None else ROTATION_HALF_WINDOW_MM
        half_px = hw / scale
        us = x + np.linspace(-half_px, half_px, 21)
        pts = sample_surface(surface, np.column_stack([us, np.full_like(us, y)]))
        dx = pts[:, 0] - pts[:, 0].mean()
        slope = float(dx @ (pts[:, 2] - pts[:, 2].mean()) / max(dx @ dx, 1e-12))
        out[i] = np.degrees(np.arctan(slope))
    return out


def measure_along_line(surface: Surface, line_px, dimples_px=None, warnings=None) -> BackMorphology:
    """Measures along a given midline on the photo (VP first, DM last), e.g. one a user edited."""
    line_px = np.asarray(line_px, float).reshape(-1, 2)
    if len(line_px) < 2:
        raise MorphologyError("the spine midline needs at least 2 points (VP and DM)")
    if line_px[-1, 1] <= line_px[0, 1]:
        line_px = line_px[::-1]
    # evenly in image rows, one point per row at most
    ys = np.linspace(line_px[0, 1], line_px[-1, 1], N_LINE)
    seg = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(line_px, axis=0), axis=1))])
    if len(line_px) > 2 and np.all(np.diff(line_px[:, 1]) > 0):
        xs = np.interp(ys, line_px[:, 1], line_px[:, 0])
    else:  # not monotonic in y: follow the polyline by arc length
        s = np.linspace(0, seg[-1], N_LINE)
        xs, ys = np.interp(s, seg, line_px[:, 0]), np.interp(s, seg, line_px[:, 1])
    line = np.column_stack([xs, ys])
    inside = surface.mask[np.clip(np.round(ys).astype(int), 0, surface.shape[0] - 1),
                          np.clip(np.round(xs).astype(int), 0, surface.shape[1] - 1)]
    warnings = list(warnings or [])
    if inside.mean() < 0.9:
        warnings.append(f"{100 * (1 - inside.mean()):.0f}% of the midline lies outside the back mask")
    xyz = sample_surface(surface, line)
    T = float(np.linalg.norm(line[0] - line[-1]))
    half = None if surface.units == "mm" else ROTATION_HALF_WINDOW_FRACTION * T
    rot = rotation_along(surface, line, half)
    dl = dr = None
    if dimples_px is not None:
        dpts = sample_surface(surface, np.asarray(dimples_px, float))
        dl, dr = dpts[0], dpts[1]
    measures = surface_measures(xyz, rot, dl, dr, units=surface.units)
    return BackMorphology(
        vp_px=line[0], dm_px=line[-1], dimples_px=None if dimples_px is None else np.asarray(dimples_px, float),
        line_px=line, line_xyz=xyz, rotation_deg=rot, measures=measures, warnings=warnings,
    )


# typical height of each keypoint below C7 as a fraction of the trunk length (C7 = 0, dimple
# midpoint = 1), KEYPOINT_NAMES order: where a misplaced keypoint is put back
KEYPOINT_LEVELS = np.array([1.07, 0.93, 0.80, 0.62, 0.37, 0.12, 0.0, -0.10, -0.19])
LEVEL_TOLERANCE = 0.07  # a keypoint farther than this (fraction of the trunk) from its level is misplaced


def keypoints_run_downwards(keypoints_px) -> bool:
    """C1 ... C7 ... sacrum from the top of the photo down, as ``measure_back`` needs them."""
    y = np.asarray(keypoints_px, float)[::-1, 1]  # C1 first
    return bool(np.all(np.diff(y) > 0))


def _runs_down_enough(kp) -> bool:
    """What ``measure_back`` needs: C7 above L5, L5 not far below the sacrum."""
    chain = np.asarray(kp, float)[[I_C7, I_L5, I_SACRUM]]
    return bool(chain[0, 1] < chain[1, 1] < chain[2, 1] + 0.5 * abs(chain[2, 1] - chain[0, 1]))


def repair_keypoints(keypoints_px, mask=None):
    """Keypoints a network placed out of order (one on the neck, two swapped), put back in order:
    ``(keypoints, warnings)``, unchanged with no warning when they already run downwards.

    The heights of the keypoints against their typical levels (``KEYPOINT_LEVELS``) are fitted
    robustly (the pair of keypoints whose line height = a + b * level agrees with most others);
    a keypoint off its fitted level by more than ``LEVEL_TOLERANCE`` of the trunk is re-placed at
    that level, on the line through the keypoints that agree (their lateral positions interpolated
    by height). With fewer than four agreeing keypoints the back mask's vertical extent gives the
    levels and its row centres the midline."""
    kp = np.asarray(keypoints_px, dtype=np.float64).reshape(-1, 2).copy()
    if kp.shape != (9, 2) or not np.all(np.isfinite(kp)) or keypoints_run_downwards(kp):
        return kp, []
    levels = KEYPOINT_LEVELS
    best, best_score = None, -1.0
    for i in range(9):
        for j in range(i + 1, 9):
            b = (kp[i, 1] - kp[j, 1]) / (levels[i] - levels[j])
            if b <= 10.0:  # the trunk runs downwards and is more than a few pixels long
                continue
            a = kp[i, 1] - b * levels[i]
            resid = np.abs(kp[:, 1] - (a + b * levels)) / b
            agree = resid < LEVEL_TOLERANCE
            score = agree.sum() - resid[agree].sum()  # most agreeing, then the closest
            if score > best_score:
                best, best_score = agree, score
    warnings = []
    if best is not None and best.sum() >= 4:
        b, a = np.polyfit(levels[best], kp[best, 1], 1)
        good = best & (np.abs(kp[:, 1] - (a + b * levels)) / b < LEVEL_TOLERANCE)
        if good.sum() < 4:
            good = best
        order = np.argsort(kp[good, 1])
        line_y, line_x = kp[good, 1][order], kp[good, 0][order]
        how = "on the line through the others"
    elif mask is not None and np.asarray(mask).any():
        mask = np.asarray(mask, bool)
        rows = np.flatnonzero(mask.any(axis=1))
        top, bottom = float(rows[0]), float(rows[-1])
        # the back mask runs from the neck (about C3/C4) to the waist (about the sacrum)
        b = (bottom - top) / (levels[0] - levels[7])
        a = top - b * levels[7]
        line_y = rows.astype(float)
        line_x = np.array([np.flatnonzero(mask[r]).mean() for r in rows])
        good = np.zeros(9, bool)
        how = "on the back mask's centre line"
    else:
        return kp, []
    moved = []
    for i in np.flatnonzero(~good):
        y = a + b * levels[i]
        x = float(np.interp(y, line_y, line_x))
        moved.append(f"{KEYPOINT_NAMES[i]} ({kp[i, 0]:.0f}, {kp[i, 1]:.0f} px)")
        kp[i] = (x, y)
    if not moved and _runs_down_enough(kp):  # only a little out of order: measurable as it is
        return kp, []
    if not _runs_down_enough(kp):  # whatever is left: in order of height along the line
        order = np.argsort(kp[:, 1])[::-1]
        kp = kp[order]
        moved = moved or [", ".join(KEYPOINT_NAMES[i] for i in np.flatnonzero(order != np.arange(9)))]
    warnings.append("spine keypoints out of order from the network: " + ", ".join(moved)
                    + f" re-placed at the typical height {how}; check them")
    return kp, warnings


def measure_back(surface: Surface, keypoints_px, dimples_px=None) -> BackMorphology:
    """Midline (surface symmetry line seeded by the 9 keypoints) and all measures.

    keypoints_px: (9, 2) in KEYPOINT_NAMES order. dimples_px: (2, 2) to use instead of detecting
    them (e.g. points a user placed)."""
    kp = np.asarray(keypoints_px, dtype=np.float64)
    if kp.shape != (9, 2) or not np.all(np.isfinite(kp)):
        raise MorphologyError(f"9 spine keypoints (x, y) are needed, got an array of shape {kp.shape}")
    if not _runs_down_enough(kp):
        raise MorphologyError("the spine keypoints must run downwards from C7 to the sacrum")
    # a keypoint slightly out of order (network) only drops out of the seed line below
    warnings = []
    z = _filled_z(surface)
    T = _trunk_px(kp)
    absent = None
    if dimples_px is None:
        dimples, note = look_for_dimples(surface, kp, z)
        if dimples is None:
            absent = note
            warnings.append(f"lumbar dimples not found ({absent}); DM taken between the L5 and sacrum "
                            "keypoints, pelvic obliquity not measured")
        elif note:
            warnings.append(note)
    else:
        dimples = np.asarray(dimples_px, float).reshape(2, 2)
    dm = dimples.mean(axis=0) if dimples is not None else 0.5 * (kp[I_L5] + kp[I_SACRUM])
    vp = kp[I_C7]
    if dm[1] - vp[1] < 10:
        raise MorphologyError("C7 and the lumbar dimples are too close together to measure a back")
    rows = np.arange(int(np.ceil(vp[1])), int(np.floor(dm[1])) + 1)
    rows = rows[(rows >= 0) & (rows < surface.shape[0])]
    chain = kp[[I_C7, 5, 4, 3, 2, I_L5, I_SACRUM]]
    seed_chain = np.vstack([vp, chain[1:-2], dm])
    seed_chain = seed_chain[np.concatenate([[True], np.diff(seed_chain[:, 1]) > 0])]
    seed_x = np.interp(rows, seed_chain[:, 1], seed_chain[:, 0])
    weight = SEED_WEIGHT_ESTIMATED if surface.estimated else SEED_WEIGHT
    centres = _symmetry_centres(surface, z, rows, seed_x, T, weight)
    # robust smoothing along the rows, then pinned to VP and DM
    k = max(3, int(0.06 * T) | 1)
    centres = ndimage.median_filter(centres, size=k, mode="nearest")
    centres = ndimage.gaussian_filter1d(centres, max(1.0, 0.025 * T), mode="nearest")
    t = (rows - vp[1]) / (dm[1] - vp[1])
    pin = np.exp(-np.minimum(t, 1 - t) / 0.04)  # within a few % of the ends, go to VP / DM
    centres = (1 - pin) * centres + pin * np.where(t < 0.5, vp[0], dm[0])
    line = np.vstack([vp, np.column_stack([centres, rows]), dm])
    line = line[np.concatenate([[True], np.diff(line[:, 1]) > 1e-6])]
    result = measure_along_line(surface, line, dimples, warnings)
    result.dimples_absent = absent
    return result


# --------------------------------------------------------------------------------------------
# the back's own frame: a camera turned sideways or up and down is not a turned trunk

BACK_FRAME_BAND_FRACTION = 0.25  # half width of the band around the keypoint line the plane is fitted on


@dataclass
class BackFrame:
    """The back's own frame in the measurement frame of a surface: ``axes`` rows are the back's x
    (to the right, in the back's plane), y (down, in the plane: the camera's vertical projected
    onto it) and z (the plane's normal, posterior); ``origin`` the centre of the fitted points."""

    axes: np.ndarray
    origin: np.ndarray

    @property
    def yaw_deg(self) -> float:
        """The back's plane turned about the vertical against the camera (+: its right side nearer
        the camera, i.e. more posterior, the sign of the surface rotation)."""
        n = self.axes[2]
        return float(np.degrees(np.arctan2(-n[0], n[2])))

    @property
    def pitch_deg(self) -> float:
        """The back's plane tipped about the horizontal against the camera (+: its lower part nearer the camera)."""
        n = self.axes[2]
        return float(np.degrees(np.arctan2(-n[1], n[2])))

    def to_back(self, xyz: np.ndarray) -> np.ndarray:
        return (np.asarray(xyz, np.float64) - self.origin) @ self.axes.T


def back_frame(surface: Surface, keypoints_px) -> BackFrame:
    """The plane of the back (least squares z = a x + b y + c over the back's surface points from
    C7 to the L5-sacrum level, within +-``BACK_FRAME_BAND_FRACTION`` of the trunk length of the
    keypoint line, where the flanks are not seen more on one side than the other when the camera is
    turned), and the frame whose z is its normal. A rotation that turns the whole trunk alike is
    taken for the camera's; the local rotation of a rib hump or a lumbar prominence stays."""
    kp = np.asarray(keypoints_px, dtype=np.float64)
    T = _trunk_px(kp)
    h, w = surface.shape
    top, bottom = kp[I_C7, 1], 0.5 * (kp[I_L5, 1] + kp[I_SACRUM, 1])
    chain = kp[[I_C7, 5, 4, 3, 2, I_L5]]
    chain = chain[np.argsort(chain[:, 1])]
    v, u = np.mgrid[0:h, 0:w]
    seed_x = np.interp(v, chain[:, 1], chain[:, 0])
    band = surface.mask & (v >= top) & (v <= bottom) & (np.abs(u - seed_x) <= BACK_FRAME_BAND_FRACTION * T)
    pts = surface.xyz[band]
    if len(pts) < 50:
        pts = surface.xyz[surface.mask]
    if len(pts) < 3:
        raise MorphologyError("the back mask is empty: no back surface to measure")
    step = max(1, len(pts) // 20000)
    pts = pts[::step]
    origin = pts.mean(axis=0)
    d = pts - origin
    A = np.column_stack([d[:, 0], d[:, 1]])
    (a, b), *_ = np.linalg.lstsq(A, d[:, 2], rcond=None)
    n = np.array([-a, -b, 1.0])
    n /= np.linalg.norm(n)
    y = np.array([0.0, 1.0, 0.0]) - n[1] * n
    y /= np.linalg.norm(y)
    x = np.cross(y, n)  # right-handed as the camera's: x = y cross z (x right, y down, z towards the camera)
    if x[0] < 0:
        x = -x
    return BackFrame(axes=np.vstack([x, y, n]), origin=origin)


def in_back_frame(surface: Surface, frame: BackFrame) -> Surface:
    """The same surface on the same pixel grid, its points in the back's frame."""
    return Surface(xyz=frame.to_back(surface.xyz.reshape(-1, 3)).reshape(surface.xyz.shape), mask=surface.mask,
                   units=surface.units, estimated=surface.estimated)


def measure_back_in_its_frame(surface: Surface, keypoints_px, dimples_px=None, line_px=None) -> BackMorphology:
    """``measure_back`` (or ``measure_along_line`` with ``line_px``) in the back's own frame
    (``back_frame``): surface rotation, lateral deviation, the sagittal profile (kyphosis,
    lordosis, apices) and the pelvic obliquity do not read the camera's turn. Trunk imbalance
    and inclination keep the camera's vertical as the plumb line (a turned camera cannot tell a
    leaning trunk from itself). ``line_xyz`` stays in the surface's (camera) frame, on the surface."""
    frame = back_frame(surface, keypoints_px)
    turned = in_back_frame(surface, frame)
    if line_px is None:
        result = measure_back(turned, keypoints_px, dimples_px)
    else:
        result = measure_along_line(turned, line_px, dimples_px)
    camera_xyz = sample_surface(surface, result.line_px)
    plumb = surface_measures(camera_xyz, result.rotation_deg, units=surface.units)
    for key in ("trunk_imbalance", "trunk_imbalance_deg", "trunk_inclination", "trunk_inclination_deg"):
        setattr(result.measures, key, getattr(plumb, key))
    result.line_xyz = camera_xyz
    result.back_tilt_deg = {"yaw": round(frame.yaw_deg, 2), "pitch": round(frame.pitch_deg, 2)}
    return result
