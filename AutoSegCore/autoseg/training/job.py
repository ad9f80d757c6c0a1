"""One training job: which dataset, plans, configuration and fold, and where its files go.

The results layout follows the method so an nnU-Net user finds everything where they expect it:
``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>/fold_<k>/``. The model folder (the
parent of the fold folders) also holds plans.json, dataset.json and dataset_fingerprint.json, which
is what inference needs besides the weights.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from autoseg.dataset import DATASET_JSON, DatasetSpec, load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.paths import DataRoots, make_folder, resolve_dataset_name
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.plans import ConfigurationPlan, Plans
from autoseg.results_layout import (
    FINGERPRINT_FILE,
    PLANS_FILE,
    fold_folder_name,
    model_folder_name,
)
from autoseg.training.settings import TrainingSettings

TRAINER_NAME = "AutoSegTrainer"
NEXT_STAGE_FOLDER = "predicted_next_stage"


def parse_fold(text: str | int) -> int | str:
    """``0``..``n`` or ``all``; anything else is a usage error that says what is accepted."""
    value = str(text).strip()
    if value == "all":
        return "all"
    if value.isdigit():
        return int(value)
    raise AutoSegError(f"fold {text!r} is not valid: use a number (0-4 for 5-fold CV) or 'all'")


@dataclass(frozen=True)
class TrainingJob:
    """Everything one fold's training reads and writes, resolved before training starts."""

    plans: Plans
    configuration: str
    dataset: DatasetSpec
    preprocessed_dir: Path
    model_dir: Path
    fold: int | str
    settings: TrainingSettings

    @property
    def config(self) -> ConfigurationPlan:
        return self.plans.configuration(self.configuration)

    @property
    def fold_dir(self) -> Path:
        return self.model_dir / fold_folder_name(self.fold)

    @property
    def data_dir(self) -> Path:
        return self.preprocessed_dir / self.config.data_identifier

    @property
    def gt_dir(self) -> Path:
        return self.preprocessed_dir / "gt_segmentations"

    @property
    def is_cascade(self) -> bool:
        return self.config.previous_stage is not None

    def stage_model_dir(self, configuration: str) -> Path:
        """The model folder of another configuration trained with the same trainer and plans."""
        return self.model_dir.parent / model_folder_name(
            TRAINER_NAME, self.plans.plans_name, configuration
        )

    @property
    def previous_stage_predictions(self) -> Path | None:
        """Where the previous stage's validation wrote this configuration's cascade inputs."""
        previous = self.config.previous_stage
        if previous is None:
            return None
        return self.stage_model_dir(previous) / NEXT_STAGE_FOLDER / self.configuration

    @property
    def next_stage_folders(self) -> dict[str, Path]:
        """Per next-stage configuration, where this stage's validation writes its inputs."""
        following = self.config.next_stage
        if following is None:
            return {}
        return {following: self.model_dir / NEXT_STAGE_FOLDER / following}

    @property
    def num_input_channels(self) -> int:
        extra = len(self.dataset.labels.foreground_labels) if self.is_cascade else 0
        return self.dataset.num_channels + extra

    def check_inputs(self) -> None:
        """Fail before any work with a message that says which step to run first."""
        if not self.data_dir.is_dir():
            raise AutoSegError(
                f"{self.data_dir}: no preprocessed data for {self.configuration}; run "
                f"`autoseg plan_and_preprocess -d {self.preprocessed_dir.name} "
                f"-c {self.configuration}` first"
            )
        previous = self.previous_stage_predictions
        if previous is not None and not previous.is_dir():
            raise AutoSegError(
                f"{previous}: the cascade needs the {self.config.previous_stage} predictions; train "
                f"all 5 folds of {self.config.previous_stage} first (their validation writes them)"
            )

    def write_model_files(self) -> None:
        """Copy plans, dataset.json and the fingerprint into the model folder (inference reads
        them from there, so a model folder is self-contained)."""
        make_folder(self.model_dir, "the model folder (--results)")
        self.plans.save(self.model_dir / PLANS_FILE)
        for name in (DATASET_JSON, FINGERPRINT_FILE):
            source = self.preprocessed_dir / name
            if source.is_file():
                shutil.copyfile(source, self.model_dir / name)


def resolve_job(
    dataset: str | int,
    configuration: str,
    fold: int | str,
    roots: DataRoots,
    settings: TrainingSettings,
    plans_name: str | None = None,
) -> TrainingJob:
    """The job for one fold, found from a dataset id or name and the data roots.

    Every mistake (unknown dataset, plans not made yet, unknown configuration) is one clear error
    that says what to run.
    """
    name = resolve_dataset_name(dataset, roots)
    preprocessed = roots.require_preprocessed() / name
    plans_name = plans_name or DEFAULT_PLANS_NAME
    plans_file = preprocessed / f"{plans_name}.json"
    if not plans_file.is_file():
        raise AutoSegError(
            f"{plans_file}: plans not found; run `autoseg plan_and_preprocess -d {dataset}`"
            + (
                f" with -overwrite_plans_name {plans_name}"
                if plans_name != DEFAULT_PLANS_NAME
                else ""
            )
        )
    plans = Plans.load(plans_file)
    plans.configuration(configuration)  # raises with the list of known configurations
    return TrainingJob(
        plans=plans,
        configuration=configuration,
        dataset=load_dataset_json(preprocessed / DATASET_JSON),
        preprocessed_dir=preprocessed,
        model_dir=roots.require_results()
        / name
        / model_folder_name(TRAINER_NAME, plans_name, configuration),
        fold=parse_fold(fold),
        settings=settings,
    )
