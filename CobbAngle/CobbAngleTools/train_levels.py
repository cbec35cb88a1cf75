"""Train the level network (``CobbAngleLib.level_network``): which level a vertebra is, from a
context patch around it.

    mskmorph train cobb-levels --data ../shared/data/aasce2019-train --out ~/mskmorph-runs/levels \
        [--max-minutes 60] [--resume] [--threads 1]

Built like ``train_vertebrae`` for one CPU thread, in the background, resumable:

* a window cache built once (``OUT/windows.npz``): on every training film (fixed labels), a
  ``CACHE_HW`` window at the context scale around each true vertebra T1..L5 and around the
  positions extrapolated from them (``vertebra_level.extended_chain``): three above T1 (C7, and two
  "above C7") and three below L5 (S1, and two "below S1"), those whose centre lies on the film;
* augmentation: the patch moved, turned and scaled as stage 1's chain may be off, mirrored,
  exposure, blur and noise varied, and **framing**: half the patches are cut by a film edge above
  or below the vertebra (at 0.3 to 2.5 vertebra steps; beyond it the edge repeated, as inference
  reads beyond a film's edge, or the padding of a film shrunk onto a larger canvas), so that where
  the film ends says nothing about the level;
* validation as the product names (``OUT/validation_levels.npz``, built once): the 81 validation
  films in the four framings of ``framing.FRAMINGS``, stage 1's chain on each (the shipped network),
  its context patches extracted by the inference code; each epoch names every chain
  (``vertebra_level.choose_shift``) and scores the share of vertebrae misnamed per framing;
* ``OUT/last.ckpt`` every epoch (``--resume``), ``OUT/log.jsonl``, ``OUT/cobb_level.pt`` the best
  epoch by the mean misnamed share over the four framings (the model card's protocol).
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

from CobbAngleLib.frame import intensity_window
from CobbAngleLib.vertebra_level import (
    CONTEXT_HW, CONTEXT_WIDTH_PX, EXTEND, LEVELS, choose_shift, context_frames, extended_chain, level_class,
    log_softmax, on_film,
)
from CobbAngleLib.vertebra_patch import extract_patches, frames_at, spine_axes, standardise, vertebra_widths

from . import data as D
from .run_state import add_run_options, end_epoch, learning_rate, load_weights, prepare, resume, save_weights
from .train_vertebrae import read_cache

WEIGHTS_FORMAT = "mskmorph-cobb-level-v1"
CACHE_SCALE = 1.5  # the cached window around each position: the context patch's size times this
TRAIN_EXTEND = 3  # positions around the true vertebrae that are trained (C7, above C7 x2; S1, below S1 x2)
DEFAULT_WEIGHTS_NAME = "cobb_level.pt"


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_run_options(parser, 60.0, 48, DEFAULT_WEIGHTS_NAME)
    parser.add_argument("--context", default=f"{CONTEXT_HW[0]}x{CONTEXT_HW[1]}",
                        help="context patch height x width in px (default %(default)s)")
    parser.add_argument("--context-width-px", type=float, default=CONTEXT_WIDTH_PX,
                        help="a vertebra's width in the context patch (default %(default)s)")
    parser.add_argument("--leave-out", default=None, metavar="FILE",
                        help="JSON with a list \"films\": training films not trained on (e.g. labels that "
                             "name the spine one level off; the cache is kept whole)")
    return parser


def leave_out(cache: dict, films) -> dict:
    """The window cache without the positions of ``films`` (names; those not in it are ignored)."""
    drop = np.isin(cache["names"], list(films))
    keep = ~drop[cache["film"]]
    return {**cache, "windows": cache["windows"][keep], "classes": cache["classes"][keep],
            "steps": cache["steps"][keep], "film": cache["film"][keep]}


def context_option(args):
    """(patch height x width, vertebra width in px) of ``--context`` and ``--context-width-px``."""
    h, w = (int(x) for x in args.context.lower().split("x"))
    return (h, w), float(args.context_width_px)


def cache_name(stem: str, hw, width_px: float) -> str:
    """The run folder's cache file for one context (the default context keeps the first run's names)."""
    if tuple(hw) == tuple(CONTEXT_HW) and width_px == CONTEXT_WIDTH_PX:
        return f"{stem}.npz"
    return f"{stem}_{hw[0]}x{hw[1]}_{width_px:g}px.npz"


# ------------------------------------------------------------------------------------------
# the window cache

def training_positions(v: np.ndarray):
    """(centres (N, 2), widths (N,), classes (N,)) of a labelled film's true vertebrae and the
    ``TRAIN_EXTEND`` positions extrapolated above T1 and below L5."""
    centres, widths = extended_chain(v.mean(axis=1), vertebra_widths(v), TRAIN_EXTEND)
    levels = np.arange(len(centres)) - TRAIN_EXTEND
    return centres, widths, level_class(levels)


def build_window_cache(data_dir: Path, names: list[str], cache_file: Path, hw=CONTEXT_HW,
                       width_px: float = CONTEXT_WIDTH_PX) -> dict:
    cached = read_cache(cache_file, names)
    if cached is not None:
        return cached
    window_hw = (int(round(hw[0] * CACHE_SCALE)), int(round(hw[1] * CACHE_SCALE)))
    windows, classes, steps, film_of = [], [], [], []
    for i, name in enumerate(names):
        film = cv2.imread(str(Path(data_dir) / "images" / name), cv2.IMREAD_GRAYSCALE)
        v = D.read_landmarks(data_dir, name, "fixed")
        centres, widths, cls = training_positions(v)
        keep = on_film(centres, film.shape)
        frames = frames_at(centres, spine_axes(centres), widths, width_px, window_hw)
        w = extract_patches(intensity_window(film), frames[keep], window_hw)
        windows.append(np.round(w * 255).astype(np.uint8))
        classes.append(cls[keep])
        # the step to the neighbouring position, at the context scale
        step = np.linalg.norm(np.gradient(centres, axis=0), axis=1) * width_px / widths
        steps.append(step[keep].astype(np.float32))
        film_of.extend([i] * int(keep.sum()))
        if (i + 1) % 50 == 0:
            print(f"window cache: {i + 1}/{len(names)} films", flush=True)
    out = {"names": np.array(names), "windows": np.concatenate(windows), "classes": np.concatenate(classes),
           "steps": np.concatenate(steps), "film": np.array(film_of)}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file, **out)
    return out


def augmented(window: np.ndarray, step: float, rng: np.random.Generator, hw=CONTEXT_HW,
              width_px: float = CONTEXT_WIDTH_PX) -> np.ndarray:
    """One training patch (``hw``, float32 in [0, 1]) from a cached window; a film edge lies
    0.3 to 2.5 vertebra steps from the vertebra, or anywhere in a taller patch."""
    h, w = hw
    ch, cw = window.shape
    angle = math.radians(rng.normal(0, 6.0))
    zoom = float(np.exp(rng.normal(0, 0.12)))
    shift = np.array([rng.normal(0, 0.1 * width_px), rng.normal(0, 0.15 * step)])
    rot = zoom * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = np.array([(w - 1) / 2, (h - 1) / 2]) + shift - rot @ np.array([(cw - 1) / 2, (ch - 1) / 2])
    patch = cv2.warpAffine(window.astype(np.float32) / 255.0, m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:  # a film edge above or below the vertebra
        d = int(round(rng.uniform(0.3, max(2.5, h / 2 / (step * 0.8))) * step * 0.8))
        row = int(np.clip((h - 1) / 2 + shift[1] + (d if rng.random() < 0.5 else -d), 1, h - 2))
        below = row > (h - 1) / 2
        fill = patch[row] if rng.random() < 0.6 else np.full(w, np.percentile(patch, rng.uniform(0, 5)), np.float32)
        if below:
            patch[row:] = fill
        else:
            patch[:row + 1] = fill
    if rng.random() < 0.5:
        patch = patch[:, ::-1].copy()
    if rng.random() < 0.25:  # a film shrunk onto a larger cassette: fewer pixels per vertebra
        f = rng.uniform(0.35, 0.7)
        small = cv2.resize(patch, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        patch = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    patch = np.power(np.clip(patch, 0, 1), rng.uniform(0.6, 1.6))
    patch = (patch - 0.5) * rng.uniform(0.7, 1.3) + 0.5
    if rng.random() < 0.3:
        patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.4, 1.2))
    patch = patch + rng.normal(0, rng.uniform(0, 0.04), patch.shape)
    return np.clip(patch, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------
# validation: stage 1's chains in the four framings, named as the product names them

def validation_chains(data_dir: Path, names: list[str], cache_file: Path, hw=CONTEXT_HW,
                      width_px: float = CONTEXT_WIDTH_PX) -> dict:
    cached = read_cache(cache_file, names)
    if cached is not None:
        return cached
    from CobbAngleLib.predict import CobbPredictor

    from .framing import FRAMINGS, reframe

    predictor = CobbPredictor(threads=1, stage2=False)
    patches, on, truth, chain = [], [], [], []
    for i, name in enumerate(names):
        film = cv2.imread(str(Path(data_dir) / "images" / name), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        v = D.read_landmarks(data_dir, name, "fixed")
        for framing in FRAMINGS:
            px, lm, _ = reframe(film, v, framing)
            s1 = predictor.predict(px).landmarks
            centres, widths = extended_chain(s1.mean(axis=1), vertebra_widths(s1), EXTEND)
            frames = context_frames(centres, widths, hw, width_px)
            patches.append(np.round(extract_patches(intensity_window(px), frames, hw) * 255).astype(np.uint8))
            on.append(on_film(centres, px.shape))
            truth.append(lm)
            chain.append(centres)
        if (i + 1) % 20 == 0:
            print(f"validation chains: {i + 1}/{len(names)} films", flush=True)
    out = {"names": np.array(names), "patches": np.array(patches), "on": np.array(on), "truth": np.array(truth),
           "chain": np.array(chain), "framings": np.array(FRAMINGS)}
    np.savez(cache_file, **out)
    return out


def misnamed(chain: np.ndarray, shift: int, truth: np.ndarray) -> tuple[int, bool]:
    """(vertebrae misnamed, shifted as a whole) when the chain is named at ``shift``: a named
    vertebra is misnamed when its centre is nearer another true vertebra's centre than its own."""
    from .framing import shifted_as_whole

    named = chain[np.arange(17) + EXTEND - shift]
    t = truth.mean(axis=1)
    offsets = np.argmin(np.linalg.norm(named[:, None] - t[None], axis=-1), axis=1) - np.arange(17)
    return int(np.count_nonzero(offsets)), shifted_as_whole(offsets)


