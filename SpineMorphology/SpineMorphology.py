"""SpineMorphology: back relief, 3D surface, spine midline and surface measures from a photo of the
bare back. GUI glue only: the work is SpineMorphologyLib's pipeline and review layer nodes, run by
MSKCommonLib's widget toolkit."""
import pathlib
from typing import Annotated

import slicer
from slicer import vtkMRMLVectorVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest

from MSKCommonLib.logic import ModuleLogic
from MSKCommonLib.widgets import MeasurementWidget


class SpineMorphology(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Spine Morphology")
        self.parent.categories = ["MSKMorphometry"]
        self.parent.dependencies = ["MSKCommon"]
        self.parent.contributors = ["MSKMorphometry developers"]
        self.parent.helpText = _("""
Scoliosis screening without radiation: from an RGB photo of the bare back (taken from behind), a network
(GAMA-Net) estimates the back's depth and mask and nine spine keypoints; the spine midline and the
rasterstereography surface measures follow. With the photo's own measured depth (16-bit PNG, mm) depth is
measured, not estimated. Keypoints, dimples and the midline are editable; the measures follow at once.
The network was trained on synthetic backs only (see SpineMorphologyLib/models/MODEL_CARD.md).
""")
        self.parent.acknowledgementText = _("""
Depth network after GAMA-Net; keypoint chain after SpinePose; surface measures after the DIERS formetric
definitions. Own implementations.
""")


@parameterNodeWrapper
class SpineMorphologyParameterNode:
    """inputVolume: the back photo; focalMm: 35 mm equivalent focal length and distanceMm: camera to
    back (0: unknown, lengths in photo pixels); device: where the network runs. The measured depth is
    read from its path field (empty: the network's estimate)."""

    inputVolume: vtkMRMLVectorVolumeNode
    focalMm: Annotated[float, WithinRange(0.0, 300.0)] = 0.0
    distanceMm: Annotated[float, WithinRange(0.0, 10000.0)] = 0.0
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    backend: Annotated[str, Choice(["onnx", "torch"])] = "onnx"  # torch: development, needs PyTorch


class SpineMorphologyLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """MSKCommonLib.logic.ModuleLogic for "back" (usable without the GUI) with its parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(self, "back")

    def getParameterNode(self):
        return SpineMorphologyParameterNode(super().getParameterNode())


class SpineMorphologyWidget(MeasurementWidget):
    logic_class = SpineMorphologyLogic

    def setup(self) -> None:
        MeasurementWidget.setup(self)
        self.ui.depthPathLineEdit.nameFilters = [_("16-bit depth PNG (*.png)"), _("All files (*)")]

    def options(self):
        p = self._parameterNode
        depth = self.ui.depthPathLineEdit.currentPath.strip()
        if depth and not pathlib.Path(depth).is_file():
            raise ValueError(_("Depth file not found: {path}").format(path=depth))
        return self.logic.options(depth_file=depth or None, focal_mm=p.focalMm or None,
                                  distance_mm=p.distanceMm or None, device=p.device, backend=p.backend)


class SpineMorphologyTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PhotoWithItsOwnDepthAndPoints()

    def test_PhotoWithItsOwnDepthAndPoints(self):
        """A photo with a measured depth and given keypoints (no network): nodes, live update when C7
        moves, and an edited result not replaced silently."""
        import json
        import tempfile

        import numpy as np
        import SimpleITK as sitk

        from MSKCommonLib.image import image_from_array
        from MSKCommonLib.mrml import volume_from_image
        from MSKCommonLib.review import EditedResultExists

        h, w = 512, 384
        v, u = np.mgrid[0:h, 0:w]
        depth = np.where(np.abs(u - w / 2) < 120, 1500 - 60 * np.cos((u - w / 2) / 120 * np.pi / 2), 0).astype(np.uint16)
        rgb = np.dstack([180 + u % 40, 130 + v % 40, np.full((h, w), 110)]).astype(np.uint8)  # skin tones
        folder = pathlib.Path(tempfile.mkdtemp())
        sitk.WriteImage(sitk.GetImageFromArray(depth), str(folder / "depth.png"))
        keypoints = [[w / 2, 460 - 50 * i] for i in range(9)]
        (folder / "points.json").write_text(json.dumps({"keypoints_px": keypoints}))
        volume = volume_from_image(slicer.mrmlScene, image_from_array(rgb, source="back.png"), "back", colour=True)
        logic = SpineMorphologyLogic()
        options = logic.options(depth_file=str(folder / "depth.png"), keypoints_file=str(folder / "points.json"),
                                focal_mm=26.0)
        live = logic.process(volume, options)
        self.assertEqual(live.node("keypoints").GetNumberOfControlPoints(), 9)
        before = live.measurement.measures.trunk_imbalance
        p = [0.0, 0.0, 0.0]
        live.node("keypoints").GetNthControlPointPosition(6, p)
        live.node("keypoints").SetNthControlPointPosition(6, p[0] - 10, p[1], p[2])
        self.assertNotAlmostEqual(live.measurement.measures.trunk_imbalance, before, delta=1)
        with self.assertRaises(EditedResultExists):
            logic.process(volume, options)
        logic.cleanup()
