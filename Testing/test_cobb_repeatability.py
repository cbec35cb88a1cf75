"""``mskmorph bench cobb --repeatability``: re-acquired films (turned, rescaled, another exposure and
crop, MONOCHROME1 DICOM) through the whole pipeline; the within-film SD and smallest detectable
change per curve, and the films whose readings span more than 10 deg."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from CobbAngleLib import followup
from CobbAngleTools.repeatability import MEASURES, reacquire, summarise, write_monochrome1
from MSKCommonLib.cli import main
from MSKCommonLib.image import read_image
from conftest import SAMPLE_DATA


def test_summary_pools_the_films_variances():
    a = {m: np.array([[10.0, 20.0, 30.0], [12.0, 20.0, 30.0]]) for m in MEASURES}
    b = {m: np.array([[5.0, 20.0, 30.0], [17.0, 24.0, 30.0]]) for m in MEASURES}
    s = summarise([{"film": "a", "angles": a}, {"film": "b", "angles": b}])["clinical"]
    # variances (ddof 1): PT 2 and 72, MT 0 and 8, TL_L 0 and 0
    assert s["PT"]["within_film_sd_deg"] == pytest.approx(math.sqrt(37), abs=1e-3)
    assert s["PT"]["smallest_detectable_change_deg"] == pytest.approx(1.96 * math.sqrt(2 * 37), abs=0.01)
    assert [w["film"] for w in s["PT"]["films_spanning_over_10_deg"]] == ["b"]
    assert s["MT"]["films_spanning_over_10_deg"] == [] and s["MT"]["max_span_deg"] == pytest.approx(4.0)
    assert s["TL_L"]["within_film_sd_deg"] == 0.0


def test_a_reacquisition_keeps_the_film_and_monochrome1_reads_back(tmp_path):
    film = read_image(SAMPLE_DATA / "SpinePhantom_AP.png")
    x, scale, desc = reacquire(film.pixels, np.random.default_rng(1))
    assert 0.8 <= scale <= 1.25 and "turned" in desc and x.min() >= 0 and x.max() <= 1
    back = read_image(write_monochrome1(tmp_path / "m1.dcm", x, 0.2 / scale))
    assert "MONOCHROME1 inverted" in back.normalisation and back.spacing_mm == pytest.approx((0.2 / scale,) * 2)
    assert np.corrcoef(back.pixels.ravel(), x.ravel())[0, 1] > 0.999  # bone bright again


def test_repeatability_command_writes_the_figures_compare_reads(tmp_path, capsys):
    out = tmp_path / "rep.json"
    assert main(["bench", "cobb", "--repeatability", str(SAMPLE_DATA / "SpinePhantom_AP.png"), "--repeats", "3",
                 "--repeatability-json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["films"] == 1 and result["repeats"] == 3
    (film,) = result["per_film"]
    assert film["readings"][0] == "as stored" and film["readings"][1].endswith("MONOCHROME1 DICOM")
    assert len(film["clinical"]) == 3 and film["levels"]["MT"]
    for m in MEASURES:
        for c in ("PT", "MT", "TL_L"):
            assert result["measures"][m][c]["within_film_sd_deg"] >= 0
    assert "clinical_same_levels" in printed and "SDC" in printed
    sdc = followup.load_repeatability(out)
    assert sdc["MT"] == result["measures"]["clinical_same_levels"]["MT"]["smallest_detectable_change_deg"]
    assert "--repeatability" in sdc["_source"]


def test_the_shipped_figures_are_there():
    sdc = followup.load_repeatability()
    assert sdc is not None and {"PT", "MT", "TL_L"} <= set(sdc), "run mskmorph bench cobb --repeatability"
    assert all(0 < sdc[c] < 50 for c in ("PT", "MT", "TL_L"))
