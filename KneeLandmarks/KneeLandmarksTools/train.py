"""Train the two KNEEL stages (knee detector, landmark network) on CPU or GPU.

    mskmorph train knee --out runs/knee --stage landmarks --minutes 40 [--resume]
    mskmorph train knee --out runs/knee --stage detector --minutes 15
    mskmorph train knee --out runs/knee_real --stage both --images DIR --via oai_landmarks_via_refined.csv

Data: by default synthetic films from the shape model of the real KNEEL annotations, rendered on
the fly (``data.SyntheticSource``). With ``--images`` and ``--via`` the user's own radiographs
(DICOM with pixel spacing, or any readable image with ``--spacing``) with KNEEL/OAI VIA
annotations are used instead (``data.RealSource``).

Method as in KNEEL: HMP-hourglass with soft-argmax, wing loss on the coordinates (in mm for the
landmarks), mixup (loss mixed with the same weight) and cutout, geometric and texture
augmentation. Writes to OUT/<stage>/: ``last.ckpt`` (every checkpoint interval; ``--resume``
continues from it, including the elapsed time), ``log.jsonl`` (loss, validation error), and
``knee_<stage>.pt`` (small weights: state_dict + config, for torch.load(weights_only=True)),
copied to ``--export-to`` when given. Training stops at ``--minutes`` or ``--steps``.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from MSKCommonLib.resources import packaged

from . import data as D
from KneeLandmarksLib.network import KneelNet, wing_loss

STAGES = ("detector", "landmarks")
WEIGHTS_FORMAT = "mskmorph-kneel-v1"
MODELS_DIR = packaged("KneeLandmarksLib", "models")
DEFAULTS = {"detector": {"width": 16, "depth": 4, "size": 128, "batch": 16},
            "landmarks": {"width": 32, "depth": 4, "size": 128, "batch": 16}}


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, log, weights)")
    parser.add_argument("--stage", choices=(*STAGES, "both"), default="both")
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-time budget per stage")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: time only)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=None, help="channels of the hourglass")
    parser.add_argument("--depth", type=int, default=None, help="hourglass levels")
    parser.add_argument("--size", type=int, default=None, help="network input side in pixels")
    parser.add_argument("--mixup", type=float, default=0.2, help="probability of a mixup batch")
    parser.add_argument("--heatmap-weight", type=float, default=0.5,
                        help="weight of the heatmap regulariser (cross-entropy to a Gaussian at the target, "
                             "as in DSNT) that keeps the soft-argmax heatmaps sharp; 0 turns it off")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from the model weights of this checkpoint (.ckpt or weights .pt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--resume", action="store_true", help="continue from OUT/<stage>/last.ckpt")
    parser.add_argument("--val-batches", type=int, default=4, help="fixed validation batches of 16")
    parser.add_argument("--checkpoint-seconds", type=float, default=120.0)
    parser.add_argument("--images", type=Path, help="folder of real radiographs (with --via)")
    parser.add_argument("--via", type=Path, help="KNEEL/OAI VIA landmark CSV for the images in --images")
    parser.add_argument("--spacing", type=float, default=None, help="pixel spacing (mm) for images without one")
    parser.add_argument("--export-to", type=Path, default=None, help="also copy the weights files here")
    return parser


def build_model(stage: str, width: int, depth: int, size: int) -> KneelNet:
    return KneelNet(n_points=2 if stage == "detector" else 16, width=width, depth=depth, input_size=size,
                    presence="attention" if stage == "detector" else "global")


def export_weights(model: KneelNet, stage: str, path: Path, extra: dict) -> Path:
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    config = {"format": WEIGHTS_FORMAT, "stage": stage, **model.config, **extra}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, "config": config}, tmp)
    tmp.replace(path)
    return path


def _batch(source, stage: str, rng, n: int):
    if stage == "detector":
        s = [source.detector_sample(rng) for _ in range(n)]
        return (torch.from_numpy(np.stack([x.image for x in s]))[:, None],
                torch.from_numpy(np.stack([x.points for x in s])).float(),
                torch.from_numpy(np.stack([x.present for x in s])).float())
    s = [source.landmark_sample(rng) for _ in range(n)]
    return (torch.from_numpy(np.stack([x.image for x in s]))[:, None],
            torch.from_numpy(np.stack([x.points for x in s])).float(), None)


def heatmap_regulariser(prob: torch.Tensor, points: torch.Tensor, input_size: int, sigma_cells: float = 1.0):
    """Cross-entropy between each heatmap and a normalised Gaussian at the target (B, K)."""
    b, k, h, w = prob.shape
    s = input_size / w
    xs = ((torch.arange(w, dtype=prob.dtype, device=prob.device) + 0.5) * s - 0.5) / s
    ys = ((torch.arange(h, dtype=prob.dtype, device=prob.device) + 0.5) * s - 0.5) / s
    px, py = points[..., 0, None, None] / s, points[..., 1, None, None] / s
    g = torch.exp(-((xs[None, None, None, :] - px) ** 2 + (ys[None, None, :, None] - py) ** 2) / (2 * sigma_cells ** 2))
    g = g / g.sum((2, 3), keepdim=True).clamp(min=1e-12)
    return -(g * torch.log(prob.clamp(min=1e-12))).sum((2, 3))


def _loss(out, points, present, stage: str, mm_per_px: float, lam=None, perm=None, heatmap_weight: float = 0.0,
          input_size: int = 128):
    def one(p, q):
        per_point = wing_loss(out["coords"] * mm_per_px, p * mm_per_px)
        if heatmap_weight > 0:
            per_point = per_point + heatmap_weight * heatmap_regulariser(out["prob"], p, input_size)
        if stage == "detector":
            coord = (per_point * q).sum() / q.sum().clamp(min=1)
            return coord + 5.0 * F.binary_cross_entropy_with_logits(out["presence"], q)
        return per_point.mean()
    if lam is None:
        return one(points, present)
    return lam * one(points, present) + (1 - lam) * one(points[perm], None if present is None else present[perm])


@torch.no_grad()
def validate(model, batches, stage: str, mm_per_px: float) -> dict:
    model.eval()
    errors, hits = [], []
    for images, points, present in batches:
        out = model(images)
        e = torch.linalg.norm(out["coords"] - points, dim=-1) * mm_per_px
        if stage == "detector":
            errors.append(e[present > 0])
            hits.append(((out["presence"] > 0).float() == present).float().reshape(-1))
        else:
            errors.append(e.reshape(-1))
    model.train()
    e = torch.cat(errors)
    res = {"val_mean_error_mm": float(e.mean()), "val_median_error_mm": float(e.median())}
    if stage == "landmarks":
        for t in (1.0, 1.5, 2.0, 2.5):
            res[f"val_pck_{t}mm"] = float((e <= t).float().mean())
    else:
        res["val_presence_accuracy"] = float(torch.cat(hits).mean())
        res["val_within_10mm"] = float((e <= 10).float().mean())
    return res


def train_stage(args, stage: str) -> Path:
    from MSKCommonLib.device import choose_device

    import cv2

    torch.set_num_threads(max(1, args.threads))
    cv2.setNumThreads(max(1, args.threads))  # the synthetic films are rendered with OpenCV
    torch.manual_seed(args.seed)
    d = DEFAULTS[stage]
    width, depth = args.width or d["width"], args.depth or d["depth"]
    size, batch = args.size or d["size"], args.batch_size or d["batch"]
    device = choose_device(args.device)
    out = args.out / stage
    out.mkdir(parents=True, exist_ok=True)
    if args.images or args.via:
        if not (args.images and args.via):
            raise SystemExit("--images and --via go together")
        source = D.RealSource(args.images, args.via, roi_size=size, det_size=size, default_spacing=args.spacing)
        data_name = f"real: {args.via.name} + {args.images}"
        val_source = source
    else:
        source = D.SyntheticSource(roi_size=size, det_size=size)
        val_source = D.SyntheticSource(roi_size=size, det_size=size, augment=False)
        data_name = "synthetic films from the KNEEL shape model"
    # detector pixels are about (film mm / size); 400 mm films -> ~3 mm per pixel for the loss scale
    mm_per_px = 400.0 / size if stage == "detector" else D.ROI_PX * D.ROI_SPACING / size
    val_rng = np.random.default_rng([args.seed, 999_999])
    val = [_batch(val_source, stage, val_rng, 16) for _ in range(max(1, args.val_batches))]

    model = build_model(stage, width, depth, size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, elapsed, best = 0, 0.0, float("inf")
    ckpt = out / "last.ckpt"
    if args.init_from is not None and not (args.resume and ckpt.is_file()):
        saved = torch.load(args.init_from, map_location=device, weights_only=True)
        model.load_state_dict(saved.get("model") or saved["state_dict"])
        print(f"[{stage}] initialised from {args.init_from}", flush=True)
    if args.resume and ckpt.is_file():
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        step, elapsed, best = int(saved["step"]), float(saved["elapsed"]), float(saved["best"])
        print(f"[{stage}] resumed at step {step} ({elapsed / 60:.1f} min done)", flush=True)
    budget = args.minutes * 60.0
    weights_path = out / f"knee_{stage}.pt"
    log = open(out / "log.jsonl", "a", encoding="utf-8")
    start, last_ckpt, losses = time.time() - elapsed, time.time(), []
    extra = {"data": data_name, "seed": args.seed, "heatmap_weight": args.heatmap_weight,
             "init_from": str(args.init_from) if args.init_from else None}
    model.train()
    while True:
        elapsed = time.time() - start
        if elapsed >= budget or (args.steps is not None and step >= args.steps):
            break
        frac = min(1.0, elapsed / budget) if args.steps is None else step / max(1, args.steps)
        lr = args.lr * (min(1.0, (step + 1) / 50)) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([args.seed, step])
        images, points, present = _batch(source, stage, rng, batch)
        images, points = images.to(device), points.to(device)
        present = None if present is None else present.to(device)
        lam = perm = None
        if rng.random() < args.mixup:
            lam = float(rng.beta(0.2, 0.2))
            perm = torch.from_numpy(rng.permutation(batch)).to(device)
            images = lam * images + (1 - lam) * images[perm]
        loss = _loss(model(images), points, present, stage, mm_per_px, lam, perm,
                     heatmap_weight=args.heatmap_weight if stage == "landmarks" else 0.0, input_size=size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        final = (time.time() - start >= budget) or (args.steps is not None and step >= args.steps)
        if time.time() - last_ckpt >= args.checkpoint_seconds or final:
            metrics = validate(model, [(i.to(device), p.to(device), q if q is None else q.to(device)) for i, p, q in val],
                               stage, mm_per_px)
            record = {"stage": stage, "step": step, "minutes": round((time.time() - start) / 60, 2), "lr": lr,
                      "loss": float(np.mean(losses)), **metrics}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps(record), flush=True)
            losses = []
            if metrics["val_mean_error_mm"] < best:
                best = metrics["val_mean_error_mm"]
                export_weights(model, stage, weights_path, {**extra, "step": step, **metrics})
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "elapsed": time.time() - start, "best": best}, ckpt)
            last_ckpt = time.time()
    log.close()
    if not weights_path.is_file():
        export_weights(model, stage, weights_path, {**extra, "step": step})
    if args.export_to:
        args.export_to.mkdir(parents=True, exist_ok=True)
        shutil.copy2(weights_path, args.export_to / weights_path.name)
    print(f"[{stage}] done: {step} steps, best validation mean error {best:.3f} mm -> {weights_path}", flush=True)
    return weights_path


def run(args) -> int:
    stages = STAGES if args.stage == "both" else (args.stage,)
    for stage in stages:
        train_stage(args, stage)
    return 0


def main(argv=None) -> int:
    parser = configure_parser(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
