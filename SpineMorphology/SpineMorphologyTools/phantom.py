"""Synthetic bare-back photographs with exact ground truth (``mskmorph phantom back``).

An honest, simple generator, not a body scan: a parametric adolescent back surface is built as a
height field in a body frame (x: lateral, to the image right = the patient's right when seen from
behind; y: down, 0 at the vertebra prominens C7; z: posterior, towards the camera; millimetres):

- trunk cross-section: a super-ellipse whose half-width follows neck, trapezius, shoulders,
  waist and hips, and whose half-depth gives the flanks;
- sagittal profile of the midline: kyphosis and lordosis bumps plus a trunk inclination;
- spinal groove (paraspinal muscles), vertebra prominens bump, scapulae as raised plates,
  lumbar dimples (the posterior superior iliac spines), gluteal cleft and buttocks;
- scoliosis: one or two lateral curves of the spine line with axial rotation towards the
  convexity; the rotation is a displacement of the back surface around the spine line (rib hump
  and lumbar prominence) whose slope at the spine line is exactly tan(rotation);
- head with hair, arms at the sides, trousers (waistband) and sometimes a bra strap.

It is rendered by a small numpy ray caster of the height field through a pinhole camera (random
distance and focal length), with skin tone and texture, Lambertian + Blinn-Phong specular
shading from the surface normals, random backgrounds, blur, noise and JPEG compression.

Ground truth per photo: depth along the optical axis (mm) for every pixel of the person, the back
mask (skin of trunk and neck, not arms, hair or clothing), the spine line from C7 to the midpoint
of the lumbar dimples (pixels and camera millimetres), the nine SpinePose keypoints, the two
dimples and the surface measures computed with ``morphology.surface_measures`` on the exact
geometry (the same definitions the measurement path uses).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

from SpineMorphologyLib import morphology

KEYPOINT_NAMES = ("sacrum", "L5", "L3", "T12/L1", "T8", "T3", "C7", "C3/C4", "C1")
# level of each keypoint as a fraction of the trunk length (C7 = 0, dimple midpoint = 1), down
KEYPOINT_LEVELS = np.array([1.07, 0.93, 0.80, 0.62, 0.37, 0.12, 0.0, -0.10, -0.19])

LABEL_BACKGROUND, LABEL_BACK, LABEL_ARM, LABEL_HAIR, LABEL_CLOTH = 0, 1, 2, 3, 4
GRID_MM = 2.0

SKIN_TONES = np.array(
    [[241, 205, 180], [226, 180, 150], [205, 150, 115], [180, 125, 90], [150, 100, 70], [110, 72, 50], [85, 55, 40]],
    dtype=np.float64,
) / 255.0


@dataclass
class BackParams:
    """The shape of one synthetic back (mm and degrees)."""

    trunk_length_mm: float = 420.0
    shoulder_half_width_mm: float = 185.0
    waist_half_width_mm: float = 125.0
    hip_half_width_mm: float = 150.0
    neck_half_width_mm: float = 55.0
    half_depth_mm: float = 95.0
    section_exponent: float = 2.4
    kyphosis_mm: float = 22.0
    lordosis_mm: float = 18.0
    inclination_deg: float = 0.0  # + : C7 anterior of the dimples
    imbalance_deg: float = 0.0  # + : C7 to the right of the dimples
    curves: tuple = ()  # (amplitude mm (+ right), centre as fraction of trunk length, width fraction)
    rotation_gain_deg_per_mm: float = 0.35
    trunk_follow: float = 0.3  # how much of the lateral spine curve the trunk outline follows
    groove_mm: float = 4.0
    prominens_mm: float = 4.0
    scapula_mm: float = 8.0
    dimple_half_distance_mm: float = 48.0
    dimple_depth_mm: float = 4.0
    dimple_sigma_mm: float = 10.0
    pelvic_obliquity_deg: float = 0.0  # + : right dimple higher
    waistband_below_dimples_mm: float = 60.0
    bra_strap: bool = False

    @staticmethod
    def sample(rng: np.random.Generator) -> "BackParams":
        L = rng.uniform(350, 480)
        curves = []
        if rng.uniform() < 0.8:  # scoliotic
            side = rng.choice([-1.0, 1.0])
            kind = rng.choice(["thoracic", "lumbar", "double"], p=[0.4, 0.25, 0.35])
            if kind in ("thoracic", "double"):
                curves.append((side * rng.uniform(4, 32), rng.uniform(0.3, 0.5), rng.uniform(0.12, 0.2)))
            if kind in ("lumbar", "double"):
                s = -side if kind == "double" else side
                curves.append((s * rng.uniform(4, 25), rng.uniform(0.68, 0.82), rng.uniform(0.1, 0.16)))
        return BackParams(
            trunk_length_mm=L,
            shoulder_half_width_mm=L * rng.uniform(0.40, 0.49),
            waist_half_width_mm=L * rng.uniform(0.26, 0.33),
            hip_half_width_mm=L * rng.uniform(0.33, 0.41),
            neck_half_width_mm=L * rng.uniform(0.11, 0.14),
            half_depth_mm=L * rng.uniform(0.19, 0.25),
            section_exponent=rng.uniform(2.0, 3.0),
            kyphosis_mm=rng.uniform(10, 38),
            lordosis_mm=rng.uniform(8, 32),
            inclination_deg=rng.uniform(-5, 5),
            imbalance_deg=rng.uniform(-3, 3),
            curves=tuple(curves),
            rotation_gain_deg_per_mm=rng.uniform(0.15, 0.5),
            trunk_follow=rng.uniform(0.1, 0.5),
            groove_mm=rng.uniform(2, 7),
            prominens_mm=rng.uniform(2, 6),
            scapula_mm=rng.uniform(4, 12),
            dimple_half_distance_mm=rng.uniform(38, 60),
            dimple_depth_mm=rng.uniform(2.5, 6),
            dimple_sigma_mm=rng.uniform(8, 13),
            pelvic_obliquity_deg=rng.uniform(-5, 5),
            waistband_below_dimples_mm=rng.uniform(25, 130),
            bra_strap=bool(rng.uniform() < 0.25),
        )


def _rot(axis: int, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


@dataclass
class Camera:
    """Pinhole camera aimed at the body-frame point (x0, y0, 0) from ``distance_mm``; image x
    right, y down. Face-on (all angles 0) it looks along -z of the body frame. Turned, it orbits
    that point: ``yaw_deg`` about the body's vertical (+: the camera moves to the patient's right),
    ``pitch_deg`` about the body's horizontal (+: the camera moves up and looks down), then
    ``roll_deg`` about its own optical axis (+: the picture turns clockwise)."""

    width: int
    height: int
    focal_px: float
    cx: float
    cy: float
    distance_mm: float  # from the camera to the point it is aimed at
    x0_mm: float  # body-frame point on the optical axis
    y0_mm: float
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0

    @property
    def focal_35mm(self) -> float:
        return self.focal_px * 36.0 / max(self.width, self.height)

    def axes(self) -> np.ndarray:
        """3 x 3: the camera's X (right), Y (down) and optical axis Z as columns, in the body frame."""
        face_on = np.diag([1.0, 1.0, -1.0])
        return _rot(1, self.yaw_deg) @ _rot(0, self.pitch_deg) @ face_on @ _rot(2, self.roll_deg)

    def centre(self) -> np.ndarray:
        """The camera's position in the body frame."""
        return np.array([self.x0_mm, self.y0_mm, 0.0]) - self.distance_mm * self.axes()[:, 2]

    def to_camera(self, points_body: np.ndarray) -> np.ndarray:
        """Body points (N, 3) -> camera coordinates (N, 3): X right, Y down, Z along the axis."""
        return (np.asarray(points_body, float).reshape(-1, 3) - self.centre()) @ self.axes()

    def face_on(self) -> "Camera":
        """The same camera not turned (the body's own frame, where the truth is measured)."""
        return Camera(self.width, self.height, self.focal_px, self.cx, self.cy, self.distance_mm, self.x0_mm,
                      self.y0_mm)


