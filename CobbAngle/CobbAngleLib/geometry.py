"""Cobb angles, end vertebrae and apices from vertebra corner landmarks.

Plain numpy: no torch, no Slicer. This is the one place where landmarks become measurements,
shared by the network path, the command line's ``--landmarks`` path and the MRML layer (a user
drags a corner in Slicer and the angles are recomputed here), so an edited result and a computed
one can never disagree.

Coordinates are image pixels, x to the right and y down; when the pixel spacing is known the
angles are measured in millimetres (a film with non-square pixels would otherwise bend every
line), as Slicer measures the same lines. Landmarks come as an array of shape
(17, 4, 2): vertebrae T1..L5 from top to bottom, and for each the corners top-left, top-right,
bottom-left, bottom-right (the AASCE order, as in its 68 x 2 ``p2`` arrays). A vertebra that is
not on the film (a cropped radiograph) is a row of NaN; the present vertebrae must be contiguous
and run T1 -> L5 down the spine.

Two conventions:

``aasce``
    The MICCAI 2019 AASCE challenge's own computation (the organisers' MATLAB ``angleCal``),
    reproduced exactly: each vertebra is represented by its mid-axis (from the midpoint of its
    left side to the midpoint of its right side), the largest angle between any two mid-axes is
    the first angle; the second and third are searched above and below it, and whether the
    major curve is "upper" is decided by where it lies relative to half the image height.
    The challenge labels its three columns PT, MT, TL/L in that order, although its first
    column is always the largest curve. We keep the organisers' column order so that our
    numbers can be compared with theirs; the per-curve ``role`` field says which curve each one
    really is (major, proximal or distal).
``clinical``
    What a radiologist draws: the angle between the superior endplate of the upper end vertebra
    and the inferior endplate of the lower end vertebra. The major curve is the pair with the
    largest such angle; the compensatory curves above and below it are searched with the
    opposite bend. Curves are named by the region of their apex (SRS / Lenke): proximal thoracic
    (apex T1..T5), main thoracic (apex T6..T11), thoracolumbar/lumbar (apex T12..L5).
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Optional

import numpy as np

VERTEBRA_NAMES = (
    "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12",
    "L1", "L2", "L3", "L4", "L5",
)
N_VERTEBRAE = len(VERTEBRA_NAMES)
# Corner order inside a vertebra (AASCE): top-left, top-right, bottom-left, bottom-right.
# "sup"/"inf" = superior/inferior endplate; "R"/"L" = the patient's right/left, which on an AP
# radiograph displayed in the radiological convention is the image's left/right.
CORNER_NAMES = ("sup-R", "sup-L", "inf-R", "inf-L")
CURVE_NAMES = ("PT", "MT", "TL_L")
CURVE_TITLES = {
    "PT": "proximal thoracic",
    "MT": "main thoracic",
    "TL_L": "thoracolumbar/lumbar",
}
CONVENTIONS = ("aasce", "clinical")

# Apex regions for the clinical convention, as vertebra indices (inclusive).
_REGION_OF_APEX = (("PT", 0, 4), ("MT", 5, 10), ("TL_L", 11, 16))


class LandmarkError(ValueError):
    """Landmarks that cannot be measured (wrong shape, too few vertebrae, gaps, vertebrae out of order)."""


def vertebra_index(name) -> int:
    """0..16 for T1..L5 (any case); ``ValueError`` saying so for a name that is not a vertebra measured."""
    level = str(name or "").strip().upper()
    if level not in VERTEBRA_NAMES:
        raise ValueError(f"{name!r} is not one of the vertebrae measured ({', '.join(VERTEBRA_NAMES)})")
    return VERTEBRA_NAMES.index(level)


def points_on_film(points, film_hw) -> np.ndarray:
    """(N,) whether each point (x, y) pixels lies on a film of ``film_hw`` (height, width)."""
    h, w = film_hw
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)


def corner_label(vertebra_index: int, corner_index: int) -> str:
    """The label a radiologist reads for one corner, e.g. ``T7 inf-R``."""
    return f"{VERTEBRA_NAMES[vertebra_index]} {CORNER_NAMES[corner_index]}"


@dataclass
class Curve:
    """One Cobb angle with its end vertebrae and apex (vertebra names, or None)."""

    name: str  # PT, MT or TL_L
    angle_deg: Optional[float]  # None: not measurable on this film
    upper_end_vertebra: Optional[str]
    lower_end_vertebra: Optional[str]
    apex: Optional[str]
    role: str = ""  # major / proximal / distal (which curve of the spine this one is)
    # Endplates (or mid-axes for the AASCE convention) used for the angle: (vertebra index, "sup"|"inf"|"mid")
    upper_line: Optional[tuple[int, str]] = None
    lower_line: Optional[tuple[int, str]] = None


@dataclass
class CobbMeasurement:
    convention: str
    curves: list[Curve] = field(default_factory=list)
    vertebrae_present: tuple[str, ...] = ()
    note: str = ""

    def curve(self, name: str) -> Curve:
        for c in self.curves:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def angles(self) -> dict[str, Optional[float]]:
        return {c.name: c.angle_deg for c in self.curves}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vertebrae_present"] = list(self.vertebrae_present)
        for c in d["curves"]:
            c["title"] = CURVE_TITLES[c["name"]]
            for key in ("upper_line", "lower_line"):
                if c[key] is not None:
                    idx, kind = c[key]
                    c[key] = {"vertebra": VERTEBRA_NAMES[idx], "line": kind}
        return d


# --------------------------------------------------------------------------------------------
# input handling

def as_vertebra_array(landmarks) -> np.ndarray:
    """Accept (68, 2), (17, 4, 2) or (136,) AASCE layouts; return float64 (17, 4, 2)."""
    a = np.asarray(landmarks, dtype=np.float64)
    if a.shape == (N_VERTEBRAE * 4 * 2,):  # landmarks.csv row: 68 x then 68 y
        a = np.stack([a[:68], a[68:]], axis=1)
    if a.shape == (N_VERTEBRAE * 4, 2):
        a = a.reshape(N_VERTEBRAE, 4, 2)
    if a.shape != (N_VERTEBRAE, 4, 2):
        raise LandmarkError(
            f"expected 68 corner points (17 vertebrae T1-L5 x 4 corners), got an array of shape {a.shape}"
        )
    return a


def shown_vertebrae(landmarks) -> list[int]:
    """The vertebrae on the film: indices (T1 = 0 .. L5 = 16) of those with all four corners (a
    vertebra that is not on the film is a row of NaN)."""
    v = as_vertebra_array(landmarks)
    return [int(i) for i in np.flatnonzero(np.all(np.isfinite(v), axis=(1, 2)))]


def shown_corners(landmarks) -> tuple[np.ndarray, list[str]]:
    """The corners of the vertebrae on the film, (4 x shown, 2) in T1..L5 order, and their labels
    (``T7 inf-R``): what the landmarks node, the files and the record hold. ``corners_by_label``
    puts them back."""
    v = as_vertebra_array(landmarks)
    shown = shown_vertebrae(v)
    return v[shown].reshape(-1, 2), [corner_label(i, c) for i in shown for c in range(4)]


def corners_by_label(points, labels) -> np.ndarray:
    """Points labelled ``T7 inf-R`` (``shown_corners``) back into the (17, 4, 2) layout, NaN for
    the vertebrae not among them. Raises ``LandmarkError`` naming a point whose label is no
    corner, a corner given twice, or a vertebra that has only some of its corners."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = list(labels)
    if len(labels) != len(points):
        raise LandmarkError(f"{len(points)} points but {len(labels)} labels")
    index = {corner_label(i, c): (i, c) for i in range(N_VERTEBRAE) for c in range(4)}
    v = np.full((N_VERTEBRAE, 4, 2), np.nan)
    for label, xy in zip(labels, points):
        if label not in index:
            raise LandmarkError(f"the point {label!r} is not a vertebra corner (labels T1 sup-R ... L5 inf-L)")
        i, c = index[label]
        if np.isfinite(v[i, c]).all():
            raise LandmarkError(f"the corner {label} is given twice")
        v[i, c] = xy
    given = np.isfinite(v).all(axis=2)
    for i in np.flatnonzero(given.any(axis=1) & ~given.all(axis=1)):
        missing = [corner_label(i, c) for c in range(4) if not given[i, c]]
        raise LandmarkError(f"{VERTEBRA_NAMES[i]} has {int(given[i].sum())} of its 4 corners "
                            f"({', '.join(missing)} missing)")
    return v


