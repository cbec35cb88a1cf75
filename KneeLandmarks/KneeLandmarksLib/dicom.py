"""A knee result as a DICOM SR (``MSKCommonLib.dicom_export``).

One measurement group per knee found ("right knee", "left knee"), finding site the knee joint
with its laterality (SNOMED CT), and two measurements in mm (UCUM ``mm``): the medial and the
lateral minimum joint space width (private codes: no standard code names the KNEEL minimum JSW),
each with its line (femur point to tibia point) as image coordinates. Text: the knee's notes, the
points edited by hand, where the landmarks came from. Everything comes from the record.
"""
from __future__ import annotations

from MSKCommonLib import dicom_export as dx


def build(source, record: dict, live=None, options=None):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    options = options or dx.DicomOptions()
    algorithm = dx.algorithm("KneeLandmarks")
    groups = []
    for knee in record.get("knees", []):
        side = knee["side"]
        measurements = []
        for compartment in ("medial", "lateral"):
            value = knee.get(f"jsw_{compartment}_mm")
            if value is None:
                continue
            measurements.append(hd.sr.Measurement(
                name=dx.code(f"jsw-{compartment}-min"), value=float(value), unit=codes.UCUM.Millimeter,
                algorithm_id=algorithm,
                referenced_coordinates=[dx.polyline(knee[f"jsw_{compartment}_points_px"], source)]))
        if not measurements:
            continue
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(identifier=f"{side} knee"),
            algorithm_id=algorithm,
            finding_sites=[hd.sr.FindingSite(codes.SCT.KneeJoint,
                                             laterality=codes.SCT.Right if side == "right" else codes.SCT.Left)],
            measurements=measurements,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])
        items = [dx.text(dx.code("landmarks-from"), record.get("landmarks_from") or "", "CONTAINS")]
        notes = "; ".join(knee.get("notes", []) + list(record.get("warnings", [])))
        if notes:
            items.append(dx.text(dx.code("check-warning"), "CHECK: " + notes, "CONTAINS"))
        own = record.get("review", {}).get("edited_points", {}).get(f"{side}.landmarks", [])
        if own:
            items.append(dx.text(dx.code("points-edited"), ", ".join(own), "CONTAINS"))
        dx.add_items(group, items)
        groups.append(group)
    if not groups:
        raise ValueError(f"no joint space width was measured on {record.get('image')}; there is nothing to report "
                         "in DICOM")
    sr = dx.measurement_report(source, groups, "KneeLandmarks", record, options.editor,
                               title="MSKMorphometry knee joint space width", organization=options.organization)
    return sr, None
