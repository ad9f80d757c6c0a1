"""Before/after: a warm-started model against the model it started from, on the same cases.

Why: a user who corrected a few cases and improved the model wants to know whether it got better,
where it matters: on the cases added since the previous model was trained (they were the reason
for the round) and on the fold's validation cases (did it forget anything?). The final validation
alone cannot say it, as the previous model was never evaluated on the new cases.

Both models predict each case through the same inference code (``Predictor``, sliding window with
the run's tile step and mirroring) from the run's preprocessed arrays, which is valid because a
warm start requires the dataset's plans to be the model's (warm_start.py checks it); the labels are
exported to the original geometry and scored against ``gt_segmentations`` with the evaluation's
``case_metrics``. The result, per case set and model, Dice per label and the mean, goes to
``fold_<k>/validation/comparison.json`` (atomically) and a short table to the log and events.

Which cases were added: those of the dataset now that the previous model's fold did not know, from
its ``training_cases.json`` (every AutoSeg training writes it), else the case list of its
``dataset_fingerprint.json``; a model with neither (an nnU-Net folder) is compared on the
validation cases only, and the file says so. The previous model is the ``--from-model`` folder, or
the version this run kept when ``--from-model`` named the model being retrained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from autoseg.atomic import write_json_atomic
from autoseg.checkpoint import FINAL
from autoseg.errors import AutoSegError
from autoseg.evaluation import CaseMetrics, case_metrics, summarize
from autoseg.image_io import choose_reader_writer
from autoseg.inference.backends.base import TORCH
from autoseg.inference.export import logits_to_segmentation
from autoseg.inference.model_folder import ModelFolder
from autoseg.inference.predictor import PredictionOptions, Predictor
from autoseg.model_listing import read_fold_cases
from autoseg.planning.fingerprint import DatasetFingerprint
from autoseg.preprocessing.storage import case_ids, load_case
from autoseg.results_layout import (
    COMPARISON_FILE,
    FINGERPRINT_FILE,
    FOLD_CASES_FILE,
    fold_folder_name,
)
from autoseg.training.job import TrainingJob
from autoseg.training.run_log import RunLog, jsonable
from autoseg.training.validation import VALIDATION_FOLDER, ValidationSetup
from autoseg.training.warm_start import find_source

MODELS = ("previous", "new")


def known_cases(model_dir: Path, fold: str) -> tuple[set[str] | None, str | None]:
    """The cases a model's fold was made from, and the file that says so (None: unknown)."""
    record = read_fold_cases(model_dir / fold_folder_name(fold))
    if record is not None:
        return set(record["train"]) | set(record["validation"]), FOLD_CASES_FILE
    fingerprint = model_dir / FINGERPRINT_FILE
    try:
        provenance = (
            DatasetFingerprint.load(fingerprint).provenance if fingerprint.is_file() else None
        )
    except AutoSegError:
        provenance = None  # unreadable: the cases are unknown, which the comparison says
    listed = (provenance or {}).get("cases")
    if isinstance(listed, dict) and listed:
        return set(listed), FINGERPRINT_FILE
    return None, None


def _new_model(job: TrainingJob, setup: ValidationSetup) -> ModelFolder:
    """The model just trained, as inference sees it, with the network still in memory."""
    return ModelFolder(
        path=job.model_dir,
        plans=job.plans,
        dataset=job.dataset,
        configuration=job.configuration,
        folds=(str(job.fold),),
        checkpoint_name=FINAL,
        mirror_axes=setup.mirror_axes,
    )


def _options(job: TrainingJob, setup: ValidationSetup) -> PredictionOptions:
    """Torch, as the final validation: the comparison runs inside the training process (which
    forks augmentation workers), where a CPU runtime would convert two networks for one use."""
    return PredictionOptions(
        step=job.settings.tile_step,
        mirror_tta=job.settings.mirror_tta,
        device=str(setup.device),
        backend=TORCH,
    )


def _score(predictor: Predictor, job: TrainingJob, cases: Sequence[str]) -> dict[str, CaseMetrics]:
    """Per case: the model's labels exported to the original geometry, scored against the
    reference in gt_segmentations."""
    model = predictor.model
    reader = choose_reader_writer(job.dataset.file_ending, override=job.plans.image_reader_writer)
    scores = {}
    for case_id in cases:
        data, _, properties = load_case(job.data_dir, case_id, mmap=True)
        logits = predictor.predict_preprocessed(np.array(data, dtype=np.float32)).numpy()
        resampling = model.config.preprocessing.resampling_probabilities
        prediction = logits_to_segmentation(logits, properties, resampling, model.dataset.labels)
        reference = reader.read_seg(job.gt_dir / f"{case_id}{job.dataset.file_ending}")[0][0]
        scores[case_id] = case_metrics(reference, prediction, job.dataset.labels)
    return scores


