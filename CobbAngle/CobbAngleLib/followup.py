"""Has the curve progressed? Two films of one patient compared, as a scoliosis clinic compares them.

Plain numpy: no Slicer, no network runtime, no files. The input is two records (what
``NAME_cobb.json`` holds: the corners in pixels, the pixel spacing, the CHECK, the points moved by
hand in ``review.edited_points``); the output a ``FollowUp`` with one ``CurveChange`` per curve.

Same levels: each curve of the prior film is measured on the current film between the prior's
end vertebrae (``geometry.curve_between``, clinical convention), as clinicians carry the levels
over; when the current film's own choice of end vertebrae differs it is reported beside it ("the
curve now spans T5-T12"). A curve found only on the current film is measured on the prior film at
the current film's levels.

The change's 95 % interval: each film's reading of the curve adds its own variability,
``half width = sqrt((L_prior^2 + L_current^2) / 2)``, where L is the 95 % limit of the difference
between two readings of one unchanged spine by that film's reader:
- network-placed points: the tool's smallest detectable change for that curve at fixed end
  vertebrae, measured on re-acquired validation films (``mskmorph bench cobb --repeatability``,
  ``models/cobb_repeatability.json``, measure ``clinical_same_levels``);
- points a reader moved (any moved corner of a vertebra from the upper to the lower end vertebra;
  corners from a landmark file count as a reader's): the published reader variability with the
  end vertebrae given, 3.8 deg for one reader (``same_reader``), else 6.3 deg between readers
  (Morrissy et al. 1990; 4.9 / 7.2 when each reader chooses the end vertebrae).
When both films are read by the network, the half width is the tool's SDC itself.

Verdict per curve (``PROGRESSION_DEG`` = 5, the usual threshold):
- "progressed": change >= 5 deg and the interval above 0;
- "decreased": change <= -5 deg and the interval below 0;
- "stable": |change| < 5 deg;
- "cannot tell", with the reason: a curve not measurable on one film, its end vertebrae not both
  on the other film, a CHECK on the network's angle, no repeatability figure, an interval wider
  than between two human readers (> 7.2 deg), or a change of 5 deg or more inside the interval.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import geometry

PROGRESSION_DEG = 5.0
# 95 % limits of the difference between two manual readings of one film (deg): Morrissy RT et al.,
# J Pediatr Orthop 1990;10:734-43 (within one reader, between readers; with the end vertebrae given)
READER_LIMITS_DEG = {"within": 4.9, "between": 7.2, "within_given_ends": 3.8, "between_given_ends": 6.3}
WIDEST_INTERVAL_DEG = READER_LIMITS_DEG["between"]
REPEATABILITY_FILE = Path(__file__).resolve().parent / "models" / "cobb_repeatability.json"
REPEATABILITY_MEASURE = "clinical_same_levels"
VERDICTS = ("progressed", "stable", "decreased", "cannot tell")


class FollowUpError(ValueError):
    """Two records that cannot be compared (the message says why)."""


@dataclass
class Reading:
    """One film's reading, from its record."""

    name: str
    landmarks: np.ndarray  # (17, 4, 2) pixels
    spacing_mm: Optional[tuple]
    edited_points: list  # corner labels moved by hand ("T7 inf-R")
    all_points_by_reader: bool  # corners from a landmark file (a reader's), not the network
    check: dict  # curve -> the network's CHECK (clinical records only)
    measurement: geometry.CobbMeasurement  # clinical, measured here from the corners
    record: dict

    def by_reader(self, upper: int, lower: int) -> bool:
        """Whether a reader placed or moved a corner of the vertebrae upper..lower."""
        if self.all_points_by_reader:
            return True
        span = set(geometry.VERTEBRA_NAMES[upper:lower + 1])
        return any(label.split()[0] in span for label in self.edited_points)


def landmarks_of(record: dict) -> np.ndarray:
    """The record's corners (``landmarks_px``: label -> [x, y]) as (17, 4, 2); a missing one is NaN."""
    labels = record.get("landmarks_px")
    if not isinstance(labels, dict):
        raise FollowUpError(f"{record.get('image', 'the record')} holds no corner landmarks (landmarks_px)")
    from .pipeline import record_landmarks

    try:
        return record_landmarks(record)
    except geometry.LandmarkError as e:
        raise FollowUpError(f"{record.get('image', 'the record')}: {e}") from None


