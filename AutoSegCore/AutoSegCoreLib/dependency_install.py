"""Carry out a ``dependencies.DependencyPlan`` inside the Slicer application, with consent.

Slicer only (it asks the user, shows pip's progress and may ask for a restart), so it is kept apart
from the Qt-free planning in ``dependencies``. It runs on Slicer 5.10 and newer, and uses only
what both 5.10 and 5.12 offer (Testing/slicer_api checks every name against their sources).

torch: with the PyTorch extension installed, its own logic installs it
(``PyTorchUtils.PyTorchUtilsLogic().installTorch``). The extension maintains the installer that
picks the CUDA build matching the NVIDIA driver (the released light-the-torch knows CUDA only up
to 12.6, so newer GPUs would get a torch without kernels for them); AutoSeg does not install an
installer of its own. A user who wants another build (CPU only, a given CUDA version) installs it
in the extension's "PyTorch Utils" module first; AutoSeg then finds torch and leaves it alone, and
an upgrade keeps that build's backend. Whether torch is there is read from its installed metadata,
not by importing it (which ``PyTorchUtilsLogic.torchInstalled`` does): an imported torch locks its
libraries, and a later upgrade could not replace them. Without the extension torch comes from pip.

Other packages: ``slicer.packaging.pip_ensure`` (Slicer 5.12+, its own dialog and constraints),
else ``slicer.util.pip_install`` after our own confirmation (Slicer 5.10).

The CPU runtimes (OpenVINO, ONNX Runtime) are optional: ``ensure_backend_runtime`` offers them only
when the user picks that backend, with our own question in both releases because it must say what
declining means (nothing changes; ``auto`` and ``torch`` predict without them).
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from AutoSegCoreLib.dependencies import (
    DependencyPlan,
    current_plan,
    distribution_import_names,
    installed_version,
    protective_pins,
    replaced_loaded_distributions,
    runtime_plan,
    torch_backend,
    version_specifier,
)


@dataclass(frozen=True)
class InstallResult:
    """Outcome of :func:`install`: whether Slicer must restart, and a message for the user."""

    restart_needed: bool
    message: str
    cancelled: bool = False


def ensure_engine_dependencies(requester: str = "AutoSeg", python: Path | None = None) -> bool:
    """True when the engine can run; otherwise install (with consent) or explain why not.

    ``python``: a user-chosen engine Python; its packages are the user's business, so nothing is
    checked or installed for it. A restart prompt follows an install that replaced a package
    Slicer had already loaded.
    """
    import slicer  # noqa: PLC0415 (Slicer only)

    if python is not None:
        return True
    plan = current_plan()
    if plan.nothing_to_install:
        return True
    result = install(plan, requester=requester)
    if result.cancelled:
        slicer.util.warningDisplay(f"{requester} cannot run without: {plan.summary()}")
        return False
    if result.restart_needed:
        if slicer.util.confirmOkCancelDisplay(f"{result.message}\n\nRestart now?"):
            slicer.util.restart()
        return False
    return True


def ensure_backend_runtime(
    backend: str, requester: str = "AutoSeg", python: Path | None = None
) -> bool:
    """True when the engine can predict with ``backend``; else offer its runtime, with consent.

    Only an explicit ``openvino`` or ``onnxruntime`` may need anything: ``auto`` falls back to
    torch by itself. A user-chosen engine Python is the user's business (as for the engine's
    dependencies). Declining installs nothing and returns False: the prediction is not started
    (the engine would refuse the backend), and ``auto`` or ``torch`` keep working.
    """
    import slicer  # noqa: PLC0415 (Slicer only)

    if python is not None:
        return True
    plan = runtime_plan(backend, installed_version=installed_version)
    if plan.nothing_to_install:
        return True
    result = install(plan, requester=requester, question=runtime_question(backend, plan, requester))
    if result.cancelled:
        slicer.util.warningDisplay(
            f"Not started: backend {backend} needs {', '.join(plan.pip_requirements)}. "
            "Choose backend auto or torch to predict without it."
        )
        return False
    return True  # the runtime only loads in the engine's process: no restart


def runtime_question(backend: str, plan: DependencyPlan, requester: str) -> str:
    """The confirmation text before installing an optional CPU runtime."""
    listing = "\n".join(f"- {requirement}" for requirement in plan.pip_requirements)
    return (
        f"{requester}: backend {backend} needs these Python packages in Slicer's Python:\n"
        f"{listing}\n\nThey are optional: without them, backend auto predicts with torch. "
        "Install them now? This needs internet access and may take a few minutes."
    )


def install(
    plan: DependencyPlan, *, requester: str = "AutoSeg", question: str | None = None
) -> InstallResult:
    """Carry out ``plan`` in Slicer (asks the user first: ``question``, when given, replaces
    the releases' own question about the pip packages).

    Raises ``subprocess.CalledProcessError`` when pip or the torch installer fails (Slicer shows
    the log).
    """
    if plan.nothing_to_install:
        return InstallResult(False, plan.summary())
    names = plan.distribution_names()
    before = {name: installed_version(name) for name in names}
    loaded_before = frozenset(sys.modules)  # the torch installer imports what it installed
    if plan.torch_via_extension and not _install_torch_with_extension(plan, requester):
        return InstallResult(False, "PyTorch was not installed (cancelled).", cancelled=True)
    pip_torch = (
        [plan.torch_requirement] if plan.torch_needed and not plan.torch_via_extension else []
    )
    to_pip = [*plan.pip_requirements, *pip_torch]
    if to_pip and not _pip_install(to_pip, requester, question):
        return InstallResult(False, "Package installation was cancelled.", cancelled=True)
    importlib.invalidate_caches()
    after = {name: installed_version(name) for name in names}
    replaced = replaced_loaded_distributions(
        before, after, import_names=distribution_import_names(), loaded=loaded_before
    )
    if replaced:
        return InstallResult(True, f"Restart Slicer to use the updated {', '.join(replaced)}.")
    return InstallResult(False, "The Python packages AutoSeg needs are installed.")


def torch_question(plan: DependencyPlan, requester: str, backend: str | None) -> str:
    """The confirmation text before the PyTorch extension installs torch."""
    build = f"the same build as now ({backend})" if backend else "the build for your GPU driver"
    return (
        f"{requester} needs PyTorch ({plan.torch_requirement}). The PyTorch extension will install "
        f"{build}. This downloads up to a few GB and may take several minutes.\n\n"
        "To choose another build (CPU only, a given CUDA version), press Cancel and install "
        "PyTorch in the PyTorch Utils module first.\n\nInstall now?"
    )


def _install_torch_with_extension(plan: DependencyPlan, requester: str) -> bool:
    """torch through the PyTorch extension's logic; False if the user declined."""
    import PyTorchUtils  # noqa: PLC0415 (the PyTorch extension, present when planned)
    import slicer  # noqa: PLC0415 (Slicer only)

    backend = torch_backend(installed_version("torch"))
    if not slicer.util.confirmOkCancelDisplay(torch_question(plan, requester, backend)):
        return False
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False,  # asked above, with what AutoSeg needs and how to choose a build
        forceComputationBackend=backend,
        torchVersionRequirement=version_specifier(plan.torch_requirement),
    )
    return torch is not None