def present_range(v: np.ndarray, check_order: bool = True) -> tuple[int, int]:
    """First and last index of the vertebrae that have all four corners; they must be contiguous
    and (``check_order``) run T1 -> L5 down the spine (``vertebrae_out_of_order``)."""
    idx = np.asarray(shown_vertebrae(v), dtype=int)
    if idx.size < 2:
        raise LandmarkError(
            f"at least 2 vertebrae with all 4 corners are needed to measure a Cobb angle; got {idx.size}"
        )
    first, last = int(idx[0]), int(idx[-1])
    if idx.size != last - first + 1:
        missing = [VERTEBRA_NAMES[i] for i in range(first, last + 1) if i not in idx]
        raise LandmarkError(
            "vertebrae must be contiguous; corners are missing for " + ", ".join(missing)
        )
    if check_order:
        wrong = vertebrae_out_of_order(v, first, last)
        if wrong:
            raise LandmarkError(
                "the vertebrae do not run T1 -> L5 down the spine: "
                + ", ".join(f"{VERTEBRA_NAMES[i + 1]} is not below {VERTEBRA_NAMES[i]}" for i in wrong)
                + " (a vertebra stored out of place, or two vertebrae marked on one)"
            )
    return first, last


def vertebrae_out_of_order(v: np.ndarray, first: int = 0, last: int = N_VERTEBRAE - 1) -> list[int]:
    """Indices i (first <= i < last) where vertebra i + 1 does not follow vertebra i down the spine:
    the step from i's centre to i + 1's must point along each of the two vertebrae's own
    top-to-bottom axis (from the midpoint of the superior endplate to that of the inferior one),
    not simply down the image, so that a rotated film and a severe curve are measured (and a
    vertebra whose corners are stored upside down is caught)."""
    q = v[first : last + 1]
    step = np.diff(vertebra_centres(q), axis=0)
    down = (q[:, 2] + q[:, 3] - q[:, 0] - q[:, 1]) / 2
    along = np.minimum(np.sum(step * down[:-1], axis=1), np.sum(step * down[1:], axis=1))
    return [first + int(i) for i in np.flatnonzero(~(along > 0))]


