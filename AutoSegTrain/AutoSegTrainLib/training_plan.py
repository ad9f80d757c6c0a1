"""Which engine steps a training request still needs: plan, train configurations x folds, select.

Why decided from the data folders: every step is one ``python -m autoseg ...`` child process, and
what is already finished is read from the preprocessed and results folders, so pressing "Train"
again after a crash or a Slicer restart continues where it stopped: planning is skipped when the
data is preprocessed, done folds are skipped, interrupted ones resume with ``--c``.
``training_runs.TrainingRun`` runs the steps; this module only builds them (no processes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.dataset import DATASET_JSON, load_dataset_json, training_cases
from autoseg.errors import AutoSegError
from autoseg.paths import dataset_id
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.plans import Plans
from autoseg.preprocessing.storage import case_ids, stored_provenance
from autoseg.provenance import case_sources
from autoseg.training.job import parse_fold
from AutoSegTrainLib.fold_status import FoldStatus, fold_status

DEVICES = ("auto", "cpu", "cuda", "mps")
CASCADE = "3d_cascade_fullres"
LOWRES = "3d_lowres"
PLAN_KEY = "plan"
FIND_BEST_KEY = "find_best"
VERIFY_KEY = "verify"
GT_FOLDER = "gt_segmentations"

FoldKey = tuple[str, int | str]


@dataclass(frozen=True)
class TrainingRequest:
    """What the user asked the Train module for.

    ``gpus``: empty = steps one after another on ``device``; one id = one after another on that
    GPU; two or more = one fold per GPU at a time, in parallel. ``epochs`` and
    ``iterations_per_epoch``: ``None`` keeps the method's defaults. ``npz`` saves validation
    probabilities (find_best_configuration needs them to compare ensembles).
    ``extra_train_args`` are passed to every ``train`` command unchanged (expert settings).
    ``gpu_memory_target``: GB the planner sizes patches for (``--gpu-memory-target``; None: the
    planner's default). Set, it makes planning run again (quick; preprocessed cases whose
    spacing and normalization stay the same are kept), so a new target always takes effect.
    """

    dataset: str
    configurations: tuple[str, ...]
    folds: tuple[int | str, ...] = (0, 1, 2, 3, 4)
    device: str = "auto"
    gpus: tuple[int, ...] = ()
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    npz: bool = True
    run_planning: bool = True
    run_find_best: bool = True
    extra_train_args: tuple[str, ...] = ()
    gpu_memory_target: float | None = None

    def __post_init__(self) -> None:
        dataset_id(self.dataset)  # raises for anything but DatasetXXX_Name
        if not self.configurations:
            raise AutoSegError("No configuration chosen: select at least one, e.g. 3d_fullres.")
        if not self.folds:
            raise AutoSegError("No fold chosen: select folds 0-4 or 'all'.")
        object.__setattr__(self, "folds", tuple(dict.fromkeys(parse_fold(f) for f in self.folds)))
        if self.device not in DEVICES:
            raise AutoSegError(f"device {self.device!r} is unknown; use one of {DEVICES}.")
        if self.gpus and self.device not in ("auto", "cuda"):
            raise AutoSegError(f"GPUs {self.gpus} were chosen with device {self.device}; use cuda.")
        if len(set(self.gpus)) != len(self.gpus) or any(g < 0 for g in self.gpus):
            raise AutoSegError(f"GPU ids {self.gpus} must be different non-negative numbers.")
        for name in ("epochs", "iterations_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise AutoSegError(f"{name} is {value}; it must be at least 1 (or unset).")
        if self.gpu_memory_target is not None and self.gpu_memory_target <= 0:
            raise AutoSegError(
                f"GPU memory target {self.gpu_memory_target} GB: give a positive size, or leave "
                "it unset for the planner's default."
            )

    @property
    def train_device(self) -> str:
        """The ``-device`` of train commands: ``cuda`` whenever GPUs were chosen."""
        return "cuda" if self.gpus else self.device


@dataclass(frozen=True)
class EngineStep:
    """One engine command of a training plan.

    ``key`` is unique within a plan and is what ``depends_on`` names; ``label`` is for people.
    Train steps have ``fold`` = (configuration, fold) and ``fold_dir`` (whose events.jsonl the
    run follows); they are the steps that take a GPU when the run has several.
    """

    key: str
    label: str
    args: tuple[str, ...]
    fold: FoldKey | None = None
    depends_on: tuple[str, ...] = ()
    fold_dir: Path | None = None


@dataclass(frozen=True)
class _Roots:
    results: Path
    preprocessed: Path
    raw: Path | None

    def args(self) -> tuple[str, ...]:
        return folder_args(self.results, self.preprocessed, self.raw)


def folder_args(results: Path, preprocessed: Path, raw: Path | None) -> tuple[str, ...]:
    """The engine's data-folder flags (no --raw when the step reads no raw data)."""
    raw_args = ("--raw", os.fspath(raw)) if raw is not None else ()
    folders = ("--preprocessed", os.fspath(preprocessed))
    return (*raw_args, *folders, "--results", os.fspath(results))


