"""A follow-up as a DICOM Comprehensive SR (TID 1500), in the current film's study, referencing both
films (the prior one as other evidence when it lies in another study) and the prior film's SR when
it is known.

One measurement group per compared curve ("MT curve (main thoracic) follow-up"), its source
images both films: the Cobb angle on the current film (SNOMED CT 285285000, with the two endplate
lines on the current film), the angle on the prior film (private code, lines on the prior film),
the change and the half width of its 95 % interval (private codes, deg); the end vertebrae
(SNOMED CT vertebra codes), the verdict and where the levels came from (private codes); text: the
reason, the note on the current film's own end vertebrae, where the interval comes from; the prior
SR as a composite reference.

``reference_from_sr``: when a film is known only from an earlier SR (a record from an earlier run
with ``--dicom``, or a PACS), the film's UIDs and the patient from that SR's evidence.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from MSKCommonLib import dicom_export as dx

from . import geometry
from .dicom import vertebra_code
from .followup import FollowUp, Reading

CODES = {
    "cobb-angle-prior": "Cobb angle on the prior film",
    "cobb-angle-change": "Change of the Cobb angle since the prior film",
    "change-interval": "Half width of the 95 % interval of the change",
    "progression-verdict": "Progression verdict",
    "levels-from": "End vertebrae taken from",
    "verdict-reason": "Reason for the verdict",
    "levels-note": "End vertebrae of the current film",
    "interval-from": "Interval from",
    "prior-report": "Report of the prior film",
}


def code(value: str, meaning: Optional[str] = None):
    return dx.code(value, meaning or CODES[value])


def reference_from_sr(sr) -> "object":
    """A dataset standing for the film an SR refers to (its UIDs and the SR's patient and study
    attributes), enough to reference it again."""
    from pydicom.dataset import Dataset

    for sequence in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in sr.get(sequence, []):
            for series in study.ReferencedSeriesSequence:
                for item in series.ReferencedSOPSequence:
                    ds = Dataset()
                    ds.StudyInstanceUID = study.StudyInstanceUID
                    ds.SeriesInstanceUID = series.SeriesInstanceUID
                    ds.SOPClassUID = item.ReferencedSOPClassUID
                    ds.SOPInstanceUID = item.ReferencedSOPInstanceUID
                    same_study = study.StudyInstanceUID == sr.StudyInstanceUID
                    for keyword in dx.TYPE2_COPIED:  # the study's attributes only when the SR shares its study
                        keep = same_study or keyword.startswith("Patient")
                        setattr(ds, keyword, sr.get(keyword, "") if keep else "")
                    return ds
    raise ValueError("the SR references no film")


def recorded_curves(sr) -> dict:
    """The clinical-convention curves an SR of ours (``CobbAngleLib.dicom``) records, as
    ``followup.compare`` takes them: {curve: {"angle_deg", "end_vertebrae", "by_reader"}};
    ``by_reader``: its corners came from a landmark file, or points of the curve's vertebrae were
    moved by hand (the SR's "Points edited by hand")."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    report = hd.sr.ComprehensiveSR.from_dataset(sr)
    out = {}
    for group in report.content.get_image_measurement_groups():
        name = str(group.tracking_identifier).split()[0]
        values = {q.name.value: q.value for q in group.get_qualitative_evaluations()}
        convention = values.get("cobb-convention")
        angles = [m.value for m in group.get_measurements() if m.name == codes.SCT.CobbAngle]
        if name not in geometry.CURVE_NAMES or convention is None or convention.value != "convention-clinical" \
                or not angles or "upper-end-vertebra" not in values or "lower-end-vertebra" not in values:
            continue
        ends = [values["upper-end-vertebra"].meaning.split()[0], values["lower-end-vertebra"].meaning.split()[0]]
        texts = {item.ConceptNameCodeSequence[0].CodeValue: item.TextValue
                 for item in group[0].ContentSequence if item.ValueType == "TEXT"}
        span = set(geometry.VERTEBRA_NAMES[geometry.VERTEBRA_NAMES.index(ends[0]):
                                           geometry.VERTEBRA_NAMES.index(ends[1]) + 1])
        edited = [label.strip() for label in texts.get("points-edited", "").split(",") if label.strip()]
        by_reader = texts.get("landmarks-from", "").startswith("file") or any(
            label.split()[-2] in span for label in edited if len(label.split()) >= 2)
        out[name] = {"angle_deg": float(angles[0]), "end_vertebrae": ends, "by_reader": by_reader}
    return out


def _lines(reading: Reading, lines, source):
    return [dx.polyline(np.asarray(geometry.line_endpoints(reading.landmarks, v, kind)), source) for v, kind in lines]


def build(follow_up: FollowUp, prior_source, current_source, prior_sr=None, editor: str = ""):
    """The Comprehensive SR of ``follow_up``; ``*_source``: the films' datasets (or references)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = dx.algorithm("CobbAngle")
    deg = codes.UCUM.Degree
    groups = []
    for c in follow_up.curves:
        measurements = []
        if c.current_deg is not None:
            measurements.append(hd.sr.Measurement(
                name=codes.SCT.CobbAngle, value=float(c.current_deg), unit=deg, algorithm_id=algorithm,
                referenced_coordinates=_lines(follow_up.current, c.lines, current_source)))
        if c.prior_deg is not None:
            measurements.append(hd.sr.Measurement(
                name=code("cobb-angle-prior"), value=float(c.prior_deg), unit=deg, algorithm_id=algorithm,
                referenced_coordinates=_lines(follow_up.prior, c.lines, prior_source)))
        if c.change_deg is not None:
            measurements.append(hd.sr.Measurement(name=code("cobb-angle-change"), value=float(c.change_deg), unit=deg,
                                                  algorithm_id=algorithm))
        if c.interval_deg is not None:
            measurements.append(hd.sr.Measurement(name=code("change-interval"), value=float(c.interval_deg), unit=deg,
                                                  algorithm_id=algorithm))
        evaluations = [
            hd.sr.QualitativeEvaluation(code("progression-verdict"), code(
                f"verdict-{c.verdict.replace(' ', '-')}", c.verdict)),
            hd.sr.QualitativeEvaluation(code("levels-from"), code(f"levels-{c.levels_from}", f"the {c.levels_from} film")),
        ]
        if c.end_vertebrae:
            evaluations += [
                hd.sr.QualitativeEvaluation(dx.code("upper-end-vertebra"), vertebra_code(c.end_vertebrae[0])),
                hd.sr.QualitativeEvaluation(dx.code("lower-end-vertebra"), vertebra_code(c.end_vertebrae[1]))]
        site = codes.SCT.LumbarSpine if c.name == "TL_L" else codes.SCT.ThoracicSpine
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"{c.name} curve ({c.title}) follow-up"),
            algorithm_id=algorithm, finding_sites=[hd.sr.FindingSite(site)], measurements=measurements or None,
            qualitative_evaluations=evaluations,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(s)
                           for s in (current_source, prior_source)])
        items = [dx.text(code("verdict-reason"), c.reason or c.verdict, "CONTAINS")]
        if c.levels_note:
            items.append(dx.text(code("levels-note"), c.levels_note, "CONTAINS"))
        if c.interval_from:
            items.append(dx.text(code("interval-from"), c.interval_from, "CONTAINS"))
        if prior_sr is not None:
            items.append(hd.sr.CompositeContentItem(
                name=code("prior-report"), referenced_sop_class_uid=prior_sr.SOPClassUID,
                referenced_sop_instance_uid=prior_sr.SOPInstanceUID, relationship_type="CONTAINS"))
        dx.add_items(group, items)
        groups.append(group)
    if not groups:
        raise ValueError("no curve was compared; there is nothing to report in DICOM")
    record = {"review": {"edited_points": {"prior": follow_up.prior.edited_points,
                                           "current": follow_up.current.edited_points}}}
    evidence = [current_source, prior_source] + ([prior_sr] if prior_sr is not None else [])
    return dx.measurement_report(current_source, groups, "CobbAngle", record, editor,
                                 title="MSKMorphometry Cobb follow-up", evidence=evidence)