# --------------------------------------------------------------------------------------------
# shared geometry

def vertebra_centres(v: np.ndarray) -> np.ndarray:
    return v.mean(axis=1)


def endplate_vectors(v: np.ndarray, which: str) -> np.ndarray:
    """Vectors from the right-hand (image-left) to the left-hand corner of an endplate."""
    if which == "sup":
        return v[:, 1] - v[:, 0]
    if which == "inf":
        return v[:, 3] - v[:, 2]
    if which == "mid":  # AASCE mid-axis: midpoint of the left side to midpoint of the right side
        return (v[:, 1] + v[:, 3]) / 2 - (v[:, 0] + v[:, 2]) / 2
    raise ValueError(which)


def tilt_deg(vectors: np.ndarray) -> np.ndarray:
    """Signed tilt of each vector from the image horizontal, degrees (positive: right end lower)."""
    return np.degrees(np.arctan2(vectors[..., 1], vectors[..., 0]))


def line_endpoints(v: np.ndarray, vertebra: int, kind: str) -> np.ndarray:
    """Two points (2, 2) of the line drawn for an endplate or mid-axis of one vertebra."""
    q = v[vertebra]
    if kind == "sup":
        return np.array([q[0], q[1]])
    if kind == "inf":
        return np.array([q[2], q[3]])
    if kind == "mid":
        return np.array([(q[0] + q[2]) / 2, (q[1] + q[3]) / 2])
    raise ValueError(kind)


