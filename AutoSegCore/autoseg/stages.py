"""The planning half of the pipeline as functions on dataset folders: the Python API behind the CLI.

Each stage reads what the previous one wrote (dataset.json and images -> fingerprint -> plans ->
preprocessed arrays), so stages can be re-run independently and a finished stage is not repeated
unless ``clean`` is asked for, or its inputs changed: a fingerprint of an older version of the
dataset is recomputed, and plans made from one are used with a one-line note on stderr.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from autoseg.case_checks import CaseRules, dataset_is_2d
from autoseg.dataset import DATASET_JSON, CaseFiles, DatasetSpec, load_dataset_json, training_cases
from autoseg.errors import AutoSegError
from autoseg.image_io import ImageReaderWriter, choose_reader_writer
from autoseg.inference.model_files import read_model_plans
from autoseg.paths import DataRoots, make_folder, resolve_dataset_name
from autoseg.planning import (
    DatasetFingerprint,
    PlannerOptions,
    PlanningTask,
    extract_fingerprint,
    plan_experiment,
)
from autoseg.planning.fingerprint import planned_from, stale_reason
from autoseg.planning.plans_transfer import added_labels, transfer_plans, transferred_from
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.plans import Plans
from autoseg.preprocessing import preprocess_dataset
from autoseg.progress import ProgressCallback, no_progress
from autoseg.results_layout import FINGERPRINT_FILE


@dataclass(frozen=True)
class DatasetFolders:
    """Where one dataset's raw data and preprocessed data live, and the variables that ``$VAR`` in
    paths listed under dataset.json's ``dataset`` key expand to (the CLI passes its environment,
    so every stage finds the files that verify found)."""

    name: str
    raw: Path
    preprocessed: Path
    env: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def resolve(
        cls, identifier: str | int, roots: DataRoots, env: Mapping[str, str] | None = None
    ) -> DatasetFolders:
        """Find a dataset by id (``4``, ``004``) or name and build its folders from the roots."""
        name = resolve_dataset_name(identifier, roots)
        return cls(name, roots.require_raw() / name, roots.require_preprocessed() / name, env)

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
    """Load the dataset's fingerprint, computing and saving it first when absent, computed from
    an older version of the dataset, or ``clean``."""
    raw = open_raw_dataset(folders.raw, folders.env)
    if folders.fingerprint_file.is_file() and not clean:
        stored = DatasetFingerprint.load(folders.fingerprint_file)
        reason = stale_reason(stored, raw.cases, raw.reader.name)
        if reason is None:
            return stored
        _note(f"{folders.fingerprint_file}: recomputing it, because {reason}")
    make_folder(folders.preprocessed, "the preprocessed data folder (--preprocessed)")  # first
    rules = CaseRules.for_dataset(raw.spec, dataset_is_2d(raw.reader, raw.cases))
    fingerprint = extract_fingerprint(raw.cases, raw.reader.name, num_processes, progress, rules)
    fingerprint.save(folders.fingerprint_file)
    return fingerprint


def _note(line: str) -> None:
    """One line on stderr for a surprise the user should know about (stdout may carry JSON)."""
    print(line, file=sys.stderr)


def _outdated_plans(folders: DatasetFolders, plans: Plans) -> str | None:
    """Why the plans may not describe the current raw data; None when they do (or no fingerprint
    is there to tell). Plans copied from a model describe the model's data, not this fingerprint."""
    if not folders.fingerprint_file.is_file() or transferred_from(plans) is not None:
        return None
    fingerprint = DatasetFingerprint.load(folders.fingerprint_file)
    raw = open_raw_dataset(folders.raw, folders.env)
    reason = stale_reason(fingerprint, raw.cases, raw.reader.name)
    if reason is not None:
        return f"they were planned from a fingerprint that is out of date ({reason})"
    if not planned_from(plans, fingerprint):
        return "they were planned from an earlier fingerprint than the current one"
    return None


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
    raw = open_raw_dataset(folders.raw, folders.env)
    fingerprint = DatasetFingerprint.load(folders.fingerprint_file)
    reason = stale_reason(fingerprint, raw.cases, raw.reader.name)
    if reason is not None:
        _note(
            f"{folders.fingerprint_file}: planning from it although {reason}. Fix: run "
            f"'autoseg extract_fingerprint -d {folders.name}' (or plan_and_preprocess) first."
        )
    task = PlanningTask(
        dataset_name=folders.name,
        channel_names=raw.spec.channel_names,
        num_label_entries=len(raw.spec.labels.entries),
        num_training=len(raw.cases),
        image_reader_writer=raw.reader.name,
    )
    plans = plan_experiment(fingerprint, task, options)
    plans_file = folders.plans_file(plans.plans_name)
    plans = _keep_custom_configurations(plans, plans_file)
    plans.save(plans_file)
    shutil.copy2(folders.raw / DATASET_JSON, folders.preprocessed / DATASET_JSON)
    return plans


@dataclass(frozen=True)
class TransferredPlans:
    """Plans written from a model's (``plan_dataset_from_model``) and the labels the dataset adds."""

    plans: Plans
    added_labels: tuple[str, ...]


def plan_dataset_from_model(
    folders: DatasetFolders, model_folder: Path, plans_name: str | None = None
) -> TransferredPlans:
    """Write ``<plans_name>.json`` from a trained model's plans (see planning/plans_transfer.py).

    The dataset's channels must be the model's; it may add labels. No fingerprint is needed: every
    planned value is the model's.
    """
    raw = open_raw_dataset(folders.raw, folders.env)
    model = read_model_plans(model_folder)
    added = added_labels(model, raw.spec, str(folders.raw / DATASET_JSON))
    plans = transfer_plans(model, folders.name, plans_name or DEFAULT_PLANS_NAME, raw.reader.name)
    make_folder(folders.preprocessed, "the preprocessed data folder (--preprocessed)")
    plans.save(folders.plans_file(plans.plans_name))
    shutil.copy2(folders.raw / DATASET_JSON, folders.preprocessed / DATASET_JSON)
    return TransferredPlans(plans, added)


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
    outdated = _outdated_plans(folders, plans)
    if outdated is not None:
        _note(
            f"{folders.plans_file(plans_name)}: {outdated}; preprocessing with them as they are. "
            f"Fix: run 'autoseg plan_and_preprocess -d {folders.name}' to plan from the current data."
        )
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
        env=folders.env,
    )
    return wanted
