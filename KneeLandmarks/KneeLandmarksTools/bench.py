"""``mskmorph bench knee``: seconds per knee radiograph, and accuracy on held-out synthetic films.

    mskmorph bench knee [INPUT...] [--n N] [--device cpu] [--threads 1] [--spacing MM]
    mskmorph bench knee --evaluate KNEEL.csv [--repeats R] [--out results.json]

Without inputs, N bilateral phantom films are generated (0.14-0.3 mm pixels) and timed.
``--evaluate`` renders films whose bone shapes are the KNEEL annotations of the subjects that the
committed shape model held out (never seen by the shape model nor by training), and reports
PCK at 1, 1.5, 2 and 2.5 mm, the knee detection rate (right side found, landmarks within 10 mm
on average), the JSW error and the CPU seconds per film.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from KneeLandmarksLib import measure
from . import shape_model as sm

THRESHOLDS_MM = (1.0, 1.5, 2.0, 2.5)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="radiographs to time (default: phantom films)")
    parser.add_argument("--n", type=int, default=10, help="phantom films to time when no input is given")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--spacing", type=float, help="pixel spacing for inputs without one")
    parser.add_argument("--weights", type=Path, help="folder with knee_detector.pt and knee_landmarks.pt")
    parser.add_argument("--evaluate", type=Path, metavar="KNEEL_CSV",
                        help="accuracy on films rendered with the held-out subjects' real KNEEL shapes")
    parser.add_argument("--repeats", type=int, default=2, help="films per held-out knee pair (other pose/look)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")


def _films_for_timing(args):
    from . import phantom

    if args.inputs:
        from MSKCommonLib.batch import expand_inputs
        from MSKCommonLib.image import read_image

        for item in expand_inputs(args.inputs):
            if item.error:
                continue
            r = read_image(item.path)
            spacing = r.spacing_mm or ((args.spacing,) * 2 if args.spacing else None)
            if spacing is None:
                raise SystemExit(f"{item.path.name} has no pixel spacing: give --spacing")
            yield item.path.name, r.pixels, spacing
        return
    for i in range(args.n):
        film = phantom.sample_film(args.seed + i, n_knees=2)
        yield f"phantom {i}", phantom.render(film) * 4095, (film.spacing_mm, film.spacing_mm)


def evaluate(predictor, kneel_csv, repeats: int = 2, seed: int = 12345, progress=True) -> dict:
    from . import phantom

    model = sm.load()
    held = set(model.held_out_subjects)
    knees = [(a.landmarks_mm, a.kl, f"{a.subject_id}{a.side}") for a in sm.read_kneel_csv(kneel_csv)
             if a.subject_id in held]
    if not knees:
        raise SystemExit(f"no held-out subjects of the shape model found in {kneel_csv}")
    errors, found, films_ok, seconds, jsw_err, per_kl = [], [], [], [], [], {}
    n_films = 0
    rng = np.random.default_rng(seed)
    for r in range(repeats):
        order = rng.permutation(len(knees))
        cursor = 0
        while cursor < len(order):
            count = 1 if rng.random() < 0.2 or cursor == len(order) - 1 else 2
            shapes = [knees[j] for j in order[cursor:cursor + count]]
            cursor += count
            film = phantom.sample_film(seed * 1000 + n_films, model, shapes=shapes)
            pixels = phantom.render(film) * 4095
            n_films += 1
            t = time.process_time()
            predictions = predictor.predict(pixels, film.spacing_mm)
            seconds.append((time.process_time() - t, len(film.knees)))
            all_found = True
            for k in film.knees:
                truth = film.landmarks_px(k)
                match = [p for p in predictions if p.side == k.side]
                if not match:
                    errors.append(np.full(16, np.inf))
                    found.append(False)
                    all_found = False
                    continue
                e = np.linalg.norm(match[0].landmarks_px - truth, axis=1) * film.spacing_mm
                errors.append(e)
                ok = bool(e.mean() < 10.0)
                found.append(ok)
                all_found &= ok
                per_kl.setdefault(k.kl, []).append(e)
                t_jsw = measure.joint_space_width(truth, k.side, film.spacing_mm)
                p_jsw = measure.joint_space_width(match[0].landmarks_px, k.side, film.spacing_mm)
                jsw_err.append([p_jsw.medial_mm - t_jsw.medial_mm, p_jsw.lateral_mm - t_jsw.lateral_mm])
            films_ok.append(all_found)
            if progress and n_films % 20 == 0:
                e = np.concatenate(errors)
                print(f"{n_films} films: PCK@2.5mm {np.mean(e <= 2.5):.3f}, PCK@1mm {np.mean(e <= 1.0):.3f}",
                      flush=True)
    e = np.concatenate(errors)
    bilateral = [s for s, n in seconds if n == 2]
    jsw_err = np.array(jsw_err)
    return {
        "films": n_films, "knees": len(found), "held_out_subjects": len(held), "held_out_knees": len(knees),
        **{f"pck_{t:g}mm": float(np.mean(e <= t)) for t in THRESHOLDS_MM},
        "mean_error_mm": float(np.mean(e[np.isfinite(e)])), "median_error_mm": float(np.median(e)),
        "per_landmark_mean_error_mm": dict(zip(sm.LANDMARK_LABELS, np.round(
            np.mean(np.where(np.isfinite(np.array(errors)), np.array(errors), np.nan), 0), 3).tolist())),
        "pck_2.5mm_per_kl": {str(k): float(np.mean(np.concatenate(v) <= 2.5)) for k, v in sorted(per_kl.items())},
        "knee_detection_rate": float(np.mean(found)),
        "films_all_knees_found": float(np.mean(films_ok)),
        "jsw_medial_mae_mm": float(np.mean(np.abs(jsw_err[:, 0]))) if len(jsw_err) else None,
        "jsw_lateral_mae_mm": float(np.mean(np.abs(jsw_err[:, 1]))) if len(jsw_err) else None,
        "cpu_seconds_per_bilateral_film_mean": float(np.mean(bilateral)) if bilateral else None,
        "cpu_seconds_per_bilateral_film_p95": float(np.percentile(bilateral, 95)) if bilateral else None,
    }


def run(args) -> int:
    import torch

    from KneeLandmarksLib.predict import KneePredictor

    torch.set_num_threads(max(1, args.threads))
    predictor = KneePredictor(weights=args.weights, device=args.device, threads=args.threads)
    result = {"device": str(predictor.device), "threads": args.threads}
    if args.evaluate:
        result.update(evaluate(predictor, args.evaluate, args.repeats, args.seed))
    else:
        times = []
        for name, pixels, spacing in _films_for_timing(args):
            t0, c0 = time.perf_counter(), time.process_time()
            knees = predictor.predict(pixels, spacing)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            times.append((wall, cpu))
            print(f"{name}: {pixels.shape[1]} x {pixels.shape[0]} px, {len(knees)} knee(s), "
                  f"{wall:.3f} s wall, {cpu:.3f} s CPU", flush=True)
        if not times:
            raise SystemExit("nothing to time")
        w = np.array(times)
        result.update({"films": len(times), "wall_seconds_mean": float(w[:, 0].mean()),
                       "cpu_seconds_mean": float(w[:, 1].mean()), "wall_seconds_max": float(w[:, 0].max())})
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0
