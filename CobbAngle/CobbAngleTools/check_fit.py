"""Fit the CHECK (``CobbAngleLib.check``) on out-of-sample predictions and write ``models/cobb_check.json``.

    mskmorph check cobb-fit [--data ../shared/data/aasce2019-train] [--folds 5] [--features FILE]
    python -m CobbAngleTools.check_fit ...

1. The shipped cascade (ONNX Runtime: stage 1, stage 2 when shipped, the default decoding, the
   mirrored film read too) runs on the VALIDATION films of ``cobb_split.json``: no network was
   trained on them, so their errors are the errors a new film gets. The training films are
   refused (``out_of_sample``): on them the networks rarely err, and a CHECK fitted there learns
   nothing about the films it has to flag (the first CHECK, fitted there, caught 40 % of the
   validation films off by > 10 deg). Per film and angle it keeps the CHECK features, the landmark
   angle and the truth (official labels, AASCE convention), cached in ``--features`` (re-used when
   read with the same weights).
2. A logistic regression per angle (L2, features standardised) predicts "within 10 deg of the
   truth". Out-of-fold confidences come from k-fold cross-validation across those films, grouped by
   patient: the figures reported are these out-of-fold ones.
3. The threshold (one for the three angles; a film is flagged when any angle's confidence is
   below it) is chosen on the out-of-fold confidences by ``choose_threshold``: the largest share
   of the films with an angle off by > 10 deg that are flagged, with at most ``MAX_FLAGGED`` of the
   films flagged (ties: the fewest flagged).
4. Done for each feature set of ``CANDIDATES``; the set that catches the most films in
   cross-validation is kept (ties: the fewest flagged, then the simpler set).
5. The final models are fitted on all those films; the JSON holds the coefficients, the scaling,
   the threshold, the networks' sha256, the films it was fitted on and the CV figures.

Re-run it whenever the network weights change (the runtime falls back to the old rule otherwise).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

from CobbAngleLib.check import FEATURES

MAX_FLAGGED = 0.25
# the feature sets compared by cross-validation, simplest first (CobbAngleLib.check.FEATURES); the
# mirrored film (flip_gap) costs one more network call per film and is kept only where it wins
CANDIDATES = {
    "regression gap": ("regression_gap",),
    "stage 2's endplate scale": ("endplate_scale",),
    "endplate scale, stage gap": ("endplate_scale", "stage_gap"),
    "endplate scale, stage gap, regression gap": ("endplate_scale", "stage_gap", "regression_gap"),
    "endplate scale, stage gap, regression gap, end sharpness": ("endplate_scale", "stage_gap", "regression_gap",
                                                                 "end_sharpness"),
    "regression gap, end sharpness, decoding gap": ("regression_gap", "end_sharpness", "decoding_gap"),
    "the same and the mirrored film": ("regression_gap", "end_sharpness", "decoding_gap", "flip_gap"),
    "all but the mirrored film": tuple(f for f in FEATURES if f != "flip_gap"),
    "all": FEATURES,
}
DEFAULT_FEATURES = Path("cobb-check-features.json")


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from MSKCommonTools import shared_data

    parser.add_argument("--data", default=str(shared_data() / "aasce2019-train"),
                        help="AASCE folder (images/, labels/); default ../shared/data/aasce2019-train")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (grouped by patient)")
    parser.add_argument("--features", default=str(DEFAULT_FEATURES), metavar="FILE",
                        help="cache of the films' features (read when it matches the weights, else written)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N training films (a quick try)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="where to write the CHECK (default: CobbAngleLib/models/cobb_check.json)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime CPU threads")
    parser.add_argument("--device", default="cpu", help="network device")
    return parser


# --------------------------------------------------------------------------------------------
# the model and the threshold rule (numpy; tested on constructed features)

def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> dict:
    """Logistic regression P(y=1 | x) by Newton's method with an L2 penalty ``l2`` on the
    coefficients of the standardised features (not on the intercept)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -40, 40)))
        grad = z.T @ (p - y) + penalty * beta
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": beta[1:].tolist(), "intercept": float(beta[0])}


def predict_logistic(model: dict, x: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float64) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return 1.0 / (1.0 + np.exp(-np.clip(z @ np.asarray(model["coef"]) + model["intercept"], -40, 40)))


def film_figures(confidence: np.ndarray, off: np.ndarray, threshold: float) -> dict:
    """Films flagged (any angle's confidence below ``threshold``) and caught. confidence, off:
    (films, angles); off = the angle's error is larger than 10 deg."""
    flagged_angle = confidence < threshold
    flagged = flagged_angle.any(1)
    bad = off.any(1)
    out = {"films": int(len(off)), "flagged": int(flagged.sum()), "flagged_share": float(flagged.mean()),
           "films_off": int(bad.sum()), "films_off_flagged": int((flagged & bad).sum()),
           "catch_rate": float((flagged & bad).sum() / bad.sum()) if bad.any() else float("nan")}
    return out


