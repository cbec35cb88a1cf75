"""Synthetic spine AP radiographs ("phantoms") with exactly known vertebra corners.

Made to resemble the AASCE films (portrait crops around the spine of an adolescent, 8-bit, bone
bright): dark lungs above the diaphragm and a bright abdomen below, ribs, clavicles, 17 vertebral
bodies T1..L5 with cortical rims, pedicles and spinous processes, disc spaces, the iliac wings
and the sacrum; a scoliotic curve (single or double) with each vertebra following the curve's
tangent plus a little wedging; blur, noise, contrast and gamma varied per seed.

The body of each vertebra is drawn from its four landmarks, so the ground truth is exact. Used
as the project's bundled default input (the AASCE films may not be redistributed), in tests, and
to probe the network's robustness. It is a drawing, not a simulation of X-ray physics.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import geometry
from .landmarks_io import write_aasce_mat


@dataclass
class SpinePhantom:
    pixels: np.ndarray  # uint8 H x W
    landmarks: np.ndarray  # (17, 4, 2) float64, pixels, AASCE corner order
    spacing_mm: tuple  # (row, column) mm per pixel
    seed: int
    curve_description: str


def _spine_layout(rng, height: int, width: int):
    """Vertebra centres, sizes, tilts and wedges along a scoliotic curve."""
    n = geometry.N_VERTEBRAE
    top, bottom = rng.uniform(0.05, 0.09) * height, rng.uniform(0.80, 0.86) * height
    body_h = np.linspace(0.85, 1.35, n) * rng.uniform(0.95, 1.05, n)
    disc_h = np.linspace(0.24, 0.32, n) * body_h
    scale = (bottom - top) / (body_h.sum() + disc_h[:-1].sum())
    body_h, disc_h = body_h * scale, disc_h * scale
    body_w = np.linspace(0.165, 0.30, n) * width * rng.uniform(0.95, 1.05) * rng.uniform(0.97, 1.03, n)
    # lateral curve: thoracic and (for a double curve) lumbar bumps of opposite directions
    t = np.linspace(0, 1, 400)
    sign = rng.choice([-1.0, 1.0])
    thoracic = sign * rng.uniform(0.05, 0.16) * width * np.exp(-((t - rng.uniform(0.35, 0.5)) / 0.17) ** 2)
    double = rng.random() < 0.7
    lumbar = (-sign * rng.uniform(0.04, 0.12) * width * np.exp(-((t - rng.uniform(0.72, 0.82)) / 0.13) ** 2)
              if double else 0 * t)
    lateral = thoracic + lumbar
    lateral -= np.linspace(lateral[0], lateral[-1], len(t)) * rng.uniform(0.6, 1.0)  # ends near the midline
    x_of_t = width / 2 + rng.uniform(-0.03, 0.03) * width + lateral
    centres_y, y = [], top
    for i in range(n):
        centres_y.append(y + body_h[i] / 2)
        y += body_h[i] + (disc_h[i] if i < n - 1 else 0)
    centres_y = np.array(centres_y)
    ty = (centres_y - top) / (bottom - top)
    centres_x = np.interp(ty, t, x_of_t)
    slope = np.gradient(x_of_t, t * (bottom - top))
    tilt = np.arctan(np.interp(ty, t, slope)) * -1.0 + np.radians(rng.normal(0, 1.0, n))
    wedge = np.radians(rng.normal(0, 1.2, n))
    description = ("double curve" if double else "single curve") + f", thoracic convexity to the image {'right' if sign > 0 else 'left'}"
    return centres_x, centres_y, body_w, body_h, tilt, wedge, description


def _corners(cx, cy, w, h, tilt, wedge) -> np.ndarray:
    """TL, TR, BL, BR of a vertebral body: a rectangle tilted by ``tilt``, endplates wedged apart."""
    out = []
    for endplate, sign in (("sup", -1), ("inf", 1)):
        a = tilt + sign * wedge / 2
        u = np.array([np.cos(a), np.sin(a)])
        n = np.array([-np.sin(tilt), np.cos(tilt)])
        mid = np.array([cx, cy]) + sign * n * h / 2
        out += [mid - u * w / 2, mid + u * w / 2]
    return np.array(out)


def render_spine_phantom(seed: int = 0, *, height: int = 2400, width: int = 900) -> SpinePhantom:
    rng = np.random.default_rng(seed)
    cx, cy, bw, bh, tilt, wedge, description = _spine_layout(rng, height, width)
    landmarks = np.array([_corners(cx[i], cy[i], bw[i], bh[i], tilt[i], wedge[i]) for i in range(len(cx))])

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # soft tissue: dark lungs above the diaphragm, bright abdomen below, brighter towards the midline
    diaphragm = cy[rng.integers(9, 11)] + rng.uniform(-0.03, 0.03) * height
    dome = diaphragm - 0.06 * height * np.cos(np.clip((xx - width / 2) / (width * 0.9), -1.5, 1.5))
    abdomen = 1 / (1 + np.exp(-(yy - dome) / (0.012 * height)))
    midline = np.exp(-((xx - np.interp(yy, cy, cx)) / (0.23 * width)) ** 2)
    image = 25 + 45 * midline * (1 - abdomen) + 120 * abdomen + 20 * abdomen * midline
    # bowel gas and lung texture: smoothed noise
    texture = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 0.006 * height)
    image += texture / (texture.std() + 1e-6) * (4 + 5 * abdomen)

    bone = np.zeros((height, width), np.float32)
    thick = max(2, int(0.006 * height))
    # ribs: from each thoracic vertebra's side, out and slightly up, then down along the chest wall
    for i in range(10):
        for side in (-1, 1):
            s_ = np.linspace(0, 1, 40)
            start = np.array([cx[i] + side * 0.5 * bw[i], cy[i]])
            reach = rng.uniform(0.45, 0.6) * width
            path = np.column_stack([start[0] + side * reach * s_,
                                    start[1] - 0.35 * bh[i] * np.sin(np.pi * s_ * 0.6) + (0.9 + 0.15 * i) * bh[i] * s_ ** 2.2])
            cv2.polylines(bone, [path.round().astype(np.int32)], False, 22, thick + i // 4, cv2.LINE_AA)
    # clavicles
    for side in (-1, 1):
        p0 = (int(cx[0] + side * 0.4 * bw[0]), int(cy[0] - 0.3 * bh[0]))
        p1 = (int(width / 2 + side * 0.7 * width), int(cy[0] - 1.6 * bh[0]))
        cv2.line(bone, p0, p1, 30, int(2.5 * thick), cv2.LINE_AA)
    # pelvis: iliac wings and sacrum below L5
    l5 = landmarks[-1]
    base = (l5[2] + l5[3]) / 2
    for side in (-1, 1):
        cv2.ellipse(bone, (int(base[0] + side * 0.42 * width), int(base[1] + 0.1 * height)),
                    (int(0.3 * width), int(0.12 * height)), 0, 180, 360, 35, 3 * thick, cv2.LINE_AA)
    sacrum = np.array([l5[2] + [0, bh[-1] * 0.3], l5[3] + [0, bh[-1] * 0.3], base + [0, 0.12 * height]])
    cv2.fillPoly(bone, [sacrum.round().astype(np.int32)], 30, cv2.LINE_AA)
    # vertebrae: body, cortical rim, brighter endplates, pedicle rings, spinous process
    for i, q in enumerate(landmarks):
        poly = q[[0, 1, 3, 2]]
        cv2.fillPoly(bone, [poly.round().astype(np.int32)], float(rng.uniform(55, 70)), cv2.LINE_AA)
        cv2.polylines(bone, [poly.round().astype(np.int32)], True, 30, max(1, thick // 2), cv2.LINE_AA)
        for a, b in ((q[0], q[1]), (q[2], q[3])):
            cv2.line(bone, tuple(a.round().astype(int)), tuple(b.round().astype(int)), 20, thick, cv2.LINE_AA)
        centre = q.mean(axis=0)
        u = (q[1] - q[0]) / np.linalg.norm(q[1] - q[0])
        n = np.array([-u[1], u[0]])
        for side in (-1, 1):
            p = centre + side * u * 0.3 * bw[i] - n * 0.12 * bh[i]
            cv2.ellipse(bone, tuple(p.round().astype(int)), (max(3, int(0.09 * bw[i])), max(4, int(0.16 * bh[i]))),
                        float(np.degrees(np.arctan2(u[1], u[0]))), 0, 360, 25, max(2, thick // 2), cv2.LINE_AA)
        tip = centre + n * 0.55 * bh[i]
        cv2.line(bone, tuple((centre - n * 0.2 * bh[i]).round().astype(int)), tuple(tip.round().astype(int)),
                 18, max(3, int(0.06 * bw[i])), cv2.LINE_AA)

    trabecular = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 2.5)
    bone *= 1 + 0.25 * trabecular / (trabecular.std() + 1e-6) * (bone > 40)
    image += cv2.GaussianBlur(bone, (0, 0), rng.uniform(1.0, 2.0))
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 1.6))
    image *= 1 - rng.uniform(0.0, 0.15) * (yy / height)  # heel effect
    image = np.clip(image, 0, None)
    image += rng.normal(0, 1, image.shape).astype(np.float32) * np.sqrt(image + 1) * rng.uniform(0.3, 0.8)
    low, high = np.percentile(image, [0.5, 99.8])
    image = np.clip((image - low) / (high - low), 0, 1) ** rng.uniform(0.8, 1.25)
    pixels = (image * 255).round().astype(np.uint8)
    spacing = float(rng.uniform(0.14, 0.2))
    return SpinePhantom(pixels, landmarks, (spacing, spacing), seed, description)


def write_phantom(phantom: SpinePhantom, out_dir, name: str) -> dict:
    """<name>.png, <name>.png.mat (AASCE layout) and <name>.json (ground truth)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    if not cv2.imwrite(str(png), phantom.pixels):
        raise OSError(f"could not write {png}")
    mat = write_aasce_mat(out_dir / f"{name}.png.mat", phantom.landmarks)
    height = phantom.pixels.shape[0]
    truth = {
        "image": png.name,
        "generator": "mskmorph phantom spine (MSKMorphometry), free to redistribute",
        "seed": phantom.seed,
        "size_px": [phantom.pixels.shape[1], phantom.pixels.shape[0]],
        "pixel_spacing_mm": list(phantom.spacing_mm),
        "curve": phantom.curve_description,
        "aasce_angles_deg": geometry.cobb_angles(phantom.landmarks, "aasce", image_height=height).angles,
        "clinical": geometry.cobb_angles(phantom.landmarks, "clinical").to_dict(),
        "landmarks_px": phantom.landmarks.reshape(-1, 2).round(4).tolist(),
    }
    js = out_dir / f"{name}.json"
    js.write_text(json.dumps(truth, indent=2), encoding="utf-8")
    return {"image": png, "landmarks": mat, "truth": js}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--n", type=int, default=1, help="number of films (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; film i uses seed + i")
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument("--width", type=int, default=900)


def run(args) -> int:
    for i in range(args.n):
        seed = args.seed + i
        phantom = render_spine_phantom(seed, height=args.height, width=args.width)
        paths = write_phantom(phantom, args.out, f"spine_phantom_{seed:04d}")
        angles = geometry.cobb_angles(phantom.landmarks, "clinical")
        summary = ", ".join(f"{c.name} {c.angle_deg:.1f}" for c in angles.curves if c.angle_deg is not None)
        print(f"{paths['image']}: {phantom.curve_description}; clinical {summary} deg")
    return 0
