"""Where the Cobb angle's error comes from: one part of the prediction replaced by the truth at a time.

    python -m CobbAngleTools.decompose --run ~/mskmorph-runs/vertebrae [--weights W.pt]

On the validation films (stage 1's corners as cached by ``train_vertebrae``, the films read again
for the patches at the true vertebrae), the organisers' SMAPE (official labels) and the endplate
tilt error (fixed labels) of:

* stage 1 alone, and stage 1 -> stage 2 (the product);
* stage 2 read at the true vertebrae (the patches placed from the true corners): what better
  centres, axes and sizes from stage 1 could still give;
* the product's centres with each vertebra's true shape and tilt (what perfect endplates give);
* the true centres with the product's shape and tilt (what perfect centres give).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from CobbAngleLib.frame import intensity_window
from CobbAngleLib.vertebra_patch import extract_patches, patch_frames, to_film

from .train_vertebrae import load_model, score


def with_shapes_of(centres_from: np.ndarray, shapes_from: np.ndarray) -> np.ndarray:
    """(films, 17, 4, 2): each vertebra's corners of ``shapes_from`` moved onto the centre of ``centres_from``."""
    return shapes_from - shapes_from.mean(axis=2, keepdims=True) + centres_from.mean(axis=2, keepdims=True)


def run(args) -> int:
    import torch

    from CobbAngleLib.vertebra_read import on_film, read_patches

    run_dir = Path(args.run).expanduser()
    with np.load(run_dir / "validation_stage1.npz") as z:
        val = {k: z[k] for k in z.files}
    model = load_model(Path(args.weights) if args.weights else run_dir / "cobb_vertebra.pt").eval()
    flip = bool(args.flip) if args.flip is not None else bool(model.config.get("test_time_flip", False))

    def network(x):
        with torch.no_grad():
            out = model(torch.from_numpy(x))
        return {k: out[k].numpy() for k in ("corners", "endplate_scale_deg")}

    product, at_truth = [], []
    for name, stage1, patches, fixed in zip(val["names"], val["stage1"], val["patches"], val["fixed"]):
        corners, _ = read_patches(network, patches.astype(np.float32) / 255.0, flip)
        product.append(on_film(stage1, patch_frames(stage1), corners))
        film = cv2.imread(str(Path(args.data) / "images" / str(name)), cv2.IMREAD_GRAYSCALE)
        frames = patch_frames(fixed)
        corners, _ = read_patches(network, extract_patches(intensity_window(film), frames), flip)
        at_truth.append(to_film(frames, corners))  # no stage 1 here to fall back on
    product, at_truth = np.array(product), np.array(at_truth)
    rows = {
        "stage 1 alone": val["stage1"],
        "stage 1 -> stage 2 (the product)": product,
        "stage 2 at the true vertebrae": at_truth,
        "product centres, true shape and tilt": with_shapes_of(product, val["official"]),
        "true centres, product shape and tilt": with_shapes_of(val["official"], product),
    }
    table = {label: score(lm, val) for label, lm in rows.items()}
    print(f"{len(val['names'])} validation films; test-time flip {flip}")
    print(f"{'variant':42} {'SMAPE off.':>10} {'fixed':>6} {'MAE PT/MT/TL_L':>20} {'tilt RMS':>8} {'median':>6} {'p90':>6}")
    for label, s in table.items():
        print(f"{label:42} {s['smape_official']:10.2f} {s['smape_fixed']:6.2f} "
              f"{s['mae_PT']:6.2f}/{s['mae_MT']:5.2f}/{s['mae_TL_L']:5.2f} {s['tilt_rms']:8.2f} "
              f"{s['tilt_median']:6.2f} {s['tilt_p90']:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    return 0


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from MSKCommonTools import shared_data

    parser.add_argument("--run", required=True, help="the train_vertebrae run folder (validation_stage1.npz)")
    parser.add_argument("--weights", default=None, help="stage 2 weights (default: RUN/cobb_vertebra.pt)")
    parser.add_argument("--data", default=str(shared_data() / "aasce2019-train"))
    parser.add_argument("--flip", action="store_true", default=None,
                        help="test-time flip in stage 2 (default: as the weights' config says)")
    parser.add_argument("--json", default=None, help="also write the table here")
    return parser


def main(argv=None) -> int:
    return run(configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.decompose")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
