"""A result as DICOM objects that a PACS stores and shows next to the film: one Comprehensive SR
(TID 1500 "Imaging Measurement Report") per film, a DICOM SEG when the module segmented the film,
and, for a film that was not DICOM (PNG, JPEG, TIFF, NRRD), a Secondary Capture of it first so
that every reference points at a real image.

Shared here (highdicom): the source image (``source_dataset``), the observation context (the
algorithm as device observer, the person who moved points as person observer), coded concepts,
image coordinates (SCOORD), the report and the SEG. Each module's ``<Module>Lib.dicom`` builds its
measurement groups from the result's record, the same record the JSON file holds (with the points
the user moved), and calls ``write_objects``.

Coordinates: the record's pixel positions have pixel centres at integers (x right, y down); DICOM
SCOORD puts (0, 0) at the top-left corner of the top-left pixel, so SCOORD = pixel + 0.5.

No Slicer, no network runtime. highdicom and pydicom are imported when used.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

MANUFACTURER = "MSKMorphometry"
# concepts no standard code names (which end vertebra, the convention, "points edited by hand",
# the back's surface measures): a private coding scheme, as PS3.16 8.2 allows ("99" prefix)
SCHEME = "99MSKMORPH"
SCHEME_NAME = "MSKMorphometry private codes"
SR_SERIES_NUMBER, SEG_SERIES_NUMBER, SC_SERIES_NUMBER = 9701, 9702, 9700
SCOORD_OFFSET = 0.5
# patient and study attributes (type 2) that the SR and SEG copy from the film
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")  # SCOORD = pixel + 0.5 (see the module docstring)

# the private codes (value -> meaning); README "Results into the PACS" lists them
CODES = {
    "upper-end-vertebra": "Upper end vertebra",
    "lower-end-vertebra": "Lower end vertebra",
    "apex-vertebra": "Apical vertebra",
    "cobb-convention": "Cobb angle convention",
    "curve-role": "Curve role",
    "curve-status": "Curve status",
    "points-edited": "Points edited by hand",
    "landmarks-from": "Landmarks from",
    "vertebrae-shown": "Vertebrae on the film",
    "check-warning": "Check warning",
    "angle-check": "Check of this angle",
    "jsw-medial-min": "Medial minimum joint space width",
    "jsw-lateral-min": "Lateral minimum joint space width",
}


def code(value: str, meaning: Optional[str] = None):
    """A concept of the private scheme."""
    import highdicom as hd

    return hd.sr.CodedConcept(value, SCHEME, meaning or CODES[value])


def version() -> str:
    try:
        from importlib.metadata import version as v

        return v("mskmorphometry")
    except Exception:
        return "0.1.0"


@dataclass
class DicomOptions:
    """What the user says about the DICOM output: the patient and study of a film that was not
    DICOM (left empty when not given), and who edited the points (when known)."""

    patient_name: str = ""
    patient_id: str = ""
    study_instance_uid: str = ""
    accession_number: str = ""
    editor: str = ""  # the reviewer: who moved points and accepted (Slicer's user; --reviewer / --editor)
    organization: str = ""  # the reviewer's organisation, named with them when they verify the SR


def is_dicom_file(path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    return Path(path).suffix.lower() in (".dcm", ".dicom")


# --------------------------------------------------------------------------------------------
# the source image

def source_dataset(path, image, out: Path, stem: str, options: Optional[DicomOptions] = None,
                   orientation=("L", "F"), spacing_mm=None):
    """The film the SR and SEG refer to, and the files written for it: the DICOM file itself when
    the input was one (read again with pydicom, so its UIDs are the PACS's own), else a Secondary
    Capture of the pixels written as ``out/<stem>_sc.dcm`` (new UIDs). Raises ``ValueError`` when
    a DICOM input lacks the UIDs a reference needs."""
    import pydicom

    options = options or DicomOptions()
    if path is not None and is_dicom_file(path):
        ds = pydicom.dcmread(str(path))
        check_source(path, ds)
        for keyword in TYPE2_COPIED:  # the SR and SEG copy these; a film may lack them (empty is valid)
            if keyword not in ds:
                setattr(ds, keyword, "")
        return ds, {}
    ds = secondary_capture(image, options, orientation, spacing_mm)
    sc_path = Path(out) / f"{stem}_sc.dcm"
    ds.save_as(str(sc_path), enforce_file_format=True)
    return pydicom.dcmread(str(sc_path)), {"dicom_sc": sc_path}


def check_source(path, ds=None) -> None:
    """Raise ``ValueError`` (one line) when a DICOM film lacks the UIDs an SR's reference needs;
    nothing to check for other files (they get a Secondary Capture)."""
    import pydicom

    if path is None or not is_dicom_file(path):
        return
    if ds is None:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception as e:
            raise ValueError(f"{Path(path).name} cannot be read as DICOM for the SR ({type(e).__name__})") from None
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
               if not getattr(ds, k, None)]
    if missing:
        raise ValueError(f"{Path(path).name} has no {', '.join(missing)}; the DICOM SR cannot refer to it "
                         "(nothing was written)")


def secondary_capture(image, options: Optional[DicomOptions] = None, orientation=("L", "F"), spacing_mm=None):
    """A DICOM Secondary Capture of an ``Image`` (new UIDs): the colour pixels when the file had
    colour (RGB), else the gray pixels (8 or 16 bit, as stored); the pixel spacing when known; the
    patient and study empty unless given in ``options``; ``orientation``: the patient directions
    of the rows and columns (an AP radiograph: ("L", "F"); a back photo from behind: ("R", "F"));
    ``spacing_mm``: the spacing the measurement used (row, column) when the file states none (the
    user's ``--spacing``)."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    options = options or DicomOptions()
    if image.rgb is not None:
        pixels, photometric, bits = np.ascontiguousarray(image.rgb, dtype=np.uint8), "RGB", 8
    elif image.bits == 8:
        pixels, photometric, bits = np.clip(np.round(image.pixels), 0, 255).astype(np.uint8), "MONOCHROME2", 8
    else:
        low = float(image.pixels.min())
        shifted = image.pixels - min(low, 0.0)
        pixels, photometric, bits = np.clip(np.round(shifted), 0, 65535).astype(np.uint16), "MONOCHROME2", 16
    spacing = image.spacing_mm if image.spacing_mm is not None else spacing_mm
    now = datetime.datetime.now()
    sc = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation=photometric, bits_allocated=bits,
        coordinate_system="PATIENT",
        study_instance_uid=options.study_instance_uid or generate_uid(),
        series_instance_uid=generate_uid(), series_number=SC_SERIES_NUMBER, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer=MANUFACTURER,
        patient_id=options.patient_id or None, patient_name=options.patient_name or None,
        accession_number=options.accession_number or None,
        study_date=now.date(), study_time=now.time().replace(microsecond=0),
        pixel_spacing=None if spacing is None else tuple(float(s) for s in spacing),
        patient_orientation=tuple(orientation),
    )
    sc.SeriesDescription = f"MSKMorphometry copy of {image.name}"[:64]
    sc.Laterality = ""  # General Series, type 2C: a spine or a back has none
    sc.ConversionType = "WSD"
    return sc


# --------------------------------------------------------------------------------------------
# content: coordinates, text, the observers

def polyline(points_px, source):
    """Image coordinates of a line or polyline (pixels, N x 2) on ``source``, for a measurement."""
    import highdicom as hd

    data = np.asarray(points_px, dtype=np.float64).reshape(-1, 2) + SCOORD_OFFSET
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=data,
        source_image=hd.sr.SourceImageForRegion.from_source_image(source))


