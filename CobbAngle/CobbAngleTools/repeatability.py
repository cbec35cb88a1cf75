"""Test-retest of the Cobb measurement: the same film re-acquired, measured again.

    mskmorph bench cobb --repeatability [--limit 30] [--repeats 5] [--seed 0] [INPUT...]

Each film (default: the AASCE validation films of the fixed split) is read ``--repeats`` times:
the first reading is the film as stored, each further one a re-acquisition of it: turned by up to
4 deg, rescaled 0.8-1.25x, another exposure (window and gamma), another crop (up to 8 % of the
width off each side, 2 % of the height off top and bottom), and every second one stored as a
12-bit MONOCHROME1 DICOM with its pixel spacing and read back through ``read_image`` as any film
is. Every reading runs the whole pipeline (``CobbPipeline``: read, network, geometry).

Printed and written (``--repeatability-json``, default the package data file
``CobbAngleLib/models/cobb_repeatability.json``, which ``CobbAngleLib.followup`` reads for the
interval of a change): per curve and convention the within-film SD (pooled over the films:
the root mean of each film's variance over its readings), the smallest detectable change
(SDC = 1.96 * sqrt(2) * SD: the change two readings of one unchanged spine stay within 95 % of
the time) and the films whose readings span more than 10 deg. Three measurements:

- ``clinical``: each reading with its own end vertebrae (what ``mskmorph cobb`` reports);
- ``clinical_same_levels``: each reading at the end vertebrae of the film's first reading
  (``geometry.curve_between``), what ``mskmorph compare`` does with the current film;
- ``aasce``: the AASCE challenge's computation (its columns: PT holds the largest curve).

A curve the geometry finds absent on a reading ("no curve" in a region on the film) counts as
0 deg there; a film without a usable reading is left out with its reason.
"""
from __future__ import annotations

import datetime
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

REPEATABILITY_FILE = Path(__file__).resolve().parents[1] / "CobbAngleLib" / "models" / "cobb_repeatability.json"
MEASURES = ("clinical", "clinical_same_levels", "aasce")
SPAN_LIMIT_DEG = 10.0
Z95 = 1.959963984540054