def apex_between(v: np.ndarray, upper: int, lower: int) -> int:
    """The vertebra between two end vertebrae whose centre lies farthest from the line joining
    the end vertebrae's centres (the most laterally deviated one)."""
    if lower - upper < 2:
        return upper if lower == upper else (upper + lower) // 2
    c = vertebra_centres(v)
    a, b = c[upper], c[lower]
    d = b - a
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) or 1.0)
    offsets = np.abs((c[upper + 1 : lower] - a) @ n)
    return upper + 1 + int(np.argmax(offsets))


def _name(i: Optional[int]) -> Optional[str]:
    return None if i is None else VERTEBRA_NAMES[i]


# --------------------------------------------------------------------------------------------
# AASCE convention (the organisers' computation)

def _round8(x: np.ndarray) -> np.ndarray:
    # MATLAB roundn(x, -8): round to 8 decimals before acos, as the organisers did.
    return np.round(x, 8)


def _pair_angles(vec: np.ndarray, rows, cols) -> np.ndarray:
    a, b = vec[rows], vec[cols]
    dot = a @ b.T
    mod = np.sqrt(np.sum(a * a, axis=1))[:, None] * np.sqrt(np.sum(b * b, axis=1))[None, :]
    return np.arccos(np.clip(_round8(dot / mod), -1.0, 1.0))


def _is_s(mid_points: np.ndarray) -> bool:
    """The organisers' test for an S-shaped spine: the midpoints do not all lie on one side of the
    line from the first to the last (in their normalised coordinates)."""
    p = mid_points
    num = p.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = (p[: num - 2, 1] - p[num - 1, 1]) / (p[0, 1] - p[num - 1, 1]) - (
            p[: num - 2, 0] - p[num - 1, 0]
        ) / (p[0, 0] - p[num - 1, 0])
        products = np.outer(ll, ll)
        # MATLAB: sum(sum(ll*ll')) ~= sum(sum(abs(ll*ll'))): true when the signs are mixed, and
        # (as in MATLAB) when a vertical first-to-last line makes the terms NaN.
        return bool(not (products.sum() == np.abs(products).sum()))


