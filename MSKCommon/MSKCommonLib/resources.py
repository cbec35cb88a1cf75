"""Files shipped inside the packages (network weights, model cards, requirement lists), found as
package data: the same code finds them in a source tree, an editable or a wheel install, and in
Slicer, where CMake installs each package folder next to the scripted modules."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def packaged(package: str, *parts: str) -> Path:
    """The path of a file (or folder) inside an installed package, e.g.
    ``packaged("CobbAngleLib", "models", "cobb_seg4reg.pt")``. Packages are installed as
    folders (never zipped), so this is a plain file path."""
    return Path(str(files(package).joinpath(*parts)))
