"""The browser review's "Name a vertebra" (Cobb), in headless Chromium on the bundled phantom film:
the reader chooses a level and clicks its centre on the film; names that the pipeline refuses
("T12 is named above T1") are said and change nothing; "Count from these names" runs the network
again through the review layer (``CobbAngleLib.review.count_from_names``) and the result replaces
the shown one, its named vertebrae where the reader clicked, and Accept writes a record and a
report line that say the count came from the reader's names."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_DATA

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("trame_slicer")
from browser import CHROMIUM, ViewGeometry, accept, browser_page, measure, open_film, review_server, status, table  # noqa: E402

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/setup installs it)", allow_module_level=True)

SAMPLE = SAMPLE_DATA / "SpinePhantom_AP.png"


def name(page, level, film_px):
    page.select_option("#name-level", level)
    page.click("#name-pick")
    page.wait_for_function("document.querySelector('#message').innerText.includes('click the centre')")
    page.mouse.click(*ViewGeometry(page).screen(film_px))
    page.wait_for_function(f"document.querySelector('#message').innerText.startsWith('{level} named at')",
                           timeout=20_000)


def named(page) -> list[str]:
    return [n.split(" ")[0] for n in page.locator("#names .named").all_inner_texts()]


def test_naming_vertebrae_and_counting_from_the_names(tmp_path):
    folder, out = tmp_path / "films", tmp_path / "accepted"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / SAMPLE.name)
    truth = np.array(json.loads(SAMPLE.with_suffix(".json").read_text())["landmarks_px"], float).reshape(17, 4, 2)
    centre = truth.mean(axis=1)
    width = np.linalg.norm(truth[:, 1] - truth[:, 0], axis=1).mean()
    with review_server(folder, "--out", out, "--reviewer", "Jane Doe") as (url, _), \
            browser_page(playwright, url, viewport=(1400, 900)) as page:
        open_film(page, SAMPLE.name)
        measure(page)
        before = table(page)
        # named upside down: the pipeline's reason, nothing changes
        name(page, "T1", centre[12])
        name(page, "T12", centre[1])
        assert named(page) == ["T1", "T12"]
        page.click("#count-from-names")
        page.wait_for_function("document.querySelector('#message').innerText.startsWith('Not counted')", timeout=20_000)
        assert "T12 is named above T1" in page.inner_text("#message")
        assert table(page) == before and status(page, SAMPLE.name) == "measured"
        assert page.locator("#counted-from").count() == 0
        # named again (a level's name moves): the reader counts a level below the phantom's truth
        name(page, "T1", centre[1])
        name(page, "T12", centre[12])
        clicks = page.locator("#names .named").all_inner_texts()
        page.click("#count-from-names")
        page.wait_for_function("document.querySelector('#message').innerText === 'Counted from the names'",
                               timeout=300_000)
        assert page.inner_text("#counted-from") == "Vertebrae counted from T1, T12 (named by the reader)"
        accept(page)
    record = json.loads((out / "SpinePhantom_AP_cobb.json").read_text())
    assert [n["vertebra"] for n in record["named_by_reader"]] == ["T1", "T12"]
    assert clicks == [f"{n['vertebra']} ({round(n['x'])}, {round(n['y'])})" for n in record["named_by_reader"]]
    for n, true_level in zip(record["named_by_reader"], (1, 12)):
        corners = np.array([record["landmarks_px"][f"{n['vertebra']} {c}"] for c in ("sup-L", "sup-R", "inf-L", "inf-R")])
        # the named vertebra lies at the click, and the click at the true vertebra a level below (a screen pixel's share)
        assert np.linalg.norm(corners.mean(axis=0) - (n["x"], n["y"])) < 0.25 * width
        assert np.linalg.norm(np.subtract((n["x"], n["y"]), centre[true_level])) < 0.05 * width
    assert "counted from T1, T12 as named by the reader" in record["landmarks_from"]
    assert (out / "SpinePhantom_AP_report.txt").read_text().strip().endswith(
        "vertebrae counted from T1, T12 (named by the reader). Accepted by Jane Doe, "
        + record["review"]["accepted_at"] + ".")
