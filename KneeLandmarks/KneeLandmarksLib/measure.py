"""Joint space width from the 16 KNEEL landmarks: plain numpy geometry.

Definition used everywhere in this module (network path, edited points, phantom ground truth):

- Landmarks are in ANATOMICAL order for both knees: T1 and F1 at the lateral margin, T9 and F7 at
  the medial margin (``shape_model.LANDMARK_LABELS``), in image pixels (x right, y down).
  On a standard PA film (patient's right on the viewer's left) the lateral side of a right knee
  is on the viewer's left and that of a left knee on the viewer's right; the side is only used to
  report which way the knee faces, the compartments come from the landmark order.
- Contours: the tibial contour is the centripetal Catmull-Rom curve through T1..T9, the femoral
  contour the one through F1..F7 (the curves pass exactly through the landmarks).
- Lateral compartment: the part of the tibial contour from T1 to T3 against the part of the
  femoral contour from F1 to F3. Medial compartment: tibia T7..T9 against femur F5..F7. The tibial
  spines (T4..T6) and the intercondylar notch (F4) are excluded, as in minimum-JSW readings.
- Minimum JSW of a compartment: the smallest Euclidean distance in millimetres between the two
  contour parts (pixel spacing applied per axis), with the two closest points; 0 when the
  contours touch or cross (bone on bone), flagged as ``overlap``.
No torch, no Slicer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

N_LANDMARKS = 16
TIBIA_COMPARTMENTS = {"lateral": (0, 2), "medial": (6, 8)}  # tibial point index range (inclusive)
FEMUR_COMPARTMENTS = {"lateral": (0, 2), "medial": (4, 6)}  # femoral point index range (inclusive)
PER_SEGMENT = 16


class LandmarkError(ValueError):
    """Landmarks that cannot be measured (wrong count, not finite)."""


@dataclass
class CompartmentWidth:
    name: str
    width_mm: float
    tibia_point_px: np.ndarray  # (2,) closest point on the tibial contour
    femur_point_px: np.ndarray  # (2,) closest point on the femoral contour
    overlap: bool = False


@dataclass
class KneeMeasurement:
    side: str
    landmarks_px: np.ndarray  # (16, 2)
    medial: CompartmentWidth
    lateral: CompartmentWidth
    spacing_mm: tuple
    confidence: Optional[float] = None
    notes: list = field(default_factory=list)

    @property
    def medial_mm(self) -> float:
        return self.medial.width_mm

    @property
    def lateral_mm(self) -> float:
        return self.lateral.width_mm

    def reported_mm(self, name: str) -> Optional[float]:
        """The width as reported (record, table, overlay): None, "not measurable", when the contours
        touch or cross. A crossing is not bone on bone a reader would call 0 mm but landmarks that
        cannot both be right, so a JSW of zero or below is never reported as a measurement."""
        c = self.medial if name == "medial" else self.lateral
        return None if c.overlap else c.width_mm

    def to_dict(self) -> dict:
        from .landmarks import LANDMARK_LABELS

        sx, sy = self.spacing_mm[1], self.spacing_mm[0]
        return {
            "side": self.side,
            "jsw_medial_mm": _round(self.reported_mm("medial")),
            "jsw_lateral_mm": _round(self.reported_mm("lateral")),
            "jsw_medial_points_px": [np.round(self.medial.femur_point_px, 3).tolist(),
                                     np.round(self.medial.tibia_point_px, 3).tolist()],
            "jsw_lateral_points_px": [np.round(self.lateral.femur_point_px, 3).tolist(),
                                      np.round(self.lateral.tibia_point_px, 3).tolist()],
            "overlap": {"medial": self.medial.overlap, "lateral": self.lateral.overlap},
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "pixel_spacing_mm": list(self.spacing_mm),
            "landmarks_px": {lab: np.round(p, 3).tolist() for lab, p in zip(LANDMARK_LABELS, self.landmarks_px)},
            "landmarks_mm": {lab: [round(float(p[0] * sx), 3), round(float(p[1] * sy), 3)]
                             for lab, p in zip(LANDMARK_LABELS, self.landmarks_px)},
            "notes": list(self.notes),
        }


def _round(v: Optional[float], digits: int = 4) -> Optional[float]:
    return None if v is None else round(float(v), digits)


def format_mm(v: Optional[float]) -> str:
    return "not measurable" if v is None else f"{v:.2f} mm"


def catmull_rom(points: np.ndarray, per_segment: int = PER_SEGMENT) -> np.ndarray:
    """Centripetal Catmull-Rom curve through every point; sample j*per_segment is point j."""
    p = np.asarray(points, float)
    if len(p) < 3:
        return p.copy()
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        t1 = max(np.linalg.norm(p1 - p0), 1e-9) ** 0.5
        t2 = t1 + max(np.linalg.norm(p2 - p1), 1e-9) ** 0.5
        t3 = t2 + max(np.linalg.norm(p3 - p2), 1e-9) ** 0.5
        t = np.linspace(t1, t2, per_segment, endpoint=False)[:, None]
        a1 = (t1 - t) / t1 * p0 + t / t1 * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / t2 * a1 + t / t2 * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    out.append(p[-1:])
    return np.vstack(out)


def contours(landmarks_px: np.ndarray, per_segment: int = PER_SEGMENT) -> tuple[np.ndarray, np.ndarray]:
    """(tibial contour, femoral contour), dense polylines in pixels."""
    p = as_landmarks(landmarks_px)
    return catmull_rom(p[:9], per_segment), catmull_rom(p[9:], per_segment)


def as_landmarks(landmarks) -> np.ndarray:
    p = np.asarray(landmarks, float)
    if p.size != 2 * N_LANDMARKS:
        raise LandmarkError(f"expected 16 landmarks (9 tibial, 7 femoral), got {p.size // 2 if p.ndim else 0}")
    p = p.reshape(N_LANDMARKS, 2)
    if not np.isfinite(p).all():
        raise LandmarkError("some landmarks are not finite numbers")
    return p


def _segment_closest(a0, a1, b0, b1):
    """Closest points between segments sets a (N,2)-(N,2) and b (M,2)-(M,2): (dist, pa, pb) arrays
    of shape (N, M)."""
    d1 = (a1 - a0)[:, None, :]
    d2 = (b1 - b0)[None, :, :]
    r = a0[:, None, :] - b0[None, :, :]
    a = (d1 * d1).sum(-1)
    e = (d2 * d2).sum(-1)
    f = (d2 * r).sum(-1)
    c = (d1 * r).sum(-1)
    b = (d1 * d2).sum(-1)
    denom = a * e - b * b
    s = np.where(denom > 1e-12, np.clip((b * f - c * e) / np.where(denom > 1e-12, denom, 1), 0, 1), 0.0)
    t = (b * s + f) / np.where(e > 1e-12, e, 1)
    t_clip = np.clip(t, 0, 1)
    s = np.where(t != t_clip, np.clip((b * t_clip - c) / np.where(a > 1e-12, a, 1), 0, 1), s)
    pa = a0[:, None, :] + s[..., None] * d1
    pb = b0[None, :, :] + t_clip[..., None] * d2
    return np.linalg.norm(pa - pb, axis=-1), pa, pb


def polyline_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Minimum distance between two polylines, with the closest point on each."""
    d, pa, pb = _segment_closest(a[:-1], a[1:], b[:-1], b[1:])
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return float(d[i, j]), pa[i, j], pb[i, j]


