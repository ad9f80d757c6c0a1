"""The dependency plan: what AutoSeg installs into Slicer's Python, and what it must leave alone.

Everything ``dependency_install.install`` decides is decided by the plan and the pure helpers tested
here, with installed versions given by a dict instead of the machine. ``install`` itself runs
against stand-ins of Slicer 5.10 and 5.12 and of the PyTorch extension that have only the names
and parameters of the real ones (Testing/slicer_api/reference): a call the real module would
reject fails here too.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from Testing.slicer_api.reference_api import SlicerApi, slicer_api, supported
from Testing.slicer_api.standins import pytorch_utils_module, slicer_module, slicer_package

from autoseg.inference.backends.base import AUTO, BACKENDS, ONNXRUNTIME, OPENVINO, TORCH
from AutoSegCoreLib import dependency_install
from AutoSegCoreLib.dependencies import (
    CPU_RUNTIMES_FILE,
    REQUIREMENTS_FILE,
    TORCH_REQUIREMENT,
    DependencyPlan,
    current_plan,
    distribution_import_names,
    installed_version,
    load_requirements,
    missing_requirements,
    parse_requirement,
    plan_installation,
    protective_pins,
    pytorch_extension_available,
    replaced_loaded_distributions,
    runtime_plan,
    runtime_requirements,
    torch_backend,
    unmet_reason,
    version_specifier,
)
from AutoSegCoreLib.dependency_install import ensure_backend_runtime, install

ENGINE_REQUIREMENTS = ["scipy>=1.10", "batchgenerators>=0.25", "matplotlib>=3.7"]
ALL_PRESENT = {
    "numpy": "2.1.3",
    "simpleitk": "2.4.0",
    "scipy": "1.14.1",
    "batchgenerators": "0.25.1",
    "matplotlib": "3.9.2",
    "torch": "2.5.1+cu121",
}


def lookup(versions: dict[str, str | None]):
    """An ``installed_version`` stand-in that, like importlib.metadata, ignores name spelling."""
    return lambda name: versions.get(canonicalize_name(name))


def plan(versions: dict[str, str | None], *, extension: bool = False, requirements=None):
    return plan_installation(
        ENGINE_REQUIREMENTS if requirements is None else requirements,
        pytorch_extension_available=extension,
        installed_version=lookup(versions),
    )


@pytest.mark.parametrize(
    ("requirement", "installed", "satisfied"),
    [
        ("scipy>=1.10", "1.14.1", True),
        ("scipy>=1.10", "1.9.3", False),
        ("scipy>=1.10", None, False),
        ("torch>=2.1", "2.5.1+cu121", True),  # local (CUDA) builds count
        ("torch>=2.1", "2.6.0rc1", True),  # so does an installed pre-release
        ("torch>=2.1", "2.0.1+cpu", False),
        ("numpy==2.1", "2.1.0", True),  # PEP 440: 2.1 == 2.1.0
        ("numpy<2", "2.0.1", False),
        ("matplotlib>=3.7,<4", "3.9.2", True),
        ("matplotlib", "0.1", True),  # no specifier: any version
        ("scipy>=1.10", "not a version", False),
    ],
)
def test_unmet_reason_compares_versions_like_pip(requirement, installed, satisfied) -> None:
    reason = unmet_reason(parse_requirement(requirement), installed)
    assert (reason is None) is satisfied
    if installed is None:
        assert reason == "not installed"
    elif not satisfied:
        assert installed in reason


def test_missing_requirements_keeps_the_given_text_and_ignores_name_spelling() -> None:
    versions = {"simpleitk": "2.4.0", "scikit-image": "0.19.0", "scipy": "1.14.1"}
    given = ["SimpleITK>=2.2", "scikit_image>=0.20", "SciPy>=1.10", "nibabel>=5"]
    missing = missing_requirements(given, installed_version=lookup(versions))
    assert missing == ["scikit_image>=0.20", "nibabel>=5"]


def test_missing_requirements_evaluates_environment_markers() -> None:
    given = [
        'nibabel>=5; python_version < "3"',  # never applies: not missing even though absent
        f'pydicom>=2; sys_platform == "{sys.platform}"',  # applies here
    ]
    assert missing_requirements(given, installed_version=lookup({})) == [given[1]]


def test_an_invalid_requirement_is_rejected_with_its_text() -> None:
    with pytest.raises(ValueError, match="'scipy >>> 1' is not a valid requirement"):
        parse_requirement("scipy >>> 1")


def test_the_bundled_requirements_file_reads_and_parses() -> None:
    assert load_requirements() == [*ENGINE_REQUIREMENTS, "nibabel>=5.0"]
    assert REQUIREMENTS_FILE.name == "requirements.txt"


def test_load_requirements_skips_comments_blanks_and_pip_options(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n\n  scipy>=1.10  \n-c constraints.txt\n--index-url x\nnibabel\n")
    assert load_requirements(path) == ["scipy>=1.10", "nibabel"]


def test_load_requirements_names_file_and_line_of_a_bad_requirement(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("scipy>=1.10\nscipy >>> 1\n")
    with pytest.raises(ValueError, match=r"requirements\.txt, line 2: 'scipy >>> 1'"):
        load_requirements(path)


def test_nothing_is_planned_when_everything_is_present() -> None:
    result = plan(ALL_PRESENT, extension=True)
    assert result == DependencyPlan(
        torch_needed=False,
        torch_via_extension=False,
        pip_requirements=[],
        skipped=[],
        torch_requirement=TORCH_REQUIREMENT,
    )
    assert result.nothing_to_install
    assert result.distribution_names() == []
    assert result.summary() == "Every Python package AutoSeg needs is installed."


@pytest.mark.parametrize(
    ("torch", "extension", "needed", "via_extension"),
    [
        (None, True, True, True),
        (None, False, True, False),
        ("1.13.1", True, True, True),  # outdated: upgraded the same way
        ("1.13.1", False, True, False),
        ("2.5.1+cu121", True, False, False),
        ("2.5.1+cu121", False, False, False),
    ],
)
def test_torch_goes_through_the_extension_when_there_is_one(
    torch, extension, needed, via_extension
) -> None:
    result = plan({**ALL_PRESENT, "torch": torch}, extension=extension)
    assert (result.torch_needed, result.torch_via_extension) == (needed, via_extension)
    assert result.pip_requirements == []  # torch is never a plain pip requirement of the plan
    assert result.nothing_to_install is not needed
    assert ("torch" in result.distribution_names()) is needed


def test_without_the_extension_the_summary_warns_about_cpu_only_wheels() -> None:
    via_pip = plan({**ALL_PRESENT, "torch": None}).summary()
    via_extension = plan({**ALL_PRESENT, "torch": None}, extension=True).summary()
    assert "pip (PyPI)" in via_pip
    assert "CPU-only" in via_pip
    assert "the PyTorch extension" in via_extension
    assert "CPU-only" not in via_extension


def test_missing_and_outdated_packages_are_planned_for_pip() -> None:
    versions = {**ALL_PRESENT, "scipy": "1.9.0", "batchgenerators": None}
    result = plan(versions)
    assert result.pip_requirements == ["scipy>=1.10", "batchgenerators>=0.25"]
    assert result.distribution_names() == ["scipy", "batchgenerators"]
    assert "scipy>=1.10, batchgenerators>=0.25" in result.summary()


@pytest.mark.parametrize(
    ("name", "version"),
    [("numpy", None), ("numpy", "1.21.0"), ("simpleitk", None), ("simpleitk", "2.0.2")],
)
def test_slicer_owned_packages_are_never_planned_only_reported(name, version) -> None:
    requirements = [*ENGINE_REQUIREMENTS, "numpy>=1.24", "SimpleITK>=2.2"]
    result = plan({**ALL_PRESENT, name: version}, requirements=requirements)
    assert result.pip_requirements == []
    assert result.nothing_to_install
    assert len(result.skipped) == 1
    display = {"numpy": "numpy", "simpleitk": "SimpleITK"}[name]
    assert result.skipped[0].startswith(f"{display}>=")
    assert "never replaces it" in result.skipped[0]
    assert ("not installed" in result.skipped[0]) is (version is None)
    assert result.skipped[0] in result.summary()


def test_satisfied_slicer_owned_packages_are_not_reported() -> None:
    result = plan(ALL_PRESENT, requirements=["numpy>=1.24", "SimpleITK>=2.2"])
    assert result.skipped == []


def test_markers_are_evaluated_and_dropped_from_the_pip_requirement() -> None:
    requirements = [
        f'nibabel>=5; sys_platform == "{sys.platform}"',
        'pydicom>=2; python_version < "3"',
    ]
    result = plan(ALL_PRESENT, requirements=requirements)
    assert result.pip_requirements == ["nibabel>=5"]


def test_a_torch_line_narrows_the_torch_requirement_instead_of_going_to_pip() -> None:
    result = plan({**ALL_PRESENT, "torch": "2.3.0"}, requirements=["torch>=2.5"])
    assert result.torch_needed
    assert result.pip_requirements == []
    assert result.torch_requirement in ("torch>=2.1,>=2.5", "torch>=2.5,>=2.1")
    assert not plan(ALL_PRESENT, requirements=["torch>=2.5"]).torch_needed


def test_pytorch_extension_is_found_without_importing_it() -> None:
    asked = []

    def find_spec(name: str) -> object:
        asked.append(name)
        return object()

    assert pytorch_extension_available(find_spec)
    assert asked == ["PyTorchUtils"]
    assert not pytorch_extension_available(lambda name: None)

    def broken(name: str) -> object:
        raise ValueError(f"{name}.__spec__ is None")

    assert not pytorch_extension_available(broken)
    assert not pytorch_extension_available()  # this test environment has no Slicer extension


def test_current_plan_of_this_environment_needs_nothing() -> None:
    """The test environment has the engine's requirements and torch installed (pyproject)."""
    result = current_plan()
    assert result.pip_requirements == []
    assert not result.torch_needed


