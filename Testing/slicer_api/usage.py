"""What our Slicer-side code uses of Slicer, CTK, Qt and VTK, collected from its syntax tree.

Each ``Use`` names something the code needs to exist: a name in a ``slicer`` submodule, a keyword
of a ``slicer.util`` function, a member of a class, a signal, a class. Types are inferred only where
the code states them: ``slicer.mrmlScene`` and ``slicer.app``, annotations (``volume:
slicer.vtkMRMLScalarVolumeNode``), constructors (``qt.QTimer()``, ``slicer.vtkMRMLScene()``),
``AddNewNodeByClass("vtkMRML...")``, and ``self.ui.<name>`` through the module's .ui file. Anything
else (an untyped ``node.GetName()``) is not checked: a missed check, never a false alarm.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[2]
SLICER_SIDE = (
    ROOT / "AutoSegTrain",
    ROOT / "AutoSegPredict",
    ROOT / "AutoSegCore" / "AutoSegCoreLib",
)
SLICER_MODULES = (
    "slicer.util",
    "slicer.packaging",
    "slicer.i18n",
    "slicer.parameterNodeWrapper",
    "slicer.ScriptedLoadableModule",
    "slicer.testing",
    "SampleData",  # Slicer's Sample Data module, imported by name to register our demo data
)
KNOWN_OBJECTS = {"slicer.mrmlScene": "vtkMRMLScene", "slicer.app": "qSlicerApplication"}
CLASS_NAME = re.compile(r"^(vtkMRML|vtkSlicer|vtkSegment|qMRML|qSlicer)\w+$")


@dataclass(frozen=True)
class Use:
    """One thing the code needs: ``kind`` says where to look ``name`` (and ``member``) up."""

    kind: str  # "module", "namespace", "keyword", "member", "signal", "class", "base_member"
    name: str
    member: str = ""
    where: str = ""
    # Inside ``try: ... except ImportError/AttributeError``: a fallback covers releases without it.
    optional: bool = False

    def __str__(self) -> str:
        what = f"{self.name}.{self.member}" if self.member else self.name
        return f"{self.where}: {self.kind} {what}"


def slicer_side_files() -> list[Path]:
    files = []
    for folder in SLICER_SIDE:
        files += sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    return files


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


@dataclass
class FileUsage:
    """The imports of one file (local name -> dotted origin) and the types it states."""

    path: Path
    aliases: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    ui_classes: dict[str, str] = field(default_factory=dict)

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted origin of an expression, through imports (``_`` -> slicer.i18n.tr)."""
        text = dotted(node)
        if text is None:
            return None
        head, _, rest = text.partition(".")
        origin = self.aliases.get(head)
        if origin is None:
            return None
        return f"{origin}.{rest}" if rest else origin

    def type_of(self, node: ast.AST) -> str | None:
        """The class of an expression where the code states it."""
        origin = self.resolve(node)
        if origin in KNOWN_OBJECTS:
            return KNOWN_OBJECTS[origin]
        text = dotted(node)
        if text is not None and text in self.types:
            return self.types[text]
        if text and text.startswith("self.ui.") and text.count(".") == 2:
            return self.ui_classes.get(text.split(".")[2])
        return None

    def class_of(self, node: ast.AST | None) -> str | None:
        """The class an annotation or constructor names: slicer.vtkX, vtk.vtkX, qt.QX, ctk.X."""
        origin = self.resolve(node) if node is not None else None
        if origin is None:
            return None
        head, _, name = origin.rpartition(".")
        if head in ("slicer", "vtk", "qt", "ctk") and re.match(r"^(vtk|q|Q|ctk)\w+$", name):
            return name
        return None


def _imports(tree: ast.Module) -> dict[str, str]:
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    roots = ("slicer", "qt", "ctk", "vtk", "SampleData")
    return {k: v for k, v in aliases.items() if v.split(".")[0] in roots}


def _annotation_class(usage: FileUsage, annotation: ast.AST | None) -> str | None:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    if isinstance(annotation, ast.BinOp):  # X | None
        return _annotation_class(usage, annotation.left)
    return usage.class_of(annotation)


