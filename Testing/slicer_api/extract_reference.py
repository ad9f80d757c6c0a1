"""Extract the Slicer/CTK/PyTorchUtils API that AutoSeg may use, from the real sources, as JSON.

Why: our Slicer-side code only runs inside the Slicer application, which CI does not have. A call
that exists in one Slicer release but not another (``slicer.util.executePythonModule`` is public
only from 5.12) passes every headless test. These lists are the facts the conformance test
(test_api_conformance.py) and the Qt/Slicer stand-ins (Testing/slicer/fake_*.py) check against.

Run against bare git directories (the ``fetch`` tool's mirrors), e.g.::

    python Testing/slicer_api/extract_reference.py \
        --slicer-git /work/.mirror/Slicer+Slicer/repo --ctk-git /work/.mirror/commontk+CTK/repo \
        --pytorch-git /work/.mirror/fepegar+SlicerPyTorch/repo

What is read (only facts: names and parameter lists, no code is copied):

- Python modules of ``Base/Python/slicer`` (and the SampleData module's file) with ``ast``:
  functions with their parameter names, classes with their methods and the ``self.<name>``
  attributes their methods assign.
- C++ headers (vtkMRML*, vtkSlicer*, vtkSegment*, vtkOrientedImageData*, qMRML*, qSlicer*, ctk*):
  the first base class, public methods, vtkGet/Set/Boolean macros, public enumerators, and for Qt
  classes the Q_PROPERTY names, signals, public slots and Q_INVOKABLE methods (PythonQt exposes
  only those for classes it does not wrap with generated decorators).
- The CTK commit each Slicer tag pins (``SuperBuild/External_CTK.cmake``), read from the CTK repo.
- PyTorchUtils.py of SlicerPyTorch: the ``PyTorchUtilsLogic`` methods and their parameters.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
SLICER_TAGS = ("v5.8.1", "v5.10.0", "v5.12.0")
PYTHON_MODULES = {
    "slicer.util": "Base/Python/slicer/util.py",
    "slicer.packaging": "Base/Python/slicer/packaging.py",
    "slicer.i18n": "Base/Python/slicer/i18n.py",
    "slicer.ScriptedLoadableModule": "Base/Python/slicer/ScriptedLoadableModule.py",
    "slicer.testing": "Base/Python/slicer/testing.py",
    # A scripted module, imported as ``import SampleData``: its logic registers sample data.
    "SampleData": "Modules/Scripted/SampleData/SampleData.py",
}
PARAMETER_NODE_WRAPPER = "Base/Python/slicer/parameterNodeWrapper/"
# Set by the application on the ``slicer`` module (Base/Python/slicer/__init__.py documents them).
APPLICATION_ATTRIBUTES = ("app", "mrmlScene", "modules", "moduleNames")
SLICER_HEADER = re.compile(
    r"/(vtkMRML|vtkSlicer|vtkSegment|vtkOrientedImageData|vtkBinaryLabelmap|vtkClosedSurface"
    r"|vtkFractionalLabelmap|vtkCalculate|qMRML|qSlicer)\w*\.h$"
)
DECORATORS = re.compile(r"PythonQtDecorators\.h$")
CTK_HEADER = re.compile(r"^Libs/(Core|Widgets|Scripting/Python/Core)/ctk\w*\.h$")
SKIPPED_FOLDERS = re.compile(r"(^|/)(Testing|Templates|SuperBuild|Utilities|Docs)/")
PYTORCH_UTILS = "PyTorchUtils/PyTorchUtils.py"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def read_files(repo: Path, revision: str, paths: Iterable[str]) -> dict[str, str]:
    """The text of many files at ``revision`` through one ``git cat-file --batch``."""
    paths = list(paths)
    request = "".join(f"{revision}:{path}\n" for path in paths).encode()
    output = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "--batch"],
        input=request,
        capture_output=True,
        check=True,
    ).stdout
    texts, offset = {}, 0
    for path in paths:
        header_end = output.index(b"\n", offset)
        size = int(output[offset:header_end].split()[2])
        texts[path] = output[header_end + 1 : header_end + 1 + size].decode("utf-8", "replace")
        offset = header_end + 1 + size + 1
    return texts


# Python sources ----------------------------------------------------------------------------------


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict:
    args = function.args
    positional = [a.arg for a in [*args.posonlyargs, *args.args]]
    names = [*positional, *(a.arg for a in args.kwonlyargs)]
    required = positional[: len(positional) - len(args.defaults)]
    required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    return {
        "params": names,
        "required": required,
        "varargs": args.vararg is not None,
        "varkw": args.kwarg is not None,
    }


def _self_attributes(cls: ast.ClassDef) -> list[str]:
    """Names a class's methods assign on ``self`` (instance attributes callers may read)."""
    found = set()
    for node in ast.walk(cls):
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets = [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else targets
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                found.add(target.attr)
    return sorted(found)


def python_module_api(source: str) -> dict:
    """Top-level functions, classes (methods, instance attributes) and other names of a module."""
    tree = ast.parse(source)
    functions, classes, names = {}, {}, set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions[node.name] = _parameters(node)
        elif isinstance(node, ast.ClassDef):
            methods = {
                item.name: _parameters(item)
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            bases = [ast.unparse(base) for base in node.bases]
            classes[node.name] = {
                "bases": bases,
                "methods": methods,
                "attributes": _self_attributes(node),
            }
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    return {"functions": functions, "classes": classes, "names": sorted(names)}


def package_names(sources: dict[str, str]) -> list[str]:
    """Every public top-level name defined in any file of a package (its public surface)."""
    names = set()
    for source in sources.values():
        api = python_module_api(source)
        names |= set(api["functions"]) | set(api["classes"]) | set(api["names"])
    return sorted(n for n in names if not n.startswith("_"))


# C++ headers -------------------------------------------------------------------------------------

_CLASS = re.compile(
    r"^class\s+(?:\w+_EXPORT\s+)?(?P<name>\w+)\s*(?:final\s*)?:\s*public\s+(?P<base>[\w:]+)[^;{]*",
    re.MULTILINE,
)
_ACCESS = re.compile(
    r"^\s*(public|protected|private)\s*(Q_SLOTS|slots)?\s*:|^\s*(Q_SIGNALS|signals)\s*:",
    re.MULTILINE,
)
_PROPERTY = re.compile(r"Q_PROPERTY\(\s*[\w:<>, ]+?[\s*&]+(\w+)\s+READ")
_METHOD = re.compile(r"(?:^|[\s*&:>])(~?\w+)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*(?:const)?")
_GETTERS = ["vtkGetMacro", "vtkGetObjectMacro", "vtkGetSmartPointerMacro", "vtkGetStringMacro"]
_GETTERS += ["vtkGetEnumMacro", "vtkGetVectorMacro", "vtkGetNewMacro"]
_GETTERS += [f"vtkGetVector{n}Macro" for n in (2, 3, 4, 6)]
_SETTERS = [name.replace("Get", "Set") for name in _GETTERS if name != "vtkGetNewMacro"]
_SETTERS += ["vtkSetClampMacro"]
_MACROS = {
    **dict.fromkeys(_GETTERS, ("Get{}",)),
    **dict.fromkeys(_SETTERS, ("Set{}",)),
    "vtkBooleanMacro": ("{}On", "{}Off"),
}
_MACRO_CALL = re.compile(r"\b(" + "|".join(_MACROS) + r")\(\s*(\w+)")
_NOT_METHODS = {"if", "for", "while", "switch", "return", "sizeof", "defined", "Q_PROPERTY"}
_NOT_METHODS |= {"Q_OBJECT", "Q_ENUM", "Q_ENUMS", "Q_FLAGS", "Q_DECLARE_PRIVATE", "Q_DISABLE_COPY"}
_NOT_METHODS |= {"Q_DECLARE_PUBLIC", "Q_FLAG", "QT_DEPRECATED", "VTK_LEGACY", "static_cast"}
# vtkTypeMacro gives every VTK class these (VTK Common/Core/vtkSetGet.h).
_VTK_TYPE_MACRO = ("IsA", "GetClassName", "SafeDownCast", "NewInstance", "IsTypeOf")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def _class_body(text: str, start: int) -> str:
    """The ``{...}`` body of the class declared at ``start`` (braces balanced); "" if none."""
    opening = text.find("{", start)
    if opening < 0 or 0 <= text.find(";", start) < opening:
        return ""
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[opening + 1 : index]
    return text[opening + 1 :]


def _top_level(body: str) -> str:
    """The class body without nested brace blocks (inline method bodies, nested types).

    Enum bodies stay: their enumerators are members (``vtkMRMLScene.StartCloseEvent``).
    """
    out, depth, keep = [], 0, False
    for char in body:
        if char == "{" and depth == 0:
            keep = bool(re.search(r"\benum\b[^;]*$", "".join(out[-200:])))
        if char == "{":
            depth += 1
            out.append("{" if keep else (";" if depth == 1 else ""))
        elif char == "}":
            depth -= 1
            out.append("}" if keep and depth == 0 else "")
        elif depth == 0 or keep:
            out.append(char)
    return "".join(out)


def _sections(body: str) -> list[tuple[str, str]]:
    """(access, text) pieces: "public", "slots", "signals", "protected", "private"."""
    pieces, access, last = [], "private", 0
    for match in _ACCESS.finditer(body):
        pieces.append((access, body[last : match.start()]))
        if match.group(3):
            access = "signals"
        else:
            access = "slots" if match.group(1) == "public" and match.group(2) else match.group(1)
        last = match.end()
    pieces.append((access, body[last:]))
    return pieces


def signal_signature(name: str, parameters: str) -> str:
    """Qt's normalized signature, e.g. ``currentNodeChanged(vtkMRMLNode*)``."""
    types = []
    for parameter in _split_parameters(parameters):
        bare = re.sub(r"\bconst\b|&", " ", re.sub(r"=.*$", "", parameter).strip())
        words = bare.replace("*", " * ").split()
        if len(words) > 1 and words[-1] != "*" and re.match(r"^\w+$", words[-1]):
            words = words[:-1]  # the parameter's name
        types.append("".join(w if w == "*" else f" {w}" for w in words).strip().replace(" *", "*"))
    return f"{name}({','.join(types)})"


def _split_parameters(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"<": 1, ">": -1, "(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip() and p.strip() != "void"]


def _methods(text: str) -> list[tuple[str, str]]:
    found = []
    for statement in text.split(";"):
        match = _METHOD.search(statement)
        if match and match.group(1) not in _NOT_METHODS and not match.group(1).startswith("~"):
            found.append((match.group(1), match.group(2)))
    return found


def _enumerators(body: str) -> set[str]:
    names = set()
    for block in re.finditer(r"\benum\b[^{;]*\{([^}]*)\}", body):
        names |= {m.group(1) for m in re.finditer(r"(?:^|,)\s*(\w+)\s*(?:=[^,]*)?", block.group(1))}
    return names


def cxx_class_api(text: str) -> dict[str, dict]:
    """Every class declared in a header: base, members Python can reach, signals."""
    text = _strip_comments(text)
    classes = {}
    for match in _CLASS.finditer(text):
        body = _class_body(text, match.end())
        if not body:
            continue
        members, signals, qt_members = set(), set(), set(_PROPERTY.findall(body))
        is_qt = "Q_OBJECT" in body or "Q_GADGET" in body
        for access, piece in _sections(_top_level(body)):
            if access == "signals":
                signals |= {signal_signature(n, p) for n, p in _methods(piece)}
                qt_members |= {n for n, _ in _methods(piece)}
            elif access == "slots":
                qt_members |= {n for n, _ in _methods(piece)}
            elif access == "public":
                members |= {n for n, _ in _methods(piece)}
                qt_members |= set(re.findall(r"Q_INVOKABLE[^;(]*?\b(\w+)\s*\(", piece))
                members |= _enumerators(piece)
                qt_members |= _enumerators(piece)
        for macro, name in _MACRO_CALL.findall(body):
            members |= {template.format(name) for template in _MACROS[macro]}
        if "vtkTypeMacro" in body:
            members |= set(_VTK_TYPE_MACRO)
        name = match.group("name")
        entry = {"base": match.group("base").split("::")[-1]}
        if is_qt:
            entry |= {"members": sorted(qt_members), "signals": sorted(signals)}
        else:
            entry["members"] = sorted(members)
        classes[name] = entry
    return classes


# Assembling the reference files ------------------------------------------------------------------


def pinned_ctk_commit(slicer_git: Path, tag: str) -> str:
    """The CTK commit ``SuperBuild/External_CTK.cmake`` of ``tag`` builds."""
    text = git(slicer_git, "show", f"{tag}:SuperBuild/External_CTK.cmake")
    block = text[text.index("Slicer_${proj}_GIT_TAG") :]
    return re.search(r'"([0-9a-f]{40})"', block).group(1)


def _headers(repo: Path, revision: str, pattern: re.Pattern[str]) -> dict[str, str]:
    paths = [
        p
        for p in git(repo, "ls-tree", "-r", "--name-only", revision).splitlines()
        if (pattern.search(p) or DECORATORS.search(p)) and not SKIPPED_FOLDERS.search(p)
    ]
    return read_files(repo, revision, paths)


def decorated_members(text: str) -> dict[str, set[str]]:
    """Members a PythonQt decorator class adds: ``static_<Class>_<name>`` or ``name(Class* ...)``."""
    added: dict[str, set[str]] = {}
    text = _strip_comments(text)
    match = _CLASS.search(text)
    body = _top_level(_class_body(text, match.end())) if match else ""
    for access, piece in _sections(body):
        for name, parameters in _methods(piece) if access == "slots" else []:
            if name.startswith("static_"):
                _, cls, member = name.split("_", 2)
            else:
                first = (_split_parameters(parameters) or [""])[0]
                match = re.match(r"\s*(?:const\s+)?(\w+)\s*\*", first)
                if not match or name.startswith(("new_", "delete_")):
                    continue
                cls, member = match.group(1), name
            added.setdefault(cls, set()).add(member)
    return added


def cxx_classes(headers: dict[str, str]) -> dict[str, dict]:
    """Classes of every header, with the members PythonQt decorator files add to them."""
    classes = {}
    for path in sorted(headers):
        for name, entry in cxx_class_api(headers[path]).items():
            classes.setdefault(name, entry | {"header": path})
    for path in sorted(p for p in headers if DECORATORS.search(p)):
        for name, members in decorated_members(headers[path]).items():
            if name in classes:
                classes[name]["members"] = sorted({*classes[name]["members"], *members})
    return classes


def slicer_reference(slicer_git: Path, tag: str) -> dict:
    """Python modules, the ``slicer`` namespace and the C++ classes of one Slicer tag."""
    files = git(slicer_git, "ls-tree", "-r", "--name-only", tag).splitlines()
    present = {name: path for name, path in PYTHON_MODULES.items() if path in files}
    sources = read_files(slicer_git, tag, present.values())
    modules = {name: python_module_api(sources[path]) for name, path in present.items()}
    wrapper_files = [f for f in files if f.startswith(PARAMETER_NODE_WRAPPER) and f.endswith(".py")]
    wrapper = package_names(read_files(slicer_git, tag, wrapper_files))
    modules["slicer.parameterNodeWrapper"] = {"functions": {}, "classes": {}, "names": wrapper}
    classes = cxx_classes(_headers(slicer_git, tag, SLICER_HEADER))
    submodules = {
        f.removeprefix("Base/Python/slicer/").split("/")[0].removesuffix(".py")
        for f in files
        if f.startswith("Base/Python/slicer/") and not f.endswith(".in")
    }
    namespace = sorted({*APPLICATION_ATTRIBUTES, *submodules, *classes} - {"__init__"})
    commit = git(slicer_git, "rev-list", "-n", "1", tag).strip()
    python = re.search(
        r'Slicer_REQUIRED_PYTHON_VERSION "([\d.]+)"',
        git(slicer_git, "show", f"{tag}:CMakeLists.txt"),
    ).group(1)
    return {
        "source": {"repository": "Slicer/Slicer", "tag": tag, "commit": commit},
        "python_version": python,
        "ctk_commit": pinned_ctk_commit(slicer_git, tag),
        "slicer_namespace": namespace,
        "python_modules": modules,
        "classes": classes,
    }


def ctk_reference(ctk_git: Path, commit: str) -> dict:
    return {
        "source": {"repository": "commontk/CTK", "commit": commit},
        "classes": cxx_classes(_headers(ctk_git, commit, CTK_HEADER)),
    }


def pytorch_utils_reference(pytorch_git: Path, revision: str = "HEAD") -> dict:
    commit = git(pytorch_git, "rev-parse", revision).strip()
    source = git(pytorch_git, "show", f"{commit}:{PYTORCH_UTILS}")
    api = python_module_api(source)
    logic = api["classes"]["PyTorchUtilsLogic"]
    static = re.findall(r"@staticmethod\s+def (\w+)", source)
    return {
        "source": {"repository": "fepegar/SlicerPyTorch", "path": PYTORCH_UTILS, "commit": commit},
        "PyTorchUtilsLogic": logic | {"staticmethods": sorted(static)},
    }


def _write(name: str, data: dict) -> None:
    path = REFERENCE_DIR / name
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slicer-git", type=Path, required=True)
    parser.add_argument("--ctk-git", type=Path, required=True)
    parser.add_argument("--pytorch-git", type=Path, required=True)
    args = parser.parse_args(argv)
    REFERENCE_DIR.mkdir(exist_ok=True)
    for tag in SLICER_TAGS:
        reference = slicer_reference(args.slicer_git, tag)
        _write(f"slicer-{tag}.json", reference)
        commit = reference["ctk_commit"]
        _write(f"ctk-{commit[:12]}.json", ctk_reference(args.ctk_git, commit))
    _write("pytorchutils.json", pytorch_utils_reference(args.pytorch_git))


if __name__ == "__main__":
    main()
