"""CobbAngle: Cobb angles on a spine AP radiograph. GUI glue only: the work is CobbAngleLib's
pipeline and review layer nodes, run by MSKCommonLib's widget toolkit (see MSKCommonLib.widgets)."""
import pathlib
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest

from MSKCommonLib.logic import ModuleLogic
from MSKCommonLib.widgets import MeasurementWidget, ask_keep_replace, ensure_requirements

SAMPLE_NAME = "SpinePhantom_AP"


class CobbAngle(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cobb Angle")
        self.parent.categories = ["MSKMorphometry"]
        self.parent.dependencies = ["MSKCommon"]
        self.parent.contributors = ["MSKMorphometry developers"]
        self.parent.helpText = _("""
Cobb angles (proximal thoracic, main thoracic, thoracolumbar/lumbar) on a spine AP radiograph.
A network finds the 68 vertebra corners (T1-L5), or they are read from an AASCE landmark file (.mat).
The corners are editable: drag one in the slice view and the angle lines and the table follow at once.
See the <a href="https://github.com/mskmorphometry/MSKMorphometry#the-command-line-mskmorph">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
The landmark layout, the training data and the "aasce" convention come from the MICCAI 2019 AASCE challenge
(Wang et al., SpineWeb dataset 16). The network follows Seg4Reg+ (Lin et al., MICCAI 2021), in its own implementation.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def sampleDataDirectory():
    """The folder of the bundled phantom: <source tree>/Resources/SampleData, or the copy CMake puts
    beside the modules (<qt-scripted-modules>/Resources/SampleData)."""
    here = pathlib.Path(__file__).resolve().parent
    for folder in (here.parent / "Resources" / "SampleData", here / "Resources" / "SampleData"):
        if (folder / f"{SAMPLE_NAME}.png").is_file():
            return folder
    return None


def registerSampleData():
    import SampleData

    folder = sampleDataDirectory()
    if folder is None:
        return
    image = folder / f"{SAMPLE_NAME}.png"
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="MSKMorphometry", sampleName=SAMPLE_NAME, thumbnailFileName=str(folder / f"{SAMPLE_NAME}_thumbnail.png"),
        uris=image.as_uri(), fileNames=image.name, nodeNames=SAMPLE_NAME, loadFileType="VolumeFile",
        checksums="SHA256:" + slicer.util.computeChecksum("SHA256", str(image)), loadFileProperties={"singleFile": True})


@parameterNodeWrapper
class CobbAngleParameterNode:
    """inputVolume: the radiograph; convention: clinical or aasce; device: where the network runs.
    The landmark file is read from its path field (empty: the network)."""

    inputVolume: vtkMRMLScalarVolumeNode
    convention: Annotated[str, Choice(["clinical", "aasce"])] = "clinical"
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    backend: Annotated[str, Choice(["onnx", "torch"])] = "onnx"  # torch: development, needs PyTorch


class CobbAngleLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """MSKCommonLib.logic.ModuleLogic for "cobb" (usable without the GUI) with its parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(self, "cobb")

    def getParameterNode(self):
        return CobbAngleParameterNode(super().getParameterNode())


class CobbAngleWidget(MeasurementWidget):
    logic_class = CobbAngleLogic

    def setup(self) -> None:
        MeasurementWidget.setup(self)
        self.ui.landmarksPathLineEdit.nameFilters = [_("AASCE landmarks (*.mat)"), _("All files (*)")]
        # activated: only a user's choice, not the parameter node updating the box
        self.ui.conventionComboBox.connect("activated(int)", self.onConventionChosen)
        from CobbAngleLib.geometry import CURVE_NAMES, VERTEBRA_NAMES

        self.ui.curveEndsComboBox.addItems(list(CURVE_NAMES))
        self.ui.upperEndComboBox.addItems(list(VERTEBRA_NAMES))
        self.ui.lowerEndComboBox.addItems(list(VERTEBRA_NAMES))
        self.ui.chooseEndsButton.connect("clicked(bool)", lambda: self.onEndsChosen(automatic=False))
        self.ui.automaticEndsButton.connect("clicked(bool)", lambda: self.onEndsChosen(automatic=True))
        self.ui.nameLevelComboBox.addItems(list(VERTEBRA_NAMES))
        self.ui.nameVertebraButton.connect("clicked(bool)", self.onNameVertebra)
        self.ui.clearNamesButton.connect("clicked(bool)", self.onClearNames)
        self.ui.countFromNamesButton.connect("clicked(bool)", self.onCountFromNames)

    def _showNodes(self, live, fitViews: bool = True) -> None:
        MeasurementWidget._showNodes(self, live, fitViews)
        self.ui.chooseEndsButton.enabled = self.ui.automaticEndsButton.enabled = live is not None
        from CobbAngleLib.geometry import VERTEBRA_NAMES

        # the end vertebrae offered: those on the film (a partial film shows only some)
        shown = list((live.saved_record().get("vertebrae_present") if live is not None else None) or VERTEBRA_NAMES)
        for box in (self.ui.upperEndComboBox, self.ui.lowerEndComboBox):
            if [box.itemText(i) for i in range(box.count)] != shown:
                box.clear()
                box.addItems(shown)
        from CobbAngleLib.review import names_given
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        names = names_given(volume) if volume is not None else []
        self.ui.namedVertebraeLabel.text = ", ".join(f"{n['vertebra']} ({n['x']:.0f}, {n['y']:.0f})" for n in names)
        self.ui.nameVertebraButton.enabled = volume is not None
        self.ui.clearNamesButton.enabled = self.ui.countFromNamesButton.enabled = bool(names)

    def onNameVertebra(self) -> None:  # the next click on the film names the vertebra there (place mode)
        volume, level = self._parameterNode.inputVolume, self.ui.nameLevelComboBox.currentText
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"name {level}")

        def placed(caller, event):
            from CobbAngleLib.review import name_vertebra
            from MSKCommonLib.mrml import control_points, ras_to_pixels
            x, y = ras_to_pixels(volume, control_points(caller))[0]
            qt.QTimer.singleShot(0, lambda: slicer.mrmlScene.RemoveNode(caller))  # not inside its own event
            with slicer.util.tryWithErrorDisplay(_("Failed to name the vertebra.")):
                name_vertebra(volume, level, x, y)
                self._showNodes(self.logic.find(volume), fitViews=False)

        node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, placed)
        slicer.modules.markups.logic().SetActiveList(node)
        slicer.modules.markups.logic().StartPlaceMode(False)
        self.ui.statusLabel.text = _("Click the centre of {level} on the film.").format(level=level)

    def onClearNames(self) -> None:
        from CobbAngleLib.review import clear_names
        clear_names(self._parameterNode.inputVolume)
        self._showNodes(self.logic.find(self._parameterNode.inputVolume), fitViews=False)

    def onCountFromNames(self) -> None:
        """The network again counting from the names (review.count_from_names), on Apply's job path."""
        from CobbAngleLib.review import count_from_names
        from MSKCommonLib.review import EditedResultExists
        if self._job is not None or not ensure_requirements(self.logic.spec):
            return
        with slicer.util.tryWithErrorDisplay(_("Not counted from the names."), waitCursor=True):
            volume, options, onExisting = self._parameterNode.inputVolume, self.options(), "ask"
            try:
                self._job = count_from_names(self.logic, volume, options, onExisting)
            except EditedResultExists as e:
                onExisting = ask_keep_replace(str(e), _("Edited points"))
                if onExisting is None:
                    self.ui.statusLabel.text = _("Cancelled: the edited result was kept.")
                    return
                self._job = count_from_names(self.logic, volume, options, onExisting)
            self._pending = (volume, onExisting)
            self._setRunning(True)

    def onEndsChosen(self, automatic: bool) -> None:
        """The reader's end vertebrae for a curve (CobbAngleLib.review.choose_ends), or the automatic choice again."""
        from CobbAngleLib.review import choose_ends

        with slicer.util.tryWithErrorDisplay(_("Failed to choose the end vertebrae."), waitCursor=True):
            live = self.logic.find(self._parameterNode.inputVolume)
            if live is not None:
                curve = self.ui.curveEndsComboBox.currentText
                ends = (None, None) if automatic else (self.ui.upperEndComboBox.currentText,
                                                       self.ui.lowerEndComboBox.currentText)
                choose_ends(live, curve, *ends)
                self._showNodes(live, fitViews=False)

    def options(self):
        p = self._parameterNode
        landmarks = self.ui.landmarksPathLineEdit.currentPath.strip()
        if landmarks and not pathlib.Path(landmarks).is_file():
            raise ValueError(_("Landmark file not found: {path}").format(path=landmarks))
        return self.logic.options(convention=p.convention, device=p.device, backend=p.backend, landmarks_file=landmarks or None)

    def needs_network(self, options) -> bool:
        return options.landmarks_file is None

    def onConventionChosen(self, index) -> None:
        """Measure the shown result again in the convention just chosen."""
        from CobbAngleLib.review import set_convention

        with slicer.util.tryWithErrorDisplay(_("Failed to change the convention."), waitCursor=True):
            live = self.logic.find(self._parameterNode.inputVolume)
            if live is not None:
                set_convention(live, self.ui.conventionComboBox.currentText)
                self._showNodes(live, fitViews=False)


class CobbAngleTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LandmarksFile()
        self.setUp()
        self.test_Network()

    def _sample(self):
        folder = sampleDataDirectory()
        self.assertIsNotNone(folder, f"{SAMPLE_NAME}.png not found")
        return folder, slicer.util.loadVolume(str(folder / f"{SAMPLE_NAME}.png"), {"singleFile": True})

    def test_LandmarksFile(self):
        """The phantom's exact corners: angles, a moved corner re-measures, a re-run asks, reset."""
        from MSKCommonLib.review import EditedResultExists

        folder, volume = self._sample()
        logic = CobbAngleLogic()
        options = logic.options(landmarks_file=str(folder / f"{SAMPLE_NAME}.png.mat"))
        live = logic.process(volume, options)
        self.assertEqual(live.node("landmarks").GetNumberOfControlPoints(), 68)
        before = live.measurement.angles
        node = live.node("landmarks")
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(17, p)
        node.SetNthControlPointPosition(17, p[0], p[1] + 5.0, p[2])
        self.assertNotEqual(live.measurement.angles, before)
        with self.assertRaises(EditedResultExists):
            logic.process(volume, options)
        live.reset_edited_points()
        self.assertEqual(live.measurement.angles, before)
        logic.cleanup()

    def test_Network(self):
        """The network in its worker process, as Apply runs it (requirements first)."""
        import time

        self.assertTrue(ensure_requirements(CobbAngleLogic().spec), "the network's packages are needed")
        _folder, volume = self._sample()
        logic = CobbAngleLogic()
        job = logic.start_job(logic.read(volume))
        while job.poll().running:
            slicer.app.processEvents()
            time.sleep(0.05)
        live = logic.present(volume, job.result())
        self.assertEqual(live.node("landmarks").GetNumberOfControlPoints(), 68)
        self.assertIsNotNone(live.node("segmentation"))
        self.assertEqual(live.measurement.convention, "clinical")
        logic.cleanup()
