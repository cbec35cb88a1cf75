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


def test_limits_of_agreement_and_plots(tmp_path):
    from CobbAngleTools.agreement import draw_agreement, limits_of_agreement

    truth = np.array([10.0, 20.0, 30.0, 40.0])
    loa = limits_of_agreement(truth, truth + [1.0, 3.0, 1.0, 3.0])
    assert loa["bias"] == 2.0 and abs(loa["sd"] - np.std([1, 3, 1, 3], ddof=1)) < 1e-12
    assert loa["lower"] == 2.0 - 1.96 * loa["sd"] and loa["upper"] == 2.0 + 1.96 * loa["sd"]
    import cv2

    for path in draw_agreement(truth, truth + 2, "MT", "MT", tmp_path):
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.std() > 0


def aasce_layout(folder):
    """The bundled phantom in the AASCE layout (images/, labels/<name>.mat); returns the film."""
    import shutil

    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    shutil.copy(SAMPLE_DATA / "SpinePhantom_AP.png", folder / "images")
    shutil.copy(SAMPLE_DATA / "SpinePhantom_AP.png.mat", folder / "labels")
    return folder / "images" / "SpinePhantom_AP.png"


def test_accuracy_on_a_labelled_film_scores_both_label_sets_segments_and_plots(tmp_path, capsys):
    """The bundled phantom in the AASCE layout (images/, labels/<name>.mat): `bench --accuracy`
    prints the official and the fixed labels' accuracy (the same here: no fix applies), the
    Bland-Altman limits, the segments' Dice (drawn from the corners: one piece each) and writes
    the plots."""
    from MSKCommonLib.cli import main

    aasce_layout(tmp_path)
    plots = tmp_path / "plots"
    assert main(["bench", "cobb", str(tmp_path / "images"), "--devices", "cpu", "--threads", "1", "--accuracy",
                 "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    official = next(l for l in out.splitlines() if l.startswith("accuracy on cpu, official labels"))
    fixed = next(l for l in out.splitlines() if l.startswith("accuracy on cpu, fixed labels"))
    assert official.split(":", 1)[1] == fixed.split(":", 1)[1] and "films 1," in official
    assert "Bland-Altman 95 % limits of agreement" in out
    segments = next(l for l in out.splitlines() if l.startswith("segments on cpu"))
    assert "segments_drawn_one_piece_share 1.000" in segments
    assert len(list(plots.glob("bland_altman_*.png"))) == 6 and len(list(plots.glob("predicted_vs_true_*.png"))) == 6


def test_accuracy_with_vertebrae_named_by_the_reader(tmp_path, capsys):
    """`bench --accuracy --named-levels T1,T12`: the reader's names are the labelled vertebrae's
    centres (none on a film without labels), and the network counts from them."""
    from CobbAngleTools.bench import aasce_labels, reader_names
    from MSKCommonLib.cli import main

    film = aasce_layout(tmp_path)
    truth = aasce_labels(film)
    names = reader_names(film, ("T1", "T12"))
    assert [n for n, _, _ in names] == ["T1", "T12"]
    assert np.allclose([xy for _, *xy in names], truth[[0, 11]].mean(axis=1))
    assert reader_names(film, ()) == [] and reader_names(SAMPLE_DATA / "SpinePhantom_AP.png", ("T1",)) == []
    assert main(["bench", "cobb", str(film.parent), "--devices", "cpu", "--threads", "1", "--accuracy", "--plots", "",
                 "--named-levels", "T1,T12"]) == 0
    out = capsys.readouterr().out
    assert "the reader named T1, T12 at their true centres" in out
    assert "identity_errors_share_of_vertebrae 0.000" in out