@dataclass
class CameraVariation:
    """How the cameras of a photo set vary (uniform ranges, degrees and mm)."""

    yaw_deg: float = 0.0  # +-
    pitch_deg: float = 0.0  # +-
    roll_deg: float = 0.0  # +-
    distance_mm: tuple = (1200.0, 2600.0)
    trunk_fraction: tuple = (0.4, 0.6)  # trunk length C7-dimples over the photo height
    off_centre: float = 0.06  # of the trunk length, sideways
    aim_height: tuple = (0.45, 0.62)  # the aimed point's height below C7, fraction of the trunk


# "face-on": the cameras every weight so far was trained on (bit for bit the photos they had);
# "varied": what real photos have: turned +-15 deg sideways and up/down, +-5 deg about the axis,
# nearer and farther, the person off-centre and, framed tight, cut by the photo's edges
CAMERAS = {
    "face-on": CameraVariation(),
    "varied": CameraVariation(yaw_deg=15.0, pitch_deg=15.0, roll_deg=5.0, distance_mm=(900.0, 3200.0),
                              trunk_fraction=(0.35, 0.85), off_centre=0.25, aim_height=(0.3, 0.8)),
}


@dataclass
class BackPhoto:
    rgb: np.ndarray  # H x W x 3 uint8
    depth_mm: np.ndarray  # H x W float32, 0 where no person
    back_mask: np.ndarray  # H x W bool
    labels: np.ndarray  # H x W uint8 (LABEL_*)
    keypoints_px: np.ndarray  # 9 x 2
    keypoints_visible: np.ndarray  # 9 bool
    spine_line_px: np.ndarray  # N x 2, C7 to the dimple midpoint
    spine_line_mm: np.ndarray  # N x 3 camera coordinates (X right, Y down, Z along the axis)
    dimples_px: np.ndarray  # 2 x 2: left, right (patient's sides)
    dimples_mm: np.ndarray  # 2 x 3 camera coordinates
    camera: Camera
    params: BackParams
    measures: dict

    def truth(self) -> dict:
        return {
            "keypoint_names": list(KEYPOINT_NAMES),
            "keypoints_px": np.round(self.keypoints_px, 3).tolist(),
            "keypoints_visible": self.keypoints_visible.astype(bool).tolist(),
            "spine_line_px": np.round(self.spine_line_px, 3).tolist(),
            "spine_line_mm": np.round(self.spine_line_mm, 3).tolist(),
            "dimples_px": np.round(self.dimples_px, 3).tolist(),
            "dimples_mm": np.round(self.dimples_mm, 3).tolist(),
            "camera": asdict(self.camera) | {"focal_35mm": self.camera.focal_35mm},
            "params": asdict(self.params),
            "measures": self.measures,
            "depth_units": "mm along the optical axis, 0 = no person",
        }


