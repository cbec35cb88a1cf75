"""Speed and memory of the Cobb measurement, end to end (read the film -> networks -> geometry).

    mskmorph bench cobb [IMAGES_OR_FOLDERS ...] [--limit 20] [--weights W] [--devices cpu,cuda]
    mskmorph bench cobb --full-spine N [--full-spine-seed S]   (T1/L5 named right on full-spine phantoms)
    python -m CobbAngleTools.bench ...

Without inputs it uses the AASCE validation films of the fixed split from ``../shared/data``.
Prints a table: device, films, median / max seconds per film, peak memory (process RSS on the
CPU; ``torch.cuda.max_memory_allocated`` on a GPU).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from MSKCommonTools import shared_data

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".nrrd", ".nii", ".mha"}
SHARED_AASCE = shared_data() / "aasce2019-train"


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("inputs", nargs="*", help="radiograph files or folders (default: AASCE validation films)")
    parser.add_argument("--weights", default=None, help="weights file (default: the packaged model)")
    parser.add_argument("--level-weights", default=None, metavar="FILE",
                        help="the level network's weights (names by anatomy; default: the packaged ones when "
                             "shipped); a .pt reads with --backend torch unless its .onnx lies beside it")
    parser.add_argument("--devices", default=None,
                        help="comma-separated devices to time (default: cpu, plus cuda / mps when present)")
    parser.add_argument("--limit", type=int, default=20, help="at most this many films")
    parser.add_argument("--flip", action="store_true", help="also read the mirrored film and average (test-time flip)")
    parser.add_argument("--decoding", default="ordered", choices=["ordered", "chain", "plain"],
                        help="how the vertebrae are read from the heatmaps: ordered (the default: found without "
                             "names, then named in order from T1), chain (each heatmap's peak chosen jointly along "
                             "the spine, the default before 2026-12-02) or plain (each heatmap's own maximum)")
    parser.add_argument("--accuracy", action="store_true",
                        help="also score films that have AASCE labels (labels/<name>.mat beside images/): "
                             "SMAPE, MAE per angle, corner error in pixels, share flagged by the consistency check, "
                             "vertebra identity errors (a vertebra nearer another's true centre than its own, or missing), "
                             "each on the official labels and on the fixed ones (CobbAngleTools/label_fixes.json); "
                             "Dice per vertebra of the segments against the true corner quadrilaterals and the share "
                             "in one piece; Bland-Altman 95 %% limits of agreement per angle")
    parser.add_argument("--framings", action="store_true",
                        help="also measure the labelled films framed four ways (as stored, cut 0.3 vertebra heights "
                             "above T1, cut below L5, shrunk on a larger canvas; CobbAngleTools.framing): vertebrae "
                             "misnamed, films shifted a level as a whole, names kept across framings")
    parser.add_argument("--named-levels", default="", metavar="T1,T12",
                        help="with --accuracy, --framings or --full-spine: a reader names these vertebrae (at their true "
                             "centres; the fixed labels with --accuracy) and the network counts from them "
                             "(mskmorph cobb --named)")
    parser.add_argument("--full-spine", type=int, default=0, metavar="N",
                        help="render N full-spine phantoms (C1 to the pelvis, `mskmorph phantom spine --field full`) "
                             "and report how often T1 and L5 are named right (CobbAngleTools.full_spine)")
    parser.add_argument("--full-spine-seed", type=int, default=0, metavar="S",
                        help="first seed of the full-spine phantoms (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--plots", default="cobb-accuracy-plots", metavar="DIR",
                        help="with --accuracy: Bland-Altman and predicted-vs-true PNGs per angle go here "
                             "(default ./cobb-accuracy-plots; '' for none)")
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"), help="network runtime (default onnx)")
    repeat = parser.add_argument_group("test-retest (CobbAngleTools.repeatability)")
    repeat.add_argument("--repeatability", action="store_true",
                        help="instead of timing: read each film as stored and re-acquired (turned, rescaled, another "
                             "exposure and crop, MONOCHROME1 DICOM) and print the within-film SD and the smallest "
                             "detectable change per curve, and the films whose readings span more than 10 deg")
    repeat.add_argument("--repeats", type=int, default=5, help="readings per film, the stored one included (default 5)")
    repeat.add_argument("--seed", type=int, default=0, help="seed of the re-acquisitions (default 0)")
    repeat.add_argument("--repeatability-json", default=None, metavar="FILE",
                        help="write the figures here (default: the package's models/cobb_repeatability.json, which "
                             "mskmorph compare reads for the interval of a change; '' for none)")
    return parser


def read_pixels(path: Path) -> np.ndarray:
    """The film's gray pixels as every front end reads them (``MSKCommonLib.image.read_image``)."""
    from MSKCommonLib.image import read_image

    return read_image(path).pixels