def reading_from_record(record: dict) -> Reading:
    """A ``Reading`` from a record (``NAME_cobb.json``), measured again in the clinical convention."""
    if record.get("error"):
        raise FollowUpError(f"{record.get('image')} was not measured: {record['error']}")
    landmarks = landmarks_of(record)
    spacing = record.get("pixel_spacing_mm")
    spacing = None if not spacing else tuple(float(s) for s in spacing)
    try:
        measurement = geometry.cobb_angles(landmarks, "clinical", spacing_mm=spacing)
    except geometry.LandmarkError as e:
        raise FollowUpError(f"{record.get('image')}: {e}") from None
    edited = sum(((record.get("review") or {}).get("edited_points") or {}).values(), [])
    source = str(record.get("landmarks_from") or "")
    check = {}
    if record.get("convention") == "clinical":
        check = {c: bool(v) for c, v in (record.get("check") or {}).items()
                 if c not in (record.get("check_edited") or [])}
    return Reading(name=str(record.get("image") or "?"), landmarks=landmarks, spacing_mm=spacing,
                   edited_points=list(edited), all_points_by_reader=source.startswith("file"),
                   check=check, measurement=measurement, record=record)


def load_repeatability(path=REPEATABILITY_FILE) -> Optional[dict]:
    """{curve: smallest detectable change (deg)} at fixed end vertebrae, with the file's command
    and date under "_source"; None when the benchmark has not been run."""
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    measure = data.get("measures", {}).get(REPEATABILITY_MEASURE, {})
    sdc = {c: measure[c]["smallest_detectable_change_deg"] for c in geometry.CURVE_NAMES
           if c in measure and measure[c].get("smallest_detectable_change_deg") is not None
           and math.isfinite(measure[c]["smallest_detectable_change_deg"])}
    sdc["_source"] = f"{data.get('command', '?')} ({data.get('films')} films x {data.get('repeats')} readings, " \
                     f"{data.get('date', '?')})"
    return sdc


@dataclass
class CurveChange:
    name: str
    end_vertebrae: Optional[list]  # [upper, lower] the curve is compared between
    levels_from: str  # "prior" or "current" (a curve found only on the current film)
    prior_deg: Optional[float]
    current_deg: Optional[float]
    change_deg: Optional[float]
    interval_deg: Optional[float]  # half width of the change's 95 % interval
    interval_low_deg: Optional[float]
    interval_high_deg: Optional[float]
    interval_from: str
    verdict: str
    reason: str
    current_own_end_vertebrae: Optional[list] = None  # the current film's own choice, when it differs
    current_own_deg: Optional[float] = None
    levels_note: str = ""  # "the curve now spans T5-T12 (41.2 deg)"
    # the two lines measured on each film: [(vertebra index, "sup"|"inf"), ...]
    lines: list = field(default_factory=list)

    @property
    def title(self) -> str:
        return geometry.CURVE_TITLES[self.name]

    def change_text(self) -> str:
        """"+8.0 deg (95 % interval +1.7 to +14.3)" ("" when not measured)."""
        if self.change_deg is None:
            return ""
        return f"{signed(self.change_deg)} deg" + (
            f" (95 % interval {signed(self.interval_low_deg)} to {signed(self.interval_high_deg)})"
            if self.interval_deg is not None else "")


def signed(x: float) -> str:
    """+1.2, -0.4, and 0.0 (never -0.0)."""
    return f"{0.0 if round(x, 1) == 0 else x:+.1f}"


@dataclass
class FollowUp:
    prior: Reading
    current: Reading
    curves: list
    repeatability_source: str = ""
    same_reader: bool = False

    def curve(self, name: str) -> CurveChange:
        return next(c for c in self.curves if c.name == name)

    def to_record(self) -> dict:
        return {
            "prior": self.prior.name, "current": self.current.name, "convention": "clinical",
            "progression_threshold_deg": PROGRESSION_DEG,
            "repeatability": self.repeatability_source or None,
            "reader_limits_deg": READER_LIMITS_DEG, "same_reader": self.same_reader,
            "curves": [{k: v for k, v in asdict(c).items() if k != "lines"} | {"title": c.title} for c in self.curves],
            "report": self.report_line(),
        }

    def report_line(self) -> str:
        """One line for the report."""
        parts = []
        for c in self.curves:
            ends = "-".join(c.end_vertebrae) if c.end_vertebrae else "?"
            if c.change_deg is None:
                parts.append(f"{c.name} ({ends}): cannot tell ({c.reason})")
                continue
            text = (f"{c.name} ({ends}) {_deg(c.prior_deg)} -> {_deg(c.current_deg)} deg, change {c.change_text()}"
                    + f": {c.verdict}" + (f" ({c.reason})" if c.verdict == "cannot tell" else ""))
            if c.levels_note:
                text += f"; {c.levels_note}"
            parts.append(text)
        return f"Compared with {self.prior.name}: " + "; ".join(parts) + "." if parts else \
            f"Compared with {self.prior.name}: no curve measured on either film."


