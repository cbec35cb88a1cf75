"""Throughput of ``mskmorph archive cobb`` against a local Orthanc: films/s for 1 and 2 workers (or
the counts given), seconds per stage (WADO fetch, read, network and measuring, SR/SEG building,
STOW store) and peak memory per worker process.

    PYTHONPATH=MSKCommon python -m MSKCommonTools.bench_archive [--films 32] [--workers 1 2]
        [--height 2400] [--url URL]

Without ``--url`` it starts a throw-away Orthanc with its DICOMweb plugin (Debian's ``orthanc`` and
``orthanc-dicomweb``, ``MSKCommonTools.orthanc``) and stores ``--films`` generated spine phantoms
in it as DX films (2400 x 900 pixels, 8 bits, by default). With ``--url`` (credentials as for
``mskmorph archive``) it reads the films already there. Each worker count runs the archive's own
listing and Dask tasks with a model version of its own (so each run stores its own SRs and none
is skipped); the films/s are timed from the first film sent to the last outcome, so the cluster's
start and the model loads are left out (they are printed apart).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import nullcontext
from pathlib import Path


def _phantom_films(folder: Path, n: int, height: int) -> list[Path]:
    """``n`` spine phantoms as DX films (a Secondary Capture of the pixels, made a DX series)."""
    from CobbAngleTools.phantom import render_spine_phantom
    from MSKCommonLib.dicom_export import DicomOptions, secondary_capture
    from MSKCommonLib.image import image_from_array

    paths = []
    for seed in range(n):
        phantom = render_spine_phantom(1000 + seed, height=height, width=height * 3 // 8)
        image = image_from_array(phantom.pixels, spacing_mm=phantom.spacing_mm, source=f"phantom{seed}")
        ds = secondary_capture(image, DicomOptions(patient_id=f"BENCH{seed:04d}", patient_name="Bench^Phantom"))
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "DX", 1, "bench phantom"
        ds.Manufacturer = "phantom generator"  # not ours: the archive leaves MSKMorphometry objects out
        path = folder / f"phantom{seed:04d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def _args(url: str, state: Path, workers: int):
    from MSKCommonLib import archive

    parser = argparse.ArgumentParser(prog="mskmorph archive cobb")
    archive.configure_parser(parser)
    return parser.parse_args(["--url", url, "--state", str(state), "--workers", str(workers), "--device", "cpu"])


def bench(url: str, workers: int, folder: Path) -> dict:
    """One archive run of every film at ``url`` on ``workers`` local worker processes."""
    from MSKCommonLib import archive

    args = _args(url, folder / f"state-{workers}.sqlite", workers)
    settings = archive.access(args)
    values = archive.module_values(args, "cobb")
    model = f"{archive.measuring_version('cobb', values)} bench-{workers}-{time.time_ns()}"  # new SR UIDs per run
    state = archive.State(args.state)
    try:
        client = archive.connect(settings, args.timeout)
        archive.list_films(client, state, ["DX", "CR"], [None], args.page_size, model)
        todo = state.count("pending")
        start = time.perf_counter()
        outcomes, seconds = archive._measure(args, "cobb", settings, values, model, state, todo)
        total = time.perf_counter() - start
    finally:
        state.close()
    done = [o for o in outcomes if o["status"] == "done"]
    stages, cpu = Counter(), Counter()
    for o in done:
        stages.update(o["stages"])
        cpu.update(o.get("cpu_stages") or {})
    memory = defaultdict(float)
    for o in outcomes:
        worker = o.get("worker") or "?"
        memory[worker] = max(memory[worker], o.get("peak_memory_mb") or 0.0)
    return {"workers": workers, "films": len(outcomes), "done": len(done), "seconds": seconds,
            "films_per_s": len(outcomes) / seconds if seconds else 0.0, "start_s": total - seconds,
            "stages": {k: v / max(len(done), 1) for k, v in stages.items()},
            "cpu": {k: v / max(len(done), 1) for k, v in cpu.items()},
            "film_s": sum(o["seconds"] for o in done) / max(len(done), 1), "peak_mb": dict(memory),
            "failed": Counter(o.get("reason") for o in outcomes if o["status"] != "done")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MSKCommonTools.bench_archive", description=__doc__.split("\n")[0])
    parser.add_argument("--films", type=int, default=32, help="phantoms stored in the throw-away Orthanc (default 32)")
    parser.add_argument("--height", type=int, default=2400, help="phantom height in pixels (default 2400)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--url", help="a PACS holding the films already (default: a throw-away Orthanc)")
    args = parser.parse_args(argv)
    from MSKCommonTools.orthanc import PASSWORD, USER, running_orthanc, store

    with tempfile.TemporaryDirectory(prefix="mskmorph-bench-archive-") as tmp:
        folder = Path(tmp)
        server = nullcontext({"dicomweb": args.url}) if args.url else running_orthanc()
        with server as pacs:
            if not args.url:
                os.environ["MSKMORPH_PACS_USERNAME"], os.environ["MSKMORPH_PACS_PASSWORD"] = USER, PASSWORD
                for path in _phantom_films(folder, args.films, args.height):
                    store(pacs, path)
            print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; films at {pacs['dicomweb']}", flush=True)
            results = [bench(pacs["dicomweb"], n, folder) for n in args.workers]
    stage_names = ("fetch", "read", "measure", "dicom", "store")
    print("\n| workers | films | films/s | s per film (one worker's time) | "
          + " | ".join(f"{s} s (CPU s)" for s in stage_names) + " | peak MB per worker | cluster start + model load s |")
    print("|---" * (6 + len(stage_names)) + "|")
    for r in results:
        print(f"| {r['workers']} | {r['done']}/{r['films']} | {r['films_per_s']:.2f} | {r['film_s']:.3f} | "
              + " | ".join(f"{r['stages'].get(s, 0.0):.3f} ({r['cpu'].get(s, 0.0):.3f})" for s in stage_names)
              + f" | {', '.join(f'{v:.0f}' for v in r['peak_mb'].values())} | {r['start_s']:.1f} |")
    for r in results:
        for reason, n in r["failed"].items():
            print(f"{r['workers']} workers: {n} failed: {reason}")
    if len(results) > 1 and results[0]["films_per_s"]:
        print(f"\nscaling {results[0]['workers']} -> {results[-1]['workers']} workers: "
              f"{results[-1]['films_per_s'] / results[0]['films_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