# --------------------------------------------------------------------------------------------
# the body as height fields

class BackBody:
    """Analytic back surface of one parameter set, evaluated on a 2 mm body grid."""

    def __init__(self, p: BackParams, rng: np.random.Generator):
        self.p = p
        L = p.trunk_length_mm
        self.L = L
        self.x = np.arange(-0.95 * L, 0.95 * L + GRID_MM, GRID_MM)
        self.y = np.arange(-0.8 * L, 1.75 * L + GRID_MM, GRID_MM)
        X, Y = np.meshgrid(self.x, self.y)
        self.X, self.Y = X, Y
        t = Y / L
        self.height, self.labels = self._build(X, Y, t, rng)
        self.albedo = None

    # lateral position of the spine line (x, mm) at height y
    def spine_x(self, y):
        p, L = self.p, self.L
        t = np.asarray(y, dtype=np.float64) / L
        base = np.tan(np.radians(p.imbalance_deg)) * (L - np.clip(y, 0, None))
        base = np.where(t < 0, np.tan(np.radians(p.imbalance_deg)) * L, base)
        return base + self.curve_x(y)

    def curve_x(self, y):
        t = np.asarray(y, dtype=np.float64) / self.L
        window = np.sqrt(np.clip(np.sin(np.pi * np.clip(t, 0, 1)), 0, None))
        out = np.zeros_like(t)
        for amp, centre, width in self.p.curves:
            out = out + amp * np.exp(-0.5 * ((t - centre) / width) ** 2)
        return out * window

    def rotation_deg(self, y):
        return self.p.rotation_gain_deg_per_mm * self.curve_x(y)

    def sagittal(self, y):
        """z of the midline profile (posterior, mm) at height y."""
        p, L = self.p, self.L
        t = np.asarray(y, dtype=np.float64) / L
        z = p.kyphosis_mm * np.exp(-0.5 * ((t - 0.33) / 0.2) ** 2)
        z = z - p.lordosis_mm * np.exp(-0.5 * ((t - 0.85) / 0.13) ** 2)
        z = z - np.tan(np.radians(p.inclination_deg)) * (L - y)
        z = z - np.where(t < 0, 0.35 * L * t**2 / 0.09, 0.0)  # the neck goes forwards
        z = z + np.where(t > 1.0, 0.25 * L * np.clip(t - 1.0, 0, 0.35) ** 2 / 0.1, 0.0)  # sacrum backwards
        return z

    def _build(self, X, Y, t, rng):
        p, L = self.p, self.L
        S, W, H, N = p.shoulder_half_width_mm, p.waist_half_width_mm, p.hip_half_width_mm, p.neck_half_width_mm
        knots_t = [-0.8, -0.3, -0.07, 0.0, 0.07, 0.25, 0.5, 0.72, 0.95, 1.15, 1.4, 1.8]
        knots_w = [N, N, 1.15 * N, 0.7 * S, S, 0.96 * S, 0.5 * (S + W), W, 0.5 * (W + H), H, 0.97 * H, 0.9 * H]
        half_width = PchipInterpolator(knots_t, knots_w)(np.clip(t, -0.8, 1.8))
        depth = PchipInterpolator([-0.8, -0.07, 0.07, 1.8], [0.6 * p.half_depth_mm, 0.65 * p.half_depth_mm,
                                                              p.half_depth_mm, p.half_depth_mm])(np.clip(t, -0.8, 1.8))
        spine = self.spine_x(Y)
        centre = spine - (1 - p.trunk_follow) * self.curve_x(Y)
        r = np.abs(X - centre) / half_width
        inside = r < 1.0
        e = p.section_exponent
        section = np.power(np.clip(1 - np.power(np.clip(r, 0, 1), e), 0, 1), 1 / e)
        h = self.sagittal(Y) + depth * (section - 1)
        dx = X - spine
        # spinal groove, deeper in the lumbar region
        g = p.groove_mm * (0.35 + 0.65 * np.exp(-0.5 * ((t - 0.82) / 0.18) ** 2)) * (t > -0.05)
        h = h - g * np.exp(-0.5 * (dx / 11.0) ** 2)
        # paraspinal muscles: two soft ridges beside the groove
        h = h + 0.5 * g * (np.exp(-0.5 * ((dx - 28) / 14.0) ** 2) + np.exp(-0.5 * ((dx + 28) / 14.0) ** 2))
        # vertebra prominens
        h = h + p.prominens_mm * np.exp(-0.5 * ((dx / 9.0) ** 2 + (Y / 10.0) ** 2))
        # scapulae: raised plates with soft borders
        for side in (-1, 1):
            xc, yc = centre + side * 0.52 * S, 0.2 * L
            q = ((X - xc) / (0.28 * S)) ** 2 + ((Y - yc) / (0.2 * L)) ** 2
            h = h + p.scapula_mm * np.exp(-(q**2))
        # axial rotation: the surface turns around the spine line (rib hump / lumbar prominence)
        rot = np.tan(np.radians(self.rotation_deg(Y)))
        h = h + rot * dx * np.exp(-0.5 * (dx / (0.45 * half_width)) ** 2)
        # lumbar dimples, pelvic obliquity (+: right higher)
        for side, (dxd, ydd) in zip((-1, 1), self.dimple_offsets()):
            q = ((X - dxd) ** 2 + (Y - ydd) ** 2) / (2 * p.dimple_sigma_mm**2)
            h = h - p.dimple_depth_mm * np.exp(-q)
        # buttocks and gluteal cleft
        below = np.clip((Y - (L + 50)) / 40.0, 0, 1)
        for side in (-1, 1):
            q = ((X - spine - side * 0.5 * H) / (0.4 * H)) ** 2 + ((Y - 1.35 * L) / (0.28 * L)) ** 2
            h = h + 18.0 * np.exp(-q)
        h = h - 14.0 * below * np.exp(-0.5 * ((X - self.spine_x(L)) / 5.0) ** 2)
        labels = np.where(inside & (t > -0.45), LABEL_BACK, LABEL_BACKGROUND).astype(np.uint8)

        # head (with hair) above the neck
        head_y, ay, ax = -0.47 * L, 0.27 * L, 0.2 * L
        hx = self.spine_x(0.0)
        q = ((X - hx) / ax) ** 2 + ((Y - head_y) / ay) ** 2
        head_h = self.sagittal(-0.2 * L) - 0.2 * L + 0.55 * L * np.sqrt(np.clip(1 - q, 0, 1)) * 0.45
        head = (q < 1) & (head_h > np.where(labels > 0, h, -np.inf))
        h = np.where(head, head_h, h)
        labels[head] = LABEL_HAIR
        # arms at the sides
        R = 0.095 * L
        for side in (-1, 1):
            ax_x = centre + side * (S + 0.06 * L)
            reach = (t > 0.0) & (t < 1.1)
            d = np.abs(X - ax_x)
            arm_h = self.sagittal(Y) - 0.55 * depth + np.sqrt(np.clip(R**2 - d**2, 0, None)) * 1.0
            taper = np.clip((t - 0.0) / 0.05, 0, 1)
            arm = reach & (d < R * np.sqrt(taper + 1e-9)) & (arm_h > np.where(labels > 0, h, -np.inf))
            h = np.where(arm, arm_h, h)
            labels[arm] = LABEL_ARM
        # trousers and bra strap
        waist_y = L + p.waistband_below_dimples_mm + 8 * np.sin(X / 60.0)
        cloth = (labels > 0) & (Y > waist_y)
        h = np.where(cloth, h + 3.0, h)
        labels[cloth] = LABEL_CLOTH
        if p.bra_strap:
            ys = 0.36 * L + 6 * np.sin(X / 90.0)
            strap = (labels == LABEL_BACK) & (np.abs(Y - ys) < 9)
            h = np.where(strap, h + 1.5, h)
            labels[strap] = LABEL_CLOTH
        self.floor = float(np.min(h[labels > 0])) - 20.0
        h = np.where(labels > 0, h, self.floor)
        return h.astype(np.float64), labels

    def dimple_offsets(self):
        p, L = self.p, self.L
        x_mid = self.spine_x(L)
        dy = p.dimple_half_distance_mm * np.tan(np.radians(p.pelvic_obliquity_deg))
        return [(x_mid - p.dimple_half_distance_mm, L + dy), (x_mid + p.dimple_half_distance_mm, L - dy)]

    def surface_z(self, x, y):
        """Height of the surface at body points (bilinear on the grid)."""
        return ndimage.map_coordinates(self.height, self._index(x, y), order=1, mode="nearest")

    def _index(self, x, y):
        return np.array([(np.asarray(y) - self.y[0]) / GRID_MM, (np.asarray(x) - self.x[0]) / GRID_MM])

    def local_rotation_deg(self, y, half_window_mm=morphology.ROTATION_HALF_WINDOW_MM):
        """Surface rotation on the spine line by the measurement's definition (morphology)."""
        xs = self.spine_x(y)
        offsets = np.linspace(-half_window_mm, half_window_mm, 21)
        xx = xs[:, None] + offsets[None, :]
        yy = np.repeat(np.asarray(y)[:, None], len(offsets), axis=1)
        hh = self.surface_z(xx.ravel(), yy.ravel()).reshape(xx.shape)
        slope = np.polyfit(offsets, hh.T, 1)[0]
        return np.degrees(np.arctan(slope))