def identity_errors(predicted, truth) -> dict:
    """Vertebrae whose identity is wrong: a predicted vertebra whose centre lies nearer another
    vertebra's true centre than its own, or one that is missing (not finite). A doubled vertebra
    (two predictions on one vertebra) and a skipped one (the chain shifts by a level) both count.
    Returns the count, the share of the 17 and the names."""
    from CobbAngleLib import geometry

    p = np.asarray(predicted, float).reshape(17, 4, 2).mean(axis=1)
    t = np.asarray(truth, float).reshape(17, 4, 2).mean(axis=1)
    wrong = []
    for i in range(17):
        if not np.all(np.isfinite(p[i])):
            wrong.append(i)
            continue
        d = np.linalg.norm(t - p[i], axis=1)
        d[~np.all(np.isfinite(t), axis=1)] = np.inf
        if int(np.argmin(d)) != i:
            wrong.append(i)
    return {"count": len(wrong), "share": len(wrong) / 17, "vertebrae": [geometry.VERTEBRA_NAMES[i] for i in wrong]}


def find_inputs(inputs: list[str], limit: int) -> list[Path]:
    files: list[Path] = []
    if not inputs:
        if not SHARED_AASCE.is_dir():
            raise SystemExit("no inputs given and the shared AASCE data is not present; pass image files")
        from .data import read_split

        files = [SHARED_AASCE / "images" / n for n in read_split()["validation"]]
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            files.append(p)
        else:
            raise SystemExit(f"not found: {p}")
    return files[:limit]


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def aasce_labels(film: Path):
    """(landmarks (17, 4, 2), height) from an AASCE labels/<name>.mat beside images/, else None."""
    mat = film.parent.parent / "labels" / (film.name + ".mat")
    if not mat.is_file():
        return None
    from scipy.io import loadmat

    return np.asarray(loadmat(str(mat))["p2"], dtype=np.float64).reshape(17, 4, 2)


def accuracy(records: list, labels: str = "official") -> dict:
    from CobbAngleLib import geometry

    from .agreement import limits_of_agreement

    names = geometry.CURVE_NAMES
    records = [{**r, "truth": r["truth_" + labels], "landmarks": r["landmarks_" + labels]} for r in records]
    truth = np.array([[r["truth"][c] for c in names] for r in records])
    lm = np.array([[r["pred"].landmark_angles[c] for c in names] for r in records], dtype=np.float64)
    reg = np.array([[r["pred"].regressed_angles[c] for c in names] for r in records])
    # corners of the vertebrae shown (a vertebra named off the film is NaN: counted below as not shown)
    err = [np.nanmean(np.linalg.norm(r["pred"].landmarks - r["landmarks"], axis=-1)) for r in records]
    identity = [identity_errors(r["pred"].landmarks, r["landmarks"])["count"] for r in records]
    out = {"films": len(records), "smape_landmarks": geometry.smape(truth, lm),
           "smape_regression": geometry.smape(truth, reg), "smape_mean": geometry.smape(truth, (lm + reg) / 2),
           "corner_error_px_mean": float(np.nanmean(err)), "corner_error_px_median": float(np.nanmedian(err)),
           "vertebrae_not_shown": int(sum(np.isnan(r["pred"].landmarks).any(axis=(1, 2)).sum() for r in records)),
           "films_not_measured": int(np.count_nonzero(np.isnan(lm).any(axis=1))),
           "flagged_share": float(np.mean([r["pred"].consistency_warning is not None for r in records])),
           "identity_errors_share_of_vertebrae": float(np.sum(identity) / (17 * len(records))),
           "films_with_identity_errors": int(np.count_nonzero(identity))}
    out.update(check_figures(records, truth, lm, reg))
    out.update(stage_figures(records, truth))
    for j, c in enumerate(names):
        out[f"mae_{c}_landmarks"] = float(np.mean(np.abs(lm[:, j] - truth[:, j])))
        out[f"mae_{c}_regression"] = float(np.mean(np.abs(reg[:, j] - truth[:, j])))
    for j, c in enumerate(names):
        loa = limits_of_agreement(truth[:, j], lm[:, j])
        out[f"loa_{c}_lower"], out[f"loa_{c}_upper"] = loa["lower"], loa["upper"]
    return out


