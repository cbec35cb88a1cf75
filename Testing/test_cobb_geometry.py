"""Cobb geometry: the organisers' angles reproduced, the clinical convention on spines with known
angles, cropped films, bad landmarks."""
import numpy as np
import pytest

from CobbAngleLib import geometry
from CobbAngleLib.geometry import LandmarkError, cobb_angles
from CobbAngleLib.landmarks_io import read_aasce_mat, write_aasce_mat
from conftest import DOUBLE_CURVE_TILTS, synthetic_spine


def test_aasce_convention_reproduces_all_organiser_angles(aasce):
    import cv2

    names = [l.strip() for l in open(aasce / "labels" / "filenames.csv") if l.strip()]
    truth = np.loadtxt(aasce / "labels" / "angles.csv", delimiter=",")
    assert len(names) == len(truth) == 481
    computed = []
    for name in names:
        landmarks = read_aasce_mat(aasce / "labels" / f"{name}.mat")
        height = cv2.imread(str(aasce / "images" / name), cv2.IMREAD_GRAYSCALE).shape[0]
        # their files as stored: 18 store the top vertebra last, a few mark two vertebrae on one
        result = cobb_angles(landmarks, "aasce", image_height=height, check_order=False)
        computed.append([result.angles[k] for k in geometry.CURVE_NAMES])
    error = np.abs(np.array(computed) - truth)
    assert error.max() < 0.01, f"worst image {names[int(error.max(1).argmax())]}: {error.max():.4f} deg"
    assert geometry.smape(truth, computed) < 0.01


def test_clinical_convention_finds_the_curves_that_were_built():
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    result = cobb_angles(spine, "clinical")
    mt, tl, pt = result.curve("MT"), result.curve("TL_L"), result.curve("PT")
    assert mt.angle_deg == pytest.approx(35.0, abs=1e-6)  # T5 sup +20 to T11 inf -15
    assert (mt.upper_end_vertebra, mt.lower_end_vertebra) == ("T5", "T11")
    assert mt.role == "major"
    assert mt.apex in ("T7", "T8", "T9")
    assert tl.angle_deg == pytest.approx(23.0, abs=1e-6)  # T11 sup -15 to L3 inf +8
    assert (tl.upper_end_vertebra, tl.lower_end_vertebra) == ("T11", "L3")
    assert pt.angle_deg == pytest.approx(23.0, abs=1e-6)  # T1 sup -3 to T5 inf +20
    assert (pt.upper_end_vertebra, pt.lower_end_vertebra) == ("T1", "T5")
    assert result.curve("MT").upper_line == (4, "sup") and result.curve("MT").lower_line == (10, "inf")


def test_straight_spine_has_no_curve_in_either_convention():
    spine = synthetic_spine([0] * 17)
    for convention in geometry.CONVENTIONS:
        result = cobb_angles(spine, convention, image_height=2400)
        if convention == "clinical":  # no curve anywhere: no angle and no end vertebrae, never 0.0
            assert result.angles == {"PT": None, "MT": None, "TL_L": None}
            assert {c.role for c in result.curves} == {"no curve"} and not any(c.upper_line for c in result.curves)
        else:  # the organisers' computation always gives three angles
            assert all(abs(a) < 1e-6 for a in result.angles.values()), (convention, result.angles)


@pytest.mark.parametrize("convention", geometry.CONVENTIONS)
def test_angles_do_not_depend_on_film_rotation_or_mirroring(convention):
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    reference = cobb_angles(spine, convention, image_height=2400).angles
    theta = np.radians(4.0)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    rotated = (spine - 1000) @ rotation.T + 1000
    assert cobb_angles(rotated, convention, image_height=2400).angles == pytest.approx(reference, abs=1e-6)
    mirrored = spine.copy()
    mirrored[..., 0] = 1000 - mirrored[..., 0]
    mirrored = mirrored[:, [1, 0, 3, 2]]  # the image's left corner is now the other one
    assert cobb_angles(mirrored, convention, image_height=2400).angles == pytest.approx(reference, abs=1e-6)


def test_cropped_film_measured_clinically_and_refused_by_aasce():
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    spine[:3] = np.nan  # T1-T3 above the film's edge
    result = cobb_angles(spine, "clinical")
    assert result.vertebrae_present[0] == "T4"
    assert result.curve("MT").angle_deg == pytest.approx(35.0, abs=1e-6)
    # the proximal curve's upper end may lie above the film: measured, and said so
    assert result.curve("PT").upper_end_vertebra == "T4"
    assert "film edge" in result.curve("PT").role
    assert "film edge" not in result.curve("MT").role
    assert "T4-L5" in result.note
    spine[:7] = np.nan  # T1-T7 missing: no proximal thoracic region at all
    assert cobb_angles(spine, "clinical").curve("PT").angle_deg is None
    assert cobb_angles(spine, "clinical").curve("PT").role == "not on film"
    with pytest.raises(LandmarkError, match="needs all 17 vertebrae"):
        cobb_angles(spine, "aasce", image_height=2400)