def _deg(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}"


def _film_limit(by_reader: bool, curve: str, sdc: Optional[dict], same_reader: bool):
    """(95 % limit of one film's reading of the curve, where it comes from) or (None, reason)."""
    if by_reader:
        key = "within_given_ends" if same_reader else "between_given_ends"
        return READER_LIMITS_DEG[key], f"reader ({'one reader' if same_reader else 'between readers'})"
    if not sdc or curve not in sdc:
        return None, "no repeatability figure for the network's reading (run mskmorph bench cobb --repeatability)"
    return float(sdc[curve]), "network (tool repeatability)"


def _measure(reading: Reading, name: str, upper: int, lower: int) -> tuple[Optional[float], str]:
    try:
        return float(geometry.curve_between(reading.landmarks, name, upper, lower,
                                            spacing_mm=reading.spacing_mm).angle_deg), ""
    except geometry.LandmarkError as e:
        return None, str(e)


def compare(prior: Reading, current: Reading, repeatability: Optional[dict] = None, same_reader: bool = False,
            use_shipped_repeatability: bool = True, prior_recorded: Optional[dict] = None) -> FollowUp:
    """The follow-up of ``current`` against ``prior``. ``repeatability``: {curve: SDC deg} (default:
    the shipped ``models/cobb_repeatability.json``); ``same_reader``: the points moved by hand on
    both films were moved by one reader; ``prior_recorded``: the prior film's curves as its report
    recorded them ({curve: {"angle_deg", "end_vertebrae", "by_reader"}}, ``followup_dicom.
    recorded_curves``): their angle and end vertebrae stand for the prior film's reading."""
    if repeatability is None and use_shipped_repeatability:
        repeatability = load_repeatability()
    prior_recorded = prior_recorded or {}
    curves = []
    for name in geometry.CURVE_NAMES:
        p, c = prior.measurement.curve(name), current.measurement.curve(name)
        recorded = prior_recorded.get(name)
        if recorded is not None:  # the reading the prior film's report holds (a reader may have corrected it)
            p = geometry.Curve(name, recorded["angle_deg"], *recorded["end_vertebrae"], apex=None, role="recorded")
        if p.angle_deg and p.upper_end_vertebra:  # a curve on the prior film (0 / None: none there)
            levels_from, source = "prior", p
        elif c.angle_deg and c.upper_end_vertebra:  # a new curve: the prior measured at its levels
            levels_from, source = "current", c
        else:
            continue
        upper = geometry.VERTEBRA_NAMES.index(source.upper_end_vertebra)
        lower = geometry.VERTEBRA_NAMES.index(source.lower_end_vertebra)
        ends = [source.upper_end_vertebra, source.lower_end_vertebra]
        prior_deg, why_p = (float(p.angle_deg), "") if levels_from == "prior" else _measure(prior, name, upper, lower)
        current_deg, why_c = _measure(current, name, upper, lower) if levels_from == "prior" else (float(c.angle_deg), "")
        change = CurveChange(name=name, end_vertebrae=ends, levels_from=levels_from, prior_deg=prior_deg,
                             current_deg=current_deg, change_deg=None, interval_deg=None, interval_low_deg=None,
                             interval_high_deg=None, interval_from="", verdict="cannot tell", reason="",
                             lines=[(upper, "sup"), (lower, "inf")])
        own = c if levels_from == "prior" else None
        if own is not None and own.angle_deg and own.upper_end_vertebra and \
                [own.upper_end_vertebra, own.lower_end_vertebra] != ends:
            change.current_own_end_vertebrae = [own.upper_end_vertebra, own.lower_end_vertebra]
            change.current_own_deg = float(own.angle_deg)
            change.levels_note = (f"the curve now spans {own.upper_end_vertebra}-{own.lower_end_vertebra} "
                                  f"({own.angle_deg:.1f} deg)")
        elif levels_from == "current":
            change.levels_note = "a curve not found on the prior film (measured there at the current film's levels)"
        if prior_deg is None or current_deg is None:
            change.reason = (f"end vertebrae {ends[0]}-{ends[1]} not measurable on the "
                             f"{'prior' if prior_deg is None else 'current'} film: {why_p or why_c}")
            curves.append(change)
            continue
        change.change_deg = current_deg - prior_deg
        from_report = recorded is not None and levels_from == "prior"
        if from_report:
            change.levels_note = "; ".join(filter(None, ["the prior reading as its report recorded it", change.levels_note]))
        by_reader = [recorded["by_reader"] if from_report else prior.by_reader(upper, lower),
                     current.by_reader(upper, lower)]
        checked = [False if from_report else prior.check.get(name, False), current.check.get(name, False)]
        limits = [_film_limit(r, name, repeatability, same_reader) for r in by_reader]
        missing = [why for limit, why in limits if limit is None]
        if missing:
            change.reason = missing[0]
            curves.append(change)
            continue
        half = math.sqrt((limits[0][0] ** 2 + limits[1][0] ** 2) / 2)
        change.interval_deg = half
        change.interval_low_deg, change.interval_high_deg = change.change_deg - half, change.change_deg + half
        change.interval_from = f"prior: {limits[0][1]} {limits[0][0]:.1f} deg, current: {limits[1][1]} {limits[1][0]:.1f} deg"
        change.verdict, change.reason = _verdict(change, [check and not reader for check, reader in zip(checked, by_reader)])
        curves.append(change)
    return FollowUp(prior, current, curves, (repeatability or {}).get("_source", ""), same_reader)


