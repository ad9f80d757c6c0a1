"""Correct a prediction and add it as a training case of the model's dataset (the annotation loop).

Why here and Qt-free: after Segment the user corrects the result in the Segment Editor and adds
the volume and the corrected segmentation to the dataset the model was trained on, so the next
(warm-started) training learns from it. The panel only wires two clicks to this module; every
step is tested headless with real MRML.

- The dataset: the raw dataset the model's plans name (``plans.json`` ``dataset_name``, the same
  name as the results folder), looked up under the raw roots the panel passes (AutoSeg's raw
  folder, then ``nnUNet_raw``); None when it is not there, so the panel asks for the folder.
- Opening the Segment Editor: its module keeps its selection in the scene's singleton
  ``vtkMRMLSegmentEditorNode`` (singleton tag "SegmentEditor"), which the module reads when it is
  entered; setting segmentation and source volume there is all it takes, and is plain MRML.
- Adding the case: ``AutoSegCoreLib.case_export.export_case``, the same code as the Train module's
  "Add case": segments become labels by name (the dataset's mapping), new names need the user's
  confirmation, and overlapping or cut-off segments are refused; nothing is written then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import slicer

from AutoSegCoreLib.case_export import ExportedCase, export_case
from AutoSegCoreLib.dataset_folder import open_dataset

SEGMENT_EDITOR_TAG = "SegmentEditor"
SEGMENT_EDITOR_MODULE = "SegmentEditor"
DATASET_FILE = "dataset.json"


def find_training_dataset(dataset_name: str, raw_roots: Sequence[Path | None]) -> Path | None:
    """``<raw root>/<dataset_name>`` holding a dataset.json, from the first root that has it."""
    for root in raw_roots:
        if root is None:
            continue
        candidate = Path(root).expanduser() / dataset_name
        if (candidate / DATASET_FILE).is_file():
            return candidate
    return None


def segment_editor_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLSegmentEditorNode:
    """The Segment Editor module's own parameter node (made as the module makes it if absent)."""
    node = scene.GetSingletonNode(SEGMENT_EDITOR_TAG, "vtkMRMLSegmentEditorNode")
    if node is None:
        node = slicer.vtkMRMLSegmentEditorNode()
        node.SetSingletonTag(SEGMENT_EDITOR_TAG)
        node = scene.AddNode(node)
    return node


@dataclass
class Correction:
    """One prediction being corrected: the segmentation and the input volumes (one per channel).

    ``open_editor`` points the Segment Editor at them; ``add_case`` writes them as a new case.
    """

    segmentation: slicer.vtkMRMLSegmentationNode
    volumes: tuple[slicer.vtkMRMLScalarVolumeNode, ...]
    dataset_name: str

    @property
    def still_in_scene(self) -> bool:
        """False once the segmentation or a volume left the scene (closed, deleted)."""
        return all(node.GetScene() is not None for node in (self.segmentation, *self.volumes))

    def open_editor(self) -> slicer.vtkMRMLSegmentEditorNode:
        """Select the segmentation and the first volume in the Segment Editor's parameter node."""
        node = segment_editor_node(self.segmentation.GetScene())
        node.SetAndObserveSegmentationNode(self.segmentation)
        node.SetAndObserveSourceVolumeNode(self.volumes[0])
        return node

    def add_case(self, dataset_folder: Path, *, allow_new_labels: bool = False) -> ExportedCase:
        """Write the volumes and the (corrected) segmentation as the dataset's next case.

        Raises what ``export_case`` raises: NewLabelsNeedConfirmation (ask, then pass
        ``allow_new_labels``), CaseExportError / VolumeError / DatasetFolderError (one line each).
        """
        info = open_dataset(Path(dataset_folder))
        return export_case(
            info, list(self.volumes), self.segmentation, allow_new_labels=allow_new_labels
        )
