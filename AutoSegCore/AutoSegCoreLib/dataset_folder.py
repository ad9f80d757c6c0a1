"""Create, open and extend a raw training dataset folder from Slicer.

The folder is the engine's own format (``DatasetXXX_Name/{dataset.json, imagesTr, labelsTr}``), so
what the user builds here trains with ``autoseg`` and with nothing else in between. dataset.json is
validated by the engine's parser, so the user sees the same messages as from ``autoseg verify``.
The one difference: a dataset without any case yet ("numTraining": 0) opens here, because the
user creates the dataset first and adds cases afterwards. dataset.json is only ever rewritten
atomically, keeping every key the user wrote.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autoseg.atomic import write_json_atomic
from autoseg.dataset import (
    DATASET_JSON,
    IMAGES_DIR,
    LABELS_DIR,
    DatasetSpec,
    parse_dataset_json,
    read_dataset_json,
)
from autoseg.errors import AutoSegError, Problem
from autoseg.image_formats import SimpleITKIO
from autoseg.labels import IGNORE_NAME, LabelValue
from autoseg.paths import dataset_folder_name
from AutoSegCoreLib.label_mapping import BACKGROUND_NAME, normalize_label_name

MAX_DATASET_ID = 999
#: Where files taken out of a dataset go (removed cases, replaced labels): never deleted, so a
#: wrong click is undone by moving them back. The engine reads only imagesTr/ and labelsTr/.
REMOVED_DIR = "removed"
# Endings that Slicer's volume storage node writes as ONE file and the engine reads (.nhdr/.mhd
# would put a second data file next to the header, which the engine's file listing rejects).
_SINGLE_FILE = (".nii.gz", ".nii", ".nrrd", ".mha")
WRITABLE_FILE_ENDINGS = tuple(e for e in SimpleITKIO.file_endings if e in _SINGLE_FILE)
_FOLDER = re.compile(r"Dataset(?P<id>\d{3,})_(?P<name>.+)")
# ASCII only: non-ASCII folder names break tools on Windows profiles with other code pages.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_CHANNEL_FILE = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")


class DatasetFolderError(AutoSegError, ValueError):
    """A dataset folder that cannot be created, opened or changed; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the Train module shows of a dataset and needs to add cases to it.

    Attributes:
        folder: the ``DatasetXXX_Name`` folder.
        dataset_id: the XXX of the folder name.
        name: the part of the folder name after ``DatasetXXX_``.
        channel_names: one name per image channel, in channel order.
        labels: dataset.json's labels in file order, "background": 0 included; a region label
            (only in region-based datasets) has a tuple of values.
        file_ending: ending of every image and label file, e.g. ".nii.gz".
        case_ids: the cases that have image files in imagesTr, sorted.
    """

    folder: Path
    dataset_id: int
    name: str
    channel_names: tuple[str, ...]
    labels: dict[str, LabelValue]
    file_ending: str
    case_ids: tuple[str, ...]


def _fail(where: object, problems: Sequence[str]) -> DatasetFolderError:
    return DatasetFolderError(f"{where}:\n" + "\n".join(problems))


def _is_empty_count(problem: Problem, data: Any) -> bool:
    """The engine's "numTraining must be >= 1" error for a dataset that has no case yet."""
    value = data.get("numTraining") if isinstance(data, dict) else None
    empty = value == 0 and not isinstance(value, bool)
    return empty and problem.message.startswith('"numTraining"')


