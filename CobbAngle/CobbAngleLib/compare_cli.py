"""``mskmorph compare PRIOR CURRENT --out DIR``: has the curve progressed between two films?

PRIOR and CURRENT are films (measured here by the pipeline ``mskmorph cobb`` runs, clinical
convention) or the records ``NAME_cobb.json`` of earlier runs (with the points a reader moved).
For a record the film is looked for beside it (the name the record holds, or ``NAME_sc.dcm`` of a
``--dicom`` run) or given with ``--prior-film`` / ``--current-film``; an earlier run's
``NAME_sr.dcm`` beside it is the film's SR, which the new SR references. The comparison itself is
``CobbAngleLib.followup``.

Writes into DIR: ``follow_up.png`` (both films side by side at the same scale, the curves' lines
and angles, the change, its interval and the verdict), ``follow_up.json``, ``follow_up.csv``,
``follow_up.txt`` (the line for the report), ``follow_up_sr.dcm`` (DICOM SR referencing both films
and the prior SR; a film that is not DICOM is written as ``prior_sc.dcm`` / ``current_sc.dcm``
first), and ``prior_cobb.json`` / ``current_cobb.json`` for films measured here. Exit status 1
when the two cannot be compared (one line saying why), 0 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import followup

STEM = "follow_up"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prior", type=Path, metavar="PRIOR", help="the earlier film, or its NAME_cobb.json")
    parser.add_argument("current", type=Path, metavar="CURRENT", help="the later film, or its NAME_cobb.json")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    add_compare_options(parser)
    review = parser.add_argument_group("in the browser")
    review.add_argument("--review", action="store_true",
                        help="show both films side by side in the browser (loopback), both readings editable, the "
                             "change updated as points move; Accept writes the files (MSKCommonLib.webcompare)")
    review.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    review.add_argument("--port", type=int, default=0, help="with --review: the port (0: a free one)")
    parser.add_argument("--patient-id", dest="sc_patient_id", metavar="ID",
                        help="patient ID of the Secondary Capture made of a film that is not DICOM (default empty)")
    parser.add_argument("--patient-name", dest="sc_patient_name", metavar="NAME",
                        help="patient name of that Secondary Capture (default empty)")


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    """What ``mskmorph compare`` and ``mskmorph pacs compare`` share."""
    parser.add_argument("--prior-film", type=Path, metavar="FILE", help="the prior film, when PRIOR is a record "
                                                                        "and the film is not beside it")
    parser.add_argument("--current-film", type=Path, metavar="FILE", help="the current film, when CURRENT is a record")
    parser.add_argument("--prior-landmarks", type=Path, metavar="MAT", help="corners of the prior film from an AASCE "
                                                                             ".mat file instead of the network")
    parser.add_argument("--current-landmarks", type=Path, metavar="MAT", help="the same for the current film")
    parser.add_argument("--same-reader", action="store_true",
                        help="the points moved by hand on both films were moved by one reader (interval from the "
                             "within-reader variability, 3.8 deg, instead of 6.3 between readers)")
    parser.add_argument("--repeatability", type=Path, metavar="JSON",
                        help="the tool's repeatability figures (default: the shipped models/cobb_repeatability.json)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="network device")
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"), help="network runtime (default onnx)")
    parser.add_argument("--no-dicom", action="store_true", help="do not write the DICOM SR")


@dataclass
class Side:
    """One film of the pair: its record, and what is known of the film and its SR."""

    label: str  # "prior" or "current"
    record: dict
    film: Optional[Path] = None  # the film (pixels, and the DICOM reference when it is DICOM)
    image: object = None  # MSKCommonLib.image.Image of the film, when read
    sr: Optional[Path] = None  # an earlier SR of this film
    measured_here: bool = False  # a film measured by this command (its record is written too)


def _beside(record_path: Path, record: dict) -> tuple[Optional[Path], Optional[Path]]:
    """(the film, the film's SR) found beside a record."""
    stem = record_path.name[: -len("_cobb.json")] if record_path.name.endswith("_cobb.json") else record_path.stem
    folder = record_path.parent
    film = None
    name = record.get("image")
    for candidate in ([folder / name, folder.parent / name, Path(name)] if name else []) + [folder / f"{stem}_sc.dcm"]:
        if candidate.is_file():
            film = candidate
            break
    sr = folder / f"{stem}_sr.dcm"
    return film, sr if sr.is_file() else None


def load_side(label: str, path: Path, film: Optional[Path], landmarks: Optional[Path], args, pipeline) -> Side:
    """A record read (JSON) or a film measured (clinical convention)."""
    from MSKCommonLib.image import read_image

    if not path.exists():
        raise followup.FollowUpError(f"{label} not found: {path}")
    if path.suffix.lower() == ".json":
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise followup.FollowUpError(f"{path.name} is not a readable record ({type(e).__name__})") from None
        if not isinstance(record, dict) or "landmarks_px" not in record:
            raise followup.FollowUpError(f"{path.name} is not a Cobb record (NAME_cobb.json of mskmorph cobb)")
        found, sr = _beside(path, record)
        film = film or found
        image = read_image(film) if film is not None else None
        return Side(label, record, film, image, sr)
    from .pipeline import CobbOptions

    image = read_image(path)
    options = CobbOptions(convention="clinical", device=args.device, backend=args.backend,
                          landmarks_file=None if landmarks is None else str(landmarks))
    try:
        result = pipeline.run(image, options)
    except ValueError as e:
        raise followup.FollowUpError(f"{path.name}: {e}") from None
    record = result.to_record()
    return Side(label, record, path, image, None, measured_here=True)


def compare_paths(prior: Path, current: Path, out: Path, args,
                  prior_sr: Optional[Path] = None) -> tuple[followup.FollowUp, dict]:
    """Both sides loaded, compared and written into ``out``; returns the follow-up and {kind: path}.
    ``prior_sr``: the prior film's SR (found in a PACS), referenced by the new SR; unless the prior
    corners are given (``--prior-landmarks``), its clinical curves stand for the prior film's
    reading (angle and end vertebrae as the report recorded them, a reader's corrections included)."""
    from .pipeline import CobbPipeline

    pipeline = CobbPipeline()
    sides = [load_side("prior", prior, args.prior_film, args.prior_landmarks, args, pipeline),
             load_side("current", current, args.current_film, args.current_landmarks, args, pipeline)]
    if prior_sr is not None:
        sides[0].sr = prior_sr
    repeatability = None
    if args.repeatability is not None:
        repeatability = followup.load_repeatability(args.repeatability)
        if repeatability is None:
            raise followup.FollowUpError(f"repeatability file not found: {args.repeatability}")
    recorded = None
    if prior_sr is not None and args.prior_landmarks is None:
        import pydicom

        from .followup_dicom import recorded_curves

        recorded = recorded_curves(pydicom.dcmread(str(prior_sr)))
    result = followup.compare(*(followup.reading_from_record(s.record) for s in sides), repeatability=repeatability,
                              same_reader=args.same_reader, prior_recorded=recorded)
    return result, write_outputs(result, sides, out, args)


def write_outputs(result: followup.FollowUp, sides: list, out: Path, args) -> dict:
    from .followup_figure import draw_follow_up
    from .overlay import write_overlay

    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for side in sides:
        if side.measured_here:
            path = out / f"{side.label}_cobb.json"
            path.write_text(json.dumps(side.record, indent=2), encoding="utf-8")
            written[f"{side.label}_record"] = path
    record = result.to_record()
    record["films"] = {s.label: str(s.film) if s.film else None for s in sides}
    written["json"] = out / f"{STEM}.json"
    written["json"].write_text(json.dumps(record, indent=2), encoding="utf-8")
    written["csv"] = out / f"{STEM}.csv"
    with open(written["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("prior", "current") + followup.CSV_COLUMNS)
        writer.writeheader()
        for row in followup.csv_rows(result):
            writer.writerow({"prior": result.prior.name, "current": result.current.name, **row})
    written["text"] = out / f"{STEM}.txt"
    written["text"].write_text(result.report_line() + "\n", encoding="utf-8")
    gray = [s.image.windowed_uint8() if s.image is not None else None for s in sides]
    shapes = [(s.record["image_size_px"][1], s.record["image_size_px"][0]) for s in sides]
    written["figure"] = write_overlay(out / f"{STEM}.png", draw_follow_up(result, *gray, *shapes))
    if not getattr(args, "no_dicom", False):
        written.update(write_sr(result, sides, out, args))
    return written


def write_sr(result: followup.FollowUp, sides: list, out: Path, args) -> dict:
    """``follow_up_sr.dcm``, or {"dicom_skipped": reason} when a film cannot be referenced."""
    import pydicom

    from MSKCommonLib import dicom_export as dx

    from .followup_dicom import build, reference_from_sr

    written, sources = {}, []
    options = dx.DicomOptions(patient_id=getattr(args, "sc_patient_id", None) or "",
                              patient_name=getattr(args, "sc_patient_name", None) or "")
    for side in sides:
        if side.image is not None:
            source, made = dx.source_dataset(side.film, side.image, out, side.label, options,
                                             spacing_mm=side.record.get("pixel_spacing_mm"))
            written.update({f"{side.label}_sc": p for p in made.values()})
        elif side.sr is not None:
            source = reference_from_sr(pydicom.dcmread(str(side.sr)))
        else:
            return {"dicom_skipped": f"the {side.label} film is not known (give --{side.label}-film): the SR "
                                     "could not refer to it"}
        sources.append(source)
    prior_sr = pydicom.dcmread(str(sides[0].sr)) if sides[0].sr is not None else None
    sr = build(result, sources[0], sources[1], prior_sr)
    written["dicom_sr"] = out / f"{STEM}_sr.dcm"
    sr.save_as(str(written["dicom_sr"]), enforce_file_format=True)
    return written


def print_result(result: followup.FollowUp, written: dict) -> None:
    for c in result.curves:
        ends = "-".join(c.end_vertebrae or [])
        angles = f"{followup._deg(c.prior_deg)} -> {followup._deg(c.current_deg)} deg"
        change = "" if c.change_deg is None else f", change {c.change_text()}"
        print(f"{c.name} {ends}: {angles}{change}: {c.verdict} ({c.reason})" + (f"; {c.levels_note}" if c.levels_note else ""))
    print(result.report_line())
    if written.get("dicom_skipped"):
        print(f"no DICOM SR: {written['dicom_skipped']}")
    print(f"written: {', '.join(str(p) for k, p in written.items() if k != 'dicom_skipped')}")


def run(args) -> int:
    if getattr(args, "review", False):
        from MSKCommonLib.webcompare import serve

        try:
            return serve(args.prior, args.current, args.out, args)
        except (followup.FollowUpError, ValueError) as e:
            print(f"mskmorph compare: {e}", file=sys.stderr)
            return 1
    try:
        result, written = compare_paths(args.prior, args.current, args.out, args)
    except (followup.FollowUpError, ValueError) as e:
        print(f"mskmorph compare: {e}", file=sys.stderr)
        return 1
    print_result(result, written)
    return 0
