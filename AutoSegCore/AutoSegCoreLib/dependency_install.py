"""Carry out a ``dependencies.DependencyPlan`` inside the Slicer application, with consent.

Slicer only (it asks the user, shows pip's progress and may ask for a restart), so it is kept apart
from the Qt-free planning in ``dependencies``, which is what the tests cover.

torch: with the PyTorch extension installed, its installer (light-the-torch, which picks the CUDA
build matching the NVIDIA driver) is run as a child process here instead of calling
``PyTorchUtilsLogic.installTorch``, because that one imports torch into Slicer's process when it is
done and AutoSeg keeps torch out of Slicer entirely.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from AutoSegCoreLib.dependencies import (
    DependencyPlan,
    current_plan,
    distribution_import_names,
    installed_version,
    parse_requirement,
    protective_pins,
    replaced_loaded_distributions,
)

LIGHT_THE_TORCH = "light-the-torch>=0.5"


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


def install(plan: DependencyPlan, *, requester: str = "AutoSeg") -> InstallResult:
    """Carry out ``plan`` in Slicer (asks the user first).

    Raises ``subprocess.CalledProcessError`` when pip fails (Slicer shows pip's log).
    """
    if plan.nothing_to_install:
        return InstallResult(False, plan.summary())
    names = plan.distribution_names()
    before = {name: installed_version(name) for name in names}
    if plan.torch_via_extension and not _install_torch_with_extension(plan, requester):
        return InstallResult(False, "PyTorch was not installed (cancelled).", cancelled=True)
    pip_torch = (
        [plan.torch_requirement] if plan.torch_needed and not plan.torch_via_extension else []
    )
    to_pip = [*plan.pip_requirements, *pip_torch]
    if to_pip and not _pip_install(to_pip, requester):
        return InstallResult(False, "Package installation was cancelled.", cancelled=True)
    importlib.invalidate_caches()
    after = {name: installed_version(name) for name in names}
    replaced = replaced_loaded_distributions(
        before, after, import_names=distribution_import_names(), loaded=sys.modules
    )
    if replaced:
        return InstallResult(True, f"Restart Slicer to use the updated {', '.join(replaced)}.")
    return InstallResult(False, "The Python packages AutoSeg needs are installed.")


def _install_torch_with_extension(plan: DependencyPlan, requester: str) -> bool:
    """torch through light-the-torch, the PyTorch extension's installer; False if declined."""
    import slicer  # noqa: PLC0415 (Slicer only)

    requirement = str(parse_requirement(plan.torch_requirement))
    question = (
        f"{requester} needs PyTorch ({requirement}). It will be installed with the PyTorch "
        "extension's installer (light-the-torch), which picks the build for your GPU driver. "
        "This downloads up to a few GB and may take several minutes. Install now?"
    )
    if not slicer.util.confirmOkCancelDisplay(question):
        return False
    if importlib.util.find_spec("light_the_torch") is None:
        slicer.util.pip_install(LIGHT_THE_TORCH)
    slicer.util.executePythonModule("light_the_torch", ["install", requirement])
    return True


def _pip_install(requirements: list[str], requester: str) -> bool:
    """pip-install ``requirements`` with Slicer's own packages pinned; False if declined."""
    import slicer  # noqa: PLC0415 (Slicer only)

    pins = protective_pins()
    try:
        import slicer.packaging as slicer_packaging  # noqa: PLC0415 (Slicer 5.12+)
    except ImportError:
        listing = "\n".join(f"- {r}" for r in requirements)
        question = (
            f"{requester} needs these Python packages in Slicer's Python:\n{listing}\n\n"
            "Install them now? This needs internet access and may take a few minutes."
        )
        if not slicer.util.confirmOkCancelDisplay(question):
            return False
        # Pins as requirements: already satisfied, so pip keeps those exact versions.
        slicer.util.pip_install(" ".join([*requirements, *pins]))
        return True
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text("".join(f"{pin}\n" for pin in pins), encoding="utf-8")
        try:
            slicer_packaging.pip_ensure(
                requirements, constraints=constraints, requester=requester, prompt_restart=False
            )
        except RuntimeError as exc:
            if "declined" in str(exc):
                return False
            raise
    return True
