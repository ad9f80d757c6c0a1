"""Real MRML without the Slicer application, for the modules' Qt-free logic.

``slicer-core`` (pinned in the test extra) ships Slicer's C++ MRML, module logics and storage
nodes. Slicer's globals do not exist there, so a fresh scene is wired up for each test the way
the application does it at start-up (the segmentations logic must see the scene first: it
registers the converter rules). VTK's error output is captured and any ERROR fails the test,
because most failing VTK calls only log and return 0.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

slicer = pytest.importorskip(
    "slicer", reason="slicer-core is not installed (pip install -e '.[test]')"
)
import vtk  # noqa: E402  (after the skip: vtk comes with slicer-core)

_ROOT = Path(__file__).resolve().parents[2]
for _folder in ("AutoSegCore", "AutoSegTrain", "AutoSegPredict"):
    if str(_ROOT / _folder) not in sys.path:
        sys.path.insert(0, str(_ROOT / _folder))


@pytest.fixture
def vtk_errors() -> Iterator[vtk.vtkStringOutputWindow]:
    """Route VTK messages into a string; the test fails if any ERROR was logged."""
    window = vtk.vtkStringOutputWindow()
    previous = vtk.vtkOutputWindow.GetInstance()
    vtk.vtkOutputWindow.SetInstance(window)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    yield window
    vtk.vtkOutputWindow.SetInstance(previous)
    output = window.GetOutput()
    assert "ERROR" not in output, f"VTK logged an error:\n{output}"


@pytest.fixture
def scene(vtk_errors: vtk.vtkStringOutputWindow) -> Iterator[slicer.vtkMRMLScene]:
    """A scene with the application, colour, volumes, segmentations and hierarchy logics."""
    mrml = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(mrml)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(mrml)
    colors.AddDefaultColorNodes()
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())
    app.SetModuleLogic("Colors", colors)
    logics = {"Colors": colors}
    for name, logic in (
        ("Volumes", slicer.vtkSlicerVolumesLogic()),
        ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()),
        ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic()),
    ):
        logic.SetMRMLScene(mrml)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    previous_scene = getattr(slicer, "mrmlScene", None)
    previous_modules = getattr(slicer, "modules", None)
    slicer.mrmlScene = mrml
    slicer.modules = types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: logics["Segmentations"]),
        volumes=types.SimpleNamespace(logic=lambda: logics["Volumes"]),
        subjecthierarchy=types.SimpleNamespace(logic=lambda: logics["SubjectHierarchy"]),
    )
    yield mrml
    slicer.mrmlScene = previous_scene
    slicer.modules = previous_modules
    mrml.Clear(True)
