"""Export: turn logits on the preprocessed grid back into label maps on the original image grid.

Preprocessing transposed, cropped and resampled the image and recorded each step in the case's
properties (all shapes and the crop box in transposed axis order, ``spacing`` in the file's order).
Export undoes the steps in reverse: the logits are resampled (linear, nearest across slices when
anisotropic) to the cropped shape *before* they become labels, because interpolating class scores
keeps boundaries smooth where interpolating labels would staircase. Labels are then pasted into the
crop box of an all-background volume and transposed back to the reader's axis order.

Label mode takes the argmax over channels (channel ``i`` is ``labels.all_labels[i]``); region mode
thresholds each sigmoid at 0.5 (logit > 0) and paints ``regions_class_order`` in order, later regions
winning. Files are written atomically; probabilities go to ``CASE.npz`` + ``CASE.json`` (no pickle).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from autoseg.atomic import atomic_path, write_json_atomic
from autoseg.errors import AutoSegError
from autoseg.geometry import compute_new_shape
from autoseg.image_io import READER_WRITERS, Geometry
from autoseg.labels import LabelSpec
from autoseg.plans import ConfigurationPlan, ResamplingSpec
from autoseg.preprocessing.resampling import PROBABILITIES_SPEC, resample_probabilities

_REQUIRED = (
    "spacing",
    "transpose_forward",
    "target_spacing",
    "shape_before_cropping",
    "bbox_used_for_cropping",
    "shape_after_cropping_and_before_resampling",
)


def _check(logits: np.ndarray, properties: Mapping[str, Any], labels: LabelSpec) -> None:
    missing = [key for key in _REQUIRED if key not in properties]
    if missing:
        raise AutoSegError(
            f"Export: case properties lack {missing}. Fix: preprocess the case again with this "
            "version of AutoSeg (the properties record how to undo preprocessing)."
        )
    spatial = len(properties["shape_before_cropping"])
    if logits.ndim != spatial + 1 or logits.shape[0] != labels.num_segmentation_heads:
        raise AutoSegError(
            f"Export: logits of shape {logits.shape} do not fit {labels.num_segmentation_heads} "
            f"outputs over {spatial} spatial axes. Fix: predict with the model of this dataset."
        )


def _original_spacing(properties: Mapping[str, Any]) -> list[float]:
    """Spacing of the cropped, not yet resampled array (transposed order)."""
    return [float(properties["spacing"][a]) for a in properties["transpose_forward"]]


def _to_cropped_grid(
    logits: np.ndarray, properties: Mapping[str, Any], resampling: ResamplingSpec
) -> np.ndarray:
    return resample_probabilities(
        logits,
        properties["shape_after_cropping_and_before_resampling"],
        properties["target_spacing"],
        _original_spacing(properties),
        resampling,
    )


def _label_dtype(top: int) -> type[np.unsignedinteger]:
    return np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16


def _argmax(scores: np.ndarray, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """``np.argmax(scores, axis=0)`` (first maximum wins) straight into ``dtype``.

    One pass per channel over contiguous memory: numpy's argmax across the leading axis copies the
    whole array into channel-last order and returns int64, which on a CT-sized case cost more time
    and memory than all the rest of the export (bench/predict.py).
    """
    best = scores[0].copy()
    index = np.zeros(best.shape, dtype=dtype)
    for channel in range(1, scores.shape[0]):
        wins = scores[channel] > best  # strict: on ties the earlier channel keeps the voxel
        np.copyto(index, channel, where=wins)
        np.copyto(best, scores[channel], where=wins)
    return index


def _segment(logits: np.ndarray, labels: LabelSpec) -> np.ndarray:
    """Label values per voxel from per-channel logits ``(K, ...)`` (argmax or region thresholds)."""
    if not labels.has_regions:
        values = np.asarray(labels.all_labels)
        index = _argmax(logits, _label_dtype(len(values) - 1))
        if np.array_equal(values, np.arange(len(values))):
            return index
        return values.astype(_label_dtype(int(values.max())))[index]
    order = labels.regions_class_order
    if order is None:
        raise AutoSegError(
            'Export: labels contain regions but no "regions_class_order". '
            "Fix: add regions_class_order to dataset.json."
        )
    seg = np.zeros(logits.shape[1:], dtype=_label_dtype(max(order, default=0)))
    for channel, value in enumerate(order):
        seg[logits[channel] > 0] = value  # sigmoid(x) > 0.5 exactly when x > 0
    return seg


def probabilities_to_segmentation(probabilities: np.ndarray, labels: LabelSpec) -> np.ndarray:
    """Label map from per-channel probabilities (argmax, or > 0.5 per region in
    ``regions_class_order``): what averaged ensemble probabilities are turned into."""
    shifted = probabilities - 0.5 if labels.has_regions else probabilities
    return _segment(np.asarray(shifted), labels)


def _uncrop(cropped: np.ndarray, properties: Mapping[str, Any], background: Any) -> np.ndarray:
    """Paste ``(..., *cropped)`` into its crop box and transpose back to the reader's axis order.

    ``background`` is the fill per leading index (a scalar, or an array broadcast over the box).
    """
    spatial = len(properties["shape_before_cropping"])
    lead = cropped.shape[: cropped.ndim - spatial]
    full = np.empty((*lead, *properties["shape_before_cropping"]), dtype=cropped.dtype)
    full[...] = background
    box = tuple(slice(int(a), int(b)) for a, b in properties["bbox_used_for_cropping"])
    full[(..., *box)] = cropped
    backward = np.argsort(properties["transpose_forward"])
    return np.ascontiguousarray(full.transpose([*range(len(lead)), *(len(lead) + backward)]))


def logits_to_segmentation(
    logits: np.ndarray,
    properties: Mapping[str, Any],
    resampling: ResamplingSpec,
    labels: LabelSpec,
) -> np.ndarray:
    """Label map in the original image's array order and shape (uint8, uint16 from label 256).

    Args:
        logits: ``(K, *preprocessed_shape)`` network output for the preprocessed case.
        properties: the case's properties from :func:`autoseg.preprocessing.preprocess_case`.
        resampling: the configuration's probability resampling (``resampling_probabilities``).
        labels: the dataset's labels (argmax in label mode, thresholds in region mode).
    """
    logits = np.asarray(logits)
    _check(logits, properties, labels)
    segmentation = _segment(_to_cropped_grid(logits, properties, resampling), labels)
    return _uncrop(segmentation, properties, 0)


def logits_to_probabilities(
    logits: np.ndarray,
    properties: Mapping[str, Any],
    resampling: ResamplingSpec,
    labels: LabelSpec,
) -> np.ndarray:
    """Float32 ``(K, *original_shape)``: softmax (label mode) or sigmoid (region mode) per channel.

    Outside the crop box everything is background: probability 1 for the background channel in
    label mode, 0 for every region in region mode.
    """
    logits = np.asarray(logits)
    _check(logits, properties, labels)
    resampled = _to_cropped_grid(logits, properties, resampling)
    fill = np.zeros((resampled.shape[0],) + (1,) * (resampled.ndim - 1), dtype=np.float32)
    if labels.has_regions:
        probabilities = special.expit(resampled).astype(np.float32, copy=False)
    else:
        probabilities = resampled - resampled.max(axis=0, keepdims=True)  # a new array
        np.exp(probabilities, out=probabilities)
        probabilities /= probabilities.sum(axis=0, keepdims=True)
        fill[labels.all_labels.index(0)] = 1.0
    return _uncrop(probabilities, properties, fill)


def resample_to_next_stage(
    logits: np.ndarray,
    current_properties: Mapping[str, Any],
    next_stage: ConfigurationPlan | Sequence[float],
    labels: LabelSpec,
    *,
    resampling: ResamplingSpec = PROBABILITIES_SPEC,
) -> np.ndarray:
    """Segmentation ``(x, y, z)`` on the next cascade stage's preprocessed grid.

    Both stages crop the same box, so the next stage's shape follows from the cropped shape and its
    spacing (anything with a ``spacing``, like a ``ConfigurationPlan``, or the spacing itself, in
    transposed order) exactly as preprocessing computes it.
    """
    logits = np.asarray(logits)
    _check(logits, current_properties, labels)
    spacing = [float(s) for s in getattr(next_stage, "spacing", next_stage)]
    original = _original_spacing(current_properties)
    if len(spacing) != len(original):
        raise AutoSegError(
            f"Export: next stage spacing {spacing} does not match the case's {len(original)} axes. "
            "Fix: the cascade's next stage must be a 3D configuration."
        )
    cropped = current_properties["shape_after_cropping_and_before_resampling"]
    shape = compute_new_shape(cropped, original, spacing)
    resampled = resample_probabilities(
        logits, shape, current_properties["target_spacing"], spacing, resampling
    )
    return _segment(resampled, labels)


def write_segmentation(
    segmentation: np.ndarray,
    properties: Mapping[str, Any],
    output_file: Path,
    reader_writer_name: str,
) -> None:
    """Write a label map with the source image's geometry, atomically.

    The writer works in a temporary folder next to the target; companion files (a TIFF's spacing
    sidecar) are moved first and the segmentation last, so a visible file is always complete.
    """
    factory = READER_WRITERS.get(reader_writer_name)
    if factory is None:
        raise AutoSegError(
            f"Export: image reader/writer {reader_writer_name!r} is unknown. "
            f"Fix: use one of {sorted(READER_WRITERS)} (plans 'image_reader_writer')."
        )
    if properties.get("geometry") is None:
        raise AutoSegError(
            f"Export: the properties of {Path(output_file).name} hold no image geometry. "
            "Fix: preprocess with the source image's geometry (preprocess_case(geometry=...))."
        )
    geometry = Geometry.from_json(properties["geometry"])
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output_file.name}.", dir=output_file.parent) as tmp:
        staged = Path(tmp) / output_file.name
        factory().write_seg(np.asarray(segmentation), staged, geometry)
        for extra in sorted(p for p in Path(tmp).iterdir() if p != staged):
            extra.replace(output_file.parent / extra.name)
        staged.replace(output_file)


def _jsonable(value: Any) -> Any:
    """Properties as plain JSON types (numpy scalars and arrays, tuples and paths converted)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def save_probabilities(
    probabilities: np.ndarray, properties: Mapping[str, Any], output_base: Path
) -> tuple[Path, Path]:
    """Write ``<base>.npz`` (key ``probabilities``, float32) and ``<base>.json`` (properties).

    ``output_base`` is the path without ending (``folder / case_id``); returns both paths.
    """
    base = Path(output_base)
    npz_path = base.parent / f"{base.name}.npz"
    json_path = base.parent / f"{base.name}.json"
    with atomic_path(npz_path, suffix=".npz") as temporary:
        np.savez_compressed(temporary, probabilities=np.asarray(probabilities, dtype=np.float32))
    write_json_atomic(json_path, _jsonable(properties))
    return npz_path, json_path