def _verdict(change: CurveChange, flagged: list) -> tuple[str, str]:
    """``flagged``: the network's CHECK on the prior and the current film's angle (not moved by a reader)."""
    d, half = change.change_deg, change.interval_deg
    for check, which in zip(flagged, ("prior", "current")):
        if check:
            return "cannot tell", (f"CHECK on the {which} film's {change.name} angle: the network may be off by more "
                                   "than 10 deg there; check its corners")
    if half > WIDEST_INTERVAL_DEG:
        return "cannot tell", (f"the measurement's 95 % interval (+-{half:.1f} deg) is wider than between two "
                               f"readers ({WIDEST_INTERVAL_DEG} deg)")
    if abs(d) < PROGRESSION_DEG:
        return "stable", f"change below {PROGRESSION_DEG:.0f} deg"
    if d > 0 and d - half > 0:
        return "progressed", f"change >= {PROGRESSION_DEG:.0f} deg and beyond the 95 % interval (+-{half:.1f} deg)"
    if d < 0 and d + half < 0:
        return "decreased", f"smaller by {PROGRESSION_DEG:.0f} deg or more, beyond the 95 % interval (+-{half:.1f} deg)"
    return "cannot tell", (f"the change of {signed(d)} deg reaches {PROGRESSION_DEG:.0f} deg but lies within the "
                           f"measurement's 95 % interval (+-{half:.1f} deg)")


CSV_COLUMNS = ("curve", "end_vertebrae", "levels_from", "prior_deg", "current_deg", "change_deg", "interval_deg",
               "interval_low_deg", "interval_high_deg", "verdict", "reason", "current_own_end_vertebrae",
               "current_own_deg", "interval_from")


def csv_rows(follow_up: FollowUp) -> list[dict]:
    rows = []
    for c in follow_up.curves:
        row = {"curve": c.name, "end_vertebrae": "-".join(c.end_vertebrae or []), "levels_from": c.levels_from,
               "verdict": c.verdict, "reason": c.reason, "interval_from": c.interval_from,
               "current_own_end_vertebrae": "-".join(c.current_own_end_vertebrae or [])}
        for key in ("prior_deg", "current_deg", "change_deg", "interval_deg", "interval_low_deg", "interval_high_deg",
                    "current_own_deg"):
            value = getattr(c, key)
            row[key] = "" if value is None else f"{value:.2f}"
        rows.append(row)
    return rows
