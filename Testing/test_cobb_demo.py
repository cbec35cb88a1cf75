"""The README's first command on the bundled phantom: `mskmorph cobb SpinePhantom_AP.png` measures
each Cobb angle within 3 deg of the angle computed from the phantom's exact corners
(`--landmarks Resources/SampleData`), names the same end vertebrae within one level, and raises
no CHECK."""
import json

from conftest import SAMPLE_DATA


def test_the_demo_measures_the_phantom_within_3_degrees_without_a_check(tmp_path):
    from MSKCommonLib.cli import main

    film = SAMPLE_DATA / "SpinePhantom_AP.png"
    assert main(["cobb", str(film), "--out", str(tmp_path / "network"), "--device", "cpu"]) == 0
    assert main(["cobb", str(film), "--out", str(tmp_path / "truth"), "--landmarks", str(SAMPLE_DATA)]) == 0
    measured = json.loads((tmp_path / "network" / "SpinePhantom_AP_cobb.json").read_text())
    truth = json.loads((tmp_path / "truth" / "SpinePhantom_AP_cobb.json").read_text())
    assert measured["warning"] is None, measured["warning"]
    names = ("T1 T2 T3 T4 T5 T6 T7 T8 T9 T10 T11 T12 L1 L2 L3 L4 L5").split()
    by_name = {c["name"]: c for c in measured["curves"]}
    for t in truth["curves"]:
        m = by_name[t["name"]]
        assert abs(m["angle_deg"] - t["angle_deg"]) <= 3.0, (t["name"], m["angle_deg"], t["angle_deg"])
        for end in ("upper_end_vertebra", "lower_end_vertebra"):
            assert abs(names.index(m[end]) - names.index(t[end])) <= 1, (t["name"], end, m[end], t[end])
