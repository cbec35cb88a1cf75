"""The Slicer widget toolkit the three modules share (imported only inside desktop Slicer).

``MeasurementWidget`` is the whole behaviour of a module's panel; a module's ``<Module>.py``
subclasses it with its key, its parameter node and how its options are read from the panel:

- **Apply**: the selected image is read (``image_from_volume``: the file reader's rules); if the
  previous result on it has points moved by hand, one question first: keep it (a new result is
  made beside it), replace it, or cancel (nothing runs); then the requirement step (asks before
  installing, with versions and sizes); then the pipeline runs in a worker process
  (``MSKCommonLib.job``: Slicer's main thread holds Python's lock while Qt runs, so a thread
  would barely advance) with progress, and the UI stays responsive; its result is shown through
  the review layer. Results from given points (no network) run at once, in this process.
- **Cancel** ends the worker process at once; nothing is shown, nothing is created.
- **Reset edited points** puts moved points back; the table follows (the review layer).
- **Accept** signs the shown result (``LiveResult.accept``): the user's name (Slicer's user, else
  asked) and the time go into the record; open CHECK warnings are listed and must be confirmed
  (recorded); **Export to DICOM** then writes a VERIFIED SR. An edit afterwards withdraws it.
- **Reload** (developer mode) reloads MSKCommonLib and the module's Lib as well.
The panel's own widgets are named alike in the three ``.ui`` files: ``inputVolumeSelector``,
``deviceComboBox``, ``applyButton``, ``cancelButton``, ``progressBar``, ``statusLabel``,
``resultsTableView``, ``warningLabel``, ``resetPointsButton``, ``acceptButton``.
"""
from __future__ import annotations

import importlib
import logging
import sys

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from . import requirements as reqs
from .review import EditedResultExists

POLL_MS = 100


def ask_keep_replace(message: str, title: str):
    """One question for a re-run over edited points: "keep", "replace" or None (cancelled, also
    when the dialog is closed with Esc)."""
    box = qt.QMessageBox(slicer.util.mainWindow())
    box.setWindowTitle(title)
    box.setIcon(qt.QMessageBox.Question)
    box.setText(message)
    keep = box.addButton(_("Keep it, make a new result"), qt.QMessageBox.AcceptRole)
    replace = box.addButton(_("Replace it"), qt.QMessageBox.DestructiveRole)
    cancel = box.addButton(qt.QMessageBox.Cancel)
    box.setDefaultButton(keep)
    box.setEscapeButton(cancel)
    box.exec_()
    return {keep: "keep", replace: "replace"}.get(box.clickedButton())


def ensure_requirements(spec) -> bool:
    """The requirement step: what is missing or of the wrong version, with the download size, asked
    before installing with Slicer's own installer. No PyTorch: the networks run with ONNX Runtime
    (about 24 MB). False when the user declines."""
    missing = reqs.missing(spec.requirements_file())
    if not missing:
        return True
    text = _("{title} needs Python packages that this Slicer does not have yet:\n\n{packages}\n\n"
             "About {mb} MB in all are downloaded from the Python Package Index (no PyTorch: the networks run "
             "with ONNX Runtime). Install them now?").format(
        title=spec.name, packages=reqs.describe(missing), mb=reqs.download_mb(missing))
    if not slicer.util.confirmOkCancelDisplay(text, windowTitle=_("{title}: install Python packages").format(title=spec.name)):
        return False
    with slicer.util.WaitCursor():
        packaging = getattr(slicer, "packaging", None)
        install = getattr(packaging, "pip_install", None) or slicer.util.pip_install
        install([str(r) for r in missing])
    importlib.invalidate_caches()
    still = reqs.missing(spec.requirements_file())
    if still:
        raise RuntimeError(_("These packages could not be installed: {packages}").format(
            packages=", ".join(str(r) for r in still)))
    return True


def dicom_file_of(volume):
    """The DICOM file a volume was loaded from by Slicer's DICOM module (its instance UID in the
    DICOM database), else None (the export makes a Secondary Capture)."""
    uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return None
    return database.fileForInstance(uids[0]) or None