def validate(model, val: dict) -> dict:
    import torch

    framings = [str(f) for f in val["framings"]]
    counts = {f: [0, 0, 0] for f in framings}  # misnamed, vertebrae, films shifted
    for j, (p, on, truth, chain) in enumerate(zip(val["patches"], val["on"], val["truth"], val["chain"])):
        x = standardise(p.astype(np.float32) / 255.0)[:, None]
        with torch.no_grad():
            logits = model(torch.from_numpy(np.concatenate([x, x[..., ::-1]])))["level_logits"].numpy()
        n = len(x)
        shift = choose_shift(log_softmax((logits[:n] + logits[n:]) / 2), on)
        wrong, whole = misnamed(chain, shift, truth)
        row = counts[framings[j % len(framings)]]
        row[0] += wrong
        row[1] += 17
        row[2] += int(whole)
    out = {f"misnamed_{f}": c[0] / max(c[1], 1) for f, c in counts.items()}
    out.update({f"shifted_{f}": c[2] for f, c in counts.items()})
    out["misnamed_mean"] = float(np.mean([out[f"misnamed_{f}"] for f in framings]))
    return out


# ------------------------------------------------------------------------------------------

def export_weights(model, path: Path, extra: dict, hw=CONTEXT_HW, width_px: float = CONTEXT_WIDTH_PX) -> None:
    config = {"format": WEIGHTS_FORMAT, "patch_height": hw[0], "patch_width": hw[1],
              "vertebra_width_px": width_px, "levels": list(LEVELS), "widths": list(model.widths), **extra}
    save_weights(model, path, config)