def _assigned_class(usage: FileUsage, value: ast.AST) -> str | None:
    if not isinstance(value, ast.Call):
        return None
    func = value.func
    if isinstance(func, ast.Attribute) and func.attr in ("AddNewNodeByClass", "CreateNodeByClass"):
        first = value.args[0] if value.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return usage.class_of(func)


def _collect_types(usage: FileUsage, tree: ast.Module) -> None:
    """Variables whose class the code states; a name given two classes is dropped."""
    seen: dict[str, set[str]] = {}

    def note(target: str | None, cls: str | None) -> None:
        if target:  # an untyped binding counts as "unknown", so the name is not trusted
            seen.setdefault(target, set()).add(cls or "?")

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                note(arg.arg, _annotation_class(usage, arg.annotation))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                note(dotted(target), _assigned_class(usage, node.value))
        elif isinstance(node, ast.AnnAssign):
            cls = _annotation_class(usage, node.annotation) or (
                _assigned_class(usage, node.value) if node.value else None
            )
            note(dotted(node.target), cls)
    usage.types = {
        name: next(iter(classes))
        for name, classes in seen.items()
        if len(classes) == 1 and "?" not in classes
    }


def _ui_classes(path: Path) -> dict[str, str]:
    """Widget name -> class of the .ui file of the module a file belongs to (``self.ui``)."""
    uis = [f / "Resources" / "UI" / f"{f.name}.ui" for f in (path.parent, path.parent.parent)]
    ui = next((candidate for candidate in uis if candidate.is_file()), None)
    if ui is None:
        return {}
    tree = ElementTree.parse(ui)
    return {w.get("name", ""): w.get("class", "") for w in tree.iter("widget")}


def file_usage(path: Path, source: str | None = None) -> tuple[FileUsage, ast.Module]:
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text)
    usage = FileUsage(path, _imports(tree), ui_classes=_ui_classes(path))
    _collect_types(usage, tree)
    return usage, tree


def _attribute_use(usage: FileUsage, node: ast.Attribute) -> Use | None:
    where = usage.where(node)
    origin = usage.resolve(node.value)
    if origin == "slicer":
        return Use("namespace", "slicer", node.attr, where)
    if origin in SLICER_MODULES:
        return Use("module", origin, node.attr, where)
    if _script_class(origin):  # e.g. SampleData.SampleDataLogic.registerCustomSampleDataSource
        return Use("script_member", origin, node.attr, where)
    if origin in ("qt", "ctk"):
        return Use("class", node.attr, where=where)
    if origin == "vtk":
        return Use("vtk", node.attr, where=where)
    cls = usage.class_of(node.value) or usage.type_of(node.value)
    return Use("member", cls, node.attr, where) if cls else None


def _script_class(origin: str | None) -> bool:
    """``origin`` names a class of a Slicer Python module (``slicer.util.VTKObservationMixin``)."""
    module, _, name = (origin or "").rpartition(".")
    return module in SLICER_MODULES and name[:1].isupper()


def _call_uses(usage: FileUsage, node: ast.Call) -> Iterator[Use]:
    where = usage.where(node)
    origin = usage.resolve(node.func)
    owner = (origin or "").rpartition(".")[0]
    if owner in SLICER_MODULES or _script_class(owner):
        for keyword in node.keywords:
            if keyword.arg is not None:
                yield Use("keyword", origin, keyword.arg, where)
    func = node.func
    first = node.args[0] if node.args else None
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "connect"
        and isinstance(first, ast.Constant)
        and isinstance(first.value, str)
    ):
        cls = usage.type_of(func.value)
        if cls:
            yield Use("signal", cls, first.value.replace(" ", ""), where)


def _self_reads(cls: ast.ClassDef) -> tuple[set[str], dict[str, ast.AST]]:
    """Names the class defines (methods, self.X assignments) and the self.X it reads."""
    defined = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined |= {t.id for n in cls.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    read: dict[str, ast.AST] = {}
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and dotted(node.value) == "self":
            if isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            else:
                read.setdefault(node.attr, node)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Call)
            and dotted(node.value.func) == "super"
        ):
            read.setdefault(node.attr, node)
    return defined, read


