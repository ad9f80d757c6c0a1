"""Warm start: a training that begins from a trained model's weights (``train --from-model MODEL``).

The annotation loop improves a model with a few corrected cases in minutes instead of retraining it
for hours. That works only when the network sees the new data exactly as it saw its training data,
so the dataset's plans must be the model's (``plan_and_preprocess --plans-from MODEL`` writes them):
the network, patch size, spacing, axis order and normalization (with the intensity statistics that
CT clipping uses) are compared, and a difference is refused with the command that fixes it.

Every weight is copied, the segmentation heads included, so the first epoch already segments as
well as the model did. When the dataset adds label classes, the heads (the output convolutions,
deep-supervision ones included) have another shape and start fresh, as nnU-Net's
``-pretrained_weights`` does; everything else is still copied.

Fine-tuning needs neither the model's full schedule nor its learning rate: by default a run from a
model trains 10 % of the model's epochs (at least 10) from an initial learning rate of 1e-3. Both
are ordinary settings, saved with the run, and a value the user gave explicitly is kept.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from autoseg.checkpoint import FINAL, load_checkpoint
from autoseg.dataset import DATASET_JSON
from autoseg.errors import AutoSegError
from autoseg.inference.model_files import ModelPlans, read_model_plans
from autoseg.interop.nnunet_checkpoint import load_nnunet_checkpoint
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN
from autoseg.planning.plans_transfer import ORIGIN_KEY, added_labels
from autoseg.plans import ConfigurationPlan, Plans
from autoseg.preprocessing.normalization import SCHEMES_USING_DATASET_STATISTICS
from autoseg.results_layout import fold_folder_name
from autoseg.training.job import TrainingJob
from autoseg.training.settings import SETTINGS_FILE, TrainingSettings

FINE_TUNING_LR = 1e-3
FINE_TUNING_EPOCH_FRACTION = 0.1
MIN_FINE_TUNING_EPOCHS = 10
# Which fold of the model a fold starts from: its own, else the model trained on all cases, else 0.
FALLBACK_FOLDS = ("all", "0")
HEAD_MARKER = "seg_layers"  # every segmentation head's parameters carry it (see network.py)
# What a continued warm-started run takes from its saved settings rather than the defaults.
RESUMED_SETTINGS = ("epochs", "initial_lr", "from_model")


@dataclass(frozen=True)
class WarmStartSource:
    """Which checkpoint of which model a fold starts from, and what the dataset adds to it."""

    model: ModelPlans
    requested_fold: str
    fold: str
    checkpoint: Path
    added_labels: tuple[str, ...]

    @property
    def fresh_heads(self) -> bool:
        return bool(self.added_labels)


@dataclass(frozen=True)
class WarmStart:
    """A source with its weights read (before anything of the new run is written)."""

    source: WarmStartSource
    weights: dict[str, torch.Tensor]
    model_epochs: int


def _normalization(plans: Plans, config: ConfigurationPlan) -> tuple[Any, ...]:
    """What normalization does to the data: schemes, masks, and the statistics CT uses."""
    spec = config.preprocessing
    stats = plans.intensity_stats()
    used = [
        stats[i] if scheme in SCHEMES_USING_DATASET_STATISTICS and i < len(stats) else None
        for i, scheme in enumerate(spec.normalization_schemes)
    ]
    return spec.normalization_schemes, spec.use_mask_for_norm, tuple(used)


def plans_differences(model: ModelPlans, plans: Plans, configuration: str) -> list[str]:
    """The parts of ``plans``' configuration that differ from the model's and decide whether its
    weights see the data they were trained on (empty: the plans are the model's)."""
    theirs, ours = model.config, plans.configuration(configuration)
    checks = (
        ("network", theirs.architecture, ours.architecture),
        ("patch size", theirs.patch_size, ours.patch_size),
        ("spacing", theirs.spacing, ours.spacing),
        ("axis order", model.plans.transpose_forward, plans.transpose_forward),
        ("normalization", _normalization(model.plans, theirs), _normalization(plans, ours)),
    )
    return [name for name, a, b in checks if a != b]


def _source_fold(folder: Path, fold: int | str) -> tuple[str, Path]:
    """The fold's own checkpoint, else fold all's, else fold 0's."""
    candidates = tuple(dict.fromkeys((str(fold), *FALLBACK_FOLDS)))
    for name in candidates:
        path = folder / fold_folder_name(name) / FINAL
        if path.is_file():
            return name, path
    tried = ", ".join(fold_folder_name(name) for name in candidates)
    raise AutoSegError(
        f"{folder}: no {FINAL} in {tried}. Fix: pass a model folder with a finished training "
        "of this fold, of fold all or of fold 0."
    )


def find_source(job: TrainingJob) -> WarmStartSource:
    """Check that ``job`` can start from ``settings.from_model`` and pick the checkpoint."""
    if job.settings.from_model is None:
        raise AutoSegError("find_source needs settings.from_model (the model to start from)")
    model = read_model_plans(Path(job.settings.from_model))
    where = str(job.preprocessed_dir / DATASET_JSON)
    added = added_labels(model, job.dataset, where)
    differences = plans_differences(model, job.plans, job.configuration)
    if differences:
        raise AutoSegError(
            f"{job.preprocessed_dir / job.plans.plans_name}.json: the {job.configuration} plans "
            f"differ from the model's in {', '.join(differences)} ({model.folder}), so its weights "
            f"would see other data. Fix: run 'autoseg plan_and_preprocess -d "
            f"{job.preprocessed_dir.name} --plans-from {model.folder}' first."
        )
    fold, checkpoint = _source_fold(model.folder, job.fold)
    return WarmStartSource(model, str(job.fold), fold, checkpoint, added)


def _read_state(source: WarmStartSource) -> dict[str, Any]:
    if source.model.plans.extra.get(ORIGIN_KEY) == NNUNET_ORIGIN:
        return load_nnunet_checkpoint(source.checkpoint).as_autoseg_state()
    return load_checkpoint(source.checkpoint)


def _epochs_trained(state: dict[str, Any]) -> int:
    """The model's schedule: its settings' epochs, else the epoch it stopped at, else the method's."""
    settings = state.get("settings") if isinstance(state.get("settings"), dict) else {}
    for value in (settings.get("epochs"), state.get("current_epoch")):
        if isinstance(value, int) and value > 0:
            return value
    return TrainingSettings().epochs


def load_warm_start(job: TrainingJob) -> WarmStart:
    """The source of ``job`` with its weights in memory (read before the run writes anything, so
    that keeping the previous model as a version cannot move the file away first)."""
    source = find_source(job)
    state = _read_state(source)
    return WarmStart(source, dict(state["network_weights"]), _epochs_trained(state))


def fine_tuning_epochs(model_epochs: int) -> int:
    return max(MIN_FINE_TUNING_EPOCHS, round(FINE_TUNING_EPOCH_FRACTION * model_epochs))


def fine_tuning_settings(
    settings: TrainingSettings, model_epochs: int, explicit: Collection[str] = ()
) -> TrainingSettings:
    """The fine-tuning schedule and learning rate, unless ``explicit`` names them (user's own)."""
    defaults = {"epochs": fine_tuning_epochs(model_epochs), "initial_lr": FINE_TUNING_LR}
    return replace(settings, **{k: v for k, v in defaults.items() if k not in explicit})


def _resumed(job: TrainingJob, explicit: Collection[str]) -> TrainingJob | None:
    """A warm-started run being continued keeps the schedule and source it started with (saved
    with the run), except what the user gives again explicitly; None when nothing was saved."""
    path = job.fold_dir / SETTINGS_FILE
    if not path.is_file():
        return None
    saved = TrainingSettings.load(path)
    if saved.from_model is None:
        return None
    kept = {k: getattr(saved, k) for k in RESUMED_SETTINGS if k not in explicit}
    return replace(job, settings=replace(job.settings, **kept))


def with_fine_tuning(
    job: TrainingJob, explicit: Collection[str] = (), resume: bool = False
) -> TrainingJob:
    """``job`` with the fine-tuning defaults applied and ``from_model`` as an absolute path (what
    ``train --from-model`` runs; the Python API may call it too). ``resume``: continue the run's
    own saved schedule instead. A job without ``from_model`` is returned as it is."""
    if job.settings.from_model is None:
        return job
    if resume:
        resumed = _resumed(job, explicit)
        if resumed is not None:
            return resumed
    warm = load_warm_start(job)
    settings = fine_tuning_settings(job.settings, warm.model_epochs, explicit)
    settings = replace(settings, from_model=str(warm.source.model.folder.resolve()))
    return replace(job, settings=settings)


def copy_weights(
    model: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    source: Path,
    skip_heads: bool,
    fix: str,
) -> None:
    """Copy ``weights`` into ``model``, the segmentation heads too unless ``skip_heads``; every
    copied parameter must exist in ``weights`` with the same shape (else an error with ``fix``)."""
    own = model.state_dict()
    keys = [k for k in own if not (skip_heads and HEAD_MARKER in k)]
    problems = [
        f"{k}: {'missing' if k not in weights else f'shape {tuple(weights[k].shape)} != {tuple(own[k].shape)}'}"  # noqa: E501
        for k in keys
        if k not in weights or weights[k].shape != own[k].shape
    ]
    if problems:
        raise AutoSegError(
            f"{source}: the network does not match this configuration's architecture ("
            + "; ".join(problems[:3])
            + (" ..." if len(problems) > 3 else "")
            + f"). Fix: {fix}"
        )
    model.load_state_dict({**own, **{k: weights[k] for k in keys}})


def apply_warm_start(model: torch.nn.Module, warm: WarmStart) -> list[str]:
    """Copy the source weights into ``model``; returns the lines that say what was done."""
    source = warm.source
    fix = "use the model's own plans (plan_and_preprocess --plans-from)."
    copy_weights(model, warm.weights, source.checkpoint, source.fresh_heads, fix)
    lines = [
        f"Warm start from {source.model.folder}, fold {source.fold} ({source.checkpoint.name})"
    ]
    if source.fold != source.requested_fold:
        lines.append(
            f"The model has no trained fold {source.requested_fold}: starting from its fold "
            f"{source.fold}"
        )
    if source.fresh_heads:
        lines.append(
            f"The dataset adds the label(s) {', '.join(source.added_labels)}: the segmentation "
            "heads start fresh, every other weight is the model's"
        )
    return lines