def load_model(path: Path):
    from CobbAngleLib.vertebra_level import build_network

    return load_weights(path, build_network)


def run(args) -> int:
    import torch
    import torch.nn.functional as F

    from CobbAngleLib.level_network import LevelNet
    from CobbAngleLib.vertebra_level import DEFAULT_WEIGHTS as committed

    out_dir, train_names, val_names = prepare(args)
    data_dir = Path(args.data)
    t0 = time.time()
    hw, width_px = context_option(args)
    cache = build_window_cache(data_dir, train_names, out_dir / cache_name("windows", hw, width_px), hw, width_px)
    val = validation_chains(data_dir, val_names, out_dir / cache_name("validation_levels", hw, width_px), hw, width_px)
    left_out = json.loads(Path(args.leave_out).read_text())["films"] if args.leave_out else []
    n_left_out = len(set(left_out) & set(train_names))
    if left_out:
        cache = leave_out(cache, left_out)
        print(f"left out: {n_left_out} training films ({args.leave_out})", flush=True)
    counts = np.bincount(cache["classes"], minlength=len(LEVELS))
    print(f"cache: {len(cache['windows'])} training positions, per level {counts.tolist()}; "
          f"{len(val['names'])} validation films x {len(val['framings'])} framings ({time.time() - t0:.0f} s)", flush=True)
    widths = tuple(int(x) for x in args.widths.split(","))
    model = LevelNet(widths, hw)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    state = {"epoch": 0, "elapsed": 0.0, "best": float("inf"), "step": 0}
    ckpt = out_dir / "last.ckpt"
    resumed = resume(ckpt, model, opt) if args.resume else None
    if resumed is not None:
        state = resumed
        print(f"resumed after epoch {state['epoch']} ({state['elapsed'] / 60:.1f} min, best {state['best']:.4f})", flush=True)
    else:
        init = Path(args.init_from) if args.init_from else (committed if committed.exists() else None)
        start = load_model(init) if init is not None else None
        if start is not None and start.hw != tuple(hw):
            print(f"not started from {init}: its context is {start.hw[0]}x{start.hw[1]}", flush=True)
            init = None
        if init is not None:
            model.load_state_dict(start.state_dict())
            print(f"started from {init}", flush=True)
            print("validation before training:", json.dumps(validate(model.eval(), val)), flush=True)
    # the rare levels (C7, above C7, below S1) weigh as much per class as the common ones, within a cap
    weight = torch.tensor(np.clip(np.median(counts[counts > 0]) / np.maximum(counts, 1), 1.0, 4.0), dtype=torch.float32)
    budget = args.max_minutes * 60
    rng = np.random.default_rng(args.seed + state["epoch"] * 7919)
    n = len(cache["windows"])
    while state["elapsed"] < budget:
        model.train()
        epoch_start = time.time()
        order = rng.permutation(n)
        loss_sum, right, seen, steps = 0.0, 0, 0, 0
        for b in range(0, n - args.batch_size + 1, args.batch_size):
            progress = min(1.0, (state["elapsed"] + time.time() - epoch_start) / budget)
            lr = learning_rate(args.lr, state["step"], progress)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[b:b + args.batch_size]
            x = torch.from_numpy(standardise(np.stack([augmented(cache["windows"][i], float(cache["steps"][i]), rng,
                                                                 hw, width_px) for i in idx]))[:, None])
            y = torch.from_numpy(cache["classes"][idx].astype(np.int64))
            logits = model(x)["level_logits"]
            loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            state["step"] += 1
            steps += 1
            loss_sum += float(loss.detach())
            right += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if progress >= 1.0:
                break
        state["elapsed"] += time.time() - epoch_start
        state["epoch"] += 1
        model.eval()
        scores = validate(model, val)
        line = {"epoch": state["epoch"], "minutes": round(state["elapsed"] / 60, 2), "lr": lr,
                "train_loss": loss_sum / max(steps, 1), "train_accuracy": right / max(seen, 1),
                **{f"val_{k}": v for k, v in scores.items()}}
        end_epoch(out_dir, ckpt, model, opt, state, line, scores["misnamed_mean"],
                  scores["misnamed_mean"] <= state["best"],
                  lambda: export_weights(model, out_dir / DEFAULT_WEIGHTS_NAME,
                                         {"epoch": state["epoch"], "validation": scores,
                                          "trained_on": f"{len(train_names) - n_left_out} AASCE 2019 training films "
                                                        "(fixed labels), "
                                                        f"{n} positions (T1..L5 and 3 extrapolated above and below)"},
                                         hw, width_px))
    print(f"done: {state['epoch']} epochs, best mean misnamed share {state['best']:.4f}", flush=True)
    return 0


def main(argv=None) -> int:
    return run(configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.train_levels")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
