"""geometry.curve_between: the clinical angle between end vertebrae the reader chose."""
import numpy as np
import pytest

from CobbAngleLib import geometry


def _spine(tilts_deg):
    """17 rectangles 40 x 30 px, 45 px apart, each tilted by its own angle (degrees)."""
    v = []
    for k, t in enumerate(tilts_deg):
        c = np.array([200.0, 100.0 + 45 * k])
        r = np.radians(t)
        ex, ey = np.array([np.cos(r), np.sin(r)]), np.array([-np.sin(r), np.cos(r)])
        v.append([c - 20 * ex - 15 * ey, c + 20 * ex - 15 * ey, c - 20 * ex + 15 * ey, c + 20 * ex + 15 * ey])
    return np.array(v)


def test_angle_between_chosen_ends_is_their_endplate_difference():
    tilts = np.zeros(17)
    tilts[3], tilts[9] = 12.0, -20.0
    curve = geometry.curve_between(_spine(tilts), "MT", 3, 9)
    assert curve.angle_deg == pytest.approx(32.0, abs=1e-9)
    assert (curve.upper_end_vertebra, curve.lower_end_vertebra) == ("T4", "T10")
    assert curve.upper_line == (3, "sup") and curve.lower_line == (9, "inf")
    # the automatic choice agrees here; a non-maximal pair is measured as chosen, not re-chosen
    assert geometry.curve_between(_spine(tilts), "MT", 4, 9).angle_deg == pytest.approx(20.0, abs=1e-9)


def test_ends_off_the_film_or_reversed_are_refused():
    v = _spine(np.zeros(17))
    with pytest.raises(geometry.LandmarkError, match="above the lower"):
        geometry.curve_between(v, "MT", 9, 3)
    v[:4] = np.nan  # the film shows T5-L5
    with pytest.raises(geometry.LandmarkError, match="not both on the film"):
        geometry.curve_between(v, "MT", 2, 9)