def _read_raw(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # read_dataset_json reports why


def read_dataset_spec(folder: Path) -> DatasetSpec:
    """dataset.json of ``folder`` validated by the engine; "numTraining": 0 is accepted.

    Raises:
        DatasetFolderError: listing every problem exactly as ``autoseg verify`` words it.
    """
    path = Path(folder) / DATASET_JSON
    spec, problems = read_dataset_json(path)
    if spec is not None:
        return spec
    data = _read_raw(path)
    errors = [p for p in problems if p.is_error and not _is_empty_count(p, data)]
    if errors or not isinstance(data, dict):
        fix = "Fix dataset.json (or choose the DatasetXXX_Name folder that contains it)."
        raise _fail(f"{folder} is not a usable dataset", [*map(str, errors), fix])
    spec, _ = parse_dataset_json({**data, "numTraining": 1}, path.parent, str(path))
    if spec is None:  # unreachable: only the numTraining error was found above
        raise _fail(path, ["dataset.json could not be parsed."])
    return replace(spec, num_training=0, raw=data)


def scan_case_ids(folder: Path, file_ending: str) -> tuple[str, ...]:
    """Case ids with at least one ``CASE_XXXX<ending>`` image file in ``folder``, sorted."""
    if not folder.is_dir():
        return ()
    cases = set()
    for path in folder.iterdir():
        name = path.name
        if name.startswith(".") or not name.endswith(file_ending):
            continue  # hidden files include half-written temporary files
        match = _CHANNEL_FILE.fullmatch(name[: -len(file_ending)])
        if match is not None:
            cases.add(match["case"])
    return tuple(sorted(cases))


def _folder_id(folder: Path) -> int:
    match = _FOLDER.fullmatch(folder.name)
    if match is None:
        raise _fail(
            folder,
            [
                "not a dataset folder: the name must be DatasetXXX_Name (e.g. "
                "Dataset004_Hippocampus). Fix: choose the dataset folder itself, or create a new one."
            ],
        )
    return int(match["id"])


def open_dataset(folder: Path) -> DatasetInfo:
    """Reads a ``DatasetXXX_Name`` folder.

    Raises:
        DatasetFolderError: the folder is missing, misnamed, or its dataset.json is invalid.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise _fail(folder, ["folder does not exist. Fix: choose an existing dataset folder."])
    identifier = _folder_id(folder)
    spec = read_dataset_spec(folder)
    return DatasetInfo(
        folder=folder,
        dataset_id=identifier,
        name=folder.name.split("_", 1)[1],
        channel_names=spec.channel_names,
        labels=dict(spec.labels.entries),
        file_ending=spec.file_ending,
        case_ids=scan_case_ids(folder / IMAGES_DIR, spec.file_ending),
    )


def list_datasets(raw_root: Path) -> list[DatasetInfo]:
    """Every readable dataset in ``raw_root``, sorted by id; broken ones are skipped, not fatal."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        return []
    infos = []
    for child in raw_root.iterdir():
        if not (child.is_dir() and _FOLDER.fullmatch(child.name)):
            continue
        try:
            infos.append(open_dataset(child))
        except (AutoSegError, ValueError, OSError):
            continue  # the user sees it when opening it explicitly
    return sorted(infos, key=lambda info: (info.dataset_id, info.name))


def _used_ids(raw_root: Path) -> dict[int, list[str]]:
    used: dict[int, list[str]] = {}
    if raw_root.is_dir():
        for child in sorted(raw_root.iterdir()):
            match = _FOLDER.fullmatch(child.name)
            if match is not None and child.is_dir():
                used.setdefault(int(match["id"]), []).append(child.name)
    return used


def _id_problems(raw_root: Path, dataset_id: object) -> list[str]:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int):
        return [f"dataset id {dataset_id!r} is not an integer; use 1 to {MAX_DATASET_ID}."]
    if not 1 <= dataset_id <= MAX_DATASET_ID:
        return [f"dataset id {dataset_id} is out of range; use 1 to {MAX_DATASET_ID}."]
    used = _used_ids(raw_root)
    if dataset_id in used:
        free = next(i for i in range(1, MAX_DATASET_ID + 2) if i not in used)
        owners = ", ".join(used[dataset_id])
        return [f"dataset id {dataset_id} is already used by {owners}; use e.g. {free}."]
    return []


def _new_dataset_problems(
    raw_root: Path, dataset_id: object, name: str, channels: Sequence[str], file_ending: str
) -> list[str]:
    problems = _id_problems(raw_root, dataset_id)
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        problems.append(
            f"dataset name {name!r} is not usable as a folder name; use letters A-Z, digits, "
            "'-' and '_' only (no spaces), starting with a letter or digit."
        )
    if not channels:
        problems.append("no channel names; give one name per image channel, e.g. ['CT'].")
    blank = [i for i, c in enumerate(channels) if not isinstance(c, str) or not c.strip()]
    if blank:
        problems.append(f"channel name(s) at position {blank} are empty; name every channel.")
    if file_ending not in WRITABLE_FILE_ENDINGS:
        problems.append(
            f"file ending {file_ending!r} is not supported; use one of {list(WRITABLE_FILE_ENDINGS)}."
        )
    return problems


def create_dataset(
    raw_root: Path,
    dataset_id: int,
    name: str,
    channel_names: Sequence[str],
    *,
    file_ending: str = ".nii.gz",
) -> DatasetInfo:
    """Creates an empty ``DatasetXXX_Name`` folder with imagesTr/, labelsTr/ and dataset.json.

    Raises:
        DatasetFolderError: listing every problem (id used or outside 1..999, unsafe name, no or
            empty channel names, unsupported file ending); nothing is created then.
    """
    raw_root = Path(raw_root)
    channels = list(channel_names)
    problems = _new_dataset_problems(raw_root, dataset_id, name, channels, file_ending)
    if problems:
        raise _fail(f"Cannot create a dataset in {raw_root}", problems)
    folder = raw_root / dataset_folder_name(dataset_id, name)
    raw_root.mkdir(parents=True, exist_ok=True)
    folder.mkdir()  # exist_ok=False: never adopt a folder someone else made
    try:
        (folder / IMAGES_DIR).mkdir()
        (folder / LABELS_DIR).mkdir()
        data = {
            "channel_names": {str(i): c.strip() for i, c in enumerate(channels)},
            "labels": {BACKGROUND_NAME: 0},
            "numTraining": 0,
            "file_ending": file_ending,
        }
        write_json_atomic(folder / DATASET_JSON, data)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # only what this call just created
        raise
    return open_dataset(folder)