def load_plans(preprocessed_root: Path, dataset: str) -> Plans | None:
    """The dataset's default plans, or None before planning."""
    file = Path(preprocessed_root) / dataset / f"{DEFAULT_PLANS_NAME}.json"
    return Plans.load(file) if file.is_file() else None


def _gt_case_ids(folder: Path) -> set[str]:
    """Ids of the labels preprocessing copied to gt_segmentations (empty before it ran)."""
    try:
        ending = json.loads((folder / DATASET_JSON).read_text(encoding="utf-8"))["file_ending"]
        names = [p.name for p in (folder / GT_FOLDER).iterdir() if p.is_file()]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {n[: -len(ending)] for n in names if n.endswith(ending) and len(n) > len(ending)}


def preprocessing_done(
    preprocessed_root: Path, dataset: str, configurations: Sequence[str]
) -> bool:
    """True when the plans exist and every training case is preprocessed for every configuration.

    The training cases are those whose labels preprocessing copied to ``gt_segmentations``
    (done before any case is preprocessed); a configuration the plans lack is not done.
    """
    plans = load_plans(preprocessed_root, dataset)
    if plans is None:
        return False
    folder = Path(preprocessed_root) / dataset
    expected = _gt_case_ids(folder)
    for name in configurations:
        if name not in plans.configurations or not expected:
            return False
        if not expected <= set(case_ids(folder / plans.configuration(name).data_identifier)):
            return False
    return True


def raw_cases_changed(
    raw_dataset: Path, preprocessed_root: Path, dataset: str, configurations: Sequence[str]
) -> bool:
    """True when a raw training case was added, removed or edited since it was preprocessed.

    Why: a case added from Slicer, or saved back after a correction, must reach training, while
    ``preprocessing_done`` only sees that the earlier cases are stored. The check costs one stat
    per raw file and one small JSON read per stored case, so it runs on every Train click; an
    unreadable dataset counts as changed and ``plan_and_preprocess`` then names the problem.
    """
    try:
        cases = training_cases(raw_dataset, load_dataset_json(raw_dataset / DATASET_JSON))
        expected = {case.case_id: case_sources(case) for case in cases}
    except AutoSegError:
        return True
    plans = load_plans(preprocessed_root, dataset)
    if plans is None:
        return True
    for name in configurations:
        folder = Path(preprocessed_root) / dataset / plans.configuration(name).data_identifier
        if set(case_ids(folder)) != set(expected):
            return True
        for case_id, sources in expected.items():
            stored = stored_provenance(folder, case_id)
            if stored is None or stored.get("sources") != sources:
                return True
    return False


