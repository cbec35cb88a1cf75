"""Train the second stage (``CobbAngleLib.vertebra_network``): each vertebra's corners read from
a patch of the film's own pixels.

    mskmorph train cobb-vertebrae --data ../shared/data/aasce2019-train --out ~/mskmorph-runs/vertebrae \
        [--max-minutes 90] [--resume] [--threads 1]

Built to fit one CPU thread of a 2-core machine, started in the background at the beginning of a
session and resumed in the next one:

* a patch cache built once (``OUT/patches.npz``): every vertebra of the training films (fixed labels),
  a ``CACHE_HW`` window of the film's own pixels at the patch scale, aligned to the true spine axis;
  augmentation (rotation, scale, shift, mirror, exposure, blur, noise) warps it into the network's
  ``PATCH_HW`` patch, and a rotated patch carries its exactly rotated corners;
* the validation films' stage-1 corners, predicted once by the shipped whole-film network
  (``OUT/validation_stage1.npz``) and their patches extracted by the inference code itself, so the
  validation figures each epoch are the product's end to end (stage 1 -> stage 2 -> geometry);
* ``OUT/last.ckpt`` every epoch (``--resume`` continues from it; without it, or when it is gone, the
  run starts from the committed weights ``models/cobb_vertebra.pt`` when they exist), ``OUT/log.jsonl``
  one line per epoch, ``OUT/cobb_vertebra.pt`` the best epoch by the validation SMAPE on the official
  labels (the selection rule of the model card's protocol).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from CobbAngleLib import geometry
from CobbAngleLib.frame import FLIP_CORNERS, intensity_window
from CobbAngleLib.vertebra_patch import (
    PATCH_HW, VERTEBRA_WIDTH_PX, extract_patches, frames_at, patch_frames, spine_axes, standardise,
    to_patch, vertebra_widths,
)

from . import data as D
from .run_state import add_run_options, end_epoch, learning_rate, load_weights, prepare, resume, save_weights

WEIGHTS_FORMAT = "mskmorph-cobb-vertebra-v1"
CACHE_HW = (224, 192)  # the cached window around each vertebra, at the patch scale
DEFAULT_WEIGHTS_NAME = "cobb_vertebra.pt"


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_run_options(parser, 90.0, 32, DEFAULT_WEIGHTS_NAME)
    parser.add_argument("--train-names", default=None,
                        help="JSON list of training film names (default: the split's train; out-of-fold runs)")
    return parser


# ------------------------------------------------------------------------------------------
# the patch cache

def read_cache(cache_file: Path, names: list[str]):
    """The arrays of an .npz cache made for these films (``names`` as stored), else None."""
    if not Path(cache_file).exists():
        return None
    with np.load(cache_file) as z:
        cached = {k: z[k] for k in z.files}
    return cached if list(cached["names"]) == list(names) else None


def build_patch_cache(data_dir: Path, names: list[str], cache_file: Path, labels: str = "fixed") -> dict:
    """Each vertebra of ``names``: a uint8 ``CACHE_HW`` window at the patch scale, centred on the
    true centre and aligned to the true spine axis, with its corners in that window."""
    cached = read_cache(cache_file, names)
    if cached is not None:
        return cached
    windows, corners, film_of = [], [], []
    for i, name in enumerate(names):
        film = cv2.imread(str(Path(data_dir) / "images" / name), cv2.IMREAD_GRAYSCALE)
        film01 = intensity_window(film)
        v = D.read_landmarks(data_dir, name, labels)
        centres = v.mean(axis=1)
        frames = frames_at(centres, spine_axes(centres), vertebra_widths(v), VERTEBRA_WIDTH_PX, CACHE_HW)
        patches = extract_patches(film01, frames, CACHE_HW)
        windows.append(np.round(patches * 255).astype(np.uint8))
        corners.append(to_patch(frames, v).astype(np.float32))
        film_of.extend([i] * len(v))
        if (i + 1) % 50 == 0:
            print(f"patch cache: {i + 1}/{len(names)} films", flush=True)
    out = {"names": np.array(names), "windows": np.concatenate(windows), "corners": np.concatenate(corners),
           "film": np.array(film_of), "labels": np.array(labels)}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file, **out)
    return out


def augmented(window: np.ndarray, corners: np.ndarray, rng: np.random.Generator):
    """One training patch from a cached window: rotated, scaled, shifted (as stage 1's centre, axis
    and width may be off), maybe mirrored, exposure varied. Returns (patch (H, W) float32 in [0, 1],
    corners (4, 2) in the patch)."""
    h, w = PATCH_HW
    ch, cw = window.shape
    angle = rng.normal(0, 7.0) if rng.random() < 0.8 else rng.uniform(-20, 20)
    zoom = float(np.exp(rng.normal(0, 0.1)))
    shift = rng.normal(0, 4.0, 2) if rng.random() < 0.85 else rng.uniform(-10, 10, 2)
    a = math.radians(angle)
    rot = zoom * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = np.array([(w - 1) / 2, (h - 1) / 2]) + shift - rot @ np.array([(cw - 1) / 2, (ch - 1) / 2])
    patch = cv2.warpAffine(window.astype(np.float32) / 255.0, m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    c = corners @ m[:, :2].T + m[:, 2]
    if rng.random() < 0.5:
        patch = patch[:, ::-1].copy()
        c = c[FLIP_CORNERS].copy()
        c[:, 0] = w - 1 - c[:, 0]
    patch = np.power(np.clip(patch, 0, 1), rng.uniform(0.6, 1.6))
    patch = (patch - 0.5) * rng.uniform(0.7, 1.3) + 0.5
    if rng.random() < 0.3:
        patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.4, 1.2))
    patch = patch + rng.normal(0, rng.uniform(0, 0.04), patch.shape)
    return np.clip(patch, 0, 1).astype(np.float32), c.astype(np.float32)


# ------------------------------------------------------------------------------------------
# losses

def endplate_tilts(corners):
    """(B, 2) tilt (degrees) of the superior and inferior endplates of (B, 4, 2) corners."""
    import torch

    sup = corners[:, 1] - corners[:, 0]
    inf = corners[:, 3] - corners[:, 2]
    return torch.rad2deg(torch.stack([torch.atan2(sup[:, 1], sup[:, 0]), torch.atan2(inf[:, 1], inf[:, 0])], 1))


def losses(out: dict, target) -> dict:
    """Corner distance (patch pixels), endplate tilt error (degrees), the Laplace likelihood of the
    tilt error under the predicted scale (the uncertainty; the error itself is not pushed by it), and
    a heatmap term that keeps each corner's mass near it."""
    import torch
    import torch.nn.functional as F

    from CobbAngleLib.vertebra_network import STRIDE

    pred = out["corners"]
    corner = (pred - target).norm(dim=-1).mean()
    # the tilt error as the distance between unit endplate directions (radians for small angles,
    # in degrees): finite gradients even while a predicted endplate is still a point (atan2 of a
    # zero vector has none)
    ends = (slice(1, 2), slice(0, 1)), (slice(3, 4), slice(2, 3))
    tilt = 0.0
    for right, left in ends:
        a = (pred[:, right] - pred[:, left])[:, 0]
        b = (target[:, right] - target[:, left])[:, 0]
        ua = a / a.norm(dim=-1, keepdim=True).clamp_min(1.0)
        ub = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        tilt = tilt + torch.rad2deg((ua - ub).norm(dim=-1)).mean() / 2
    with torch.no_grad():
        dt = endplate_tilts(pred) - endplate_tilts(target)
        dt = (dt + 180) % 360 - 180
    scale = out["endplate_scale_deg"]
    nll = (dt.abs() / scale + torch.log(scale)).mean()
    logits = out["heatmap_logits"]
    b, k, gh, gw = logits.shape
    ys = (torch.arange(gh, dtype=pred.dtype) * STRIDE + (STRIDE - 1) / 2)
    xs = (torch.arange(gw, dtype=pred.dtype) * STRIDE + (STRIDE - 1) / 2)
    d2 = ((xs[None, None, None, :] - target[..., 0, None, None]) ** 2
          + (ys[None, None, :, None] - target[..., 1, None, None]) ** 2) / (1.5 * STRIDE) ** 2
    gauss = torch.softmax(-d2.flatten(2) / 2, -1)  # a normalised Gaussian (log-space: a far corner does not underflow)
    heat = -(gauss * F.log_softmax(logits.flatten(2), -1)).sum(-1).mean()
    total = corner + 0.5 * tilt + 0.2 * nll + 0.1 * heat
    return {"total": total, "corner_px": corner, "tilt_deg": tilt, "nll": nll, "heat": heat}


