"""Train the Seg4Reg+ Cobb network on the AASCE 2019 training set.

    mskmorph train cobb --data ../shared/data/aasce2019-train --out runs/cobb [--epochs N] [--resume]
    python -m CobbAngleTools.train --data ... --out ...

Writes to ``--out``: ``last.ckpt`` (every epoch; ``--resume`` continues from it), ``log.jsonl``
(one line per epoch: losses, validation SMAPE, MAE per angle, landmark error in original
pixels) and ``cobb_seg4reg.pt`` (the best epoch's small weights file, re-exported whenever the
validation SMAPE improves; ``--export-to`` writes a copy elsewhere too).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from CobbAngleLib import decode, geometry
from CobbAngleLib.network import STRIDE, Seg4RegNet, cell_centres, decode_landmarks, mid_axis_angles

WEIGHTS_FORMAT = "mskmorph-cobb-seg4reg-lite0-v1"
DEFAULT_EPOCHS = 40


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--data", required=True, help="AASCE 2019 training folder (images/, labels/)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log, weights)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"train until this many epochs in all (default {DEFAULT_EPOCHS}; with --resume the "
                             "checkpoint's own number unless given: a larger N continues the run to N epochs, the "
                             "cosine schedule stretched over the new length)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-time budget: the learning-rate schedule follows the elapsed share of it and "
                             "training stops when it is spent (instead of after --epochs)")
    parser.add_argument("--input-height", type=int, default=D.INPUT_HW[0], help="network input height (multiple of 32)")
    parser.add_argument("--input-width", type=int, default=D.INPUT_HW[1], help="network input width (multiple of 32)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    parser.add_argument("--init-from", default=None,
                        help="start from these exported weights (e.g. the shipped cobb_seg4reg.pt) with a fresh "
                             "optimiser and schedule: a second, longer round of training")
    parser.add_argument("--split", default=str(D.SPLIT_FILE), help="split JSON (train/validation names)")
    parser.add_argument("--labels", default="official", choices=["official", "fixed"],
                        help="train and validate on the official labels or on the fixed ones "
                             "(CobbAngleTools/label_fixes.json applied; see label_check)")
    parser.add_argument("--cache", default=None,
                        help="cached downsampled films (default OUT/cache.npz, OUT/cache_fixed.npz for --labels fixed)")
    parser.add_argument("--cut-share", type=float, default=0.0,
                        help="share of training films cut through the spine (above T2..T5 or below L1..L4; the cut "
                             "vertebrae get no loss, the angles none): teaches T1 and L5 by anatomy, not by place")
    parser.add_argument("--framing-share", type=float, default=0.0,
                        help="share of training films framed otherwise (issue 25): shrunk to 45..85 %% into a larger "
                             "canvas, off-centre, and/or a film edge anywhere from the neck to T8 or T11 to the pelvis "
                             "(the vertebrae not wholly shown get no loss)")
    parser.add_argument("--decoding", default="ordered", choices=["ordered", "chain", "plain"],
                        help="decoding of the validation films (as at inference)")
    parser.add_argument("--export-to", default=None, help="also copy the best weights file here")
    parser.add_argument("--no-pretrained", action="store_true", help="random encoder (tests only)")
    parser.add_argument("--limit", type=int, default=None, help="use only N training/validation films (smoke tests)")
    return parser


# ------------------------------------------------------------------------------------------
# losses

def heatmap_targets(landmarks: torch.Tensor, h: int, w: int, sigma_cells: float = 1.0) -> torch.Tensor:
    """Normalised Gaussian around each vertebra's centre, (B, 17, h*w)."""
    centre = landmarks.mean(2)  # (B, 17, 2)
    xs, ys = cell_centres(h, w, landmarks.device)
    dx = (xs[None, None, None, :] - centre[..., 0, None, None]) / STRIDE
    dy = (ys[None, None, :, None] - centre[..., 1, None, None]) / STRIDE
    t = torch.exp(-(dx**2 + dy**2) / (2 * sigma_cells**2)).flatten(2)
    return t / t.sum(-1, keepdim=True).clamp_min(1e-12)


def soft_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    prob = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (prob * onehot).sum((2, 3))
    den = prob.sum((2, 3)) + onehot.sum((2, 3))
    return 1 - ((2 * inter + 1) / (den + 1)).mean()


