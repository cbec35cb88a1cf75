"""Mutation testing of the measurement, geometry and review-layer code, as a benchmark (not in CI).

    python -m MSKCommonTools.mutation [--module NAME ...] [--workers 1] [--keep DIR] [--shared DIR]

The code measured ("the measurement, geometry and review layer"): the Cobb geometry
(CobbAngle/CobbAngleLib/geometry.py: endplate lines, tilts, Cobb angles, curve ends), the knee
measures (KneeLandmarks/KneeLandmarksLib/measure.py: joint space width), the back measures
(SpineMorphology/SpineMorphologyLib/morphology.py: midline, keypoints, trunk measures) and the
review layer every module and front end shares (MSKCommon/MSKCommonLib/review.py). Each module is
mutated on its own, with the fast test files that cover it (``TESTS`` below), and the script
prints the share of mutants killed per module and overall.

mutmut 3 imports the mutated code from ``./``, ``src/`` or ``source/`` under its ``mutants/``
copy, and names the mutants by file path: this repository's layout (``CobbAngle/CobbAngleLib``,
packages mapped by setuptools' package-dir) would give mutant names that never match the imported
modules. So the script stages a src layout per module in a scratch folder (``<DIR>/<module>/``:
``src/<package>`` for each of the eight packages, ``Testing/``, ``Resources/``, the pyproject.toml
whose ``[tool.mutmut]`` gets that module's ``only_mutate`` and test selection), runs ``mutmut run``
there with the shared data folder passed on (MSKMORPH_SHARED_DATA) and reads
``mutmut results --all true``. A kept folder (``--keep``) resumes: mutants already tested keep
their result; ``--retest`` tests again only the mutants it did not kill, with the current test files
(after tests were added: a killed mutant stays killed). On a shared machine, one worker, in the
background:

    nohup python -m MSKCommonTools.mutation --workers 1 --keep /tmp/mutation > mutation.log 2>&1 &

Survivors: ``grep survived <DIR>/<module>/results.txt``; one of them: ``cd <DIR>/<module> &&
python -m mutmut show NAME``. Needs ``pip install mutmut==3.8.1`` (the ``mutation`` extra).
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
# module -> the fast test files (pytest ids) that cover it; mutmut runs, for each mutant, only the
# tests of this selection that call the mutated function. The slower MRML tests of the modules
# (test_back_mrml, and for the geometry and the knee measures test_cobb_mrml and test_knee_mrml)
# are left out: they exercise this code through the review layer, which the files here cover
# directly, and a surviving mutant runs every selected test that calls its function.
TESTS = {
    "CobbAngleLib.geometry": [
        "Testing/test_cobb_geometry.py",
        "Testing/test_geometry_properties.py",
        "Testing/test_cobb_curves.py",
    ],
    "KneeLandmarksLib.measure": [
        "Testing/test_knee_measure.py",
        "Testing/test_knee_record.py",
        "Testing/test_geometry_properties.py",
    ],
    "MSKCommonLib.review": [
        "Testing/test_point_observers.py",
        "Testing/test_review_layer.py",
        "Testing/test_cobb_mrml.py",
        "Testing/test_knee_mrml.py",
    ],
    "SpineMorphologyLib.morphology": [
        "Testing/test_back_morphology.py",
        "Testing/test_morphology_measures.py",
        "Testing/test_morphology_midline.py",
        "Testing/test_morphology_back_search.py",
        "Testing/test_back_frame.py",
        "Testing/test_back_keypoint_repair.py",
    ],
}
# tests left out of a module's selection (pytest ids): the anny-surface dimple test loads the anny
# body model (about 80 s, for every mutant of the functions it calls); the shallow-hollow path it
# checks is tested on a constructed back (test_morphology_back_search.py)
DESELECT: list[str] = [
    "Testing/test_back_keypoint_repair.py::test_shallow_dimples_of_a_measured_surface_are_found_and_flagged",
]
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def source_file(module: str) -> str:
    package, name = module.split(".")
    return f"src/{package}/{name}.py"


def stage(dest: Path, module: str) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, rel in PACKAGES.items():
        shutil.copytree(REPO / rel, dest / "src" / name, ignore=ignore)
    shutil.copytree(REPO / "Testing", dest / "Testing", ignore=ignore)
    shutil.copytree(REPO / "Resources", dest / "Resources", ignore=ignore)
    write_config(dest, module)


def write_config(dest: Path, module: str) -> None:
    """The repository's pyproject.toml with the module's only_mutate and test selection."""
    text = (REPO / "pyproject.toml").read_text()
    tests = [t for t in TESTS[module] if (REPO / t.split("::")[0]).is_file()]
    selection = tests + [arg for t in DESELECT if t.split("::")[0] in tests for arg in ("--deselect", t)]
    lines = (f"only_mutate = [{source_file(module)!r}]\n"
             f"pytest_add_cli_args_test_selection = [{', '.join(repr(t) for t in selection)}]\n")
    text, n = re.subn(r"^\[tool\.mutmut\]\n", lambda m: m.group(0) + lines.replace("'", '"'), text, flags=re.M)
    assert n == 1, "pyproject.toml has no [tool.mutmut] section"
    (dest / "pyproject.toml").write_text(text)


def scores(results: str, module: str) -> Counter:
    """Counter(status) of ``module``'s mutants from `mutmut results --all true` lines
    '  CobbAngleLib.geometry.x_cobb_angles__mutmut_3: killed'."""
    out: Counter = Counter()
    for line in results.splitlines():
        m = re.match(r"\s*([\w.]+)__mutmut_\d+:\s*(.+?)\s*$", line)
        if m and (m.group(1).startswith(module + ".") or f".{module}." in f".{m.group(1)}"):
            out[m.group(2)] += 1
    return out


def not_killed(results: str) -> list[str]:
    """mutmut names to test again: exact names of survivors, ``function*`` patterns for the
    functions that had no tests or were not checked yet (a pattern, because mutmut looks exact
    names up among the functions that have tests)."""
    names, functions = [], set()
    for line in results.splitlines():
        m = re.match(r"\s*(([\w.\u01c1]+)__mutmut_\d+):\s*(.+?)\s*$", line)
        if not m or m.group(3) in KILLED:
            continue
        if m.group(3) == "survived":
            names.append(m.group(1))
        else:
            functions.add(m.group(2) + "__mutmut_*")
    return names + sorted(functions)


def refresh_tests(work: Path, module: str) -> None:
    """The repository's current test files and selection into a kept folder (and mutmut's copy
    of it), the current code (mutmut makes new mutants of the functions that changed), and mutmut's
    test statistics dropped so that it maps the tests to the functions again."""
    write_config(work, module)
    for name, rel in PACKAGES.items():
        shutil.rmtree(work / "src" / name)
        shutil.copytree(REPO / rel, work / "src" / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    mutated = work / source_file(module)
    for path in (work / "src").rglob("*"):  # mutmut keeps its copies: drop those of other files that changed
        copy = work / "mutants" / path.relative_to(work)
        if path.is_file() and path != mutated and copy.is_file() and copy.read_bytes() != path.read_bytes():
            copy.unlink()
    for dest in (work / "Testing", work / "mutants" / "Testing"):
        if dest.is_dir():
            shutil.rmtree(dest)
            shutil.copytree(REPO / "Testing", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)


def run_module(work: Path, module: str, workers: int, env: dict, retest: bool = False) -> Counter:
    mutmut = [sys.executable, "-m", "mutmut"]
    names: list[str] = []
    if not (work / "src").is_dir():
        stage(work, module)
    elif retest:
        before = subprocess.run(mutmut + ["results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True)
        names = not_killed(before.stdout)
        refresh_tests(work, module)
        if not names:
            return scores(before.stdout, module)
    cmd = mutmut + ["run", "--max-children", str(workers)] + names
    shown = cmd if len(cmd) < 12 else cmd[:5] + [f"... {len(names)} names of mutants not killed"]
    print(f"\n== {module}: in {work}: {' '.join(shown)}", flush=True)
    subprocess.run(cmd, cwd=work, env=env, check=False)
    res = subprocess.run(mutmut + ["results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True)
    (work / "results.txt").write_text(res.stdout)
    return scores(res.stdout, module)


def line(name: str, c: Counter) -> str:
    total = sum(c.values())
    killed = sum(v for k, v in c.items() if k in KILLED)
    share = f"{100 * killed / total:5.1f} %" if total else "  n/a"
    return f"  {name:32s} {share}  ({killed}/{total}; {dict(c)})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(TESTS), help="only this module (repeatable; default: all)")
    parser.add_argument("--workers", type=int, default=1, help="mutmut worker processes (default 1)")
    parser.add_argument("--keep", type=Path, default=None, help="stage here and keep it, one folder per module (default: a temporary folder)")
    parser.add_argument("--retest", action="store_true",
                        help="with --keep: test again, with the current test files, only the mutants a previous run did not kill")
    parser.add_argument("--shared", type=Path, default=None, help="shared data folder (default: MSKCommonTools.shared_data())")
    args = parser.parse_args(argv)
    if shutil.which("mutmut") is None and subprocess.run([sys.executable, "-m", "mutmut", "--version"],
                                                         capture_output=True).returncode != 0:
        parser.error("mutmut is not installed: pip install mutmut==3.8.1 (the mutation extra)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mskmorph-mutation-"))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the staged src/ only: the original code must not be importable
    if args.shared is not None:
        env["MSKMORPH_SHARED_DATA"] = str(args.shared.resolve())
    else:
        from MSKCommonTools import shared_data

        found = shared_data()
        if found is not None:
            env.setdefault("MSKMORPH_SHARED_DATA", str(Path(found).resolve()))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MSKMORPH_THREADS", "1")
    modules = args.module or list(TESTS)
    results = {m: run_module(work / m, m, args.workers, env, args.retest) for m in modules}
    command = "python -m MSKCommonTools.mutation" + "".join(f" --module {m}" for m in args.module or []) \
        + f" --workers {args.workers}"
    print(f"\nmutation score (killed / all mutants), measured by: {command}")
    for module, c in results.items():
        print(line(module, c))
    if len(results) > 1:
        print(line("all", sum(results.values(), Counter())))
    print(f"survivors: grep survived {work}/<module>/results.txt; show one: cd {work}/<module> && python -m mutmut show NAME")
    return 0


if __name__ == "__main__":
    sys.exit(main())