def compartment_width(landmarks_px, name: str, spacing_mm=(1.0, 1.0)) -> CompartmentWidth:
    p = as_landmarks(landmarks_px)
    sy, sx = float(spacing_mm[0]), float(spacing_mm[1])
    scale = np.array([sx, sy])
    tib, fem = contours(p)
    t0, t1 = TIBIA_COMPARTMENTS[name]
    f0, f1 = FEMUR_COMPARTMENTS[name]
    tib_part = tib[t0 * PER_SEGMENT: t1 * PER_SEGMENT + 1] * scale
    fem_part = fem[f0 * PER_SEGMENT: f1 * PER_SEGMENT + 1] * scale
    dist, pt, pf = polyline_distance(tib_part, fem_part)
    overlap = dist < 1e-9 or _crosses(tib_part, fem_part)
    return CompartmentWidth(name, 0.0 if overlap else dist, pt / scale, pf / scale, overlap)


def _crosses(tib: np.ndarray, fem: np.ndarray) -> bool:
    """Whether any femoral point lies below the tibial contour (bone through bone) in the joint's
    own frame: the femur should be above (smaller y, along the tibia's normal)."""
    direction = tib[-1] - tib[0]
    n = np.array([direction[1], -direction[0]])  # points up (toward the femur) for an x-increasing curve
    n /= max(np.linalg.norm(n), 1e-12)
    if direction[0] < 0:
        n = -n
    u = direction / max(np.linalg.norm(direction), 1e-12)
    ut, uf = (tib - tib[0]) @ u, (fem - tib[0]) @ u
    order = np.argsort(ut)
    inside = (uf >= ut.min()) & (uf <= ut.max())
    if not inside.any():
        return False
    tib_height = np.interp(uf[inside], ut[order], ((tib - tib[0]) @ n)[order])
    return bool(np.any(((fem - tib[0]) @ n)[inside] < tib_height - 1e-9))


def joint_space_width(landmarks_px, side: str = "right", spacing_mm=(1.0, 1.0), confidence=None) -> KneeMeasurement:
    """Medial and lateral minimum JSW (mm) of one knee. ``spacing_mm``: (row, column) or one number."""
    if np.isscalar(spacing_mm):
        spacing_mm = (float(spacing_mm), float(spacing_mm))
    spacing_mm = (float(spacing_mm[0]), float(spacing_mm[1]))
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', not {side!r}")
    p = as_landmarks(landmarks_px)
    m = KneeMeasurement(side, p, compartment_width(p, "medial", spacing_mm),
                        compartment_width(p, "lateral", spacing_mm), spacing_mm, confidence)
    lateral_left = p[0, 0] < p[8, 0]
    if lateral_left != (side == "right"):
        m.notes.append("the lateral margin (T1) is on the unexpected side for a "
                       f"{side} knee on a standard PA film: check the side or the film's orientation")
    for c in (m.medial, m.lateral):
        if c.overlap:
            m.notes.append(f"{c.name}: femoral and tibial contours touch or cross: JSW not measurable")
    return m


def jsw_line_points(m: KneeMeasurement, name: str) -> np.ndarray:
    """The two ends (femur, tibia) of a compartment's minimum JSW, pixels (2, 2)."""
    c = m.medial if name == "medial" else m.lateral
    return np.array([c.femur_point_px, c.tibia_point_px])