# ------------------------------------------------------------------------------------------
# validation: the product's path, stage 1 -> patches -> stage 2 -> geometry

def stage1_validation(data_dir: Path, names: list[str], cache_file: Path) -> dict:
    """The shipped whole-film network's corners on the validation films, their patches (as inference
    extracts them), the truth on both label sets and the film heights."""
    cached = read_cache(cache_file, names)
    if cached is not None:
        return cached
    from CobbAngleLib.predict import CobbPredictor

    predictor = CobbPredictor(threads=1, stage2=False)
    stage1, patches, heights, official, fixed = [], [], [], [], []
    for name in names:
        film = cv2.imread(str(Path(data_dir) / "images" / name), cv2.IMREAD_GRAYSCALE)
        lm = predictor.predict(film.astype(np.float32)).landmarks
        stage1.append(lm)
        patches.append(np.round(extract_patches(intensity_window(film), patch_frames(lm)) * 255).astype(np.uint8))
        heights.append(film.shape[0])
        official.append(D.read_landmarks(data_dir, name, "official"))
        fixed.append(D.read_landmarks(data_dir, name, "fixed"))
    out = {"names": np.array(names), "stage1": np.array(stage1), "patches": np.array(patches),
           "heights": np.array(heights), "official": np.array(official), "fixed": np.array(fixed)}
    np.savez(cache_file, **out)
    return out


