"""Add one training case to a dataset folder: channel volumes and a segmentation from the scene.

The label file must overlay the images voxel for voxel, so it is built on the FIRST volume's grid
and every channel must already share that grid. Each segment is resampled onto that grid with
Slicer's own resampler (``vtkOrientedImageDataResample``, what ``ExportSegmentsToLabelmapNode``
uses, verified equal by a test), padded so that voxels the grid would cut off are counted instead
of silently dropped. Label values come from ``plan_label_values`` (by name, stable across cases),
and the label image is composed in numpy, which also finds overlapping segments: a merged export
would silently let the later segment win. No node is added to the scene, so the user's scene is
unchanged; the storage nodes write nodes that are not in any scene.

Files are written under hidden temporary names and renamed only when all of them were written, so
a failure never leaves half a case; an existing case is never overwritten.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtkmodules.util.numpy_support import vtk_to_numpy

from autoseg.dataset import IMAGES_DIR, LABELS_DIR
from autoseg.errors import AutoSegError
from AutoSegCoreLib.dataset_folder import (
    WRITABLE_FILE_ENDINGS,
    DatasetInfo,
    add_labels,
    case_files,
    keep_in_removed,
    next_case_id,
    open_dataset,
    read_dataset_spec,
    update_num_training,
)
from AutoSegCoreLib.label_mapping import plan_label_values
from AutoSegCoreLib.volume_io import (
    as_array,
    check_channel_volume,
    check_file_on_grid,
    check_same_grid,
    ijk_to_ras_matrix,
    label_map_node,
    read_header,
    write_volume_file,
)

_CASE_ID = re.compile(r'[^/\\:*?"<>|\s.][^/\\:*?"<>|\s]*')
_HARDEN_FIX = (
    "Fix: harden the transform (Data module: right-click the node > Harden transform) or move "
    "the node out of the transform, so that image and label are written in one coordinate system."
)


class CaseExportError(AutoSegError, ValueError):
    """The case cannot be exported; the message names the node/segment/file and the fix."""


class NewLabelsNeedConfirmation(ValueError):
    """The segmentation has names that dataset.json lacks; ask the user, then pass allow_new_labels."""

    def __init__(self, new_names: Sequence[str]) -> None:
        self.new_names = tuple(new_names)
        super().__init__(
            "These segments are not labels of the dataset yet: "
            f"{', '.join(self.new_names)}. Confirm to add them as new labels to dataset.json, "
            "or rename the segments to existing label names."
        )


@dataclass(frozen=True)
class ExportedCase:
    """What was written: files, the value of each segment and the updated dataset."""

    case_id: str
    image_files: tuple[Path, ...]
    label_file: Path
    label_values: dict[str, int]
    dataset: DatasetInfo


@dataclass(frozen=True)
class _SegmentVoxels:
    name: str
    indices: np.ndarray  # sorted flat indices into the reference grid's (K, J, I) array
    outside: int  # voxels of the segment that lie beyond the reference grid


def _check_dataset(info: DatasetInfo) -> None:
    spec = read_dataset_spec(info.folder)
    where = info.folder / "dataset.json"
    if spec.labels.has_regions:
        raise CaseExportError(
            f"{where}: the dataset uses region labels; AutoSegTrain adds cases only to datasets "
            "with one value per label. Fix: choose or create another dataset."
        )
    if spec.explicit_cases is not None:
        raise CaseExportError(
            f'{where}: the dataset lists its cases under "dataset", so files added to imagesTr '
            'would not be used. Fix: add the case by hand, or remove "dataset" from dataset.json.'
        )
    if info.file_ending not in WRITABLE_FILE_ENDINGS:
        raise CaseExportError(
            f'{where}: file_ending "{info.file_ending}" cannot be written from Slicer. Fix: use a '
            f"dataset with one of {list(WRITABLE_FILE_ENDINGS)}."
        )


def _check_volumes(info: DatasetInfo, volumes: Sequence[slicer.vtkMRMLScalarVolumeNode]) -> None:
    channels = ", ".join(f"{i}: {c}" for i, c in enumerate(info.channel_names))
    if len(volumes) != len(info.channel_names):
        given = ", ".join(getattr(v, "GetName", lambda: "?")() for v in volumes) or "none"
        raise CaseExportError(
            f"The dataset has {len(info.channel_names)} channel(s) ({channels}) but "
            f"{len(volumes)} volume(s) were given ({given}). Fix: select one volume per channel, "
            "in this order."
        )
    for index, volume in enumerate(volumes):
        check_channel_volume(volume, index)
    for volume in volumes[1:]:
        check_same_grid(volumes[0], volume)


def _moves_off_world(node: slicer.vtkMRMLTransformableNode) -> bool:
    parent = node.GetParentTransformNode()
    if parent is None:
        return False
    if not parent.IsTransformToWorldLinear():
        return True
    matrix = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(matrix)
    return not np.allclose(as_array(matrix), np.eye(4), atol=1e-9)


def _check_transforms(nodes: Sequence[slicer.vtkMRMLTransformableNode]) -> None:
    moved = [f'"{n.GetName()}"' for n in nodes if _moves_off_world(n)]
    if moved:
        raise CaseExportError(
            f"{', '.join(moved)} are under a non-identity transform. {_HARDEN_FIX}"
        )


def _case_files(info: DatasetInfo, case_id: str | None) -> tuple[str, list[Path]]:
    """The case id and its files (channel images, then the label); refuses any existing file."""
    case_id = next_case_id(info) if case_id is None else case_id
    if not isinstance(case_id, str) or not _CASE_ID.fullmatch(case_id):
        raise CaseExportError(
            f"Case id {case_id!r} is not usable in a file name. Fix: use letters, digits, '-' and "
            "'_' without spaces, e.g. " + next_case_id(info) + "."
        )
    ending = info.file_ending
    files = [
        info.folder / IMAGES_DIR / f"{case_id}_{i:04d}{ending}"
        for i in range(len(info.channel_names))
    ]
    files.append(info.folder / LABELS_DIR / f"{case_id}{ending}")
    existing = [str(p) for p in files if p.exists()]
    if existing or case_id in info.case_ids:
        listed = ", ".join(existing) or f"image files in {IMAGES_DIR}/"
        raise CaseExportError(
            f'Case "{case_id}" already exists ({listed}); nothing was written. Fix: choose '
            f"another case id, e.g. {next_case_id(info)}, or delete the old files first."
        )
    return case_id, files


def _segment_list(node: slicer.vtkMRMLSegmentationNode) -> list[tuple[str, str]]:
    """(segment id, name) in the segmentation's order; the binary labelmap made available."""
    if not isinstance(node, slicer.vtkMRMLSegmentationNode):
        raise CaseExportError(f"{node!r} is not a segmentation. Fix: select a segmentation.")
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    if not ids:
        raise CaseExportError(
            f'Segmentation "{node.GetName()}" has no segments. Fix: segment the structures first.'
        )
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if not segmentation.CreateRepresentation(binary):  # no-op when it exists already
        raise CaseExportError(
            f'Segmentation "{node.GetName()}" cannot be converted to a binary labelmap. Fix: '
            "create the Binary labelmap representation in the Segmentations module."
        )
    return [(sid, segmentation.GetSegment(sid).GetName() or "") for sid in ids]


