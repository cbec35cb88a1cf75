"""The Cobb benchmark's measures on constructed cases: vertebra identity errors (doubled and
skipped vertebrae), and the benchmark run end to end on the bundled film."""
import numpy as np

from CobbAngleTools.bench import identity_errors
from conftest import DOUBLE_CURVE_TILTS, SAMPLE_DATA, synthetic_spine


def test_identity_errors_count_a_doubled_and_a_skipped_vertebra():
    truth = synthetic_spine(DOUBLE_CURVE_TILTS)
    assert identity_errors(truth, truth)["count"] == 0
    shifted_a_little = truth + [6.0, 20.0]  # well within a vertebra (110 px apart)
    assert identity_errors(shifted_a_little, truth)["count"] == 0
    doubled = truth.copy()
    doubled[9] = truth[8] + [3.0, 2.0]  # T10 predicted on T9
    result = identity_errors(doubled, truth)
    assert result["count"] == 1 and result["vertebrae"] == ["T10"]
    skipped = truth.copy()
    skipped[5:16] = truth[6:17]  # T9 skipped: T6..L4 all one level low, L5 missing
    skipped[16] = np.nan
    result = identity_errors(skipped, truth)
    assert result["count"] == 12 and result["vertebrae"][0] == "T6" and "L5" in result["vertebrae"]
    assert result["share"] == 12 / 17


def test_the_benchmark_runs_on_a_film_and_prints_its_figures(capsys):
    from MSKCommonLib.cli import main

    assert main(["bench", "cobb", str(SAMPLE_DATA / "SpinePhantom_AP.png"), "--devices", "cpu", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("cpu "))
    films, median_s = row.split()[1:3]
    assert int(films) == 1 and float(median_s) > 0
