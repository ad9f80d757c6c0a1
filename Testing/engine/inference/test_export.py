"""Export: preprocessed logits back to label maps, probabilities and files in the source geometry."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg import inference
from autoseg.errors import AutoSegError
from autoseg.image_io import SimpleITKIO, Tiff3DIO
from autoseg.inference.export import (
    logits_to_probabilities,
    logits_to_segmentation,
    resample_to_next_stage,
    save_probabilities,
    write_segmentation,
)
from autoseg.labels import LabelSpec
from autoseg.plans import PreprocessingSpec, ResamplingSpec
from autoseg.preprocessing import CaseRecipe, preprocess_case

LABELS = LabelSpec.from_json({"background": 0, "a": 1, "b": 2})
REGIONS = LabelSpec.from_json({"background": 0, "whole": [1, 2], "core": 2}, [1, 2])
LINEAR = ResamplingSpec(order=1)


def _volume(shape=(20, 24, 28), spacing=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(1, x, y, z) image with a zero border and two blobs (sizes in mm, so spacing-independent)."""
    rng = np.random.default_rng(0)
    image = np.zeros((1, *shape), np.float32)
    inner = tuple(slice(2, s - 2) for s in shape)
    image[(0, *inner)] = rng.normal(100, 10, [s - 4 for s in shape])
    grid = np.meshgrid(*[(np.arange(n) - n / 2) * d for n, d in zip(shape, spacing, strict=True)])
    x, y, z = (g.transpose(1, 0, 2) for g in grid)  # meshgrid's xy indexing swaps the first two
    seg = np.zeros((1, *shape), np.uint8)
    seg[0][(x / 7) ** 2 + (y / 8) ** 2 + (z / 9) ** 2 < 1] = 1
    seg[0][(np.abs(x - 2) < 3) & (np.abs(y + 1) < 3) & (np.abs(z) < 4)] = 2
    return image, seg


def _recipe(spacing, transpose=(0, 1, 2), labels=LABELS, is_2d=False) -> CaseRecipe:
    spec = PreprocessingSpec(
        spacing=tuple(spacing), normalization_schemes=("ZScore",), use_mask_for_norm=(False,)
    )
    return CaseRecipe(spec, tuple(transpose), (), labels, is_2d)


def _one_hot(seg: np.ndarray, values) -> np.ndarray:
    """'Logits' that make the argmax the label (-1, outside the mask, becomes background)."""
    return np.stack([np.where(seg == v, 5.0, -5.0) for v in values]).astype(np.float32)


def _dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    x, y = a == value, b == value
    return 2 * float(np.sum(x & y)) / float(np.sum(x) + np.sum(y))


@pytest.mark.parametrize("transpose", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_round_trip_without_resampling_is_exact(transpose) -> None:
    image, seg = _volume()
    case = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe((1, 1, 1), transpose))
    assert (
        case.properties["shape_before_cropping"]
        != case.properties["shape_after_cropping_and_before_resampling"]
    )
    logits = _one_hot(case.seg[0], LABELS.all_labels)
    result = logits_to_segmentation(logits, case.properties, LINEAR, LABELS)
    assert result.dtype == np.uint8
    assert result.flags.c_contiguous
    np.testing.assert_array_equal(result, seg[0])


def test_round_trip_with_anisotropic_resampling_and_transpose() -> None:
    spacing = (1.0, 0.8, 4.0)  # file order; transposed (4, 1, 0.8): separate-z resampling
    image, seg = _volume((22, 26, 9), spacing)
    recipe = _recipe((2.5, 1.3, 1.1), transpose=(2, 0, 1))
    case = preprocess_case(image, seg, spacing, recipe)
    assert case.seg.shape[1:] != tuple(
        case.properties["shape_after_cropping_and_before_resampling"]
    )
    logits = _one_hot(case.seg[0], LABELS.all_labels)
    result = logits_to_segmentation(logits, case.properties, LINEAR, LABELS)
    assert result.shape == seg.shape[1:]
    for value in (1, 2):
        assert _dice(result, seg[0], value) > 0.85
    assert np.all(result[image[0] == 0] == 0)  # outside the crop box stays background


