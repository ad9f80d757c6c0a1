"""The committed API reference lists (reference/*.json), read as one API per supported Slicer.

Where each list comes from (the extraction scripts beside this file say how):

- ``slicer-<tag>.json``: Slicer/Slicer at that tag (extract_reference.py): the Python modules of
  Base/Python/slicer and the C++ classes of its vtkMRML*/vtkSlicer*/qMRML*/qSlicer* headers.
- ``ctk-<commit>.json``: commontk/CTK at the commit that Slicer tag pins (extract_reference.py).
- ``qt-5.15.json``: Qt 5.15 QtCore/QtGui/QtWidgets as bound by PyQt5 (extract_qt_reference.py).
- ``vtk-common.json``: VTK's vtkCommon* classes from slicer-core's VTK (extract_vtk_reference.py).
- ``pytorchutils.json``: SlicerPyTorch's PyTorchUtils.py (extract_reference.py).

A class's members are its own plus those of its bases, followed across the lists (qMRMLWidget
derives from Qt's QWidget, vtkMRMLScene from VTK's vtkObject).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
SUPPORTED_TAGS = ("v5.10.0", "v5.12.0")
# The oldest Slicer the module files must still load in, to show their "unsupported" message.
GUARD_TAG = "v5.8.1"
# PythonQt adds these to every wrapped QObject (PythonQt's instance wrapper, not Qt): connecting
# a signal to a Python callable, and Qt's own QObject::inherits/className.
PYTHONQT_QOBJECT_MEMBERS = frozenset({"connect", "disconnect", "className", "inherits", "delete"})


def _read(name: str) -> dict:
    return json.loads((REFERENCE_DIR / name).read_text(encoding="utf-8"))


@functools.cache
def qt_classes() -> dict[str, dict]:
    return _read("qt-5.15.json")["classes"]


@functools.cache
def vtk_reference() -> dict:
    return _read("vtk-common.json")


@functools.cache
def pytorch_utils() -> dict:
    return _read("pytorchutils.json")


@dataclass(frozen=True)
class SlicerApi:
    """What one Slicer release offers Python: its modules, namespace and classes (with CTK, Qt)."""

    tag: str
    data: dict
    ctk: dict

    @property
    def python_version(self) -> tuple[int, int]:
        major, minor, *_ = self.data["python_version"].split(".")
        return int(major), int(minor)

    def module(self, name: str) -> dict | None:
        """``slicer.util`` etc.: functions, classes and names; None when the release lacks it."""
        return self.data["python_modules"].get(name)

    def function(self, module: str, name: str) -> dict | None:
        api = self.module(module)
        return api["functions"].get(name) if api else None

    def module_names(self, module: str) -> set[str]:
        api = self.module(module)
        if api is None:
            return set()
        return set(api["functions"]) | set(api["classes"]) | set(api["names"])

    def namespace(self) -> set[str]:
        """Names reachable as ``slicer.<name>``."""
        return set(self.data["slicer_namespace"])

    def _entry(self, name: str) -> tuple[dict, str] | None:
        for kind, classes in (
            ("slicer", self.data["classes"]),
            ("ctk", self.ctk["classes"]),
            ("qt", qt_classes()),
            ("vtk", vtk_reference()["classes"]),
        ):
            if name in classes:
                return classes[name], kind
        return None

    def has_class(self, name: str) -> bool:
        return self._entry(name) is not None

    def kind(self, name: str) -> str | None:
        """Which list defines the class: "slicer", "ctk", "qt" or "vtk"."""
        entry = self._entry(name)
        return entry[1] if entry else None

    def lineage(self, name: str) -> list[str]:
        """The class and its known bases, nearest first."""
        chain = []
        while name and name not in chain and self._entry(name):
            chain.append(name)
            name = self._entry(name)[0].get("base", "")
        return chain

    def members(self, name: str) -> set[str]:
        """Every member Python can reach on an instance of ``name``."""
        found = set()
        for cls in self.lineage(name):
            found |= set(self._entry(cls)[0]["members"])
        if "QObject" in self.lineage(name):
            found |= PYTHONQT_QOBJECT_MEMBERS
        return found

    def signals(self, name: str) -> set[str]:
        return {s for cls in self.lineage(name) for s in self._entry(cls)[0].get("signals", [])}

    def script_class(self, module: str, name: str) -> dict | None:
        """A Python class of a slicer module, e.g. ScriptedLoadableModuleWidget."""
        api = self.module(module)
        return api["classes"].get(name) if api else None


@functools.cache
def slicer_api(tag: str) -> SlicerApi:
    data = _read(f"slicer-{tag}.json")
    return SlicerApi(tag, data, _read(f"ctk-{data['ctk_commit'][:12]}.json"))


def supported() -> list[SlicerApi]:
    """One API per supported Slicer release, oldest first."""
    return [slicer_api(tag) for tag in SUPPORTED_TAGS]
