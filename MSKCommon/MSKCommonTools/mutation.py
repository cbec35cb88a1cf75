"""Mutation testing of the measurement code, as a benchmark (not in CI).

    python -m MSKCommonTools.mutation [--workers 1] [--keep DIR] [--shared ../shared/data]

Runs mutmut (3.x) over CobbAngle/CobbAngleLib/geometry.py, KneeLandmarks/KneeLandmarksLib/measure.py,
MSKCommon/MSKCommonLib/review.py and SpineMorphology/SpineMorphologyLib/morphology.py with the fast
test files that cover them (the configuration is ``[tool.mutmut]`` in pyproject.toml), and prints
the share of mutants killed per module.

mutmut 3 imports the mutated code from ``./``, ``src/`` or ``source/`` under its ``mutants/``
copy, and names the mutants by file path: this repository's layout (``CobbAngle/CobbAngleLib``,
packages mapped by setuptools' package-dir) would give mutant names that never match the imported
modules. So the script stages a src layout in a scratch folder (``src/<package>`` for each of the
eight packages, ``Testing/``, ``Resources/``, the pyproject.toml with its ``[tool.mutmut]``),
runs ``mutmut run`` there with the shared data folder passed on (MSKMORPH_SHARED_DATA) and reads
``mutmut results --all true``. It may take a long while; on a shared machine:

    nohup python -m MSKCommonTools.mutation --workers 1 > mutation.log 2>&1 &
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "MSKCommonLib": "MSKCommon/MSKCommonLib", "MSKCommonTools": "MSKCommon/MSKCommonTools",
    "CobbAngleLib": "CobbAngle/CobbAngleLib", "CobbAngleTools": "CobbAngle/CobbAngleTools",
    "KneeLandmarksLib": "KneeLandmarks/KneeLandmarksLib", "KneeLandmarksTools": "KneeLandmarks/KneeLandmarksTools",
    "SpineMorphologyLib": "SpineMorphology/SpineMorphologyLib",
    "SpineMorphologyTools": "SpineMorphology/SpineMorphologyTools",
}
MODULES = ("CobbAngleLib.geometry", "KneeLandmarksLib.measure", "MSKCommonLib.review", "SpineMorphologyLib.morphology")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def stage(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, rel in PACKAGES.items():
        shutil.copytree(REPO / rel, dest / "src" / name, ignore=ignore)
    shutil.copytree(REPO / "Testing", dest / "Testing", ignore=ignore)
    shutil.copytree(REPO / "Resources", dest / "Resources", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")


def scores(results: str) -> dict:
    """{module: Counter(status)} from `mutmut results --all true` lines 'src.X.Y.x_f__mutmut_3: killed'."""
    out: dict[str, Counter] = {m: Counter() for m in MODULES}
    for line in results.splitlines():
        m = re.match(r"\s*([\w.]+)__mutmut_\d+:\s*(.+?)\s*$", line)
        if not m:
            continue
        name = m.group(1)
        for module in MODULES:
            if f".{module}." in f".{name}" or name.startswith(module + "."):
                out[module][m.group(2)] += 1
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="mutmut worker processes (default 1)")
    parser.add_argument("--keep", type=Path, default=None, help="stage here and keep it (default: a temporary folder)")
    parser.add_argument("--shared", type=Path, default=None, help="shared data folder (default: MSKCommonTools.shared_data())")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mskmorph-mutation-"))
    if not (work / "src").is_dir():
        stage(work)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the staged src/ only: the original code must not be importable
    if args.shared is not None:
        env["MSKMORPH_SHARED_DATA"] = str(args.shared.resolve())
    else:
        env.setdefault("MSKMORPH_SHARED_DATA", str((REPO.parent / "shared" / "data").resolve()))
    env.setdefault("OMP_NUM_THREADS", "1")
    mutmut = [sys.executable, "-m", "mutmut"]
    cmd = mutmut + ["run", "--max-children", str(args.workers)]
    print("in", work, ":", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=work, env=env, check=False)
    res = subprocess.run(mutmut + ["results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True)
    (work / "results.txt").write_text(res.stdout)
    print(f"\nmutation score (killed / all mutants), measured by: python -m MSKCommonTools.mutation --workers {args.workers}")
    for module, c in scores(res.stdout).items():
        total = sum(c.values())
        killed = sum(v for k, v in c.items() if k in KILLED)
        share = f"{100 * killed / total:5.1f} %" if total else "  n/a"
        print(f"  {module:32s} {share}  ({killed}/{total}; {dict(c)})")
    print(f"survivors: grep survived {work / 'results.txt'}; show one: cd {work} && mutmut show NAME")
    return 0


if __name__ == "__main__":
    sys.exit(main())