@pytest.mark.parametrize(
    "landmarks, message",
    [
        (np.zeros((60, 2)), "68 corner points"),
        (np.full((17, 4, 2), np.nan), "at least 2 vertebrae"),
    ],
)
def test_unmeasurable_landmarks_are_refused_clearly(landmarks, message):
    with pytest.raises(LandmarkError, match=message):
        cobb_angles(landmarks, "clinical")


def test_a_gap_in_the_vertebrae_is_refused():
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    spine[8] = np.nan
    with pytest.raises(LandmarkError, match="contiguous.*T9"):
        cobb_angles(spine, "clinical")


def test_smape_matches_the_challenge_definition():
    truth = np.array([[10.0, 20.0, 30.0], [0.0, 0.0, 0.0]])
    predicted = np.array([[12.0, 18.0, 30.0], [0.0, 0.0, 0.0]])
    # image 1: (2 + 2 + 0) / (22 + 38 + 60) = 4 / 120; image 2: 0 / 0 counts as 0
    assert geometry.smape(truth, predicted) == pytest.approx(100 * (4 / 120) / 2)
    # a film that could not be measured (its angles NaN) is a miss, not a perfect film
    unmeasured = np.array([[12.0, 18.0, 30.0], [np.nan, np.nan, np.nan]])
    assert geometry.smape(np.array([[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]]), unmeasured) == pytest.approx(
        100 * (4 / 120 + 1) / 2)


def test_mat_file_round_trip_and_bad_mat_files(tmp_path):
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    path = write_aasce_mat(tmp_path / "film with spaces.png.mat", spine)
    assert np.array_equal(read_aasce_mat(path), spine)
    (tmp_path / "text.mat").write_text("not a mat file")
    with pytest.raises(LandmarkError, match="not a readable MATLAB"):
        read_aasce_mat(tmp_path / "text.mat")
    import scipy.io

    scipy.io.savemat(str(tmp_path / "other.mat"), {"points": np.zeros((68, 2))})
    with pytest.raises(LandmarkError, match="no 'p2'.*points"):
        read_aasce_mat(tmp_path / "other.mat")
    with pytest.raises(LandmarkError, match="not found"):
        read_aasce_mat(tmp_path / "missing.mat")


def test_vertebrae_out_of_order_are_refused_with_the_vertebrae_named():
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    swapped = spine.copy()
    swapped[[6, 7]] = spine[[7, 6]]  # T7 and T8 exchanged: the row named T8 lies above the one named T7
    for convention in geometry.CONVENTIONS:
        with pytest.raises(LandmarkError) as refused:
            cobb_angles(swapped, convention, image_height=2400)
        assert str(refused.value) == ("the vertebrae do not run T1 -> L5 down the spine: T8 is not below T7 "
                                      "(a vertebra stored out of place, or two vertebrae marked on one)")
        measured = cobb_angles(swapped, convention, image_height=2400, check_order=False)
        assert measured.vertebrae_present == geometry.VERTEBRA_NAMES
    assert geometry.vertebrae_out_of_order(swapped) == [6]
    assert geometry.vertebrae_out_of_order(swapped, 7, 16) == [] and geometry.vertebrae_out_of_order(swapped, 0, 6) == []


def test_the_order_check_reads_any_scale_and_refuses_a_vertebra_marked_on_another():
    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    top = spine.copy()
    top[[0, 1]] = spine[[1, 0]]  # T1 and T2 exchanged: found from T1 on, by default
    assert geometry.vertebrae_out_of_order(top) == [0]
    with pytest.raises(LandmarkError, match="T2 is not below T1"):
        geometry.present_range(top)
    assert geometry.present_range(top, check_order=False) == (0, 16)
    doubled = spine.copy()
    doubled[9] = spine[8]  # T10 marked exactly on T9: no step down the spine at all
    assert geometry.vertebrae_out_of_order(doubled) == [8]
    # the test is a sign, not a size: a spine in metres (steps of 0.11, heights of 0.07) is measured
    assert geometry.vertebrae_out_of_order(spine * 1e-3) == []
    assert cobb_angles(spine * 1e-3).angles == pytest.approx(cobb_angles(spine).angles, abs=1e-9)