def _check_configurations(plans: Plans | None, request: TrainingRequest) -> None:
    if plans is None:
        return
    missing = [c for c in request.configurations if c not in plans.configurations]
    if missing:
        raise AutoSegError(
            f"The plans of {request.dataset} have no {', '.join(missing)} (the planner adds "
            f"3d_lowres and the cascade only for large images). Choose among "
            f"{', '.join(plans.configurations)}."
        )


def _ordered(request: TrainingRequest, plans: Plans | None) -> list[tuple[str, str | None]]:
    """Configurations with their previous stage; a stage comes after its previous one."""
    result = []
    for name in dict.fromkeys(request.configurations):
        previous = LOWRES if name == CASCADE else None
        if plans is not None and name in plans.configurations:
            previous = plans.configuration(name).previous_stage
        result.append((name, previous))
    return sorted(result, key=lambda item: item[1] in request.configurations)


def _preprocessing_current(request: TrainingRequest, roots: _Roots) -> bool:
    if not preprocessing_done(roots.preprocessed, request.dataset, request.configurations):
        return False
    raw_dataset = roots.raw / request.dataset if roots.raw is not None else None
    if raw_dataset is None or not raw_dataset.is_dir():
        return True
    return not raw_cases_changed(
        raw_dataset, roots.preprocessed, request.dataset, request.configurations
    )


def _plan_step(request: TrainingRequest, roots: _Roots) -> EngineStep | None:
    if request.gpu_memory_target is None and _preprocessing_current(request, roots):
        return None
    if not request.run_planning:
        raise AutoSegError(
            f"{roots.preprocessed / request.dataset}: not planned and preprocessed for "
            f"{', '.join(request.configurations)}. Fix: enable planning and preprocessing."
        )
    args = ("plan_and_preprocess", "-d", request.dataset, "-c", *request.configurations)
    if request.gpu_memory_target is not None:
        args += ("--gpu-memory-target", f"{request.gpu_memory_target:g}")
    return EngineStep(PLAN_KEY, "Plan and preprocess", (*args, "--progress", "json", *roots.args()))


def _train_args(request: TrainingRequest, key: FoldKey, status: FoldStatus) -> tuple[str, ...]:
    args = ["train", request.dataset, key[0], str(key[1]), "-device", request.train_device]
    if request.epochs is not None:
        args += ["--epochs", str(request.epochs)]
    if request.iterations_per_epoch is not None:
        args += ["--iterations-per-epoch", str(request.iterations_per_epoch)]
    if request.npz:
        args.append("--npz")
    if status.state == "interrupted":
        args.append("--c")
    elif status.state == "done":
        args.append("--val")
    return (*args, *request.extra_train_args)


def _train_step(
    request: TrainingRequest, key: FoldKey, depends_on: tuple[str, ...], roots: _Roots
) -> EngineStep | None:
    """The step that brings a fold to a finished validation; None when it has one already."""
    status = fold_status(roots.results, request.dataset, key[0], key[1])
    if status.state == "done" and status.validated:
        return None
    verb = {"not started": "Train", "interrupted": "Resume", "done": "Validate"}[status.state]
    return EngineStep(
        key=f"train {key[0]} {key[1]}",
        label=f"{verb} {key[0]} fold {key[1]}",
        args=(*_train_args(request, key, status), *roots.args()),
        fold=key,
        depends_on=depends_on,
        fold_dir=status.fold_dir,
    )


def _find_best_step(
    request: TrainingRequest, trains: list[EngineStep], roots: _Roots
) -> EngineStep | None:
    folds = [str(f) for f in request.folds if isinstance(f, int)]  # 'all' has no validation
    if not request.run_find_best or not folds:
        return None
    args = ("find_best_configuration", request.dataset, "-c", *request.configurations, "-f")
    return EngineStep(
        FIND_BEST_KEY,
        "Find the best configuration",
        (*args, *folds, *roots.args()),
        depends_on=tuple(step.key for step in trains),
    )