def _set_summary(job: TrainingJob, cases: list[str] | None, scores: dict) -> dict[str, Any]:
    """Dice per label name and the mean foreground Dice of each model on one case set."""
    result: dict[str, Any] = {"cases": cases}
    for name in MODELS:
        if not cases:
            result[name] = None
            continue
        summary = summarize([scores[name][c] for c in cases])
        result[name] = {
            "Dice": {
                job.dataset.labels.name_of(int(k)) if k.isdigit() else k: v["Dice"]
                for k, v in summary["mean"].items()
            },
            "mean": summary["foreground_mean"]["Dice"],
        }
    return result


def _fmt(value: float | None) -> str:
    return "  -   " if value is None or math.isnan(value) else f"{value:.4f}"


def comparison_table(comparison: dict[str, Any]) -> list[str]:
    """Lines for the log: per case set, the mean Dice of the previous and the new model."""
    lines = [f"Before/after (fold {comparison['fold']}): mean Dice, previous -> new model"]
    for name, entry in comparison["case_sets"].items():
        cases = entry["cases"]
        if cases is None:
            lines.append(f"  {name:<11} unknown ({comparison['added_cases_note']})")
            continue
        means = [None if entry[m] is None else entry[m]["mean"] for m in MODELS]
        lines.append(f"  {name:<11} {len(cases):>4} cases  {_fmt(means[0])} -> {_fmt(means[1])}")
    return lines


def _case_sets(job: TrainingJob, previous: Path, fold: str, val: Sequence[str]) -> dict[str, Any]:
    """The cases added since the previous model (None: unknown) and the fold's validation cases."""
    known, source = known_cases(previous, fold)
    if known is None:
        added, note = None, "the previous model does not record its cases"
    else:
        added = sorted(set(case_ids(job.data_dir)) - known)
        where = previous / fold_folder_name(fold) if source == FOLD_CASES_FILE else previous
        note = f"cases known to the previous model from {where / str(source)}"
    return {"added": added, "validation": sorted(val), "note": note}


def _compare(
    job: TrainingJob, network: nn.Module, val_cases: Sequence[str], setup: ValidationSetup
) -> dict[str, Any]:
    if job.is_cascade:
        raise AutoSegError("a cascade stage is not compared (its inputs need the previous stage)")
    source = find_source(job)
    sets = _case_sets(job, source.model.folder, source.fold, val_cases)
    needed = sorted({*(sets["added"] or []), *sets["validation"]})
    options = _options(job, setup)
    previous = Predictor.from_model_folder(source.model.folder, options, folds=[source.fold])
    new = Predictor(_new_model(job, setup), [network], options, setup.device)
    scores = {"previous": _score(previous, job, needed), "new": _score(new, job, needed)}
    return {
        "fold": str(job.fold),
        "previous_model": {"path": str(source.model.folder), "fold": source.fold},
        "new_model": {"path": str(job.model_dir), "fold": str(job.fold)},
        "added_cases_note": sets["note"],
        "case_sets": {
            name: _set_summary(job, sets[name], scores) for name in ("added", "validation")
        },
    }


def compare_models(
    job: TrainingJob, network: nn.Module, val_cases: Sequence[str], setup: ValidationSetup
) -> dict[str, Any]:
    """Evaluate the new model (``network``) and the one it started from; write and return the
    comparison. The network predicts without deep supervision, which is restored afterwards."""
    deep_supervision = getattr(network, "deep_supervision", None)
    if deep_supervision is not None:
        network.deep_supervision = False
    try:
        comparison = jsonable(_compare(job, network, val_cases, setup))  # NaN becomes null
    finally:
        if deep_supervision is not None:
            network.deep_supervision = deep_supervision
    write_json_atomic(job.fold_dir / VALIDATION_FOLDER / COMPARISON_FILE, comparison)
    return comparison


def compare_after_warm_start(
    job: TrainingJob,
    network: nn.Module,
    val_cases: Sequence[str],
    setup: ValidationSetup,
    log: RunLog | None,
) -> dict[str, Any] | None:
    """The before/after comparison of a finished warm-started run, told in the log and events.

    The training itself is complete either way: a comparison that cannot be made is one log line.
    """
    if job.settings.from_model is None:
        return None
    try:
        comparison = compare_models(job, network, val_cases, setup)
    except AutoSegError as error:
        if log:
            log.message(f"Before/after comparison not made: {error}")
        return None
    if log:
        for line in comparison_table(comparison):
            log.message(line)
        log.event(
            "comparison",
            file=str(job.fold_dir / VALIDATION_FOLDER / COMPARISON_FILE),
            case_sets={
                name: {
                    "cases": None if entry["cases"] is None else len(entry["cases"]),
                    **{m: None if entry[m] is None else entry[m]["mean"] for m in MODELS},
                }
                for name, entry in comparison["case_sets"].items()
            },
        )
    return comparison
