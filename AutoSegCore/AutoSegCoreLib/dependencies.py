"""Check and install the Python packages the AutoSeg engine needs inside 3D Slicer's Python.

Why a plan before any install: the user must see and confirm what changes in Slicer's Python (a
Slicer extensions catalog rule), and two kinds of package need special care:

- numpy and SimpleITK are Slicer's own builds. Replacing them with PyPI wheels breaks Slicer (and
  it broke nnU-Net inference in SlicerNNUnet), so they are never planned, even when missing or
  outdated; the plan reports them in ``skipped`` and a pip constraints file pins them during the
  install so no other package can drag them along.
- torch goes through the PyTorch extension when it is installed (``PyTorchUtilsLogic.installTorch``):
  its maintained installer picks the CUDA build that matches the NVIDIA driver, whereas PyPI's
  Windows wheels are CPU-only, and an upgrade keeps the build (CPU, CUDA or ROCm) already chosen.

Checks read installed versions with ``importlib.metadata`` and never import a package, so they
neither load torch into Slicer's process nor lock files a later upgrade must replace.
Everything here is Qt-free and tested with plain pytest; ``dependency_install`` carries a plan out
inside the Slicer application.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from autoseg.inference.backends.base import RUNTIME_MODULES

REQUIREMENTS_FILE = Path(__file__).resolve().parent / "Resources" / "requirements.txt"
# The optional CPU runtimes (pyproject's cpu extra): never part of the engine's requirements.
CPU_RUNTIMES_FILE = REQUIREMENTS_FILE.with_name("requirements-cpu.txt")
# Same as pyproject.toml's torch dependency (a packaging test keeps the two equal).
TORCH_REQUIREMENT = "torch>=2.1"
# Distributions Slicer ships and AutoSeg must never replace: display name by canonical name.
SLICER_OWNED = {"numpy": "numpy", "simpleitk": "SimpleITK"}
PYTORCH_EXTENSION_MODULE = "PyTorchUtils"
# Local version labels of torch builds that name a computation backend: 2.5.1+cu121, 2.5.1+cpu.
_BACKEND_LABEL = re.compile(r"^(cpu|cu\d+|rocm\d+(\.\d+)*)$")

VersionLookup = Callable[[str], "str | None"]


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (any spelling), ``None`` when absent."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def parse_requirement(text: str) -> Requirement:
    """A PEP 508 requirement; raises ValueError naming the text when it is not one."""
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(
            f"'{text}' is not a valid requirement ({exc}); write it like 'scipy>=1.10'."
        ) from exc


def load_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """The requirement lines of a requirements file (comments, blanks and pip options skipped).

    Same reading rules as ``slicer.packaging.load_requirements``, so both agree on the file.
    Raises ValueError naming the file and line when a line is not a valid requirement.
    """
    lines = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            parse_requirement(line)
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from exc
        lines.append(line)
    return lines


def applies_here(requirement: Requirement) -> bool:
    """False when the requirement's environment marker excludes this platform/Python."""
    return requirement.marker is None or requirement.marker.evaluate()


def unmet_reason(requirement: Requirement, installed: str | None) -> str | None:
    """``None`` when ``installed`` satisfies ``requirement``, else why it does not.

    Pre-releases and local builds (``2.5.0+cu121``) count as installed versions: whatever is
    installed was chosen by someone, and pip's "no pre-releases" rule is about choosing.
    Extras are not checked, only the base distribution.
    """
    if installed is None:
        return "not installed"
    try:
        version = Version(installed)
    except InvalidVersion:
        return f"installed version '{installed}' is not a valid version number"
    if requirement.specifier.contains(version, prereleases=True):
        return None
    return f"installed {installed} does not satisfy {requirement.specifier}"


def missing_requirements(
    requirements: Sequence[str], *, installed_version: VersionLookup = installed_version
) -> list[str]:
    """The requirements (as given) that apply here and are not satisfied."""
    missing = []
    for text in requirements:
        requirement = parse_requirement(text)
        if applies_here(requirement) and unmet_reason(
            requirement, installed_version(requirement.name)
        ):
            missing.append(text)
    return missing


