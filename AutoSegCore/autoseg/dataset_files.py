"""Which files of a dataset folder belong to it, and what the ones that do not explain.

A file whose name does not end with dataset.json's ``file_ending`` is ignored (with a warning),
so that notes or thumbnails in ``imagesTr/`` do no harm. When such files make the case count fall
short of ``numTraining``, the count error says so, instead of advising to lower ``numTraining``.
"""

from __future__ import annotations

from pathlib import Path

from autoseg.errors import Problem

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
