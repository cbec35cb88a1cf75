"""CobbAngle's nodes for the review layer (``MSKCommonLib.review``): how a Cobb result is drawn.

A result is a set of ordinary nodes on the radiograph's volume:
- ``landmarks``: a fiducial node with the corners of the vertebrae on the film (68 for T1-L5),
  labelled ``T7 inf-R`` etc. (editable; moving one measures again through ``geometry``, the
  pipeline's own code, the points mapped back to T1..L5 by their labels);
- ``line.<curve>.<upper|lower>``: one line node per endplate (or mid-axis) an angle uses
  (locked: they follow the corners);
- ``segmentation``: one segment per vertebra, drawn from the network's corners (when it ran);
- the root table: the three angles, their end vertebrae, apices, convention, the network's own
  angles and the warnings, and the points a user moved.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from MSKCommonLib import mrml as common
from MSKCommonLib.review import ATTR_LABELS, MeasureError, Presenter

from . import geometry
from .colors import CURVE_COLORS, LANDMARK_COLOR, VERTEBRA_COLORS
from .pipeline import NAMED_WITH_LANDMARKS, labelled_landmarks

LINE_ROLES = tuple(f"line.{curve}.{end}" for curve in geometry.CURVE_NAMES for end in ("upper", "lower"))
ANGLE_ROLES = tuple(f"angle.{curve}" for curve in geometry.CURVE_NAMES)  # each curve's angle and ends, at its lines
LABEL_COLOR = (0.95, 0.95, 0.95)
CORNER_LABELS = [geometry.corner_label(v, c) for v in range(geometry.N_VERTEBRAE) for c in range(4)]  # T1-L5


class CobbPresenter(Presenter):
    module = "CobbAngle"
    title = "Cobb angles"

    def build(self, live, result) -> None:
        base = live.volume.GetName()
        points, labels = geometry.shown_corners(result.landmarks_px)  # the vertebrae on the film only
        fiducial = live.add_points("landmarks", "vtkMRMLMarkupsFiducialNode", f"{base} Cobb landmarks",
                                   points, labels, LANDMARK_COLOR)
        display = fiducial.GetDisplayNode()
        if display is not None:
            display.SetPointLabelsVisibility(False)  # 68 labels clutter the film; they show on hover
            display.SetGlyphScale(1.5)
        for role in LINE_ROLES:
            _, curve, end = role.split(".")
            line = live.add_points(role, "vtkMRMLMarkupsLineNode", f"{base} {curve} {end}", np.zeros((0, 2)),
                                   color=CURVE_COLORS[curve], locked=True, editable=False)
            if line.GetDisplayNode() is not None:
                line.GetDisplayNode().SetPropertiesLabelVisibility(False)
        # on the film: the level beside each vertebra, and each curve's angle and ends at its lines
        labels = live.add_points("labels", "vtkMRMLMarkupsFiducialNode", f"{base} levels", np.zeros((0, 2)),
                                 color=LABEL_COLOR, locked=True, editable=False)
        for role in ("labels",) + ANGLE_ROLES:
            node = labels if role == "labels" else live.add_points(
                role, "vtkMRMLMarkupsFiducialNode", f"{base} {role.split('.')[1]} angle", np.zeros((0, 2)),
                color=CURVE_COLORS[role.split(".")[1]], locked=True, editable=False)
            display = node.GetDisplayNode()
            if display is not None:
                display.SetGlyphScale(0.5)
                display.SetTextScale(4.5 if role == "labels" else 5.5)
                display.SetPointLabelsVisibility(True)
                display.SetPropertiesLabelVisibility(False)
        if result.vertebra_labelmap is not None:
            live.add_node("segmentation", common.segmentation_from_labelmap(
                live.scene, result.vertebra_labelmap, live.volume, geometry.VERTEBRA_NAMES, VERTEBRA_COLORS,
                f"{base} vertebrae", node=live.reusable("segmentation", "vtkMRMLSegmentationNode")))

    def measurement(self, result):
        return result.measurement

    def measure(self, live, changed_role: Optional[str]):
        record = live.saved_record()
        v = corners_now(live)
        spacing = record.get("pixel_spacing_mm")
        measurement = geometry.cobb_angles(v, record.get("convention", "clinical"),
                                           image_height=record["image_size_px"][1], spacing_mm=spacing)
        return with_chosen_ends(measurement, v, chosen_ends(live), spacing)

    def draw(self, live, measurement) -> None:
        _draw_lines(live, measurement)
        _draw_labels(live, measurement)
        _fill_table(live, measurement)

    def edited(self, live) -> None:
        """The vertebra segments follow their corners once an edit is complete (drawn as the
        pipeline draws them, ``segments.vertebra_labelmap``)."""
        node = live.node("segmentation")
        points = landmarks_px(live)
        if node is None or points.shape != (geometry.N_VERTEBRAE, 4, 2):
            return
        from .segments import vertebra_labelmap

        width, height = live.saved_record()["image_size_px"]
        common.segmentation_from_labelmap(live.scene, vertebra_labelmap(points, (height, width)), live.volume,
                                          geometry.VERTEBRA_NAMES, VERTEBRA_COLORS, node.GetName(), node=node)

    def open_checks(self, live) -> list[str]:
        """The result's warning and each angle whose CHECK is on (the network's, while none of its
        corners was moved: "MT: CHECK, confidence 0.41")."""
        from .check import check_label

        checks = super().open_checks(live)
        if live.measurement is not None:
            record = self.record(live, live.saved_record(), live.measurement)
            for c in live.measurement.curves:
                label = check_label(record, c.name) if c.angle_deg is not None else ""
                if label.startswith("CHECK"):
                    checks.append(f"{c.name}: {label}")
        return checks

    def record(self, live, record: dict, measurement) -> dict:
        points = landmarks_px(live)
        if points.shape == (geometry.N_VERTEBRAE, 4, 2):
            record["landmarks_px"] = labelled_landmarks(points)
        if measurement is not None:
            record.update(measurement.to_dict())
            # the network's confidence no longer applies to a curve whose corners were moved
            from .check import edited_curves

            record["check_edited"] = edited_curves(measurement, live.edited_labels().get("landmarks", []),
                                                   live.saved_record().get("curves", []))
        return record


CHOSEN = ", ends chosen by the reader"


def chosen_ends(live) -> dict:
    """{curve: (upper index, lower index)} of the end vertebrae the reader chose (the record's
    ``chosen_ends``, by vertebra name)."""
    names = live.saved_record().get("chosen_ends") or {}
    return {c: tuple(geometry.VERTEBRA_NAMES.index(n) for n in ends) for c, ends in names.items()}


def with_chosen_ends(measurement, v, chosen: dict, spacing=None):
    """The measurement with each curve whose ends the reader chose measured between them
    (``geometry.curve_between``; a curve the automatic search missed is added so); the roles
    major / minor follow the angles, a chosen curve's role says so."""
    if not chosen or measurement.convention != "clinical":
        return measurement
    curves = []
    for c in measurement.curves:
        if c.name in chosen:
            upper, lower = chosen[c.name]
            c = geometry.curve_between(v, c.name, upper, lower, spacing_mm=spacing)
        curves.append(c)
    measured = [c for c in curves if c.angle_deg is not None]
    major = max(measured, key=lambda c: c.angle_deg).name if measured else None
    for c in measured:
        edge = geometry._FILM_EDGE if geometry._FILM_EDGE in c.role else ""
        c.role = ("major" if c.name == major else "minor") + edge + (CHOSEN if c.name in chosen else "")
    measurement.curves = curves
    return measurement


