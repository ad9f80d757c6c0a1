"""Strict stand-ins for the Qt widgets of the modules' .ui files (see test_module_widgets.py).

Each stand-in class implements a few members of the real Qt/CTK/qMRML class. What the real class
has comes from the reference lists (Testing/slicer_api/reference: Slicer 5.10 and 5.12 sources,
the CTK they pin, Qt 5.15): a stand-in member the real class lacks fails at import, and the
module code touching a member fails with "no such member in Slicer" when the real class lacks it
or "not implemented by the stand-in" when only the stand-in does.
"""

from __future__ import annotations

import inspect
import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

from Testing.slicer_api.reference_api import qt_classes, supported
from Testing.slicer_api.standins import StrictModule

TESTS_FOLDER = Path(__file__).resolve().parent
_QOBJECT = {"connect", "blockSignals"}  # every stand-in
_QWIDGET = {"enabled", "toolTip", "layout"}  # every stand-in of a widget
_NOT_WIDGETS = {"QTimer", "qSlicerApplication"}
# Members (properties, methods, "signals(...)") each stand-in implements.
_MEMBERS = {
    "qMRMLWidget": {"setMRMLScene"},
    "QWidget": set(),
    "ctkCollapsibleButton": {"text", "collapsed"},
    "QLabel": {"text", "setPixmap"},
    "QPushButton": {"text", "clicked(bool)"},
    "QCheckBox": {"text", "checked", "toggled(bool)"},
    "QLineEdit": {"text", "textChanged(QString)"},
    "QSpinBox": {"value", "valueChanged(int)"},
    "QDoubleSpinBox": {"value", "valueChanged(double)"},
    "ctkPathLineEdit": {"currentPath", "currentPathChanged(QString)"},
    "QComboBox": {
        "currentIndex",
        "currentData",
        "addItem",
        "clear",
        "findData",
        "itemData",
        "count",
    }
    | {"setCurrentIndex", "currentIndexChanged(int)"},
    "QListWidget": {"addItem", "clear", "count"},
    "QTableWidget": {"setRowCount", "setColumnCount", "setHorizontalHeaderLabels", "setItem"}
    | {"item", "currentRow", "setCurrentCell"},
    "QProgressBar": {"setRange", "setValue", "value", "minimum", "maximum"},
    "QPlainTextEdit": {"appendPlainText", "clear", "plainText", "readOnly", "setMaximumBlockCount"},
    "qMRMLNodeComboBox": {"currentNode", "setCurrentNode", "setMRMLScene", "nodeTypes"}
    | {"showChildNodeTypes", "addEnabled", "removeEnabled", "noneEnabled"}
    | {"currentNodeChanged(vtkMRMLNode*)"},
    "QTimer": {"setInterval", "start", "stop", "timeout()"},
    "qSlicerApplication": {"cachePath", "startupCompleted()"},  # slicer.app
}


def _real_members(cls: str) -> tuple[set[str], set[str]]:
    """(members, signals) the class has in every supported Slicer release."""
    apis = supported()
    members = set.intersection(*(api.members(cls) for api in apis))
    signals = set.intersection(*(api.signals(cls) for api in apis))
    return members, signals


_REAL = {cls: _real_members(cls) for cls in _MEMBERS}
_IMPLEMENTED = {
    cls: members | _QOBJECT | (set() if cls in _NOT_WIDGETS else _QWIDGET)
    for cls, members in _MEMBERS.items()
}


def _check_against_reference() -> None:
    """Every member a stand-in implements exists in the real class (else the fakes could lie)."""
    wrong = []
    for cls, implemented in _IMPLEMENTED.items():
        members, signals = _REAL[cls]
        assert members, f"{cls} is not in the reference lists"
        for member in implemented:
            if member not in (signals if "(" in member else members):
                wrong.append(f"{cls}.{member}")
    assert not wrong, f"stand-ins implement members the real classes lack: {wrong}"


_check_against_reference()


def _missing(cls: str, name: str) -> AttributeError:
    if name in _REAL[cls][0]:
        return AttributeError(f"the {cls} stand-in does not implement {name!r} (add it to fake_qt)")
    return AttributeError(f"{cls} has no attribute {name!r} in Slicer 5.10/5.12 (reference lists)")


_SIGNAL_OF = {
    "currentPath": "currentPathChanged(QString)",
    "checked": "toggled(bool)",
    "value": "valueChanged(int)",
    "text": "textChanged(QString)",
}
_CLASS_SIGNAL_OF = {("QDoubleSpinBox", "value"): "valueChanged(double)"}
_DEFAULTS = {"text": "", "toolTip": "", "enabled": True, "checked": False, "value": 0}
_DEFAULTS |= {"currentPath": "", "currentIndex": -1, "nodeTypes": [], "minimum": 0, "maximum": 100}
_DEFAULTS |= {"plainText": "", "readOnly": False}


