"""Are the AASCE labels named the same way on every film of a patient? Two witnesses that do not
share an error.

    mskmorph check cobb-level-consistency --level-weights RUN/cobb_level.pt [--films validation]
    python -m CobbAngleTools.level_consistency ...

An AASCE label file names 17 vertebrae T1..L5. Films of one patient (A, B, C ... of one patient
number: follow-ups) show the same spine, so a vertebra labelled T1 on one film should be the
same vertebra as the one labelled T1 on the next. Where it is not, no naming, by anatomy or
otherwise, can agree with both label files. Two witnesses, each read per film:

* **the level network** (``vertebra_level``) at the labelled vertebrae themselves (the true
  centres, extrapolated 6 positions each side): the shift of the whole chain it reads
  (``choose_shift``: +1 = it reads the vertebra labelled T1 as T2). Two films of a patient read at
  different shifts: by the network, their labels name the spine differently;
* **the labels alone**: the vertebrae's sizes down the spine (log endplate width and log height of
  T1..L5, each film's scale taken out) compared between two films of a patient at an offset of
  -1, 0 or +1 levels; the offset that matches best. It uses no image and no network.

Where the network reads two films of a patient at different shifts, the sizes are compared with
the offset it implies. If the labels were named the same way on both films (the network erring),
the sizes would match best at offset 0 about as often as on the pairs the network reads alike.

Where both witnesses agree on a pair, the pair is taken as known; ``films_named_otherwise`` counts
the fewest films whose labels must name their patient's spine otherwise than the patient's other
films: a floor on the vertebrae misnamed, against these labels, by any naming that names one spine
one way on every film.

Data: AASCE 2019 challenge training set (SpineWeb dataset 16); Wu H. et al., MICCAI 2017.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

from . import data as D

OFFSETS = (-1, 0, 1)


def size_profile(v: np.ndarray) -> np.ndarray:
    """(2, 17) log endplate width and log height of T1..L5 from their corners (17, 4, 2)."""
    v = np.asarray(v, dtype=np.float64)
    width = (np.linalg.norm(v[:, 1] - v[:, 0], axis=1) + np.linalg.norm(v[:, 3] - v[:, 2], axis=1)) / 2
    height = (np.linalg.norm(v[:, 2] - v[:, 0], axis=1) + np.linalg.norm(v[:, 3] - v[:, 1], axis=1)) / 2
    return np.log(np.stack([width, height]))


def profile_mismatch(a: np.ndarray, b: np.ndarray, offset: int) -> float:
    """RMS difference of two size profiles with vertebra i of ``a`` matched to i + ``offset`` of
    ``b``, over the vertebrae both have, each measure's mean difference (the films' scales)
    taken out."""
    i = np.arange(a.shape[1])
    j = i + offset
    keep = (j >= 0) & (j < b.shape[1])
    d = a[:, i[keep]] - b[:, j[keep]]
    d = d - d.mean(axis=1, keepdims=True)
    return float(np.sqrt((d ** 2).mean(axis=1).sum()))


def best_offset(a: np.ndarray, b: np.ndarray) -> int:
    return min(OFFSETS, key=lambda s: profile_mismatch(a, b, s))


def network_shift(reader, film01: np.ndarray, v: np.ndarray) -> tuple[int, float]:
    """(shift, margin over the next best shift) the level network reads at the labelled vertebrae."""
    from CobbAngleLib.vertebra_level import EXTEND, shift_scores

    naming = reader.name(film01, v)
    scores = np.sort(shift_scores(naming.log_evidence, naming.on, EXTEND))
    return naming.shift, float(scores[-1] - scores[-2])


def compare_patients(shifts: dict, profiles: dict) -> dict:
    """Per pair of films of one patient: the network's implied offset (the difference of its shifts,
    within -1..1) and the sizes' best offset; the counts of the four outcomes."""
    by_patient = collections.defaultdict(list)
    for name in shifts:
        by_patient[D.patient_of(name)].append(name)
    pairs, counts = [], collections.Counter()
    for patient, names in sorted(by_patient.items()):
        names = sorted(names)
        for x in range(len(names)):
            for y in range(x + 1, len(names)):
                a, b = names[x], names[y]
                implied = int(np.clip(shifts[a][0] - shifts[b][0], -1, 1))
                sizes = best_offset(profiles[a], profiles[b])
                network = "network reads them differently" if implied else "network reads them alike"
                outcome = ("sizes match at offset 0" if sizes == 0 else
                           "sizes match at the network's offset" if sizes == implied else "sizes match at another offset")
                counts[(network, outcome)] += 1
                pairs.append({"patient": patient, "films": [a, b], "network_offset": implied, "sizes_offset": sizes})
    return {"pairs": pairs, "counts": {f"{k[0]}; {k[1]}": v for k, v in sorted(counts.items())}}