def _reference_grid(volume: slicer.vtkMRMLScalarVolumeNode) -> slicer.vtkOrientedImageData:
    """Geometry only (no voxels allocated): the grid every segment is resampled onto."""
    grid = slicer.vtkOrientedImageData()
    grid.SetExtent(volume.GetImageData().GetExtent())
    grid.SetImageToWorldMatrix(ijk_to_ras_matrix(volume))
    return grid


def _as_kji(image: vtk.vtkImageData) -> np.ndarray:
    _, _, j0, j1, k0, k1 = image.GetExtent()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, -1)


def _segment_voxels(
    node: slicer.vtkMRMLSegmentationNode,
    segment: tuple[str, str],
    grid: slicer.vtkOrientedImageData,
) -> _SegmentVoxels:
    """The segment on the reference grid, padded so that voxels beyond it are counted, not lost."""
    segment_id, name = segment
    mask = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(segment_id, mask)
    if mask.GetNumberOfPoints() == 0 or mask.GetPointData().GetScalars() is None:
        return _SegmentVoxels(name, np.empty(0, np.intp), 0)
    padded = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        mask, grid, padded, False, True
    ):
        raise CaseExportError(f'Segment "{name}" could not be resampled onto the volume grid.')
    have, want = padded.GetExtent(), grid.GetExtent()
    shape = np.array([want[2 * a + 1] - want[2 * a] + 1 for a in (2, 1, 0)])  # k, j, i
    offset = np.array([have[2 * a] - want[2 * a] for a in (2, 1, 0)])
    coords = np.array(np.nonzero(_as_kji(padded))) + offset[:, None]
    inside = np.all((coords >= 0) & (coords < shape[:, None]), axis=0)
    flat = np.ravel_multi_index(tuple(coords[:, inside]), tuple(shape))
    return _SegmentVoxels(name, flat, int(np.count_nonzero(~inside)))