# --------------------------------------------------------------------------------------------
# rendering

def _texture(rng, shape, scale):
    noise = rng.standard_normal((max(2, shape[0] // scale + 2), max(2, shape[1] // scale + 2)))
    zoom = (shape[0] / (noise.shape[0] - 1), shape[1] / (noise.shape[1] - 1))
    big = ndimage.zoom(noise, zoom, order=3)[: shape[0], : shape[1]]
    return big / (big.std() + 1e-9)


def _background(rng, h, w):
    kind = rng.integers(0, 4)
    base = rng.uniform(0.15, 0.9, 3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.ones((h, w, 3)) * base
    img *= (1 + rng.uniform(-0.3, 0.3) * (yy - 0.5) + rng.uniform(-0.3, 0.3) * (xx - 0.5))[..., None]
    if kind == 1:  # curtain
        period = rng.uniform(0.03, 0.1)
        img *= (1 + 0.15 * np.sin(2 * np.pi * xx / period + rng.uniform(0, 6)))[..., None]
    elif kind == 2:  # tiles / door frame
        step = rng.uniform(0.08, 0.25)
        lines = (np.mod(xx, step) < 0.006) | (np.mod(yy, step) < 0.006)
        img[lines] *= 0.6
    elif kind == 3:  # a grid of measuring lines as in a clinic
        img *= (1 + 0.2 * _texture(rng, (h, w), 40))[..., None]
    img *= (1 + 0.04 * _texture(rng, (h, w), 8))[..., None]
    return np.clip(img, 0, 1)


def sample_camera(rng, body: BackBody, width: int, height: int, cameras: str = "face-on") -> Camera:
    """A random camera for one photo; ``cameras`` names the variation (``CAMERAS``). The face-on
    draws come first and the turn after them, so "face-on" makes exactly the photos it always did."""
    if cameras not in CAMERAS:
        raise ValueError(f"unknown camera variation {cameras!r}; one of {tuple(CAMERAS)}")
    var = CAMERAS[cameras]
    L = body.L
    distance = rng.uniform(*var.distance_mm)
    fraction = rng.uniform(*var.trunk_fraction)  # trunk length as a fraction of the image height
    focal = fraction * height * distance / L
    camera = Camera(
        width=width, height=height, focal_px=float(focal),
        cx=width / 2 + rng.uniform(-0.03, 0.03) * width, cy=height / 2 + rng.uniform(-0.03, 0.03) * height,
        distance_mm=float(distance),
        x0_mm=float(body.spine_x(L) + rng.uniform(-var.off_centre, var.off_centre) * L),
        y0_mm=float(L * rng.uniform(*var.aim_height)),
    )
    if var.yaw_deg or var.pitch_deg or var.roll_deg:
        camera.yaw_deg, camera.pitch_deg, camera.roll_deg = (
            float(rng.uniform(-r, r)) for r in (var.yaw_deg, var.pitch_deg, var.roll_deg))
    return camera


def project(camera: Camera, points_body: np.ndarray):
    """Body points (N, 3) -> pixels (N, 2) and camera coordinates (N, 3)."""
    cam = camera.to_camera(points_body)
    X, Y, Z = cam[:, 0], cam[:, 1], cam[:, 2]
    px = np.column_stack([camera.cx + camera.focal_px * X / Z, camera.cy + camera.focal_px * Y / Z])
    return px, cam


def pixel_rays(camera: Camera):
    """Per pixel: the camera centre and the ray direction in the body frame, scaled so that the
    point at parameter t lies at depth t along the optical axis."""
    h, w = camera.height, camera.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    a = (u - camera.cx) / camera.focal_px
    b = (v - camera.cy) / camera.focal_px
    d = np.stack([a, b, np.ones_like(a)], -1) @ camera.axes().T
    return camera.centre(), d


def render(body: BackBody, camera: Camera, rng: np.random.Generator, scene: str = "plain"):
    h, w = camera.height, camera.width
    c, d = pixel_rays(camera)
    Z = np.full((h, w), camera.distance_mm)
    dz = np.minimum(d[..., 2], -1e-3)  # rays run towards the body (-z)
    for _ in range(10):  # fixed point: the ray's height equals the surface's, c_z + Z d_z = h(x(Z), y(Z))
        xb, yb = c[0] + d[..., 0] * Z, c[1] + d[..., 1] * Z
        hb = ndimage.map_coordinates(body.height, body._index(xb, yb), order=1, mode="constant", cval=body.floor)
        Z = 0.5 * Z + 0.5 * (hb - c[2]) / dz
    xb, yb = c[0] + d[..., 0] * Z, c[1] + d[..., 1] * Z
    idx = body._index(xb, yb)
    labels = ndimage.map_coordinates(body.labels, idx, order=0, mode="constant", cval=0).astype(np.uint8)
    # normals in the body frame from the height gradient
    gy, gx = np.gradient(ndimage.gaussian_filter(body.height, 0.7), GRID_MM)
    nx = ndimage.map_coordinates(-gx, idx, order=1, mode="nearest")
    ny = ndimage.map_coordinates(-gy, idx, order=1, mode="nearest")
    n = np.stack([nx, ny, np.ones_like(nx)], -1)
    n = n @ camera.axes() * [1.0, 1.0, -1.0]  # into the camera's frame, towards the camera
    n /= np.linalg.norm(n, axis=-1, keepdims=True)

    person = labels > 0
    rgb = shade(rng, labels, n, person, scene)
    depth = np.where(person, Z, 0.0).astype(np.float32)
    return rgb, depth, labels


SCENES = ("plain", "varied")


def _skin_tone_anywhere(rng) -> np.ndarray:
    """A skin tone anywhere along the range of SKIN_TONES (lightest to darkest), not only its rows."""
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    return (SKIN_TONES[i] + (t - i) * (SKIN_TONES[i + 1] - SKIN_TONES[i])) * rng.uniform(0.85, 1.1, 3)


def _lights(rng, n: np.ndarray):
    """1-3 lights from anywhere in front (sides included), warm to cool, soft or hard: the diffuse
    light (H x W x 3) and the specular highlight of the strongest."""
    total = np.zeros(n.shape[:2] + (3,))
    k = int(rng.integers(1, 4))
    weights = rng.dirichlet(np.ones(k)) if k > 1 else np.ones(1)
    for j in range(k):
        d = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-1.2, 0.6), 1.0])
        d /= np.linalg.norm(d)
        warm = rng.uniform(-1, 1)  # -1 cool ... +1 warm
        colour = np.array([1.0 + 0.15 * warm, 1.0, 1.0 - 0.25 * warm]) * rng.uniform(0.85, 1.15)
        hardness = rng.uniform(1.0, 3.0)  # sharper fall-off into the shade
        total += weights[j] * np.clip(n @ d, 0, None)[..., None] ** hardness * colour
        if j == 0:
            half = (d + [0, 0, 1.0]) / np.linalg.norm(d + [0, 0, 1.0])
            spec = np.clip(n @ half, 0, None) ** rng.uniform(10, 60)
    return total * rng.uniform(1.0, 1.4), spec


def _shadow(rng, h, w) -> np.ndarray:
    """A cast shadow across the photo (a soft- or hard-edged half plane), H x W factor."""
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    dist = (xx - rng.uniform(0, w / max(h, w))) * np.cos(angle) + (yy - rng.uniform(0, h / max(h, w))) * np.sin(angle)
    edge = rng.uniform(0.002, 0.08)
    return 1 - rng.uniform(0.25, 0.6) / (1 + np.exp(-dist / edge))


def _clutter(rng, img: np.ndarray) -> np.ndarray:
    """Things in the room behind the person: boxes (furniture, door frames, pictures) and blobs."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(2, 9))):
        colour = rng.uniform(0.05, 0.95, 3)
        if rng.uniform() < 0.6:
            x0, y0 = rng.uniform(-0.2 * w, w), rng.uniform(-0.2 * h, h)
            x1, y1 = x0 + rng.uniform(0.05, 0.6) * w, y0 + rng.uniform(0.05, 0.8) * h
            inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
        else:
            cx, cy, rx, ry = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.25) * w, rng.uniform(0.03, 0.25) * h
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        img = np.where(inside[..., None], colour * (1 + 0.05 * _texture(rng, (h, w), 10))[..., None], img)
    return img


def shade(rng: np.random.Generator, labels: np.ndarray, n: np.ndarray, person: np.ndarray,
          scene: str = "plain") -> np.ndarray:
    """Albedo (skin tone and texture, hair, cloth), a key light with ambient and specular terms
    from the surface normals ``n`` (H x W x 3, towards the camera), a random background outside
    ``person``, blur, noise and sometimes JPEG: the photo (uint8 RGB). Shared by both body sources.
    ``scene="varied"``: skin tones anywhere along the range, body hair, 1-3 coloured lights from
    anywhere in front (soft or hard), a cast shadow, clutter in the room ("plain" makes the photos
    the shipped weights were trained on, bit for bit)."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; one of {SCENES}")
    varied = scene == "varied"
    h, w = labels.shape
    tone = _skin_tone_anywhere(rng) if varied else SKIN_TONES[rng.integers(0, len(SKIN_TONES))] * rng.uniform(0.9, 1.1, 3)
    skin = np.clip(tone[None, None, :] * (1 + 0.05 * _texture(rng, (h, w), 30)[..., None]), 0, 1)
    if varied and rng.uniform() < 0.35:  # body hair: fine darker strokes
        strokes = ndimage.gaussian_filter(rng.standard_normal((h, w)), (1.5, 0.4)) > rng.uniform(0.35, 0.55)
        skin[strokes] *= rng.uniform(0.75, 0.9)
    spots = rng.uniform(size=(h, w)) < rng.uniform(0, 0.002)
    spots = ndimage.binary_dilation(spots, iterations=1)
    skin[spots] *= 0.65
    hair = np.clip(rng.choice([0.08, 0.2, 0.35, 0.55]) * np.array([1.0, 0.8, 0.6]) * (1 + 0.2 * _texture(rng, (h, w), 4))[..., None], 0, 1)
    cloth_colour = rng.uniform(0.05, 0.9, 3)
    cloth = cloth_colour * (1 + 0.1 * _texture(rng, (h, w), 6))[..., None]
    albedo = np.where((labels == LABEL_HAIR)[..., None], hair, skin)
    albedo = np.where((labels == LABEL_CLOTH)[..., None], cloth, albedo)

    # lighting: a key light from the camera side, ambient and specular
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.8, 0.1), 1.0])
    light /= np.linalg.norm(light)
    view = np.array([0.0, 0.0, 1.0])
    half = (light + view) / np.linalg.norm(light + view)
    diffuse = np.clip(n @ light, 0, None)
    specular = np.clip(n @ half, 0, None) ** rng.uniform(10, 40)
    ambient = rng.uniform(0.25, 0.45)
    ks = rng.uniform(0.02, 0.18) * np.where(labels == LABEL_CLOTH, 0.2, 1.0)
    light_colour = rng.uniform(0.9, 1.1, 3)
    shaded = albedo * (ambient + (1 - ambient) * diffuse[..., None]) * light_colour + (ks * specular)[..., None]
    if varied:
        lit, specular = _lights(rng, n)
        shaded = albedo * (ambient + (1 - ambient) * lit) + (ks * specular)[..., None]
    background = _background(rng, h, w)
    if varied and rng.uniform() < 0.7:
        background = _clutter(rng, background)
    img = np.where(person[..., None], shaded, background)
    if varied and rng.uniform() < 0.4:
        img = img * _shadow(rng, h, w)[..., None]
    img *= rng.uniform(0.8, 1.15)
    img = ndimage.gaussian_filter(img, (rng.uniform(0, 0.8), rng.uniform(0, 0.8), 0))
    img = img + rng.normal(0, rng.uniform(0.003, 0.02), img.shape)
    rgb = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.uniform() < 0.6:
        import cv2

        ok, enc = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))])
        rgb = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return rgb