def tilt_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(films * 17 * 2,) absolute endplate tilt errors (degrees), superior and inferior."""
    out = []
    for which in ("sup", "inf"):
        p = geometry.tilt_deg(geometry.endplate_vectors(predicted.reshape(-1, 4, 2), which))
        t = geometry.tilt_deg(geometry.endplate_vectors(truth.reshape(-1, 4, 2), which))
        out.append(np.abs((p - t + 180) % 360 - 180))
    return np.concatenate(out)


def score(landmarks: np.ndarray, val: dict) -> dict:
    """SMAPE (official and fixed labels, AASCE convention as the organisers), MAE per angle and the
    endplate tilt error (fixed labels) of (films, 17, 4, 2) corners."""
    out = {}
    for labels in ("official", "fixed"):
        truth, pred = [], []
        for lm, t, h in zip(landmarks, val[labels], val["heights"]):
            truth.append([geometry.cobb_angles(t, "aasce", float(h), check_order=False).angles[c] for c in geometry.CURVE_NAMES])
            try:
                a = geometry.cobb_angles(lm, "aasce", float(h), check_order=False).angles
                pred.append([a[c] for c in geometry.CURVE_NAMES])
            except geometry.LandmarkError:
                pred.append([0.0, 0.0, 0.0])
        truth, pred = np.array(truth), np.array(pred)
        out[f"smape_{labels}"] = geometry.smape(truth, pred)
        if labels == "official":
            for j, c in enumerate(geometry.CURVE_NAMES):
                out[f"mae_{c}"] = float(np.mean(np.abs(truth[:, j] - pred[:, j])))
    e = tilt_errors(landmarks, val["fixed"])
    out.update(tilt_rms=float(np.sqrt(np.mean(e ** 2))), tilt_median=float(np.median(e)),
               tilt_p90=float(np.percentile(e, 90)))
    return out


def validate(model, val: dict, flip: bool) -> dict:
    """Stage 2 on the validation patches (stage 1's frames), scored end to end as the product
    takes its corners (``vertebra_read.on_film``: the fall-backs to stage 1 included; runs before
    2026-12-06 evening logged the corners without them)."""
    from CobbAngleLib.vertebra_read import on_film, read_patches

    def network(x):
        import torch

        with torch.no_grad():
            out = model(torch.from_numpy(x))
        return {k: out[k].numpy() for k in ("corners", "endplate_scale_deg")}

    refined = []
    for lm, p in zip(val["stage1"], val["patches"]):
        corners, _ = read_patches(network, p.astype(np.float32) / 255.0, flip)
        refined.append(on_film(lm, patch_frames(lm), corners))
    return score(np.array(refined), val)


# ------------------------------------------------------------------------------------------

def export_weights(model, path: Path, extra: dict) -> None:
    config = {"format": WEIGHTS_FORMAT, "patch_height": PATCH_HW[0], "patch_width": PATCH_HW[1],
              "vertebra_width_px": VERTEBRA_WIDTH_PX, "widths": list(model.widths), **extra}
    save_weights(model, path, config)


def load_model(path: Path):
    from CobbAngleLib.vertebra_read import build_network

    return load_weights(path, build_network)


def run(args) -> int:
    import torch

    from CobbAngleLib.vertebra_network import VertebraNet

    out_dir, train_names, val_names = prepare(args, json.loads(Path(args.train_names).read_text())
                                              if args.train_names else None)
    data_dir = Path(args.data)
    t0 = time.time()
    cache = build_patch_cache(data_dir, train_names, out_dir / "patches.npz")
    val = stage1_validation(data_dir, val_names, out_dir / "validation_stage1.npz")
    print(f"cache: {len(cache['windows'])} training vertebrae, {len(val['names'])} validation films "
          f"({time.time() - t0:.0f} s)", flush=True)
    widths = tuple(int(x) for x in args.widths.split(","))
    model = VertebraNet(widths)
    model.widths = widths
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    state = {"epoch": 0, "elapsed": 0.0, "best": float("inf"), "step": 0}
    ckpt = out_dir / "last.ckpt"
    from CobbAngleLib.vertebra_read import DEFAULT_WEIGHTS as committed
    resumed = resume(ckpt, model, opt) if args.resume else None
    if resumed is not None:
        state = resumed
        print(f"resumed after epoch {state['epoch']} ({state['elapsed'] / 60:.1f} min, best SMAPE {state['best']:.2f})",
              flush=True)
    else:
        init = Path(args.init_from) if args.init_from else (committed if committed.exists() else None)
        if init is not None:
            model.load_state_dict(load_model(init).state_dict())
            print(f"started from {init}", flush=True)
        print("validation before training:", json.dumps(validate(model.eval(), val, False)), flush=True)
    budget = args.max_minutes * 60
    rng = np.random.default_rng(args.seed + state["epoch"] * 7919)
    # vertebrae whose labelled corners leave their own window are label errors (a corner stored on
    # another vertebra): they teach nothing and are left out
    inside = np.all((cache["corners"] >= 0) & (cache["corners"] <= np.array([CACHE_HW[1] - 1, CACHE_HW[0] - 1])),
                    axis=(1, 2))
    kept = np.flatnonzero(inside)
    print(f"{len(kept)} of {len(inside)} training vertebrae have their corners in their window", flush=True)
    n = len(kept)
    while state["elapsed"] < budget:
        model.train()
        epoch_start = time.time()
        order = kept[rng.permutation(n)]
        sums: dict = {}
        steps = 0
        for b in range(0, n - args.batch_size + 1, args.batch_size):
            progress = min(1.0, (state["elapsed"] + time.time() - epoch_start) / budget)
            lr = learning_rate(args.lr, state["step"], progress)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[b:b + args.batch_size]
            pairs = [augmented(cache["windows"][i], cache["corners"][i], rng) for i in idx]
            x = torch.from_numpy(standardise(np.stack([p for p, _ in pairs]))[:, None])
            y = torch.from_numpy(np.stack([c for _, c in pairs]))
            parts = losses(model(x), y)
            opt.zero_grad()
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            state["step"] += 1
            steps += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if progress >= 1.0:
                break
        state["elapsed"] += time.time() - epoch_start
        state["epoch"] += 1
        model.eval()
        plain = validate(model, val, False)
        flipped = validate(model, val, True)
        line = {"epoch": state["epoch"], "minutes": round(state["elapsed"] / 60, 2), "lr": lr,
                **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
                **{f"val_{k}": v for k, v in plain.items()}, **{f"val_flip_{k}": v for k, v in flipped.items()}}
        chosen = min(plain["smape_official"], flipped["smape_official"])
        flip = flipped["smape_official"] < plain["smape_official"]
        end_epoch(out_dir, ckpt, model, opt, state, line, chosen, chosen < state["best"],
                  lambda: export_weights(model, out_dir / DEFAULT_WEIGHTS_NAME,
                                         {"epoch": state["epoch"], "test_time_flip": flip,
                                          "validation": flipped if flip else plain,
                                          "trained_on": f"{len(train_names)} AASCE 2019 training films "
                                                        f"(fixed labels), {n} vertebrae"}))
    print(f"done: {state['epoch']} epochs, best validation SMAPE {state['best']:.2f}", flush=True)
    return 0


def main(argv=None) -> int:
    return run(configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.train_vertebrae")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
