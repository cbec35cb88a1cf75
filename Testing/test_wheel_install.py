"""A built wheel, installed (not editable) into a fresh virtual environment outside the checkout,
runs ``mskmorph cobb`` from another folder and gives the editable install's angles: the weights
and the other package data are found as package data, not through the repository's layout."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO, SAMPLE_DATA


def run(*command, cwd=None):
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done


def test_a_wheel_in_a_fresh_environment_gives_the_editable_installs_angles(tmp_path):
    import shutil

    source = tmp_path / "source"  # built from a copy: no build/ folder is left in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                  "demo-out", ".gl"))
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", wheels, source)
    wheel = next(wheels.glob("mskmorphometry-*.whl"))
    fresh = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", fresh)
    python = fresh / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    # the dependencies (torch, slicer-core, ...) come from this environment's site-packages, added
    # as a plain path: its .pth files (this checkout's editable install) are not read
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = run(python, "-c", "import MSKCommonLib, CobbAngleLib.predict as p; print(MSKCommonLib.__file__); "
                              "print(p.DEFAULT_WEIGHTS)", cwd=tmp_path).stdout.split()
    assert all(str(fresh) in w for w in where), where  # the installed copy, weights inside the package
    assert not any(str(REPO) in w for w in where)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sample = SAMPLE_DATA / "SpinePhantom_AP.png"
    run(fresh / "bin" / "mskmorph", "cobb", sample, "--out", "installed", "--device", "cpu", cwd=elsewhere)
    run(Path(sys.executable).parent / "mskmorph", "cobb", sample, "--out", "editable", "--device", "cpu", cwd=elsewhere)
    installed = json.loads((elsewhere / "installed" / "SpinePhantom_AP_cobb.json").read_text())
    editable = json.loads((elsewhere / "editable" / "SpinePhantom_AP_cobb.json").read_text())
    assert installed["curves"] == editable["curves"]
    assert installed["landmarks_px"] == editable["landmarks_px"]