def _base_uses(usage: FileUsage, cls: ast.ClassDef) -> Iterator[Use]:
    """``self.X`` a class reads but does not define must come from its Slicer base classes."""
    bases = [usage.resolve(b) for b in cls.bases]
    slicer_bases = [b for b in bases if b and b.startswith("slicer.")]
    if not slicer_bases or len(slicer_bases) != len(bases):
        return  # a base of ours (or none of Slicer's): its members are not Slicer's to check
    defined, read = _self_reads(cls)
    for name, node in read.items():
        if name not in defined:
            yield Use("base_member", "|".join(slicer_bases), name, usage.where(node))


_GUARDS = {"ImportError", "ModuleNotFoundError", "AttributeError"}


def _guarded_lines(tree: ast.Module) -> set[int]:
    """Lines of ``try`` bodies whose handlers catch a missing module or attribute."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            handler.type is not None
            and {dotted(t) for t in getattr(handler.type, "elts", [handler.type])} & _GUARDS
            for handler in node.handlers
        ):
            for statement in node.body:
                lines |= set(range(statement.lineno, statement.end_lineno + 1))
    return lines


def python_uses(path: Path, source: str | None = None) -> list[Use]:
    """Every use in a Python file; uses in a guarded ``try`` body are marked optional."""
    usage, tree = file_usage(path, source)
    guarded = _guarded_lines(tree)
    # A module imported in a guarded ``try`` is optional wherever it is used afterwards.
    optional_modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import) and node.lineno in guarded
        for alias in node.names
    }

    def is_optional(use: Use) -> bool:
        line = int(use.where.rsplit(":", 1)[1])
        return line in guarded or use.name in optional_modules

    return [
        Use(u.kind, u.name, u.member, u.where, is_optional(u)) for u in _python_uses(usage, tree)
    ]


def _import_uses(usage: FileUsage, node: ast.Import | ast.ImportFrom) -> list[Use]:
    where = usage.where(node)
    if isinstance(node, ast.ImportFrom):
        if not (node.module and node.module.startswith("slicer")):
            return []
        kind = "namespace" if node.module == "slicer" else "module"
        return [Use(kind, node.module, alias.name, where) for alias in node.names]
    parts = [alias.name.split(".") for alias in node.names]
    return [Use("namespace", "slicer", p[1], where) for p in parts if p[0] == "slicer" and p[1:]]


def _python_uses(usage: FileUsage, tree: ast.Module) -> list[Use]:
    found: list[Use] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found += _import_uses(usage, node)
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Del):
            use = _attribute_use(usage, node)
            found += [use] if use else []
        elif isinstance(node, ast.Call):
            found += list(_call_uses(usage, node))
        elif isinstance(node, ast.ClassDef):
            found += list(_base_uses(usage, node))
        elif isinstance(node, ast.Constant) and CLASS_NAME.match(str(node.value)):
            found.append(Use("class", node.value, where=usage.where(node)))
    return found


# Designer-only properties: layout geometry and the like that Qt's uic handles, not PythonQt.
UI_DESIGNER_PROPERTIES = {"geometry", "SlicerParameterName"}


def ui_uses(ui: Path) -> list[Use]:
    """Classes, properties and signal/slot connections of a .ui file."""
    tree = ElementTree.parse(ui)
    where = str(ui.relative_to(ROOT))
    classes = {w.get("name", ""): w.get("class", "") for w in tree.iter("widget")}
    found = [Use("class", cls, where=where) for cls in sorted(set(classes.values()))]
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") not in UI_DESIGNER_PROPERTIES:
                found.append(Use("member", widget.get("class", ""), prop.get("name", ""), where))
    for connection in tree.iter("connection"):
        sender = classes[connection.findtext("sender", "")]
        receiver = classes[connection.findtext("receiver", "")]
        found.append(Use("signal", sender, connection.findtext("signal", ""), where))
        slot = connection.findtext("slot", "")
        found.append(Use("member", receiver, slot.split("(")[0], where))
    return found


def all_uses() -> list[Use]:
    found = []
    for path in slicer_side_files():
        found += python_uses(path)
    for ui in sorted(ROOT.glob("AutoSeg*/Resources/UI/*.ui")):
        found += ui_uses(ui)
    return found