def stage_figures(records: list, truth: np.ndarray) -> dict:
    """Per stage of the cascade (stage 1: the whole-film network's corners; stage 2: each vertebra
    read again from the film's own pixels, when it ran): SMAPE and the endplate tilt error
    (superior and inferior endplates against the labels: RMS, median, 90th percentile, degrees)."""
    from CobbAngleLib import geometry
    from CobbAngleLib.predict import aasce_angles

    from .train_vertebrae import tilt_errors

    stages = {"stage1": [r["pred"].stage1_landmarks if r["pred"].stage1_landmarks is not None else r["pred"].landmarks
                         for r in records]}
    if any(r["pred"].endplate_scale_deg is not None for r in records):
        stages["stage2"] = [r["pred"].landmarks for r in records]
    out = {}
    for stage, landmarks in stages.items():
        angles = np.array([[aasce_angles(lm, float(r["height"]))[c] for c in geometry.CURVE_NAMES]
                           for lm, r in zip(landmarks, records)], dtype=np.float64)
        out[f"{stage}_smape"] = geometry.smape(truth, angles)  # an angle not measured is a miss
        e = tilt_errors(np.array(landmarks), np.array([r["landmarks"] for r in records]))
        e = e[np.isfinite(e)]  # the vertebrae shown
        out[f"{stage}_tilt_rms"] = float(np.sqrt(np.mean(e ** 2)))
        out[f"{stage}_tilt_median"] = float(np.median(e))
        out[f"{stage}_tilt_p90"] = float(np.percentile(e, 90))
    return out


def check_figures(records: list, truth: np.ndarray, lm: np.ndarray, reg: np.ndarray) -> dict:
    """The CHECK (the prediction's ``check``) and the old rule (regression and landmark angles more
    than 10 deg apart): the share of films flagged and the share of the films with an angle off by
    more than 10 deg that are flagged, overall (a film is flagged when any angle is) and per angle
    (the angle's own flag, among the films where that angle is off). An angle not measured counts as
    off and flagged."""
    from CobbAngleLib import geometry

    names = geometry.CURVE_NAMES
    with np.errstate(invalid="ignore"):
        off = ~(np.abs(lm - truth) <= 10.0)
        old = ~(np.abs(reg - lm) <= 10.0)
    new = np.array([[bool(r["pred"].check.get(c, True)) for c in names] for r in records])
    out = {}
    for rule, flags in (("check", new), ("old_rule", old)):
        bad = off.any(1)
        out[f"{rule}_flagged_share"] = float(flags.any(1).mean())
        out[f"{rule}_catch_share"] = float(flags.any(1)[bad].mean()) if bad.any() else float("nan")
        out[f"{rule}_films_off"] = int(bad.sum())
        for j, c in enumerate(names):
            out[f"{rule}_{c}_flagged_share"] = float(flags[:, j].mean())
            out[f"{rule}_{c}_catch_share"] = float(flags[off[:, j], j].mean()) if off[:, j].any() else float("nan")
            out[f"{rule}_{c}_off"] = int(off[:, j].sum())
    return out