def slicer_user() -> str:
    """The user's name from Slicer's settings (Edit > Application Settings > User), or ""."""
    try:
        info = slicer.app.applicationLogic().GetUserInformation()
        return info.GetName() or "" if info is not None else ""
    except AttributeError:
        return ""


class MeasurementWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    logic_class = None  # the module's Logic: a ModuleLogic whose getParameterNode() wraps its parameter node

    # --- what a module adds

    def options(self):
        """The pipeline's options from the panel."""
        return self.logic.options(device=self._parameterNode.device)

    def needs_network(self, options) -> bool:
        return True

    # --- set-up

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._pending = None  # (volume, on_existing) of the running job

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logic_class()
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.enabled = False
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self._poll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.resetPointsButton.connect("clicked(bool)", self.onResetPointsButton)
        self.ui.acceptButton.connect("clicked(bool)", self.onAcceptButton)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicomButton)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._showResultOf)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._cancelJob()
        self.removeObservers()
        if self.logic is not None:
            self.logic.cleanup()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelJob()
        self.logic.cleanup()
        self._showNodes(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            selector = self.ui.inputVolumeSelector
            first = next((slicer.mrmlScene.GetFirstNodeByClass(c) for c in selector.nodeTypes
                          if slicer.mrmlScene.GetFirstNodeByClass(c)), None)
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()
            self._showResultOf(self._parameterNode.inputVolume)

    def _checkCanApply(self, caller=None, event=None) -> None:
        ok = bool(self._job is None and self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = ok
        self.ui.applyButton.toolTip = _("A measurement is running") if self._job else (
            _("Measure the selected image") if ok else _("Select an image"))

    # --- apply, cancel, reset

    def onApplyButton(self) -> None:
        if self._job is not None:
            return
        with slicer.util.tryWithErrorDisplay(_("{module} failed.").format(module=self.moduleName), waitCursor=True):
            volume = self._parameterNode.inputVolume
            image = self.logic.read(volume)  # a 3D volume or no image is refused before any work
            options = self.options()
            onExisting = "ask"
            try:
                self.logic.check_rerun(volume, "ask")
            except EditedResultExists as e:
                onExisting = ask_keep_replace(str(e), _("Edited points"))
                if onExisting is None:
                    self.ui.statusLabel.text = _("Cancelled: the edited result was kept.")
                    return
            if not self.needs_network(options):
                self._present(volume, self.logic.run(image, options), onExisting)
                return
            if not ensure_requirements(self.logic.spec):
                self.ui.statusLabel.text = _("The network needs Python packages that are not installed.")
                return
            self._job = self.logic.start_job(image, options)
            self._pending = (volume, onExisting)
            self._setRunning(True)

    def onCancelButton(self) -> None:
        self._cancelJob()
        self.ui.statusLabel.text = _("Cancelled: nothing was changed.")

    def onResetPointsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to reset the points."), waitCursor=True):
            live = self.logic.find(self._parameterNode.inputVolume if self._parameterNode else None)
            if live is not None:
                live.reset_edited_points()
                self._showNodes(live, fitViews=False)

    def onAcceptButton(self) -> None:
        """Sign the shown result as the user: their name and the time into the record, after they
        confirmed each open CHECK warning (recorded as ``review.checks_acknowledged``)."""
        with slicer.util.tryWithErrorDisplay(_("Failed to accept the result.")):
            live = self.logic.find(self._parameterNode.inputVolume if self._parameterNode else None)
            if live is None:
                raise ValueError(_("Measure the image first: there is no result to accept."))
            reviewer = slicer_user() or qt.QInputDialog.getText(
                slicer.util.mainWindow(), _("Accept"), _("Your name (it signs the result):"))
            if not (reviewer or "").strip():
                return
            checks = live.open_checks()
            if checks and not slicer.util.confirmOkCancelDisplay(
                    _("This result has CHECK warnings. Accepting records that you have looked at each of them:")
                    + "\n\n" + "\n".join(checks), windowTitle=_("Accept with CHECK warnings?")):
                return
            signed = live.accept(reviewer, checks)
            self.ui.statusLabel.text = _("Accepted by {name} at {time}.").format(
                name=signed["accepted_by"], time=signed["accepted_at"])

    def onExportDicomButton(self) -> None:
        """The result as DICOM SR (and SEG) into Slicer's DICOM database (``ModuleLogic.export_dicom``)."""
        import time
        from pathlib import Path

        with slicer.util.tryWithErrorDisplay(_("Failed to export to DICOM."), waitCursor=True):
            live = self.logic.find(self._parameterNode.inputVolume if self._parameterNode else None)
            if live is None:
                raise ValueError(_("Measure the image first: there is no result to export."))
            if not ensure_requirements(self.logic.spec):
                return
            folder = Path(slicer.app.temporaryPath) / "MSKMorphometryDICOM" / time.strftime("%Y%m%d-%H%M%S")
            written = self.logic.export_dicom(live, folder, source_file=dicom_file_of(live.volume),
                                              editor=slicer_user())
            from DICOMLib import DICOMUtils

            DICOMUtils.importDicom(str(folder), slicer.dicomDatabase, copyFiles=True)
            self.ui.statusLabel.text = _("Exported to the DICOM database: {files}").format(
                files=", ".join(Path(p).name for p in written.values()))

    def _cancelJob(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job, self._pending = None, None
            self._setRunning(False)

    def _setRunning(self, running: bool) -> None:
        (self._timer.start if running else self._timer.stop)()
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 0
        self.ui.cancelButton.enabled = running
        self._checkCanApply()

    def _poll(self) -> None:
        job = self._job
        if job is None:
            self._setRunning(False)
            return
        state = job.poll()
        if state.running:
            if state.fraction is None:
                self.ui.progressBar.setRange(0, 0)
            else:
                self.ui.progressBar.setRange(0, 100)
                self.ui.progressBar.value = int(round(100 * state.fraction))
            self.ui.statusLabel.text = state.message
            return
        volume, onExisting = self._pending
        self._job, self._pending = None, None
        self._setRunning(False)
        if state.error:
            self.ui.statusLabel.text = ""
            slicer.util.errorDisplay(state.error, windowTitle=_("{module} failed").format(module=self.moduleName))
            return
        with slicer.util.tryWithErrorDisplay(_("Could not show the result."), waitCursor=True):
            self._present(volume, job.result(), onExisting)

    def _present(self, volume, result, onExisting) -> None:
        live = self.logic.present(volume, result, onExisting)
        self._showNodes(live)
        self.ui.statusLabel.text = _("Done. Drag a point to measure again.")

    # --- showing a result

    def _showResultOf(self, volume) -> None:
        live = None
        try:
            live = self.logic.find(volume) if volume is not None else None
        except Exception:
            logging.exception(f"{self.moduleName}: could not read the previous result")
        self._showNodes(live, fitViews=False)

    def _showNodes(self, live, fitViews: bool = True) -> None:
        self.ui.resultsTableView.setMRMLTableNode(live.table if live is not None else None)
        self.ui.resetPointsButton.enabled = live is not None
        self.ui.acceptButton.enabled = live is not None
        self.ui.exportDicomButton.enabled = live is not None
        warnings = []
        if live is not None:
            record = live.saved_record()
            warnings = [w for w in [record.get("warning"), *record.get("warnings", []), live.error] if w]
            if fitViews:
                slicer.util.setSliceViewerLayers(background=live.volume, fit=True, rotateToVolumePlane=True)
        self.ui.warningLabel.text = "\n".join(str(w) for w in warnings)

    # --- developer reload

    def onReload(self) -> None:
        """Reload MSKCommonLib and the module's Lib too, so that edits to them take effect."""
        self._cancelJob()
        if self.logic is not None:
            self.logic.cleanup()
        packages = ("MSKCommonLib", self.logic.spec.package if self.logic else "")
        # dependencies first: a package's modules enter sys.modules before the modules they import
        for name in [n for n in reversed(list(sys.modules)) if n.split(".")[0] in packages and n.count(".")]:
            try:
                importlib.reload(sys.modules[name])
            except Exception:
                logging.exception(f"could not reload {name}")
        ScriptedLoadableModuleWidget.onReload(self)
