"""Nothing is overwritten: training a fold that holds a final model first keeps that model as a version.

The annotation loop retrains the same fold again and again as the dataset grows; each round must
leave the model it replaces usable (to compare, to go back). So before a new (not resumed) training
of fold F writes anything, when ``fold_F/checkpoint_final.pth`` exists, the whole model folder as it
is (plans.json, dataset.json, every fold holding a final model) is kept as
``<model folder>/versions/<n>/`` (layout in results_layout.py), and fold F's folder is emptied for
the new run. A version is a model folder of its own: ``autoseg predict -m .../versions/<n>`` runs it,
``autoseg list_models`` lists it.

Cost and safety: checkpoints and the converted networks of the prediction backends
(``runtime_cache/``) are hard-linked (no copy where the file system allows it; both are only ever
replaced by a rename, never rewritten in place, so a link cannot change later), other files are
copied (logs are appended to, ``network.txt`` is rewritten), except fold F's, which leave the model
folder and so can be linked as well. The
version is assembled in a hidden staging folder and renamed into place: a crash leaves either no
version and the model untouched, or the complete version (fold F is emptied only afterwards; a
crash before that keeps the same model twice, which loses nothing). Runs of two folds of one model
keeping versions at the same moment get different numbers (the rename onto an existing version
fails and the next number is tried).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from autoseg.atomic import write_json_atomic
from autoseg.checkpoint import FINAL
from autoseg.errors import AutoSegError
from autoseg.inference.backends.model_cache import CACHE_FOLDER_NAME
from autoseg.results_layout import (
    FOLD_PREFIX,
    VERSION_INFO_FILE,
    VERSIONS_FOLDER,
    version_folder,
    version_numbers,
)
from autoseg.training.fold_lock import LOCK_FILE
from autoseg.training.job import TrainingJob
from autoseg.training.stop_request import STOP_REQUEST_FILE

# Files of the running fold that belong to the run, not to the model.
_RUN_FILES = frozenset({LOCK_FILE, STOP_REQUEST_FILE})
_STAGING_PREFIX = ".incomplete-"
_ATTEMPTS = 100
Clock = Callable[[], float]


def _files(folder: Path) -> Iterator[Path]:
    """Every file below ``folder`` except hidden ones (temporaries of atomic writes) and run files."""
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden and path.name not in _RUN_FILES:
            yield path


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # no hard links here (FAT, some network shares): a copy keeps the model too
        shutil.copy2(source, target)


def _only_renamed(relative: Path) -> bool:
    """Files that are replaced only by a rename (safe to share with a version by a hard link)."""
    return relative.suffix == ".pth" or relative.parts[0] == CACHE_FOLDER_NAME


def _stage_fold(fold: Path, target: Path, link_all: bool) -> None:
    for file in _files(fold):
        destination = target / file.relative_to(fold)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if link_all or _only_renamed(file.relative_to(fold)):
            _link_or_copy(file, destination)
        else:
            shutil.copy2(file, destination)


def _stage_model(model_dir: Path, replaced_fold: Path, staging: Path) -> None:
    """The model folder's own files and every fold that holds a final model, into ``staging``."""
    staging.mkdir(parents=True)
    for file in sorted(model_dir.iterdir()):
        if file.is_file() and not file.name.startswith("."):
            shutil.copy2(file, staging / file.name)
    for fold in sorted(model_dir.glob(f"{FOLD_PREFIX}*")):
        if (fold / FINAL).is_file():
            _stage_fold(fold, staging / fold.name, link_all=fold == replaced_fold)


def _publish(staging: Path, model_dir: Path, info: dict[str, object]) -> Path:
    """Rename ``staging`` to the next free ``versions/<n>``; returns that folder."""
    for _ in range(_ATTEMPTS):
        number = max(version_numbers(model_dir), default=0) + 1
        write_json_atomic(staging / VERSION_INFO_FILE, {"version": number, **info})
        target = version_folder(model_dir, number)
        try:
            staging.rename(target)
            return target
        except OSError:
            if not target.exists():
                raise
    raise AutoSegError(
        f"{model_dir / VERSIONS_FOLDER}: no free version number after {_ATTEMPTS} tries. Fix: "
        "check that no other program creates folders there, then train again."
    )


def _empty_fold(fold: Path) -> None:
    """Remove the kept model's files from the fold folder; the running fold's lock stays."""
    for child in fold.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def keep_previous_model(job: TrainingJob, command: str, clock: Clock = time.time) -> Path | None:
    """Keep the model as the next version when the job's fold holds a final model; returns the
    version folder (None: nothing to keep). Call with the fold lock held, before writing."""
    fold = job.fold_dir
    if not (fold / FINAL).is_file():
        return None
    model_dir = job.model_dir
    staging = model_dir / VERSIONS_FOLDER / f"{_STAGING_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
    try:
        _stage_model(model_dir, fold, staging)
        info = {
            "kept": datetime.fromtimestamp(clock()).astimezone().isoformat(timespec="seconds"),
            "fold": str(job.fold),
            "reason": f"fold {job.fold} was trained again",
            "command": command,
        }
        version = _publish(staging, model_dir, info)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _empty_fold(fold)
    return version


def newest_version(model_dir: Path) -> Path | None:
    """The version kept last (how the other ranks of a distributed run learn the main rank's)."""
    numbers = version_numbers(model_dir)
    return version_folder(model_dir, numbers[-1]) if numbers else None


def warm_start_from_version(job: TrainingJob, version: Path | None) -> TrainingJob:
    """The job with ``from_model`` pointing at the kept version when it named this model folder.

    ``train --from-model <this model folder>`` (improve the model in place) means the weights the
    fold had before; they now live in the version (fold F was emptied), and the saved settings
    then name a folder that keeps them.
    """
    source = job.settings.from_model
    if version is None or source is None:
        return job
    if Path(source).resolve() != job.model_dir.resolve():
        return job
    return replace(job, settings=replace(job.settings, from_model=str(version)))
