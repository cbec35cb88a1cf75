"""The Slicer-side adapter of a measurement module, usable without the GUI (headless tests, the
modules' self-tests, scripts in Slicer's Python console):

    logic = ModuleLogic("cobb")
    live = logic.process(volume_node, logic.options(convention="clinical"))

volume node -> ``image_from_volume`` (the file reader's rules) -> the module's pipeline (in this
process, or in a worker process with ``start_job``) -> the review layer's nodes. The widgets of
the three modules use exactly this, so Slicer gives the command line's numbers by construction.
"""
from __future__ import annotations

from typing import Callable, Optional

from .modules import spec as module_spec
from .review import Review


class ModuleLogic:
    def __init__(self, module: str):
        self.spec = module_spec(module)
        self.review = Review(self.spec.presenter())
        self._pipeline = None

    def options(self, **values):
        return self.spec.options(**values)

    def read(self, volume_node):
        """The pipeline's input from a volume node (``MSKCommonLib.mrml.image_from_volume``)."""
        from .mrml import image_from_volume

        return image_from_volume(volume_node)

    def check_rerun(self, volume_node, on_existing: str = "ask"):
        """Ask the re-run question before any work: raises EditedResultExists when the previous
        result on this image has edited points and ``on_existing`` is "ask"."""
        return self.review.check_rerun(volume_node.GetScene(), volume_node, on_existing)

    def run(self, image, options=None, progress: Optional[Callable] = None, should_cancel: Optional[Callable] = None):
        """The pipeline in this process (the networks load on first use)."""
        if self._pipeline is None:
            self._pipeline = self.spec.pipeline()
        return self._pipeline.run(image, options or self.options(), progress=progress, should_cancel=should_cancel)

    def start_job(self, image, options=None, python: Optional[str] = None):
        """The pipeline in a worker process (``MSKCommonLib.job.WorkerJob``), already started."""
        from .job import WorkerJob

        return WorkerJob(self.spec.key, image, options or self.options(), python=python).start()

    def present(self, volume_node, result, on_existing: str = "ask"):
        """Show a result on its image as the review layer's nodes."""
        return self.review.show(volume_node.GetScene(), volume_node, result, on_existing)

    def process(self, volume_node, options=None, on_existing: str = "ask"):
        """Read, check the re-run choice (before anything runs), run here, present."""
        image = self.read(volume_node)
        self.check_rerun(volume_node, on_existing)
        return self.present(volume_node, self.run(image, options), on_existing)

    def export_dicom(self, live, folder, source_file=None, editor: str = "") -> dict:
        """The shown result (with the points as the user left them) as DICOM files in ``folder``:
        the SR (and the Cobb SEG), referring to ``source_file`` (the film's DICOM file: in Slicer,
        the DICOM database's file of the volume's instance UID) or, when there is none, to a
        Secondary Capture of the volume written beside them. ``editor``: who moved points (named
        in the SR when the result has edited points). Returns {kind: path}; the same objects as
        ``mskmorph ... --dicom``. Slicer's DICOM database import is the widget's part."""
        import importlib
        import re
        from pathlib import Path

        from .dicom_export import DicomOptions, DicomRequest, check_source, export, is_dicom_file
        from .mrml import image_from_volume

        if source_file is None:
            storage = live.volume.GetStorageNode()
            name = storage.GetFileName() if storage is not None else None
            source_file = name if name and is_dicom_file(name) else None
        check_source(source_file)
        module = importlib.import_module(f"{self.spec.package}.dicom")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", live.volume.GetName()).strip("_") or "film"
        request = DicomRequest(None if source_file is None else Path(source_file), image_from_volume(live.volume),
                               DicomOptions(editor=editor or ""))
        return export(request, live, live.record(), folder, stem, module.build,
                      getattr(module, "ORIENTATION", ("L", "F")))

    def find(self, volume_node):
        return None if volume_node is None else self.review.find(volume_node.GetScene(), volume_node)

    def cleanup(self) -> None:
        self.review.detach_all()
