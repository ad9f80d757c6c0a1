"""A real MRML scene without the Slicer application (``slicer-core``), wired like Slicer does it.

For the modules' logic outside Slicer: the headless tests, the benchmarks and scripts that export
cases or import predictions with plain Python. The application normally registers the module
logics at start-up; without that, segment conversions fail (the segmentations logic registers the
converter rules) and display nodes point at colour tables that do not exist. ``slicer.mrmlScene``
and a ``slicer.modules`` stand-in are set because ``slicer.util`` helpers read them.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import slicer
import vtk


@contextlib.contextmanager
def headless_scene() -> Iterator[slicer.vtkMRMLScene]:
    """A fresh scene with colour, volumes, segmentations and subject-hierarchy logics.

    Restores ``slicer.mrmlScene`` and ``slicer.modules`` on exit and clears the scene.
    """
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())
    app.SetModuleLogic("Colors", colors)
    logics = {
        "Volumes": slicer.vtkSlicerVolumesLogic(),
        "Segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
        "SubjectHierarchy": slicer.vtkSlicerSubjectHierarchyModuleLogic(),
    }
    for name, logic in logics.items():
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(name, logic)
    previous = (getattr(slicer, "mrmlScene", None), getattr(slicer, "modules", None))
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        **{
            name.lower(): types.SimpleNamespace(logic=lambda lg=lg: lg)
            for name, lg in logics.items()
        }
    )
    try:
        yield scene
    finally:
        slicer.mrmlScene, slicer.modules = previous
        scene.Clear(True)
