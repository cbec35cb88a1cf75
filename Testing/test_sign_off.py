"""The reviewer's sign-off in the review layer (``LiveResult.accept``), headless: Accept needs a name,
writes who and when (ISO 8601, UTC) into the record's review section, asks for a confirmation of
open CHECK warnings and records it, is withdrawn by a later edit; the SR of an accepted result is
VERIFIED by the reviewer at the time of Accept, an unreviewed one stays UNVERIFIED."""
from __future__ import annotations

import datetime
import json

import numpy as np
import pydicom
import pytest

from CobbAngleLib import geometry
from conftest import SAMPLE_DATA, write_dicom
from dicom_checks import dciodvfy_errors, person_observers, require_tool

MARKS = SAMPLE_DATA / "SpinePhantom_AP.png.mat"


@pytest.fixture
def shown(slicer_app, tmp_path):
    """The sample's corners (landmark file) on the sample as a DICOM film, shown by the review layer."""
    import cv2

    from CobbAngleLib.pipeline import CobbOptions, CobbPipeline
    from CobbAngleLib.review import CobbPresenter
    from MSKCommonLib import mrml as common
    from MSKCommonLib.image import read_image
    from MSKCommonLib.review import Review

    film = write_dicom(tmp_path / "spine.dcm", cv2.imread(str(SAMPLE_DATA / "SpinePhantom_AP.png"), cv2.IMREAD_UNCHANGED),
                       spacing=(0.2, 0.2))
    image = read_image(film)
    result = CobbPipeline().run(image, CobbOptions(landmarks_file=str(MARKS)))
    volume = common.volume_from_image(slicer_app.scene, image, "film")
    review = Review(CobbPresenter())
    live = review.show(slicer_app.scene, volume, result, on_existing="replace")
    yield live, film, image
    review.detach_all()


def move_corner(live, label="T7 inf-L", step=(0.0, 6.0)):
    from MSKCommonLib import mrml as common

    node = live.node("landmarks")
    index = live.labels("landmarks").index(label)
    xy = common.ras_to_pixels(live.volume, common.control_points(node)[index:index + 1])[0]
    node.SetNthControlPointPosition(index, *common.pixels_to_ras(live.volume, xy + np.asarray(step))[0])


def test_accept_needs_a_name_and_writes_who_and_when(shown):
    live, _, _ = shown
    assert live.record()["review"]["accepted_by"] is None and live.record()["review"]["accepted_at"] is None
    for nobody in ("", "   ", None):
        with pytest.raises(ValueError, match="reviewer's name"):
            live.accept(nobody)
    assert live.acceptance() == {}
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    signed = live.accept("  Jane   Doe ")
    review = live.record()["review"]
    assert review["accepted_by"] == "Jane Doe" == signed["accepted_by"]
    assert review["accepted_at"].endswith("Z")
    when = datetime.datetime.fromisoformat(review["accepted_at"].replace("Z", "+00:00"))
    assert when.tzinfo is not None and before <= when <= datetime.datetime.now(datetime.timezone.utc)
    assert review["checks_acknowledged"] == []  # the sample's corners carry no CHECK
    # an edit after Accept withdraws it: the reviewer signed other corners
    move_corner(live)
    assert live.acceptance() == {} and live.record()["review"]["accepted_by"] is None
    assert live.edited()


def test_accept_with_an_open_check_needs_its_confirmation_which_is_recorded(shown):
    from MSKCommonLib.review import ATTR_RECORD, ChecksOpen

    live, _, _ = shown
    record = live.saved_record()
    record.update(warning="regression head and corners disagree by 14 deg", check={"MT": True, "PT": False},
                  angle_confidence={"MT": 0.41, "PT": 0.9})
    live.root.SetAttribute(ATTR_RECORD, json.dumps(record))
    live.remeasure(None)  # the table shows the record's warning
    checks = live.open_checks()
    assert checks == ["CHECK: regression head and corners disagree by 14 deg", "MT: CHECK, confidence 0.41"]
    with pytest.raises(ChecksOpen) as refused:
        live.accept("Jane Doe")
    assert refused.value.checks == checks and live.acceptance() == {}
    with pytest.raises(ChecksOpen):  # a confirmation of some of them is not enough
        live.accept("Jane Doe", checks[:1])
    live.accept("Jane Doe", checks)
    assert live.record()["review"]["checks_acknowledged"] == checks
    # a moved corner of the MT curve: its CHECK becomes "edited" (checked by the user), not open any more
    live.withdraw_acceptance()
    move_corner(live, "T9 sup-R")
    assert live.open_checks() == checks[:1]


