"""Stand-ins for Slicer's Python-only parts: parameter nodes, scripted-module bases, slicer.util
(see test_module_widgets.py)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import importlib.util
import sys
import types
import typing
from pathlib import Path

import pytest
import slicer
from Testing.slicer.fake_qt import (
    FakeLayout,
    FakeQObject,
)
from Testing.slicer_api.reference_api import supported
from Testing.slicer_api.standins import StrictModule, common_slicer_module

from AutoSegCoreLib.device_detection import DeviceInfo
from AutoSegCoreLib.preferences import KEYS


class _FakeWrapper:
    """Base of the classes the fake ``parameterNodeWrapper`` makes (values kept per node)."""

    _hints: typing.ClassVar[dict] = {}
    _defaults: typing.ClassVar[dict] = {}
    _all_values: typing.ClassVar[dict] = {}

    def __init__(self, node: slicer.vtkMRMLScriptedModuleNode) -> None:
        if not node.GetParameter("fakeWrapper"):  # new, or reset by a scene close
            node.SetParameter("fakeWrapper", "1")
            self._all_values[node] = dict(self._defaults)
        self._node, self._values, self._widgets = node, self._all_values[node], []

    def __setattr__(self, name: str, value: typing.Any) -> None:
        assert name.startswith("_") or name in self._hints, f"no parameter {name}"
        object.__setattr__(self, name, value)

    def _store(self, name: str, value: typing.Any) -> None:
        hint = self._hints[name]
        base = hint.__origin__ if typing.get_origin(hint) else hint
        is_node = base.__name__.startswith("vtkMRML")
        assert (value is None and is_node) or isinstance(value, base), (name, value)
        self._values[name] = value

    def connectGui(self, ui: types.SimpleNamespace) -> list:
        bound = [w for w in vars(ui).values() if w._param is not None]
        for widget in bound:
            assert widget._param in self._hints, f"{widget._name}: no parameter {widget._param}"
            widget._binding = (self, widget._param)
            _show(widget, getattr(self, widget._param))
        self._widgets = bound
        return bound

    def disconnectGui(self, tag: list | None) -> None:
        for widget in tag or []:  # Slicer ignores an unknown tag (None after exit())
            widget._binding = None
        self._widgets = []


def _field(name: str) -> property:
    def get(self: _FakeWrapper) -> typing.Any:
        value = self._values[name]
        gone = hasattr(value, "GetScene") and value.GetScene() is not self._node.GetScene()
        return None if gone else value

    def put(self: _FakeWrapper, value: typing.Any) -> None:
        self._store(name, value)
        for widget in self._widgets:
            if widget._param == name:
                _show(widget, value)

    return property(get, put)


def parameter_wrapper_module(values: dict) -> StrictModule:
    """slicer.parameterNodeWrapper: typed fields kept per node, two-way bound by connectGui."""

    def parameterNodeWrapper(cls: type) -> type:
        hints = typing.get_type_hints(cls, include_extras=True)
        members = {name: _field(name) for name in hints}
        members["_defaults"] = {
            n: cls.__dict__.get(n, Path() if h is Path else None) for n, h in hints.items()
        }
        members |= {"_hints": hints, "_all_values": values}
        return type(cls.__name__, (_FakeWrapper,), members)

    module = common_slicer_module("slicer.parameterNodeWrapper", {})
    return module.provide(
        parameterNodeWrapper=parameterNodeWrapper, WithinRange=lambda low, high: (low, high)
    )


def _show(widget: FakeQObject, value: typing.Any) -> None:
    """The parameter's value shown in its widget (which then emits, as Qt widgets do)."""
    if widget._cls == "qMRMLNodeComboBox":
        widget.setCurrentNode(value)
    elif widget._cls == "ctkPathLineEdit":
        widget.currentPath = str(value)
    else:
        prop = {"QCheckBox": "checked", "QLineEdit": "text", "QSpinBox": "value"}
        prop = {**prop, "QDoubleSpinBox": "value"}[widget._cls]
        setattr(widget, prop, value)


class _Panel:
    """The module panel Slicer gives a widget as ``parent``."""

    isEntered = True


def _check_bases(classes: dict[str, type]) -> None:
    """The stand-in base classes offer only methods Slicer's classes have (both releases)."""
    for name, cls in classes.items():
        for api in supported():
            real = api.script_class("slicer.ScriptedLoadableModule", name)
            assert real is not None, f"no {name} in Slicer {api.tag}"
            known = set(real["methods"]) | set(real["attributes"])
            extra = {m for m in vars(cls) if not m.startswith("__")} - known
            assert not extra, f"the {name} stand-in has {extra}, which Slicer {api.tag} lacks"


