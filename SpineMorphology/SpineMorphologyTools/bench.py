"""``mskmorph bench back``: seconds per photo and the held-out synthetic evaluation.

    mskmorph bench back [PHOTO...] [--eval N] [--out FILE.json]

Timing: network + morphology per photo (phantom photos when none are given), CPU and, when
present, GPU. ``--eval N``: N held-out synthetic photos (seed base data.EVAL_SEED: bodies,
deformations and cameras never used in training) give the model card's numbers:
- depth: delta < 1.25, 1.25^2, 1.25^3 and AbsRel on the depth normalised within the back region
  (1 = nearest, 2 = farthest back point of the true depth; the prediction's median aligned),
  RMSE in mm with the true camera scale; the same for a flat back as a baseline;
- back mask IoU; keypoints: PCK at 0.05 of the trunk length (C7 to the dimple midpoint) and the
  mean error in mm;
- midline: mean lateral error (mm) between the midline found on the predicted surface (predicted
  keypoints, camera scale known) and the true spine line, from C7 to the dimples; also the error
  of the measures against the phantom's exact measures; the max lateral error over the trunk;
- relief with issue 15's measure (``fitted_relief``: height above the back's farthest point in the
  true mask, the prediction fitted by least-squares scale and offset; delta < 1.25 and RMSE mm);
- ``--cameras varied``: the held-out photos taken with turned, nearer/farther, off-centre cameras
  (``phantom.CAMERAS``), which no weights so far were trained on.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import data, phantom, photos

from SpineMorphologyLib import morphology


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="PHOTO", help="photos to time (default: phantom photos)")
    parser.add_argument("--n", type=int, default=5, help="phantom photos to time when none are given")
    parser.add_argument("--eval", type=int, default=0, metavar="N", help="held-out synthetic photos to evaluate")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"), help="network runtime (default onnx)")
    parser.add_argument("--body", default="parametric", choices=photos.BODIES,
                        help="body source of the held-out photos for --eval (anny needs the anny package)")
    parser.add_argument("--framing", default="off", choices=("auto", "off"),
                        help="BlazePose trunk framing (off by default: the synthetic photos are framed already)")
    parser.add_argument("--cameras", default="face-on", choices=tuple(phantom.CAMERAS),
                        help="cameras of the held-out photos for --eval: face-on (as in training) or varied "
                             "(turned, nearer/farther, off-centre, cut)")
    parser.add_argument("--scene", default="plain", choices=phantom.SCENES,
                        help="look of the held-out photos for --eval: plain (as in training) or varied (lights, "
                             "shadows, skin tones, body hair, clutter)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")


def time_photos(predictor, photos) -> dict:
    secs_net, secs_meas = [], []
    for rgb in photos:
        t = time.perf_counter()
        pred = predictor.predict(rgb, check=False)
        secs_net.append(time.perf_counter() - t)
        t = time.perf_counter()
        try:
            morphology.measure_back(pred.surface(), pred.keypoints_px)
        except morphology.MorphologyError:
            pass
        secs_meas.append(time.perf_counter() - t)
    total = np.array(secs_net) + np.array(secs_meas)
    return {"device": str(predictor.device), "photos": len(photos), "network_s_median": float(np.median(secs_net)),
            "morphology_s_median": float(np.median(secs_meas)), "total_s_median": float(np.median(total)),
            "total_s_max": float(np.max(total))}


def fitted_relief(true_depth_mm: np.ndarray, true_mask: np.ndarray, predicted: np.ndarray) -> dict:
    """The relief measure of issue 15: relief = height of the back towards the camera above its
    farthest point in the true back mask (mm); the prediction (any relief or depth map, any units,
    larger = nearer the camera) is fitted to it by least squares with a scale and an offset, then
    delta < 1.25 (max(p/t, t/p), a non-positive value counts as wrong) and the RMSE in mm over
    the true back mask. The same for a flat back (the fitted constant) as the baseline."""
    t = float(true_depth_mm[true_mask].max()) - true_depth_mm[true_mask].astype(np.float64)
    p = np.asarray(predicted, np.float64)[true_mask]
    A = np.column_stack([p, np.ones_like(p)])
    (scale, offset), *_ = np.linalg.lstsq(A, t, rcond=None)
    fit = scale * p + offset

    def scores(q):
        ok = (q > 0) & (t > 0)
        ratio = np.where(ok, np.maximum(q / np.where(ok, t, 1), t / np.where(ok, q, 1)), np.inf)
        return float(np.mean(ratio < 1.25)), float(np.sqrt(np.mean((q - t) ** 2)))

    d1, rmse = scores(fit)
    flat_d1, flat_rmse = scores(np.full_like(t, t.mean()))
    return {"delta1": d1, "rmse_mm": rmse, "flat_delta1": flat_d1, "flat_rmse_mm": flat_rmse}


def midline_eval(predictor, n: int, body: str = "parametric", cameras: str = "face-on", scene: str = "plain") -> dict:
    """Per held-out photo at 384 x 512: the network, then the pipeline's measurement (keypoints
    put back in order, the back's own frame); the midline's lateral error against the true spine
    line in mm (mean over the trunk and its max), the issue-15 relief measure, and the measures'
    errors against the phantom's exact ones."""
    from SpineMorphologyLib.pipeline import measure

    errors, max_errors, measure_errors, failures, repaired, reliefs = [], [], {}, 0, 0, []
    keys = ("lateral_deviation_max", "lateral_deviation_rms", "surface_rotation_max_deg", "surface_rotation_rms_deg",
            "trunk_length", "kyphotic_angle_deg", "lordotic_angle_deg", "pelvic_obliquity_deg", "trunk_imbalance")
    for i in range(n):
        photo = photos.make_photo(body, phantom.photo_seed(data.EVAL_SEED, 10_000 + i), 384, 512, cameras, scene)
        cam = photo.camera
        z_ref = float(np.median(photo.depth_mm[photo.back_mask]))
        pred = predictor.predict(photo.rgb, focal_px=cam.focal_px, distance_mm=z_ref, check=False)
        reliefs.append(fitted_relief(photo.depth_mm, photo.back_mask, pred.relief_px))
        try:
            surf = morphology.surface_from_depth(pred.depth_mm, pred.mask, cam.focal_px, cam.cx, cam.cy,
                                                 estimated=True)
            result, _ = measure(surf, pred.keypoints_px, repair=True)
        except morphology.MorphologyError:
            failures += 1
            continue
        repaired += any("out of order" in w for w in result.warnings)
        gt = photo.spine_line_mm  # camera X, Y, Z
        y = result.line_xyz[:, 1]
        inside = (y >= gt[:, 1].min()) & (y <= gt[:, 1].max())
        if inside.sum() < 5:
            failures += 1
            continue
        x_true = np.interp(y[inside], gt[:, 1], gt[:, 0])
        err = np.abs(result.line_xyz[inside, 0] - x_true)
        errors.append(float(np.mean(err)))
        max_errors.append(float(np.max(err)))
        est = result.measures.to_dict()
        for k in keys:
            if est.get(k) is not None and photo.measures.get(k) is not None:
                measure_errors.setdefault(k, []).append(abs(est[k] - photo.measures[k]))
    mean = lambda k: float(np.mean([r[k] for r in reliefs])) if reliefs else None  # noqa: E731
    return {
        "photos": n, "cameras": cameras, "scene": scene, "failed": failures, "keypoints_repaired": repaired,
        "midline_lateral_error_mm_mean": float(np.mean(errors)) if errors else None,
        "midline_lateral_error_mm_median": float(np.median(errors)) if errors else None,
        "midline_lateral_error_mm_max": float(np.max(max_errors)) if max_errors else None,
        "midline_lateral_error_mm_max_mean": float(np.mean(max_errors)) if max_errors else None,
        "relief_fitted": {"delta1": mean("delta1"), "rmse_mm": mean("rmse_mm"),
                          "flat_back_delta1": mean("flat_delta1"), "flat_back_rmse_mm": mean("flat_rmse_mm")},
        "measure_mean_abs_error": {k: float(np.mean(v)) for k, v in measure_errors.items()},
    }