def test_installed_version_reads_metadata_in_any_spelling() -> None:
    assert installed_version("SimpleITK") == installed_version("simpleitk") is not None
    assert installed_version("no-such-distribution-autoseg") is None


def test_protective_pins_hold_slicers_packages_at_their_installed_versions() -> None:
    assert protective_pins(lookup(ALL_PRESENT)) == ["numpy==2.1.3", "SimpleITK==2.4.0"]
    assert protective_pins(lookup({"simpleitk": "2.4.0"})) == ["SimpleITK==2.4.0"]
    assert protective_pins(lookup({"numpy": "custom build", "simpleitk": None})) == []


def test_restart_is_needed_only_for_a_replaced_package_that_was_imported() -> None:
    before = {"scipy": "1.9.0", "matplotlib": "3.5.0", "torch": None, "pillow": "10.0.0"}
    after = {"scipy": "1.14.1", "matplotlib": "3.9.2", "torch": "2.5.1", "pillow": "10.0.0"}
    names = {"scipy": {"scipy"}, "matplotlib": {"matplotlib", "mpl_toolkits"}, "torch": {"torch"}}
    names["pillow"] = {"PIL"}
    loaded = {"scipy", "torch", "PIL"}
    # scipy: replaced and loaded; matplotlib: not loaded; torch: fresh; pillow: unchanged.
    assert replaced_loaded_distributions(before, after, import_names=names, loaded=loaded) == [
        "scipy"
    ]
    assert replaced_loaded_distributions(before, after, import_names=names, loaded=set()) == []