def tilt_deg(landmarks: torch.Tensor) -> torch.Tensor:
    mid = (landmarks[:, :, 1] + landmarks[:, :, 3]) / 2 - (landmarks[:, :, 0] + landmarks[:, :, 2]) / 2
    return torch.rad2deg(torch.atan2(mid[..., 1], mid[..., 0]))


def end_vertebra_pairs(landmarks: np.ndarray, heights: list[float]) -> torch.Tensor:
    """(B, 3, 2) end vertebrae of the three AASCE curves, from the organisers' rule on these landmarks."""
    pairs = []
    for lm, h in zip(landmarks, heights):
        try:  # the training labels as stored (the official ones: 18 with the top vertebra last)
            res = geometry.cobb_angles(lm, "aasce", h, check_order=False)
            pairs.append([[c.upper_line[0], c.lower_line[0]] for c in res.curves])
        except (geometry.LandmarkError, ValueError, TypeError):
            pairs.append([[0, 16]] * 3)
    return torch.tensor(pairs, dtype=torch.long)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, K, ...) over the entries whose (B, K) mask is set (0 when none is)."""
    m = mask.to(x.dtype).reshape(mask.shape + (1,) * (x.dim() - mask.dim())).expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def compute_losses(out: dict, batch: dict, heights: list[float], consistency_weight: float) -> dict:
    lm = batch["landmarks"]
    labels = batch["labels"]
    gt_angles = batch["angles"]
    visible = batch.get("visible")
    if visible is None:
        visible = torch.ones(lm.shape[:2], dtype=torch.bool)
    visible = visible.to(lm.device)
    whole = visible.all(1)  # films showing the whole spine: their angles are the truth's
    seg = out["segmentation"].float()
    heat = out["heatmap"].float()
    off = out["offsets"].float()
    b, k, h, w = heat.shape
    losses = {}
    losses["segmentation"] = F.cross_entropy(seg, labels) + soft_dice(seg, labels)
    target = heatmap_targets(lm, h, w)
    losses["heatmap"] = _masked_mean(-(target * heat.flatten(2).log_softmax(-1)).sum(-1), visible)
    corners, _ = decode_landmarks(heat, off)
    # corner positions: the offsets learn from the full error; the heatmap only from a small centre
    # term (a large soft-argmax gradient would spread the heatmaps instead of sharpening them)
    corners_offsets_only, _ = decode_landmarks(heat.detach(), off)
    losses["corners"] = _masked_mean((corners_offsets_only - lm).abs(), visible) / STRIDE
    losses["centres"] = 0.1 * _masked_mean((corners.mean(2) - lm.mean(2)).abs(), visible) / STRIDE
    off_at_truth = torch.einsum("bkn,bcn->bkc", target, off.flatten(2))
    losses["offsets"] = _masked_mean((off_at_truth - (lm - lm.mean(2, keepdim=True)).reshape(b, k, 8)).abs(), visible) / STRIDE
    dt = tilt_deg(corners_offsets_only) - tilt_deg(lm)
    losses["tilt"] = 0.05 * _masked_mean(((dt + 180) % 360 - 180).abs(), visible)
    angles = out["angles"].float()
    per_film = F.smooth_l1_loss(angles, gt_angles, beta=2.0, reduction="none").mean(1)
    losses["regression"] = (per_film * whole).sum() / whole.sum().clamp_min(1) / 5
    # attention: the regression CAMs' attention map toward the spine (vertebra mask, stride 32)
    spine = F.max_pool2d((labels > 0).float()[:, None], 8)
    losses["attention"] = 0.5 * F.binary_cross_entropy_with_logits(out["attention_logit"].float(), spine)
    # triangle consistency: landmark angles <-> truth, landmark angles <-> regressed angles (whole films only)
    to_orig = batch["to_original"]
    lm_orig = np.einsum("bij,bkcj->bkci", to_orig[:, :, :2], corners.detach().cpu().double().numpy()) + to_orig[:, None, None, :, 2]
    pairs = end_vertebra_pairs(lm_orig, heights).to(corners.device)
    lm_angles = mid_axis_angles(corners_offsets_only, pairs)
    tri = (F.smooth_l1_loss(lm_angles, gt_angles, beta=2.0, reduction="none")
           + F.smooth_l1_loss(lm_angles, angles, beta=2.0, reduction="none")).mean(1)
    losses["consistency"] = consistency_weight * (tri * whole).sum() / whole.sum().clamp_min(1) / 5
    losses["total"] = sum(losses.values())
    return losses


# ------------------------------------------------------------------------------------------
# validation

@torch.no_grad()
def evaluate(model, dataset: D.SpineDataset, device, batch_size: int, heights_of, decoding: str = "ordered") -> dict:
    model.eval()
    truth, from_landmarks, regressed, errors = [], [], [], []
    for start in range(0, len(dataset), batch_size):
        batch = D.collate([dataset[j] for j in range(start, min(len(dataset), start + batch_size))])
        out = model(batch["image"].to(device))
        heat, offsets = out["heatmap"].float().cpu().numpy(), out["offsets"].float().cpu().numpy()
        if decoding == "ordered":  # the inference's decoding (CobbAngleLib.decode)
            corners, _ = decode.ordered_landmarks(heat, offsets)
        else:
            corners, _ = decode.decode_landmarks(heat, offsets, window=3, chain=decoding == "chain")
        m = batch["to_original"]
        for i, idx in enumerate(batch["index"]):
            lm = corners[i] @ m[i][:, :2].T + m[i][:, 2]
            gt_lm = dataset.cache["landmarks"][idx]
            errors.append(np.linalg.norm(lm - gt_lm, axis=-1).mean())
            # the challenge's score: the organisers' rule on any 68 corners (a network early in
            # training puts its vertebrae in no order; the truth is their angles.csv)
            res = geometry.cobb_angles(lm, "aasce", heights_of(idx), check_order=False)
            from_landmarks.append([res.angles[c] for c in geometry.CURVE_NAMES])
            truth.append(dataset.cache["angles"][idx])
        regressed.append(out["angles"].float().clamp_min(0).cpu().numpy())
    truth = np.array(truth)
    lm_a = np.array(from_landmarks, dtype=np.float64)
    reg_a = np.concatenate(regressed).astype(np.float64)
    mean_a = (lm_a + reg_a) / 2
    res = {
        "smape_landmarks": geometry.smape(truth, lm_a),
        "smape_regression": geometry.smape(truth, reg_a),
        "smape_mean": geometry.smape(truth, mean_a),
        "landmark_error_px": float(np.mean(errors)),
        "flagged_10deg": float(np.mean(np.abs(lm_a - reg_a).max(1) > 10)),
    }
    for j, c in enumerate(geometry.CURVE_NAMES):
        res[f"mae_{c}_landmarks"] = float(np.mean(np.abs(lm_a[:, j] - truth[:, j])))
        res[f"mae_{c}_regression"] = float(np.mean(np.abs(reg_a[:, j] - truth[:, j])))
    return res


# ------------------------------------------------------------------------------------------

def export_weights(model, path: Path, extra: dict, input_hw=D.INPUT_HW) -> None:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    config = {"format": WEIGHTS_FORMAT, "input_height": int(input_hw[0]), "input_width": int(input_hw[1]),
              "stride": STRIDE}
    config.update({k: v for k, v in extra.items() if isinstance(v, (int, float, str))})
    tmp = Path(str(path) + ".tmp")
    torch.save({"state_dict": state, "config": config}, tmp)
    tmp.replace(path)


def lr_at(progress: float, base: float, warmup_share: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up over the first epoch, then cosine decay over the training's progress (0..1)."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    p = (progress - warmup_share) / max(1e-6, 1 - warmup_share)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, p)))))


def run(args) -> int:
    from MSKCommonLib.device import choose_device

    torch.set_num_threads(max(1, args.threads))
    device = choose_device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    split_path = Path(args.split)
    if not split_path.exists():
        D.write_split(Path(args.data), split_path)
    split = D.read_split(split_path)
    default_cache = out_dir / ("cache.npz" if args.labels == "official" else f"cache_{args.labels}.npz")
    cache = D.build_cache(Path(args.data), Path(args.cache) if args.cache else default_cache, args.labels)
    train_names, val_names = split["train"], split["validation"]
    if args.limit:
        train_names, val_names = train_names[: args.limit], val_names[: max(2, args.limit // 4)]
    hw = (args.input_height, args.input_width)
    train_set = D.SpineDataset(cache, train_names, augment=True, input_hw=hw, cut_share=args.cut_share,
                              framing_share=args.framing_share)
    val_set = D.SpineDataset(cache, val_names, augment=False, input_hw=hw)
    heights_of = lambda i: float(cache["shapes"][i][0])  # noqa: E731

    model = Seg4RegNet(pretrained=not args.no_pretrained and not args.init_from).to(device)
    if args.init_from and not (args.resume and (out_dir / "last.ckpt").exists()):
        init = torch.load(args.init_from, map_location=device, weights_only=True)
        model.load_state_dict(init["state_dict"])
        print(f"initialised from {args.init_from} (epoch {init['config'].get('epoch')})", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    state = {"epoch": 0, "best": float("inf"), "epochs": args.epochs or DEFAULT_EPOCHS, "elapsed": 0.0}
    ckpt = out_dir / "last.ckpt"
    if args.resume and ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        state.update(saved["state"])
        if args.epochs is not None:  # the command line's --epochs wins over the checkpoint's
            state["epochs"] = args.epochs
            if not args.max_minutes:
                state.pop("finished", None)
        torch.set_rng_state(saved["torch_rng"])
        print(f"resumed after epoch {state['epoch']} (best SMAPE {state['best']:.2f})", flush=True)
    log = open(out_dir / "log.jsonl", "a")
    weights_file = out_dir / "cobb_seg4reg.pt"

    budget = args.max_minutes * 60 if args.max_minutes else None
    if budget:
        state["epochs"] = 10**6  # the time budget decides

    def progress_now(step: int) -> float:
        if budget:
            return (state["elapsed"] + time.time() - t0) / budget
        return step / (state["epochs"] * steps_per_epoch)

    while state["epoch"] < state["epochs"] and not state.get("finished"):
        epoch = state["epoch"]
        t0 = time.time()
        model.train()
        train_set.set_epoch(args.seed * 100003 + epoch)
        order = np.random.default_rng(args.seed * 7919 + epoch).permutation(len(train_set))
        consistency_weight = min(1.0, (epoch + 1) / 5)
        sums: dict[str, float] = {}
        n_steps = 0
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            p = progress_now(step)
            if budget and p >= 1.0:
                state["finished"] = True
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(p, args.lr, steps_per_epoch / (state["epochs"] * steps_per_epoch) if not budget else 0.03,
                                step, steps_per_epoch)
            idx = order[s * args.batch_size:(s + 1) * args.batch_size]
            if len(idx) < 2:
                continue
            batch = D.collate([train_set[int(j)] for j in idx])
            heights = [heights_of(i) for i in batch["index"]]
            for key in ("image", "landmarks", "labels", "angles", "visible"):
                batch[key] = batch[key].to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = model(batch["image"])
            losses = compute_losses(out, batch, heights, consistency_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
            n_steps += 1
            for key, v in losses.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach())
        if n_steps == 0 and state.get("finished"):
            break
        train_seconds = time.time() - t0
        metrics = evaluate(model, val_set, device, 8, heights_of, args.decoding)
        epoch_seconds = time.time() - t0
        state["elapsed"] += epoch_seconds
        state["epoch"] = epoch + 1
        record = {"epoch": epoch + 1, "epochs": state["epochs"], "lr": opt.param_groups[0]["lr"],
                  "train_seconds": round(train_seconds, 1), "epoch_seconds": round(epoch_seconds, 1),
                  "elapsed_minutes": round(state["elapsed"] / 60, 2)}
        record.update({f"loss_{k}": round(v / max(1, n_steps), 5) for k, v in sums.items()})
        record.update({k: round(v, 4) for k, v in metrics.items()})
        score = metrics["smape_landmarks"]
        if score < state["best"]:
            state["best"] = score
            record["best"] = True
            export_weights(model, weights_file, {"epoch": epoch + 1, **metrics, "seed": args.seed}, hw)
            if args.export_to:
                shutil.copyfile(weights_file, args.export_to)
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(json.dumps(record), flush=True)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                    "state": state, "torch_rng": torch.get_rng_state()}, Path(str(ckpt) + ".tmp"))
        Path(str(ckpt) + ".tmp").replace(ckpt)
    log.close()
    print(f"done: best validation SMAPE (landmark angles) {state['best']:.2f}; weights {weights_file}")
    return 0


def main(argv=None) -> int:
    parser = configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.train", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
