"""Shared parts of the dataset converters: where a new dataset may go and its dataset.json.

A new ``DatasetXXX_Name`` folder is built in a hidden staging folder next to the target and renamed
into place only when everything was written, so an interrupted conversion never leaves a half dataset
that later stages would pick up. Nothing is ever overwritten: an existing target, or any dataset with
the same id, is refused, because two datasets sharing an id make every ``-d ID`` ambiguous.

The dataset.json conversion is the same for MSD and nnU-Net v1 sources: ``modality`` becomes
``channel_names``, ``labels`` is flipped from ``{"1": "liver"}`` to ``{"liver": 1}``, ``numTraining``
is recounted from the files, ``file_ending`` is ``.nii.gz``, the per-case ``training``/``test`` lists
are dropped and all other metadata (name, description, licence, ...) is kept.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.paths import dataset_id, folder_error, make_folder

__all__ = ["NIFTI", "convert_dataset_json", "read_task_json", "refuse_existing", "staged_folder"]

NIFTI = ".nii.gz"
_DATASET_DIR = re.compile(r"Dataset(\d{3,})_.+")
# Keys rebuilt by the conversion; everything else in the source dataset.json is kept as metadata.
_REBUILT = ("channel_names", "modality", "labels", "numTraining", "file_ending", "training", "test")


# --------------------------------------------------------------------------------------------------
# Target folder: refusal rules and staging
# --------------------------------------------------------------------------------------------------


def refuse_existing(target: Path) -> None:
    """Raise when ``target`` or another dataset with the same id already exists next to it."""
    if target.exists():
        raise AutoSegError(
            f"{target} already exists. Fix: delete or rename it first, or convert under a "
            "different id; AutoSeg never overwrites a dataset."
        )
    same_id = dataset_id(target.name)
    if target.parent.is_dir():
        for other in sorted(target.parent.iterdir()):
            match = _DATASET_DIR.fullmatch(other.name)
            if other.is_dir() and match and int(match.group(1)) == same_id:
                raise AutoSegError(
                    f"{other} already uses dataset id {same_id}, so {target.name} would make the "
                    "id ambiguous. Fix: choose another id (e.g. overwrite_id) or remove that dataset."
                )


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty hidden folder next to ``target``; on success it is renamed to ``target``.

    On any error the staging folder is deleted, so no half-written dataset remains. The hidden name
    (leading dot) is not a ``DatasetXXX_Name``, so even a killed process leaves nothing that looks like
    a dataset.
    """
    target = Path(target)
    what = "the raw data folder (--raw)"
    make_folder(target.parent, what, check_writable=False)
    try:
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        )
    except OSError as error:
        raise folder_error(target.parent, what, error, "write in") from None
    try:
        yield staging
        if target.exists():
            raise AutoSegError(f"{target} appeared while converting. Fix: remove it and retry.")
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# dataset.json
# --------------------------------------------------------------------------------------------------


def read_task_json(task_folder: Path) -> dict[str, Any]:
    if not task_folder.is_dir():
        raise AutoSegError(f"{task_folder} is not a folder. Fix: pass the task folder itself.")
    path = task_folder / "dataset.json"
    if not path.is_file():
        raise AutoSegError(
            f"{path} is missing. Fix: pass a task folder that contains dataset.json."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AutoSegError(f"{path} is not valid JSON ({exc}). Fix: repair the file.") from exc
    if not isinstance(data, dict):
        raise AutoSegError(f"{path} must hold a JSON object. Fix: repair the file.")
    return data


def _channel_names(data: Mapping[str, Any], where: Path) -> dict[str, str]:
    value = data.get("modality", data.get("channel_names"))
    if not isinstance(value, Mapping) or not value:
        raise AutoSegError(
            f'{where}: "modality" is missing or empty; this is not an MSD/nnU-Net v1 dataset.json. '
            'Fix: add e.g. "modality": {"0": "CT"}.'
        )
    try:
        ordered = sorted((int(k), str(v)) for k, v in value.items())
    except ValueError:
        raise AutoSegError(
            f'{where}: "modality" keys {list(value)} are not channel indices. Fix: use "0", "1", ...'
        ) from None
    return {str(index): name for index, name in ordered}


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    return None


def _labels_by_name(data: Mapping[str, Any], where: Path) -> dict[str, int]:
    """Flip ``{"0": "background", "1": "x"}`` to ``{"background": 0, "x": 1}``, sorted by value.

    A dict that is already name -> int (values integers, keys not) is accepted unchanged.
    """
    labels = data.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise AutoSegError(
            f'{where}: "labels" is missing or empty. Fix: add {{"0": "background"}}.'
        )
    keys = [_as_int(k) for k in labels]
    if all(k is not None for k in keys):
        pairs = [(str(name), int(k)) for k, name in zip(keys, labels.values(), strict=True)]  # type: ignore[arg-type]
    elif all(_as_int(v) is not None and not isinstance(v, str) for v in labels.values()):
        pairs = [(str(name), int(v)) for name, v in labels.items()]
    else:
        raise AutoSegError(
            f'{where}: "labels" keys {list(labels)} are not integer label values. '
            'Fix: write them as {"0": "background", "1": "name", ...}.'
        )
    names = [name for name, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AutoSegError(
            f"{where}: label names {repeated} are used for several values; names must be unique. "
            "Fix: rename them."
        )
    return dict(sorted(pairs, key=lambda pair: pair[1]))


def convert_dataset_json(data: Mapping[str, Any], where: Path, num_training: int) -> dict[str, Any]:
    """The AutoSeg dataset.json for an MSD or nnU-Net v1 dataset.json (see the module docstring)."""
    converted: dict[str, Any] = {
        "channel_names": _channel_names(data, where),
        "labels": _labels_by_name(data, where),
        "numTraining": num_training,
        "file_ending": NIFTI,
    }
    converted.update({k: v for k, v in data.items() if k not in _REBUILT})
    return converted
