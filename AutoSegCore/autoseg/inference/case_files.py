"""Group a folder of images to predict into cases: ``CASE_XXXX<ending>``, a file per channel or RGB.

Prediction input follows the training naming (method §6): every case has the files
``CASE_0000<ending>`` .. ``CASE_{n-1:04d}<ending>`` for the model's ``n`` channels, in the model's
file ending, or fewer files when one holds several channels (one RGB PNG for R, G, B; the rule is
:func:`autoseg.dataset_files.channel_file_gaps`, the same as for training cases). A folder is
checked as a whole before anything is predicted, and every problem found (foreign file, name
without channel suffix, missing or extra channel) is reported in one error, one line per problem,
so a user fixes the folder in one round instead of one case per run.
"""

from __future__ import annotations

from pathlib import Path

from autoseg.dataset_files import CHANNEL_FILE, SIDECAR_ENDINGS, channel_file_gaps
from autoseg.errors import AutoSegError

InputCase = tuple[str, list[Path]]


def _is_sidecar(path: Path, file_ending: str) -> bool:
    return file_ending.lower() in SIDECAR_ENDINGS and path.name.endswith(".json")


def _candidate_files(folder: Path) -> list[Path]:
    """Visible regular files (hidden files and sub-folders, e.g. a cascade's ``.lowres``, skip)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())


def _scan(
    folder: Path, file_ending: str
) -> tuple[dict[str, dict[int, Path]], list[tuple[str, str]]]:
    """Files by case id and channel, plus (file name, problem line) for files that do not fit."""
    by_case: dict[str, dict[int, Path]] = {}
    problems: list[tuple[str, str]] = []
    for path in _candidate_files(folder):
        if _is_sidecar(path, file_ending):
            continue
        if not path.name.endswith(file_ending):
            problems.append(
                (
                    path.name,
                    f"{path}: does not end with the model's file ending {file_ending!r}. Fix: "
                    f"convert it to {file_ending} or move it out of the input folder.",
                )
            )
            continue
        match = CHANNEL_FILE.fullmatch(path.name[: -len(file_ending)])
        if match is None:
            problems.append(
                (
                    path.name,
                    f"{path}: the name lacks the 4-digit channel suffix. Fix: rename it to "
                    f"CASE_0000{file_ending} (CASE_0001{file_ending} for channel 1, ...).",
                )
            )
            continue
        by_case.setdefault(match["case"], {})[int(match["channel"])] = path
    return by_case, problems


def _channel_problems(
    folder: Path, case_id: str, channels: dict[int, Path], num_channels: int, file_ending: str
) -> list[tuple[str, str]]:
    last = f"{num_channels - 1:04d}"
    missing, extra = channel_file_gaps(channels, num_channels)
    problems = []
    for index in missing:
        name = f"{case_id}_{index:04d}{file_ending}"
        problems.append(
            (
                name,
                f"{folder / name}: missing; case {case_id} needs the model's {num_channels} "
                f"channel(s) _0000 to _{last}. Fix: add the file (same grid as the others), or "
                "give the case one file whose components are the channels (RGB for R, G, B).",
            )
        )
    for index in extra:
        problems.append(
            (
                channels[index].name,
                f"{channels[index]}: channel {index:04d} is beyond the model's {num_channels} "
                f"channel(s) (_0000 to _{last}). Fix: remove the file, or use a model trained "
                "with this channel.",
            )
        )
    return problems


def find_input_cases(folder: Path, num_channels: int, file_ending: str) -> list[InputCase]:
    """The cases of an input folder as ``(case_id, [image files in channel order])``, sorted.

    Raises:
        AutoSegError: the folder is missing or empty, or any file does not fit the naming; the
            message has one line per problem, each naming the file and the fix.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AutoSegError(f"{folder}: input folder not found. Fix: pass an existing folder.")
    if num_channels < 1:
        raise AutoSegError(f"num_channels is {num_channels}. Fix: the model needs >= 1 channel.")
    by_case, problems = _scan(folder, file_ending)
    for case_id in sorted(by_case):
        problems += _channel_problems(folder, case_id, by_case[case_id], num_channels, file_ending)
    if problems:
        lines = [line for _, line in sorted(problems)]
        header = (
            [f"{folder}: {len(lines)} problem(s) with the input files:"] if len(lines) > 1 else []
        )
        raise AutoSegError("\n".join(header + lines))
    if not by_case:
        raise AutoSegError(
            f"{folder}: no images to predict. Fix: put files named CASE_0000{file_ending} "
            "(one per channel) into it."
        )
    return [
        (case_id, [path for _, path in sorted(by_case[case_id].items())])
        for case_id in sorted(by_case)
    ]