def cobb_aasce(v: np.ndarray, image_height: float, check_order: bool = True) -> CobbMeasurement:
    first, last = present_range(v, check_order)
    if (first, last) != (0, N_VERTEBRAE - 1):
        raise LandmarkError(
            "the AASCE convention needs all 17 vertebrae T1-L5 on the film; found "
            f"{VERTEBRA_NAMES[first]}-{VERTEBRA_NAMES[last]}. Use the clinical convention for a cropped film."
        )
    if not image_height or image_height <= 0:
        raise LandmarkError("the AASCE convention needs the image height in pixels")
    vnum = N_VERTEBRAE - 1  # index of L5
    mid_axis = endplate_vectors(v, "mid")
    # midpoints of the superior and inferior endplates, 34 x 2, in the organisers' order
    p2 = v.reshape(-1, 2)
    mid_p_v = (p2[0::2] + p2[1::2]) / 2

    all_idx = np.arange(N_VERTEBRAE)
    angles = _pair_angles(mid_axis, all_idx, all_idx)
    pos1 = np.argmax(angles, axis=0)
    maxt = angles[pos1, all_idx]
    pos2 = int(np.argmax(maxt))
    partner = int(pos1[pos2])
    major = float(np.degrees(maxt[pos2]))
    major_ends = (min(pos2, partner), max(pos2, partner))

    if not _is_s(mid_p_v):
        second = float(np.degrees(angles[0, pos2]))
        second_ends = (0, pos2)
        third = float(np.degrees(angles[vnum, partner]))
        third_ends = (partner, vnum)
        roles = ("major", "proximal", "distal")
    elif mid_p_v[pos2 * 2 + 1, 1] + mid_p_v[partner * 2 + 1, 1] < image_height:
        # the major curve lies in the upper half of the film: one curve above it, one below it
        above = _pair_angles(mid_axis, [pos2], np.arange(0, pos2 + 1))[0]
        pos1_1 = int(np.argmax(above))
        second, second_ends = float(np.degrees(above[pos1_1])), (pos1_1, pos2)
        below = _pair_angles(mid_axis, [partner], np.arange(partner, vnum + 1))[0]
        pos1_2 = int(np.argmax(below)) + partner
        third, third_ends = float(np.degrees(below[pos1_2 - partner])), (partner, pos1_2)
        roles = ("major", "proximal", "distal")
    else:
        # the major curve lies in the lower half: two curves above it
        above = _pair_angles(mid_axis, [pos2], np.arange(0, pos2 + 1))[0]
        pos1_1 = int(np.argmax(above))
        second, second_ends = float(np.degrees(above[pos1_1])), (pos1_1, pos2)
        above2 = _pair_angles(mid_axis, [pos1_1], np.arange(0, pos1_1 + 1))[0]
        pos1_2 = int(np.argmax(above2))
        third, third_ends = float(np.degrees(above2[pos1_2])), (pos1_2, pos1_1)
        roles = ("major", "proximal", "proximal of proximal")

    curves = []
    for name, value, ends, role in zip(
        CURVE_NAMES, (major, second, third), (major_ends, second_ends, third_ends), roles
    ):
        upper, lower = min(ends), max(ends)
        curves.append(
            Curve(
                name=name,
                angle_deg=value,
                upper_end_vertebra=_name(upper),
                lower_end_vertebra=_name(lower),
                apex=_name(apex_between(v, upper, lower)),
                role=role,
                upper_line=(upper, "mid"),
                lower_line=(lower, "mid"),
            )
        )
    return CobbMeasurement(
        convention="aasce",
        curves=curves,
        vertebrae_present=VERTEBRA_NAMES,
        note="AASCE 2019 challenge computation (vertebra mid-axes); columns in the organisers' order: "
        "PT holds the largest curve, MT and TL_L the curves found above/below it (see 'role').",
    )


# --------------------------------------------------------------------------------------------
# clinical convention (endplates)

def _line_angle_difference(a_deg: float, b_deg: float) -> float:
    """Signed angle between two undirected lines, in [-90, 90)."""
    return (a_deg - b_deg + 90.0) % 180.0 - 90.0


def _best_pair(sup: np.ndarray, inf: np.ndarray, lo: int, hi: int, sign: int = 0):
    """Best (upper, lower) pair with lo <= upper < lower <= hi of the signed angle sup[upper] - inf[lower].

    sign=0: largest magnitude; +1/-1: largest angle of that sign. Returns (signed angle, upper, lower)
    or None when no pair (of that sign) bends at all."""
    best = None
    for i in range(lo, hi):
        for j in range(i + 1, hi + 1):
            a = _line_angle_difference(sup[i], inf[j])
            score = abs(a) if sign == 0 else sign * a
            if score <= 1e-9 and sign != 0:  # no bend that way (or only rounding noise)
                continue
            if best is None or score > best[0]:
                best = (score, a, i, j)
    return None if best is None or best[0] <= 1e-9 else best[1:]  # a straight stretch bends nowhere


_FILM_EDGE = ", end vertebra at the film edge: the curve may be larger"
# the role of a curve that has no angle: its region is on the film but bends nowhere, or it is not on the film
NO_CURVE = "no curve"
NOT_ON_FILM = "not on film"
# a curve whose region is taken by a larger one may be named after the neighbouring region when its
# apex lies at most this many vertebrae beyond that region's border (T11 for a lumbar curve)
NEIGHBOUR_REGION_REACH = 2


def _region_range(name: str) -> tuple[int, int]:
    return next((lo, hi) for region, lo, hi in _REGION_OF_APEX if region == name)