def test_distribution_import_names_come_from_installed_metadata() -> None:
    names = distribution_import_names()
    assert "numpy" in names["numpy"]
    assert "SimpleITK" in names["simpleitk"]


def test_install_with_nothing_to_do_returns_without_slicer() -> None:
    result = install(plan(ALL_PRESENT))
    assert not result.restart_needed
    assert not result.cancelled
    assert "installed" in result.message


@pytest.mark.parametrize(
    ("installed", "backend"),
    [
        (None, None),
        ("2.5.1+cu121", "cu121"),
        ("2.5.1+cpu", "cpu"),
        ("2.4.0+rocm6.1", "rocm6.1"),
        ("2.5.1", None),  # PyPI's Linux/macOS wheels name no backend: the installer chooses
        ("2.5.1+local.build", None),
        ("not a version", None),
    ],
)
def test_the_backend_of_an_installed_torch_is_read_from_its_local_version(
    installed, backend
) -> None:
    assert torch_backend(installed) == backend


def test_the_version_part_of_a_requirement() -> None:
    assert version_specifier("torch>=2.1") == ">=2.1"
    assert version_specifier("torch") == ""


# The optional CPU runtimes: planned per backend, never with the engine's requirements ------------

RUNTIMES_PRESENT = {"openvino": "2026.4.0", "onnxruntime": "1.32.1", "onnx": "1.23.2"}


