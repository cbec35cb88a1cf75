"""``mskmorph``: every MSKMorphometry module headless, on files and folders.

    mskmorph cobb INPUT... --out DIR [--landmarks PATH] [--convention aasce|clinical]
    mskmorph phantom spine --out DIR [--n N] [--seed S]
    mskmorph train cobb --data DIR --out DIR ...
    mskmorph bench cobb [INPUT...]
    mskmorph compare PRIOR CURRENT --out DIR
    mskmorph pacs cobb --url URL --study UID   (knee, back: the same; see MSKCommonLib.pacs)
    mskmorph archive cobb --url URL --state FILE [--workers N | --scheduler ADDR]   (MSKCommonLib.archive)

Each command lives in its module's Lib package as ``configure_parser(parser)`` + ``run(args)``;
they are imported only when used, so one module's missing dependency does not break the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (command, subject) -> module implementing configure_parser/run, and its one-line help
COMMANDS = {
    ("cobb", None): ("CobbAngleLib.cli", "Cobb angles on spine AP radiographs"),
    ("phantom", "spine"): ("CobbAngleTools.phantom", "synthetic spine AP radiographs with exact landmarks"),
    ("train", "cobb"): ("CobbAngleTools.train", "train the Cobb networks on the AASCE layout"),
    ("train", "cobb-vertebrae"): ("CobbAngleTools.train_vertebrae",
                                  "train the Cobb second stage (each vertebra read from a patch of the film)"),
    ("train", "cobb-levels"): ("CobbAngleTools.train_levels",
                               "train the Cobb level network (vertebrae named by their anatomy)"),
    ("bench", "cobb"): ("CobbAngleTools.bench", "seconds and memory per radiograph, CPU and GPU"),
    ("compare", None): ("CobbAngleLib.compare_cli", "has the curve progressed? two Cobb films of one patient compared"),
    ("check", "cobb-labels"): ("CobbAngleTools.label_check", "check AASCE corner labels; list suspect films and fixes"),
    ("check", "cobb-level-consistency"): ("CobbAngleTools.level_consistency",
                                          "are a patient's films labelled T1..L5 the same way? (level network, sizes)"),
    ("check", "cobb-fit"): ("CobbAngleTools.check_fit", "fit the Cobb CHECK (per-angle confidence) on the training films"),
    ("knee", None): ("KneeLandmarksLib.cli", "KNEEL landmarks and joint space width on knee radiographs"),
    ("phantom", "knee"): ("KneeLandmarksTools.phantom", "synthetic knee radiographs with exact landmarks"),
    ("train", "knee"): ("KneeLandmarksTools.train", "train the two-stage KNEEL networks"),
    ("bench", "knee"): ("KneeLandmarksTools.bench", "seconds per knee radiograph, CPU and GPU"),
    ("back", None): ("SpineMorphologyLib.cli", "back depth, surface and spine curve from an RGB photo"),
    ("phantom", "back"): ("SpineMorphologyTools.photos", "synthetic bare-back photos with exact depth and spine"),
    ("train", "back"): ("SpineMorphologyTools.train", "train the GAMA-Net depth and spine keypoint networks"),
    ("bench", "back"): ("SpineMorphologyTools.bench", "seconds per back photo, CPU and GPU"),
    ("review", None): ("MSKCommonLib.webreview", "review and correct results in the browser (trame-slicer)"),
    ("pacs", "cobb"): ("MSKCommonLib.pacs", "Cobb angles on films from a PACS (DICOMweb); SR and SEG stored back"),
    ("pacs", "knee"): ("MSKCommonLib.pacs", "knee joint space width on films from a PACS (DICOMweb); SR stored back"),
    ("pacs", "back"): ("MSKCommonLib.pacs", "back surface measures on photos from a PACS (DICOMweb); SR stored back"),
    ("pacs", "compare"): ("CobbAngleLib.pacs_compare", "the patient's latest spine film against the one before (DICOMweb)"),
    ("archive", "cobb"): ("MSKCommonLib.archive", "Cobb angles on every spine film of a PACS, once, on Dask; resumable"),
    ("archive", "knee"): ("MSKCommonLib.archive", "knee joint space width on every knee film of a PACS, on Dask"),
    ("archive", "back"): ("MSKCommonLib.archive", "back surface measures on every back photo of a PACS, on Dask"),
    ("export", "onnx"): ("MSKCommonTools.export_onnx", "export the shipped networks to ONNX (export environment)"),
    ("bench", "onnx"): ("MSKCommonTools.bench_backends", "ONNX Runtime vs torch: seconds per image, start-to-result, sizes"),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit(f"mskmorph: this command is not available ({module_name}: {e})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mskmorph", description="MSKMorphometry: musculoskeletal measurements on radiographs and photos."
    )
    parser.add_argument("--version", action="version", version=f"mskmorph {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for (command, subject), (module_name, help_text) in COMMANDS.items():
        if subject is None:
            sub = commands.add_parser(command, help=help_text, description=help_text)
        else:
            if command not in groups:
                group_parser = commands.add_parser(command, help=f"{command} (" + ", ".join(
                    s for (c, s) in COMMANDS if c == command) + ")")
                groups[command] = group_parser.add_subparsers(dest="subject", metavar="SUBJECT", required=True)
            sub = groups[command].add_parser(subject, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # first pass, without help flags: which command; second pass: with that command's own options
    first = [a for a in argv if a not in ("-h", "--help")]
    known = None
    if first and first[0] != "--version":
        known, _ = parser.parse_known_args(first)
    if known is None or not hasattr(known, "_module"):
        parser.parse_args(argv)  # prints help, version or the usage error
        return 0
    module = _load(known._module)
    parser = build_parser()
    target = _subparser_for(parser, known)
    module.configure_parser(target)
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)


def _subparser_for(parser: argparse.ArgumentParser, known) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = action.choices[known.command]
    if getattr(known, "subject", None):
        action = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
        sub = action.choices[known.subject]
    return sub


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mskmorphometry")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
