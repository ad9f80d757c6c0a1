"""Put one case's files (channel images and, if any, its label file) into the scene.

Both modules show cases: the Train panel loads a dataset case for review or correction, the
Sample Data entry loads the synthetic demo case, the self-tests load synthetic cases. The channels
are read without flipping (``volume_io.read_volume_file``) and must share one grid; the label file
becomes a segmentation on the first channel's grid with one segment per label name and the
dataset's values (``segmentation_import``), so saving it back writes the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import slicer

from AutoSegCoreLib.segmentation_import import import_label_file
from AutoSegCoreLib.volume_io import VolumeError, check_same_grid, read_volume_file


@dataclass(frozen=True)
class LoadedCase:
    """The nodes made for one case: a volume per channel, and the segmentation (or None)."""

    volumes: tuple[slicer.vtkMRMLScalarVolumeNode, ...]
    segmentation: slicer.vtkMRMLSegmentationNode | None


def _remove_nodes(nodes: Sequence[slicer.vtkMRMLDisplayableNode]) -> None:
    """Take nodes out of the scene again, with their display nodes (no leftovers)."""
    for node in nodes:
        scene = node.GetScene()
        displays = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        for item in [node, *displays]:
            if scene is not None and item is not None:
                scene.RemoveNode(item)


def load_case(
    image_files: Sequence[Path],
    label_file: Path | None,
    labels: Mapping[str, int],
    *,
    name: str,
    channel_names: Sequence[str] = (),
) -> LoadedCase:
    """New nodes ``<name>`` (one channel) or ``<name> <channel>``, and ``<name> segmentation``.

    Nothing is left in the scene when a file cannot be read or lies on another grid.
    """
    if not image_files:
        raise VolumeError(f"case {name}: no image file to load. Check the dataset's imagesTr.")
    volumes: list[slicer.vtkMRMLScalarVolumeNode] = []
    try:
        for index, path in enumerate(image_files):
            channel = channel_names[index] if index < len(channel_names) else str(index)
            title = name if len(image_files) == 1 else f"{name} {channel}"
            volumes.append(read_volume_file(Path(path), title))
            check_same_grid(volumes[0], volumes[-1])
        segmentation = None
        if label_file is not None:
            segmentation = import_label_file(
                Path(label_file), volumes[0], labels, name=f"{name} segmentation"
            )
    except BaseException:
        _remove_nodes(volumes)
        raise
    return LoadedCase(tuple(volumes), segmentation)
