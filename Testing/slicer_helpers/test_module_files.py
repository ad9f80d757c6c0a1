"""Static checks of the Slicer module files, which cannot be imported without the Slicer app.

A widget name misspelt in Python only fails when a user clicks in Slicer; these tests make it fail
here. They also hold the module files to the "thin wiring" budget and keep torch out of Slicer's
process: everything a module imports at start-up is imported here and torch must stay unloaded.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("AutoSegTrain", "AutoSegPredict")
MAX_MODULE_LINES = 400


def module_file(name: str) -> Path:
    return ROOT / name / f"{name}.py"


def ui_widget_names(name: str) -> set[str]:
    tree = ElementTree.parse(ROOT / name / "Resources" / "UI" / f"{name}.ui")
    return {widget.get("name", "") for widget in tree.iter("widget")}


def ui_parameter_names(name: str) -> dict[str, str]:
    """Widget name -> the parameter-node field it is bound to (SlicerParameterName)."""
    tree = ElementTree.parse(ROOT / name / "Resources" / "UI" / f"{name}.ui")
    bound = {}
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[widget.get("name", "")] = prop.findtext("string", "")
    return bound


def used_ui_names(name: str) -> set[str]:
    """Every ``self.ui.<name>`` the module file touches."""
    tree = ast.parse(module_file(name).read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            used.add(node.attr)
    return used


def parameter_fields(name: str) -> set[str]:
    """Annotated fields of the module's ``@parameterNodeWrapper`` class."""
    tree = ast.parse(module_file(name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return {
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError(f"{name}.py has no @parameterNodeWrapper class")


@pytest.mark.parametrize("name", MODULES)
def test_every_widget_the_module_uses_exists_in_its_ui_file(name: str) -> None:
    used = used_ui_names(name)
    assert used, f"{name}.py uses no widgets: the check would pass vacuously"
    missing = sorted(used - ui_widget_names(name))
    assert not missing, f"{name}.py uses widgets missing from {name}.ui: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_parameter_bindings_name_real_fields(name: str) -> None:
    bound = ui_parameter_names(name)
    assert bound, f"{name}.ui binds no widget to the parameter node"
    unknown = {w: f for w, f in bound.items() if f not in parameter_fields(name)}
    assert not unknown, f"{name}.ui binds widgets to unknown parameter fields: {unknown}"


@pytest.mark.parametrize("name", MODULES)
def test_module_files_stay_thin(name: str) -> None:
    lines = module_file(name).read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name}.py has {lines} lines; move logic to {name}Lib"


# Slicer ships numpy, SimpleITK and VTK; the engine's other requirements may not be installed yet
# when the modules load (they are installed on first use), and torch must never load in Slicer.
NOT_AT_MODULE_LOAD = ("torch", "scipy", "batchgenerators", "matplotlib")


def test_module_libraries_load_without_torch_or_uninstalled_packages() -> None:
    """Importing every Slicer-side library module, as the modules do at start-up."""
    libraries = [
        ROOT / "AutoSegCore" / "AutoSegCoreLib",
        ROOT / "AutoSegTrain" / "AutoSegTrainLib",
        ROOT / "AutoSegPredict" / "AutoSegPredictLib",
    ]
    names = [f"{lib.name}.{path.stem}" for lib in libraries for path in sorted(lib.glob("*.py"))]
    assert len(names) > 6
    script = (
        "import importlib, sys\n"
        f"sys.path[:0] = {[str(lib.parent) for lib in libraries]!r}\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as error:\n"
        "        if error.name not in ('slicer', 'vtk', 'qt', 'ctk'):\n"
        "            raise\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({NOT_AT_MODULE_LOAD!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported in Slicer's process: {result.stdout}"


def _library_imports(name: str) -> list[tuple[str, str]]:
    """(module, name) of every ``from X import name`` in the module file from our own code."""
    tree = ast.parse(module_file(name).read_text(encoding="utf-8"))
    ours = ("autoseg", "AutoSegCoreLib", "AutoSegTrainLib", "AutoSegPredictLib")
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ours)
        for alias in node.names
    ]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_the_module_imports_from_our_libraries_exists(name: str) -> None:
    """The module file cannot be imported here (it needs Qt); its library imports can."""
    pytest.importorskip("slicer", reason="the libraries need slicer-core")
    imports = _library_imports(name)
    assert len(imports) > 5
    missing = [
        f"{module}.{attribute}"
        for module, attribute in imports
        if not hasattr(importlib.import_module(module), attribute)
    ]
    assert not missing, f"{name}.py imports names that do not exist: {missing}"
