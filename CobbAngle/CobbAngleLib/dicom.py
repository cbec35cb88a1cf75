"""A Cobb result as DICOM (``MSKCommonLib.dicom_export``): the SR and the vertebra SEG.

SR: one measurement group per curve (PT, MT, TL_L), tracked as "PT curve" etc.; a curve that is
absent has a group without a measurement whose "Curve status" says "no curve" (or "not on film").
A measured curve's group has
the finding site (thoracic or lumbar spine) and one measurement "Cobb angle" (SNOMED CT
285285000, UCUM deg) whose image coordinates are the two lines it was measured between (the
upper end vertebra's and the lower end vertebra's endplate, or mid-axis in the AASCE convention).
Qualitative evaluations: upper and lower end vertebra and apex (SNOMED CT vertebra codes), the
convention and the curve's role (private codes). Text: the CHECK warning, the points edited by
hand, where the landmarks came from, the vertebrae on the film ("T6-L5", every group). Everything
comes from the record (what the JSON holds).

SEG: the network's vertebra segmentation (the vertebrae on the film of T1..L5), one segment per
vertebra, labelled and coloured as the Slicer segmentation (``colors.VERTEBRA_COLORS``), when the
network ran.
"""
from __future__ import annotations

import numpy as np

from MSKCommonLib import dicom_export as dx

from . import geometry
from .colors import VERTEBRA_COLORS
from .pipeline import record_landmarks, vertebrae_shown


def vertebra_code(name: str):
    from pydicom.sr.codedict import codes

    return getattr(codes.SCT, f"{name}Vertebra")


def line_px(record: dict, line: dict) -> np.ndarray:
    """The two end points (pixels) of one line a curve was measured on."""
    index = geometry.VERTEBRA_NAMES.index(line["vertebra"])
    return np.asarray(geometry.line_endpoints(record_landmarks(record), index, line["line"]), dtype=np.float64)


def build(source, record: dict, live=None, options=None):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .check import check_label

    options = options or dx.DicomOptions()
    algorithm = dx.algorithm("CobbAngle")
    edited = dx.edited_points(record)
    shown = vertebrae_shown(record)  # what was measured: "T6-L5"
    groups = []
    for curve in record.get("curves", []):
        site = codes.SCT.LumbarSpine if curve["name"] == "TL_L" else codes.SCT.ThoracicSpine
        tracking = hd.sr.TrackingIdentifier(identifier=f"{curve['name']} curve ({geometry.CURVE_TITLES[curve['name']]})")
        if curve.get("angle_deg") is None or not curve.get("upper_line") or not curve.get("lower_line"):
            # no curve (its region is on the film and bends nowhere) or not on the film: said, not measured
            status = curve.get("role") or geometry.NO_CURVE
            group = hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, algorithm_id=algorithm, finding_sites=[hd.sr.FindingSite(site)],
                qualitative_evaluations=[
                    hd.sr.QualitativeEvaluation(dx.code("curve-status"), dx.code(
                        f"curve-{status.replace(' ', '-')}", status)),
                    hd.sr.QualitativeEvaluation(dx.code("cobb-convention"), dx.code(
                        f"convention-{record['convention']}", f"{record['convention']} convention"))],
                source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])
            dx.add_items(group, [dx.text(dx.code("vertebrae-shown"), shown, "CONTAINS")])
            groups.append(group)
            continue
        lines = [dx.polyline(line_px(record, curve[key]), source) for key in ("upper_line", "lower_line")]
        measurement = hd.sr.Measurement(
            name=codes.SCT.CobbAngle, value=float(curve["angle_deg"]), unit=codes.UCUM.Degree,
            algorithm_id=algorithm, referenced_coordinates=lines)
        evaluations = [
            hd.sr.QualitativeEvaluation(dx.code("upper-end-vertebra"), vertebra_code(curve["upper_end_vertebra"])),
            hd.sr.QualitativeEvaluation(dx.code("lower-end-vertebra"), vertebra_code(curve["lower_end_vertebra"])),
            hd.sr.QualitativeEvaluation(dx.code("cobb-convention"), dx.code(
                f"convention-{record['convention']}", f"{record['convention']} convention")),
        ]
        if curve.get("apex"):
            evaluations.append(hd.sr.QualitativeEvaluation(dx.code("apex-vertebra"), vertebra_code(curve["apex"])))
        role = curve.get("role") or ""
        coded = role.replace(geometry._FILM_EDGE, "")  # a code's meaning holds 64 characters: the edge note is text
        if coded:
            evaluations.append(hd.sr.QualitativeEvaluation(dx.code("curve-role"), dx.code(
                f"curve-role-{coded}", f"{coded} curve")))
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            algorithm_id=algorithm, finding_sites=[hd.sr.FindingSite(site)],
            measurements=[measurement], qualitative_evaluations=evaluations,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])
        items = [dx.text(dx.code("landmarks-from"), record.get("landmarks_from") or "", "CONTAINS"),
                 dx.text(dx.code("vertebrae-shown"), shown, "CONTAINS")]
        if coded != role:  # "minor, end vertebra at the film edge: the curve may be larger"
            items.append(dx.text(dx.code("curve-role"), role, "CONTAINS"))
        if record.get("warning"):
            items.append(dx.text(dx.code("check-warning"), "CHECK: " + record["warning"], "CONTAINS"))
        label = check_label(record, curve["name"])
        if label:  # this angle's CHECK: "CHECK, confidence 0.41", "confidence 0.93", "edited"
            items.append(dx.text(dx.code("angle-check"), label, "CONTAINS"))
        if edited:
            items.append(dx.text(dx.code("points-edited"), ", ".join(edited), "CONTAINS"))
        dx.add_items(group, items)
        groups.append(group)
    if not groups:
        raise ValueError(f"no Cobb curve was measured on {record.get('image')}; there is nothing to report in DICOM")
    sr = dx.measurement_report(source, groups, "CobbAngle", record, options.editor,
                               title="MSKMorphometry Cobb angles", organization=options.organization)
    seg = None
    labelmap = None if live is None or live.result is None else live.result.vertebra_labelmap
    if labelmap is not None:
        seg = dx.segmentation(source, labelmap, geometry.VERTEBRA_NAMES, VERTEBRA_COLORS, "CobbAngle",
                              types=[vertebra_code(n) for n in geometry.VERTEBRA_NAMES], label="VERTEBRAE",
                              description=f"MSKMorphometry vertebrae {vertebrae_shown(record)}")
    return sr, seg
