"""Turn Medical Segmentation Decathlon and nnU-Net v1 task folders into AutoSeg raw datasets.

MSD tasks store all channels of a case in one 4D NIfTI file; AutoSeg (like nnU-Net v2) wants one 3D
file per channel, ``CASE_XXXX.nii.gz``. nnU-Net v1 tasks already have that layout and are copied.
Both only differ from a v2 dataset in dataset.json, which :mod:`autoseg.conversion_common` converts;
it also provides the never-overwrite and build-then-rename rules used here.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autoseg.atomic import write_json_atomic
from autoseg.conversion_common import (
    NIFTI,
    convert_dataset_json,
    read_task_json,
    refuse_existing,
    staged_folder,
)
from autoseg.errors import AutoSegError
from autoseg.image_formats import read_error, read_header, read_sitk, write_sitk
from autoseg.parallel import map_cases
from autoseg.paths import dataset_folder_name, dataset_id

__all__ = ["convert_msd", "convert_old_dataset", "split_channels"]

_TASK_NAME = re.compile(r"Task(\d+)_(.+)")
_CHANNEL_FILE = re.compile(r"(.+)_\d{4}" + re.escape(NIFTI))


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _nifti_files(folder: Path) -> list[Path]:
    """NIfTI files of a folder, sorted, without macOS ``._`` resource forks and other hidden files."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(NIFTI) and not p.name.startswith(".")
    )


def _case_id(path: Path) -> str:
    return path.name[: -len(NIFTI)]


@dataclass(frozen=True)
class _MsdCase:
    """One MSD image (and label, for training cases) and where its converted files go."""

    image: Path
    label: Path | None
    images_out: Path
    labels_out: Path | None


def split_channels(image_path: Path, out_folder: Path, case_id: str) -> int:
    """Write ``CASE_XXXX.nii.gz`` per channel; returns the number of channels written.

    3D files are copied byte for byte. For 4D files every volume becomes one 3D image carrying the
    spatial (first three) part of the spacing, origin and direction, so channels overlay exactly.
    """
    header = read_header(image_path)
    if header is None:
        read_sitk(image_path)  # raises the precise read error
        raise read_error(image_path, "cannot be read")
    if header.GetDimension() == 3:
        shutil.copy2(image_path, out_folder / f"{case_id}_0000{NIFTI}")
        return 1
    image = read_sitk(image_path)
    if image.GetDimension() != 4 or image.GetNumberOfComponentsPerPixel() != 1:
        raise AutoSegError(
            f"{image_path}: expected a 3D or 4D scalar image, got {image.GetDimension()}D. "
            "Fix: store every case as a 3D or 4D NIfTI file."
        )
    volumes = sitk.GetArrayFromImage(image)  # (channel, z, y, x)
    direction = np.asarray(image.GetDirection()).reshape(4, 4)[:3, :3].ravel()
    for channel, volume in enumerate(volumes):
        part = sitk.GetImageFromArray(volume)
        part.SetSpacing(image.GetSpacing()[:3])
        part.SetOrigin(image.GetOrigin()[:3])
        part.SetDirection(tuple(float(v) for v in direction))
        write_sitk(part, out_folder / f"{case_id}_{channel:04d}{NIFTI}")
    return len(volumes)


def _convert_msd_case(case: _MsdCase) -> int:
    """Worker: split one image into channel files and copy its label; returns the channel count."""
    case_id = _case_id(case.image)
    channels = split_channels(case.image, case.images_out, case_id)
    if case.label is not None and case.labels_out is not None:
        shutil.copy2(case.label, case.labels_out / case.label.name)
    return channels


def _msd_cases(task_folder: Path, staging: Path) -> tuple[list[_MsdCase], int]:
    """All conversion jobs (training first, then test) and the number of training cases."""
    images = _nifti_files(task_folder / "imagesTr")
    if not images:
        raise AutoSegError(
            f"{task_folder / 'imagesTr'} holds no {NIFTI} images; this is not an MSD task folder. "
            "Fix: pass a TaskXX_Name folder with imagesTr/, labelsTr/ and dataset.json."
        )
    labels = {p.name: p for p in _nifti_files(task_folder / "labelsTr")}
    missing = [p.name for p in images if p.name not in labels]
    if missing:
        raise AutoSegError(
            f"{task_folder / 'labelsTr'} has no label for {missing[:3]} ({len(missing)} in all). "
            "Fix: add the labels; for nnU-Net v1 folders (CASE_0000 images) use convert_old_dataset."
        )
    folders = [staging / name for name in ("imagesTr", "labelsTr", "imagesTs")]
    for folder in folders:
        folder.mkdir()
    cases = [_MsdCase(p, labels[p.name], folders[0], folders[1]) for p in images]
    tests = [_MsdCase(p, None, folders[2], None) for p in _nifti_files(task_folder / "imagesTs")]
    if not tests:
        folders[2].rmdir()
    return cases + tests, len(cases)