def choose_threshold(confidence: np.ndarray, off: np.ndarray, max_flagged: float = MAX_FLAGGED) -> tuple[float, dict]:
    """The threshold with the largest catch rate of films with an angle off among those flagging at
    most ``max_flagged`` of the films; ties: the fewest films flagged, then the lower threshold.
    Candidates: 0, and each film's smallest confidence nudged up (a film is flagged when its
    smallest confidence is below the threshold)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    off = np.asarray(off, dtype=bool)
    film_min = np.sort(np.unique(confidence.min(1)))
    candidates = np.concatenate([[0.0], np.nextafter(film_min, np.inf)])
    best, best_key = 0.0, None
    for t in candidates:
        f = film_figures(confidence, off, float(t))
        if f["flagged_share"] > max_flagged + 1e-12:
            continue
        key = (np.nan_to_num(f["catch_rate"]), -f["flagged"], -t)
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best, film_figures(confidence, off, best)


def folds_by_patient(names: list[str], k: int, seed: int = 14) -> np.ndarray:
    """Fold index per film; a patient's films share a fold."""
    from .data import patient_of

    patients = sorted({patient_of(n) for n in names})
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[i]: j % k for j, i in enumerate(order)}
    return np.array([fold_of[patient_of(n)] for n in names])


def design(records: list, angle: str, features) -> np.ndarray:
    from CobbAngleLib.check import transformed

    return np.array([transformed(r["features"][angle], features) for r in records])


