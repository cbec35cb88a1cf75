"""What the browser tests of ``mskmorph review`` share: start the command and read its URL, open a
page in Debian's headless Chromium, find a film pixel on the screen from the view's geometry (the
page publishes it), drag with the mouse as a user does, and read the measurement table."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from conftest import REPO

CHROMIUM = "/usr/bin/chromium"
URL = re.compile(r"mskmorph review: (http://\S+)")


def review_env() -> dict:
    return dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow", OMP_NUM_THREADS="1",
                MSKMORPH_THREADS="1",
                PYTHONPATH=os.pathsep.join(str(REPO / p) for p in ("MSKCommon", "CobbAngle", "KneeLandmarks", "SpineMorphology")))


@contextmanager
def review_server(*args):
    """``mskmorph review ARGS...`` in a process of its own; yields the URL it printed (and the
    process), stops it afterwards."""
    with mskmorph_server(["review", *args], URL) as started:
        yield started


@contextmanager
def mskmorph_server(argv, url_pattern):
    """``mskmorph ARGV...`` serving a page, in a process of its own; yields the URL it printed
    (``url_pattern``'s group 1) and the process, stops it afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "MSKCommonLib.cli", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=review_env())
    url, printed = None, []
    for line in proc.stdout:
        printed.append(line)
        m = url_pattern.search(line)
        if m:
            url = m.group(1)
            break
    assert url, "the command printed no URL:\n" + "".join(printed[-20:])
    try:
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


@contextmanager
def browser_page(playwright, url, viewport=(1400, 900)):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.goto(url)
        page.wait_for_selector("#worklist .worklist-item")
        try:
            yield page
        finally:
            browser.close()


def open_film(page, name):
    page.locator("#worklist .worklist-item", has_text=name).click()
    page.wait_for_function(f"(document.querySelector('#worklist .current') || {{innerText: ''}}).innerText.includes({name!r})")
    page.wait_for_function("document.querySelector('#view-geometry').textContent.includes('ijk_to_ras')")


def measure(page, timeout_ms=300_000, key=None):
    """Press Measure (or the keyboard shortcut ``key``) and wait until the current film is
    measured and its table is drawn."""
    if key:
        page.keyboard.press(key)
    else:
        page.click("#measure")
    page.wait_for_function("document.querySelector('#message').innerText === 'Measured'", timeout=timeout_ms)
    page.wait_for_function("document.querySelectorAll('#measurements tbody tr').length > 0", timeout=30_000)


def table(page) -> list[dict]:
    """The measurement table as shown: one dict per row, column title -> cell text."""
    return page.evaluate("""() => {
        const t = document.querySelector('#measurements');
        const head = Array.from(t.querySelectorAll('thead th')).map(c => c.innerText.trim());
        return Array.from(t.querySelectorAll('tbody tr')).map(
            tr => Object.fromEntries(Array.from(tr.cells).map((c, i) => [head[i], c.innerText.trim()])));
    }""")


def warnings(page) -> list[str]:
    return [w.strip() for w in page.locator("#warnings .warning").all_inner_texts()]


def status(page, name) -> str:
    text = page.locator("#worklist .worklist-item", has_text=name).locator(".status").inner_text()
    return text.strip()


class ViewGeometry:
    """The slice view's geometry as the page publishes it: film pixel <-> screen pixel."""

    def __init__(self, page):
        self.geo = json.loads(page.evaluate("document.querySelector('#view-geometry').textContent"))
        self.xy_to_ras = np.array(self.geo["xy_to_ras"])
        self.ijk_to_ras = np.array(self.geo["ijk_to_ras"])
        self.box = page.locator("#view img").first.bounding_box()
        self.scale = self.geo["size"][0] / self.box["width"]  # render-window pixels per screen pixel

    def screen(self, px) -> tuple:
        xy = np.linalg.solve(self.xy_to_ras, self.ijk_to_ras @ [px[0], px[1], 0, 1])
        return self.box["x"] + xy[0] / self.scale, self.box["y"] + self.box["height"] - xy[1] / self.scale

    def film_delta(self, dx, dy) -> np.ndarray:
        """The film pixels a mouse displacement of (dx, dy) screen pixels moves a grabbed point."""
        return np.linalg.solve(self.ijk_to_ras, self.xy_to_ras @ [dx * self.scale, -dy * self.scale, 0, 0])[:2]

    @property
    def film_px_per_screen_px(self) -> float:
        return float(np.linalg.norm(self.film_delta(1, 0)))

    def pixels(self, ras) -> np.ndarray:
        return np.linalg.solve(self.ijk_to_ras, [*ras, 1])[:2]


def drag(page, start, dx, dy, steps=10):
    """Press on ``start`` (screen), move by (dx, dy) in steps as a user drags, release."""
    sx, sy = start
    page.mouse.move(sx - 3, sy)  # hover first: Slicer's markups widget grabs the point under the mouse
    page.wait_for_timeout(200)
    page.mouse.move(sx, sy)
    page.wait_for_timeout(500)
    page.mouse.down()
    page.wait_for_timeout(200)
    for step in range(1, steps + 1):  # the server takes each move before the next
        page.mouse.move(sx + dx * step / steps, sy + dy * step / steps)
        time.sleep(0.15)
    time.sleep(0.5)
    page.mouse.up()


def accept(page, key=None, confirm_checks=True) -> list[str]:
    """Press Accept and wait for its message (it says when: a second Accept says so anew). When the
    result has CHECK warnings, the page asks first: ``confirm_checks`` confirms them. Returns the
    CHECKs the page asked about ([] when it did not ask)."""
    before = page.inner_text("#message")
    page.wait_for_timeout(1100)  # the message has the time to the second
    if key:
        page.keyboard.press(key)
    else:
        page.click("#accept")
    page.wait_for_function("b => { const m = document.querySelector('#message').innerText; "
                           "return (m.startsWith('Accepted') && m !== b) || !!document.querySelector('#confirm-checks'); }",
                           arg=before)
    asked = [c.strip() for c in page.locator(".open-check").all_inner_texts()]
    if page.locator("#confirm-checks").count():
        assert confirm_checks, asked
        page.click("#confirm-checks")
        page.wait_for_function("b => { const m = document.querySelector('#message').innerText; "
                               "return m.startsWith('Accepted') && m !== b; }", arg=before)
    return asked


def view_image(page, selector="#view"):
    """The view's screenshot as an RGB array."""
    import cv2

    png = page.locator(selector).screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def read_points(path, class_name="vtkMRMLMarkupsFiducialNode") -> np.ndarray:
    """A .mrk.json's points (RAS) read back by Slicer's own reader."""
    from MSKCommonLib.headless import make_app
    from MSKCommonLib.mrml import read_node

    app = make_app()
    node = read_node(app.scene, class_name, Path(path))
    points = np.array([node.GetNthControlPointPositionWorld(i) for i in range(node.GetNumberOfControlPoints())])
    app.scene.Clear(1)
    return points


def view_settles(page, done, timeout_s=20.0, selector="#view"):
    """The view's screenshot once ``done(image)`` holds (the server renders and streams a frame
    after a change; on a busy machine that takes a while), or the last one after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while True:
        image = view_image(page, selector).astype(float)
        if done(image) or time.monotonic() > end:
            return image
        page.wait_for_timeout(300)


def steady():
    """A ``done`` for ``view_settles``: the view looks the same in two screenshots in a row."""
    last = []

    def done(image):
        same = bool(last) and image.shape == last[-1].shape and np.abs(image - last[-1]).mean() < 0.1  # a resized view is not settled
        last[:] = [image]
        return same

    return done


def table_shows(page, expected: dict, key_column: str, value_column: str, timeout_s=20.0) -> list[dict]:
    """The table once its ``value_column`` shows ``expected`` ({row key: text}) -- e.g. what Accept
    just wrote: the page's table follows the server's by a push, later on a busy machine -- or as
    it is after ``timeout_s`` (the test's own assertions then say what differs)."""
    end = time.monotonic() + timeout_s
    while True:
        rows = table(page)
        shown = {r[key_column]: r[value_column] for r in rows}
        if all(shown.get(k) == v for k, v in expected.items()) or time.monotonic() > end:
            return rows
        page.wait_for_timeout(300)
