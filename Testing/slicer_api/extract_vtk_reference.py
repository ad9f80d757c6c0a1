"""Extract the VTK base classes (vtkCommon*) the MRML classes derive from, as JSON.

The Slicer sources define the vtkMRML* classes, but their bases (vtkObject, vtkImageData,
vtkMatrix4x4, vtkStringArray, ...) come from VTK. The VTK repository is too large to fetch here,
so this list is read from the VTK Python module that ``slicer-core`` (the test extra) ships:
VTK 9.6, whereas Slicer 5.10 and 5.12 pin VTK 9.4 (Slicer's fork, ``SuperBuild/External_VTK.cmake``).
Methods that VTK added after 9.4 would therefore pass unnoticed; removals between them would not.

Run in the project's environment::

    .venv/bin/python Testing/slicer_api/extract_vtk_reference.py
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import vtk  # noqa: TID251 - a test tool, not the engine

OUTPUT = Path(__file__).resolve().parent / "reference" / "vtk-common.json"
MODULES = ("vtkCommonCore", "vtkCommonDataModel", "vtkCommonMath", "vtkCommonExecutionModel")
MODULES += ("vtkCommonTransforms", "vtkCommonMisc", "vtkCommonSystem")


def vtk_classes() -> dict[str, dict]:
    classes = {}
    for name in MODULES:
        module = importlib.import_module(f"vtkmodules.{name}")
        for class_name in dir(module):
            cls = getattr(module, class_name)
            if isinstance(cls, type) and class_name.startswith("vtk"):
                base = next(
                    (b.__name__ for b in cls.__mro__[1:] if b.__name__.startswith("vtk")), ""
                )
                members = sorted(m for m in vars(cls) if not m.startswith("_"))
                classes[class_name] = {"base": base, "module": name, "members": members}
    return classes


def module_constants() -> list[str]:
    """``vtk.VTK_*`` constants (scalar type ids and the like)."""
    return sorted(name for name in dir(vtk) if name.startswith("VTK_"))


def main() -> None:
    data = {
        "source": {
            "what": "VTK classes as bound in the slicer-core wheel (introspection)",
            "vtk_version": vtk.vtkVersion.GetVTKVersion(),
        },
        "constants": module_constants(),
        "classes": vtk_classes(),
    }
    OUTPUT.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(data['classes'])} classes)")


if __name__ == "__main__":
    main()
