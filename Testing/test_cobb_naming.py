"""Names by anatomy (``CobbAngleLib.vertebra_level``) without the network: the chain extended along
the spine, one shift of the whole chain chosen by the summed evidence, the corners and per-vertebra
values renamed, the vertebrae off the film left out."""
import numpy as np
import pytest

from CobbAngleLib.vertebra_level import (
    EXTEND, LEVELS, T1_CLASS, Naming, choose_shift, extended_chain, level_class, on_film, renamed_corners,
    renamed_labels, shift_scores,
)
from conftest import DOUBLE_CURVE_TILTS, synthetic_spine

N = 17 + 2 * EXTEND


def evidence_for(true_shift: int, sure: float = 0.9) -> np.ndarray:
    """(N, 21) log-evidence of a chain whose position i (0 = stage 1's T1) is level i + true_shift."""
    cls = level_class(np.arange(N) - EXTEND + true_shift)
    p = np.full((N, len(LEVELS)), (1 - sure) / (len(LEVELS) - 1))
    p[np.arange(N), cls] = sure
    return np.log(p)


def test_levels_are_above_c7_c7_t1_to_l5_s1_below_s1():
    assert LEVELS[T1_CLASS] == "T1" and LEVELS[1] == "C7" and LEVELS[T1_CLASS + 16] == "L5"
    assert LEVELS[T1_CLASS + 17] == "S1" and len(LEVELS) == 21
    np.testing.assert_array_equal(level_class([-5, -2, -1, 0, 16, 17, 18, 30]), [0, 0, 1, 2, 18, 19, 20, 20])


@pytest.mark.parametrize("true_shift", [-3, -1, 0, 1, 2, 5])
def test_the_shift_with_the_evidence_is_chosen(true_shift):
    shown = np.ones(N, bool)
    assert choose_shift(evidence_for(true_shift), shown) == true_shift
    # positions off the film say nothing: the same shift from the rest
    shown[:EXTEND + 3] = False
    assert choose_shift(evidence_for(true_shift), shown) == true_shift


def test_one_wrong_position_does_not_move_the_whole_chain():
    ev = evidence_for(0)
    ev[EXTEND + 5] = evidence_for(1)[EXTEND + 5]  # T6 read as T7
    assert choose_shift(ev, np.ones(N, bool)) == 0
    scores = shift_scores(ev, np.ones(N, bool))
    assert scores.argmax() == EXTEND and np.all(scores[:EXTEND] < scores[EXTEND])


def test_no_evidence_keeps_stage_1s_names():
    assert choose_shift(np.zeros((N, len(LEVELS))), np.ones(N, bool)) == 0


def straight_spine():
    return synthetic_spine(DOUBLE_CURVE_TILTS, spacing=100, width=80, height=70, x0=400, y0=600)


def test_extended_chain_continues_the_spine_evenly():
    v = straight_spine()
    c = v.mean(axis=1)
    centres, widths = extended_chain(c, np.full(17, 80.0))
    assert centres.shape == (N, 2) and widths.shape == (N,)
    np.testing.assert_allclose(centres[EXTEND:EXTEND + 17], c)
    steps = np.diff(centres[:, 1])
    assert np.all(steps > 0)  # still running down the spine
    np.testing.assert_allclose(centres[EXTEND - 1], c[0] + (c[0] - c[2]) / 2)
    np.testing.assert_allclose(centres[EXTEND + 17], c[16] + (c[16] - c[14]) / 2)


def test_renamed_corners_at_a_shift_of_two_on_a_film_cut_above_t3():
    """Stage 1 put its "T1" on T3 of a film that shows T3..: shift +2 names it T3, T1 and T2 (above
    the film's edge) are not shown, L5 is stage 1's 15th vertebra."""
    v = straight_spine()
    centres, widths = extended_chain(v.mean(axis=1), np.full(17, 80.0))
    top = v[0, :, 1].min() - 20
    on = on_film(centres - np.array([0, top]), (2000, 900))
    naming = Naming(2, centres, widths, on, evidence_for(2))
    out = renamed_corners(v, naming)
    assert np.isnan(out[:2]).all() and np.isfinite(out[2:]).all()
    np.testing.assert_allclose(out[2], v[0])
    np.testing.assert_allclose(out[16], v[14])
    np.testing.assert_array_equal(naming.shown, [False, False] + [True] * 15)
    np.testing.assert_allclose(naming.level_probability()[2:], 0.9)
    # per-vertebra values and the label map follow the names
    np.testing.assert_array_equal(naming.renamed(np.arange(17.0), fill=-1), [-1, -1] + list(range(15)))
    labels = np.arange(18, dtype=np.uint8)[None]
    np.testing.assert_array_equal(renamed_labels(labels, naming)[0], [0] + list(range(3, 18)) + [0, 0])


def test_renamed_corners_one_level_up_extrapolate_l5():
    """Stage 1 put "T1" on C7 (shift -1): T1 is stage 1's second vertebra, L5 lies one step below
    stage 1's last and gets its neighbour's shape moved there (stage 2 reads it)."""
    v = straight_spine()
    centres, widths = extended_chain(v.mean(axis=1), np.full(17, 80.0))
    naming = Naming(-1, centres, widths, np.ones(N, bool), evidence_for(-1))
    out = renamed_corners(v, naming)
    np.testing.assert_allclose(out[:16], v[1:])
    np.testing.assert_allclose(out[16].mean(axis=0), centres[EXTEND + 17])
    np.testing.assert_allclose(out[16] - out[16].mean(axis=0), v[16] - v[16].mean(axis=0))
