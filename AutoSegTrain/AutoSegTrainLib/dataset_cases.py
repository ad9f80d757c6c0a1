"""The Train panel's case list: what each case holds, and load, save back, remove.

Why cheap: the list is refilled whenever the dataset changes, and a dataset may hold hundreds of
cases of hundreds of megabytes each. Size and spacing come from the first channel's header (no
voxels read). The labels present need the label file's voxels; label files are small (one byte a
voxel, compressed), and what was found is remembered per file stamp (path, size, time), so a
refill reads only the files that changed.

Editing loop: ``load_dataset_case`` puts the case into the scene (channels + segmentation with
the dataset's label values); ``save_case_edits`` writes the segmentation back as the case's label
file (``case_export.replace_case_label``); ``remove_case`` moves the case's files to ``removed/``
and updates numTraining. Changed or removed raw files are what the engine's freshness check
(autoseg.preprocessing.freshness) compares, so the next training run redoes exactly those
preprocessed cases.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from autoseg.labels import LabelValue
from AutoSegCoreLib.case_export import ExportedCase, replace_case_label
from AutoSegCoreLib.case_loading import LoadedCase, load_case
from AutoSegCoreLib.dataset_folder import (
    DatasetInfo,
    case_files,
    keep_in_removed,
    open_dataset,
    update_num_training,
)
from AutoSegCoreLib.volume_io import VolumeError, read_header

CASE_COLUMNS = ("Case", "Channels", "Size", "Spacing (mm)", "Labels present")


@dataclass(frozen=True)
class CaseSummary:
    """One row of the case list; ``problem`` says what is wrong with the case's files, if any."""

    case_id: str
    channels: int
    size: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    labels_present: tuple[str, ...] = ()
    problem: str = ""

    def row(self) -> tuple[str, ...]:
        """The text of each column of ``CASE_COLUMNS``."""
        size = " x ".join(str(n) for n in self.size)
        spacing = " x ".join(f"{s:.3g}" for s in self.spacing)
        present = ", ".join(self.labels_present) or ("-" if not self.problem else self.problem)
        return (self.case_id, str(self.channels), size, spacing, present)


@functools.lru_cache(maxsize=4096)
def _label_values(path: str, size: int, mtime_ns: int) -> tuple[int, ...]:
    """The values in a label file; the stamp arguments make a changed file a new cache entry."""
    del size, mtime_ns
    return tuple(int(v) for v in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(path))))


def _names_present(label_file: Path, labels: dict[str, LabelValue]) -> tuple[str, ...]:
    stat = label_file.stat()
    values = _label_values(str(label_file), stat.st_size, stat.st_mtime_ns)
    names = {value: name for name, value in labels.items() if isinstance(value, int)}
    return tuple(names.get(v, f"label_{v}") for v in values if v != 0)


def summarize_case(info: DatasetInfo, case_id: str) -> CaseSummary:
    """Channels, size and spacing (from the header) and the labels present in the label file."""
    images, label_file = case_files(info, case_id)
    missing = [p.name for p in (*images, label_file) if not p.is_file()]
    if missing:
        return CaseSummary(case_id, len(images), problem=f"missing {', '.join(missing)}")
    try:
        header = read_header(images[0])
        present = _names_present(label_file, info.labels)
    except (VolumeError, RuntimeError, OSError) as error:
        return CaseSummary(case_id, len(images), problem=f"unreadable: {error}")
    spacing = tuple(float(s) for s in header.GetSpacing())
    return CaseSummary(case_id, len(images), tuple(header.GetSize()), spacing, present)


def summarize_cases(info: DatasetInfo) -> list[CaseSummary]:
    """One summary per case of the dataset, in case order."""
    return [summarize_case(info, case_id) for case_id in info.case_ids]


def load_dataset_case(info: DatasetInfo, case_id: str) -> LoadedCase:
    """The case's channels and segmentation as new nodes named after the case."""
    images, label_file = case_files(info, case_id)
    labels = {n: v for n, v in info.labels.items() if isinstance(v, int)}
    label = label_file if label_file.is_file() else None
    return load_case(images, label, labels, name=case_id, channel_names=info.channel_names)


def save_case_edits(
    info: DatasetInfo,
    case_id: str,
    loaded: LoadedCase,
    segmentation: slicer.vtkMRMLSegmentationNode | None = None,
    *,
    allow_new_labels: bool = False,
) -> ExportedCase:
    """Writes the (edited) segmentation of a loaded case back as the case's label file."""
    node = segmentation if segmentation is not None else loaded.segmentation
    return replace_case_label(
        info, case_id, loaded.volumes[0], node, allow_new_labels=allow_new_labels
    )


def remove_case(info: DatasetInfo, case_id: str) -> DatasetInfo:
    """Moves the case's image and label files to ``removed/`` (never deleted); the new dataset.

    numTraining is rewritten atomically from the image files that remain.
    """
    info = open_dataset(info.folder)
    images, label_file = case_files(info, case_id)
    for path in (*images, label_file):
        if path.is_file():
            keep_in_removed(info, path)
    return update_num_training(info)
