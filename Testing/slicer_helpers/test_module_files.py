"""Static checks of the Slicer module files, which cannot be imported without the Slicer app.

A widget name misspelt in Python only fails when a user clicks in Slicer; these tests make it fail
here. They also hold the module files to the "thin wiring" budget and keep torch out of Slicer's
process: everything a module imports at start-up is imported here and torch must stay unloaded.

Python versions: AutoSeg supports Slicer 5.10 and newer (Python 3.12), so every Slicer-side file
must parse with Python 3.12's grammar (nothing newer). In an older Slicer (5.8, Python 3.9) the
module files must get as far as their version check and show one message: they, and the file
with the check (AutoSegCoreLib/extension_info.py), must parse and run with Python 3.9.
"""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("AutoSegTrain", "AutoSegPredict")
PANELS = {"AutoSegTrain": "train_panel", "AutoSegPredict": "predict_panel"}
MAX_MODULE_LINES = 400
OLDEST_SUPPORTED_PYTHON = (3, 12)  # Slicer 5.10
OLDEST_GUARDED_PYTHON = (3, 9)  # Slicer 5.8: shows the "needs Slicer 5.10" message
GUARD_FILE = ROOT / "AutoSegCore" / "AutoSegCoreLib" / "extension_info.py"
SLICER_SIDE = [
    *sorted((ROOT / "AutoSegTrain").rglob("*.py")),
    *sorted((ROOT / "AutoSegPredict").rglob("*.py")),
    *sorted((ROOT / "AutoSegCore" / "AutoSegCoreLib").rglob("*.py")),
]


def module_file(name: str) -> Path:
    return ROOT / name / f"{name}.py"