def cross_validate(records: list, features, folds: np.ndarray, angles) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold confidences, off) (films, angles); an unmeasured angle counts as confidence 0."""
    conf = np.zeros((len(records), len(angles)))
    off = np.array([[r["error"][a] is None or r["error"][a] > 10.0 for a in angles] for r in records])
    for j, a in enumerate(angles):
        ok = np.array([r["features"][a] is not None for r in records])
        x = np.zeros((len(records), len(features)))
        x[ok] = design([r for r, o in zip(records, ok) if o], a, features)
        y = ~off[:, j]
        for k in np.unique(folds):
            train, test = ok & (folds != k), ok & (folds == k)
            if test.any():
                conf[test, j] = predict_logistic(fit_logistic(x[train], y[train]), x[test])
    return conf, off


# --------------------------------------------------------------------------------------------
# the films

def out_of_sample(names: list[str], split: dict) -> list[str]:
    """``names`` when none of them is a film the networks were trained on (the split's training
    films); else a ValueError naming them."""
    inside = sorted(set(names) & set(split["train"]))
    if inside:
        raise ValueError(f"the CHECK is fitted on out-of-sample predictions only; {len(inside)} of these films trained "
                         f"the networks: {', '.join(inside[:5])}{' ...' if len(inside) > 5 else ''}")
    return list(names)


def read_features(data: Path, names: list[str], device: str, threads: int, predictor=None) -> list:
    from CobbAngleLib import geometry
    from CobbAngleLib.predict import CobbPredictor

    from .bench import read_pixels
    from .data import read_landmarks

    predictor = predictor or CobbPredictor(device=device, threads=threads, read_mirrored=True,
                                           check_file=Path("/nonexistent"), all_check_features=True)
    records = []
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        pixels = read_pixels(data / "images" / name)
        pred = predictor.predict(pixels)
        truth = geometry.cobb_angles(read_landmarks(data, name, "official"), "aasce", pixels.shape[0],
                                     check_order=False).angles
        error = {a: None if pred.landmark_angles[a] is None else abs(pred.landmark_angles[a] - truth[a])
                 for a in geometry.CURVE_NAMES}
        records.append({"name": name, "features": pred.check_features, "angles": pred.landmark_angles,
                        "truth": truth, "error": error, "height": int(pixels.shape[0]),
                        "landmarks": np.round(pred.landmarks, 2).tolist(), "seconds": pred.seconds,
                        "old_rule": {a: bool(f is not None and f["regression_gap"] > 10.0)
                                     for a, f in pred.check_features.items()}})
        if (i + 1) % 25 == 0:
            print(f"  {i + 1} of {len(names)} films read ({(time.perf_counter() - t0) / (i + 1):.1f} s a film)", flush=True)
    return records


def weights_hashes(predictor) -> dict:
    """The networks the CHECK is fitted for: the ONNX files' sha256 (stage 1 '+' stage 2), as the
    predictor reports them (``CobbPredictor.networks_fingerprint``)."""
    from MSKCommonLib.runtime import sha256

    names = [predictor.network.path.name] + ([predictor.vertebra_reader.path.name] if predictor.vertebra_reader else [])
    sources = [predictor.weights_path] + ([predictor.vertebra_reader.weights_path] if predictor.vertebra_reader else [])
    return {"weights_sha256": predictor.networks_fingerprint(), "weights": " + ".join(names),
            "source_sha256": "+".join(sha256(p) for p in sources)}  # the .pt files (the torch backend)


def run(args) -> int:
    from CobbAngleLib import geometry
    from CobbAngleLib.check import CHECK_FILE, FORMAT

    from .data import read_split

    from CobbAngleLib.predict import CobbPredictor

    data = Path(args.data)
    split = read_split()
    names = out_of_sample(split["validation"], split)
    names = names[:args.limit] if args.limit else names
    predictor = CobbPredictor(device=args.device, threads=args.threads, read_mirrored=True,
                              check_file=Path("/nonexistent"), all_check_features=True)
    hashes = weights_hashes(predictor)
    cache = Path(args.features)
    records = None
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if (saved.get("weights_sha256") == hashes["weights_sha256"] and saved.get("names") == names
                and saved.get("features") == list(FEATURES)):  # read with these weights and features
            records = saved["records"]
            print(f"features of {len(records)} films read from {cache}")
    if records is None:
        print(f"reading {len(names)} validation films (the predictor, with the mirrored film) ...", flush=True)
        t = time.perf_counter()
        records = read_features(data, names, args.device, args.threads, predictor)
        cache.write_text(json.dumps({**hashes, "names": names, "features": list(FEATURES), "records": records,
                                     "seconds": time.perf_counter() - t}))
        print(f"features cached in {cache}")
    angles = geometry.CURVE_NAMES
    folds = folds_by_patient([r["name"] for r in records], args.folds)
    off_any = np.array([[r["error"][a] is None or r["error"][a] > 10.0 for a in angles] for r in records])
    old = np.array([[r["old_rule"][a] for a in angles] for r in records])
    old_fig = film_figures(np.where(old, 0.0, 1.0), off_any, 0.5)
    print(f"{len(records)} validation films, {old_fig['films_off']} with an angle off by > 10 deg; "
          f"old rule: {old_fig['flagged']} flagged ({old_fig['flagged_share']:.0%}), "
          f"{old_fig['films_off_flagged']} of {old_fig['films_off']} off caught ({old_fig['catch_rate']:.0%})")
    candidates = {name: tuple(f) for name, f in CANDIDATES.items()}
    cv = {}
    for label, features in candidates.items():
        conf, off = cross_validate(records, features, folds, angles)
        threshold, fig = choose_threshold(conf, off)
        per_angle = {a: film_figures(conf[:, [j]], off[:, [j]], threshold) for j, a in enumerate(angles)}
        cv[label] = {"features": list(features), "threshold": threshold, **fig,
                     "per_angle": {a: {k: v for k, v in f.items() if k != "films"} for a, f in per_angle.items()}}
        print(f"CV {label}: threshold {threshold:.3f}, {fig['flagged']} of {fig['films']} flagged "
              f"({fig['flagged_share']:.0%}), {fig['films_off_flagged']} of {fig['films_off']} off caught "
              f"({fig['catch_rate']:.0%}); per angle: " + ", ".join(
                  f"{a} {f['films_off_flagged']}/{f['films_off']} caught, {f['flagged']} flagged"
                  for a, f in per_angle.items()))
    # the most films off caught; ties: the fewest flagged, then the earlier (simpler) candidate
    chosen = max(cv, key=lambda k: (cv[k]["films_off_flagged"], -cv[k]["flagged"], -list(cv).index(k)))
    features = candidates[chosen]
    models = {}
    for a in angles:
        ok = [r for r in records if r["features"][a] is not None]
        y = np.array([r["error"][a] is not None and r["error"][a] <= 10.0 for r in ok])
        models[a] = fit_logistic(design(ok, a, features), y)
    out = Path(args.out) if args.out else CHECK_FILE
    doc = {"format": FORMAT,
           "description": "The CHECK of CobbAngleLib.check: per angle (AASCE order), a logistic regression giving the "
                          "probability that the landmark angle is within 10 deg of the truth; CHECK when below "
                          "'threshold'. Fitted on out-of-sample predictions only: the validation films of "
                          "cobb_split.json (no network was trained on them; official labels), the threshold chosen "
                          "by cross-validation across them grouped by patient (most films with an angle off by > 10 "
                          f"deg flagged, at most {MAX_FLAGGED:.0%} of the films flagged).",
           **hashes, "fitted_on": "validation", "films": [r["name"] for r in records], "features": list(features), "threshold": cv[chosen]["threshold"], "models": models,
           "cross_validation": {"folds": args.folds, "films": len(records), "chosen": chosen, **cv,
                                "old_rule": old_fig},
           "date": datetime.date.today().isoformat(),
           "command": "mskmorph check cobb-fit " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["check", "cobb-fit"]
                                                             else sys.argv[1:])}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"chosen: {chosen} (features {', '.join(features)}); threshold {doc['threshold']:.3f}; written {out}")
    return 0


def main(argv=None) -> int:
    return run(configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.check_fit")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
