"""Turn the engine's label file into a segmentation node that lines up with the input volume.

Why build the segments directly instead of loading the file: Slicer's file loaders name segments
``Segment_<value>``/``Label_<value>``, pick random colours, need temporary labelmap and colour-table
nodes, and (with the default ForceRightHanded reading) flip left-handed grids. Here the file is read
with SimpleITK (no flipping) and its grid checked against the input volume by
``AutoSegCoreLib.volume_io``, and the voxels are put on the input volume's exact IJK-to-RAS matrix
(the file's float32 NIfTI header would round it).
All segments share one labelmap layer holding the file's values: segment ``name`` has label value
``labels[name]``, so exporting or saving (.seg.nrrd) keeps the dataset's label values.

Decisions:
- One segment per dataset label, also for labels absent from this prediction, so the user sees the
  model's full class list in a stable order (dataset.json order) and can paint a missed structure
  into its (empty) segment. Values in the file that the dataset does not name get ``label_<value>``.
- Colours come from a fixed palette indexed by label value, so a class has the same colour in
  every case and for every model of a dataset; beyond the palette, hues step by the golden ratio.
- The segmentation gets the input's parent transform and is placed next to the input in the
  subject hierarchy; nothing else (no temporary node, no colour table) is added to the scene.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

from autoseg.errors import AutoSegError
from AutoSegCoreLib.volume_io import read_label_array

# Well separated colours (Kelly's colours of maximum contrast without white, black, grey and the
# darkest olive), vivid ones first: labels 1..18 get these, in this order.
PALETTE_HEX = (
    "BE0032", "008856", "0067A5", "F3C300", "875692", "F38400", "A1CAF1", "E68FAC", "8DB600",
    "604E97", "F99379", "B3446C", "DCD300", "882D17", "C2B280", "F6A600", "654522", "E25822",
)  # fmt: skip
_GOLDEN = 0.6180339887498949


class SegmentationImportError(AutoSegError, ValueError):
    """A label file that cannot become the segmentation of the given volume."""


def label_color(value: int) -> tuple[float, float, float]:
    """The fixed RGB colour (0..1) of a label value; distinct for different values."""
    if 1 <= value <= len(PALETTE_HEX):
        text = PALETTE_HEX[value - 1]
        red, green, blue = (int(text[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
        return red, green, blue
    hue = (value * _GOLDEN) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.65, 0.9)


def _segment_list(labels: Mapping[str, int], array: np.ndarray) -> list[tuple[str, int]]:
    """(name, value) of every dataset label, then of unnamed values found in the file."""
    named = [(str(name), int(value)) for name, value in labels.items() if int(value) != 0]
    values = [value for _, value in named]
    if len(set(values)) != len(values):
        raise SegmentationImportError(f"label values must be unique, got {dict(labels)}.")
    extra = sorted(set(np.unique(array).tolist()) - {0, *values})
    return named + [(f"label_{value}", int(value)) for value in extra]


def _oriented_labelmap(array: np.ndarray, reference) -> slicer.vtkOrientedImageData:
    """The (K, J, I) array as an oriented image on the reference volume's exact geometry."""
    fits_uchar = array.size == 0 or array.max() <= np.iinfo(np.uint8).max
    data = np.ascontiguousarray(array, dtype=np.uint8 if fits_uchar else np.int32)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(data.shape[2], data.shape[1], data.shape[0])
    scalars = numpy_support.numpy_to_vtk(data.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def _add_segments(segmentation_node, image, segments: list[tuple[str, int]]) -> None:
    """One segment per (name, value), all sharing ``image`` as their labelmap layer."""
    segmentation = segmentation_node.GetSegmentation()
    representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    for name, value in segments:
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(*label_color(value))
        segment.SetLabelValue(value)
        segment.AddRepresentation(representation, image)
        segment_id = name if segmentation.GetSegment(name) is None else ""
        if not segmentation.AddSegment(segment, segment_id):
            raise SegmentationImportError(f"could not add segment '{name}' (value {value}).")


def _place_in_hierarchy(node, reference) -> None:
    """The same parent in the subject hierarchy as ``reference`` (e.g. its patient or study)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    reference_item = hierarchy.GetItemByDataNode(reference)
    parent = hierarchy.GetSceneItemID()
    if reference_item:
        parent = hierarchy.GetItemParent(reference_item)
    item = hierarchy.GetItemByDataNode(node)
    if item:  # the Slicer application creates items for new nodes; headless MRML does not
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)


def _new_segmentation_node(reference, name: str):
    scene = reference.GetScene()
    if scene is None:
        raise SegmentationImportError(f"volume '{reference.GetName()}' is not in a scene.")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    # The transform first: the reference geometry is taken in the segmentation's coordinates,
    # so under the volume's own transform it is the volume's exact (local) grid.
    transform = reference.GetParentTransformNode()
    node.SetAndObserveTransformNodeID(None if transform is None else transform.GetID())
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), reference.GetID())
    return node


def _remove_node(node) -> None:
    """Take a half-built node out again, with its display nodes (no leftovers in the scene)."""
    scene = node.GetScene()
    displays = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    scene.RemoveNode(node)
    for display in displays:
        if display is not None:
            scene.RemoveNode(display)


def import_label_file(
    label_file: Path,
    reference_volume: slicer.vtkMRMLScalarVolumeNode,
    labels: Mapping[str, int],
    *,
    name: str,
) -> slicer.vtkMRMLSegmentationNode:
    """A new segmentation node (never replacing one) from a label file on the volume's grid.

    ``labels`` maps segment names to the values in the file (background 0 is skipped). The node
    is named ``name``, or ``name_1``... when a node of that name exists.
    """
    array = read_label_array(Path(label_file), reference_volume)
    segments = _segment_list(labels, array)
    image = _oriented_labelmap(array, reference_volume)
    node = _new_segmentation_node(reference_volume, name)
    try:
        was_modifying = node.StartModify()
        _add_segments(node, image, segments)
        _place_in_hierarchy(node, reference_volume)
        node.EndModify(was_modifying)
    except Exception:
        _remove_node(node)
        raise
    return node


# ------------------------------------------------------------------- into an existing segmentation


def _check_target(target: slicer.vtkMRMLSegmentationNode, reference) -> None:
    """The chosen segmentation must be in the volume's scene, under the volume's transform."""
    if target.GetScene() is None or target.GetScene() is not reference.GetScene():
        raise SegmentationImportError(
            f"segmentation '{target.GetName()}' is not in the scene of volume "
            f"'{reference.GetName()}'. Choose another segmentation, or a new one."
        )
    if _transform_id(target) != _transform_id(reference):
        raise SegmentationImportError(
            f"segmentation '{target.GetName()}' and volume '{reference.GetName()}' are under "
            "different parent transforms, so the result would not line up. Put both under the "
            "same transform, or write the result into a new segmentation."
        )


def _transform_id(node) -> str | None:
    transform = node.GetParentTransformNode()
    return None if transform is None else transform.GetID()


def _put_segment(segmentation, name: str, value: int, image) -> None:
    """Replace the segment called ``name`` (keeping its ID, colour and place) or append one."""
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.SetLabelValue(value)
    representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segment.AddRepresentation(representation, image)
    old_id = segmentation.GetSegmentIdBySegmentName(name)
    if old_id:
        segment.SetColor(*segmentation.GetSegment(old_id).GetColor())
        following = segmentation.GetSegmentIndex(old_id) + 1
        before = ""
        if following < segmentation.GetNumberOfSegments():
            before = segmentation.GetNthSegmentID(following)
        segmentation.RemoveSegment(old_id)
        added = segmentation.AddSegment(segment, old_id, before)
    else:
        segment.SetColor(*label_color(value))
        added = segmentation.AddSegment(
            segment, name if segmentation.GetSegment(name) is None else ""
        )
    if not added:
        raise SegmentationImportError(f"could not write segment '{name}' (value {value}).")


def import_label_file_into(
    label_file: Path,
    reference_volume: slicer.vtkMRMLScalarVolumeNode,
    labels: Mapping[str, int],
    target: slicer.vtkMRMLSegmentationNode,
) -> slicer.vtkMRMLSegmentationNode:
    """Write a label file into an existing segmentation node and return it.

    Why: users keep structures from other tools in one segmentation and want the model's result
    next to them. A segment whose name is a label's name is replaced (its ID, colour and place in
    the list kept, so the Segment Editor's selection stays valid); other segments are kept as they
    are; labels the node lacks are appended. Each written segment gets its own labelmap layer on
    the volume's grid holding its label value, so the kept segments' layers are never touched.
    """
    array = read_label_array(Path(label_file), reference_volume)
    _check_target(target, reference_volume)
    segments = _segment_list(labels, array)
    segmentation = target.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        target.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    was_modifying = target.StartModify()
    try:
        for name, value in segments:
            mask = np.where(array == value, array, 0)
            _put_segment(segmentation, name, value, _oriented_labelmap(mask, reference_volume))
    finally:
        target.EndModify(was_modifying)
    return target