def _check_channels(cases: list[_MsdCase], counts: list[int], expected: int) -> None:
    for case, count in zip(cases, counts, strict=True):
        if count != expected:
            raise AutoSegError(
                f"{case.image} has {count} channel(s) but dataset.json lists {expected} modalities. "
                "Fix: make the image and the modality list agree."
            )


def convert_msd(
    task_folder: Path, raw_root: Path, overwrite_id: int | None = None, num_processes: int = 1
) -> Path:
    """Convert a Medical Segmentation Decathlon ``TaskXX_Name`` folder to ``DatasetXXX_Name``.

    Args:
        task_folder: the MSD task folder (dataset.json, imagesTr/, labelsTr/, optional imagesTs/).
        raw_root: the raw data root that receives the new dataset folder.
        overwrite_id: dataset id to use instead of the task number.
        num_processes: worker processes (spawn) for splitting the images; 1 works in-process.

    Returns:
        The new dataset folder.

    Raises:
        AutoSegError: bad input, or a dataset with that name or id already exists.
    """
    task_folder = Path(task_folder)
    match = _TASK_NAME.fullmatch(task_folder.name)
    if match is None:
        raise AutoSegError(
            f"{task_folder}: the folder name is not an MSD task name; expected TaskXX_Name, "
            "e.g. Task04_Hippocampus. Fix: keep the original MSD folder name."
        )
    data = read_task_json(task_folder)
    identifier = int(match.group(1)) if overwrite_id is None else overwrite_id
    target = Path(raw_root) / dataset_folder_name(identifier, match.group(2))
    refuse_existing(target)
    converted = convert_dataset_json(data, task_folder / "dataset.json", 0)  # fail early
    with staged_folder(target) as staging:
        cases, converted["numTraining"] = _msd_cases(task_folder, staging)
        counts = map_cases(_convert_msd_case, cases, num_processes, stage="convert")
        _check_channels(cases, counts, len(converted["channel_names"]))
        write_json_atomic(staging / "dataset.json", converted)
    return target


def _old_training_cases(task_folder: Path) -> int:
    images = _nifti_files(task_folder / "imagesTr")
    wrong = [p.name for p in images if not _CHANNEL_FILE.fullmatch(p.name)]
    if not images or wrong:
        detail = f"{wrong[:3]} are not named CASE_XXXX{NIFTI}" if wrong else "holds no images"
        raise AutoSegError(
            f"{task_folder / 'imagesTr'} {detail}; this is not an nnU-Net v1 task. "
            "Fix: for MSD folders (one 4D file per case) use convert_msd."
        )
    cases = {_CHANNEL_FILE.fullmatch(p.name).group(1) for p in images}  # type: ignore[union-attr]
    labels = {_case_id(p) for p in _nifti_files(task_folder / "labelsTr")}
    missing = sorted(cases - labels)
    if missing:
        raise AutoSegError(
            f"{task_folder / 'labelsTr'} has no label for cases {missing[:3]} ({len(missing)} in "
            "all). Fix: add the missing label files."
        )
    return len(cases)


def convert_old_dataset(task_folder: Path, raw_root: Path, new_name: str) -> Path:
    """Copy an nnU-Net v1 ``TaskXXX_Name`` folder to ``raw_root/new_name`` with a v2 dataset.json.

    Args:
        task_folder: the v1 task (imagesTr/ with CASE_XXXX files, labelsTr/, optional imagesTs/).
        raw_root: the raw data root.
        new_name: the new folder name, ``DatasetXXX_Name``.

    Raises:
        AutoSegError: bad name or input, or a dataset with that name or id already exists.
    """
    task_folder = Path(task_folder)
    try:
        number = dataset_id(new_name)
        valid = dataset_folder_name(number, new_name.split("_", 1)[1]) == new_name
    except AutoSegError:
        valid = False
    if not valid:
        raise AutoSegError(
            f"'{new_name}' is not a valid new dataset name; expected DatasetXXX_Name with a 3-digit "
            "id and no spaces or path separators, e.g. Dataset104_Liver."
        )
    data = read_task_json(task_folder)
    target = Path(raw_root) / new_name
    refuse_existing(target)
    where = task_folder / "dataset.json"
    converted = convert_dataset_json(data, where, _old_training_cases(task_folder))
    with staged_folder(target) as staging:
        for name in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            files = _nifti_files(task_folder / name)
            if files:
                (staging / name).mkdir()
            for file in files:
                shutil.copy2(file, staging / name / file.name)
        write_json_atomic(staging / "dataset.json", converted)
    return target
