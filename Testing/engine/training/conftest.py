"""A tiny planned and preprocessed synthetic dataset shared by the training integration tests."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from autoseg.dataset import load_dataset_json
from autoseg.paths import DataRoots
from autoseg.planning import PlannerOptions
from autoseg.plans import Plans
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)
from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset
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


@pytest.fixture(scope="session")
def tiny_preprocessed(tmp_path_factory: pytest.TempPathFactory) -> DataRoots:
    """Six small CT-like cases, planned and preprocessed for 3d_fullres (built once per session)."""
    root = tmp_path_factory.mktemp("tiny")
    roots = DataRoots(root / "raw", root / "preprocessed", root / "results")
    spec = SyntheticSpec(shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0))
    make_synthetic_dataset(roots.raw, dataset_id=901, name="Tiny", num_cases=6, spec=spec)
    folders = DatasetFolders.resolve(901, roots)
    fingerprint_dataset(folders, 1)
    plans = plan_dataset(folders, PlannerOptions())
    preprocess_configurations(folders, plans.plans_name, ["3d_fullres"], 1)
    return roots


def tiny_job(roots: DataRoots, results: Path, fold: int | str = 0, **settings) -> TrainingJob:
    """A fold job on the tiny dataset writing under ``results`` (one per test)."""
    preprocessed = roots.preprocessed / "Dataset901_Tiny"
    plans = Plans.load(preprocessed / "AutoSegPlans.json")
    return TrainingJob(
        plans=plans,
        configuration="3d_fullres",
        dataset=load_dataset_json(preprocessed / "dataset.json"),
        preprocessed_dir=preprocessed,
        model_dir=results / model_folder_name(TRAINER_NAME, plans.plans_name, "3d_fullres"),
        fold=fold,
        settings=replace(TINY_SETTINGS, **settings),
    )


@pytest.fixture
def private_preprocessed(tiny_preprocessed: DataRoots, tmp_path: Path) -> DataRoots:
    """A copy of the tiny preprocessed data a test may modify (e.g. its splits file)."""
    target = tmp_path / "preprocessed"
    shutil.copytree(tiny_preprocessed.preprocessed, target)
    return DataRoots(tiny_preprocessed.raw, target, tmp_path / "results")
