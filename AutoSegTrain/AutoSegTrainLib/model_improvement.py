"""Improve model: fine-tune the dataset's trained model on the grown dataset, as one job.

Why: the annotation loop (segment, correct, add the case) only pays off when the model learns the
corrected cases in minutes, without the user knowing the engine's steps. One click chains them as
engine steps that ``TrainingRun`` runs with the usual progress table and Cancel:

1. ``plan_and_preprocess -d D -c C --plans-from MODEL``: the dataset's plans become the model's
   (spacing, normalization with its intensity statistics, patch, network), so its weights fit;
   only cases added or edited since are preprocessed.
2. ``train D C F --from-model MODEL`` for each chosen fold: every weight starts from the model,
   with the engine's fine-tuning schedule (10 % of the model's epochs, at least 10, learning rate
   1e-3) unless the user sets the epochs. MODEL is the model folder being retrained, so the
   engine first keeps it as ``versions/<n>`` and starts from that version; at the end it writes
   ``fold_F/validation/comparison.json`` (the previous and the new model on the added cases and
   on the fold's validation cases). An interrupted fold resumes (``--c``) with its saved
   schedule.

Afterwards ``improvement_outcome`` reads what the job left: the versions it kept (the first is
the model as it was before the click) and the comparison of each fold, as a small table.
``switch_predict_to`` makes the Predict module show the improved model: it stores the model
folder as the ``last_model`` preference, which the Predict panel follows when it is entered
(the old model stays in its list as ``versions/<n>``).

The current model is the dataset's model folder for the configuration
(``<results>/<dataset>/AutoSegTrainer__AutoSegPlans__<configuration>``) with at least one
trained fold, judged by the rule predict applies (``model_files.open_model_files``), or with a
kept version (an improvement was stopped; it resumes).
Qt-free and torch-free: plain pytest runs it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.inference.model_files import open_model_files, read_model_plans
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.results_layout import (
    COMPARISON_FILE,
    fold_folder_name,
    model_folder_name,
    version_folder,
    version_numbers,
)
from autoseg.training.job import TRAINER_NAME
from AutoSegCoreLib.preferences import Preferences, SettingsStore
from AutoSegTrainLib.fold_status import VALIDATION_FOLDER, fold_status
from AutoSegTrainLib.training_plan import (
    CASCADE,
    PLAN_KEY,
    EngineStep,
    TrainingRequest,
    folder_args,
)

MODELS = ("previous", "new")  # the comparison's two models, in its own words
CASE_SETS = ("added", "validation")


@dataclass(frozen=True)
class ImprovementRequest:
    """What to improve: one configuration's model of a dataset, on the chosen folds.

    ``epochs`` None keeps the engine's fine-tuning schedule; ``iterations_per_epoch``,
    ``device``, ``gpus``, ``npz`` and ``extra_train_args`` mean what they mean for training.
    """

    dataset: str
    configuration: str
    folds: tuple[int | str, ...]
    device: str = "auto"
    gpus: tuple[int, ...] = ()
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    npz: bool = True
    extra_train_args: tuple[str, ...] = ()

    @property
    def train_device(self) -> str:
        """The ``-device`` of train commands: ``cuda`` whenever GPUs were chosen."""
        return "cuda" if self.gpus else self.device


def improvement_request(
    request: TrainingRequest, fine_tuning_epochs: int = 0
) -> ImprovementRequest:
    """The improvement of the Train panel's choices; ``fine_tuning_epochs`` 0: the engine's.

    The panel's epochs are for training from scratch, so they are not used here. Raises
    AutoSegError when the choices name no single configuration that can be fine-tuned.
    """
    configurations = [c for c in request.configurations if c != CASCADE]
    if CASCADE in request.configurations or len(configurations) != 1:
        chosen = ", ".join(request.configurations)
        raise AutoSegError(
            f"Improve model fine-tunes one configuration at a time (chosen: {chosen}); the "
            "cascade is not fine-tuned. Fix: tick only the configuration to improve, e.g. "
            "3d_fullres."
        )
    if fine_tuning_epochs < 0:
        raise AutoSegError(f"Fine-tuning epochs {fine_tuning_epochs}: give 0 (default) or more.")
    return ImprovementRequest(
        dataset=request.dataset,
        configuration=configurations[0],
        folds=request.folds,
        device=request.device,
        gpus=request.gpus,
        epochs=fine_tuning_epochs or None,
        iterations_per_epoch=request.iterations_per_epoch,
        npz=request.npz,
        extra_train_args=request.extra_train_args,
    )


def model_folder(results_root: Path, dataset: str, configuration: str) -> Path:
    """The dataset's model folder for ``configuration``, as the Train module's training names it."""
    name = model_folder_name(TRAINER_NAME, DEFAULT_PLANS_NAME, configuration)
    return Path(results_root) / dataset / name


def current_model(results_root: Path, dataset: str, configuration: str) -> Path:
    """The model folder to improve; AutoSegError (one line, for the button's tooltip) when none.

    A folder with a trained fold, or one whose improvement was stopped: its fold is empty then
    (the model it held is a kept version), and the next improvement resumes it, for which the
    folder's plans suffice.
    """
    folder = model_folder(results_root, dataset, configuration)
    if not folder.is_dir():
        raise AutoSegError(
            f"{dataset} has no trained {configuration} model yet ({folder} does not exist). "
            "Train it first; Improve model then fine-tunes it on the cases added since."
        )
    try:
        if version_numbers(folder):
            read_model_plans(folder)
        else:
            open_model_files(folder)
    except AutoSegError as error:
        raise AutoSegError(f"{dataset} has no usable {configuration} model: {error}") from None
    return folder


def why_not_improvable(results_root: Path, request: TrainingRequest) -> str | None:
    """Why Improve model cannot run with these choices (one line), None when it can."""
    try:
        improvement = improvement_request(request)
        current_model(results_root, request.dataset, improvement.configuration)
    except AutoSegError as error:
        return str(error)
    return None


def _train_args(request: ImprovementRequest, fold: int | str, model: Path) -> list[str]:
    args = ["train", request.dataset, request.configuration, str(fold)]
    args += ["-device", request.train_device, "--from-model", os.fspath(model)]
    if request.epochs is not None:
        args += ["--epochs", str(request.epochs)]
    if request.iterations_per_epoch is not None:
        args += ["--iterations-per-epoch", str(request.iterations_per_epoch)]
    if request.npz:
        args.append("--npz")
    return args


@dataclass(frozen=True)
class ModelImprovement:
    """The job: its steps, the model folder it improves and the versions that folder held before."""

    request: ImprovementRequest
    model_folder: Path
    steps: tuple[EngineStep, ...]
    versions_before: tuple[int, ...]


def plan_improvement(
    request: ImprovementRequest,
    results_root: Path,
    preprocessed_root: Path,
    *,
    raw_root: Path | None = None,
) -> ModelImprovement:
    """The steps that improve the dataset's current model (planning, then one per fold).

    Raises AutoSegError when the dataset has no trained model for the configuration. Every step
    names the data folders with flags, as ``training_plan.plan_steps`` does.
    """
    model = current_model(results_root, request.dataset, request.configuration)
    folders = folder_args(Path(results_root), Path(preprocessed_root), raw_root)
    plan_args = ("plan_and_preprocess", "-d", request.dataset, "-c", request.configuration)
    plan_args += ("--plans-from", os.fspath(model), "--progress", "json")
    steps = [
        EngineStep(PLAN_KEY, "Plan from the model, preprocess new cases", (*plan_args, *folders))
    ]
    for fold in request.folds:
        status = fold_status(results_root, request.dataset, request.configuration, fold)
        resume = ["--c"] if status.state == "interrupted" else []
        verb = "Resume improving" if resume else "Improve"
        args = (*_train_args(request, fold, model), *resume, *request.extra_train_args)
        steps.append(
            EngineStep(
                key=f"train {request.configuration} {fold}",
                label=f"{verb} {request.configuration} fold {fold}",
                args=(*args, *folders),
                fold=(request.configuration, fold),
                depends_on=(PLAN_KEY,),
                fold_dir=status.fold_dir,
            )
        )
    return ModelImprovement(request, model, tuple(steps), tuple(version_numbers(model)))


# ------------------------------------------------------------------------------- the outcome


@dataclass(frozen=True)
class ImprovementOutcome:
    """What a finished improvement left: the model folder (now the improved model), the versions
    the job kept (the first is the model before the job) and each fold's comparison (None when
    the engine wrote none, e.g. the fold was not trained)."""

    model_folder: Path
    kept_versions: tuple[Path, ...]
    comparisons: Mapping[str, dict[str, Any] | None]

    @property
    def previous_model(self) -> Path | None:
        """The model as it was before the job (the first version it kept), None if none kept."""
        return self.kept_versions[0] if self.kept_versions else None

    def table_lines(self) -> list[str]:
        """Per fold, the mean and per-label Dice of the previous and the new model, per case set."""
        lines: list[str] = []
        for fold, comparison in self.comparisons.items():
            if comparison is None:
                lines.append(f"Fold {fold}: no before/after comparison (see the engine log).")
                continue
            lines.append(f"Fold {fold}: Dice, previous -> new model")
            lines += _case_set_lines(comparison)
        return lines

    def summary(self) -> str:
        """One line for the status label."""
        kept = self.previous_model
        before = f" The previous model is kept as {kept}." if kept is not None else ""
        return f"Improved {self.model_folder.name}; AutoSeg Predict now uses it.{before}"


def _dice(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return "-"
    return f"{value:.3f}"


def _model_scores(entry: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Name -> (previous, new) Dice: ``mean`` first, then each label of either model."""
    scores = [entry.get(m) if isinstance(entry.get(m), dict) else {} for m in MODELS]
    labels = [s.get("Dice") if isinstance(s.get("Dice"), dict) else {} for s in scores]
    names = dict.fromkeys([*labels[0], *labels[1]])
    result = {"mean": (scores[0].get("mean"), scores[1].get("mean"))}
    result.update({str(n): (labels[0].get(n), labels[1].get(n)) for n in names})
    return result