def segmentation_scores(records: list) -> dict:
    """Mean Dice per vertebra against the true (fixed) corner quadrilaterals and the share of segments
    in one piece: for the segments shown (drawn from the predicted corners) and, for comparison, the
    network's segmentation head."""
    out = {}
    for kind in ("drawn", "head"):
        dice = np.concatenate([r[f"dice_{kind}"] for r in records])
        pieces = np.concatenate([r[f"pieces_{kind}"] for r in records])
        present = pieces > 0
        out[f"segments_{kind}_dice_mean"] = float(np.nanmean(dice))
        out[f"segments_{kind}_one_piece_share"] = float(np.mean(pieces[present] == 1)) if present.any() else 0.0
        out[f"segments_{kind}_missing"] = int(np.count_nonzero(~present))
    return out


def reader_names(film: Path, levels) -> list:
    """[(name, x, y)] of ``levels`` (e.g. ("T1", "T12")) at their true centres on a labelled film
    (the fixed labels): what a reader who named them would give; [] without labels or levels."""
    official = aasce_labels(film) if levels else None
    if official is None:
        return []
    from CobbAngleLib.geometry import VERTEBRA_NAMES

    from .label_check import fixed_landmarks

    fixed = fixed_landmarks(film.name, official, "fixed")
    return [(n, *fixed[VERTEBRA_NAMES.index(n)].mean(axis=0)) for n in levels]


def score_film(film: Path, pred, shape) -> Optional[dict]:
    """The truth on both label sets and the segment scores of one film, or None without AASCE labels."""
    from CobbAngleLib import geometry
    from CobbAngleLib.segments import dice_per_vertebra, pieces_per_segment, vertebra_labelmap

    from .data import vertebra_label_mask
    from .label_check import fixed_landmarks

    official = aasce_labels(film)
    if official is None:
        return None
    fixed = fixed_landmarks(film.name, official, "fixed")
    record = {"pred": pred, "name": film.name, "height": shape[0]}
    for labels, lm in (("official", official), ("fixed", fixed)):
        record["landmarks_" + labels] = lm
        # the truth as the organisers compute it from the label files, vertebrae in any order (18
        # official files store the top vertebra last; the fixed set keeps 13 suspect films as annotated)
        record["truth_" + labels] = geometry.cobb_angles(lm, "aasce", shape[0], check_order=False).angles
    reference = vertebra_label_mask(fixed, shape)
    drawn = vertebra_labelmap(pred.landmarks, shape)
    for kind, labels in (("drawn", drawn), ("head", pred.vertebra_labelmap)):
        record[f"dice_{kind}"] = dice_per_vertebra(labels, reference)
        record[f"pieces_{kind}"] = np.array(pieces_per_segment(labels))
    return record