# --------------------------------------------------------------------------------------------
# one photo

def make_back_photo(seed, width: int = 384, height: int = 512, params: Optional[BackParams] = None,
                    cameras: str = "face-on", turn=None, scene: str = "plain") -> BackPhoto:
    """One synthetic photo. ``seed`` is an int or a numpy SeedSequence; the same seed gives the same
    photo bit for bit. ``cameras``: "face-on" or "varied" (``CAMERAS``). ``turn``: (yaw, pitch,
    roll) degrees to turn the sampled camera by instead (the same body, light and framing).
    ``scene``: "plain" or "varied" (lights, skin tones, body hair, shadows, clutter: ``shade``)."""
    rng = np.random.default_rng(seed)
    p = params if params is not None else BackParams.sample(rng)
    body = BackBody(p, rng)
    camera = sample_camera(rng, body, width, height, cameras)
    if turn is not None:
        camera.yaw_deg, camera.pitch_deg, camera.roll_deg = (float(a) for a in turn)
    rgb, depth, labels = render(body, camera, rng, scene)
    L = body.L

    def on_surface(x, y):
        x, y = np.atleast_1d(x).astype(float), np.atleast_1d(y).astype(float)
        return np.column_stack([x, y, body.surface_z(x, y)])

    ys = KEYPOINT_LEVELS * L
    kp_body = on_surface(body.spine_x(ys), ys)
    kp_px, _ = project(camera, kp_body)
    inside = (kp_px[:, 0] >= 0) & (kp_px[:, 0] < width) & (kp_px[:, 1] >= 0) & (kp_px[:, 1] < height)
    kp_idx = np.clip(np.round(kp_px).astype(int), 0, [width - 1, height - 1])
    visible = inside & (labels[kp_idx[:, 1], kp_idx[:, 0]] == LABEL_BACK)

    line_y = np.linspace(0.0, L, 121)
    line_body = on_surface(body.spine_x(line_y), line_y)
    line_px, line_cam = project(camera, line_body)
    dim = np.array(body.dimple_offsets())
    dim_body = on_surface(dim[:, 0], dim[:, 1])
    dim_px, dim_cam = project(camera, dim_body)

    measures = truth_measures(camera, line_body, dim_body, body.local_rotation_deg(line_y))
    return BackPhoto(
        rgb=rgb, depth_mm=depth, back_mask=labels == LABEL_BACK, labels=labels,
        keypoints_px=kp_px, keypoints_visible=visible, spine_line_px=line_px, spine_line_mm=line_cam,
        dimples_px=dim_px, dimples_mm=dim_cam, camera=camera, params=p, measures=measures.to_dict(),
    )