@dataclass(frozen=True)
class DependencyPlan:
    """What ``dependency_install.install`` would change in Slicer's Python, and what it deliberately leaves.

    ``pip_requirements`` never holds torch (``torch_needed``/``torch_via_extension`` decide how
    it is installed) nor a Slicer-owned package; ``skipped`` says, per unmet requirement that
    will not be installed, why.
    """

    torch_needed: bool
    torch_via_extension: bool
    pip_requirements: list[str]
    skipped: list[str]
    torch_requirement: str = TORCH_REQUIREMENT

    @property
    def nothing_to_install(self) -> bool:
        """True when every requirement AutoSeg may install is already satisfied."""
        return not self.torch_needed and not self.pip_requirements

    def distribution_names(self) -> list[str]:
        """Canonical names of every distribution the plan installs (torch included)."""
        texts = [*self.pip_requirements, *([self.torch_requirement] if self.torch_needed else [])]
        return [canonicalize_name(Requirement(text).name) for text in texts]

    def summary(self) -> str:
        """Text for a confirmation dialog or the module's status area."""
        lines = []
        if self.torch_needed:
            how = "the PyTorch extension" if self.torch_via_extension else "pip (PyPI)"
            lines.append(f"PyTorch ({self.torch_requirement}) will be installed with {how}.")
            if not self.torch_via_extension:
                lines.append(
                    "  PyPI's Windows builds are CPU-only: install the PyTorch extension from "
                    "the Extensions Manager to get a GPU build."
                )
        if self.pip_requirements:
            lines.append("Python packages to install: " + ", ".join(self.pip_requirements) + ".")
        lines.extend(f"Not changed: {reason}" for reason in self.skipped)
        return "\n".join(lines) or "Every Python package AutoSeg needs is installed."


def _without_marker(requirement: Requirement) -> str:
    """The requirement text without its (already evaluated) marker, e.g. ``scipy>=1.10``."""
    copy = Requirement(str(requirement))
    copy.marker = None
    return str(copy)


def _torch_requirement(torch_requirement: str, requirements: Sequence[Requirement]) -> str:
    """``torch_requirement`` narrowed by any torch line of ``requirements``."""
    specifier = parse_requirement(torch_requirement).specifier
    for requirement in requirements:
        if canonicalize_name(requirement.name) == "torch":
            specifier &= requirement.specifier
    return f"torch{SpecifierSet(str(specifier))}"


def plan_installation(
    requirements: Sequence[str],
    *,
    torch_requirement: str = TORCH_REQUIREMENT,
    pytorch_extension_available: bool,
    installed_version: VersionLookup = installed_version,
) -> DependencyPlan:
    """Decide what to install: unmet pip requirements, torch (and how), and what to leave alone.

    A torch line in ``requirements`` narrows ``torch_requirement`` instead of going to pip.
    Requirements whose marker excludes this platform are ignored.
    """
    parsed = [r for r in (parse_requirement(t) for t in requirements) if applies_here(r)]
    torch_text = _torch_requirement(torch_requirement, parsed)
    pip_requirements, skipped = [], []
    for requirement in parsed:
        name = canonicalize_name(requirement.name)
        reason = unmet_reason(requirement, installed_version(requirement.name))
        if name == "torch" or reason is None:
            continue
        if name in SLICER_OWNED:
            skipped.append(
                f"{requirement}: {reason}. Slicer provides {SLICER_OWNED[name]} and AutoSeg never "
                "replaces it; use a Slicer release that ships a newer one."
            )
        else:
            pip_requirements.append(_without_marker(requirement))
    torch_needed = unmet_reason(Requirement(torch_text), installed_version("torch")) is not None
    return DependencyPlan(
        torch_needed=torch_needed,
        torch_via_extension=torch_needed and pytorch_extension_available,
        pip_requirements=pip_requirements,
        skipped=skipped,
        torch_requirement=torch_text,
    )