def bench_device(device: str, files: list[Path], weights, flip: bool = True, score: bool = False,
                 decoding: str = "ordered", backend: str = "onnx", level_weights=None, named_levels=()) -> dict:
    import torch

    from CobbAngleLib import geometry
    from CobbAngleLib.predict import CobbPredictor

    predictor = CobbPredictor(weights, device=device, test_time_flip=flip, decoding=decoding,
                              threads=torch.get_num_threads(), backend=backend, level_weights=level_weights)
    records = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    predictor.predict(read_pixels(files[0]))  # warm-up (allocations, kernels)
    seconds, network_seconds = [], []
    for f in files:
        t = time.perf_counter()
        pixels = read_pixels(f)
        named = reader_names(f, named_levels)
        pred = predictor.predict(pixels, named=named) if named else predictor.predict(pixels)
        try:  # what a result does: measure, or say why not
            geometry.cobb_angles(pred.landmarks, "clinical")
        except geometry.LandmarkError:
            pass
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
        network_seconds.append(pred.seconds)  # the predictor alone: both stages, decoding and the CHECK's features
        record = score_film(f, pred, pixels.shape) if score else None
        if record is not None:
            records.append(record)
    memory = (torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else peak_rss_mb()
    return {"device": device, "films": len(files), "median_s": statistics.median(seconds), "max_s": max(seconds),
            "network_median_s": statistics.median(network_seconds),
            "memory_mb": memory, "memory_kind": "GPU peak allocated" if device.startswith("cuda") else "peak RSS",
            "accuracy": {labels: accuracy(records, labels) for labels in ("official", "fixed")} if records else None,
            "segmentation": segmentation_scores(records) if records else None, "records": records}


def run(args) -> int:
    if getattr(args, "repeatability", False):
        return run_repeatability(args)
    if getattr(args, "full_spine", 0):
        return run_full_spine(args)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    files = find_inputs(args.inputs, args.limit)
    if not files:
        print("no radiographs found", file=sys.stderr)
        return 2
    if args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    elif args.backend == "onnx":
        from MSKCommonLib.runtime import onnx_providers

        devices = ["cpu"] + (["cuda"] if onnx_providers("auto")[1] == "cuda" else [])
    else:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            devices.append("mps")
    rows = [bench_device(d, files, args.weights, args.flip, args.accuracy, args.decoding, args.backend, args.level_weights,
                         named_levels(args) if args.accuracy else ())
            for d in devices]
    if args.accuracy and named_levels(args):
        print(f"the reader named {', '.join(named_levels(args))} at their true centres (fixed labels) on every film")
    print(f"{'device':8} {'films':>5} {'median s':>9} {'max s':>7} {'memory MB':>10}  memory")
    for r in rows:
        print(f"{r['device']:8} {r['films']:5d} {r['median_s']:9.3f} {r['max_s']:7.3f} {r['memory_mb']:10.0f}  {r['memory_kind']}")
    for r in rows:
        print(f"network path on {r['device']} (the predictor: stage 1, stage 2, decoding, the CHECK's features; "
              f"no file reading): median {r['network_median_s']:.3f} s per film")
    print(f"torch threads: {torch.get_num_threads()}; test-time flip: {args.flip}")
    from CobbAngleLib import geometry

    for r in rows:
        if not r["accuracy"]:
            continue
        for labels, acc in r["accuracy"].items():
            print(f"accuracy on {r['device']}, {labels} labels: " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in acc.items()))
        for labels, acc in r["accuracy"].items():
            for stage, title in (("stage1", "stage 1 (whole film)"), ("stage2", "stage 2 (each vertebra, film resolution)")):
                if f"{stage}_smape" in acc:
                    print(f"{title}, {labels} labels: SMAPE {acc[f'{stage}_smape']:.2f}, endplate tilt error RMS "
                          f"{acc[f'{stage}_tilt_rms']:.2f} deg, median {acc[f'{stage}_tilt_median']:.2f}, 90th percentile "
                          f"{acc[f'{stage}_tilt_p90']:.2f}")
        for labels, acc in r["accuracy"].items():
            for rule, title in (("check", "CHECK"), ("old_rule", "old rule (regression vs landmarks > 10 deg)")):
                print(f"{title} on {r['device']}, {labels} labels: {acc[rule + '_flagged_share']:.1%} of "
                      f"{acc['films']} films flagged, {acc[rule + '_catch_share']:.1%} of the {acc[rule + '_films_off']} "
                      "films with an angle off by > 10 deg flagged; per angle (flagged, off caught): " + ", ".join(
                          f"{c} {acc[f'{rule}_{c}_flagged_share']:.1%}, {acc[f'{rule}_{c}_catch_share']:.1%} of "
                          f"{acc[f'{rule}_{c}_off']}" for c in geometry.CURVE_NAMES))
        for labels, acc in r["accuracy"].items():
            print(f"Bland-Altman 95 % limits of agreement (landmark angles - truth, deg), {labels} labels: " + ", ".join(
                f"{c} {acc[f'loa_{c}_lower']:+.1f} .. {acc[f'loa_{c}_upper']:+.1f}" for c in geometry.CURVE_NAMES))
        print(f"segments on {r['device']} (Dice per vertebra against the true corner quadrilaterals, fixed labels): "
              + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["segmentation"].items()))
    if args.framings:
        print_framings(files, args)
    scored = next((r for r in rows if r["accuracy"]), None)
    if scored is not None and args.plots:
        from .agreement import draw_agreement

        names = geometry.CURVE_NAMES
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        with open(Path(args.plots) / "angles.csv", "w") as table:  # the plotted numbers, one film a row
            table.write("film," + ",".join(f"{c}_{k}" for k in ("official", "fixed", "measured") for c in names) + "\n")
            for x in scored["records"]:
                values = [x[f"truth_{k}"][c] for k in ("official", "fixed") for c in names]
                values += [x["pred"].landmark_angles[c] for c in names]
                table.write(f'"{x["name"]}",' + ",".join("" if v is None else f"{v:.3f}" for v in values) + "\n")
        for labels in ("official", "fixed"):
            truth = np.array([[x["truth_" + labels][c] for c in names] for x in scored["records"]])
            measured = np.array([[x["pred"].landmark_angles[c] for c in names] for x in scored["records"]])
            for j, c in enumerate(names):
                draw_agreement(truth[:, j], measured[:, j], f"{c}_{labels}",
                               f"{c}, {labels} labels", Path(args.plots))
        print(f"plots: {Path(args.plots).resolve()}")
    return 0


