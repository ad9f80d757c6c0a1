"""A tiny planned and preprocessed synthetic dataset shared by the training integration tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from autoseg.dataset import load_dataset_json
from autoseg.paths import DataRoots
from autoseg.plans import Plans
from autoseg.training.job import TRAINER_NAME, TrainingJob, model_folder_name
from autoseg.training.settings import TrainingSettings

TINY_SETTINGS = TrainingSettings(
    epochs=2,
    iterations_per_epoch=2,
    val_iterations=1,
    device="cpu",
    num_workers=0,
    seed=0,
    amp="off",
    checkpoint_every=1,
)


def tiny_job(
    roots: DataRoots,
    results: Path,
    fold: int | str = 0,
    configuration: str = "3d_fullres",
    **settings,
) -> TrainingJob:
    """A fold job on the tiny dataset writing under ``results`` (one per test)."""
    preprocessed = roots.preprocessed / "Dataset901_Tiny"
    plans = Plans.load(preprocessed / "AutoSegPlans.json")
    return TrainingJob(
        plans=plans,
        configuration=configuration,
        dataset=load_dataset_json(preprocessed / "dataset.json"),
        preprocessed_dir=preprocessed,
        model_dir=results / model_folder_name(TRAINER_NAME, plans.plans_name, configuration),
        fold=fold,
        settings=replace(TINY_SETTINGS, **settings),
    )