def _check_coverage(node: slicer.vtkMRMLSegmentationNode, segments: list[_SegmentVoxels]) -> None:
    cut = [f'"{s.name}" ({s.outside} voxels)' for s in segments if s.outside]
    if cut:
        raise CaseExportError(
            f'Segment(s) {", ".join(cut)} of "{node.GetName()}" extend beyond the first '
            "volume and would be cut off. Fix: erase the parts outside the volume, or choose a "
            "volume that covers the whole segmentation."
        )
    if not any(s.indices.size for s in segments):
        raise CaseExportError(
            f'Segmentation "{node.GetName()}" is empty inside the volume. Fix: paint the '
            "structures before adding the case."
        )


def _overlap_pairs(segments: list[_SegmentVoxels]) -> list[str]:
    pairs = []
    for i, first in enumerate(segments):
        for second in segments[i + 1 :]:
            shared = np.intersect1d(first.indices, second.indices, assume_unique=True).size
            if shared:
                pairs.append(f'"{first.name}" and "{second.name}" ({shared} voxels)')
    return pairs


def _compose_label(
    segments: list[_SegmentVoxels], values: dict[str, int], size: int, where: str
) -> np.ndarray:
    """Flat label array; refuses overlap, which a single label value per voxel cannot express."""
    top = max(values.values())
    if top > np.iinfo(np.uint16).max:
        raise CaseExportError(f"Label value {top} does not fit a label file (max 65535).")
    label = np.zeros(size, np.uint8 if top < 256 else np.uint16)
    for segment in segments:
        label[segment.indices] = values[segment.name]
    if np.count_nonzero(label) != sum(s.indices.size for s in segments):
        raise CaseExportError(
            f'Segments of "{where}" overlap: {"; ".join(_overlap_pairs(segments))}. A voxel can '
            "have only one label. Fix: remove the overlap (Segment Editor, masking: overwrite "
            "other segments), then add the case again."
        )
    return label


def _commit(moves: list[tuple[Path, Path]]) -> None:
    """Rename every temporary file to its target; undo all renames if one fails."""
    done: list[Path] = []
    try:
        for temporary, target in moves:
            if target.exists():
                raise CaseExportError(f"{target} appeared while writing; nothing was written.")
            temporary.rename(target)
            done.append(target)
    except BaseException:
        for target in done:
            target.unlink(missing_ok=True)
        raise