def run_full_spine(args) -> int:
    """``--full-spine N``: T1 and L5 named right on full-spine phantoms (``full_spine.print_full_spine``)."""
    from CobbAngleLib.predict import CobbPredictor

    from .full_spine import print_full_spine

    if args.full_spine < 1:
        raise SystemExit("--full-spine needs at least 1 film")
    device = (args.devices or "cpu").split(",")[0]
    predictor = CobbPredictor(args.weights, device=device, decoding=args.decoding, backend=args.backend,
                              level_weights=args.level_weights)
    levels = named_levels(args)
    print_full_spine(args.full_spine, args.full_spine_seed, lambda px, named: predictor.predict(px, named=named).landmarks,
                     levels)
    return 0


def run_repeatability(args) -> int:
    from .repeatability import REPEATABILITY_FILE, print_summary, run_repeatability as measure

    files = find_inputs(args.inputs, args.limit)
    if not files:
        print("no radiographs found", file=sys.stderr)
        return 2
    out = REPEATABILITY_FILE if args.repeatability_json is None else (Path(args.repeatability_json)
                                                                     if args.repeatability_json else None)
    command = "mskmorph bench cobb --repeatability" + "".join(
        f" {flag} {value}" for flag, value in (("--limit", args.limit), ("--repeats", args.repeats),
                                               ("--seed", args.seed)))
    if args.inputs:
        command += " " + " ".join(args.inputs)
    device = (args.devices or "cpu").split(",")[0]
    result = measure(files, args.repeats, args.seed, device, args.backend, args.weights, out, command)
    print_summary(result)
    if out is not None:
        print(f"written: {out}")
    return 0


def named_levels(args) -> tuple:
    """``--named-levels T1,T12`` -> ("T1", "T12")."""
    return tuple(n.strip().upper() for n in (args.named_levels or "").split(",") if n.strip())


def print_framings(files: list, args) -> None:
    """The framing figures (``framing.framing_figures``) of the labelled films among ``files``."""
    from CobbAngleLib.predict import CobbPredictor

    from .framing import framing_figures

    predictor = CobbPredictor(args.weights, device="cpu", decoding=args.decoding, backend=args.backend,
                              level_weights=args.level_weights)
    films = [(f.name, read_pixels(f), aasce_labels(f)) for f in files]
    films = [x for x in films if x[2] is not None]
    if not films:
        print("framings: no labelled films")
        return
    levels = named_levels(args)
    figures = framing_figures(films, lambda px, named: predictor.predict(px, named=named).landmarks, levels)
    if levels:
        print(f"framings with {', '.join(levels)} named by the reader at their true centres:")
    for framing, row in figures["framings"].items():
        print(f"framing {framing:13}: {row['misnamed_share']:.1%} of vertebrae misnamed, {row['films_shifted']} of "
              f"{row['films']} films shifted a level as a whole")
    print(f"names kept across the four framings: {figures['same_name_share']:.1%} of vertebrae")


def main(argv=None) -> int:
    return run(configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.bench")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
