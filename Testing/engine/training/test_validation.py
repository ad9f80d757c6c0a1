"""Final validation reads and writes with the dataset's reader: a 3D TIFF dataset trains to the end.

The final validation writes its predictions with the plans' reader and evaluates them against the
ground-truth copies; with 3D TIFF stacks both must use Tiff3DIO (the 2D TIFF reader used to be
guessed from the suffix and failed after ``checkpoint_final.pth`` was written).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autoseg.checkpoint import FINAL
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
from autoseg.training.job import TRAINER_NAME, TrainingJob, model_folder_name
from autoseg.training.run import train_fold

from .conftest import TINY_SETTINGS

SHAPE = (8, 16, 16)


def _stack(path: Path, array: np.ndarray, sidecar: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    sidecar.write_text(json.dumps({"spacing": [2.0, 1.0, 1.0]}), encoding="utf-8")


def _tiff_dataset(raw: Path, num_cases: int = 5) -> Path:
    folder = raw / "Dataset903_Stacks"
    rng = np.random.default_rng(0)
    for index in range(num_cases):
        case = f"cells_{index:03d}"
        seg = np.zeros(SHAPE, dtype=np.uint8)
        seg[2:6, 4:12, 4 + index : 10 + index] = 1
        image = (rng.normal(10.0, 2.0, SHAPE) + 20.0 * seg).astype(np.float32)
        _stack(
            folder / "imagesTr" / f"{case}_0000.tif", image, folder / "imagesTr" / f"{case}.json"
        )
        _stack(folder / "labelsTr" / f"{case}.tif", seg, folder / "labelsTr" / f"{case}.json")
    dataset = {
        "channel_names": {"0": "microscopy"},
        "labels": {"background": 0, "cell": 1},
        "numTraining": num_cases,
        "file_ending": ".tif",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    return folder


def test_a_3d_tiff_dataset_finishes_training_with_its_validation(tmp_path: Path) -> None:
    roots = DataRoots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    _tiff_dataset(roots.raw)
    folders = DatasetFolders.resolve(903, roots)
    fingerprint_dataset(folders, 1)
    plans = plan_dataset(folders, PlannerOptions())
    assert plans.image_reader_writer == "Tiff3DIO"
    preprocess_configurations(folders, plans.plans_name, ["3d_fullres"], 1)
    plans = Plans.load(folders.preprocessed / f"{plans.plans_name}.json")
    job = TrainingJob(
        plans=plans,
        configuration="3d_fullres",
        dataset=load_dataset_json(folders.preprocessed / "dataset.json"),
        preprocessed_dir=folders.preprocessed,
        model_dir=roots.results
        / folders.name
        / model_folder_name(TRAINER_NAME, plans.plans_name, "3d_fullres"),
        fold=0,
        settings=replace(TINY_SETTINGS, epochs=1),
    )
    summary = train_fold(job)
    assert (job.fold_dir / FINAL).is_file()
    written = sorted(p.name for p in (job.fold_dir / "validation").glob("*.tif"))
    assert written
    assert all(
        (job.fold_dir / "validation" / n.replace(".tif", ".json")).is_file() for n in written
    )
    assert "1" in summary["mean"]