def test_the_sr_of_an_accepted_result_is_verified_by_the_reviewer_and_an_unreviewed_one_is_not(shown, tmp_path):
    from CobbAngleLib import files
    from MSKCommonLib.dicom_export import DicomOptions, DicomRequest

    require_tool("dciodvfy")
    live, film, image = shown
    request = DicomRequest(film, image, DicomOptions(editor="Jane Doe", organization="City Hospital"))
    unreviewed = files.write_outputs(live, tmp_path / "before", "film", overlay=False, dicom=request)
    ds = pydicom.dcmread(unreviewed["dicom_sr"])
    assert ds.VerificationFlag == "UNVERIFIED" and "VerifyingObserverSequence" not in ds
    assert person_observers(unreviewed["dicom_sr"]) == []  # nothing edited, nobody accepted
    signed = live.accept("Jane Doe", at="2026-12-06T14:05:09Z")
    written = files.write_outputs(live, tmp_path / "after", "film", overlay=False, dicom=request)
    assert dciodvfy_errors(written["dicom_sr"]) == []
    ds = pydicom.dcmread(written["dicom_sr"])
    assert ds.VerificationFlag == "VERIFIED"
    (observer,) = ds.VerifyingObserverSequence
    assert str(observer.VerifyingObserverName) == "Doe^Jane" and observer.VerifyingOrganization == "City Hospital"
    assert str(observer.VerificationDateTime).startswith("20261206140509")
    assert person_observers(written["dicom_sr"]) == ["Doe^Jane"]
    record = json.loads(written["angles"].read_text())
    assert {k: record["review"][k] for k in signed} == signed
    # the unreviewed JSON and the accepted one differ in the sign-off only
    before = json.loads(unreviewed["angles"].read_text())
    assert {k: v for k, v in record["review"].items() if k not in signed} == \
        {k: v for k, v in before["review"].items() if k not in signed}
    assert before["review"]["accepted_by"] is None


def test_the_report_line_says_each_curve_its_ends_and_no_curve():
    from CobbAngleLib.files import report_line
    from conftest import synthetic_spine

    m = geometry.cobb_angles(synthetic_spine([10] * 5 + [5, 0, -5] + [-10] * 9))
    line = report_line(m.to_dict())
    assert line == "Cobb angles (clinical convention): PT no curve; MT 20.0 deg T1-T9 (apex T6, major); TL/L no curve"


def test_the_sr_of_a_curve_with_chosen_ends_is_valid_and_says_so(shown, tmp_path):
    from CobbAngleLib import files
    from CobbAngleLib.review import choose_ends
    from dicom_checks import read_sr, vertebra_name
    from MSKCommonLib.dicom_export import DicomOptions, DicomRequest

    require_tool("dciodvfy")
    live, film, image = shown
    choose_ends(live, "MT", "T3", "T12")
    live.accept("Jane Doe")
    written = files.write_outputs(live, tmp_path / "out", "film", overlay=False,
                                  dicom=DicomRequest(film, image, DicomOptions(editor="Jane Doe")))
    assert dciodvfy_errors(written["dicom_sr"]) == []
    record = json.loads(written["angles"].read_text())
    assert record["chosen_ends"] == {"MT": ["T3", "T12"]}
    mt = {g["tracking"].split()[0]: g for g in read_sr(written["dicom_sr"])}["MT"]
    assert vertebra_name(mt["evaluations"]["Upper end vertebra"]) == "T3"
    assert mt["evaluations"]["Curve role"].endswith("ends chosen by the reader curve")
    assert pydicom.dcmread(written["dicom_sr"]).VerifyingObserverSequence[0].VerifyingOrganization == "not stated"
