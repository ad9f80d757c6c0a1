"""dataset.json and the training cases of a raw dataset folder.

A raw dataset is ``DatasetXXX_Name/{dataset.json, imagesTr/, labelsTr/}``. Image files are named
``CASE_XXXX<ending>`` (XXXX = 4-digit channel index) and label files ``CASE<ending>``; alternatively
dataset.json lists every case's files under the ``dataset`` key. A file may hold several channels
(an RGB PNG for channel_names R, G, B): :mod:`autoseg.dataset_files` says which files a case
needs. Everything here collects *all* problems it finds, so a user fixes a broken dataset in one
round instead of one error per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.dataset_files import CHANNEL_FILE, channel_file_gaps, count_problem, list_files
from autoseg.errors import Problem, ProblemsFound
from autoseg.labels import LabelSpec, parse_labels

DATASET_JSON = "dataset.json"
IMAGES_DIR = "imagesTr"
LABELS_DIR = "labelsTr"
_ENV_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


@dataclass(frozen=True)
class CaseFiles:
    """The files of one training case: its image files in channel order (one per channel, or fewer
    when a file holds several channels, e.g. one RGB file) and its label."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None


@dataclass(frozen=True)
class DatasetSpec:
    """The validated content of a dataset.json.

    Attributes:
        channel_names: channel names ordered by their integer key ("0", "1", ...).
        labels: the label definition.
        num_training: the declared number of training cases.
        file_ending: file ending of all images and labels, e.g. ".nii.gz".
        reader_override: name of the reader/writer to force, or None for automatic choice.
        explicit_cases: cases listed under the ``dataset`` key (paths resolved), else None.
        raw: the complete JSON object, for passing unknown keys through to plans and exports.
    """

    channel_names: tuple[str, ...]
    labels: LabelSpec
    num_training: int
    file_ending: str
    reader_override: str | None = None
    explicit_cases: tuple[CaseFiles, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)


def _problem(where: str, message: str, fix: str, severity: str = "error") -> Problem:
    return Problem(severity, where, message, fix)  # type: ignore[arg-type]


def _read_json(path: Path) -> tuple[Any, list[Problem]]:
    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        duplicates.extend(sorted({k for k in keys if keys.count(k) > 1}))
        return dict(pairs)

    if not path.is_file():
        fix = "Create dataset.json next to imagesTr/ and labelsTr/ (see the dataset format docs)."
        return None, [_problem(str(path), "dataset.json does not exist.", fix)]
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=pairs_hook)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [_problem(str(path), f"not valid JSON: {exc}.", "Fix the JSON syntax.")]
    fix = "Remove the repeated key; JSON keeps only the last one."
    problems = [_problem(str(path), f'key "{k}" appears more than once.', fix) for k in duplicates]
    return data, problems


def _parse_channels(data: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], list[Problem]]:
    key = "channel_names" if "channel_names" in data else "modality"
    fix = 'Write e.g. "channel_names": {"0": "CT", "1": "T2"} with keys 0, 1, ... in order.'
    if key not in data:
        return (), [_problem(where, 'required key "channel_names" is missing.', fix)]
    value = data[key]
    if not isinstance(value, Mapping) or not value:
        msg = f'"{key}" is {type(value).__name__}; expected a non-empty object index -> name.'
        return (), [_problem(where, msg, fix)]
    try:
        indices = sorted(int(k) for k in value)
    except ValueError:
        msg = f'"{key}" keys {list(value)} are not channel indices; expected "0", "1", ...'
        return (), [_problem(where, msg, fix)]
    if indices != list(range(len(value))):
        msg = f'"{key}" keys are {indices}; expected 0..{len(value) - 1} without gaps.'
        return (), [_problem(where, msg, fix)]
    by_index = {int(k): v for k, v in value.items()}
    names = tuple(str(by_index[i]) for i in indices)
    bad = [i for i in indices if not isinstance(by_index[i], str) or not by_index[i]]
    if bad:
        msg = f'"{key}" entries {bad} are not non-empty strings.'
        return names, [_problem(where, msg, fix)]
    return names, []