def _write_case(nodes: Sequence[slicer.vtkMRMLVolumeNode], files: list[Path]) -> None:
    token = secrets.token_hex(4)
    temporaries = [p.with_name(f".autoseg-{token}-{p.name}") for p in files]
    try:
        for folder in {p.parent for p in files}:
            folder.mkdir(parents=True, exist_ok=True)
        for node, temporary in zip(nodes, temporaries, strict=True):
            write_volume_file(node, temporary)
        _commit(list(zip(temporaries, files, strict=True)))
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def _case_label(
    info: DatasetInfo,
    reference: slicer.vtkMRMLScalarVolumeNode,
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    allow_new_labels: bool,
) -> tuple[np.ndarray, dict[str, int], DatasetInfo]:
    """The label array on ``reference``'s grid, each segment's value, and the dataset after
    adding new label names (only when everything else succeeded)."""
    segments = _segment_list(segmentation_node)
    _check_transforms([reference, segmentation_node])
    plan = plan_label_values([name for _, name in segments], info.labels)  # type: ignore[arg-type]
    if plan.new_names and not allow_new_labels:
        raise NewLabelsNeedConfirmation(plan.new_names)
    grid = _reference_grid(reference)
    voxels = [_segment_voxels(segmentation_node, segment, grid) for segment in segments]
    _check_coverage(segmentation_node, voxels)
    size = reference.GetImageData().GetNumberOfPoints()
    label = _compose_label(voxels, plan.values, size, segmentation_node.GetName())
    if plan.new_names:
        info = add_labels(info, plan.new_names)
        if plan_label_values(list(plan.values), info.labels).values != plan.values:  # type: ignore[arg-type]
            raise CaseExportError(f"{info.folder}: dataset.json changed while adding the case.")
    return label, plan.values, info


def export_case(
    info: DatasetInfo,
    volume_nodes: Sequence[slicer.vtkMRMLScalarVolumeNode],
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    *,
    case_id: str | None = None,
    allow_new_labels: bool = False,
) -> ExportedCase:
    """Writes one training case: a file per channel volume and a label file on the first grid.

    Args:
        info: the dataset; it is re-read from disk, so a stale ``info`` is fine.
        volume_nodes: one volume per dataset channel, in channel order, all on one voxel grid.
        segmentation_node: its segments become labels by name (see ``plan_label_values``).
        case_id: the case id; by default ``next_case_id``.
        allow_new_labels: add segment names dataset.json lacks (after the user confirmed).

    Raises:
        NewLabelsNeedConfirmation: segments with new names and ``allow_new_labels`` is False.
        VolumeError: wrong volumes (not scalar, empty, on different grids), unwritable files.
        CaseExportError: wrong volume count, transforms, existing case, empty, cut or
            overlapping segments (nothing is left behind then).
        LabelMappingError, DatasetFolderError: bad segment names / unusable dataset.
    """
    info = open_dataset(info.folder)
    _check_dataset(info)
    _check_volumes(info, volume_nodes)
    _segment_list(segmentation_node)  # a wrong node is named before the case files are checked
    _check_transforms([*volume_nodes, segmentation_node])
    case_id, files = _case_files(info, case_id)
    label, values, info = _case_label(info, volume_nodes[0], segmentation_node, allow_new_labels)
    _write_case([*volume_nodes, label_map_node(label, volume_nodes[0])], files)
    return ExportedCase(case_id, tuple(files[:-1]), files[-1], values, update_num_training(info))


def replace_case_label(
    info: DatasetInfo,
    case_id: str,
    reference_volume: slicer.vtkMRMLScalarVolumeNode,
    segmentation_node: slicer.vtkMRMLSegmentationNode,
    *,
    allow_new_labels: bool = False,
) -> ExportedCase:
    """Writes the edited segmentation as the label file of an existing case (images unchanged).

    ``reference_volume`` must lie on the case's image grid (the case loaded into the scene). The
    previous label file is kept in ``removed/labelsTr/`` and the new one replaces it in one
    rename, so the case always has a complete label file. The changed file (new size and time)
    makes the engine's freshness check redo this case's preprocessed copy on the next run.

    Raises:
        NewLabelsNeedConfirmation, CaseExportError, VolumeError: as ``export_case``.
    """
    info = open_dataset(info.folder)
    _check_dataset(info)
    images, label_file = case_files(info, case_id)
    check_channel_volume(reference_volume, 0)
    check_file_on_grid(read_header(images[0]), reference_volume, images[0])
    label, values, info = _case_label(info, reference_volume, segmentation_node, allow_new_labels)
    temporary = label_file.with_name(f".autoseg-{secrets.token_hex(4)}-{label_file.name}")
    label_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_volume_file(label_map_node(label, reference_volume), temporary)
        if label_file.exists():
            keep_in_removed(info, label_file, copy=True)
        temporary.replace(label_file)
    finally:
        temporary.unlink(missing_ok=True)
    return ExportedCase(case_id, tuple(images), label_file, values, update_num_training(info))