def films_named_otherwise(pairs: list[dict]) -> dict:
    """The fewest films whose labels must name their patient's spine otherwise than the patient's
    other films, if both witnesses are right where they agree.

    Only the pairs where the network's offset and the sizes' offset are the same (0 included) are
    taken as known; they fix each film's naming relative to the films it is linked to. In each
    linked group the largest set of films named alike is taken as right; the others are counted.
    Returns {"films": N, "groups": [{"films": [...], "offset": {film: offset}}], "conflicts": K}: offset
    +1 where a film's vertebra labelled T1 is its group's T2 (the network's shift, relative to the set kept)
    (K: agreed pairs that contradict the others of their group)."""
    links = collections.defaultdict(list)
    for pair in pairs:
        if pair["network_offset"] == pair["sizes_offset"]:
            a, b = pair["films"]
            links[a].append((b, -pair["network_offset"]))  # offset: a's shift minus b's
            links[b].append((a, pair["network_offset"]))
    seen, groups, conflicts, count = set(), [], 0, 0
    for start in sorted(links):
        if start in seen:
            continue
        offset, stack = {start: 0}, [start]
        while stack:
            x = stack.pop()
            for y, o in links[x]:
                if y not in offset:
                    offset[y] = offset[x] + o
                    stack.append(y)
                elif offset[y] != offset[x] + o:
                    conflicts += 1
        seen.update(offset)
        most = collections.Counter(offset.values()).most_common(1)[0][0]
        odd = sorted(f for f, o in offset.items() if o != most)
        count += len(odd)
        if odd:
            groups.append({"films": odd, "offset": {f: o - most for f, o in sorted(offset.items())}})
    return {"films": count, "groups": groups, "conflicts": conflicts // 2}


def run(args) -> int:
    import cv2

    from CobbAngleLib.frame import intensity_window
    from CobbAngleLib.vertebra_level import LevelReader

    if not Path(args.level_weights).is_file():
        raise SystemExit(f"mskmorph check cobb-level-consistency: no level network weights at {args.level_weights} "
                         "(train one: mskmorph train cobb-levels)")
    data_dir = Path(args.data)
    split = D.read_split()
    names = split[args.films] if args.films in ("train", "validation") else D.read_names(data_dir)
    names = names[:args.limit] if args.limit else names
    reader = LevelReader(args.level_weights, "cpu", args.threads, "torch")
    shifts, profiles = {}, {}
    for k, name in enumerate(names):
        v = D.read_landmarks(data_dir, name, "fixed")
        film = cv2.imread(str(data_dir / "images" / name), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        shifts[name] = network_shift(reader, intensity_window(film), v)
        profiles[name] = size_profile(v)
        if (k + 1) % 20 == 0:
            print(f"{k + 1}/{len(names)} films", file=sys.stderr, flush=True)
    result = compare_patients(shifts, profiles)
    result["named_otherwise"] = films_named_otherwise(result["pairs"])
    result["shifts"] = {n: {"shift": s, "margin": round(m, 1)} for n, (s, m) in shifts.items()}
    result["level_weights"] = str(args.level_weights)
    result["films"] = args.films
    for key, value in result["counts"].items():
        print(f"{value:4d} pairs: {key}")
    for pair in result["pairs"]:
        if pair["network_offset"] and pair["sizes_offset"] == pair["network_offset"]:
            print(f"offset by both witnesses: {pair['films'][0]} / {pair['films'][1]} ({pair['network_offset']:+d})")
    odd = result["named_otherwise"]
    print(f"at least {odd['films']} of {len(names)} films name their patient's spine otherwise than the "
          f"patient's other films, where both witnesses agree ({odd['conflicts']} agreed pairs contradict their group):")
    for group in odd["groups"]:
        print("  " + ", ".join(f"{f} ({group['offset'][f]:+d})" for f in group["films"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from MSKCommonTools import shared_data

    parser.add_argument("--data", default=str(shared_data() / "aasce2019-train"),
                        help="AASCE 2019 training folder (images/, labels/)")
    parser.add_argument("--level-weights", required=True, help="a level network's weights (.pt)")
    parser.add_argument("--films", default="validation", choices=("validation", "train", "all"),
                        help="which films of cobb_split.json (default: validation: no network trained on them)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, metavar="FILE", help="write every pair and shift here")
    return parser


def main(argv=None) -> int:
    return run(configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.level_consistency"))
               .parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
