"""`mskmorph check cobb-level-consistency`'s label-only witness: two label files of one spine,
one named a level lower, match best at that offset; and the pairs are counted by what the two
witnesses say."""
import numpy as np
import pytest

from CobbAngleTools.level_consistency import (
    best_offset, compare_patients, films_named_otherwise, profile_mismatch, size_profile,
)


def spine(widths, heights, scale=1.0):
    """(N, 4, 2) corners of upright vertebrae with these widths and heights, stacked down the film."""
    out, y = [], 100.0
    for w, h in zip(widths, heights):
        x0, x1 = 300 - w / 2, 300 + w / 2
        out.append([[x0, y], [x1, y], [x0, y + h], [x1, y + h]])
        y += h * 1.25
    return np.array(out) * scale


def test_a_label_file_named_one_level_lower_matches_at_that_offset():
    rng = np.random.default_rng(3)
    # C7..S1: sizes that vary down the spine as a real one does (not smoothly)
    widths = 40 + np.cumsum(rng.uniform(-2, 6, 19))
    heights = 30 + np.cumsum(rng.uniform(-1, 4, 19))
    as_labelled = size_profile(spine(widths[1:18], heights[1:18]))  # T1..L5
    one_lower = size_profile(spine(widths[2:19], heights[2:19], scale=1.3))  # "T1" on T2, another scale
    assert profile_mismatch(as_labelled, size_profile(spine(widths[1:18], heights[1:18], 0.8)), 0) < 1e-9
    # vertebra i of the file named one level lower is vertebra i + 1 of the one labelled right
    assert best_offset(one_lower, as_labelled) == 1 and best_offset(as_labelled, one_lower) == -1
    assert best_offset(as_labelled, as_labelled) == 0


def test_pairs_are_counted_by_what_both_witnesses_say():
    profile = np.zeros((2, 17))
    profile[0] = np.sin(np.arange(17) * 1.7)
    lower = np.roll(profile, -1, axis=1)  # the same spine named one level lower
    names = ["sunhl-1th-01-Jan-2017-1 A AP.jpg", "sunhl-1th-01-Jan-2017-1 B AP.jpg",
             "sunhl-1th-01-Jan-2017-2 A AP.jpg", "sunhl-1th-01-Jan-2017-2 B AP.jpg"]
    shifts = {names[0]: (0, 10.0), names[1]: (-1, 10.0), names[2]: (0, 5.0), names[3]: (0, 5.0)}
    profiles = {names[0]: lower, names[1]: profile, names[2]: profile, names[3]: profile}
    result = compare_patients(shifts, profiles)
    assert result["counts"] == {"network reads them alike; sizes match at offset 0": 1,
                                "network reads them differently; sizes match at the network's offset": 1}
    first = next(p for p in result["pairs"] if p["films"][0] == names[0])
    assert first["network_offset"] == 1 and first["sizes_offset"] == 1


def _pair(a, b, network, sizes):
    return {"patient": a[:-2], "films": [a, b], "network_offset": network, "sizes_offset": sizes}


def test_the_film_named_otherwise_than_its_patients_others_is_counted():
    # patient p: B and C named alike, A one level off from both (both witnesses agree on all three pairs)
    pairs = [_pair("p A", "p B", 1, 1), _pair("p A", "p C", 1, 1), _pair("p B", "p C", 0, 0),
             # patient q: the witnesses disagree on its only pair: nothing is known
             _pair("q A", "q B", 1, 0)]
    odd = films_named_otherwise(pairs)
    assert odd["films"] == 1 and odd["conflicts"] == 0
    assert odd["groups"] == [{"films": ["p A"], "offset": {"p A": 1, "p B": 0, "p C": 0}}]


def test_agreed_pairs_that_contradict_each_other_are_reported():
    pairs = [_pair("p A", "p B", 1, 1), _pair("p B", "p C", 1, 1), _pair("p A", "p C", 0, 0)]
    odd = films_named_otherwise(pairs)
    assert odd["conflicts"] == 1
    assert odd["films"] == 1  # still one group; the largest set named alike is kept


def test_the_check_without_weights_says_so(tmp_path):
    from CobbAngleTools.level_consistency import main

    with pytest.raises(SystemExit, match="no level network weights at .*missing.pt"):
        main(["--level-weights", str(tmp_path / "missing.pt")])