def scripted_module(module_files: dict) -> StrictModule:
    """slicer.ScriptedLoadableModule: the base classes, with the parameter node in the scene."""

    class ScriptedLoadableModule:
        def __init__(self, parent: typing.Any) -> None:
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent: typing.Any = None) -> None:
            self.parent = parent if parent is not None else _Panel()
            self.layout = FakeLayout("QVBoxLayout")

        def resourcePath(self, relative: str) -> str:
            # As Slicer's: the module is named after the class (minus "Widget"), wherever the
            # class is defined; its Resources folder sits beside the module file.
            module = type(self).__name__.removesuffix("Widget")
            return str(Path(module_files[module]).parent / "Resources" / relative)

        def setup(self) -> None:
            pass

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent: typing.Any = None) -> None:
            super().__init__()  # as Slicer's: the Predict logic's other base gets no argument
            self.moduleName = type(self).__name__.removesuffix("Logic")

        def getParameterNode(self) -> slicer.vtkMRMLScriptedModuleNode:
            scene, name = slicer.mrmlScene, self.moduleName
            node = scene.GetSingletonNode(name, "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetName(name)
                node.SetSingletonTag(name)
                node = scene.AddNode(node)
            return node

    classes = {
        "ScriptedLoadableModule": ScriptedLoadableModule,
        "ScriptedLoadableModuleWidget": ScriptedLoadableModuleWidget,
        "ScriptedLoadableModuleLogic": ScriptedLoadableModuleLogic,
        "ScriptedLoadableModuleTest": type("ScriptedLoadableModuleTest", (), {}),
    }
    _check_bases(classes)
    return common_slicer_module("slicer.ScriptedLoadableModule", {}).provide(**classes)


class FakeSlicer:
    """The fake application of one test: what it recorded, and helpers to drive the widgets."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.monkeypatch, self.tmp_path = monkeypatch, tmp_path
        self.settings = {KEYS[f"{root}_folder"]: str(tmp_path / root) for root in _ROOTS}
        self.errors: list[tuple[str, BaseException]] = []
        self.dialogs: list[tuple[str, str]] = []
        self.layers: list[dict] = []
        self.install_checks: list[tuple[str, Path | None]] = []
        self.device_probes: list[str] = []
        self.open_file = ""
        self.save_file = ""
        self.widgets: list = []
        self.module_files: dict[str, str] = {}

    @contextlib.contextmanager
    def try_with_error_display(self, message: str | None = None, **_kwargs: bool):
        try:
            yield
        except Exception as error:  # Slicer shows it in a dialog and carries on
            self.errors.append((message, error))

    def pop_error(self) -> BaseException:
        assert self.errors, "an error was expected"
        return self.errors.pop()[1]

    def load(self, name: str) -> types.ModuleType:
        """Import the module file and its panel files afresh (they bind the fake qt).

        Panel files (``<name>Lib.*_panel``: the widget and the parts of it kept in their own
        files) hold the Slicer wiring, so each test imports them with its own stand-ins; the
        Qt-free logic modules stay as they are. The engine's processes (device probe, installs)
        are replaced in the panel module.
        """
        panels = [m for m in sys.modules if m.startswith(f"{name}Lib.") and m.endswith("_panel")]
        for loaded in (name, PANELS[name], SELF_TESTS[name], *panels):
            self.monkeypatch.delitem(sys.modules, loaded, raising=False)
        module = importlib.import_module(name)
        self.monkeypatch.setitem(sys.modules, name, module)
        self.module_files[name] = module.__file__
        panel = self.panel(name)
        self.monkeypatch.setattr(panel, "detect_devices_in_background", self._probe)
        self.monkeypatch.setattr(panel, "ensure_engine_dependencies", self._install_check)
        return module

    def panel(self, name: str) -> types.ModuleType:
        """The module's panel (widget, logic, parameter node), where the test replaces things."""
        return sys.modules[PANELS[name]]

    def _probe(self, python: str, **_kwargs: object) -> concurrent.futures.Future:
        self.device_probes.append(python)
        future = concurrent.futures.Future()
        future.set_result(DeviceInfo(torch_version="2.5", cuda_names=("Fake GPU",)))
        return future

    def _install_check(self, requester: str, python: Path | None = None) -> bool:
        self.install_checks.append((requester, python))
        return True

    def open(self, widget_class: type) -> typing.Any:
        widget = widget_class()
        self.widgets.append(widget)
        widget.setup()
        assert widget._timer._active
        assert widget._timer._interval > 0
        return widget


_ROOTS = ("raw", "preprocessed", "results")
PANELS = {
    "AutoSegTrain": "AutoSegTrainLib.train_panel",
    "AutoSegPredict": "AutoSegPredictLib.predict_panel",
}
SELF_TESTS = {
    "AutoSegTrain": "AutoSegTrainLib.train_self_test",
    "AutoSegPredict": "AutoSegPredictLib.predict_self_test",
}
