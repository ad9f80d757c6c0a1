"""Final validation: predict the fold's validation cases like inference does, then evaluate them.

The cases are predicted from their preprocessed arrays with the sliding-window predictor (Gaussian
weighting, step 0.5, mirroring), exported back to their original geometry as label files in
``fold_k/validation/`` and compared with ``gt_segmentations`` into ``validation/summary.json``,
which is what model selection reads. A 3d_lowres stage also writes the next stage's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoseg.atomic import atomic_path
from autoseg.evaluation import evaluate_folders
from autoseg.inference.export import (
    logits_to_probabilities,
    logits_to_segmentation,
    resample_to_next_stage,
    save_probabilities,
    write_segmentation,
)
from autoseg.inference.sliding_window import SlidingWindowSpec, predict_logits
from autoseg.preprocessing.storage import load_case
from autoseg.training.distributed import DistributedContext
from autoseg.training.job import TrainingJob

VALIDATION_FOLDER = "validation"
SUMMARY_FILE = "summary.json"


def _cascade_input(job: TrainingJob, case_id: str, data: np.ndarray) -> np.ndarray:
    """Append the previous stage's prediction as one-hot foreground channels (cascade only)."""
    previous = job.previous_stage_predictions
    if previous is None:
        return data
    seg = np.load(previous / f"{case_id}.npy", allow_pickle=False).reshape(data.shape[1:])
    labels = job.dataset.labels.foreground_labels
    onehot = np.stack([(seg == label) for label in labels]).astype(np.float32)
    return np.concatenate([np.asarray(data, dtype=np.float32), onehot])


def _predict_case(
    network: nn.Module, job: TrainingJob, case_id: str, setup: ValidationSetup
) -> tuple[np.ndarray, dict[str, Any]]:
    data, _, properties = load_case(job.data_dir, case_id, mmap=True)
    image = torch.from_numpy(_cascade_input(job, case_id, np.array(data, dtype=np.float32)))
    spec = SlidingWindowSpec(
        patch_size=tuple(job.config.patch_size),
        step=job.settings.tile_step,
        mirror_axes=setup.mirror_axes if job.settings.mirror_tta else None,
    )
    logits = predict_logits(
        network,
        image,
        spec,
        num_classes=job.dataset.labels.num_segmentation_heads,
        device=setup.device,
    )
    return logits.numpy(), properties


def _write_case(job: TrainingJob, case_id: str, logits: np.ndarray, properties, save_npz: bool):
    folder = job.fold_dir / VALIDATION_FOLDER
    labels = job.dataset.labels
    resampling = job.config.preprocessing.resampling_probabilities
    segmentation = logits_to_segmentation(logits, properties, resampling, labels)
    target = folder / f"{case_id}{job.dataset.file_ending}"
    write_segmentation(segmentation, properties, target, job.plans.image_reader_writer)
    if save_npz:
        probabilities = logits_to_probabilities(logits, properties, resampling, labels)
        save_probabilities(probabilities, properties, folder / case_id)
    for name, next_folder in job.next_stage_folders.items():
        following = job.plans.configuration(name)
        seg = resample_to_next_stage(logits, properties, following, labels)
        with atomic_path(next_folder / f"{case_id}.npy", suffix=".npy") as temporary:
            np.save(temporary, seg.astype(np.int16), allow_pickle=False)


@dataclass(frozen=True)
class ValidationSetup:
    """Where the network runs and what the validation writes."""

    device: torch.device
    mirror_axes: tuple[int, ...]
    save_npz: bool = False


def run_final_validation(
    job: TrainingJob,
    network: nn.Module,
    val_cases: Sequence[str],
    setup: ValidationSetup,
    dist: DistributedContext,
) -> dict[str, Any] | None:
    """Predict, export and evaluate; returns the summary on the main rank (None elsewhere).

    Cases are dealt round-robin across ranks; rank 0 evaluates once all have written.
    """
    network.eval()
    if hasattr(network, "deep_supervision"):
        network.deep_supervision = False
    try:
        for case_id in list(val_cases)[dist.rank :: dist.world_size]:
            logits, properties = _predict_case(network, job, case_id, setup)
            _write_case(job, case_id, logits, properties, setup.save_npz)
    finally:
        if hasattr(network, "deep_supervision"):
            network.deep_supervision = job.settings.deep_supervision
    dist.barrier()
    if not dist.is_main:
        return None
    folder = job.fold_dir / VALIDATION_FOLDER
    return evaluate_folders(
        job.gt_dir,
        folder,
        job.dataset.labels,
        job.dataset.file_ending,
        output_file=folder / SUMMARY_FILE,
        allow_missing=True,  # the reference folder holds every case, not only this fold
        reader=job.plans.image_reader_writer,  # the dataset's reader, e.g. Tiff3DIO for stacks
    )


def validation_dice(summary: dict[str, Any]) -> float:
    """The method's headline number: the mean foreground Dice of the final validation."""
    value = summary.get("foreground_mean", {}).get("Dice")
    return float("nan") if value is None else float(value)


def summary_path(fold_dir: Path) -> Path:
    return fold_dir / VALIDATION_FOLDER / SUMMARY_FILE