def choose_ends(live, curve: str, upper: Optional[str], lower: Optional[str]) -> None:
    """The reader chooses the end vertebrae of ``curve`` (names, e.g. "T5", "T11"): its angle is
    measured between them from now on, whatever the corners do; ``None`` for both gives the curve
    back to the automatic choice. Only in the clinical convention. Raises ``ValueError`` (and
    changes nothing) for ends that cannot be measured."""
    import json

    from MSKCommonLib.review import ATTR_RECORD

    record = live.saved_record()
    if curve not in geometry.CURVE_NAMES:
        raise ValueError(f"unknown curve {curve!r}")
    ends = dict(record.get("chosen_ends") or {})
    if upper is None and lower is None:
        ends.pop(curve, None)
    else:
        if record.get("convention", "clinical") != "clinical":
            raise ValueError("end vertebrae are chosen in the clinical convention (the AASCE computation chooses its own)")
        if upper not in geometry.VERTEBRA_NAMES or lower not in geometry.VERTEBRA_NAMES:
            raise ValueError(f"choose two vertebrae T1-L5 as the ends of {curve} (got {upper} and {lower})")
        u, lo = geometry.VERTEBRA_NAMES.index(upper), geometry.VERTEBRA_NAMES.index(lower)
        geometry.curve_between(landmarks_px(live), curve, u, lo)  # raises with the reason when not measurable
        ends[curve] = [upper, lower]
    record["chosen_ends"] = ends
    live.root.SetAttribute(ATTR_RECORD, json.dumps(record))
    live.changed_by_user(None)


