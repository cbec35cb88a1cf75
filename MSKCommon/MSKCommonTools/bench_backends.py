"""``mskmorph bench onnx``: ONNX Runtime against PyTorch on this machine (a benchmark, not a test).

    mskmorph bench onnx [--repeats 20] [--starts 3] [--json out.json]

Prints, per network and backend, the median seconds per image of the network call alone (the
same input to both: the bundled sample film for Cobb, a generated knee film for the knee
detector and its two knees for the landmark network, a generated back photo); the process
start-to-result time of ``mskmorph cobb`` on the sample per backend (a fresh Python each time,
median of ``--starts``), and of the same film read, predicted and measured in a fresh Python
without writing files; and the installed size of the runtime environment with and without
torch: the files of the installed distributions in the dependency closure of mskmorphometry
(its base requirements, then with the ``torch`` extra), summed through importlib.metadata.
CPU threads follow ``MSKMORPH_THREADS`` (``MSKCommonLib.device.inference_threads``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

BACKENDS = ("onnx", "torch")


def _sample_path() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        p = parent / "Resources" / "SampleData" / "SpinePhantom_AP.png"
        if p.is_file():
            return p
    raise SystemExit("mskmorph bench onnx: the bundled sample film (Resources/SampleData) is not found")


def network_inputs():
    """name -> (make predictor for a backend, network of it, input array or predictor -> input)."""
    from CobbAngleLib.frame import intensity_window, letterbox_matrix, to_network_frame
    from CobbAngleLib.predict import CobbPredictor
    from KneeLandmarksLib import roi as D
    from KneeLandmarksLib.predict import KneePredictor
    from KneeLandmarksTools import phantom as knee_phantom
    from MSKCommonLib.image import read_image
    from SpineMorphologyLib.frame import INPUT_HEIGHT, INPUT_WIDTH
    from SpineMorphologyLib.predict import BackPredictor
    from SpineMorphologyTools import data, phantom
    import cv2

    film = read_image(_sample_path()).pixels

    def cobb_x(predictor):
        hw = predictor.input_hw
        return to_network_frame(intensity_window(film), letterbox_matrix(*film.shape, hw), hw)[None, None]
    knee = knee_phantom.sample_film(3, n_knees=2, spacing_range=(0.3, 0.3))
    knee_px = (knee_phantom.render(knee) * 4095.0).astype(np.float32)
    det_x = D.letterbox(knee_px, (0.3, 0.3), 128)[0][None, None]
    from KneeLandmarksLib.landmarks import CENTRE_INDEX

    centres = [knee.landmarks_px(k)[CENTRE_INDEX] for k in knee.knees]  # the knees' T5
    roi_x = np.stack([D.normalise(D.extract_roi(knee_px, (0.3, 0.3), c, k.side, 128))
                      for c, k in zip(centres, knee.knees)])[:, None]
    photo = phantom.make_back_photo(phantom.photo_seed(data.EVAL_SEED, 2)).rgb
    back_x = cv2.resize(photo, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA).astype(np.float32)
    back_x = back_x.transpose(2, 0, 1)[None] / 255.0
    return {
        "cobb (Seg4Reg+, 1 film)": (lambda b: CobbPredictor(device="cpu", backend=b), lambda p: p.network, cobb_x),
        "knee detector (1 film)": (lambda b: KneePredictor(device="cpu", backend=b), lambda p: p.detector, det_x),
        "knee landmarks (2 knees)": (lambda b: KneePredictor(device="cpu", backend=b), lambda p: p.landmarks, roi_x),
        "back (GAMA-Net, 1 photo)": (lambda b: BackPredictor(device="cpu", framing="off", backend=b),
                                     lambda p: p.network, back_x),
    }


def network_seconds(repeats: int) -> list[dict]:
    rows = []
    for name, (make, pick, given) in network_inputs().items():
        for backend in BACKENDS:
            predictor = make(backend)
            net = pick(predictor)
            x = given(predictor) if callable(given) else given
            net(x)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t0)
            rows.append({"network": name, "backend": backend, "median_s": statistics.median(times),
                         "threads": net.threads})
    return rows


MEASURE_ONLY = ("import sys; from MSKCommonLib.image import read_image; from MSKCommonLib.modules import MODULES; "
                "s = MODULES['cobb']; r = s.pipeline().run(read_image(sys.argv[1]), s.options(device='cpu', "
                "backend=sys.argv[2])); print([round(c.angle_deg, 3) for c in r.measurement.curves])")


def start_to_result(starts: int) -> list[dict]:
    sample = _sample_path()
    rows = []
    for backend in BACKENDS:
        for what, command in (
            ("mskmorph cobb (writes the files)", lambda out: [sys.executable, "-m", "MSKCommonLib.cli", "cobb",
                                                              str(sample), "--out", out, "--device", "cpu",
                                                              "--backend", backend, "--on-existing", "replace"]),
            ("read, predict, measure (no files)", lambda out: [sys.executable, "-c", MEASURE_ONLY, str(sample),
                                                               backend]),
        ):
            times = []
            for _ in range(starts):
                with tempfile.TemporaryDirectory() as out:
                    t0 = time.perf_counter()
                    done = subprocess.run(command(out), capture_output=True, text=True)
                    times.append(time.perf_counter() - t0)
                if done.returncode != 0:
                    raise SystemExit(f"mskmorph bench onnx: {what} ({backend}) failed: {done.stderr[-500:]}")
            rows.append({"what": what, "backend": backend, "median_s": statistics.median(times),
                         "runs": [round(t, 2) for t in times]})
    return rows


def _closure(requirements: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = Requirement(todo.pop())
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for sub in dist.requires or []:
            r = Requirement(sub)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(sub)
        for extra in req.extras:
            for sub in dist.requires or []:
                r = Requirement(sub)
                if r.marker is not None and r.marker.evaluate({"extra": extra}) and not r.marker.evaluate({"extra": ""}):
                    todo.append(sub)
    return seen


def _size(names: set[str]) -> int:
    total = 0
    for name in names:
        dist = metadata.distribution(name)
        for f in dist.files or []:
            p = Path(dist.locate_file(f))
            if p.is_file():
                total += p.stat().st_size
    return total


def _project_requirements() -> tuple[list[str], list[str]]:
    """(base requirements, the torch extra's) from this checkout's pyproject.toml (the installed
    metadata of an editable install can be older than the checkout)."""
    import tomllib

    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            project = tomllib.loads((parent / "pyproject.toml").read_text())["project"]
            return list(project["dependencies"]), list(project["optional-dependencies"]["torch"])
    dist = metadata.distribution("mskmorphometry")
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in dist.requires or []]
    base = [str(r) for r in reqs if r.marker is None]
    extra = [f"{r.name}{r.specifier}" for r in reqs if r.marker is not None and r.marker.evaluate({"extra": "torch"})]
    return base, extra


def environment_sizes() -> dict:
    base_reqs, torch_reqs = _project_requirements()
    base = _closure(base_reqs)
    torch = _closure(base_reqs + torch_reqs)
    return {"without_torch_mb": _size(base) / 1e6, "with_torch_mb": _size(torch) / 1e6,
            "distributions_without_torch": len(base), "distributions_with_torch": len(torch),
            "torch_adds": sorted(torch - base)}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=20, help="network calls per network and backend")
    parser.add_argument("--starts", type=int, default=3, help="fresh processes per start-to-result measurement")
    parser.add_argument("--json", type=Path, help="also write the numbers here")


def run(args) -> int:
    from MSKCommonLib.device import inference_threads

    print(f"CPU threads: {inference_threads()} (MSKMORPH_THREADS), {os.cpu_count()} cores")
    nets = network_seconds(args.repeats)
    print("\nnetwork call, median seconds per image")
    for name in dict.fromkeys(r["network"] for r in nets):
        o, t = (next(r["median_s"] for r in nets if r["network"] == name and r["backend"] == b) for b in BACKENDS)
        print(f"  {name:28s} onnx {o:7.4f} s   torch {t:7.4f} s   torch/onnx {t / o:4.2f}")
    starts = start_to_result(args.starts)
    print("\nprocess start to result, mskmorph cobb on the sample film (median seconds)")
    for what in dict.fromkeys(r["what"] for r in starts):
        o, t = (next(r["median_s"] for r in starts if r["what"] == what and r["backend"] == b) for b in BACKENDS)
        print(f"  {what:36s} onnx {o:6.2f} s   torch {t:6.2f} s   torch/onnx {t / o:4.2f}")
    sizes = environment_sizes()
    print(f"\ninstalled runtime environment: {sizes['without_torch_mb']:.0f} MB without torch "
          f"({sizes['distributions_without_torch']} distributions), {sizes['with_torch_mb']:.0f} MB with the torch "
          f"extra (adds {', '.join(sizes['torch_adds'])})")
    if args.json:
        args.json.write_text(json.dumps({"networks": nets, "start_to_result": starts, "sizes": sizes}, indent=1))
    return 0
