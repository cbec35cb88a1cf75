"""The training code learns, and its resume continues where it stopped.

For each network (the Cobb Seg4Reg+ net, the knee detector, the knee landmark net, the back
GAMA-Net) a tiny fixed batch is fitted for a few optimiser steps with the training module's own
loss function and its optimiser set-up (AdamW, the command's default learning rate and weight
decay, gradient clipping at 5): the loss must fall by a stated factor. The factors were measured
on this code (seed 0, one CPU thread) and are set with a margin of about 1.5x or more; a training
step that does not update the weights (a no-op optimiser step, a detached loss, a zero learning
rate) leaves the loss where it was and fails them.

For each training command (``mskmorph train cobb | knee | back``) a run is stopped and resumed:
the step/epoch counter and the optimiser state (AdamW's per-parameter step count and moments)
must continue from the checkpoint, not restart.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from conftest import SAMPLE_DATA

torch.set_num_threads(1)


def _fit(model, opt, loss_of, steps: int) -> list[float]:
    """The training loop's step: zero_grad, backward, clip at 5, optimiser step (as every train.py does)."""
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_of(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _default(configure_parser, dest: str):
    """A command's default option value, read from its own parser."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.get_default(dest)


def _adam_steps(optimizer_state: dict) -> set[int]:
    """The per-parameter step counts in a saved AdamW state dict."""
    return {int(s["step"]) for s in optimizer_state["state"].values()}


# ------------------------------------------------------------------------------------------
# Cobb: a cache of the bundled phantom film (and its mirror), in the layout of data.build_cache

def _phantom_cache() -> dict:
    import cv2
    from scipy.io import loadmat

    from CobbAngleLib import geometry
    from CobbAngleLib.frame import FLIP_CORNERS
    from CobbAngleTools import data as D

    img = cv2.imread(str(SAMPLE_DATA / "SpinePhantom_AP.png"), cv2.IMREAD_GRAYSCALE)
    lm = loadmat(str(SAMPLE_DATA / "SpinePhantom_AP.png.mat"))["p2"].reshape(17, 4, 2).astype(float)
    h, w = img.shape
    s = min(1.0, D.CACHE_LONG_SIDE / h, D.CACHE_LONG_SIDE / 2 / w)
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    mirrored = lm[:, FLIP_CORNERS].copy()
    mirrored[..., 0] = w - 1 - mirrored[..., 0]
    films = [(small, lm), (small[:, ::-1].copy(), mirrored)] * 2
    cache = {"names": np.array([f"phantom{i}.png" for i in range(len(films))])}
    for i, (im, _) in enumerate(films):
        cache[f"img{i}"] = im
    cache["landmarks"] = np.stack([l for _, l in films])
    cache["angles"] = np.stack([[geometry.cobb_angles(l, "aasce", h).angles[c] for c in geometry.CURVE_NAMES]
                                for _, l in films])
    cache["shapes"] = np.array([(h, w)] * len(films))
    cache["scales"] = np.array([(small.shape[1] / w, small.shape[0] / h)] * len(films))
    return cache


def test_cobb_network_learns_a_fixed_batch():
    """Measured: total loss 30.93 at the first step; the mean of the last 5 of 60 steps 12-13
    (about 0.40 x the first; single steps oscillate 9-17 with BatchNorm on a batch of two).
    Bound: mean of the last 5 < 0.6 x the first."""
    from CobbAngleLib.network import Seg4RegNet
    from CobbAngleTools import data as D
    from CobbAngleTools import train as T

    cache = _phantom_cache()
    hw = (128, 64)
    dataset = D.SpineDataset(cache, list(cache["names"][:2]), augment=False, input_hw=hw)
    batch = D.collate([dataset[0], dataset[1]])
    heights = [float(cache["shapes"][i][0]) for i in batch["index"]]
    torch.manual_seed(0)
    model = Seg4RegNet(pretrained=False)
    lr = _default(T.configure_parser, "lr")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    losses = _fit(model, opt, lambda m: T.compute_losses(m(batch["image"]), batch, heights, 1.0)["total"], 60)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses


def test_cobb_cut_films_lose_their_cut_vertebrae_and_no_loss_reaches_them():
    """The cut augmentation (``--cut-share``) blacks the film out beyond a disc; the vertebrae cut
    off are marked not visible, lose their label-mask pixels, and neither their heatmaps nor the
    angles (which belong to the whole spine) get a loss."""
    from CobbAngleLib.network import Seg4RegNet
    from CobbAngleTools import data as D
    from CobbAngleTools import train as T

    cache = _phantom_cache()
    hw = (256, 128)
    dataset = D.SpineDataset(cache, list(cache["names"]), augment=True, input_hw=hw, cut_share=1.0)
    cuts = []
    for seed in range(40):  # the phantom's tilted discs allow a clean cut on about 1 film in 4
        dataset.set_epoch(seed)
        s = dataset[seed % len(dataset)]
        if s.visible.all():
            continue  # the chosen disc was not level enough for a clean cut
        gone = np.flatnonzero(~s.visible)
        top = gone[0] == 0
        assert np.array_equal(gone, np.arange(gone[-1] + 1) if top else np.arange(gone[0], 17))
        assert 1 <= len(gone) <= 5
        assert not np.isin(s.labels, gone + 1).any() and np.isin(s.labels, np.flatnonzero(s.visible) + 1).any()
        rows = np.flatnonzero(s.image.max(1) > 0)  # the film's rows left after the cut
        kept_y = s.landmarks[s.visible][..., 1]
        cut_y = s.landmarks[gone][..., 1]
        if top:
            assert rows.min() > cut_y.max() - 1 and rows.min() <= kept_y.min() + 1
        else:
            assert rows.max() < cut_y.min() + 1 and rows.max() >= kept_y.max() - 1
        cuts.append(s)
    assert len(cuts) >= 4 and {bool(c.visible[0]) for c in cuts} == {True, False}  # cuts at both ends
    batch = D.collate(cuts[:2])
    heights = [float(cache["shapes"][i][0]) for i in batch["index"]]
    torch.manual_seed(0)
    model = Seg4RegNet(pretrained=False)
    out = model(batch["image"])
    out["heatmap"].retain_grad()
    out["angles"].retain_grad()
    losses = T.compute_losses(out, batch, heights, 1.0)
    assert float(losses["regression"].detach()) == 0.0 and float(losses["consistency"].detach()) == 0.0
    losses["total"].backward()
    g = out["heatmap"].grad.abs().flatten(2).sum(-1)  # (B, 17)
    visible = batch["visible"]
    assert torch.all(g[~visible] == 0) and torch.all(g[visible] > 0)
    assert torch.all(out["angles"].grad == 0)


def test_cobb_framing_augmentation_shows_any_level_first_and_shrinks_off_centre():
    """``--framing-share`` (issue 25): a film edge anywhere from the neck to T8 or T11 to the pelvis,
    the vertebrae not wholly on the film not visible (no loss), the film black beyond the edge; and
    films shrunk into a larger canvas, the spine off-centre."""
    from CobbAngleTools import data as D

    cache = _phantom_cache()
    hw = (256, 128)
    plain = D.SpineDataset(cache, list(cache["names"]), augment=True, input_hw=hw)
    framed = D.SpineDataset(cache, list(cache["names"]), augment=True, input_hw=hw, framing_share=1.0)
    first_shown, last_shown, spans, centres = set(), set(), [], []
    for seed in range(80):
        for dataset, collect in ((plain, False), (framed, True)):
            dataset.set_epoch(seed)
            s = dataset[seed % len(dataset)]
            ys = s.landmarks[..., 1]
            if collect:
                rows = np.flatnonzero(s.image.max(1) > 0)  # the rows the film shows
                top, bottom = rows.min(), rows.max()
                shown = np.flatnonzero(s.visible)
                assert len(shown) and np.array_equal(shown, np.arange(shown[0], shown[-1] + 1))
                # every vertebra shown lies wholly on the film; every one not shown reaches beyond its edge
                assert np.all(ys[s.visible] >= top - 1) and np.all(ys[s.visible] <= bottom + 1)
                gone = ~s.visible
                assert np.all((ys[gone].min(1) < top + 1) | (ys[gone].max(1) > bottom - 1))
                assert not np.isin(s.labels, np.flatnonzero(gone) + 1).any()
                first_shown.add(int(shown[0]))
                last_shown.add(int(shown[-1]))
            spans.append((collect, (ys.max() - ys.min()) / hw[0], abs(s.landmarks[..., 0].mean() / hw[1] - 0.5)))
    assert len(first_shown) >= 6 and max(first_shown) >= 5, first_shown  # T1 and at least five other levels first, down to T6 or lower
    assert len(last_shown) >= 5 and min(last_shown) <= 12, last_shown  # L5 and at least four other levels last, up to L1 or higher
    framed_spans = np.array([x[1:] for x in spans if x[0]])
    plain_spans = np.array([x[1:] for x in spans if not x[0]])
    assert framed_spans[:, 0].min() < 0.55 < plain_spans[:, 0].min()  # shrunk films: a shorter spine
    # off-centre: the spine further from the canvas middle (a twentieth of its width more, 9 films in 10)
    assert np.percentile(framed_spans[:, 1], 90) > np.percentile(plain_spans[:, 1], 90) + 0.05


def test_cobb_training_resumes_epoch_and_optimiser(tmp_path, monkeypatch):
    """`mskmorph train cobb --epochs 2` stopped by a crash in epoch 2 (after epoch 1's checkpoint),
    then resumed: the log holds epochs 1 and 2 (not 1, 1, 2), the checkpoint's epoch is 2,
    AdamW's step count is that of two epochs (a fresh optimiser after resume would count one),
    and the weights are those of the same run never interrupted (model, optimiser moments,
    random state and schedule all continued)."""
    from CobbAngleTools import train as T

    cache = _phantom_cache()
    np.savez(tmp_path / "cache.npz", **cache)
    names = [str(n) for n in cache["names"]]
    (tmp_path / "split.json").write_text(json.dumps({"train": names[:2], "validation": names[2:3]}))

    def args(out):
        return ["--data", str(tmp_path), "--out", str(out), "--cache", str(tmp_path / "cache.npz"),
                "--split", str(tmp_path / "split.json"), "--input-height", "128", "--input-width", "64",
                "--batch-size", "2", "--no-pretrained", "--threads", "1", "--device", "cpu", "--epochs", "2"]

    assert T.main(args(tmp_path / "straight")) == 0
    reference = torch.load(tmp_path / "straight" / "last.ckpt", weights_only=True)

    evaluate, calls = T.evaluate, []

    def crash_in_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("stopped during epoch 2")
        return evaluate(*a, **k)

    out = tmp_path / "run"
    monkeypatch.setattr(T, "evaluate", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        T.main(args(out))
    monkeypatch.setattr(T, "evaluate", evaluate)
    first = torch.load(out / "last.ckpt", weights_only=True)
    assert first["state"]["epoch"] == 1 and _adam_steps(first["optimizer"]) == {1}
    assert T.main(args(out) + ["--resume"]) == 0
    saved = torch.load(out / "last.ckpt", weights_only=True)
    assert saved["state"]["epoch"] == 2
    assert _adam_steps(saved["optimizer"]) == {2}  # one step per epoch (two films, batch 2)
    epochs = [json.loads(l)["epoch"] for l in (out / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    for k, v in reference["model"].items():
        assert torch.allclose(saved["model"][k].float(), v.float(), atol=1e-5), k
    for i, s in reference["optimizer"]["state"].items():
        assert torch.allclose(saved["optimizer"]["state"][i]["exp_avg"], s["exp_avg"], atol=1e-6), i


def test_cobb_resume_with_more_epochs_trains_on(tmp_path):
    """`mskmorph train cobb --epochs 1`, then `--resume --epochs 2`: the larger number wins over
    the checkpoint's (the bug: the checkpoint's 1 was kept and nothing more was trained), so the
    checkpoint holds epoch 2, AdamW counts two steps, and the log has epochs 1 and 2; a resume
    without --epochs keeps the checkpoint's number and trains nothing more."""
    from CobbAngleTools import train as T

    cache = _phantom_cache()
    np.savez(tmp_path / "cache.npz", **cache)
    names = [str(n) for n in cache["names"]]
    (tmp_path / "split.json").write_text(json.dumps({"train": names[:2], "validation": names[2:3]}))
    out = tmp_path / "run"
    base = ["--data", str(tmp_path), "--out", str(out), "--cache", str(tmp_path / "cache.npz"),
            "--split", str(tmp_path / "split.json"), "--input-height", "128", "--input-width", "64",
            "--batch-size", "2", "--no-pretrained", "--threads", "1", "--device", "cpu"]
    assert T.main(base + ["--epochs", "1"]) == 0
    assert torch.load(out / "last.ckpt", weights_only=True)["state"]["epoch"] == 1
    assert T.main(base + ["--resume", "--epochs", "2"]) == 0
    saved = torch.load(out / "last.ckpt", weights_only=True)
    assert saved["state"]["epoch"] == 2 and saved["state"]["epochs"] == 2
    assert _adam_steps(saved["optimizer"]) == {2}
    assert T.main(base + ["--resume"]) == 0
    again = torch.load(out / "last.ckpt", weights_only=True)
    assert again["state"]["epoch"] == 2 and _adam_steps(again["optimizer"]) == {2}
    epochs = [json.loads(l)["epoch"] for l in (out / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


# ------------------------------------------------------------------------------------------
# knee: the two KNEEL stages on synthetic films from the shape model


@pytest.mark.parametrize("stage, steps, factor", [
    # measured: detector 103.7 -> 11.3 after 80 steps (0.11 x); landmarks 31.7 -> 12.1 (0.38 x)
    ("detector", 80, 0.3),
    ("landmarks", 80, 0.6),
])
def test_knee_network_learns_a_fixed_batch(stage, steps, factor):
    from KneeLandmarksTools import data as D
    from KneeLandmarksTools import train as T

    size = 64
    source = D.SyntheticSource(roi_size=size, det_size=size, augment=False)
    images, points, present = T._batch(source, stage, np.random.default_rng(0), 4)
    mm_per_px = 400.0 / size if stage == "detector" else D.ROI_PX * D.ROI_SPACING / size
    heatmap_weight = _default(T.configure_parser, "heatmap_weight") if stage == "landmarks" else 0.0
    torch.manual_seed(0)
    model = T.build_model(stage, 8, 2, size)
    opt = torch.optim.AdamW(model.parameters(), lr=_default(T.configure_parser, "lr"), weight_decay=1e-4)
    losses = _fit(model, opt, lambda m: T._loss(m(images), points, present, stage, mm_per_px,
                                                heatmap_weight=heatmap_weight, input_size=size), steps)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < factor * losses[0], losses


def test_knee_training_resumes_step_and_optimiser(tmp_path, monkeypatch):
    """`mskmorph train knee --steps 4` stopped by a crash after the checkpoint of step 2, then
    resumed: the checkpoint's step and AdamW's step count are 4 (a restart would give 2), the
    log continues at 3, 4, and the weights are those of the same run never stopped."""
    from KneeLandmarksTools import train as T

    def args(out, resume=False):
        a = ["--out", str(tmp_path / out), "--stage", "landmarks", "--steps", "4", "--width", "8",
             "--depth", "2", "--size", "64", "--batch-size", "2", "--checkpoint-seconds", "0",
             "--val-batches", "1", "--device", "cpu"] + (["--resume"] if resume else [])
        return T.configure_parser(argparse.ArgumentParser()).parse_args(a)

    assert T.run(args("straight")) == 0
    reference = torch.load(tmp_path / "straight" / "landmarks" / "last.ckpt", weights_only=True)

    validate, calls = T.validate, []

    def crash_at_step_3(*a, **k):  # validation runs before each checkpoint (every step here)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("stopped at step 3")
        return validate(*a, **k)

    monkeypatch.setattr(T, "validate", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        T.run(args("run"))
    monkeypatch.setattr(T, "validate", validate)
    ckpt = tmp_path / "run" / "landmarks" / "last.ckpt"
    first = torch.load(ckpt, weights_only=True)
    assert first["step"] == 2 and _adam_steps(first["optimizer"]) == {2}
    assert T.run(args("run", resume=True)) == 0
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 4
    assert _adam_steps(saved["optimizer"]) == {4}
    steps = [json.loads(l)["step"] for l in (tmp_path / "run" / "landmarks" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    for k, v in reference["model"].items():
        assert torch.allclose(saved["model"][k].float(), v.float(), atol=1e-5), k
    for i, s in reference["optimizer"]["state"].items():
        assert torch.allclose(saved["optimizer"]["state"][i]["exp_avg_sq"], s["exp_avg_sq"], atol=1e-7), i


# ------------------------------------------------------------------------------------------
# back: GAMA-Net on two synthetic back photos


def _back_arrays(n: int) -> dict:
    from SpineMorphologyTools import data as D

    samples = [D.make_sample(D.TRAIN_SEED, i) for i in range(n)]
    return {k: np.stack([s[k] for s in samples]) for k in ("image", "relief", "mask", "keypoints")}


def test_back_network_learns_a_fixed_batch():
    """Measured: total loss about 20 at the first step, 5.24 after 30 steps (about 0.26 x).
    Bound: mean of the last 3 of 30 steps < 0.5 x the first."""
    from SpineMorphologyLib.network import GAMANet
    from SpineMorphologyTools import train as T

    arrays = _back_arrays(2)
    batch = T.to_batch(arrays, np.arange(2), torch)
    torch.manual_seed(0)
    model = GAMANet(pretrained=False)
    lr = _default(T.configure_parser, "lr")
    encoder = [p for n, p in model.named_parameters() if n.startswith(("stem", "blocks"))]
    rest = [p for n, p in model.named_parameters() if not n.startswith(("stem", "blocks"))]
    opt = torch.optim.AdamW([{"params": encoder, "lr": lr * 0.3}, {"params": rest, "lr": lr}], weight_decay=1e-4)
    losses = _fit(model, opt, lambda m: T.losses(m(batch["image"]), batch, torch)[0], 30)
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


def test_back_training_resumes_step_and_optimiser(tmp_path):
    """`mskmorph train back` for 2 steps, then resumed to 3: the checkpoint's step is 3 and
    AdamW's step count 3 (a restart would give 1)."""
    from MSKCommonLib.cli import main

    out = tmp_path / "run"
    base = ["train", "back", "--out", str(out), "--n-train", "4", "--n-val", "2", "--batch", "2",
            "--workers", "1", "--no-pretrained", "--device", "cpu"]
    assert main(base + ["--max-steps", "2"]) == 0
    first = torch.load(out / "last.pt", weights_only=True)
    assert first["step"] == 2 and _adam_steps(first["optimizer"]) == {2}
    assert main(base + ["--max-steps", "3", "--resume"]) == 0
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["step"] == 3
    assert _adam_steps(saved["optimizer"]) == {3}
    lines = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
    assert [l["step"] for l in lines if l["event"] == "final"] == [2, 3]