# --- the reader names vertebrae and the network counts from them (``CobbOptions.named_vertebrae``)

ATTR_NAMES = "MSKMorphometry.CobbAngle.NamedVertebrae"  # on the film's volume: [{"vertebra", "x", "y"}] (pixels)
NAMED_TITLE = "Vertebrae named"  # the table's column (only on a result counted from names)


def names_given(volume) -> list[dict]:
    """The names the reader gave on this film so far, down the spine: [{"vertebra": "T1", "x", "y"}]
    (film pixels, x right, y down), as the record's ``named_by_reader``."""
    names = common.json_attribute(volume, ATTR_NAMES) or []
    return sorted(names, key=lambda n: geometry.VERTEBRA_NAMES.index(n["vertebra"]))


def name_vertebra(volume, name: str, x: float, y: float) -> list[dict]:
    """The reader says the vertebra whose centre is at (x, y) film pixels is ``name`` (T1..L5);
    naming a level again moves its name. Returns the names given so far. ``ValueError`` (and
    nothing changes) for a name that is no level measured."""
    level = geometry.VERTEBRA_NAMES[geometry.vertebra_index(name)]
    names = [n for n in names_given(volume) if n["vertebra"] != level]
    names.append({"vertebra": level, "x": round(float(x), 3), "y": round(float(y), 3)})
    common.json_attribute(volume, ATTR_NAMES, names)
    return names_given(volume)


def clear_names(volume) -> None:
    """Forget the names given on this film (a result already counted from them stays as it is)."""
    volume.RemoveAttribute(ATTR_NAMES)


def count_from_names(logic, volume, options, on_existing: str = "ask", python=None):
    """Run the network again on ``volume``'s film counting the vertebrae from the names the reader
    gave (``names_given``): the one re-run with names both front ends call, on the path Apply /
    Measure takes (``logic.start_job``). Returns the started job; its result is shown as Apply's
    is, ``logic.present(volume, job.result(), on_existing)``, which replaces the shown result.
    Before any work, and changing nothing, it raises ``ValueError`` when no name is given (or
    with a landmark file) and ``EditedResultExists`` when the shown result has points moved by
    hand and ``on_existing`` is "ask" (the review layer's re-run choice: ask keep / replace). Names
    the pipeline refuses ("T12 is named above T1", a point off the film: ``predict``'s check, in
    the worker, before the network runs; Slicer's process never imports ``predict``) end the job
    with that reason as its error, and nothing is shown."""
    import dataclasses

    named = tuple((n["vertebra"], n["x"], n["y"]) for n in names_given(volume))
    if not named:
        raise ValueError("name a vertebra first: choose its level and click its centre on the film")
    if getattr(options, "landmarks_file", None):
        raise ValueError(NAMED_WITH_LANDMARKS)
    image = logic.read(volume)
    logic.check_rerun(volume, on_existing)
    return logic.start_job(image, dataclasses.replace(options, named_vertebrae=named), python=python)


def counted_from(record: dict) -> str:
    """"Vertebrae counted from T1, T12 (named by the reader)" for a result counted from the reader's
    names (the record's ``named_by_reader``), else ""."""
    named = [n.get("vertebra") for n in record.get("named_by_reader") or []]
    return f"Vertebrae counted from {', '.join(named)} (named by the reader)" if named else ""


