import logging
import pathlib
import sys
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    parameterNodeWrapper,
    Choice,
    WithinRange,
)

from slicer import vtkMRMLScalarVolumeNode

# MSKCommon (the extension's shared package) lies next to this file once the extension is built or
# installed; when the module is loaded from a source tree it lies in the parent of this folder.
try:
    import MSKCommon  # noqa: F401
except ImportError:
    sys.path.append(str(pathlib.Path(__file__).resolve().parent.parent))  # the source tree's root

MODULE_DIR = pathlib.Path(__file__).resolve().parent
IMPORT_NAMES = {"opencv-python-headless": "cv2"}


#
# KneeLandmarks
#


class KneeLandmarks(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Knee Landmarks")
        self.parent.categories = ["MSKMorphometry"]
        self.parent.dependencies = []
        self.parent.contributors = ["MSKMorphometry developers"]
        self.parent.helpText = _("""
KNEEL landmarks (9 on the tibial plateau, 7 on the femoral condyles) on each knee of a PA knee
radiograph, the tibial and femoral contours, and the medial and lateral minimum joint space width
in mm. The landmarks are editable: drag one and the contours, widths and table follow at once.
Points you edited are never replaced without asking.
The shipped network was trained on synthetic films only (see Resources/Models/MODEL_CARD.md).
""")
        self.parent.acknowledgementText = _("""
Method after KNEEL (Tiulpin A., Melekhov I., Saarakkala S., "KNEEL: Knee Anatomical Landmark Localization
Using Hourglass Networks", ICCV Workshops 2019), in its own implementation. The shape model is fitted on
the public KNEEL annotations of Osteoarthritis Initiative (OAI) radiographs.
""")


#
# KneeLandmarksParameterNode
#


@parameterNodeWrapper
class KneeLandmarksParameterNode:
    """
    inputVolume - the knee radiograph (a volume with one slice).
    spacingOverrideMm - pixel spacing to use instead of the volume's (0: use the volume's).
    device - where the networks run.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    spacingOverrideMm: Annotated[float, WithinRange(0.0, 5.0)] = 0.0
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"


#
# KneeLandmarksWidget
#


class KneeLandmarksWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/KneeLandmarks.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = KneeLandmarksLogic()
        self.ui.deviceComboBox.addItems(["auto", "cpu", "cuda", "mps"])

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.resetPointsButton.connect("clicked(bool)", self.onResetPointsButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
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
        self.setParameterNode(None)
        if self.logic is not None:
            self.logic.cleanup()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode: Optional[KneeLandmarksParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        ok = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = ok
        self.ui.applyButton.toolTip = _("Find the knees and measure") if ok else _("Select a radiograph")

    def onApplyButton(self) -> None:
        from KneeLandmarksLib import review as mrml

        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Knee landmarks failed."), waitCursor=True):
            self.logic.ensureRequirements()
            try:
                nodes = self.logic.process(p.inputVolume, p.spacingOverrideMm or None, p.device)
            except mrml.EditedResultExists as e:
                choice = self._chooseOnExisting(str(e))
                if choice is None:
                    return
                nodes = self.logic.process(p.inputVolume, p.spacingOverrideMm or None, p.device, on_existing=choice)
            self._showNodes(nodes)

    def _chooseOnExisting(self, message: str) -> Optional[str]:
        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle(_("Edited landmarks"))
        box.setText(message)
        keep = box.addButton(_("Keep them, make a new result"), qt.QMessageBox.AcceptRole)
        replace = box.addButton(_("Replace them"), qt.QMessageBox.DestructiveRole)
        box.addButton(qt.QMessageBox.Cancel)
        box.exec_()
        if box.clickedButton() == keep:
            return "new"
        if box.clickedButton() == replace:
            return "overwrite"
        return None

    def onResetPointsButton(self) -> None:
        from KneeLandmarksLib import review as mrml

        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if volume is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not reset the points."), waitCursor=True):
            for side in ("right", "left"):
                nodes = mrml.find_result(slicer.mrmlScene, volume, side)
                if nodes is not None:
                    mrml.reset_edited_points(nodes)

    def _showNodes(self, nodes) -> None:
        lines = []
        for n in nodes:
            m = n.measurement
            if m is None:
                lines.append(f"{n.side} knee: {n.error}")
                continue
            lines.append(_("{side} knee: medial JSW {medial:.2f} mm, lateral JSW {lateral:.2f} mm").format(
                side=n.side, medial=m.medial_mm, lateral=m.lateral_mm))
            lines.extend(f"  {note}" for note in m.notes)
        self.ui.statusLabel.text = "\n".join(lines) or _("No knee found.")
        if nodes and nodes[0].table is not None:
            self.ui.resultTableView.setMRMLTableNode(nodes[0].table)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(nodes[0].table.GetID())


#
# KneeLandmarksLogic
#


class KneeLandmarksLogic(ScriptedLoadableModuleLogic):
    """Thin: reads the volume, runs ``KneeLandmarksLib.predict`` and shows the result with
    ``KneeLandmarksLib.mrml`` (which keeps the measurements live when points move)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._predictors = {}

    def getParameterNode(self):
        return KneeLandmarksParameterNode(super().getParameterNode())

    def ensureRequirements(self) -> None:
        import importlib.util

        missing = []
        for line in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line:
                continue
            name = line.split("==")[0].strip()
            if importlib.util.find_spec(IMPORT_NAMES.get(name, name).replace("-", "_")) is None:
                missing.append(line)
        if missing:
            if not slicer.util.confirmOkCancelDisplay(
                _("KneeLandmarks needs these Python packages: {packages}. Install them now?").format(
                    packages=", ".join(missing))):
                raise RuntimeError(_("Required Python packages are missing: ") + ", ".join(missing))
            slicer.util.pip_install(missing)

    def predictor(self, device: str = "auto"):
        if device not in self._predictors:
            from KneeLandmarksLib.predict import KneePredictor

            self._predictors[device] = KneePredictor(device=device)
        return self._predictors[device]

    def process(self, volumeNode, spacingOverrideMm: Optional[float] = None, device: str = "auto",
                on_existing: str = "update"):
        """Landmarks and JSW for every knee on ``volumeNode``; returns KneeNodes per knee."""
        from MSKCommonLib import mrml as common
        from KneeLandmarksLib import review as mrml

        if volumeNode is None:
            raise ValueError(_("Select a knee radiograph."))
        pixels = common.pixel_array(volumeNode)
        spacing = mrml.volume_spacing(volumeNode)
        if spacingOverrideMm:
            spacing = (float(spacingOverrideMm), float(spacingOverrideMm))
            sx, sy, sz = volumeNode.GetSpacing()
            volumeNode.SetSpacing(spacing[1], spacing[0], sz)  # so that lines measure in mm
        elif spacing == (1.0, 1.0):
            logging.warning("KneeLandmarks: the volume's pixel spacing is 1 mm (often: unknown, e.g. a PNG); "
                            "set the spacing override if the widths look wrong")
        predictions = self.predictor(device).predict(pixels, spacing)
        return mrml.present(slicer.mrmlScene, volumeNode, predictions, on_existing=on_existing,
                            source="network")

    def cleanup(self) -> None:
        from KneeLandmarksLib import review as mrml

        mrml.detach_all()


#
# KneeLandmarksTest
#


class KneeLandmarksTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_KneeLandmarks_phantom_film()

    def test_KneeLandmarks_phantom_film(self):
        """A synthetic bilateral film: two knees, 16 labelled points each, JSW that follows a moved point."""
        import numpy as np

        from MSKCommonLib import mrml as common
        from MSKCommonLib.image import image_from_array
        from KneeLandmarksTools import phantom

        self.delayDisplay("Rendering a synthetic bilateral knee film")
        film = phantom.sample_film(7, n_knees=2, spacing_range=(0.3, 0.3))
        volume = common.volume_from_image(
            slicer.mrmlScene, image_from_array(phantom.render(film) * 4095, (0.3, 0.3)), "KneePhantom")
        nodes = KneeLandmarksLogic().process(volume, device="cpu")
        self.assertEqual(sorted(n.side for n in nodes), ["left", "right"])
        for n in nodes:
            self.assertEqual(n.landmarks.GetNumberOfControlPoints(), 16)
            self.assertEqual(n.landmarks.GetNthControlPointLabel(0), "T1")
            truth = film.landmarks_px(next(k for k in film.knees if k.side == n.side))
            from KneeLandmarksLib import review as mrml

            error_mm = np.linalg.norm(mrml.landmarks_px(n) - truth, axis=1).mean() * 0.3
            self.assertLess(error_mm, 5.0)
        before = nodes[0].measurement.medial_mm
        pos = common.control_points(nodes[0].landmarks)[7]
        nodes[0].landmarks.SetNthControlPointPosition(7, pos[0], pos[1] - 2.0, pos[2])  # 2 mm down (RAS S-)
        self.assertNotAlmostEqual(before, nodes[0].measurement.medial_mm, places=3)
        self.delayDisplay("Test passed")