def test_2d_configuration_exports_slice_wise() -> None:
    image, seg = _volume((12, 24, 28), (3.0, 1.0, 1.0))
    for spacing, exact in (((1.0, 1.0), True), ((0.7, 0.7), False)):
        case = preprocess_case(image, seg, (3.0, 1.0, 1.0), _recipe(spacing, is_2d=True))
        cropped = case.properties["shape_after_cropping_and_before_resampling"]
        assert case.seg.shape[1] == cropped[0]  # slices are never resampled
        logits = _one_hot(case.seg[0], (0, 1, 2))
        result = logits_to_segmentation(logits, case.properties, LINEAR, LABELS)
        assert result.shape == seg.shape[1:]
        if exact:
            np.testing.assert_array_equal(result, seg[0])
        else:
            assert _dice(result, seg[0], 1) > 0.9


def test_region_mode_thresholds_and_paints_in_order() -> None:
    image, seg = _volume()
    case = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe((1, 1, 1), labels=REGIONS))
    pre = case.seg[0]
    logits = np.stack([np.where(np.isin(pre, r), 3.0, -3.0) for r in REGIONS.foreground_regions])
    result = logits_to_segmentation(logits.astype(np.float32), case.properties, LINEAR, REGIONS)
    np.testing.assert_array_equal(result, seg[0])
    probabilities = logits_to_probabilities(logits, case.properties, LINEAR, REGIONS)
    assert probabilities.shape == (2, *seg.shape[1:])
    np.testing.assert_allclose(probabilities[1][seg[0] == 2], 1 / (1 + math.exp(-3)), rtol=1e-6)
    box = case.properties["bbox_used_for_cropping"]
    assert np.all(probabilities[:, : box[0][0]] == 0)


def test_label_values_need_not_be_consecutive() -> None:
    labels = LabelSpec.from_json({"background": 0, "a": 1, "b": 300})
    image, seg = _volume()
    seg = seg.astype(np.uint16)
    seg[seg == 2] = 300
    case = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe((1, 1, 1), labels=labels))
    result = logits_to_segmentation(
        _one_hot(case.seg[0], labels.all_labels), case.properties, LINEAR, labels
    )
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result, seg[0])


def test_probabilities_are_uncropped_transposed_back_and_consistent() -> None:
    image, seg = _volume()
    case = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe((1.3, 1.0, 0.9), (1, 2, 0)))
    logits = _one_hot(case.seg[0], LABELS.all_labels)
    probabilities = logits_to_probabilities(logits, case.properties, LINEAR, LABELS)
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (3, *seg.shape[1:])
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, rtol=1e-5)
    outside = image[0] == 0  # the zero border: outside the crop box
    assert outside.any()
    assert np.all(probabilities[0][outside] == 1.0)
    assert np.all(probabilities[1:, outside] == 0.0)
    segmentation = logits_to_segmentation(logits, case.properties, LINEAR, LABELS)
    np.testing.assert_array_equal(np.argmax(probabilities, axis=0), segmentation)


def test_resample_to_next_stage_matches_the_next_stage_grid() -> None:
    image, seg = _volume()
    low = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe((2.0, 2.0, 2.0), (2, 0, 1)))
    full = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe((1.0, 1.0, 1.0), (2, 0, 1)))
    logits = _one_hot(low.seg[0], LABELS.all_labels)
    for next_stage in ((1.0, 1.0, 1.0), SimpleNamespace(spacing=(1.0, 1.0, 1.0))):
        result = resample_to_next_stage(logits, low.properties, next_stage, LABELS)
        assert result.shape == full.seg.shape[1:]
        reference = np.maximum(full.seg[0], 0)
        assert _dice(result, reference, 1) > 0.85
        assert _dice(result, reference, 2) > 0.7
    with pytest.raises(AutoSegError, match="3D configuration"):
        resample_to_next_stage(logits, low.properties, (1.0, 1.0), LABELS)


def _oblique_image(path: Path, array: np.ndarray, spacing) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing][::-1])
    angle = math.radians(30)
    c, s = math.cos(angle), math.sin(angle)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    image.SetOrigin((-12.5, 40.25, 7.0))
    sitk.WriteImage(image, str(path))


@pytest.mark.parametrize("ending", [".nii.gz", ".mha"])
def test_written_segmentation_keeps_the_input_geometry(tmp_path, ending) -> None:
    image, seg = _volume((20, 24, 14), (1.0, 0.9, 2.0))
    source, label = tmp_path / f"img{ending}", tmp_path / f"lab{ending}"
    _oblique_image(source, image[0], (1.0, 0.9, 2.0))
    _oblique_image(label, seg[0], (1.0, 0.9, 2.0))
    reader = SimpleITKIO()
    data, geometry = reader.read_images([source])
    labels, _ = reader.read_seg(label)
    recipe = _recipe((2.0, 1.0, 0.9), transpose=(2, 0, 1))
    case = preprocess_case(data, labels, geometry.spacing, recipe, geometry.to_json())
    segmentation = logits_to_segmentation(
        _one_hot(case.seg[0], (0, 1, 2)), case.properties, LINEAR, LABELS
    )
    target = tmp_path / "out" / f"case_001{ending}"
    write_segmentation(segmentation, case.properties, target, "SimpleITKIO")
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    written, original = sitk.ReadImage(str(target)), sitk.ReadImage(str(source))
    assert written.GetSize() == original.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), original.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), original.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), original.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), seg[0])