def run(args) -> int:
    import torch

    from SpineMorphologyLib.predict import BackPredictor
    from .train import depth_and_keypoint_metrics, evaluate

    torch.set_num_threads(max(1, args.threads))
    results = {}
    predictor = BackPredictor(weights=args.weights, device="cpu", framing=args.framing, threads=args.threads, backend=args.backend)
    if args.inputs:
        from MSKCommonLib.image import read_image
        from SpineMorphologyLib.pipeline import photo_rgb

        photos = [photo_rgb(read_image(Path(p))) for p in args.inputs]
    else:
        photos = [phantom.make_back_photo(phantom.photo_seed(data.EVAL_SEED, 20_000 + i)).rgb for i in range(args.n)]
    predictor.predict(photos[0], check=False)  # warm-up
    results["cpu"] = time_photos(predictor, photos)
    if torch.cuda.is_available():
        gpu = BackPredictor(weights=args.weights, device="cuda", framing=args.framing, backend=args.backend)
        gpu.predict(photos[0], check=False)
        results["gpu"] = time_photos(gpu, photos)
    if args.eval:
        cameras = getattr(args, "cameras", "face-on")
        val = data.build_set(data.EVAL_SEED, args.eval, workers=1, anny_share=1.0 if args.body == "anny" else 0.0,
                             cameras=cameras, scene=getattr(args, "scene", "plain"))
        results["held_out_body_source"] = args.body
        results["held_out_cameras"] = cameras
        results["held_out_scene"] = getattr(args, "scene", "plain")
        # the evaluation batches through the torch module itself (the parity tests hold ONNX to it)
        torch_model = BackPredictor(weights=args.weights, device="cpu", framing="off", backend="torch").model
        results["depth_keypoints"] = evaluate(torch_model, val, torch)
        flat = np.zeros_like(val["relief"])
        baseline = depth_and_keypoint_metrics(flat, val["mask"] > 0, val["keypoints"], val)
        results["flat_back_baseline"] = {k: baseline[k] for k in ("delta1", "delta2", "delta3", "abs_rel", "rmse_mm", "relief_rmse_over_std")}
        results["midline"] = midline_eval(predictor, args.eval, args.body, cameras, getattr(args, "scene", "plain"))
    text = json.dumps(results, indent=2, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