def next_case_id(info: DatasetInfo) -> str:
    """``<name>_<k:03d>`` with the smallest k >= 1 used by no image or label file on disk."""
    images = scan_case_ids(info.folder / IMAGES_DIR, info.file_ending)
    labels_dir = info.folder / LABELS_DIR
    ending = info.file_ending
    labels = (
        {p.name[: -len(ending)] for p in labels_dir.iterdir() if p.name.endswith(ending)}
        if labels_dir.is_dir()
        else set()
    )
    used = {*info.case_ids, *images, *labels}
    k = 1
    while f"{info.name}_{k:03d}" in used:
        k += 1
    return f"{info.name}_{k:03d}"


def case_files(info: DatasetInfo, case_id: str) -> tuple[list[Path], Path]:
    """An existing case's image files (one per channel, in order) and its label file's path."""
    if case_id not in info.case_ids:
        raise DatasetFolderError(
            f'Case "{case_id}" is not in {info.folder / IMAGES_DIR}. Fix: refresh the case list '
            "and choose an existing case."
        )
    ending = info.file_ending
    images = [
        info.folder / IMAGES_DIR / f"{case_id}_{i:04d}{ending}"
        for i in range(len(info.channel_names))
    ]
    return images, info.folder / LABELS_DIR / f"{case_id}{ending}"


def keep_in_removed(info: DatasetInfo, path: Path, *, copy: bool = False) -> Path:
    """Move (or copy) a file of the dataset to ``removed/<its sub folder>/`` under a free name.

    A name already taken there gets ``.1``, ``.2``... before the file ending; nothing is ever
    overwritten. Returns the new path.
    """
    path = Path(path)
    folder = info.folder / REMOVED_DIR / path.parent.relative_to(info.folder)
    folder.mkdir(parents=True, exist_ok=True)
    ending = info.file_ending if path.name.endswith(info.file_ending) else path.suffix
    stem = path.name[: len(path.name) - len(ending)] if ending else path.name
    target, number = folder / path.name, 0
    while target.exists():
        number += 1
        target = folder / f"{stem}.{number}{ending}"
    if copy:
        shutil.copy2(path, target)
    else:
        path.rename(target)
    return target


def _names_to_add(spec: DatasetSpec, names: Sequence[str], where: Path) -> list[str]:
    known = {normalize_label_name(n) for n, _ in spec.labels.entries}
    new: list[str] = []
    problems: list[str] = []
    for name in names:
        key = normalize_label_name(name)
        if key in {"", BACKGROUND_NAME, IGNORE_NAME}:
            problems.append(f"label name {name!r} cannot be added; use a non-empty other name.")
        elif key not in known and key not in {normalize_label_name(n) for n in new}:
            new.append(name.strip())
    if problems:
        raise _fail(where, problems)
    return new


def _check_extendable(spec: DatasetSpec, where: Path) -> None:
    if spec.labels.has_regions:
        raise _fail(
            where,
            [
                "dataset.json defines region labels (lists of values); AutoSegTrain cannot add "
                "labels to a region-based dataset. Fix: edit its labels and regions_class_order "
                "by hand."
            ],
        )
    if spec.labels.ignore_label is not None:
        raise _fail(
            where,
            [
                'dataset.json has an "ignore" label, which must stay the largest value; a new '
                "label cannot be appended. Fix: add the label by hand, give ignore the new largest "
                "value and update the existing label files."
            ],
        )


def add_labels(info: DatasetInfo, names: Sequence[str]) -> DatasetInfo:
    """Appends the names dataset.json lacks (compared ignoring case/spaces) with values max+1, ...

    dataset.json is re-read from disk and rewritten atomically; all other keys stay as they are.

    Raises:
        DatasetFolderError: region-based dataset, a dataset with an ignore label, or a name that is
            empty, "background" or "ignore".
    """
    path = info.folder / DATASET_JSON
    spec = read_dataset_spec(info.folder)
    new = _names_to_add(spec, names, path)
    if not new:
        return open_dataset(info.folder)
    _check_extendable(spec, path)
    data = dict(spec.raw)
    top = max(spec.labels.all_labels, default=0)
    data["labels"] = {**data["labels"], **{n: top + 1 + i for i, n in enumerate(new)}}
    write_json_atomic(path, data)
    return open_dataset(info.folder)


def update_num_training(info: DatasetInfo) -> DatasetInfo:
    """Sets "numTraining" to the number of cases in imagesTr (atomically, other keys unchanged)."""
    spec = read_dataset_spec(info.folder)
    cases = scan_case_ids(info.folder / IMAGES_DIR, spec.file_ending)
    data = dict(spec.raw)
    if data.get("numTraining") != len(cases):
        data["numTraining"] = len(cases)
        write_json_atomic(info.folder / DATASET_JSON, data)
    return open_dataset(info.folder)