def _name_by_region(v: np.ndarray, found, first: int, last: int) -> dict:
    """{region: (signed angle, upper, lower, apex)} for the curves ``found`` (signed angle, upper,
    lower). Each curve is named by the region of its apex and each region keeps its largest curve.
    A curve that loses its region to a larger curve above it is not dropped when the region below
    is on the film, is within ``NEIGHBOUR_REGION_REACH`` vertebrae of its apex and holds no curve or
    a smaller one (which is then moved on down the same way): a lumbar curve of 50 deg whose apex the corners put at T11, below
    a larger main thoracic curve, is the TL/L curve (it was dropped before, and TL/L read as straight
    or as a small curve below it). Curves are never moved up: a curve from T5 to T8 is no proximal
    thoracic curve."""
    names = [region for region, _, _ in _REGION_OF_APEX]
    by_region: dict[str, tuple] = {}
    displaced = []
    for angle, upper, lower in found:
        apex = apex_between(v, upper, lower)
        region = next(r for r, lo, hi in _REGION_OF_APEX if lo <= apex <= hi)
        curve = (angle, upper, lower, apex)
        if region not in by_region or abs(angle) > abs(by_region[region][0]):
            if region in by_region:
                displaced.append((region, by_region[region]))
            by_region[region] = curve
        else:
            displaced.append((region, curve))
    for region, curve in sorted(displaced, key=lambda d: -abs(d[1][0])):
        holder = by_region[region]
        if (curve[1], curve[2]) < (holder[1], holder[2]):
            continue  # above the curve that kept the region: dropped
        k = names.index(region) + 1
        while curve is not None and k < len(names):
            lo, hi = _region_range(names[k])
            reach = lo - curve[3]
            if not (first <= hi and lo <= last and reach <= NEIGHBOUR_REGION_REACH):
                break
            there = by_region.get(names[k])
            if there is not None and abs(there[0]) >= abs(curve[0]):
                break
            by_region[names[k]], curve = curve, there
            k += 1
    return by_region


def cobb_clinical(v: np.ndarray, check_order: bool = True) -> CobbMeasurement:
    first, last = present_range(v, check_order)
    sup = tilt_deg(endplate_vectors(v, "sup"))
    inf = tilt_deg(endplate_vectors(v, "inf"))
    found = []  # (signed angle, upper, lower)
    major = _best_pair(sup, inf, first, last)
    if major is not None:
        found.append(major)
        # compensatory curves bend the other way; an end vertebra may be shared between curves
        s = -1 if major[0] > 0 else 1
        above = _best_pair(sup, inf, first, major[1], s)
        below = _best_pair(sup, inf, major[2], last, s)
        if above is not None:
            found.append(above)
            above2 = _best_pair(sup, inf, first, above[1], -s)
            if above2 is not None:
                found.append(above2)
        if below is not None:
            found.append(below)
            below2 = _best_pair(sup, inf, below[2], last, -s)
            if below2 is not None:
                found.append(below2)

    by_region = _name_by_region(v, found, first, last)
    major_key = None
    if by_region:
        major_key = max(by_region, key=lambda k: abs(by_region[k][0]))
    curves = []
    for name in CURVE_NAMES:
        if name in by_region:
            angle, upper, lower, apex = by_region[name]
            curves.append(
                Curve(
                    name=name,
                    angle_deg=float(abs(angle)),
                    upper_end_vertebra=_name(upper),
                    lower_end_vertebra=_name(lower),
                    apex=_name(apex),
                    role=("major" if name == major_key else "minor")
                    + (_FILM_EDGE if (upper == first > 0 or lower == last < N_VERTEBRAE - 1) else ""),
                    upper_line=(upper, "sup"),
                    lower_line=(lower, "inf"),
                )
            )
        else:
            lo, hi = _region_range(name)
            visible = first <= hi and lo <= last  # some of the region is on the film
            curves.append(  # no curve: no angle (never 0.0, which reads as a measured straight spine)
                Curve(
                    name=name,
                    angle_deg=None,
                    upper_end_vertebra=None,
                    lower_end_vertebra=None,
                    apex=None,
                    role=NO_CURVE if visible else NOT_ON_FILM,
                )
            )
    note = "clinical: superior endplate of the upper end vertebra to inferior endplate of the lower end vertebra"
    if (first, last) != (0, N_VERTEBRAE - 1):
        note += f"; only {VERTEBRA_NAMES[first]}-{VERTEBRA_NAMES[last]} on the film"
    return CobbMeasurement(
        convention="clinical",
        curves=curves,
        vertebrae_present=VERTEBRA_NAMES[first : last + 1],
        note=note,
    )


