"""The Slicer extension's packaging, checked without Slicer: CMake, catalog entry, icons, requirements.

Why: a file left out of a CMake list, or a catalog entry out of step with CMakeLists.txt, only
shows on the extensions build farm a day later, or in a user's Slicer as a missing import. The
CMake files are read by a small evaluator of the few commands they use (set, file(GLOB...)); a
second test configures the real files with CMake itself against a stand-in Slicer.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from AutoSegCoreLib import dependencies, extension_info

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("AutoSegTrain", "AutoSegPredict")
ENGINE = ROOT / "AutoSegCore" / "autoseg"
CORE_LIB = ROOT / "AutoSegCore" / "AutoSegCoreLib"
METADATA = ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS")
METADATA += ("STATUS", "ENABLED", "DEPENDS", "BUILD_SUBDIRECTORY")
ICONS = {
    ROOT / "Resources" / "AutoSeg.png": 128,
    **{ROOT / m / "Resources" / "Icons" / f"{m}.png": 128 for m in MODULES},
}
# Properties of slicer-extension-catalog-entry-schema-v1.0.1.json (additionalProperties: false).
CATALOG_TYPES = {
    "$schema": str,
    "category": str,
    "scm_url": str,
    "scm_revision": str,
    "scm_type": str,
    "build_dependencies": list,
    "build_subdirectory": str,
    "enabled": bool,
    "tier": int,
}
SLICER_OWNED_OR_TORCH = {"numpy", "simpleitk", "torch"}

Call = tuple[str, list[str]]
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)')
_VARIABLE = re.compile(r"\$\{(\w+)\}")


def _strip_comments(text: str) -> str:
    """Drop ``# ...`` to the end of each line, except inside quoted arguments."""
    out, quoted = [], False
    for line in text.splitlines():
        kept = []
        for char in line:
            if char == '"':
                quoted = not quoted
            elif char == "#" and not quoted:
                break
            kept.append(char)
        out.append("".join(kept))
    return "\n".join(out)


def _raw_commands(text: str) -> list[tuple[str, list[tuple[str, bool]]]]:
    """``name(args)`` invocations with their arguments as (text, was quoted)."""
    commands = []
    for match in re.finditer(r"(\w+)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)", _strip_comments(text)):
        args = [
            (m.group(1), True) if m.group(1) is not None else (m.group(2), False)
            for m in _ARG.finditer(match.group(2))
        ]
        commands.append((match.group(1).lower(), args))
    return commands


def _glob(args: list[str]) -> list[str]:
    """CMake's ``file(GLOB[_RECURSE] VAR [RELATIVE dir] [CONFIGURE_DEPENDS] patterns...)``."""
    mode, rest = args[0], args[2:]
    relative = None
    if rest[:1] == ["RELATIVE"]:
        relative, rest = Path(rest[1]), rest[2:]
    found = set()
    for pattern in (p for p in rest if p != "CONFIGURE_DEPENDS"):
        folder, name = Path(pattern).parent, Path(pattern).name
        matches = folder.rglob(name) if mode == "GLOB_RECURSE" else folder.glob(name)
        for path in (p for p in matches if p.is_file()):
            found.add(path.relative_to(relative).as_posix() if relative else str(path))
    return sorted(found)


def evaluate_cmake(path: Path) -> tuple[dict[str, list[str]], list[Call]]:
    """Variables after running ``set`` and ``file(GLOB...)`` of ``path``, and every call made."""
    variables = {"CMAKE_CURRENT_SOURCE_DIR": [str(path.parent)]}

    def expand(text: str) -> str:
        return _VARIABLE.sub(lambda m: ";".join(variables.get(m[1], [m[0]])), text)

    calls = []
    for name, raw in _raw_commands(path.read_text(encoding="utf-8")):
        args: list[str] = []
        for text, quoted in raw:
            value = expand(text)
            # A quoted list stays one argument in CMake, but every macro here splits it again.
            args.extend(value.split(";") if quoted else [v for v in value.split(";") if v])
        if name == "set" and args:
            variables[args[0]] = args[1:]
        elif name == "file" and args[0] in ("GLOB", "GLOB_RECURSE"):
            variables[args[1]] = _glob(args)
        calls.append((name, args))
    return variables, calls


def keyword_args(args: list[str], keywords: set[str]) -> dict[str, list[str]]:
    """Split a macro's arguments at its keywords (a keyword without values maps to [])."""
    parsed: dict[str, list[str]] = {}
    current = None
    for arg in args:
        if arg in keywords:
            current = arg
            parsed[current] = []
        elif current is not None:
            parsed[current].append(arg)
    return parsed


def _top_level() -> tuple[dict[str, list[str]], list[Call]]:
    return evaluate_cmake(ROOT / "CMakeLists.txt")