def _parse_num_training(data: Mapping[str, Any], where: str) -> tuple[int, list[Problem]]:
    fix = 'Set "numTraining" to the number of training cases, e.g. "numTraining": 42.'
    if "numTraining" not in data:
        return 0, [_problem(where, 'required key "numTraining" is missing.', fix)]
    value = data["numTraining"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return 0, [_problem(where, f'"numTraining" is {value!r}; expected an integer >= 1.', fix)]
    return value, []


def _parse_file_ending(data: Mapping[str, Any], where: str) -> tuple[str, list[Problem]]:
    fix = 'Set "file_ending" to the ending of every image and label file, e.g. ".nii.gz".'
    if "file_ending" not in data:
        return "", [_problem(where, 'required key "file_ending" is missing.', fix)]
    value = data["file_ending"]
    if not isinstance(value, str) or not value.startswith(".") or len(value) < 2:
        msg = f'"file_ending" is {value!r}; expected a string starting with ".", e.g. ".nii.gz".'
        return "", [_problem(where, msg, fix)]
    return value, []


def _parse_override(data: Mapping[str, Any], where: str) -> tuple[str | None, list[Problem]]:
    value = data.get("overwrite_image_reader_writer")
    if value is None or value == "None":
        return None, []
    if not isinstance(value, str) or not value:
        msg = f'"overwrite_image_reader_writer" is {value!r}; expected a reader name or "None".'
        return None, [_problem(where, msg, "Remove the key or give a reader name as a string.")]
    return value, []


def _expand(text: str, env: Mapping[str, str] | None) -> str:
    """``$VAR``/``${VAR}`` from ``env`` (the CLI passes the process's, as nnU-Net expands them);
    unknown ones stay."""
    if not env:
        return text
    return _ENV_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def _resolve(text: str, base: Path, env: Mapping[str, str] | None) -> Path:
    path = Path(_expand(text, env))
    return path if path.is_absolute() else base / path


def _parse_case(
    case_id: str, entry: Any, base: Path, env: Mapping[str, str] | None, where: str
) -> tuple[CaseFiles | None, list[Problem]]:
    fix = f'Write "dataset": {{"{case_id}": {{"images": ["a_0000.nii.gz"], "label": "a.nii.gz"}}}}.'
    images = entry.get("images") if isinstance(entry, Mapping) else None
    label = entry.get("label") if isinstance(entry, Mapping) else None
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        msg = f'"dataset"["{case_id}"]["images"] must be a non-empty list of file paths.'
        return None, [_problem(where, msg, fix)]
    if label is not None and not isinstance(label, str):
        msg = f'"dataset"["{case_id}"]["label"] is {label!r}; expected a file path.'
        return None, [_problem(where, msg, fix)]
    files = tuple(_resolve(i, base, env) for i in images)
    return CaseFiles(case_id, files, None if label is None else _resolve(label, base, env)), []


def _parse_explicit(
    data: Mapping[str, Any], base: Path, env: Mapping[str, str] | None, where: str
) -> tuple[tuple[CaseFiles, ...] | None, list[Problem]]:
    if "dataset" not in data:
        return None, []
    value = data["dataset"]
    if not isinstance(value, Mapping):
        msg = f'"dataset" is {type(value).__name__}; expected an object case -> files.'
        fix = 'Write "dataset": {"case1": {"images": [...], "label": "..."}} or remove the key.'
        return None, [_problem(where, msg, fix)]
    cases, problems = [], []
    for case_id, entry in value.items():
        case, found = _parse_case(str(case_id), entry, base, env, where)
        problems += found
        if case is not None:
            cases.append(case)
    return tuple(sorted(cases, key=lambda c: c.case_id)), problems


def parse_dataset_json(
    data: Any, dataset_dir: Path, location: str, env: Mapping[str, str] | None = None
) -> tuple[DatasetSpec | None, list[Problem]]:
    """Validates a parsed dataset.json object, collecting every problem.

    Args:
        data: the parsed JSON.
        dataset_dir: folder that relative paths under the ``dataset`` key refer to.
        location: file name used in problem reports.
        env: variables for ``$VAR`` in listed paths (the caller passes them; nothing reads
            ``os.environ`` here).

    Returns:
        The spec (None when any error was found) and all problems.
    """
    if not isinstance(data, Mapping):
        msg = f"top level is {type(data).__name__}; expected a JSON object."
        return None, [_problem(location, msg, "Write dataset.json as one object {...}.")]
    channels, problems = _parse_channels(data, location)
    if "labels" not in data:
        fix = 'Add e.g. "labels": {"background": 0, "tumor": 1}.'
        problems.append(_problem(location, 'required key "labels" is missing.', fix))
        labels = None
    else:
        labels, found = parse_labels(data["labels"], data.get("regions_class_order"), location)
        problems += found
    num_training, found = _parse_num_training(data, location)
    problems += found
    file_ending, found = _parse_file_ending(data, location)
    problems += found
    override, found = _parse_override(data, location)
    problems += found
    explicit, found = _parse_explicit(data, dataset_dir, env, location)
    problems += found
    if labels is None or any(p.is_error for p in problems):
        return None, problems
    spec = DatasetSpec(
        channels, labels, num_training, file_ending, override, explicit, raw=dict(data)
    )
    return spec, problems


def read_dataset_json(
    path: Path, env: Mapping[str, str] | None = None
) -> tuple[DatasetSpec | None, list[Problem]]:
    """Reads and validates a dataset.json file without raising; see ``parse_dataset_json``."""
    path = Path(path)
    data, problems = _read_json(path)
    if data is None:
        return None, problems
    spec, found = parse_dataset_json(data, path.parent, str(path), env)
    return (None if any(p.is_error for p in problems) else spec), problems + found


def load_dataset_json(path: Path, env: Mapping[str, str] | None = None) -> DatasetSpec:
    """Reads dataset.json; raises ProblemsFound listing every problem when it has any error."""
    spec, problems = read_dataset_json(path, env)
    if spec is None:
        raise ProblemsFound(problems)
    return spec


# ------------------------------------------------------------------------------------ discovery


def _scan_images(folder: Path, ending: str) -> tuple[dict[str, dict[int, Path]], list[Problem]]:
    files, problems = list_files(folder, ending)
    by_case: dict[str, dict[int, Path]] = {}
    for path in files:
        match = CHANNEL_FILE.fullmatch(path.name[: -len(ending)])
        if match is None:
            msg = "image file name has no 4-digit channel suffix."
            fix = f"Rename it to CASE_0000{ending} (channel 0), CASE_0001{ending}, ..."
            problems.append(_problem(str(path), msg, fix))
            continue
        by_case.setdefault(match["case"], {})[int(match["channel"])] = path
    return by_case, problems


def _channel_problems(
    case_id: str, channels: dict[int, Path], folder: Path, spec: DatasetSpec
) -> list[Problem]:
    n, ending = spec.num_channels, spec.file_ending
    gaps, extras = channel_file_gaps(channels, n)
    missing = [f"{case_id}_{i:04d}{ending}" for i in gaps]
    extra = [channels[i].name for i in extras]
    problems = []
    if missing:
        msg = f"case {case_id}: channel file(s) {', '.join(missing)} missing."
        fix = (
            f"Every case needs the files _0000 to _{n - 1:04d} (channel_names lists {n}), or fewer "
            "files whose components are the channels (one RGB file for R, G, B)."
        )
        problems.append(_problem(str(folder / missing[0]), msg, fix))
    if extra:
        msg = f"case {case_id}: {', '.join(extra)} beyond the {n} channel(s) of channel_names."
        fix = "Remove the extra files or add their channels to channel_names in dataset.json."
        problems.append(_problem(str(channels[extras[-1]]), msg, fix))
    return problems


def _folder_cases(
    dataset_dir: Path, spec: DatasetSpec
) -> tuple[list[CaseFiles], list[Problem], int | None]:
    """Cases from imagesTr/labelsTr, their problems, and how many case ids imagesTr holds."""
    images_dir, labels_dir = dataset_dir / IMAGES_DIR, dataset_dir / LABELS_DIR
    fix = f'Create {IMAGES_DIR}/ and {LABELS_DIR}/ or list the files under "dataset".'
    problems = [
        _problem(str(d), "folder does not exist.", fix)
        for d in (images_dir, labels_dir)
        if not d.is_dir()
    ]
    if problems:
        return [], problems, None  # counting makes no sense without the folders
    by_case, problems = _scan_images(images_dir, spec.file_ending)
    label_files, found = list_files(labels_dir, spec.file_ending)
    problems += found
    labels = {p.name[: -len(spec.file_ending)]: p for p in label_files}
    cases = []
    for case_id in sorted(by_case):
        found = _channel_problems(case_id, by_case[case_id], images_dir, spec)
        label = labels.get(case_id)
        if label is None:
            where = str(labels_dir / f"{case_id}{spec.file_ending}")
            found.append(_problem(where, f"label of case {case_id} is missing.", "Add the label."))
        problems += found
        if not found:
            images = tuple(path for _, path in sorted(by_case[case_id].items()))
            cases.append(CaseFiles(case_id, images, label))
    for case_id in sorted(set(labels) - set(by_case)):
        msg = f"label without image files (no {case_id}_0000{spec.file_ending} in {IMAGES_DIR}/)."
        fix = "Add the image files or remove the label; it is ignored."
        problems.append(_problem(str(labels[case_id]), msg, fix, "warning"))
    return cases, problems, len(by_case)


def _file_problem(
    path: Path | None, case: CaseFiles, spec: DatasetSpec, where: str
) -> Problem | None:
    if path is None:
        msg = f'"dataset"["{case.case_id}"] has no "label".'
        return _problem(where, msg, 'Add "label": "path/to/label" to the case.')
    if not path.is_file():
        return _problem(str(path), f"file of case {case.case_id} does not exist.", "Fix the path.")
    if not path.name.endswith(spec.file_ending):
        msg = f'file of case {case.case_id} does not end with "{spec.file_ending}".'
        return _problem(str(path), msg, 'Convert the file or fix "file_ending".')
    return None


def _listed_channel_problems(case: CaseFiles, spec: DatasetSpec, where: str) -> list[Problem]:
    """Listed images supply the channels in order, like the files of imagesTr/ (RGB counts 3)."""
    n = spec.num_channels
    missing, extra = channel_file_gaps(dict(enumerate(case.images)), n)
    if not missing and not extra:
        return []
    msg = f"case {case.case_id} lists {len(case.images)} image(s)"
    msg += f" with {n - len(missing)} channel(s)" if missing else ""
    msg += f"; channel_names has {n}."
    fix = "List one image file per entry of channel_names, or files whose components are the "
    fix += "channels (one RGB file for R, G, B)."
    return [_problem(where, msg, fix)]


def _explicit_cases(spec: DatasetSpec, where: str) -> tuple[list[CaseFiles], list[Problem]]:
    cases, problems, owner = [], [], {}
    for case in spec.explicit_cases or ():
        found = [_file_problem(p, case, spec, where) for p in (*case.images, case.label)]
        found = [p for p in found if p is not None]
        found += _listed_channel_problems(case, spec, where)  # a missing file counts as unknown
        for path in (*case.images, case.label):
            if path is not None and owner.setdefault(path, case.case_id) != case.case_id:
                msg = f"file is listed for case {case.case_id} and case {owner[path]}."
                found.append(_problem(str(path), msg, "Every case needs its own files."))
        problems += found
        if not found:
            cases.append(case)
    return cases, problems


def discover_cases(dataset_dir: Path, spec: DatasetSpec) -> tuple[list[CaseFiles], list[Problem]]:
    """Finds the training cases and every problem with the file layout.

    Returns:
        The complete cases, sorted by id (incomplete ones are left out and reported), and problems.
    """
    dataset_dir = Path(dataset_dir)
    where = str(dataset_dir / DATASET_JSON)
    if spec.explicit_cases is not None:
        cases, problems = _explicit_cases(spec, where)
        n_found = len(spec.explicit_cases)
    else:
        cases, problems, n_found = _folder_cases(dataset_dir, spec)
    if n_found is not None and n_found != spec.num_training:
        folder = None if spec.explicit_cases is not None else dataset_dir / IMAGES_DIR
        problems.append(count_problem(spec.num_training, n_found, spec.file_ending, folder, where))
    return cases, problems


def training_cases(dataset_dir: Path, spec: DatasetSpec) -> list[CaseFiles]:
    """The training cases; raises ProblemsFound when the layout has any error."""
    cases, problems = discover_cases(dataset_dir, spec)
    if any(p.is_error for p in problems):
        raise ProblemsFound(problems)
    return cases
