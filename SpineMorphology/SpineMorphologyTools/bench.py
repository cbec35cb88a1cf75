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
  of the measures against the phantom's exact measures.
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


def midline_eval(predictor, n: int, body: str = "parametric") -> dict:
    errors, measure_errors, failures = [], {}, 0
    keys = ("lateral_deviation_max", "lateral_deviation_rms", "surface_rotation_max_deg", "surface_rotation_rms_deg",
            "trunk_length", "kyphotic_angle_deg", "lordotic_angle_deg", "pelvic_obliquity_deg", "trunk_imbalance")
    for i in range(n):
        photo = photos.make_photo(body, phantom.photo_seed(data.EVAL_SEED, 10_000 + i), 384, 512)
        cam = photo.camera
        z_ref = float(np.median(photo.depth_mm[photo.back_mask]))
        pred = predictor.predict(photo.rgb, focal_px=cam.focal_px, distance_mm=z_ref, check=False)
        try:
            h, w = pred.mask.shape
            surf = morphology.surface_from_depth(pred.depth_mm, pred.mask, cam.focal_px, cam.cx, cam.cy,
                                                 estimated=True)
            result = morphology.measure_back(surf, pred.keypoints_px)
        except morphology.MorphologyError:
            failures += 1
            continue
        gt = photo.spine_line_mm  # camera X, Y, Z
        y = result.line_xyz[:, 1]
        inside = (y >= gt[:, 1].min()) & (y <= gt[:, 1].max())
        if inside.sum() < 5:
            failures += 1
            continue
        x_true = np.interp(y[inside], gt[:, 1], gt[:, 0])
        errors.append(float(np.mean(np.abs(result.line_xyz[inside, 0] - x_true))))
        est = result.measures.to_dict()
        for k in keys:
            if est.get(k) is not None and photo.measures.get(k) is not None:
                measure_errors.setdefault(k, []).append(abs(est[k] - photo.measures[k]))
    return {
        "photos": n, "failed": failures,
        "midline_lateral_error_mm_mean": float(np.mean(errors)) if errors else None,
        "midline_lateral_error_mm_median": float(np.median(errors)) if errors else None,
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
        val = data.build_set(data.EVAL_SEED, args.eval, workers=1, anny_share=1.0 if args.body == "anny" else 0.0)
        results["held_out_body_source"] = args.body
        # the evaluation batches through the torch module itself (the parity tests hold ONNX to it)
        torch_model = BackPredictor(weights=args.weights, device="cpu", framing="off", backend="torch").model
        results["depth_keypoints"] = evaluate(torch_model, val, torch)
        flat = np.zeros_like(val["relief"])
        baseline = depth_and_keypoint_metrics(flat, val["mask"] > 0, val["keypoints"], val)
        results["flat_back_baseline"] = {k: baseline[k] for k in ("delta1", "delta2", "delta3", "abs_rel", "rmse_mm", "relief_rmse_over_std")}
        results["midline"] = midline_eval(predictor, args.eval, args.body)
    text = json.dumps(results, indent=2, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