def _extension_depends() -> list[str]:
    value = " ".join(_top_level()[0]["EXTENSION_DEPENDS"]).split()
    return [] if value == ["NA"] else value


def test_every_metadata_variable_is_set_and_not_empty() -> None:
    variables, _ = _top_level()
    for name in METADATA:
        value = " ".join(variables.get(f"EXTENSION_{name}", [])).strip()
        assert value, f"EXTENSION_{name} is not set in CMakeLists.txt"


def _raw_prefix() -> str:
    """Where raw files of this repository's main branch are served (from EXTENSION_HOMEPAGE)."""
    homepage = _top_level()[0]["EXTENSION_HOMEPAGE"][0].removeprefix("https://github.com/")
    return f"https://raw.githubusercontent.com/{homepage}/main/"


def test_screenshots_exist_as_pngs_in_this_repository() -> None:
    """The catalog requires at least one screenshot at every tier."""
    urls = " ".join(_top_level()[0].get("EXTENSION_SCREENSHOTURLS", [])).split()
    assert urls, "EXTENSION_SCREENSHOTURLS is empty; the extensions catalog refuses that"
    for url in urls:
        assert url.startswith(_raw_prefix()), f"{url} is not in this repository"
        path = ROOT / url.removeprefix(_raw_prefix())
        assert path.is_file(), f"{url} names no file"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        assert path.parent == ROOT / "Resources" / "Screenshots"
    assert (ROOT / "Resources" / "Screenshots" / "make_screenshot.py").is_file()


def test_contributors_are_names_with_institutions_and_agree_with_the_modules() -> None:
    value = " ".join(_top_level()[0]["EXTENSION_CONTRIBUTORS"])
    assert value == ", ".join(extension_info.CONTRIBUTORS)
    for contributor in extension_info.CONTRIBUTORS:
        assert re.fullmatch(r"[^(),]+ \([^()]+\)", contributor), contributor
    assert "AutoSeg team" not in value


def test_the_help_links_the_readme_on_the_homepage() -> None:
    homepage = _top_level()[0]["EXTENSION_HOMEPAGE"][0]
    assert f"{homepage}#readme" == extension_info.DOCUMENTATION_URL
    text = extension_info.help_text("Summary.")
    assert f'href="{extension_info.DOCUMENTATION_URL}"' in text
    warned = extension_info.help_text("Summary.", "Needs Slicer 5.10.")
    assert warned.startswith("<p><b>Needs Slicer 5.10.</b></p>")
    for module in MODULES:  # both modules build their help with it
        assert "help_text(summary, UNSUPPORTED)" in (ROOT / module / f"{module}.py").read_text()


def test_the_minimum_slicer_and_python_agree_everywhere() -> None:
    variables, _ = _top_level()
    assert variables["AUTOSEG_MINIMUM_SLICER_VERSION"] == [extension_info.MINIMUM_SLICER]
    python = ".".join(map(str, extension_info.MINIMUM_PYTHON))
    assert variables["AUTOSEG_MINIMUM_PYTHON_VERSION"] == [python]
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == f">={python}"
    description = " ".join(variables["EXTENSION_DESCRIPTION"])
    assert f"3D Slicer {extension_info.MINIMUM_SLICER} or newer" in description


def test_icon_url_names_the_extension_icon_of_this_repository() -> None:
    url = _top_level()[0]["EXTENSION_ICONURL"][0]
    assert url.startswith(_raw_prefix())
    assert (ROOT / url.removeprefix(_raw_prefix())) in ICONS