def text(concept, value: str, relationship="HAS PROPERTIES"):
    import highdicom as hd

    return hd.sr.TextContentItem(name=concept, value=str(value)[:1024], relationship_type=relationship)


def add_items(template, items) -> None:
    """Append content items under a template's container (the group or the measurement)."""
    container = template[0]
    if not hasattr(container, "ContentSequence"):
        from pydicom.sequence import Sequence as DicomSequence

        container.ContentSequence = DicomSequence([])
    for item in items:
        container.ContentSequence.append(item)


def algorithm(module: str):
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(name=f"MSKMorphometry {module}", version=version())


def edited_points(record: dict) -> list:
    """The labels of the points a user moved (role prefix when the module has several)."""
    edited = record.get("review", {}).get("edited_points", {}) or {}
    single = len(edited) == 1
    return [label if single else f"{role} {label}" for role, labels in edited.items() for label in labels]


def observation_context(module: str, editor: str = ""):
    """The algorithm as the device observer; the person who moved points (when known) first."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=f"MSKMorphometry {module}", manufacturer_name=MANUFACTURER,
            model_name=f"{module} {version()}"))
    person = None
    if editor:
        person = hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=_person_name(editor)))
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def _person_name(name: str) -> str:
    parts = name.strip().split()
    return "^".join([parts[-1], " ".join(parts[:-1])]) if len(parts) > 1 else name.strip()


# --------------------------------------------------------------------------------------------
# the objects

def measurement_report(source, groups, module: str, record: dict, editor: str = "",
                       procedure=None, title: str = "", evidence=None, organization: str = ""):
    """The Comprehensive SR (TID 1500) of ``groups`` (measurement groups on ``source``). The
    person observer is the reviewer who accepted the result (the record's ``review.accepted_by``),
    else ``editor`` when the record has points edited by hand. An accepted result's SR is
    ``VERIFIED`` by that reviewer at the time of Accept (``organization``, else the film's
    institution, as the verifying organisation); any other stays ``UNVERIFIED``. ``evidence``:
    every object the groups reference (default ``[source]``); the SR joins the first one's study."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    review = record.get("review") or {}
    reviewer = review.get("accepted_by") or ""
    person = reviewer or (editor if edited_points(record) else "")
    report = hd.sr.MeasurementReport(
        observation_context=observation_context(module, person),
        procedure_reported=procedure or hd.sr.CodedConcept("363680008", "SCT", "Radiographic imaging procedure"),
        imaging_measurements=groups)
    verified = {}
    if reviewer:
        verified = dict(is_verified=True, verifying_observer_name=_person_name(reviewer),
                        verifying_organization=(organization or str(source.get("InstitutionName") or "")
                                                or "not stated")[:64])
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence or [source], content=report[0], series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        series_description=(title or f"MSKMorphometry {module}")[:64], is_complete=True, **verified)
    if reviewer and review.get("accepted_at"):  # the time of Accept, not of writing
        from pydicom.valuerep import DT

        accepted = datetime.datetime.fromisoformat(review["accepted_at"].replace("Z", "+00:00"))
        sr.VerifyingObserverSequence[0].VerificationDateTime = DT(accepted)
    sr.SoftwareVersions = version()
    declare_scheme(sr)
    return sr


