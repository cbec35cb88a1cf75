"""``mskmorph bench knee``: seconds per knee radiograph, and accuracy on held-out synthetic films.

    mskmorph bench knee [INPUT...] [--n N] [--device cpu] [--threads 1] [--spacing MM]
    mskmorph bench knee --evaluate KNEEL.csv [--repeats R] [--out results.json] [--records knees.json]

Without inputs, N bilateral phantom films are generated (0.14-0.3 mm pixels) and timed.
``--evaluate`` renders films whose bone shapes are the KNEEL annotations of the subjects that the
committed shape model held out (never seen by the shape model nor by training), and reports
PCK at 1, 1.5, 2 and 2.5 mm, the knee detection rate (right side found, landmarks within 10 mm
on average), the JSW error and the CPU seconds per film; and where the errors come from: per
landmark the mean error and the signed error in the knee's own frame and along the bone outline's
normal (+ = outside the bone), per KL grade the errors and the JSW error, the JSW error per side
split into bias (mean) and spread (standard deviation), the first-stage detector's centre error,
and the knees that the film cuts (landmarks outside the film; none unless the phantom allows it).
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
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the networks")
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"), help="network runtime (default onnx)")
    parser.add_argument("--spacing", type=float, help="pixel spacing for inputs without one")
    parser.add_argument("--weights", type=Path, help="folder with knee_detector.pt and knee_landmarks.pt")
    parser.add_argument("--evaluate", type=Path, metavar="KNEEL_CSV",
                        help="accuracy on films rendered with the held-out subjects' real KNEEL shapes")
    parser.add_argument("--repeats", type=int, default=2, help="films per held-out knee pair (other pose/look)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--records", type=Path, help="with --evaluate: write every knee's truth, prediction and "
                                                     "errors as JSON here")


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


def knee_frame_mm(points_px: np.ndarray, film, knee) -> np.ndarray:
    """Film pixels -> the knee's own frame (mm of the film, right-knee orientation: x lateral ->
    medial, y down, origin where the shape's origin lies on the film): undoes the knee's rotation
    and mirroring (not its size)."""
    p = np.asarray(points_px, float) * film.spacing_mm - np.asarray(knee.centre_mm, float)
    a = np.radians(knee.angle_deg)
    p = p @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return p * np.array([-1.0, 1.0]) if knee.side == "left" else p


def outward_normals(truth_knee_mm: np.ndarray) -> np.ndarray:
    """Unit normals (16, 2) of the true contours pointing out of the bone (tibia: up into the
    joint, femur: down into the joint); at the four margins (T1, T9, F1, F7) outward along x."""
    n = np.zeros((sm.N_LANDMARKS, 2))
    for part, sign in ((sm.TIBIA, 1.0), (sm.FEMUR, -1.0)):
        q = truth_knee_mm[part]
        for i in range(len(q)):
            t = q[min(i + 1, len(q) - 1)] - q[max(i - 1, 0)]
            t = t / max(np.linalg.norm(t), 1e-9)
            n[part.start + i] = sign * np.array([t[1], -t[0]])
    for i, x in ((0, -1.0), (sm.N_TIBIA - 1, 1.0), (sm.N_TIBIA, -1.0), (sm.N_LANDMARKS - 1, 1.0)):
        n[i] = (x, 0.0)
    return n


def _signed_summary(values) -> dict:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "bias": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
            "mae": round(float(np.abs(v).mean()), 4), "rmse": round(float(np.sqrt(np.mean(v ** 2))), 4),
            "fraction_over": round(float(np.mean(v > 0)), 4)}


def _pck(e: np.ndarray) -> dict:
    return {f"pck_{t:g}mm": round(float(np.mean(e <= t)), 4) for t in THRESHOLDS_MM}


def summarise(records: list) -> dict:
    """Accuracy figures from per-knee records (see ``evaluate``)."""
    found = [r for r in records if "error_mm" in r]  # a prediction for the knee's side
    e_all = np.array([r.get("error_mm", [np.inf] * sm.N_LANDMARKS) for r in records], float)
    out = {}
    if found:
        e = np.array([r["error_mm"] for r in found])
        d = np.array([r["error_knee_mm"] for r in found])  # (n, 16, 2)
        nrm = np.array([r["error_outward_mm"] for r in found])
        out["per_landmark"] = {
            lab: {"mean_error_mm": round(float(e[:, j].mean()), 3), "median_error_mm": round(float(np.median(e[:, j])), 3),
                  "pck_1mm": round(float(np.mean(e[:, j] <= 1.0)), 4), "pck_2.5mm": round(float(np.mean(e[:, j] <= 2.5)), 4),
                  "outward_mm": round(float(nrm[:, j].mean()), 3),
                  "dx_mm": round(float(d[:, j, 0].mean()), 3), "dy_mm": round(float(d[:, j, 1].mean()), 3)}
            for j, lab in enumerate(sm.LANDMARK_LABELS)}
        out["signed_bias_mm"] = {
            "tibia_dy": round(float(d[:, sm.TIBIA, 1].mean()), 3), "femur_dy": round(float(d[:, sm.FEMUR, 1].mean()), 3),
            "tibia_outward": round(float(nrm[:, sm.TIBIA].mean()), 3), "femur_outward": round(float(nrm[:, sm.FEMUR].mean()), 3),
            "margins_outward_T1_T9_F1_F7": round(float(nrm[:, [0, 8, 9, 15]].mean()), 3),
            "convention": "knee frame (right-knee orientation, mm): dx + = medial, dy + = distal (down); "
                          "outward + = out of the bone along the true contour's normal (margins: along x)"}
        jsw = np.array([r["jsw_error_mm"] for r in found])
        out["jsw_error_mm"] = {"medial": _signed_summary(jsw[:, 0]), "lateral": _signed_summary(jsw[:, 1]),
                               "definition": "predicted minus true minimum JSW; bias = mean, sd = spread (standard deviation)"}
        per_kl = {}
        for g in sorted({r["kl"] for r in records}):
            rs = [r for r in found if r["kl"] == g]
            if not rs:
                continue
            ek = np.array([r["error_mm"] for r in rs])
            jk = np.array([r["jsw_error_mm"] for r in rs])
            per_kl[str(g)] = {"knees": len(rs), "mean_error_mm": round(float(ek.mean()), 3), **_pck(ek),
                              "jsw_medial": _signed_summary(jk[:, 0]), "jsw_lateral": _signed_summary(jk[:, 1])}
        out["per_kl"] = per_kl
        c = np.array([r["detector_centre_error_mm"] for r in found])
        out["detector_centre_error_mm"] = {"mean": round(float(np.linalg.norm(c, axis=1).mean()), 3),
                                           "bias_dx": round(float(c[:, 0].mean()), 3), "bias_dy": round(float(c[:, 1].mean()), 3)}
    cut = [r for r in records if r["points_outside_film"] > 0]
    out["knees_cut_by_film"] = len(cut)
    out["landmarks_outside_film"] = int(sum(r["points_outside_film"] for r in records))
    if cut:
        keep = np.array([r["points_outside_film"] == 0 for r in records])
        out["excluding_cut_knees"] = _pck(e_all[keep])
    return out


def knee_record(film, knee, prediction, film_index: int = 0) -> dict:
    """One knee of an evaluation film: truth, prediction (a ``KneePrediction`` or None when no
    knee of this side was found) and its errors."""
    from . import phantom

    truth = film.landmarks_px(knee)
    rec = {"film": film_index, "subject": knee.subject_id, "side": knee.side, "kl": int(knee.kl),
           "spacing_mm": film.spacing_mm, "points_outside_film": phantom.points_outside(film, knee),
           "truth_px": np.round(truth, 4).tolist()}
    if prediction is None:
        return {**rec, "found": False}
    pred = np.asarray(prediction.landmarks_px, float)
    e = np.linalg.norm(pred - truth, axis=1) * film.spacing_mm
    t_knee, p_knee = knee_frame_mm(truth, film, knee), knee_frame_mm(pred, film, knee)
    t_jsw = measure.joint_space_width(truth, knee.side, film.spacing_mm)
    p_jsw = measure.joint_space_width(pred, knee.side, film.spacing_mm)
    centre = (np.asarray(prediction.centre_px, float) - truth[sm.CENTRE_INDEX]) * film.spacing_mm
    return {**rec, "found": bool(e.mean() < 10.0), "pred_px": np.round(pred, 4).tolist(), "error_mm": e.tolist(),
            "error_knee_mm": (p_knee - t_knee).tolist(),
            "error_outward_mm": np.sum((p_knee - t_knee) * outward_normals(t_knee), 1).tolist(),
            "jsw_true_mm": [t_jsw.medial_mm, t_jsw.lateral_mm],
            "jsw_error_mm": [p_jsw.medial_mm - t_jsw.medial_mm, p_jsw.lateral_mm - t_jsw.lateral_mm],
            "detector_centre_error_mm": centre.tolist()}


def evaluate(predictor, kneel_csv, repeats: int = 2, seed: int = 12345, progress=True, records_out=None) -> dict:
    """Films rendered with the held-out real shapes, through the full two-stage pipeline. Errors
    in mm of the film; JSW error = predicted - true; signed landmark errors in each knee's own
    frame and along the true bone outline's normal (see ``summarise``)."""
    from . import phantom

    model = sm.load()
    held = set(model.held_out_subjects)
    knees = [(a.landmarks_mm, a.kl, f"{a.subject_id}{a.side}") for a in sm.read_kneel_csv(kneel_csv)
             if a.subject_id in held]
    if not knees:
        raise SystemExit(f"no held-out subjects of the shape model found in {kneel_csv}")
    records, films_ok, seconds = [], [], []
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
                match = [p for p in predictions if p.side == k.side]
                records.append(knee_record(film, k, match[0] if match else None, n_films - 1))
                all_found &= records[-1]["found"]
            films_ok.append(all_found)
            if progress and n_films % 20 == 0:
                e = np.concatenate([r.get("error_mm", [np.inf] * 16) for r in records])
                print(f"{n_films} films: PCK@2.5mm {np.mean(e <= 2.5):.3f}, PCK@1mm {np.mean(e <= 1.0):.3f}",
                      flush=True)
    if records_out:
        Path(records_out).write_text(json.dumps(records), encoding="utf-8")
    errors = np.array([r["error_mm"] if r.get("error_mm") else [np.inf] * sm.N_LANDMARKS for r in records], float)
    e = errors.reshape(-1)
    bilateral = [s for s, n in seconds if n == 2]
    jsw_err = np.array([r["jsw_error_mm"] for r in records if "jsw_error_mm" in r]).reshape(-1, 2)
    per_kl = {}
    for r in records:
        if r.get("error_mm"):
            per_kl.setdefault(r["kl"], []).append(r["error_mm"])
    return {
        "films": n_films, "knees": len(records), "held_out_subjects": len(held), "held_out_knees": len(knees),
        **{f"pck_{t:g}mm": float(np.mean(e <= t)) for t in THRESHOLDS_MM},
        "mean_error_mm": float(np.mean(e[np.isfinite(e)])), "median_error_mm": float(np.median(e)),
        "per_landmark_mean_error_mm": dict(zip(sm.LANDMARK_LABELS, np.round(
            np.nanmean(np.where(np.isfinite(errors), errors, np.nan), 0), 3).tolist())),
        "pck_2.5mm_per_kl": {str(k): float(np.mean(np.array(v) <= 2.5)) for k, v in sorted(per_kl.items())},
        "knee_detection_rate": float(np.mean([r["found"] for r in records])),
        "films_all_knees_found": float(np.mean(films_ok)),
        "jsw_medial_mae_mm": float(np.mean(np.abs(jsw_err[:, 0]))) if len(jsw_err) else None,
        "jsw_lateral_mae_mm": float(np.mean(np.abs(jsw_err[:, 1]))) if len(jsw_err) else None,
        "cpu_seconds_per_bilateral_film_mean": float(np.mean(bilateral)) if bilateral else None,
        "cpu_seconds_per_bilateral_film_p95": float(np.percentile(bilateral, 95)) if bilateral else None,
        **summarise(records),
    }


def run(args) -> int:
    import cv2
    import torch

    from KneeLandmarksLib.predict import KneePredictor

    torch.set_num_threads(max(1, args.threads))
    cv2.setNumThreads(max(1, args.threads))
    predictor = KneePredictor(weights=args.weights, device=args.device, threads=args.threads, backend=args.backend)
    result = {"device": str(predictor.device), "threads": args.threads}
    if args.evaluate:
        result.update(evaluate(predictor, args.evaluate, args.repeats, args.seed, records_out=args.records))
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
