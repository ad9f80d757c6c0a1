"""Which files of a dataset folder belong to it, and what the ones that do not explain.

A file whose name does not end with dataset.json's ``file_ending`` is ignored (with a warning),
so that notes or thumbnails in ``imagesTr/`` do no harm. When such files make the case count fall
short of ``numTraining``, the count error says so, instead of advising to lower ``numTraining``.

Which channel files a case needs (``CASE_XXXX<ending>``, also for prediction inputs): the channel
count comes from ``channel_names``, and the files supply channels in file order, a file holding
several components (an RGB PNG: 3, RGBA: 4, a 4D NIfTI: its volumes) supplying that many. So both
spellings of a colour image are valid: one grey file per channel, or one RGB file per case (the
way nnU-Net's own natural-image datasets store it, with ``channel_names`` R, G, B).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from autoseg.errors import Problem
from autoseg.image_formats import header_channels

#: ``CASE_XXXX`` (the name without the file ending): the case id and the 4-digit channel index.
CHANNEL_FILE = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")

# Tiff3D datasets keep their spacing in CASE.json files next to the images and labels.
SIDECAR_ENDINGS = (".tif", ".tiff")


def is_foreign(path: Path, ending: str) -> bool:
    """A visible file that does not end with the dataset's file ending (and is no TIFF sidecar)."""
    return (
        not path.name.startswith(".")
        and path.is_file()
        and not path.name.endswith(ending)
        and not (path.suffix == ".json" and ending in SIDECAR_ENDINGS)
    )


def list_files(folder: Path, ending: str) -> tuple[list[Path], list[Problem]]:
    """The files of ``folder`` with the dataset's ending, and a finding for every other entry."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and path.name.endswith(ending):
            msg = "is a folder, where an image file of this name is expected."
            fix = "Replace the folder with the image file."
            problems.append(Problem("error", str(path), msg, fix))
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.name.endswith(ending):
            files.append(path)
        elif is_foreign(path, ending):
            msg = f'does not end with the file_ending "{ending}" of dataset.json; it is ignored.'
            fix = f'Convert it to "{ending}", move it out of {folder.name}/, or fix "file_ending".'
            problems.append(Problem("warning", str(path), msg, fix))
    return files, problems


def count_problem(
    declared: int, found: int, ending: str, images_dir: Path | None, where: str
) -> Problem:
    """numTraining disagrees with the cases found; files with another ending usually explain it.

    Args:
        images_dir: the folder the cases were found in (None for cases listed in dataset.json).
        where: dataset.json, named when no file explains the difference.
    """
    msg = f'"numTraining" is {declared} but {found} training case(s) were found.'
    foreign: list[Path] = []
    if images_dir is not None and images_dir.is_dir():
        foreign = sorted(p for p in images_dir.iterdir() if is_foreign(p, ending))
    if found < declared and foreign:
        msg += (
            f" {len(foreign)} file(s) in {foreign[0].parent.name}/ are ignored because they do not end "
            f'with "{ending}", e.g. {foreign[0].name}.'
        )
        fix = f'Convert those files to "{ending}" (or, if every file has another ending, set '
        fix += '"file_ending" to it).'
        return Problem("error", str(foreign[0]), msg, fix)
    if found == 0:
        fix = f"Add the cases to imagesTr/ as CASE_0000{ending} (one file per channel)."
    else:
        fix = f'Set "numTraining": {found} or add the missing cases.'
    return Problem("error", where, msg, fix)


def channel_file_gaps(files: Mapping[int, Path], num_channels: int) -> tuple[list[int], list[int]]:
    """The (missing, extra) channel indices of one case's files ``{channel index: path}``.

    The files must be ``_0000`` up to some ``_{k-1}`` without gaps, ``k <= num_channels``. With fewer
    files than channels their headers must add up to the channels (an RGB file for R, G, B); when
    they supply fewer, the missing files are counted as grey ones. Headers are read only then, so a
    dataset with one file per channel costs nothing; a header that cannot be read leaves the count
    to the reader (which names the file).
    """
    extra = sorted(i for i in files if i >= num_channels)
    present = sorted(i for i in files if i < num_channels)
    missing = [i for i in range((present[-1] if present else 0) + 1) if i not in files]
    if missing or len(present) == num_channels:
        return missing, extra
    counts = [header_channels(files[i]) for i in present]
    if None in counts:
        return [], extra
    supplied = sum(c for c in counts if c is not None)
    return list(range(len(present), len(present) + num_channels - supplied)), extra