def declare_scheme(ds) -> None:
    """The private coding scheme, declared in the Coding Scheme Identification Sequence."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    ds.CodingSchemeIdentificationSequence = DicomSequence([item])


def segmentation(source, labelmap: np.ndarray, names: Sequence[str], colours, module: str, types=None,
                 label: str = "MSKMORPH", description: str = ""):
    """A binary DICOM SEG of ``labelmap`` (H x W, 0 = background, k = ``names[k-1]``) on
    ``source``'s pixel grid and frame of reference, with one segment per label present (as the
    Slicer segmentation has), numbered 1.. in label order, named ``names[k-1]`` and coloured
    ``colours[k-1]`` (RGB 0..1) as in Slicer. None when no label is present."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    labelmap = np.asarray(labelmap)
    if labelmap.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(f"the segmentation is {labelmap.shape[1]} x {labelmap.shape[0]} pixels but the film is "
                         f"{source.Columns} x {source.Rows}")
    present = [k for k in range(1, len(names) + 1) if (labelmap == k).any()]
    if not present:
        return None
    algo = hd.AlgorithmIdentificationSequence(name=f"MSKMorphometry {module}", version=version(),
                                              family=codes.DCM.ArtificialIntelligence)
    descriptions = []
    relabelled = np.zeros(labelmap.shape, np.uint8)
    for number, k in enumerate(present, start=1):
        relabelled[labelmap == k] = number
        rgb = [float(c) * 255.0 for c in colours[k - 1]]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=names[k - 1],
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=(types[k - 1] if types else codes.SCT.AnatomicalStructure),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
            tracking_uid=generate_uid(), tracking_id=names[k - 1],
            display_color=hd.color.CIELabColor.from_rgb(*rgb)))
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=relabelled[None], segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=f"MSKMorphometry {module}", software_versions=version(),
        device_serial_number="0", content_label=label, content_description=description or None,
        omit_empty_frames=True)
    seg.SeriesDescription = (description or f"MSKMorphometry {module}")[:64]
    if "FrameOfReferenceUID" not in source:
        # a projection film: the SEG lies on the film's own pixel grid (Spatial Locations Preserved),
        # whose spacing the film states; no Pixel Measures (they would need a slice thickness)
        shared = seg.SharedFunctionalGroupsSequence[0]
        if "PixelMeasuresSequence" in shared:
            del shared.PixelMeasuresSequence
        if "PatientOrientation" not in seg:
            seg.PatientOrientation = source.get("PatientOrientation", "")  # General Image, type 2C
    return seg


def write_objects(out: Path, stem: str, sr=None, seg=None) -> dict:
    """Write ``NAME_sr.dcm`` and ``NAME_seg.dcm``; returns {kind: path}."""
    out = Path(out)
    written = {}
    if sr is not None:
        written["dicom_sr"] = out / f"{stem}_sr.dcm"
        sr.save_as(str(written["dicom_sr"]), enforce_file_format=True)
    if seg is not None:
        written["dicom_seg"] = out / f"{stem}_seg.dcm"
        seg.save_as(str(written["dicom_seg"]), enforce_file_format=True)
    return written


@dataclass
class DicomRequest:
    """What ``write_outputs(..., dicom=...)`` needs: the file the film was read from (a DICOM file
    is referenced as it is; any other is copied as a Secondary Capture), the ``Image`` read from
    it, and the user's ``DicomOptions``."""

    path: Optional[Path]
    image: object
    options: DicomOptions = field(default_factory=DicomOptions)


def export(request: DicomRequest, live, record: dict, out: Path, stem: str, build, orientation=("L", "F")) -> dict:
    """The module's ``build(source, record, live, options) -> (sr, seg or None)`` on the film's
    DICOM source; writes the objects and returns {kind: path} (with the SC when one was made)."""
    source, written = source_dataset(request.path, request.image, out, stem, request.options, orientation,
                                     record.get("pixel_spacing_mm"))
    sr, seg = build(source, record, live, request.options)
    written.update(write_objects(out, stem, sr, seg))
    return written
