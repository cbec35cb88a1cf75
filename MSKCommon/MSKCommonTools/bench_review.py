"""Benchmark of the browser review on this CPU (not a test): seconds from starting ``mskmorph
review`` to a ready page, from Measure to the drawn result on the bundled sample, and the median
delay from a mouse move (dragging a corner) to the updated table.

    python -m MSKCommonTools.bench_review

The drag moves the T5 corner up by one screen pixel at a time, across its endplate, so that every
move changes the MT angle shown. (An earlier version moved it down: after the first move T4
became the upper end vertebra and the angle, hence the table, stayed the same for most moves --
"8 of 20 moves" was that, not lost events: the server measured every move.)
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    import json

    import numpy as np
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="bench-review-"))
    shutil.copy(REPO / "Resources" / "SampleData" / "SpinePhantom_AP.png", folder)
    env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(str(REPO / p) for p in ("MSKCommon", "CobbAngle", "KneeLandmarks", "SpineMorphology")))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "MSKCommonLib.cli", "review", str(folder / "SpinePhantom_AP.png"),
                             "--out", str(folder / "out")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        url = next(m.group(1) for line in proc.stdout if (m := re.search(r"mskmorph review: (http://\S+)", line)))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("#worklist .worklist-item")
            ready = time.perf_counter() - start
            page.locator("#worklist .worklist-item").first.click()
            time.sleep(1)
            t0 = time.perf_counter()
            page.click("#measure")
            page.wait_for_function("document.querySelector('#measurements').innerText.length > 0", timeout=300_000)
            measured = time.perf_counter() - t0
            geo = json.loads(page.evaluate("document.querySelector('#view-geometry').textContent"))
            page.click("#accept")
            page.wait_for_function("document.querySelector('#message').innerText.startsWith('Accepted')")
            record = json.loads((folder / "out" / "SpinePhantom_AP_cobb.json").read_text())
            corner = record["landmarks_px"]["T5 sup-R"]
            ras = np.array(geo["ijk_to_ras"]) @ [corner[0], corner[1], 0, 1]
            xy = np.linalg.solve(np.array(geo["xy_to_ras"]), ras)
            box = page.locator("#view img").first.bounding_box()
            scale = geo["size"][0] / box["width"]
            sx, sy = box["x"] + xy[0] / scale, box["y"] + box["height"] - xy[1] / scale
            page.mouse.move(sx, sy)
            page.mouse.down()
            delays = []
            for step in range(1, 21):
                before = page.inner_text("#measurements")
                t = time.perf_counter()
                page.mouse.move(sx + step / 2, sy - step)  # up across the endplate: T5 tilts more, stays the end vertebra
                try:
                    page.wait_for_function("b => document.querySelector('#measurements').innerText !== b", arg=before,
                                           timeout=5000)
                    delays.append(time.perf_counter() - t)
                except Exception:
                    pass
            page.mouse.up()
            browser.close()
        print(f"start to ready page: {ready:.2f} s")
        print(f"Measure to drawn result (sample, worker process): {measured:.2f} s")
        if delays:
            print(f"drag event to updated table: median {1000 * statistics.median(delays):.0f} ms "
                  f"over {len(delays)} of 20 moves")
        else:
            print("drag event to updated table: no table update seen")
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