def truth_measures(camera: Camera, line_body, dimples_body, rotation_deg) -> morphology.SurfaceMeasures:
    """The measures on the exact geometry in the body's own frame: the camera face-on (x right,
    y down, z posterior = -Z), whatever way the photo's camera was turned."""
    face_on = camera.face_on()
    to_meas = lambda pts: face_on.to_camera(pts) * [1.0, 1.0, -1.0]  # noqa: E731
    dim = to_meas(dimples_body)
    return morphology.surface_measures(to_meas(line_body), rotation_deg, dim[0], dim[1], units="mm")


def photo_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Photo ``index`` of a set made with ``seed``: independent of how many are made."""
    return np.random.SeedSequence([int(seed), int(index), 0xBAC])


def write_photo(photo: BackPhoto, out: Path, stem: str) -> dict:
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "photo": out / f"{stem}.png",
        "depth": out / f"{stem}_depth.png",
        "mask": out / f"{stem}_mask.png",
        "truth": out / f"{stem}_truth.json",
    }
    cv2.imwrite(str(paths["photo"]), photo.rgb[..., ::-1])
    cv2.imwrite(str(paths["depth"]), np.clip(np.round(photo.depth_mm), 0, 65535).astype(np.uint16))
    cv2.imwrite(str(paths["mask"]), photo.back_mask.astype(np.uint8) * 255)
    paths["truth"].write_text(json.dumps(photo.truth(), indent=1), encoding="utf-8")
    return paths