def test_tiff_writer_keeps_its_sidecar(tmp_path) -> None:
    seg = np.zeros((3, 4, 5), np.uint8)
    seg[1, 1:3, 2:4] = 2
    identity = np.eye(3).ravel().tolist()
    properties = {
        "geometry": {"spacing": [2.0, 0.5, 0.5], "origin": [0.0] * 3, "direction": identity}
    }
    target = tmp_path / "case_7.tif"
    write_segmentation(seg, properties, target, "Tiff3DIO")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_7.json", "case_7.tif"]
    array, geometry = Tiff3DIO().read_seg(target)
    np.testing.assert_array_equal(array[0], seg)
    assert geometry.spacing == (2.0, 0.5, 0.5)


def test_write_segmentation_reports_bad_input(tmp_path) -> None:
    seg = np.zeros((2, 2, 2), np.uint8)
    geometry = {
        "spacing": [1.0] * 3,
        "origin": [0.0] * 3,
        "direction": [1.0, 0, 0, 0, 1, 0, 0, 0, 1],
    }
    with pytest.raises(AutoSegError, match="NoSuchIO"):
        write_segmentation(seg, {"geometry": geometry}, tmp_path / "a.nii.gz", "NoSuchIO")
    with pytest.raises(AutoSegError, match="no image geometry"):
        write_segmentation(seg, {"geometry": None}, tmp_path / "a.nii.gz", "SimpleITKIO")
    assert not any(tmp_path.iterdir())


def test_export_reports_bad_logits_and_properties() -> None:
    image, seg = _volume()
    case = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe((1, 1, 1)))
    logits = _one_hot(case.seg[0], (0, 1))
    with pytest.raises(AutoSegError, match="do not fit 3 outputs"):
        logits_to_segmentation(logits, case.properties, LINEAR, LABELS)
    properties = {k: v for k, v in case.properties.items() if k != "target_spacing"}
    with pytest.raises(AutoSegError, match="target_spacing"):
        logits_to_probabilities(_one_hot(case.seg[0], (0, 1, 2)), properties, LINEAR, LABELS)


def test_save_probabilities_writes_npz_and_json_without_pickle(tmp_path) -> None:
    probabilities = np.random.default_rng(0).random((3, 4, 5, 6)).astype(np.float32)
    properties = {
        "spacing": [np.float64(1.5), 1.0, 2.0],
        "shape_before_cropping": (4, 5, 6),
        "class_locations": {"1": np.array([[1, 2, 3]], np.int32)},
        "count": np.int64(7),
    }
    npz_path, json_path = save_probabilities(probabilities, properties, tmp_path / "case.1")
    assert (npz_path.name, json_path.name) == ("case.1.npz", "case.1.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.1.json", "case.1.npz"]
    with np.load(npz_path, allow_pickle=False) as stored:
        assert list(stored.keys()) == ["probabilities"]
        np.testing.assert_array_equal(stored["probabilities"], probabilities)
    assert json.loads(json_path.read_text(encoding="utf-8")) == {
        "spacing": [1.5, 1.0, 2.0],
        "shape_before_cropping": [4, 5, 6],
        "class_locations": {"1": [[1, 2, 3]]},
        "count": 7,
    }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_inference_never_imports_training_and_export_is_torch_free() -> None:
    package = Path(inference.__file__).parent
    for path in package.glob("*.py"):
        assert not any(m.startswith("autoseg.training") for m in _imports(path)), path.name
    assert not any(m.split(".")[0] == "torch" for m in _imports(package / "export.py"))


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_argmax_is_numpys_with_the_first_maximum_winning_ties(channels: int) -> None:
    from autoseg.inference.export import _argmax

    rng = np.random.default_rng(channels)
    scores = rng.integers(-2, 3, size=(channels, 6, 7, 8)).astype(np.float32)  # many exact ties
    index = _argmax(scores, np.uint8)
    assert index.dtype == np.uint8
    np.testing.assert_array_equal(index, np.argmax(scores, axis=0))