def automatic_changes(live, measurement) -> list[str]:
    """Curves whose automatic end vertebrae or role are no longer those the result was shown with
    (a corner moved): said in the table, never silently."""
    if measurement is None:
        return []
    shown = {c.get("name"): c for c in live.saved_record().get("curves") or []}
    chosen = chosen_ends(live)
    notes = []
    for c in measurement.curves:
        before = shown.get(c.name)
        if c.name in chosen or not before:
            continue
        was = (before.get("upper_end_vertebra"), before.get("lower_end_vertebra"), (before.get("role") or "").split(",")[0])
        now = (c.upper_end_vertebra, c.lower_end_vertebra, (c.role or "").split(",")[0])
        if was != now:
            def say(ends):
                return f"{ends[0]}-{ends[1]} {ends[2]}" if ends[0] else ends[2] or "no curve"
            notes.append(f"{c.name}: the automatic choice changed it from {say(was)} to {say(now)}; "
                         f"choose its end vertebrae to keep {was[0]}-{was[1]}" if was[0] else
                         f"{c.name}: the automatic choice changed it from {say(was)} to {say(now)}")
    return notes


def corners_now(live) -> np.ndarray:
    """The corners as they are now (pixels), mapped by their labels to the (17, 4, 2) layout with
    NaN for the vertebrae not on the film (``geometry.corners_by_label``). ``MeasureError`` naming
    the corners the result showed that were removed, or a point that is no corner."""
    points, labels = live.points_px("landmarks"), live.labels("landmarks")
    shown = common.json_attribute(live.node("landmarks"), ATTR_LABELS) or []
    removed = [label for label in shown if label not in labels]
    if removed:
        raise MeasureError(f"the landmarks node has {len(points)} of the result's {len(shown)} corners ("
                           + ", ".join(removed[:4]) + (" ..." if len(removed) > 4 else "")
                           + " removed); put them back (Undo or Reset)")
    try:
        return geometry.corners_by_label(points, labels)
    except geometry.LandmarkError as e:
        raise MeasureError(f"the landmarks node cannot be measured: {e}") from None


def landmarks_px(live) -> np.ndarray:
    """The corners as they are now (pixels): (17, 4, 2) with NaN for the vertebrae not on the film
    when they can be mapped by their labels (``corners_now``), else the (N, 2) points as they are."""
    try:
        return corners_now(live)
    except MeasureError:
        return live.points_px("landmarks")


def set_convention(live, convention: str) -> None:
    """Measure the shown result again in another convention."""
    if convention not in geometry.CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}")
    import json

    from MSKCommonLib.review import ATTR_RECORD

    record = live.saved_record()
    record["convention"] = convention
    live.root.SetAttribute(ATTR_RECORD, json.dumps(record))
    live.remeasure(None)


def warnings_of(live, measurement=None) -> str:
    """The result's warnings, a change the automatic end vertebra choice made (``measurement``:
    the current one) and, when its points cannot be measured, why."""
    return "\n".join(w for w in (live.saved_record().get("warning") or "", *automatic_changes(live, measurement),
                                  live.error) if w)


def _draw_lines(live, measurement) -> None:
    curves = {} if measurement is None else {c.name: c for c in measurement.curves}
    points = landmarks_px(live) if measurement is not None else None
    spacing = live.saved_record().get("pixel_spacing_mm")
    for role in LINE_ROLES:
        line = live.node(role)
        if line is None:
            continue
        _, curve_name, end = role.split(".")
        curve = curves.get(curve_name)
        spec = None if curve is None else (curve.upper_line if end == "upper" else curve.lower_line)
        display = line.GetDisplayNode()
        if spec is None or points is None or curve.angle_deg is None:
            if display is not None:
                display.SetVisibility(False)
            line.SetDescription("not measured")
            continue
        vertebra, kind = spec
        a, b = geometry.line_endpoints(points, vertebra, kind)
        extend = 0.35 * (b - a)  # drawn a little longer than the endplate, as on a film
        live.set_points(role, np.array([a - extend, b + extend]))
        line.SetDescription(
            f"{geometry.CURVE_TITLES[curve_name]} {end} end vertebra {geometry.VERTEBRA_NAMES[vertebra]} ({kind})"
            + ("" if spacing else ", measured in pixels (no pixel spacing)"))
        if display is not None:
            display.SetVisibility(True)


