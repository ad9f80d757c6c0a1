"""Real MRML without the Slicer application, for the modules' Qt-free logic.

``slicer-core`` (pinned in the test extra) ships Slicer's C++ MRML, module logics and storage
nodes. Slicer's globals do not exist there, so a fresh scene is wired up for each test the way
the application does it at start-up (the segmentations logic must see the scene first: it
registers the converter rules). VTK's error output is captured and any ERROR fails the test,
because most failing VTK calls only log and return 0.
"""

from __future__ import annotations

import sys
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
    from AutoSegCoreLib.headless_mrml import headless_scene

    with headless_scene() as mrml:
        yield mrml
