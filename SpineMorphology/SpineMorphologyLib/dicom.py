"""A back result as a DICOM SR (``MSKCommonLib.dicom_export``); the photo is first written as a
DICOM Secondary Capture (RGB) that the SR refers to, since back photos are PNG or JPEG.

One measurement group "back surface", finding site the back (SNOMED CT 77568009), one
measurement per surface measure of the record (private codes named as in the record, e.g.
``trunk_length``, with the record's title as meaning): degrees in UCUM ``deg``, lengths in UCUM
``mm`` when the depth was in millimetres, else in relative photo pixels (UCUM ``{px}``). The
spine midline on the photo is the image coordinates of the lateral deviation measures. Text: the
warnings, the points edited by hand, where the depth and keypoints came from.
"""
from __future__ import annotations

from MSKCommonLib import dicom_export as dx

ORIENTATION = ("R", "F")  # a photo taken from behind: the image's right is the patient's right


def unit_of(key: str, units: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if key.endswith("_deg"):
        return codes.UCUM.Degree
    if units == "mm":
        return codes.UCUM.Millimeter
    return hd.sr.CodedConcept("{px}", "UCUM", "relative photo pixels")


def build(source, record: dict, live=None, options=None):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .morphology import MEASURE_TITLES

    options = options or dx.DicomOptions()
    algorithm = dx.algorithm("SpineMorphology")
    units = record.get("units", "mm")
    midline = record.get("midline_px") or []
    measurements = []
    for key, value in (record.get("measures") or {}).items():
        if value is None or not isinstance(value, (int, float)):
            continue
        coordinates = [dx.polyline(midline, source)] if key.startswith("lateral_deviation") and len(midline) > 1 else None
        measurements.append(hd.sr.Measurement(
            name=dx.code(key, MEASURE_TITLES.get(key, key)[:64]), value=float(value), unit=unit_of(key, units),
            algorithm_id=algorithm, referenced_coordinates=coordinates))
    if not measurements:
        raise ValueError(f"no surface measure was made on {record.get('image')}; there is nothing to report in DICOM")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="back surface"), algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Back)], measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])
    items = [dx.text(dx.code("landmarks-from"), f"depth: {record.get('depth_from')}; keypoints: "
                                                 f"{record.get('keypoints_from')}", "CONTAINS")]
    if record.get("warnings"):
        items.append(dx.text(dx.code("check-warning"), "CHECK: " + "; ".join(record["warnings"]), "CONTAINS"))
    edited = dx.edited_points(record)
    if edited:
        items.append(dx.text(dx.code("points-edited"), ", ".join(edited), "CONTAINS"))
    dx.add_items(group, items)
    sr = dx.measurement_report(source, [group], "SpineMorphology", record, options.editor,
                               procedure=hd.sr.CodedConcept("80089008", "SCT", "Photography"),
                               title="MSKMorphometry back surface", organization=options.organization)
    return sr, None