def _pip_install(requirements: list[str], requester: str, question: str | None = None) -> bool:
    """pip-install ``requirements`` with Slicer's own packages pinned; False if declined.

    ``question``: asked here instead of the release's own (pip_ensure's dialog on 5.12).
    """
    import slicer  # noqa: PLC0415 (Slicer only)

    pins = protective_pins(installed_version)
    if question is not None and not slicer.util.confirmOkCancelDisplay(question):
        return False
    try:
        import slicer.packaging as slicer_packaging  # noqa: PLC0415 (Slicer 5.12+)
    except ImportError:
        listing = "\n".join(f"- {r}" for r in requirements)
        default_question = (
            f"{requester} needs these Python packages in Slicer's Python:\n{listing}\n\n"
            "Install them now? This needs internet access and may take a few minutes."
        )
        if question is None and not slicer.util.confirmOkCancelDisplay(default_question):
            return False
        # Pins as requirements: already satisfied, so pip keeps those exact versions.
        slicer.util.pip_install(" ".join([*requirements, *pins]))
        return True
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text("".join(f"{pin}\n" for pin in pins), encoding="utf-8")
        try:
            slicer_packaging.pip_ensure(
                requirements,
                constraints=constraints,
                requester=requester,
                prompt_install=question is None,  # else asked above
                prompt_restart=False,
            )
        except RuntimeError as exc:
            if "declined" in str(exc):
                return False
            raise
    return True