def curve_between(landmarks, name: str, upper: int, lower: int, spacing_mm=None, check_order: bool = True) -> Curve:
    """The clinical Cobb angle of curve ``name`` between end vertebrae chosen by the reader (or
    carried over from a prior film): superior endplate of ``upper`` to inferior endplate of ``lower``
    (indices 0..16, T1..L5, ``upper < lower``), whatever the automatic choice would be. Both end
    vertebrae must be on the film; ``spacing_mm`` as in ``cobb_angles``."""
    v = as_vertebra_array(landmarks)
    if spacing_mm is not None:
        row_mm, col_mm = (float(s) for s in spacing_mm)
        v = v * np.array([col_mm, row_mm])
    if name not in CURVE_NAMES:
        raise ValueError(f"unknown curve {name!r}; choose one of {', '.join(CURVE_NAMES)}")
    upper, lower = int(upper), int(lower)
    if not 0 <= upper < lower < N_VERTEBRAE:
        raise LandmarkError(f"the upper end vertebra must lie above the lower one (got {_name(upper) if 0 <= upper < N_VERTEBRAE else upper}"
                            f" and {_name(lower) if 0 <= lower < N_VERTEBRAE else lower})")
    first, last = present_range(v, check_order)
    if upper < first or lower > last:
        raise LandmarkError(f"end vertebrae {_name(upper)}-{_name(lower)} are not both on the film "
                            f"(it shows {_name(first)}-{_name(last)})")
    sup = tilt_deg(endplate_vectors(v, "sup"))
    inf = tilt_deg(endplate_vectors(v, "inf"))
    angle = _line_angle_difference(sup[upper], inf[lower])
    return Curve(name=name, angle_deg=float(abs(angle)), upper_end_vertebra=_name(upper),
                 lower_end_vertebra=_name(lower), apex=_name(apex_between(v, upper, lower)),
                 role="chosen", upper_line=(upper, "sup"), lower_line=(lower, "inf"))


def cobb_angles(landmarks, convention: str = "clinical", image_height: Optional[float] = None,
                spacing_mm=None, check_order: bool = True) -> CobbMeasurement:
    """Cobb angles from 68 corner landmarks (pixels). ``image_height`` (pixels) is needed by the
    AASCE convention, whose S-curve rule looks at which half of the film the major curve lies in.
    ``spacing_mm`` (row, column): measure in millimetres (None: in pixels, as the AASCE films
    without a spacing are measured by the organisers).

    Vertebrae that do not run T1 -> L5 down the spine are refused (``LandmarkError`` naming them).
    ``check_order=False`` measures them anyway, as the organisers' MATLAB does: only for scoring and
    training on the AASCE label files as stored (18 of them store the film's top vertebra last,
    9 mark two vertebrae on one; see the Cobb model card, "Labels"), never for a result."""
    v = as_vertebra_array(landmarks)
    if spacing_mm is not None:
        row_mm, col_mm = (float(s) for s in spacing_mm)
        v = v * np.array([col_mm, row_mm])
        image_height = None if image_height is None else image_height * row_mm
    if convention == "aasce":
        return cobb_aasce(v, image_height, check_order)
    if convention == "clinical":
        return cobb_clinical(v, check_order)
    raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")


def smape(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The AASCE challenge metric: 100 * mean over images of sum|gt - pred| / sum(gt + pred). An
    angle not measured (NaN: the film could not be measured) counts as 0 deg, as a missing answer
    would in the challenge (it once counted as a perfect film)."""
    t = np.asarray(truth, dtype=np.float64).reshape(-1, 3)
    p = np.nan_to_num(np.asarray(predicted, dtype=np.float64).reshape(-1, 3), nan=0.0)
    den = np.sum(t + p, axis=1)
    num = np.sum(np.abs(t - p), axis=1)
    return float(100 * np.mean(np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)))
