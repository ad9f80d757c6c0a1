"""The planning half of the pipeline as functions on dataset folders: the Python API behind the CLI.

Each stage reads what the previous one wrote (dataset.json and images -> fingerprint -> plans ->
preprocessed arrays), so stages can be re-run independently and a finished stage is not repeated
unless ``clean`` is asked for.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from autoseg.dataset import DATASET_JSON, CaseFiles, DatasetSpec, load_dataset_json, training_cases
from autoseg.errors import AutoSegError
from autoseg.image_io import ImageReaderWriter, choose_reader_writer
from autoseg.paths import DataRoots, resolve_dataset_name
from autoseg.planning import (
    DatasetFingerprint,
    PlannerOptions,
    PlanningTask,
    extract_fingerprint,
    plan_experiment,
)
from autoseg.planning.fingerprint import FINGERPRINT_FILE
from autoseg.plans import Plans
from autoseg.preprocessing import preprocess_dataset
from autoseg.progress import ProgressCallback, no_progress


@dataclass(frozen=True)
class DatasetFolders:
    """Where one dataset's raw data and preprocessed data live."""

    name: str
    raw: Path
    preprocessed: Path

    @classmethod
    def resolve(cls, identifier: str | int, roots: DataRoots) -> DatasetFolders:
        """Find a dataset by id (``4``, ``004``) or name and build its folders from the roots."""
        name = resolve_dataset_name(identifier, roots)
        return cls(name, roots.require_raw() / name, roots.require_preprocessed() / name)

    def plans_file(self, plans_name: str) -> Path:
        return self.preprocessed / f"{plans_name}.json"

    @property
    def fingerprint_file(self) -> Path:
        return self.preprocessed / FINGERPRINT_FILE


@dataclass(frozen=True)
class RawDataset:
    """A parsed raw dataset: its description, its training cases and the reader for its files."""

    spec: DatasetSpec
    cases: list[CaseFiles]
    reader: ImageReaderWriter


def open_raw_dataset(raw_dir: Path, env: Mapping[str, str] | None = None) -> RawDataset:
    """Parse dataset.json, find the training cases and choose the reader (clear errors if broken)."""
    if not (raw_dir / DATASET_JSON).is_file():
        raise AutoSegError(
            f"{raw_dir / DATASET_JSON}: not found. Fix: check the dataset id and the raw data folder "
            "(--raw or AUTOSEG_RAW / nnUNet_raw)."
        )
    spec = load_dataset_json(raw_dir / DATASET_JSON, env)
    cases = training_cases(raw_dir, spec)
    reader = choose_reader_writer(spec.file_ending, cases[0].images[0], spec.reader_override)
    return RawDataset(spec, cases, reader)


def fingerprint_dataset(
    folders: DatasetFolders,
    num_processes: int = 1,
    clean: bool = False,
    progress: ProgressCallback = no_progress,
) -> DatasetFingerprint:
    """Load the dataset's fingerprint, computing and saving it first when absent (or ``clean``)."""
    if folders.fingerprint_file.is_file() and not clean:
        return DatasetFingerprint.load(folders.fingerprint_file)
    raw = open_raw_dataset(folders.raw)
    fingerprint = extract_fingerprint(raw.cases, raw.reader.name, num_processes, progress)
    fingerprint.save(folders.fingerprint_file)
    return fingerprint


def _keep_custom_configurations(new: Plans, previous_file: Path) -> Plans:
    """Re-planning replaces our configurations but keeps ones the user added to the plans by hand."""
    if not previous_file.is_file():
        return new
    previous = Plans.load(previous_file)
    custom = {n: c for n, c in previous.configurations.items() if n not in new.configurations}
    return replace(new, configurations={**new.configurations, **custom})


def plan_dataset(folders: DatasetFolders, options: PlannerOptions | None = None) -> Plans:
    """Plan the experiment from the saved fingerprint and write ``<plans_name>.json``."""
    options = options or PlannerOptions()
    if not folders.fingerprint_file.is_file():
        raise AutoSegError(
            f"{folders.fingerprint_file}: not found. Fix: run 'autoseg extract_fingerprint -d "
            f"{folders.name}' first."
        )
    raw = open_raw_dataset(folders.raw)
    task = PlanningTask(
        dataset_name=folders.name,
        channel_names=raw.spec.channel_names,
        num_label_entries=len(raw.spec.labels.entries),
        num_training=len(raw.cases),
        image_reader_writer=raw.reader.name,
    )
    plans = plan_experiment(DatasetFingerprint.load(folders.fingerprint_file), task, options)
    plans_file = folders.plans_file(plans.plans_name)
    plans = _keep_custom_configurations(plans, plans_file)
    plans.save(plans_file)
    shutil.copy2(folders.raw / DATASET_JSON, folders.preprocessed / DATASET_JSON)
    return plans


def preprocess_configurations(
    folders: DatasetFolders,
    plans_name: str,
    configurations: Sequence[str],
    num_processes: int | Sequence[int] = 1,
    clean: bool = False,
    progress: ProgressCallback = no_progress,
) -> list[str]:
    """Preprocess the raw training cases for the configurations of a plans file.

    Configurations the plans do not contain are skipped, like nnU-Net does for ``3d_lowres`` on
    datasets that do not need it; the caller can compare the returned names with the request.
    """
    plans = Plans.load(folders.plans_file(plans_name))
    wanted = [name for name in configurations if name in plans.configurations]
    if not isinstance(num_processes, int) and len(num_processes) == len(configurations):
        # One count per requested configuration (nnU-Net's "-np 8 4 8"): keep those still wanted.
        num_processes = [
            n for n, c in zip(num_processes, configurations, strict=True) if c in wanted
        ]
    preprocess_dataset(
        folders.raw,
        folders.preprocessed,
        plans,
        wanted,
        num_processes,
        clean=clean,
        progress=progress,
    )
    return wanted