def _case_set_lines(comparison: Mapping[str, Any]) -> list[str]:
    lines = []
    case_sets = comparison.get("case_sets") if isinstance(comparison.get("case_sets"), dict) else {}
    for name in CASE_SETS:
        entry = case_sets.get(name)
        if not isinstance(entry, dict):
            continue
        cases = entry.get("cases")
        if not cases:
            why = "none" if isinstance(cases, list) else "unknown"
            lines.append(f"  {name}: {why}")
            continue
        scores = ", ".join(
            f"{label} {_dice(before)} -> {_dice(after)}"
            for label, (before, after) in _model_scores(entry).items()
        )
        lines.append(f"  {name} ({len(cases)} cases): {scores}")
    return lines


def read_comparison(fold_dir: Path) -> dict[str, Any] | None:
    """A fold's ``validation/comparison.json``; None when absent or unreadable."""
    path = Path(fold_dir) / VALIDATION_FOLDER / COMPARISON_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def improvement_outcome(improvement: ModelImprovement) -> ImprovementOutcome:
    """What the finished job left in the model folder (read from the files)."""
    folder = improvement.model_folder
    kept = [n for n in version_numbers(folder) if n not in improvement.versions_before]
    comparisons = {
        str(fold): read_comparison(folder / fold_folder_name(fold))
        for fold in improvement.request.folds
    }
    return ImprovementOutcome(folder, tuple(version_folder(folder, n) for n in kept), comparisons)


def switch_predict_to(store: SettingsStore, outcome: ImprovementOutcome) -> Preferences:
    """Make the Predict module show the improved model (its ``last_model`` preference, followed
    by the Predict panel when it is entered); returns the updated preferences."""
    return Preferences.update(store, last_model=outcome.model_folder)
