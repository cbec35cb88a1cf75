"""The AASCE label check: on a constructed, clean spine it finds nothing; it finds each planted
error (corners swapped, the top vertebra stored last, a vertebra out of order, two vertebrae on
one, corners at the wrong end of the spine), proposes a fix only for the clear ones, and the fix
gives back the clean corners. On the shared AASCE films (skipped when absent) the committed fixes
are exactly what the check proposes today."""
import json

import numpy as np
import pytest

from CobbAngleTools.label_check import FIXES_FILE, apply_fixes, check_landmarks, check_folder, fixes_of, read_fixes
from conftest import AASCE, DOUBLE_CURVE_TILTS, synthetic_spine

CLEAN = synthetic_spine(DOUBLE_CURVE_TILTS)


def kinds(findings):
    return sorted((f.kind, f.vertebra) for f in findings)


def test_a_clean_spine_passes():
    assert check_landmarks(CLEAN) == []


@pytest.mark.parametrize("vertebra, swap, kind", [(16, [1, 0, 3, 2], "left_right"), (4, [2, 3, 0, 1], "top_bottom")])
def test_a_planted_swap_is_found_and_fixed(vertebra, swap, kind):
    planted = CLEAN.copy()
    planted[vertebra] = planted[vertebra][swap]
    findings = check_landmarks(planted)
    assert kinds(findings) == [(kind, ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12",
                                       "L1", "L2", "L3", "L4", "L5"][vertebra])]
    assert findings[0].fix is not None
    assert np.allclose(apply_fixes(planted, [findings[0].fix]), CLEAN)
    assert not np.allclose(planted, CLEAN)  # the input is left as it was


def test_the_top_vertebra_stored_last_is_found_and_reordered():
    planted = np.concatenate([CLEAN[1:], CLEAN[:1]])  # T1 stored at the end (the AASCE pattern)
    findings = check_landmarks(planted)
    assert [f.kind for f in findings] == ["above_T1"]
    assert np.allclose(apply_fixes(planted, [findings[0].fix]), CLEAN)


def test_a_planted_order_inversion_is_found_but_not_guessed():
    planted = CLEAN.copy()
    planted[[6, 7]] = planted[[7, 6]]  # T7 and T8 exchanged
    findings = check_landmarks(planted)
    assert [f.kind for f in findings] == ["order"] and "1 inversions" in findings[0].reason
    assert "T7" in findings[0].reason and "T8" in findings[0].reason
    assert findings[0].fix is None


def test_a_doubled_vertebra_and_spread_corners_are_suspect():
    doubled = CLEAN.copy()
    doubled[16] = CLEAN[15] + [2.0, 3.0]  # L5 annotated on L4
    assert ("doubled", "L5") in kinds(check_landmarks(doubled))
    spread = CLEAN.copy()
    spread[16, 2:] = CLEAN[0, :2] - [0, 40]  # L5's lower corners above T1
    found = check_landmarks(spread)
    assert ("spread", "L5") in kinds(found) and all(f.fix is None for f in found)


def test_a_swap_that_does_not_give_a_sane_vertebra_is_not_fixed():
    planted = CLEAN.copy()
    planted[16] = planted[16][[1, 0, 3, 2]]
    planted[16, 3] = planted[16, 2] + [5.0, 60.0]  # and one corner misplaced too
    findings = check_landmarks(planted)
    assert findings and all(f.fix is None for f in findings)


@pytest.mark.skipif(not AASCE.is_dir(), reason=f"shared AASCE data not found at {AASCE}")
def test_the_committed_fixes_are_what_the_check_proposes():
    shared_aasce = AASCE
    report = check_folder(shared_aasce)
    proposed = fixes_of(report)
    committed = json.loads(FIXES_FILE.read_text())["fixes"]
    assert proposed == committed
    assert sum(1 for f in report.values() if f) >= len(read_fixes())
    from CobbAngleTools.data import read_landmarks

    for film in read_fixes():  # every fixed film passes the check's order test afterwards
        fixed = read_landmarks(shared_aasce, film, "fixed")
        centres = fixed.mean(1)[:, 1]
        assert np.all(np.diff(centres) > 0), film
        assert not np.allclose(fixed, read_landmarks(shared_aasce, film)), film


@pytest.mark.skipif(not AASCE.is_dir(), reason=f"shared AASCE data not found at {AASCE}")
def test_the_geometry_refuses_only_films_the_check_lists():
    """geometry refuses vertebrae out of order: on the fixed labels only films the check lists and
    leaves as annotated (doubled or spread vertebrae, ...); every film whose top vertebra is stored
    last is refused as stored and measured once fixed, and the organisers' files as stored are all
    measured with check_order=False."""
    from CobbAngleLib import geometry
    from CobbAngleTools.data import read_landmarks, read_names

    fixes = read_fixes()
    refused = {"official": set(), "fixed": set()}
    for film in read_names(AASCE):
        for labels in refused:
            landmarks = read_landmarks(AASCE, film, labels)
            try:
                geometry.cobb_angles(landmarks, "clinical")
            except geometry.LandmarkError as e:
                assert "do not run T1 -> L5 down the spine" in str(e), (film, str(e))
                refused[labels].add(film)
                geometry.cobb_angles(landmarks, "aasce", 3000, check_order=False)
                assert check_landmarks(landmarks), film  # the check lists it too
    reordered = {film for film, changes in fixes.items() if any(c["change"] == "reorder" for c in changes)}
    assert reordered and reordered <= refused["official"]
    assert refused["fixed"] and not refused["fixed"] & set(fixes)  # no fixed film is refused
    assert refused["fixed"] <= refused["official"]
    assert refused["official"] - refused["fixed"] == reordered