def test_each_runtime_backend_needs_its_runtime_and_onnx_auto_and_torch_nothing() -> None:
    assert runtime_requirements(OPENVINO) == ["openvino~=2026.4", "onnx~=1.23"]
    assert runtime_requirements(ONNXRUNTIME) == ["onnxruntime~=1.32", "onnx~=1.23"]
    assert runtime_requirements(AUTO) == []
    assert runtime_requirements(TORCH) == []
    every_line = {parse_requirement(t).name for b in BACKENDS for t in runtime_requirements(b)}
    assert every_line == {parse_requirement(t).name for t in load_requirements(CPU_RUNTIMES_FILE)}


def test_a_runtime_missing_from_the_requirements_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "requirements-cpu.txt"
    path.write_text("onnx~=1.23\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"requirements-cpu.txt has no line for openvino"):
        runtime_requirements(OPENVINO, path)


@pytest.mark.parametrize(
    ("backend", "versions", "planned"),
    [
        (OPENVINO, RUNTIMES_PRESENT, []),
        (OPENVINO, {}, ["openvino~=2026.4", "onnx~=1.23"]),
        (OPENVINO, {**RUNTIMES_PRESENT, "openvino": "2025.1.0"}, ["openvino~=2026.4"]),
        (ONNXRUNTIME, {**RUNTIMES_PRESENT, "onnxruntime": None}, ["onnxruntime~=1.32"]),
        (ONNXRUNTIME, {**RUNTIMES_PRESENT, "onnx": "1.16.0"}, ["onnx~=1.23"]),
        (AUTO, {}, []),  # auto predicts with torch without them: nothing is ever forced
        (TORCH, {}, []),
    ],
)
def test_a_runtime_plan_holds_only_the_unmet_runtime_requirements(
    backend: str, versions: dict, planned: list[str]
) -> None:
    runtime = runtime_plan(backend, installed_version=lookup(versions))
    assert runtime.pip_requirements == planned
    assert not runtime.torch_needed
    assert runtime.skipped == []
    assert runtime.nothing_to_install == (planned == [])


def test_the_engine_requirements_never_include_the_cpu_runtimes() -> None:
    runtimes = {parse_requirement(t).name for t in load_requirements(CPU_RUNTIMES_FILE)}
    assert not runtimes & {parse_requirement(t).name for t in load_requirements()}


# Installing inside Slicer, with stand-ins as strict as the real modules --------------------------


@dataclass
class FakeRelease:
    """What the stand-in Slicer and PyTorch extension were asked to do."""

    api: SlicerApi
    answer: bool = True
    questions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pip: list = field(default_factory=list)
    torch_installs: list[dict] = field(default_factory=list)


@pytest.fixture(params=[api.tag for api in supported()])
def release(request, monkeypatch: pytest.MonkeyPatch) -> FakeRelease:
    """Slicer 5.10 or 5.12 as far as installing goes, and the PyTorch extension."""
    fake = FakeRelease(slicer_api(request.param))

    def confirm(text, windowTitle=None, parent=None, **kwargs):
        fake.questions.append(text)
        return fake.answer

    util = slicer_module(
        fake.api,
        "slicer.util",
        {
            "confirmOkCancelDisplay": confirm,
            "warningDisplay": lambda text, *args, **kwargs: fake.warnings.append(text),
            "pip_install": lambda requirements, **kwargs: fake.pip.append(requirements),
        },
    )
    modules = {"slicer.util": util}
    if fake.api.module("slicer.packaging") is not None:

        def pip_ensure(requirements, constraints=None, **options):
            pins = Path(constraints).read_text(encoding="utf-8").split()
            fake.pip.append((list(requirements), pins, options))

        modules["slicer.packaging"] = slicer_module(
            fake.api, "slicer.packaging", {"pip_ensure": pip_ensure}
        )
    else:
        monkeypatch.delitem(sys.modules, "slicer.packaging", raising=False)
    for name, module in {"slicer": slicer_package(fake.api, modules), **modules}.items():
        monkeypatch.setitem(sys.modules, name, module)

    def install_torch(self, askConfirmation=False, **options):
        fake.torch_installs.append({"askConfirmation": askConfirmation, **options})
        return types.SimpleNamespace(__version__="2.5.1+cu121")

    extension = pytorch_utils_module({"installTorch": install_torch})
    monkeypatch.setitem(sys.modules, "PyTorchUtils", extension)
    # Nothing installed by the test is imported, so no restart is asked for.
    monkeypatch.setattr(dependency_install, "distribution_import_names", dict)
    return fake


def _installed(monkeypatch: pytest.MonkeyPatch, versions: dict[str, str | None]) -> None:
    monkeypatch.setattr(dependency_install, "installed_version", lookup(versions))


def test_torch_is_installed_by_the_pytorch_extension(release, monkeypatch) -> None:
    _installed(monkeypatch, {**ALL_PRESENT, "torch": None})
    result = install(plan({**ALL_PRESENT, "torch": None}, extension=True), requester="AutoSegTrain")
    assert not result.cancelled
    assert not result.restart_needed
    assert release.torch_installs == [
        {
            "askConfirmation": False,  # AutoSeg asked once, saying how to choose another build
            "forceComputationBackend": None,  # the extension picks the build for the driver
            "torchVersionRequirement": ">=2.1",
        }
    ]
    (question,) = release.questions
    assert question.startswith("AutoSegTrain needs PyTorch (torch>=2.1)")
    assert "PyTorch Utils module" in question
    assert release.pip == []


def test_an_upgrade_keeps_the_build_the_user_has(release, monkeypatch) -> None:
    versions = {**ALL_PRESENT, "torch": "1.13.1+cpu"}
    _installed(monkeypatch, versions)
    install(plan(versions, extension=True))
    assert release.torch_installs[0]["forceComputationBackend"] == "cpu"
    assert "the same build as now (cpu)" in release.questions[0]


def test_declining_installs_nothing(release, monkeypatch) -> None:
    release.answer = False
    _installed(monkeypatch, {**ALL_PRESENT, "torch": None})
    result = install(plan({**ALL_PRESENT, "torch": None}, extension=True))
    assert result.cancelled
    assert release.torch_installs == []
    assert release.pip == []


def test_without_the_extension_torch_and_packages_come_from_pip(release, monkeypatch) -> None:
    versions = {**ALL_PRESENT, "torch": None, "scipy": None}
    _installed(monkeypatch, versions)
    result = install(plan(versions), requester="AutoSegPredict")
    assert not result.cancelled
    assert release.torch_installs == []
    pins = ["numpy==2.1.3", "SimpleITK==2.4.0"]
    if release.api.module("slicer.packaging") is None:  # Slicer 5.10: pins as requirements
        assert release.pip == [" ".join(["scipy>=1.10", "torch>=2.1", *pins])]
        assert "- scipy>=1.10\n- torch>=2.1" in release.questions[0]
    else:  # Slicer 5.12: pip_ensure asks, pins as constraints
        options = {"requester": "AutoSegPredict", "prompt_install": True, "prompt_restart": False}
        assert release.pip == [(["scipy>=1.10", "torch>=2.1"], pins, options)]
        assert release.questions == []


def test_a_missing_runtime_is_offered_with_its_own_question(release, monkeypatch) -> None:
    _installed(monkeypatch, {**ALL_PRESENT, "onnx": "1.23.2"})
    assert ensure_backend_runtime(OPENVINO, "AutoSegPredict")
    (question,) = release.questions  # once, in both releases: ours says declining is fine
    assert question.startswith("AutoSegPredict: backend openvino needs")
    assert "- openvino~=2026.4\n" in question
    assert "- onnx" not in question  # already there
    assert "without them, backend auto predicts with torch" in question
    pins = ["numpy==2.1.3", "SimpleITK==2.4.0"]
    if release.api.module("slicer.packaging") is None:  # Slicer 5.10
        assert release.pip == [" ".join(["openvino~=2026.4", *pins])]
    else:  # Slicer 5.12: already asked, so pip_ensure does not ask again
        options = {"requester": "AutoSegPredict", "prompt_install": False, "prompt_restart": False}
        assert release.pip == [(["openvino~=2026.4"], pins, options)]
    assert release.torch_installs == []
    assert release.warnings == []


def test_declining_a_runtime_installs_nothing_and_says_auto_or_torch_still_work(
    release, monkeypatch
) -> None:
    release.answer = False
    _installed(monkeypatch, ALL_PRESENT)
    assert not ensure_backend_runtime(ONNXRUNTIME, "AutoSegPredict")
    assert release.pip == []
    (warning,) = release.warnings
    assert warning.startswith("Not started: backend onnxruntime needs onnxruntime~=1.32, onnx")
    assert "Choose backend auto or torch" in warning
    release.questions.clear()
    assert ensure_backend_runtime(AUTO, "AutoSegPredict")  # the refusal changed nothing
    assert ensure_backend_runtime(TORCH, "AutoSegPredict")
    assert release.questions == []
    assert release.pip == []


@pytest.mark.parametrize("backend", [OPENVINO, ONNXRUNTIME])
def test_runtimes_are_not_checked_for_a_user_chosen_python_or_when_present(
    release, monkeypatch, backend: str
) -> None:
    _installed(monkeypatch, {})
    assert ensure_backend_runtime(backend, python=Path("/opt/python/bin/python3"))
    _installed(monkeypatch, {**ALL_PRESENT, **RUNTIMES_PRESENT})
    assert ensure_backend_runtime(backend)
    assert release.questions == []
    assert release.pip == []


def test_the_stand_ins_reject_what_the_real_modules_lack(release) -> None:
    """The stand-ins fail where Slicer and the PyTorch extension would: no hidden mismatch."""
    import slicer  # noqa: TID251 - the stand-in of the fixture
    from PyTorchUtils import PyTorchUtilsLogic

    logic = PyTorchUtilsLogic()
    with pytest.raises(TypeError, match="would reject"):
        logic.installTorch(backend="cpu")
    with pytest.raises(AttributeError):
        logic.installTorchWithBackend()
    with pytest.raises(NotImplementedError):
        PyTorchUtilsLogic.torchInstalled()
    with pytest.raises(TypeError, match="would reject"):
        slicer.util.pip_install()  # "requirements" is required in every release
    if release.api.tag == "v5.10.0":
        with pytest.raises(AttributeError, match=r"has no 'executePythonModule' in Slicer v5\.10"):
            slicer.util.executePythonModule("light_the_torch", ["install", "torch"])
