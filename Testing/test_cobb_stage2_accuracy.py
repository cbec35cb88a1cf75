"""The second stage reads the endplates better than the whole-film network: on a fixed set of
validation films (the first 12 of the split; no network was trained on them), stage 2 at stage 1's
corners gives a lower endplate tilt error than stage 1 on the vertebrae stage 1 named right (a
vertebra named a level off is compared with another vertebra's endplates: stage 2 cannot mend
that), within a bound set from the value measured when the weights were shipped."""
import numpy as np
import pytest

from conftest import require_aasce

FILMS = 12
# measured with the shipped weights on these 12 films (fixed labels, superior and inferior endplates
# of the 76 % of vertebrae named right): stage 1 RMS 5.62 deg, stage 2 4.30 deg; the bound leaves
# room for another CPU's digits
STAGE2_RMS_BOUND = 4.6


@pytest.fixture(scope="module")
def films():
    aasce = require_aasce()
    from CobbAngleTools.data import read_landmarks, read_split
    from MSKCommonLib.image import read_image

    names = read_split()["validation"][:FILMS]
    return [(read_image(aasce / "images" / n).pixels, read_landmarks(aasce, n, "fixed")) for n in names]


def test_stage2_reads_the_endplates_better_than_stage1(films):
    from CobbAngleLib.predict import CobbPredictor
    from CobbAngleLib.vertebra_read import available
    from CobbAngleTools.framing import level_offsets
    from CobbAngleTools.train_vertebrae import tilt_errors

    if not available():
        pytest.fail("the second stage's weights are not shipped (CobbAngleLib/models/cobb_vertebra.pt)")
    predictor = CobbPredictor(device="cpu", threads=1)
    assert predictor.vertebra_reader is not None
    stage1, stage2, truth = [], [], []
    for pixels, labels in films:
        pred = predictor.predict(pixels)
        stage1.append(pred.stage1_landmarks)
        stage2.append(pred.landmarks)
        truth.append(labels)
        assert pred.endplate_scale_deg.shape == (17, 2) and np.all(pred.endplate_scale_deg > 0)
    named_right = np.array([level_offsets(p, t) == 0 for p, t in zip(stage2, truth)]).ravel()
    assert named_right.mean() > 0.6
    named_right = np.concatenate([named_right, named_right])  # superior, then inferior endplates
    rms1 = float(np.sqrt(np.mean(tilt_errors(np.array(stage1), np.array(truth))[named_right] ** 2)))
    rms2 = float(np.sqrt(np.mean(tilt_errors(np.array(stage2), np.array(truth))[named_right] ** 2)))
    assert rms2 < rms1 - 1.0, (rms1, rms2)
    assert rms2 < STAGE2_RMS_BOUND, rms2