def panel_file(name: str) -> Path:
    """The widget, logic and parameter node, imported by the module file after its check."""
    return ROOT / name / f"{name}Lib" / f"{PANELS[name]}.py"


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
    """Every ``self.ui.<name>`` the module's panel touches."""
    tree = ast.parse(panel_file(name).read_text(encoding="utf-8"))
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
    tree = ast.parse(panel_file(name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return {
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError(f"{panel_file(name).name} has no @parameterNodeWrapper class")


@pytest.mark.parametrize("name", MODULES)
def test_every_widget_the_module_uses_exists_in_its_ui_file(name: str) -> None:
    used = used_ui_names(name)
    assert used, f"{PANELS[name]}.py uses no widgets: the check would pass vacuously"
    missing = sorted(used - ui_widget_names(name))
    assert not missing, f"{PANELS[name]}.py uses widgets missing from {name}.ui: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_parameter_bindings_name_real_fields(name: str) -> None:
    bound = ui_parameter_names(name)
    assert bound, f"{name}.ui binds no widget to the parameter node"
    unknown = {w: f for w, f in bound.items() if f not in parameter_fields(name)}
    assert not unknown, f"{name}.ui binds widgets to unknown parameter fields: {unknown}"


@pytest.mark.parametrize("name", MODULES)
def test_module_files_stay_thin(name: str) -> None:
    for path in (module_file(name), panel_file(name)):
        lines = path.read_text(encoding="utf-8").count("\n")
        assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines; move logic to {name}Lib"


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
        "        if error.name.split('.')[0] not in ('slicer', 'vtk', 'qt', 'ctk'):\n"
        "            raise\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({NOT_AT_MODULE_LOAD!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported in Slicer's process: {result.stdout}"


def _library_imports(name: str) -> list[tuple[str, str]]:
    """(module, name) of every ``from X import name`` from our own code in the module's files."""
    ours = ("autoseg", "AutoSegCoreLib", "AutoSegTrainLib", "AutoSegPredictLib")
    files = [module_file(name), *sorted((ROOT / name / f"{name}Lib").glob("*_panel.py"))]
    files += sorted((ROOT / name / f"{name}Lib").glob("*_self_test.py"))
    return [
        (node.module, alias.name)
        for path in files
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ours)
        for alias in node.names
    ]


def _defined_names(path: Path) -> set[str]:
    """Top-level names a file defines (for files that need Qt to be imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _has_name(module: str, attribute: str) -> bool:
    package, _, leaf = module.partition(".")
    if leaf.endswith(("_panel", "_self_test")):  # they import qt: read them instead
        return attribute in _defined_names(
            ROOT / package.removesuffix("Lib") / package / f"{leaf}.py"
        )
    return hasattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("name", MODULES)
def test_every_name_the_module_imports_from_our_libraries_exists(name: str) -> None:
    """The module's files cannot all be imported here (they need Qt); their library imports can."""
    pytest.importorskip("slicer", reason="the libraries need slicer-core")
    imports = _library_imports(name)
    assert len(imports) > 5
    missing = [f"{m}.{a}" for m, a in imports if not _has_name(m, a)]
    assert not missing, f"{name}'s files import names that do not exist: {missing}"


# Python versions -------------------------------------------------------------------------------


def _ruff_syntax_errors(paths: list[Path], version: tuple[int, int]) -> str:
    """ruff's syntax check of ``paths`` for Python ``version`` ("" when they all parse)."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.is_file():
        pytest.skip("ruff is not installed next to this Python")
    options = ["--isolated", "--no-cache", "--select=E9", "--output-format=concise"]
    options.append(f"--target-version=py{version[0]}{version[1]}")
    result = subprocess.run(
        [str(ruff), "check", *options, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_every_slicer_side_file_parses_with_the_oldest_supported_pythons_grammar() -> None:
    assert len(SLICER_SIDE) > 20
    for path in SLICER_SIDE:
        ast.parse(
            path.read_text(encoding="utf-8"), str(path), feature_version=OLDEST_SUPPORTED_PYTHON
        )
    assert _ruff_syntax_errors(SLICER_SIDE, OLDEST_SUPPORTED_PYTHON) == ""


def test_the_module_files_and_their_version_check_parse_with_python_3_9() -> None:
    files = [module_file(name) for name in MODULES] + [GUARD_FILE]
    for path in files:
        ast.parse(
            path.read_text(encoding="utf-8"), str(path), feature_version=OLDEST_GUARDED_PYTHON
        )
    assert _ruff_syntax_errors(files, OLDEST_GUARDED_PYTHON) == ""


def test_the_checks_would_catch_newer_syntax(tmp_path: Path) -> None:
    """The two tests above fail on syntax the oldest Python lacks (not vacuous)."""
    newer = tmp_path / "newer.py"
    newer.write_text("try:\n    pass\nexcept ValueError, TypeError:\n    pass\n")
    assert "3.14" in _ruff_syntax_errors([newer], OLDEST_SUPPORTED_PYTHON)
    match = tmp_path / "match.py"
    match.write_text("match 1:\n    case 1:\n        pass\n")
    assert "3.10" in _ruff_syntax_errors([match], OLDEST_GUARDED_PYTHON)
    with pytest.raises(SyntaxError):
        ast.parse(match.read_text(), feature_version=OLDEST_GUARDED_PYTHON)


def _interpreter(version: tuple[int, int]) -> str | None:
    """A working Python of exactly ``version`` on this machine (pyenv or PATH), if there is one."""
    name = f"python{version[0]}.{version[1]}"
    candidates = sorted((Path.home() / ".pyenv" / "versions").glob(f"{name[6:]}*/bin/{name}"))
    candidates += [Path(found)] if (found := shutil.which(name)) else []
    check = f"import sys; sys.exit(sys.version_info[:2] != {version!r})"
    for candidate in candidates:  # a pyenv shim may exist without a working interpreter
        done = subprocess.run([str(candidate), "-c", check], capture_output=True, check=False)
        if done.returncode == 0:
            return str(candidate)
    return None


# Just enough of Slicer 5.8 for a module file to register: the names the files use before their
# version check (Testing/slicer_api checks those against Slicer v5.8.1's sources).
_OLD_SLICER = {
    "slicer/__init__.py": "",
    "slicer/i18n.py": "def tr(text):\n    return text\ndef translate(context, text):\n    return text\n",
    "slicer/ScriptedLoadableModule.py": textwrap.dedent(
        """\
        import unittest
        class ScriptedLoadableModule:
            def __init__(self, parent):
                self.parent = parent
        class Layout:
            def __init__(self):
                self.items = []
            def addWidget(self, widget):
                self.items.append(widget)
            def addStretch(self, stretch):
                self.items.append(stretch)
        class ScriptedLoadableModuleWidget:
            def __init__(self, parent=None):
                self.layout = Layout()
            def setup(self):
                pass
        class ScriptedLoadableModuleTest(unittest.TestCase):
            pass
        """
    ),
    "qt.py": "class QLabel:\n    def __init__(self, text):\n        self.text = text\n",
}
_REGISTER = textwrap.dedent(
    """\
    import importlib, sys, types
    module = importlib.import_module(sys.argv[1])
    parent = types.SimpleNamespace()
    getattr(module, sys.argv[1])(parent)
    widget = getattr(module, sys.argv[1] + "Widget")()
    widget.setup()
    print(parent.helpText)
    print(widget.layout.items[0].text)
    print(getattr(module, sys.argv[1] + "Test").__name__)
    print(any(name.startswith(sys.argv[1] + "Lib") for name in sys.modules))
    """
)


@pytest.mark.parametrize("name", MODULES)
def test_an_old_slicer_registers_the_module_with_one_message(name: str, tmp_path: Path) -> None:
    """Under a real Python 3.9 (Slicer 5.8's), the module loads and says what it needs."""
    python = _interpreter(OLDEST_GUARDED_PYTHON)
    if python is None:
        pytest.skip("no Python 3.9 on this machine (install one with pyenv to run this check)")
    for relative, text in _OLD_SLICER.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [python, "-c", _REGISTER, name],
        env={"PYTHONPATH": f"{tmp_path}:{ROOT / name}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    help_text, panel, test_class, panel_imported = result.stdout.strip().split("\n")
    message = "AutoSeg needs 3D Slicer 5.10 or newer; this Slicer runs Python 3.9."
    assert message in help_text
    assert panel.startswith(message)
    assert test_class == f"{name}Test"
    assert panel_imported == "False"  # nothing past the check was imported


@pytest.mark.parametrize("version", [(3, 12)])
def test_every_slicer_side_file_compiles_with_a_real_python_3_12(version, tmp_path: Path) -> None:
    python = _interpreter(version)
    if python is None:
        pytest.skip("no Python 3.12 on this machine (install one with pyenv to run this check)")
    script = (
        "import pathlib, sys\n"
        "for path in sys.argv[1:]:\n"
        "    compile(pathlib.Path(path).read_text(encoding='utf-8'), path, 'exec')\n"
    )
    result = subprocess.run(
        [python, "-c", script, *map(str, SLICER_SIDE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
