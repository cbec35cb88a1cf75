"""The catalogue of measurement modules: what each front end (the command line, the Slicer
modules, the worker process, the browser review) needs to know to run one, by name.

Each module's Lib package provides the same parts:
  pipeline.py  ``<X>Pipeline().run(image, <X>Options, progress, should_cancel) -> <X>Result``
  review.py    ``<X>Presenter``: how the result is drawn as nodes and measured again (review layer)
  files.py     ``write_outputs(live, out, stem, ...)``, ``csv_values(record)``, ``COLUMNS``,
               ``POINT_FILES`` and ``RECORD_FILE``: the files the command line and the browser
               review's Accept write
  requirements.txt   what the module needs in Slicer's Python
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModuleSpec:
    key: str  # the command: cobb, knee, back
    name: str  # the Slicer module: CobbAngle, ...
    package: str  # CobbAngleLib, ...
    prefix: str  # class name prefix in the package: Cobb, Knee, Back
    colour: bool  # the input is a colour photo (shown as a colour volume)
    title: str  # what the module measures, for people

    def _attr(self, module: str, name: str):
        return getattr(importlib.import_module(f"{self.package}.{module}"), name)

    def pipeline(self):
        return self._attr("pipeline", f"{self.prefix}Pipeline")()

    def options(self, **values):
        return self._attr("pipeline", f"{self.prefix}Options")(**values)

    @property
    def options_class(self):
        return self._attr("pipeline", f"{self.prefix}Options")

    def presenter(self):
        return self._attr("review", f"{self.prefix}Presenter")()

    def files(self):
        return importlib.import_module(f"{self.package}.files")

    def requirements_file(self):
        from .resources import packaged

        return packaged(self.package, "requirements.txt")


MODULES = {
    "cobb": ModuleSpec("cobb", "CobbAngle", "CobbAngleLib", "Cobb", False, "Cobb angles on spine AP radiographs"),
    "knee": ModuleSpec("knee", "KneeLandmarks", "KneeLandmarksLib", "Knee", False,
                       "KNEEL landmarks and joint space width on knee radiographs"),
    "back": ModuleSpec("back", "SpineMorphology", "SpineMorphologyLib", "Back", True,
                       "back depth, surface and spine curve from an RGB photo"),
}


def spec(key: str) -> ModuleSpec:
    try:
        return MODULES[key]
    except KeyError:
        raise ValueError(f"unknown module {key!r}; one of {', '.join(MODULES)}") from None
