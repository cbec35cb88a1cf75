"""An automatic check of AASCE corner labels, and the committed fixes of the clear errors.

    mskmorph check cobb-labels [--data ../shared/data/aasce2019-train] [--write-fixes FILE]
    python -m CobbAngleTools.label_check ...

Each film's 17 x 4 corners (T1..L5 top to bottom; corners top-left, top-right, bottom-left,
bottom-right) are checked for:

* order: vertebra centres that do not run down the film T1 -> L5 (a vertebra stored out of place);
* a vertebra annotated above T1: the vertebra stored last (L5) lies above T1 (the whole file is
  the spine one level higher, its top vertebra stored at the end);
* corners left/right or top/bottom swapped (the whole vertebra mirrored, or a single corner on
  the wrong side);
* corners spread over the spine (a vertebra taller than ``TALL`` x the film's median height: points
  at the wrong end of the spine);
* two vertebrae annotated on one (centres closer than ``DOUBLED`` x the film's median step);
* a gap (a step longer than ``GAP`` x the median: a vertebra skipped);
* tilt jumps: neighbouring mid-axes differing by more than ``TILT_JUMP_DEG``, or a vertebra whose
  upper and lower endplates differ by more than ``ENDPLATE_DEG``.

Thresholds were set from the 481 films' own distributions: the largest neighbour tilt jump on a
film with no other finding is 32.7 deg (99th percentile 30.6), the largest endplate disagreement
35.4 deg (99th percentile 25.9), the largest height 2.4 x the median, steps 0.7..2.2 x the median.

Only clear errors are fixed (``FIXES_FILE``, committed): a vertebra stored last that lies above
T1 (reordered so that it is T1), a whole vertebra mirrored left/right or top/bottom (its corners
swapped back). Everything else is listed as suspect and left as annotated. The official files are
never modified; ``fixed_landmarks`` applies the fixes when training or scoring on "fixed" labels.

Data: AASCE 2019 challenge training set (SpineWeb dataset 16); Wu H. et al., "Automatic landmark
estimation for adolescent idiopathic scoliosis assessment using BoostNet", MICCAI 2017.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

FIXES_FILE = Path(__file__).resolve().parent / "label_fixes.json"
NAMES = ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")

TILT_JUMP_DEG = 40.0
ENDPLATE_DEG = 40.0
TALL = 3.0
DOUBLED = 0.4
GAP = 2.5
LABEL_SETS = ("official", "fixed")


@dataclass
class Finding:
    vertebra: str  # "T1".."L5", or "" for the whole film
    kind: str  # order, above_T1, left_right, top_bottom, spread, doubled, gap, tilt_jump, endplates
    reason: str
    fix: Optional[dict] = None  # the change that repairs it, when the error is clear
    rows: tuple = ()  # the vertebrae's rows in the file (after the film's reorder fix, if any)


def _tilt(v: np.ndarray) -> np.ndarray:
    mid = (v[:, 1] + v[:, 3]) / 2 - (v[:, 0] + v[:, 2]) / 2
    return np.degrees(np.arctan2(mid[:, 1], mid[:, 0]))


def _angle(vec: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(vec[..., 1], vec[..., 0]))


def _wrap(d: np.ndarray) -> np.ndarray:
    return np.abs((d + 180) % 360 - 180)


def check_landmarks(landmarks, verify: bool = True) -> list[Finding]:
    """Every suspect feature of one film's (17, 4, 2) corners; empty for a clean film. With
    ``verify``, a proposed fix is kept only when the fixed film has no finding left on that
    vertebra (a swap that does not give a vertebra in line with its neighbours is no clear error)."""
    original = np.asarray(landmarks, dtype=np.float64).reshape(17, 4, 2)
    findings = _findings(original)
    if not verify or not any(f.fix for f in findings):
        return findings
    rest = _findings(apply_fixes(original, [f.fix for f in findings if f.fix]))
    for f in findings:
        if f.fix is None:
            continue
        if f.fix["change"] == "reorder":
            left = [r for r in rest if r.kind in ("order", "above_T1", "doubled", "gap")]
        else:
            left = [r for r in rest if f.fix["vertebra_index"] in r.rows]
        if left:
            f.fix = None
            f.reason += " (not fixed: after the change " + "; ".join(r.reason for r in left) + ")"
    return findings


def _findings(v: np.ndarray) -> list[Finding]:
    findings: list[Finding] = []
    centres = v.mean(1)
    y = centres[:, 1]
    inversions = int(sum(np.count_nonzero(y[i + 1:] < y[i]) for i in range(17)))
    order = [int(i) for i in np.argsort(y, kind="stable")]
    reordered = inversions and order == [16] + list(range(16))
    if inversions:
        if reordered:
            findings.append(Finding("L5", "above_T1", (
                f"the vertebra stored last (as L5) lies above T1 ({inversions} order inversions): the film's top "
                "vertebra is stored at the end of the file"),
                fix={"change": "reorder", "order": order,
                     "what": "the vertebra stored last becomes T1, the others move down one level (T1->T2 ... L4->L5)"}))
        else:
            moved = [NAMES[i] for i in range(17) if order[i] != i]
            findings.append(Finding(moved[0] if moved else "", "order",
                                    f"vertebra centres do not run T1->L5 down the film ({inversions} inversions; "
                                    f"out of place: {', '.join(moved)})"))
        v = v[order]  # the remaining checks on the vertebrae as they lie on the film
        names = [NAMES[i] for i in order]
    else:
        names = list(NAMES)

    def row(k: int) -> int:
        return k if reordered or not inversions else order[k]

    heights = np.linalg.norm((v[:, 2] + v[:, 3]) / 2 - (v[:, 0] + v[:, 1]) / 2, axis=1)
    widths = np.linalg.norm((v[:, 1] + v[:, 3]) / 2 - (v[:, 0] + v[:, 2]) / 2, axis=1)
    steps = np.linalg.norm(np.diff(v.mean(1), axis=0), axis=1)
    median_h, median_step = float(np.median(heights)), float(np.median(steps))
    for k in range(17):
        q = v[k]
        name = names[k]
        source = row(k)  # the row a fix applies to, after the film's reorder

        def add(kind: str, reason: str, fix: Optional[dict] = None) -> None:
            findings.append(Finding(name, kind, reason, fix, (source,)))

        tl, tr, bl, br = q
        lr = [tr[0] < tl[0], br[0] < bl[0]]
        tb = [bl[1] < tl[1], br[1] < tr[1]]
        if heights[k] > TALL * median_h:
            add("spread", f"{name}'s corners spread over {heights[k]:.0f} px ({heights[k] / median_h:.1f} x the film's "
                "median vertebra height): points at the wrong end of the spine")
            continue
        # (kind, both corner pairs swapped?, the fix, which pair when only one is)
        for kind, swapped_pairs, whole, change, what, pair_names in (
                ("left_right", lr, "left/right", "swap_left_right",
                 "top-left <-> top-right, bottom-left <-> bottom-right", ("top", "bottom")),
                ("top_bottom", tb, "top/bottom", "swap_top_bottom",
                 "top-left <-> bottom-left, top-right <-> bottom-right", ("left", "right"))):
            if all(swapped_pairs):
                detail = f" (mid-axis tilt {_tilt(q[None])[0]:.0f} deg)" if kind == "left_right" else ""
                add(kind, f"{name}'s corners are {whole} swapped{detail}",
                    {"change": change, "vertebra_index": source, "what": what})
            elif any(swapped_pairs):
                add(kind, f"{name}'s {pair_names[0] if swapped_pairs[0] else pair_names[1]} corners are in the wrong "
                    f"{whole} order (a corner misplaced)")
        endplates = _wrap(_angle(q[1] - q[0]) - _angle(q[3] - q[2]))
        if endplates > ENDPLATE_DEG and not all(lr):
            add("endplates", f"{name}'s upper and lower endplates differ by {endplates:.0f} deg")
    for k in range(16):
        pair = (row(k), row(k + 1))
        if steps[k] < DOUBLED * median_step:
            findings.append(Finding(names[k + 1], "doubled", f"{names[k]} and {names[k + 1]} are annotated on one "
                                    f"vertebra (centres {steps[k]:.0f} px apart, median step {median_step:.0f} px)",
                                    rows=pair))
        elif steps[k] > GAP * median_step:
            findings.append(Finding(names[k + 1], "gap", f"a gap of {steps[k]:.0f} px between {names[k]} and "
                                    f"{names[k + 1]} ({steps[k] / median_step:.1f} x the median step): a vertebra "
                                    "skipped?", rows=pair))
    tilts = _tilt(v)
    swapped = {r for f in findings if f.kind == "left_right" for r in f.rows}
    for k in range(16):
        if heights[k] > TALL * median_h or heights[k + 1] > TALL * median_h:
            continue
        jump = _wrap(tilts[k + 1] - tilts[k])
        if jump > TILT_JUMP_DEG and not swapped & {row(k), row(k + 1)}:
            findings.append(Finding(names[k + 1], "tilt_jump", f"tilt jumps {jump:.0f} deg from {names[k]} to "
                                    f"{names[k + 1]}", rows=(row(k), row(k + 1))))
    return findings


def apply_fixes(landmarks, changes: list[dict]) -> np.ndarray:
    """The corners after ``changes`` (in order), a new array; the input is not modified."""
    v = np.array(landmarks, dtype=np.float64).reshape(17, 4, 2)
    for c in changes:
        kind = c["change"]
        if kind == "reorder":
            v = v[np.asarray(c["order"], int)]
        elif kind == "swap_left_right":
            v[c["vertebra_index"]] = v[c["vertebra_index"]][[1, 0, 3, 2]]
        elif kind == "swap_top_bottom":
            v[c["vertebra_index"]] = v[c["vertebra_index"]][[2, 3, 0, 1]]
        else:
            raise ValueError(f"unknown label fix {kind!r}")
    return v


def read_fixes(path: Path = FIXES_FILE) -> dict[str, list[dict]]:
    """{film name: [change, ...]} from the committed fixes file."""
    fixes: dict[str, list[dict]] = {}
    for f in json.loads(Path(path).read_text())["fixes"]:
        fixes.setdefault(f["film"], []).append(f)
    return fixes


_FIXES: Optional[dict] = None


def fixed_landmarks(name: str, landmarks, labels: str = "fixed") -> np.ndarray:
    """The film's corners on the chosen label set: "official" as annotated, "fixed" with the
    committed fixes applied (films without a fix unchanged)."""
    global _FIXES
    if labels not in LABEL_SETS:
        raise ValueError(f"unknown label set {labels!r}; choose one of {', '.join(LABEL_SETS)}")
    if labels == "official":
        return np.asarray(landmarks, dtype=np.float64).reshape(17, 4, 2)
    if _FIXES is None:
        _FIXES = read_fixes()
    return apply_fixes(landmarks, _FIXES.get(name, []))


def check_folder(data_dir: Path) -> dict[str, list[Finding]]:
    from .data import read_landmarks, read_names

    return {n: check_landmarks(read_landmarks(data_dir, n)) for n in read_names(data_dir)}


def fixes_of(report: dict[str, list[Finding]]) -> list[dict]:
    out = []
    for film, findings in report.items():
        for f in findings:
            if f.fix is not None:
                out.append({"film": film, "vertebra": f.vertebra, **f.fix, "why": f.reason})
    return out


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from MSKCommonTools import shared_data

    parser.add_argument("--data", default=str(shared_data() / "aasce2019-train"),
                        help="AASCE folder (images/, labels/); default ../shared/data/aasce2019-train")
    parser.add_argument("--write-fixes", default=None, metavar="FILE",
                        help="write the clear errors' fixes as JSON (the committed file is label_fixes.json)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every finding as JSON")
    return parser


def run(args) -> int:
    data = Path(args.data)
    if not (data / "labels" / "filenames.csv").is_file():
        print(f"not an AASCE folder (no labels/filenames.csv): {data}", file=sys.stderr)
        return 2
    report = check_folder(data)
    suspect = {n: f for n, f in report.items() if f}
    fixes = fixes_of(report)
    fixed_films = {f["film"] for f in fixes}
    for film, findings in suspect.items():
        tag = "FIXED" if all(f.fix for f in findings) else ("PARTLY FIXED" if film in fixed_films else "SUSPECT")
        print(f"{tag:12} {film}: " + "; ".join(f.reason for f in findings))
    left = [n for n, f in suspect.items() if any(x.fix is None for x in f)]
    print(f"{len(report)} films checked: {len(suspect)} suspect, {len(fixed_films)} with a clear error fixed "
          f"({len(fixes)} fixes), {len(left)} left as annotated (listed above as SUSPECT / PARTLY FIXED)")
    if args.write_fixes:
        description = ("Clear errors in the AASCE 2019 training labels (SpineWeb dataset 16; Wu et al., MICCAI 2017), "
                       "found by CobbAngleTools.label_check and applied by label_check.fixed_landmarks; the official "
                       "files are not modified. vertebra: the vertebra as annotated; vertebra_index: the row the "
                       "change applies to (after the film's reorder, if any).")
        lines = ",\n".join("  " + json.dumps(f) for f in fixes)
        Path(args.write_fixes).write_text(
            "{\n \"description\": " + json.dumps(description) + ",\n \"fixes\": [\n" + lines + "\n ]\n}\n")
    if args.json:
        Path(args.json).write_text(json.dumps({n: [asdict(x) for x in f] for n, f in suspect.items()}, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    return run(configure_parser(argparse.ArgumentParser(prog="python -m CobbAngleTools.label_check")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