def plan_steps(
    request: TrainingRequest,
    results_root: Path,
    preprocessed_root: Path,
    *,
    raw_root: Path | None = None,
) -> list[EngineStep]:
    """The steps still needed for ``request``, decided from the data folders.

    Planning runs unless every requested configuration is preprocessed; each fold gets a train
    step unless it is done and validated (interrupted: ``--c``; done without validation:
    ``--val``); cascade folds wait for every fold of their previous stage in this plan (its
    validation writes their inputs); find_best_configuration waits for all. Every step names
    the data folders with flags (``raw_root`` only matters to planning), so the children use
    the folders that were checked here whatever their environment says.
    """
    roots = _Roots(Path(results_root), Path(preprocessed_root), raw_root and Path(raw_root))
    plans = load_plans(roots.preprocessed, request.dataset)
    _check_configurations(plans, request)
    plan = _plan_step(request, roots)
    steps = [plan] if plan is not None else []
    trains: list[EngineStep] = []
    for configuration, previous in _ordered(request, plans):
        before = [s.key for s in trains if s.fold is not None and s.fold[0] == previous]
        depends = ((plan.key,) if plan else ()) + tuple(before)
        for fold in request.folds:
            step = _train_step(request, (configuration, fold), depends, roots)
            trains += [step] if step is not None else []
    steps += trains
    best = _find_best_step(request, trains, roots)
    return steps + ([best] if best is not None else [])


def step_keys(steps: Sequence[EngineStep]) -> list[str]:
    """The keys of ``steps``; ValueError (a programming error, not the user's) when a key
    repeats or a dependency names no earlier step."""
    seen: list[str] = []
    for step in steps:
        if step.key in seen:
            raise ValueError(f"two steps are called {step.key!r}; keys must be unique")
        unknown = [d for d in step.depends_on if d not in seen]
        if unknown:
            raise ValueError(f"step {step.key!r} depends on unknown or later steps {unknown}")
        seen.append(step.key)
    return seen


def verify_step(dataset: str, raw_root: Path) -> EngineStep:
    """``autoseg verify``: every problem of the raw dataset, one line each (exit code 1 if any).

    Run through ``TrainingRun`` like the other steps, so its problem lines end up in the run's
    failure message and the module needs no second way of running the engine.
    """
    args = ("verify", "-d", dataset, "--raw", os.fspath(raw_root), "--progress", "json")
    return EngineStep(key=VERIFY_KEY, label="Verify the dataset", args=args)


def request_from_choices(dataset: str, choices: Any, device: str) -> TrainingRequest:
    """The request behind the Train module's controls.

    ``choices`` has the module parameter node's fields (use2d, use3dFullres, use3dLowres,
    useCascade, folds and gpus as typed text, epochs, iterationsPerEpoch, runFindBest,
    gpuMemoryTarget in GB with 0 for the planner's default). The
    cascade brings its 3d_lowres stage along, as it cannot train without it. Raises AutoSegError
    for text that names no fold or GPU.
    """
    flags = (
        ("2d", choices.use2d),
        ("3d_fullres", choices.use3dFullres),
        (LOWRES, choices.use3dLowres or choices.useCascade),
        (CASCADE, choices.useCascade),
    )
    gpus_text = choices.gpus.replace(",", " ").split()
    if not all(g.isdigit() for g in gpus_text):
        raise AutoSegError(f"GPUs {choices.gpus!r}: give GPU numbers, e.g. 0 1, or leave empty.")
    return TrainingRequest(
        dataset=dataset,
        configurations=tuple(name for name, chosen in flags if chosen),
        folds=tuple(choices.folds.replace(",", " ").split()),
        device=device,
        gpus=tuple(int(g) for g in gpus_text),
        epochs=choices.epochs,
        iterations_per_epoch=choices.iterationsPerEpoch,
        run_find_best=choices.runFindBest,
        gpu_memory_target=choices.gpuMemoryTarget or None,
    )