def _accepted_arguments(slot: typing.Callable, given: int) -> int:
    """PythonQt drops signal arguments a slot does not take."""
    parameters = inspect.signature(slot).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return given
    return min(
        given, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
    )


class FakeQObject:
    """A Qt object of class ``_cls``: only its members exist; property changes emit signals."""

    def __init__(self, cls: str, name: str = "") -> None:
        self._cls, self._name, self._slots, self._blocked = cls, name, {}, False
        self._items, self._rows, self._cells, self._current, self._scene = [], 0, {}, None, None
        self._binding, self._param, self._layout, self._pixmap = None, None, None, None
        for member, value in _DEFAULTS.items():
            if member in _IMPLEMENTED[cls]:
                object.__setattr__(self, member, value.copy() if isinstance(value, list) else value)

    def __getattribute__(self, name: str) -> typing.Any:
        if not name.startswith("_"):
            cls = object.__getattribute__(self, "_cls")
            if name not in _IMPLEMENTED[cls]:
                raise _missing(cls, name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: typing.Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if name not in _IMPLEMENTED[self._cls]:
            raise _missing(self._cls, name)
        old = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        signal = _CLASS_SIGNAL_OF.get((self._cls, name), _SIGNAL_OF.get(name))
        if value != old and signal in _MEMBERS[self._cls]:
            self._sync(value)
            self._emit(signal, value)

    def connect(self, signal: str, slot: typing.Callable) -> None:
        assert signal in _REAL[self._cls][1], f"{self._cls} has no signal {signal} in Slicer"
        assert signal in _MEMBERS[self._cls], f"the {self._cls} stand-in never emits {signal}"
        self._slots.setdefault(signal, []).append(slot)

    def blockSignals(self, block: bool) -> bool:
        previous, self._blocked = self._blocked, block
        return previous

    def _emit(self, signal: str, *args: typing.Any) -> None:
        for slot in [] if self._blocked else self._slots.get(signal, []):
            slot(*args[: _accepted_arguments(slot, len(args))])

    def _sync(self, value: typing.Any) -> None:
        """A widget change reaches the parameter node it is connected to (connectGui)."""
        if self._binding is not None:
            wrapper, field = self._binding
            wrapper._store(field, Path(value) if self._cls == "ctkPathLineEdit" else value)

    def layout(self) -> FakeLayout | None:
        return self._layout

    def setMRMLScene(self, scene: typing.Any) -> None:
        self._scene = scene
        for child in getattr(self, "_sceneReceivers", []):
            child.setMRMLScene(scene)

    # QComboBox / QListWidget
    def addItem(self, text: str, data: typing.Any = None) -> None:
        self._items.append((text, data))
        if self._cls == "QComboBox" and self.currentIndex < 0:
            self.setCurrentIndex(0)

    def clear(self) -> None:
        self._items.clear()
        if self._cls == "QComboBox":
            self.setCurrentIndex(-1)
        if self._cls == "QPlainTextEdit":
            object.__setattr__(self, "plainText", "")

    # QPlainTextEdit
    def appendPlainText(self, text: str) -> None:
        lines = [*(self.plainText.split("\n") if self.plainText else []), *text.split("\n")]
        limit = getattr(self, "_max_blocks", 0)
        object.__setattr__(self, "plainText", "\n".join(lines[-limit:] if limit else lines))

    def setMaximumBlockCount(self, count: int) -> None:
        self._max_blocks = count

    def setCurrentIndex(self, index: int) -> None:
        index = index if 0 <= index < len(self._items) else -1
        if index != self.currentIndex:
            object.__setattr__(self, "currentIndex", index)
            self._emit("currentIndexChanged(int)", index)

    @property
    def currentData(self) -> typing.Any:
        return self.itemData(self.currentIndex)

    def itemData(self, index: int) -> typing.Any:
        return self._items[index][1] if 0 <= index < len(self._items) else None

    def findData(self, data: typing.Any) -> int:
        return next((i for i, item in enumerate(self._items) if item[1] == data), -1)

    @property
    def count(self) -> int:
        return len(self._items)

    # QTableWidget, QLabel, QProgressBar, QTimer
    def setRowCount(self, rows: int) -> None:
        self._rows = rows
        self._cells = {key: item for key, item in self._cells.items() if key[0] < rows}

    def setColumnCount(self, columns: int) -> None:
        self._columns = columns

    def setHorizontalHeaderLabels(self, labels: list[str]) -> None:
        assert len(labels) == self._columns, "header labels must match the column count"

    def setItem(self, row: int, column: int, item: FakeTableItem) -> None:
        assert row < self._rows, f"row {row} is outside the table"
        assert column < self._columns, f"column {column} is outside the table"
        self._cells[row, column] = item

    def item(self, row: int, column: int) -> FakeTableItem | None:
        return self._cells.get((row, column))

    def currentRow(self) -> int:
        row = getattr(self, "_currentRow", -1)
        return row if row < self._rows else -1

    def setCurrentCell(self, row: int, column: int) -> None:
        self._currentRow = row if 0 <= row < self._rows and 0 <= column < self._columns else -1

    def setPixmap(self, pixmap: FakePixmap) -> None:
        self._pixmap = pixmap

    def setRange(self, minimum: int, maximum: int) -> None:
        object.__setattr__(self, "minimum", minimum)
        object.__setattr__(self, "maximum", maximum)

    def setValue(self, value: int) -> None:
        object.__setattr__(self, "value", value)

    def setInterval(self, milliseconds: int) -> None:
        self._interval = milliseconds

    def start(self) -> None:
        self._active = True

    def stop(self) -> None:
        self._active = False

    # qMRMLNodeComboBox
    def currentNode(self) -> typing.Any:
        node = self._current  # a node removed from the scene leaves the combo box
        return node if node is not None and node.GetScene() is self._scene else None

    def setCurrentNode(self, node: typing.Any) -> None:
        if node is not None and not (
            self._scene is not None
            and node.GetScene() is self._scene
            and any(node.IsA(t) for t in self.nodeTypes)
            and (getattr(self, "showChildNodeTypes", True) or node.GetClassName() in self.nodeTypes)
        ):
            return  # the real combo box offers only scene nodes of its types
        if node is not self.currentNode():
            self._current = node
            self._sync(node)
            self._emit("currentNodeChanged(vtkMRMLNode*)", node)


class FakeLayout:
    """QVBoxLayout (addWidget) or QFormLayout (addRow/removeRow) of a widget."""

    def __init__(self, cls: str) -> None:
        self._cls, self._rows = cls, []

    def addWidget(self, widget: FakeQObject) -> None:
        assert self._cls != "QFormLayout", "a QFormLayout takes rows"
        self._rows.append((None, widget))

    def addRow(self, label: str, widget: FakeQObject) -> None:
        assert self._cls == "QFormLayout", f"{self._cls} has no addRow"
        self._rows.append((label, widget))

    def removeRow(self, widget: FakeQObject) -> None:
        assert self._cls == "QFormLayout", f"{self._cls} has no removeRow"
        self._rows = [row for row in self._rows if row[1] is not widget]


class FakeTableItem:
    def __init__(self, text: str) -> None:
        assert isinstance(text, str), f"QTableWidgetItem needs text, got {text!r}"
        self._text = text

    def text(self) -> str:
        return self._text


class FakePixmap:
    def __init__(self, path: str) -> None:
        self._path = path

    def isNull(self) -> bool:
        return not Path(self._path).is_file()

    def scaledToWidth(self, width: int) -> FakePixmap:
        return self


def load_ui(path: str) -> FakeQObject:
    """slicer.util.loadUI: one fake per <widget> of the .ui, with its initial properties."""
    root = ET.parse(path).getroot()
    widgets = {}
    for element in root.iter("widget"):
        widget = FakeQObject(element.get("class"), element.get("name"))
        for prop in element.findall("property"):
            name, value = prop.get("name"), prop[0]
            if name == "SlicerParameterName":
                widget._param = value.text
            elif name == "nodeTypes":
                widget.nodeTypes = [s.text for s in value.iter("string")]
            elif name in _DEFAULTS and name in _IMPLEMENTED[widget._cls]:
                text = value.text or ""
                parsed = text == "true" if value.tag == "bool" else text
                parsed = int(text) if value.tag == "number" else parsed
                parsed = float(text) if value.tag == "double" else parsed
                object.__setattr__(widget, name, parsed)
        layout = element.find("layout")
        widget._layout = FakeLayout(layout.get("class")) if layout is not None else None
        widgets[widget._name] = widget
    top = widgets[root.find("widget").get("name")]
    top._children = [w for w in widgets.values() if w is not top]
    top._sceneReceivers = [
        widgets[c.findtext("receiver")]
        for c in root.iter("connection")
        if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    ]
    return top


def qt_standin(cls: str, **members: typing.Any) -> types.SimpleNamespace:
    """A plain stand-in object of Qt class ``cls``: only members the real class has."""
    real = _real_members(cls)[0]
    unknown = set(members) - real
    assert not unknown, f"{cls} has no {sorted(unknown)} in Slicer 5.10/5.12"
    return types.SimpleNamespace(**members)


def qt_module(**classes: typing.Any) -> StrictModule:
    """``qt``: the Qt classes PythonQt offers (Qt 5.15); the given stand-ins provide some."""
    return StrictModule("qt", set(qt_classes()), "Qt 5.15").provide(**classes)


def ctk_module(**classes: typing.Any) -> StrictModule:
    """``ctk``: the CTK classes both supported Slicer releases build."""
    names = set.intersection(*(set(api.ctk["classes"]) for api in supported()))
    return StrictModule("ctk", names, "the CTK of Slicer 5.10/5.12").provide(**classes)
