"""``mskmorph train back``: train GAMA-Net (depth relief + back mask) and the SimCC keypoint head
on synthetic backs, on the CPU if need be.

    mskmorph train back --out runs/back/gamanet --minutes 40 [--resume] [--export PATH]

Checkpoints (``last.pt``, with optimiser and step, for ``--resume``), a log (``train.log``, one
JSON line per report) and the final weights (``gamanet_back.pt``, half precision, state dict only:
``torch.load(weights_only=True)``) in ``--out``. The data are made once and cached as .npz.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import data


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/back/gamanet"), help="run folder")
    parser.add_argument("--n-train", type=int, default=3000, help="synthetic training photos (default 3000)")
    parser.add_argument("--n-val", type=int, default=120, help="held-out photos checked during training")
    parser.add_argument("--minutes", type=float, default=40.0, help="wall-clock training budget")
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)")
    parser.add_argument("--workers", type=int, default=2, help="processes making the synthetic data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--export", type=Path, help="also copy the final weights here")
    parser.add_argument("--anny-share", type=float, default=0.0,
                        help="share of the training and validation photos from anny bodies (needs the anny package)")
    parser.add_argument("--cameras-varied-share", type=float, default=0.0,
                        help="share of the photos seen by a turned camera (phantom.CAMERAS 'varied'; default 0: all face-on)")
    parser.add_argument("--scene-varied-share", type=float, default=0.0,
                        help="share of the photos with varied lights and backgrounds (default 0: all plain)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from these weights (e.g. the shipped gamanet_back.pt) instead of ImageNet")
    parser.add_argument("--no-pretrained", action="store_true", help="random encoder (tests)")


def losses(out, batch, torch):
    import torch.nn.functional as F

    from SpineMorphologyLib.network import SIMCC_SPLIT

    mask = batch["mask"].float()
    target = batch["relief"]

    def relief_loss(pred):
        n = mask.sum((1, 2)).clamp_min(1)
        # shift-invariant: compare after removing each image's mean over the back
        p = pred - (pred * mask).sum((1, 2), keepdim=True) / n[:, None, None]
        t = target - (target * mask).sum((1, 2), keepdim=True) / n[:, None, None]
        l1 = ((p - t).abs() * mask).sum((1, 2)) / n
        m2 = mask[:, 1:, 1:] * mask[:, :-1, 1:] * mask[:, 1:, :-1]
        gx = (p[:, 1:, 1:] - p[:, 1:, :-1]) - (t[:, 1:, 1:] - t[:, 1:, :-1])
        gy = (p[:, 1:, 1:] - p[:, :-1, 1:]) - (t[:, 1:, 1:] - t[:, :-1, 1:])
        grad = ((gx.abs() + gy.abs()) * m2).sum((1, 2)) / m2.sum((1, 2)).clamp_min(1)
        return (l1 + 4.0 * grad).mean()

    l_relief = relief_loss(out["relief"]) + 0.25 * sum(relief_loss(s[:, 0]) for s in out["scales"])
    logit = out["mask_logit"]
    l_bce = F.binary_cross_entropy_with_logits(logit, mask)
    prob = torch.sigmoid(logit)
    l_dice = 1 - (2 * (prob * mask).sum((1, 2)) + 1) / (prob.sum((1, 2)) + mask.sum((1, 2)) + 1)
    l_mask = l_bce + l_dice.mean() + 0.25 * sum(
        F.binary_cross_entropy_with_logits(s[:, 1], mask) for s in out["scales"])

    kp = batch["keypoints"]
    sigma = 1.5 * SIMCC_SPLIT

    def simcc(logits, coord):
        bins = torch.arange(logits.shape[-1], dtype=logits.dtype)
        target = torch.exp(-0.5 * ((bins[None, None, :] - coord[..., None] * SIMCC_SPLIT) / sigma) ** 2)
        target = target / target.sum(-1, keepdim=True).clamp_min(1e-9)
        return -(target * logits.log_softmax(-1)).sum(-1).mean()

    l_kp = simcc(out["simcc_x"], kp[..., 0]) + simcc(out["simcc_y"], kp[..., 1])
    total = 10.0 * l_relief + l_mask + 0.3 * l_kp
    return total, {"relief": float(l_relief.detach()), "mask": float(l_mask.detach()), "keypoints": float(l_kp.detach())}


def to_batch(arrays, idx, torch, augment=False, rng=None):
    img = arrays["image"][idx].astype(np.float32) / 255.0
    relief = arrays["relief"][idx].copy()
    mask = arrays["mask"][idx].copy()
    kp = arrays["keypoints"][idx].copy()
    if augment:
        from SpineMorphologyLib.network import INPUT_WIDTH

        flip = rng.uniform(size=len(idx)) < 0.5  # a mirrored back is a back
        img[flip] = img[flip, :, ::-1]
        relief[flip] = relief[flip, :, ::-1]
        mask[flip] = mask[flip, :, ::-1]
        kp[flip, :, 0] = INPUT_WIDTH - 1 - kp[flip, :, 0]
        img = img * rng.uniform(0.85, 1.15, (len(idx), 1, 1, 3)).astype(np.float32)
        img = np.clip(img, 0, 1)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(img.transpose(0, 3, 1, 2))),
        "relief": torch.from_numpy(np.ascontiguousarray(relief)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask)),
        "keypoints": torch.from_numpy(kp),
    }


def evaluate(model, arrays, torch, batch_size=16) -> dict:
    """Held-out metrics (see MODEL_CARD.md for the definitions)."""
    from SpineMorphologyLib.network import decode_simcc

    model.eval()
    preds, masks, kps, confs = [], [], [], []
    with torch.no_grad():
        for s in range(0, len(arrays["image"]), batch_size):
            idx = np.arange(s, min(s + batch_size, len(arrays["image"])))
            out = model(to_batch(arrays, idx, torch)["image"])
            preds.append(out["relief"].numpy())
            masks.append((out["mask_logit"] > 0).numpy())
            k, c = decode_simcc(out["simcc_x"], out["simcc_y"])
            kps.append(k.numpy())
            confs.append(c.numpy())
    model.train()
    return depth_and_keypoint_metrics(np.concatenate(preds), np.concatenate(masks), np.concatenate(kps), arrays)


def depth_and_keypoint_metrics(pred_relief, pred_mask, pred_kp, arrays) -> dict:
    d1 = d2 = d3 = absrel = 0.0
    rmse_mm, ious, relative = [], [], []
    for i in range(len(pred_relief)):
        m = arrays["mask"][i] > 0
        g = arrays["relief"][i][m]
        p = pred_relief[i][m]
        p = p - np.median(p) + np.median(g)  # relief is relative: align the medians
        lo, hi = g.min(), g.max()
        # depth normalised within the back: 1 (nearest) .. 2 (farthest)
        gn = 1 + (hi - g) / (hi - lo)
        pn = 1 + (hi - p) / (hi - lo)
        ratio = np.maximum(gn / pn.clip(1e-3), pn.clip(1e-3) / gn)
        d1 += np.mean(ratio < 1.25)
        d2 += np.mean(ratio < 1.25**2)
        d3 += np.mean(ratio < 1.25**3)
        absrel += np.mean(np.abs(pn - gn) / gn)
        rmse_mm.append(np.sqrt(np.mean((p - g) ** 2)) * arrays["mm_per_relief"][i])
        relative.append(np.sqrt(np.mean((p - g) ** 2)) / max(np.std(g), 1e-9))  # a flat back scores about 1
        inter = np.logical_and(pred_mask[i], m).sum()
        ious.append(inter / max(np.logical_or(pred_mask[i], m).sum(), 1))
    n = len(pred_relief)
    err = np.linalg.norm(pred_kp - arrays["keypoints"], axis=-1)  # (n, 9)
    pck = err < 0.05 * arrays["trunk_px"][:, None]
    return {
        "delta1": d1 / n, "delta2": d2 / n, "delta3": d3 / n, "abs_rel": absrel / n,
        "rmse_mm": float(np.mean(rmse_mm)), "relief_rmse_over_std": float(np.mean(relative)),
        "mask_iou": float(np.mean(ious)),
        "pck05_trunk": float(pck.mean()), "keypoint_error_mm": float(np.mean(err * arrays["mm_per_px"][:, None])),
    }


def run(args) -> int:
    import torch

    from MSKCommonLib.device import choose_device

    from SpineMorphologyLib.network import GAMANet

    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a", encoding="utf-8")

    def report(**kw):
        kw = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in kw.items()}
        kw["time"] = time.strftime("%H:%M:%S")
        line = json.dumps(kw)
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    start = time.time()
    cache = out.parent / "data"
    share = float(args.anny_share)
    cam_share, scene_share = float(args.cameras_varied_share), float(args.scene_varied_share)
    tag = "" if share <= 0 else f"_anny{share:g}"
    tag += "" if cam_share <= 0 else f"_cam{cam_share:g}"
    tag += "" if scene_share <= 0 else f"_scene{scene_share:g}"

    def build(seed_base, n, name):
        kinds = {}
        if cam_share > 0:  # salts 1 and 2: the two mixes are drawn independently
            kinds["cameras"] = data.mixed(n, cam_share, "face-on", "varied", seed_base, 1)
        if scene_share > 0:
            kinds["scene"] = data.mixed(n, scene_share, "plain", "varied", seed_base, 2)
        return data.build_set(seed_base, n, cache / f"{name}_{n}{tag}.npz", args.workers, share, **kinds)

    train_set = build(data.TRAIN_SEED, args.n_train, "train")
    val_set = build(data.EVAL_SEED, args.n_val, "val")
    report(event="data", train=len(train_set["image"]), val=len(val_set["image"]), anny_share=share,
           cameras_varied_share=cam_share, scene_varied_share=scene_share, seconds=round(time.time() - start, 1))

    device = choose_device(args.device)
    model = GAMANet(pretrained=not args.no_pretrained and args.init_from is None).to(device)
    if args.init_from is not None and not (args.resume and (out / "last.pt").is_file()):
        init = torch.load(args.init_from, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in init.items()})
        report(event="init", weights=str(args.init_from))
    encoder = [p for n, p in model.named_parameters() if n.startswith(("stem", "blocks"))]
    rest = [p for n, p in model.named_parameters() if not n.startswith(("stem", "blocks"))]
    opt = torch.optim.AdamW([{"params": encoder, "lr": args.lr * 0.3}, {"params": rest, "lr": args.lr}], weight_decay=1e-4)
    step = 0
    ckpt = out / "last.pt"
    if args.resume and ckpt.is_file():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception:  # checkpoints of the first runs kept numpy scalars (learning rates)
            with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]):
                state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        rng = np.random.default_rng([args.seed, step])
        report(event="resume", step=step)
    budget = args.minutes * 60
    train_start = time.time()
    n = len(train_set["image"])
    running = {}
    while step < args.max_steps and time.time() - train_start < budget:
        frac = min((time.time() - train_start) / budget, 1.0)
        for g, base in zip(opt.param_groups, (args.lr * 0.3, args.lr)):
            g["lr"] = float(base * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac))))  # cosine over the time budget
        idx = rng.choice(n, args.batch, replace=False)
        batch = {k: v.to(device) for k, v in to_batch(train_set, idx, torch, augment=True, rng=rng).items()}
        output = model(batch["image"])
        loss, parts = losses(output, batch, torch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        for k, v in parts.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        if step % 50 == 0:
            report(event="train", step=step, minutes=round((time.time() - train_start) / 60, 1),
                   **{k: round(v, 4) for k, v in running.items()})
        if step % 300 == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, ckpt)
            report(event="val", step=step, **{k: round(v, 4) for k, v in evaluate(model, val_set, torch).items()})
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, ckpt)
    metrics = evaluate(model, val_set, torch)
    report(event="final", step=step, **{k: round(v, 4) for k, v in metrics.items()})
    weights = out / "gamanet_back.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, weights)
    if args.export:
        Path(args.export).parent.mkdir(parents=True, exist_ok=True)
        torch.save(torch.load(weights, weights_only=True), args.export)
    report(event="saved", weights=str(weights), export=str(args.export) if args.export else None)
    return 0