def reacquire(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """One re-acquisition of a film (float pixels, H x W): (pixels 0..1, scale, description)."""
    h, w = pixels.shape
    angle = rng.uniform(-4.0, 4.0)
    scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    low, high = np.percentile(pixels, [0.5, 99.5])
    x = np.clip((pixels - low) / max(high - low, 1e-6), 0, 1).astype(np.float32)
    background = float(np.percentile(x, 2))
    if scale < 1:  # a detector with larger pixels: blur before the finer grid is sampled
        x = cv2.GaussianBlur(x, (0, 0), 0.5 / scale)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    # the turned film keeps all of the original (the canvas grows), then a margin is cropped
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    x = cv2.warpAffine(x, m, (nw, nh), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    left, right = (int(rng.uniform(0, 0.08) * nw) for _ in range(2))
    top, bottom = (int(rng.uniform(0, 0.02) * nh) for _ in range(2))
    x = x[top:nh - bottom, left:nw - right]
    # exposure: another window and gamma, a little quantum noise
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    lo, hi = rng.uniform(0.0, 0.08), rng.uniform(0.92, 1.0)
    x = np.clip((x - lo) / (hi - lo), 0, 1) ** gamma
    x = np.clip(x + rng.normal(0, 0.01, x.shape).astype(np.float32), 0, 1)
    return x, scale, f"turned {angle:+.1f} deg, scale {scale:.2f}, gamma {gamma:.2f}, crop l{left} r{right} t{top} b{bottom} px"


def write_monochrome1(path: Path, x: np.ndarray, spacing_mm: float) -> Path:
    """A 12-bit MONOCHROME1 DICOM (Secondary Capture) of pixels 0..1 (bright bone), with its spacing."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    stored = (4095 - np.round(np.clip(x, 0, 1) * 4095)).astype(np.uint16)
    sc = hd.sc.SCImage(
        pixel_array=stored, photometric_interpretation="MONOCHROME1", bits_allocated=16,
        coordinate_system="PATIENT", study_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
        series_number=1, sop_instance_uid=generate_uid(), instance_number=1, manufacturer="MSKMorphometry bench",
        pixel_spacing=(spacing_mm, spacing_mm), patient_orientation=("L", "F"))
    sc.BitsStored, sc.HighBit = 12, 11
    sc.save_as(str(path), enforce_file_format=True)
    return path


def readings(film: Path, repeats: int, seed: int, workdir: Path):
    """The film as stored, then ``repeats - 1`` re-acquisitions: (Image, description) each."""
    from MSKCommonLib.image import image_from_array, read_image

    original = read_image(film)
    yield original, "as stored"
    rng = np.random.default_rng([seed, sum(film.name.encode())])
    base_spacing = original.spacing_mm[0] if original.spacing_mm else 0.2
    for k in range(1, repeats):
        x, scale, desc = reacquire(original.pixels, rng)
        if k % 2 == 1:
            path = write_monochrome1(workdir / f"repeat{k}.dcm", x, base_spacing / scale)
            yield read_image(path), desc + ", MONOCHROME1 DICOM"
        else:
            yield image_from_array(np.round(x * 255).astype(np.uint8), source=f"{film.name} repeat {k}"), desc


def _angle(curve) -> float:
    """A curve's angle; 0 for "no curve" in a region on the film, NaN when not measurable."""
    if curve.angle_deg is not None:
        return float(curve.angle_deg)
    if curve.role in ("none", "no curve") or getattr(curve, "status", "") == "no curve":
        return 0.0
    return float("nan")


def measure_film(pipeline, film: Path, repeats: int, seed: int, options) -> dict:
    """Angles (readings x curves) per measure, and the descriptions of the readings."""
    from CobbAngleLib import geometry

    names = geometry.CURVE_NAMES
    out = {m: [] for m in MEASURES}
    levels: dict = {}
    described = []
    with tempfile.TemporaryDirectory(prefix="mskmorph-repeat-") as tmp:
        for k, (image, desc) in enumerate(readings(film, repeats, seed, Path(tmp))):
            result = pipeline.run(image, options)
            lm, spacing = result.landmarks_px, result.image.spacing_mm
            clinical = result.measurement
            out["clinical"].append([_angle(clinical.curve(c)) for c in names])
            if k == 0:
                for c in names:
                    curve = clinical.curve(c)
                    if curve.upper_end_vertebra and curve.lower_end_vertebra:
                        levels[c] = (geometry.VERTEBRA_NAMES.index(curve.upper_end_vertebra),
                                     geometry.VERTEBRA_NAMES.index(curve.lower_end_vertebra))
            same = []
            for c in names:
                if c not in levels:
                    same.append(_angle(clinical.curve(c)) if k == 0 else float("nan"))
                    continue
                try:
                    same.append(float(geometry.curve_between(lm, c, *levels[c], spacing_mm=spacing).angle_deg))
                except geometry.LandmarkError:
                    same.append(float("nan"))
            out["clinical_same_levels"].append(same)
            try:
                aasce = geometry.cobb_angles(lm, "aasce", image_height=image.height, spacing_mm=spacing)
                out["aasce"].append([_angle(aasce.curve(c)) for c in names])
            except geometry.LandmarkError:
                out["aasce"].append([float("nan")] * len(names))
            described.append(desc)
    return {"film": film.name, "angles": {m: np.array(v, dtype=np.float64) for m, v in out.items()},
            "readings": described, "levels": {c: [geometry.VERTEBRA_NAMES[i] for i in v] for c, v in levels.items()}}


def summarise(films: list[dict]) -> dict:
    """Within-film SD, SDC, largest span and the films spanning more than 10 deg, per measure and curve."""
    from CobbAngleLib import geometry

    summary = {}
    for m in MEASURES:
        per_curve = {}
        for j, c in enumerate(geometry.CURVE_NAMES):
            variances, spans, wide = [], [], []
            for f in films:
                a = f["angles"][m][:, j]
                a = a[np.isfinite(a)]
                if a.size < 2:
                    continue
                variances.append(float(np.var(a, ddof=1)))
                span = float(a.max() - a.min())
                spans.append(span)
                if span > SPAN_LIMIT_DEG:
                    wide.append({"film": f["film"], "span_deg": round(span, 2), "angles_deg": [round(float(x), 2) for x in a]})
            sd = math.sqrt(float(np.mean(variances))) if variances else float("nan")
            per_curve[c] = {"films": len(variances), "within_film_sd_deg": round(sd, 3),
                            "smallest_detectable_change_deg": round(Z95 * math.sqrt(2) * sd, 3),
                            "median_span_deg": round(float(np.median(spans)), 3) if spans else None,
                            "max_span_deg": round(float(max(spans)), 3) if spans else None,
                            "films_spanning_over_10_deg": wide}
        summary[m] = per_curve
    return summary


def run_repeatability(files: list[Path], repeats: int = 5, seed: int = 0, device: str = "cpu",
                      backend: str = "onnx", weights: Optional[str] = None, out: Optional[Path] = None,
                      command: str = "") -> dict:
    from CobbAngleLib.pipeline import CobbOptions, CobbPipeline

    if repeats < 2:
        raise SystemExit("--repeats must be at least 2 (the film and one re-acquisition)")
    pipeline = CobbPipeline()
    options = CobbOptions(convention="clinical", device=device, backend=backend, weights=weights)
    films, failed = [], []
    start = time.perf_counter()
    for i, film in enumerate(files, 1):
        try:
            films.append(measure_film(pipeline, film, repeats, seed, options))
        except ValueError as e:  # a reading the pipeline refuses: the film is left out, with why
            failed.append({"film": film.name, "reason": str(e)})
        print(f"\r{i}/{len(files)} films", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = time.perf_counter() - start
    result = {
        "what": "test-retest of the Cobb measurement: each film read as stored and re-acquired (turned up to 4 deg, "
                "rescaled 0.8-1.25x, another window and gamma, other crop margins, every second one a 12-bit "
                "MONOCHROME1 DICOM), every reading through the whole pipeline",
        "command": command or f"mskmorph bench cobb --repeatability --limit {len(files)} --repeats {repeats} --seed {seed}",
        "date": datetime.date.today().isoformat(),
        "weights": weights or "shipped",
        "backend": backend,
        "films": len(films), "repeats": repeats, "seed": seed, "films_refused": failed,
        "seconds": round(seconds, 1),
        "measures": summarise(films),
        "per_film": [{"film": f["film"], "levels": f["levels"], "readings": f["readings"],
                      **{m: np.round(f["angles"][m], 2).tolist() for m in MEASURES}} for f in films],
    }
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def print_summary(result: dict) -> None:
    from CobbAngleLib import geometry

    print(f"{result['films']} films x {result['repeats']} readings ({result['seconds']:.0f} s); "
          f"{len(result['films_refused'])} films refused")
    print(f"{'measure':22} {'curve':5} {'films':>5} {'SD deg':>7} {'SDC deg':>8} {'median span':>12} {'max span':>9}  > 10 deg")
    for m in MEASURES:
        for c in geometry.CURVE_NAMES:
            s = result["measures"][m][c]
            print(f"{m:22} {c:5} {s['films']:5d} {s['within_film_sd_deg']:7.2f} {s['smallest_detectable_change_deg']:8.2f} "
                  f"{s['median_span_deg'] if s['median_span_deg'] is not None else float('nan'):12.2f} "
                  f"{s['max_span_deg'] if s['max_span_deg'] is not None else float('nan'):9.2f}  "
                  + (", ".join(f"{w['film']} ({w['span_deg']:.1f})" for w in s["films_spanning_over_10_deg"]) or "none"))
    for f in result["films_refused"]:
        print(f"refused: {f['film']}: {f['reason']}")