def test_every_subdirectory_exists_and_the_template_marker_stays() -> None:
    _, calls = _top_level()
    folders = [args[0] for name, args in calls if name == "add_subdirectory"]
    assert {"AutoSegCore", *MODULES} <= set(folders)
    for folder in folders:
        assert (ROOT / folder / "CMakeLists.txt").is_file(), folder
    assert "## NEXT_MODULE" in (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")


def test_catalog_entry_follows_the_schema_and_agrees_with_cmake() -> None:
    entry = json.loads((ROOT / "Resources" / "ExtensionsIndex" / "AutoSeg.json").read_text())
    variables, _ = _top_level()
    assert set(entry) <= set(CATALOG_TYPES), set(entry) - set(CATALOG_TYPES)
    assert {"$schema", "category", "scm_url"} <= set(entry)
    for key, value in entry.items():
        assert type(value) is CATALOG_TYPES[key], key
    assert entry["$schema"].endswith("/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["build_dependencies"] == _extension_depends()
    assert entry["category"] == variables["EXTENSION_CATEGORY"][0]
    assert entry["build_subdirectory"] == variables["EXTENSION_BUILD_SUBDIRECTORY"][0]
    assert entry["scm_url"].removesuffix(".git") == variables["EXTENSION_HOMEPAGE"][0]
    assert entry["scm_type"] in ("git", "local")
    assert entry["tier"] in (1, 3, 5)
    assert entry["enabled"] is (variables["EXTENSION_ENABLED"][0] in ("1", "ON", "TRUE"))


def _compile_calls(path: Path) -> dict[str, dict[str, list[str]]]:
    """The ctkMacroCompilePythonScript calls of ``path`` by the package folder they fill."""
    keywords = {"TARGET_NAME", "SCRIPTS", "RESOURCES", "SOURCE_DIR", "DESTINATION_DIR"}
    keywords |= {"INSTALL_DIR", "NO_INSTALL_SUBDIR"}
    calls = {}
    for name, args in evaluate_cmake(path)[1]:
        if name == "ctkmacrocompilepythonscript":
            parsed = keyword_args(args, keywords)
            calls[Path(parsed["DESTINATION_DIR"][0]).name] = parsed
    return calls


@pytest.mark.parametrize("package", [ENGINE, CORE_LIB], ids=lambda p: p.name)
def test_every_python_file_of_a_core_package_is_bundled_into_its_own_folder(package: Path) -> None:
    call = _compile_calls(ROOT / "AutoSegCore" / "CMakeLists.txt")[package.name]
    assert Path(call["SOURCE_DIR"][0]) == package
    expected = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    assert len(expected) > 3
    assert set(call["SCRIPTS"]) == expected
    lib_dir = "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}"
    assert call["DESTINATION_DIR"][0].endswith(f"{lib_dir}/{package.name}")
    assert call["INSTALL_DIR"][0] == f"${{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}}/{package.name}"
    assert "NO_INSTALL_SUBDIR" in call
    for resource in call.get("RESOURCES", []):
        assert (package / resource).is_file(), resource


def test_the_engine_holds_only_python_files_since_only_those_are_bundled() -> None:
    others = [
        p
        for p in ENGINE.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    ]
    assert others == [], "bundle these in AutoSegCore/CMakeLists.txt (RESOURCES) as well"


def test_the_bundled_requirements_are_the_file_the_dependency_code_reads() -> None:
    call = _compile_calls(ROOT / "AutoSegCore" / "CMakeLists.txt")["AutoSegCoreLib"]
    bundled = [CORE_LIB / r for r in call["RESOURCES"]]
    assert dependencies.REQUIREMENTS_FILE in bundled


@pytest.mark.parametrize("module", MODULES)
def test_module_scripts_and_resources_exist_and_cover_the_lib_package(module: str) -> None:
    folder = ROOT / module
    _, calls = evaluate_cmake(folder / "CMakeLists.txt")
    build = [args for name, args in calls if name == "slicermacrobuildscriptedmodule"]
    assert len(build) == 1
    parsed = keyword_args(build[0], {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS"})
    assert parsed["NAME"] == [module]
    assert "WITH_GENERIC_TESTS" in parsed
    for entry in parsed["SCRIPTS"] + parsed["RESOURCES"]:
        assert (folder / entry).is_file(), f"{module}/{entry} is listed but does not exist"
    lib = {p.relative_to(folder).as_posix() for p in (folder / f"{module}Lib").rglob("*.py")}
    assert {f"{module}.py", *lib} == set(parsed["SCRIPTS"])
    assert {f"Resources/UI/{module}.ui", f"Resources/Icons/{module}.png"} <= set(
        parsed["RESOURCES"]
    )
    tests = [args for name, args in calls if name == "slicer_add_python_unittest"]
    assert tests == [["SCRIPT", f"{module}.py"]]


@pytest.mark.parametrize("path", ICONS, ids=lambda p: p.name)
def test_icons_are_pngs_of_the_stated_size(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height) == (ICONS[path], ICONS[path])
    assert (depth, colour) == (8, 6), "expected 8-bit RGBA"


def _pyproject_dependencies(extra: str | None = None) -> dict[str, Requirement]:
    """pyproject's dependencies, or those of one optional extra, by canonical name."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    requirements = (Requirement(text) for text in texts)
    return {canonicalize_name(r.name): r for r in requirements}


def test_requirements_file_mirrors_pyproject_without_slicer_owned_packages_and_torch() -> None:
    expected = {
        name: str(r.specifier)
        for name, r in _pyproject_dependencies().items()
        if name not in SLICER_OWNED_OR_TORCH
    }
    lines = dependencies.load_requirements()
    found = {canonicalize_name(Requirement(t).name): str(Requirement(t).specifier) for t in lines}
    assert len(found) == len(lines), "a package is listed twice"
    assert found == expected
    assert not set(found) & SLICER_OWNED_OR_TORCH


def test_cpu_runtimes_file_mirrors_pyprojects_cpu_extra() -> None:
    expected = {name: str(r) for name, r in _pyproject_dependencies("cpu").items()}
    lines = dependencies.load_requirements(dependencies.CPU_RUNTIMES_FILE)
    found = {canonicalize_name(Requirement(t).name): str(Requirement(t)) for t in lines}
    assert len(found) == len(lines), "a package is listed twice"
    assert found == expected


def test_the_bundled_cpu_runtimes_are_the_file_the_dependency_code_reads() -> None:
    call = _compile_calls(ROOT / "AutoSegCore" / "CMakeLists.txt")["AutoSegCoreLib"]
    bundled = [CORE_LIB / r for r in call["RESOURCES"]]
    assert dependencies.CPU_RUNTIMES_FILE in bundled


def test_torch_requirement_matches_pyproject() -> None:
    torch = _pyproject_dependencies()["torch"]
    assert str(Requirement(dependencies.TORCH_REQUIREMENT)) == str(torch)


# A stand-in Slicer: the real CMake files run with macros that only check and record their input.
_FAKE_USE_SLICER = textwrap.dedent(
    """\
    set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer/qt-scripted-modules)
    set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR ${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
    set(BUILD_TESTING ON)
    macro(ctkMacroCompilePythonScript)
      cmake_parse_arguments(MY "NO_INSTALL_SUBDIR"
        "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
      if(NOT MY_SOURCE_DIR)
        set(MY_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
      endif()
      foreach(f ${MY_SCRIPTS} ${MY_RESOURCES})
        if(NOT EXISTS ${MY_SOURCE_DIR}/${f})
          message(FATAL_ERROR "missing ${MY_SOURCE_DIR}/${f}")
        endif()
        file(APPEND ${CMAKE_BINARY_DIR}/bundle.txt "${MY_DESTINATION_DIR}/${f}\\n")
      endforeach()
    endmacro()
    macro(slicerMacroBuildScriptedModule)
      cmake_parse_arguments(S "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
      ctkMacroCompilePythonScript(SCRIPTS ${S_SCRIPTS} RESOURCES ${S_RESOURCES}
        DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
    endmacro()
    macro(slicer_add_python_unittest)
    endmacro()
    """
)


def _configure(tmp_path: Path, slicer_version: str, python_version: str):
    """Configure the real CMake files against a stand-in Slicer of the given versions.

    Like Slicer's own SlicerConfigVersion.cmake, the stand-in's version file makes find_package
    set Slicer_VERSION; SlicerConfig.cmake sets Slicer_REQUIRED_PYTHON_VERSION.
    """
    fake = tmp_path / "Slicer"
    fake.mkdir()
    (fake / "UseSlicer.cmake").write_text(_FAKE_USE_SLICER)
    (fake / "empty.cmake").write_text("")
    (fake / "SlicerConfig.cmake").write_text(
        f'set(Slicer_USE_FILE "{fake.as_posix()}/UseSlicer.cmake")\n'
        f'set(Slicer_EXTENSION_GENERATE_CONFIG "{fake.as_posix()}/empty.cmake")\n'
        f'set(Slicer_EXTENSION_CPACK "{fake.as_posix()}/empty.cmake")\n'
        f'set(Slicer_REQUIRED_PYTHON_VERSION "{python_version}")\n'
    )
    (fake / "SlicerConfigVersion.cmake").write_text(
        f'set(PACKAGE_VERSION "{slicer_version}")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n'
    )
    build = tmp_path / "build"
    done = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={fake}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return build, done


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
@pytest.mark.parametrize(("slicer_version", "python_version"), [("5.8", "3.9.10")])
def test_cmake_refuses_a_slicer_older_than_5_10_with_one_message(
    tmp_path: Path, slicer_version: str, python_version: str
) -> None:
    _, done = _configure(tmp_path, slicer_version, python_version)
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())
    assert (
        "AutoSeg needs 3D Slicer 5.10 or newer (Python 3.10+), but Slicer_DIR is Slicer 5.8"
        in output
    )


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_configures_and_bundles_every_python_file(tmp_path: Path) -> None:
    build, done = _configure(tmp_path, "5.10", "3.12.10")
    assert done.returncode == 0, done.stdout + done.stderr
    lib = build / "lib" / "Slicer" / "qt-scripted-modules"
    bundled = {Path(line) for line in (build / "bundle.txt").read_text().splitlines()}
    expected = {lib / "autoseg" / p.relative_to(ENGINE) for p in ENGINE.rglob("*.py")}
    expected |= {lib / "AutoSegCoreLib" / p.relative_to(CORE_LIB) for p in CORE_LIB.rglob("*.py")}
    for module in MODULES:
        expected.add(lib / f"{module}.py")
        expected |= {lib / p.relative_to(ROOT / module) for p in (ROOT / module).glob("*Lib/*.py")}
    assert expected <= bundled
    assert lib / "AutoSegCoreLib" / "Resources" / "requirements.txt" in bundled
