"""The extension's CMake files, read without CMake (no Slicer build here): what each module
installs beside the scripted modules, so that two modules never install the same path (Ninja
stops with "multiple rules generate ...", Make lets the copies race), every file named exists,
and only the runtime goes into Slicer."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from conftest import REPO

MODULES = ("MSKCommon", "CobbAngle", "KneeLandmarks", "SpineMorphology")


def cmake_calls(text: str):
    """(command, [arguments]) of a CMake file (comments dropped; enough for our declarative files)."""
    text = re.sub(r"#[^\n]*", "", text)
    for m in re.finditer(r"(\w+)\s*\(([^()]*)\)", text):
        yield m.group(1).lower(), m.group(2).split()


def installed_paths(module: str, root: Path = REPO) -> list[str]:
    """Paths relative to <qt-scripted-modules> that a module's CMakeLists installs."""
    folder = root / module
    variables = {"MODULE_NAME": module, "PROJECT_SOURCE_DIR": str(REPO)}
    out = []

    def expand(word):
        return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), word)

    for command, args in cmake_calls((folder / "CMakeLists.txt").read_text()):
        args = [expand(a) for a in args]
        if command == "set" and args:
            variables[args[0]] = " ".join(args[1:])
        elif command == "slicermacrobuildscriptedmodule":
            keys = ("NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS")
            current = None
            for a in " ".join(args).split():
                if a in keys:
                    current = a
                elif current == "SCRIPTS":
                    out.append(a)  # a script keeps its path below the module folder
                elif current == "RESOURCES" and a != '""':
                    out.append(a)  # Resources/... lands in <qt-scripted-modules>/Resources/...
        elif command == "mskmorph_add_package_data":
            out.extend(a for a in args if a != "FILES")
        elif command == "foreach" and args and args[0] == "_name":
            variables["_names"] = args[1:]
        elif command == "install" and "DESTINATION" in args and "${_name}" in " ".join(args):
            destination = args[args.index("DESTINATION") + 1].replace("${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/", "")
            out.extend(f"{destination}/{name}" for name in variables.get("_names", []))
    return out


def source_of(module: str, path: str) -> Path:
    if path.startswith("Resources/SampleData/"):
        return REPO / path
    return REPO / module / path


def installed_twice(modules, root: Path = REPO) -> set:
    every = [p for module in modules for p in installed_paths(module, root)]
    return {p for p, n in Counter(every).items() if n > 1}


def test_no_two_modules_install_the_same_path():
    twice = installed_twice(MODULES)
    assert not twice, f"installed by more than one module (or twice): {twice}"


def test_every_installed_file_exists_and_the_top_level_adds_every_module():
    for module in MODULES:
        for path in installed_paths(module):
            assert source_of(module, path).is_file(), f"{module} installs {path}, which does not exist"
    top = (REPO / "CMakeLists.txt").read_text()
    added = re.findall(r"add_subdirectory\((\w+)\)", top)
    assert added == list(MODULES)  # MSKCommon first: the others depend on it
    assert "function(mskmorph_add_package_data)" in top


def test_only_the_runtime_goes_into_slicer_and_all_of_it():
    for module in MODULES:
        paths = installed_paths(module)
        assert f"{module}.py" in paths
        lib = REPO / module / f"{module}Lib"
        runtime = {f"{module}Lib/{p.name}" for p in lib.glob("*.py")} - {f"{module}Lib/{n}.py" for n in ("cli", "batch", "headless", "webreview", "pacs", "compare_cli", "pacs_compare", "webcompare")}
        assert runtime <= set(paths), f"{module} does not install {sorted(runtime - set(paths))}"
        assert not [p for p in paths if "Tools/" in p or p.endswith(("/cli.py", "/batch.py", "/headless.py", "/webreview.py", "/pacs.py", "/compare_cli.py", "/pacs_compare.py", "/webcompare.py"))]
        for data in (lib / "models").glob("*") if (lib / "models").is_dir() else []:
            if data.suffix in (".onnx", ".pt", ".md"):
                assert f"{module}Lib/models/{data.name}" in paths, f"{module} does not install {data.name}"
        if module != "MSKCommon":
            assert f"{module}Lib/requirements.txt" in paths


def test_the_check_finds_two_modules_that_install_one_path(tmp_path):
    """As the modules did before: each copied its Resources/requirements.txt and model card."""
    for module in ("A", "B"):
        (tmp_path / module).mkdir()
        (tmp_path / module / "CMakeLists.txt").write_text(f"""
set(MODULE_NAME {module})
set(MODULE_PYTHON_RESOURCES
  Resources/UI/${{MODULE_NAME}}.ui
  Resources/Models/MODEL_CARD.md
  Resources/requirements.txt  # the same name in every module
  )
slicerMacroBuildScriptedModule(NAME ${{MODULE_NAME}} SCRIPTS ${{MODULE_NAME}}.py RESOURCES ${{MODULE_PYTHON_RESOURCES}})
""")
    assert installed_twice(("A", "B"), tmp_path) == {"Resources/Models/MODEL_CARD.md", "Resources/requirements.txt"}
