"""Configuration ensembles: probabilities averaged per case, written with each case's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.image_formats import Geometry
from autoseg.inference.ensemble import EnsembleTarget, ensemble_folders
from autoseg.inference.export import save_probabilities
from autoseg.labels import LabelSpec

LABELS = LabelSpec.from_json({"background": 0, "a": 1, "b": 2})
GEOMETRY = Geometry(
    spacing=(3.0, 1.0, 0.5),
    origin=(1.0, 2.0, 3.0),
    direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
)


def _folder(tmp_path, name, probabilities) -> None:
    for case, value in probabilities.items():
        save_probabilities(value, {"geometry": GEOMETRY.to_json()}, tmp_path / name / case)


def _target(tmp_path, **kwargs) -> EnsembleTarget:
    return EnsembleTarget(tmp_path / "out", LABELS, ".nii.gz", "SimpleITKIO", **kwargs)


def _probabilities(seed: int) -> np.ndarray:
    raw = np.random.default_rng(seed).random((3, 4, 5, 6)).astype(np.float32)
    return raw / raw.sum(0, keepdims=True)


def test_average_of_probabilities_with_the_case_geometry(tmp_path) -> None:
    a, b = _probabilities(0), _probabilities(1)
    _folder(tmp_path, "m1", {"case_1": a})
    _folder(tmp_path, "m2", {"case_1": b})
    written = ensemble_folders([tmp_path / "m1", tmp_path / "m2"], _target(tmp_path, save_npz=True))
    image = sitk.ReadImage(str(written[0]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), np.argmax((a + b) / 2, axis=0))
    assert image.GetSpacing() == pytest.approx((0.5, 1.0, 3.0))
    assert image.GetOrigin() == pytest.approx(GEOMETRY.origin)
    assert image.GetDirection() == pytest.approx(GEOMETRY.direction)
    with np.load(tmp_path / "out" / "case_1.npz") as saved:
        np.testing.assert_allclose(saved["probabilities"], (a + b) / 2, rtol=1e-6)


def test_folders_must_hold_the_same_cases(tmp_path) -> None:
    _folder(tmp_path, "m1", {"case_1": _probabilities(0), "case_2": _probabilities(1)})
    _folder(tmp_path, "m2", {"case_1": _probabilities(2)})
    with pytest.raises(AutoSegError, match="case_2"):
        ensemble_folders([tmp_path / "m1", tmp_path / "m2"], _target(tmp_path))


def test_inputs_are_never_overwritten_and_need_npz(tmp_path) -> None:
    _folder(tmp_path, "m1", {"case_1": _probabilities(0)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutoSegError, match="must not be an input"):
        ensemble_folders([tmp_path / "m1", tmp_path / "out"], _target(tmp_path))
    with pytest.raises(AutoSegError, match=r"no \.npz probabilities"):
        ensemble_folders([tmp_path / "m1", tmp_path / "empty"], _target(tmp_path))
    with pytest.raises(AutoSegError, match="at least two"):
        ensemble_folders([tmp_path / "m1"], _target(tmp_path))