def torch_backend(installed: str | None) -> str | None:
    """The computation backend of an installed torch build (``cu121``, ``cpu``, ``rocm6.2``).

    None when torch is absent or its version names no backend (PyPI's Linux and macOS wheels):
    the installer then chooses. Passing it on keeps an upgrade on the build the user has.
    """
    if installed is None:
        return None
    try:
        local = Version(installed).local
    except InvalidVersion:
        return None
    return local if local and _BACKEND_LABEL.match(local) else None


def version_specifier(requirement: str) -> str:
    """The version part of a requirement: ``>=2.1`` of ``torch>=2.1`` ("" when there is none)."""
    return str(parse_requirement(requirement).specifier)


def pytorch_extension_available(
    find_spec: Callable[[str], object] = importlib.util.find_spec,
) -> bool:
    """True when the PyTorch extension's ``PyTorchUtils`` module can be imported (not imported)."""
    try:
        return find_spec(PYTORCH_EXTENSION_MODULE) is not None
    except (ImportError, ValueError):
        return False


def current_plan(requirements_file: Path = REQUIREMENTS_FILE) -> DependencyPlan:
    """The plan for this Python: the bundled requirements file, the PyTorch extension if present."""
    return plan_installation(
        load_requirements(requirements_file),
        pytorch_extension_available=pytorch_extension_available(),
    )


def runtime_requirements(backend: str, requirements_file: Path = CPU_RUNTIMES_FILE) -> list[str]:
    """The requirement lines of the runtime a backend needs; none for ``auto`` and ``torch``.

    Which modules a backend needs is the engine's definition (``RUNTIME_MODULES``); their versions
    are the file's (pyproject's cpu extra). Raises ValueError naming the file when it lacks one.
    """
    lines = load_requirements(requirements_file)
    by_name = {canonicalize_name(parse_requirement(text).name): text for text in lines}
    needed = [canonicalize_name(module) for module in RUNTIME_MODULES.get(backend, ())]
    absent = [name for name in needed if name not in by_name]
    if absent:
        raise ValueError(
            f"{requirements_file} has no line for {', '.join(absent)}, which backend {backend} "
            "needs; add it with the version of pyproject.toml's cpu extra."
        )
    return [by_name[name] for name in needed]


def runtime_plan(
    backend: str,
    *,
    requirements_file: Path = CPU_RUNTIMES_FILE,
    installed_version: VersionLookup = installed_version,
) -> DependencyPlan:
    """What ``backend`` still needs installed: its runtime's unmet requirements (pip only).

    Optional by design: ``auto`` and ``torch`` need nothing here (``auto`` predicts with torch,
    and says so, when OpenVINO is missing), so this plan is only made for an explicit runtime.
    """
    requirements = runtime_requirements(backend, requirements_file)
    missing = missing_requirements(requirements, installed_version=installed_version)
    return DependencyPlan(
        torch_needed=False, torch_via_extension=False, pip_requirements=missing, skipped=[]
    )


def protective_pins(installed_version: VersionLookup = installed_version) -> list[str]:
    """``name==version`` for every installed Slicer-owned distribution, for pip's constraints."""
    pins = []
    for display in SLICER_OWNED.values():
        version = installed_version(display)
        if version is not None:
            try:
                Version(version)
            except InvalidVersion:
                continue  # pip could not read such a pin either
            pins.append(f"{display}=={version}")
    return pins


def distribution_import_names() -> dict[str, set[str]]:
    """Top-level import names of each installed distribution, keyed by canonical name."""
    names: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            names.setdefault(canonicalize_name(distribution), set()).add(module)
    return names


def replaced_loaded_distributions(
    before: Mapping[str, str | None],
    after: Mapping[str, str | None],
    *,
    import_names: Mapping[str, Collection[str]],
    loaded: Container[str],
) -> list[str]:
    """Distributions whose installed version changed while one of their modules was imported.

    Those keep running the old code until Slicer restarts; a fresh install (``before`` is None)
    needs no restart. Keys are canonical distribution names.
    """
    return sorted(
        name
        for name, old in before.items()
        if old is not None
        and after.get(name) != old
        and any(module in loaded for module in import_names.get(name, ()))
    )
