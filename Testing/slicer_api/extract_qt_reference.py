"""Extract the Qt 5.15 classes (QtCore, QtGui, QtWidgets) that PythonQt exposes in Slicer, as JSON.

Why a separate script: the qtbase repository is too large to fetch, and Qt's API is what the
PyQt5 bindings of Qt 5.15 expose (they wrap every public method, signal, slot, property and enum
of those classes, as PythonQt's generated wrappers do in Slicer). Slicer 5.10 and 5.12 build
with Qt 5.15 by default (``Slicer_REQUIRED_QT_VERSION`` in their CMakeLists.txt; 5.12 can also
build with Qt 6.8). Names are the same in both bindings; how a property is read differs
(``label.text`` in PythonQt, ``label.text()`` in PyQt), which does not matter for a name list.

Run it in an environment with PyQt5 (not a project dependency), e.g.::

    python3 -m venv /tmp/qtref && /tmp/qtref/bin/pip install PyQt5==5.15.11
    QT_QPA_PLATFORM=offscreen /tmp/qtref/bin/python Testing/slicer_api/extract_qt_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore[import-not-found]

OUTPUT = Path(__file__).resolve().parent / "reference" / "qt-5.15.json"


def _signals(cls: type) -> list[str]:
    """Normalized signatures of the signals a QObject class declares itself."""
    meta = getattr(cls, "staticMetaObject", None)
    if meta is None:
        return []
    own = range(meta.methodOffset(), meta.methodCount())
    methods = (meta.method(i) for i in own)
    signal = QtCore.QMetaMethod.Signal
    return sorted(bytes(m.methodSignature()).decode() for m in methods if m.methodType() == signal)


def _properties(cls: type) -> list[str]:
    meta = getattr(cls, "staticMetaObject", None)
    if meta is None:
        return []
    return sorted(
        meta.property(i).name() for i in range(meta.propertyOffset(), meta.propertyCount())
    )


def qt_classes() -> dict[str, dict]:
    classes = {}
    for module in (QtCore, QtGui, QtWidgets):
        for name in dir(module):
            cls = getattr(module, name)
            if not (isinstance(cls, type) and name.startswith("Q")):
                continue
            base = next((b.__name__ for b in cls.__mro__[1:] if b.__name__.startswith("Q")), "")
            members = {m for m in vars(cls) if not m.startswith("_")} | set(_properties(cls))
            classes[name] = {
                "base": base,
                "module": module.__name__.split(".")[-1],
                "members": sorted(members),
                "signals": _signals(cls),
            }
    return classes


def main() -> None:
    data = {
        "source": {
            "what": "Qt classes as bound by PyQt5 (introspection of the installed wheel)",
            "qt_version": QtCore.QT_VERSION_STR,
            "pyqt_version": QtCore.PYQT_VERSION_STR,
        },
        "classes": qt_classes(),
    }
    OUTPUT.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(data['classes'])} classes)")


if __name__ == "__main__":
    main()
