"""Model folders for the Predict module's tests: the files the engine checks, empty checkpoints.

The Predict panel checks a folder with the engine's own torch-free rule (plans.json parsed,
dataset.json, the folds holding checkpoint_final.pth), so a test model needs a real plans.json;
its checkpoints stay empty because nothing here reads them (a stand-in engine runs instead, or a
test builds real weights itself).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoseg.plans import (
    ArchitectureSpec,
    ConfigurationPlan,
    IntensityStats,
    Plans,
    PreprocessingSpec,
)

LABELS = {"background": 0, "anterior": 1, "posterior": 2}
REPOSITORY = Path(__file__).resolve().parents[2]
NNUNET_DATASET = (
    REPOSITORY / "Testing" / "data" / "nnunet_reference" / "results" / "Dataset990_AutoSegInterop"
)


def _configuration(name: str, channels: int) -> ConfigurationPlan:
    dims = 2 if name == "2d" else 3
    architecture = ArchitectureSpec(
        "PlainConvUNet",
        (4, 8),
        ((3,) * dims, (3,) * dims),
        ((1,) * dims, (2,) * dims),
        (2, 2),
        (2,),
    )
    preprocessing = PreprocessingSpec((1.0,) * 3, ("ZScore",) * channels, (False,) * channels)
    return ConfigurationPlan(
        name, f"P_{name}", (8,) * dims, 2, (10.0,) * 3, False, preprocessing, architecture
    )


def plans_json(configuration: str, channels: int = 1, dataset: str = "Dataset001_X") -> dict:
    """A valid AutoSeg plans.json holding one configuration."""
    stats = IntensityStats(1, 1, 1, 0, 2, 0, 2)
    plans = Plans(
        dataset_name=dataset,
        plans_name="AutoSegPlans",
        image_reader_writer="SimpleITKIO",
        transpose_forward=(0, 1, 2),
        transpose_backward=(0, 1, 2),
        original_median_spacing_after_transp=(1.0, 1.0, 1.0),
        original_median_shape_after_transp=(10.0, 10.0, 10.0),
        foreground_intensity_properties_per_channel={str(c): stats for c in range(channels)},
        configurations={configuration: _configuration(configuration, channels)},
    )
    return plans.to_json()


def make_model(
    dataset: Path,
    configuration: str = "3d_fullres",
    folds: Sequence[str] = ("0", "1"),
    *,
    labels: Mapping[str, Any] = LABELS,
    extra_json: Mapping[str, Any] | None = None,
    trainer: str = "AutoSegTrainer",
    channels: Sequence[str] = ("MRI",),
) -> Path:
    """A model folder as training writes it (JSON files, empty checkpoint files)."""
    folder = dataset / f"{trainer}__AutoSegPlans__{configuration}"
    folder.mkdir(parents=True)
    dataset_json = {
        "channel_names": {str(i): name for i, name in enumerate(channels)},
        "labels": dict(labels),
        "numTraining": 4,
        "file_ending": ".nii.gz",
        **(extra_json or {}),
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json), encoding="utf-8")
    plans = plans_json(configuration, len(channels), dataset.name)
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
    return folder