def _draw_labels(live, measurement) -> None:
    """The level labels (T1..L5 beside each vertebra, image left) and each measured curve's text
    ("MT 45.1° T5-T11") beside its lines on the image right, in the curve's colour."""
    points = landmarks_px(live)
    if live.node("labels") is not None:
        if points.shape == (geometry.N_VERTEBRAE, 4, 2):
            shown = geometry.shown_vertebrae(points)  # the levels on the film only
            side = (points[shown, 0] + points[shown, 2]) / 2  # the image-left side of each vertebra
            across = points[shown, 1] - points[shown, 0]
            live.set_points("labels", side - 0.45 * across, [geometry.VERTEBRA_NAMES[i] for i in shown])
        else:
            live.set_points("labels", np.zeros((0, 2)))
    curves = {} if measurement is None else {c.name: c for c in measurement.curves}
    for role in ANGLE_ROLES:
        node = live.node(role)
        if node is None:
            continue
        curve = curves.get(role.split(".")[1])
        if curve is None or curve.angle_deg is None or curve.upper_line is None or points.ndim != 3:
            live.set_points(role, np.zeros((0, 2)))
            continue
        ends = [geometry.line_endpoints(points, v, kind) for v, kind in (curve.upper_line, curve.lower_line)]
        right = np.max([e[:, 0].max() for e in ends])
        middle = np.mean([e[:, 1].mean() for e in ends])
        width = np.linalg.norm(ends[0][1] - ends[0][0])
        text = f"{curve.name.replace('_', '/')} {curve.angle_deg:.1f}° {curve.upper_end_vertebra}-{curve.lower_end_vertebra}"
        live.set_points(role, np.array([[right + 0.6 * width, middle]]), [text])


def _fill_table(live, measurement) -> None:
    record = live.saved_record()
    convention = record.get("convention", "clinical")
    regressed = record.get("network_angles_deg")
    warning = warnings_of(live, measurement)
    edited = ", ".join(live.edited_labels().get("landmarks", []))
    if measurement is None:
        common.fill_table(live.table, [("Curve", list(geometry.CURVE_NAMES)), ("Angle (deg)", [None] * 3),
                                       ("Note", [warning] * 3)])
        return
    curves = measurement.curves
    columns = [
        ("Curve", [c.name for c in curves]),
        ("Region", [geometry.CURVE_TITLES[c.name] for c in curves]),
        ("Angle (deg)", [None if c.angle_deg is None else round(c.angle_deg, 2) for c in curves]),
        ("Upper end vertebra", [c.upper_end_vertebra or "" for c in curves]),
        ("Lower end vertebra", [c.lower_end_vertebra or "" for c in curves]),
        ("Apex", [c.apex or "" for c in curves]),
        ("Role", [c.role for c in curves]),
        ("Convention", [convention] * len(curves)),
    ]
    if regressed and convention == "aasce":  # the regression head's angles are the organisers' columns:
        # beside the AASCE curves of the same name only (beside clinical ones they read as disagreement)
        columns.append(("Network angle (deg)", [regressed.get(c.name) for c in curves]))
    if record.get("check") is not None:  # the CHECK per angle (the network's; "edited" once moved)
        from .check import check_label, edited_curves

        shown = dict(record, check_edited=edited_curves(measurement, live.edited_labels().get("landmarks", []),
                                                        record.get("curves", [])))
        columns.append(("Check", [check_label(shown, c.name) for c in curves]))
    named = [n.get("vertebra") for n in record.get("named_by_reader") or []]
    if named:  # the names the network counted from
        columns.append((NAMED_TITLE, [", ".join(named) + " (by the reader)"] * len(curves)))
    columns.append(("Edited points", [edited] * len(curves)))
    columns.append(("Note", [warning] * len(curves)))
    common.fill_table(live.table, columns)
