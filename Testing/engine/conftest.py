"""Shared fixtures for the engine tests: tiny synthetic raw datasets written with SimpleITK.

``make_dataset(...)`` builds a complete ``DatasetXXX_Name`` folder (dataset.json, imagesTr, labelsTr)
in the test's tmp_path; tests then break exactly one thing to check that it is reported. Arrays are
given in AutoSeg's array-axis order ``(x, y, z)`` (SimpleITK's numpy order) and spacings in the same
order, so what a test writes is what a reader returns.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.paths import DataRoots
from autoseg.planning import PlannerOptions
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)
from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset

ImageFn = Callable[[int, int, tuple[int, ...], np.random.Generator], np.ndarray]
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


@pytest.fixture(autouse=True, scope="session")
def _runtime_note_already_given() -> None:
    """Without the optional CPU runtimes, the first prediction of a process notes once on stderr
    that torch runs the network. Tests check their own command's output, so the process-wide note
    is given before any test runs (test_selection.py tests the note itself)."""
    import contextlib
    import io

    from autoseg.inference.backends import selection

    if not selection.runtime_installed(selection.OPENVINO):
        with contextlib.redirect_stderr(io.StringIO()):
            selection._say_torch_fallback()


def write_image(
    path: Path,
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] | None = None,
    direction: Sequence[float] | None = None,
) -> Path:
    """Write a 3D array (array-axis order) with spacing in the same order; returns the path."""
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing([float(s) for s in spacing][::-1])
    if origin is not None:
        image.SetOrigin([float(o) for o in origin])
    if direction is not None:
        image.SetDirection([float(d) for d in direction])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _label_values(labels: Mapping[str, Any]) -> list[int]:
    values: set[int] = set()
    for value in labels.values():
        values.update(value if isinstance(value, list | tuple) else [value])
    return sorted(v for v in values if v != 0)


def default_label(shape: Sequence[int], values: Sequence[int]) -> np.ndarray:
    """One slab of each foreground value along the first axis (needs shape[0] >= len(values)+2)."""
    seg = np.zeros(shape, dtype=np.uint8)
    for i, value in enumerate(values):
        seg[1 + i, 1:-1, 1:-1] = value
    return seg


class DatasetBuilder:
    """Builds synthetic raw datasets under a root folder (usually the test's tmp_path)."""

    write_image = staticmethod(write_image)

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __call__(
        self,
        name: str = "Dataset999_Synthetic",
        *,
        num_cases: int = 2,
        channels: Sequence[str] = ("MRI",),
        labels: Mapping[str, Any] | None = None,
        shape: Sequence[int] = (8, 8, 8),
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        file_ending: str = ".nii.gz",
        extra_json: Mapping[str, Any] | None = None,
        image_fn: ImageFn | None = None,
        seed: int = 0,
    ) -> Path:
        """Write the dataset; returns its folder.

        Args:
            labels: dataset.json "labels" (default background/1 and 2); every non-zero value that
                occurs in it is painted into each label file.
            extra_json: keys added to (or replacing those of) dataset.json.
            image_fn: ``(case_index, channel_index, shape, rng) -> array`` for custom image content.
        """
        labels = dict(labels or {"background": 0, "a": 1, "b": 2})
        folder = self.root / name
        rng = np.random.default_rng(seed)
        for case in range(num_cases):
            case_id = f"case_{case:03d}"
            for ch in range(len(channels)):
                data = (
                    image_fn(case, ch, tuple(shape), rng)
                    if image_fn
                    else rng.normal(100.0, 10.0, size=tuple(shape)).astype(np.float32)
                )
                write_image(folder / "imagesTr" / f"{case_id}_{ch:04d}{file_ending}", data, spacing)
            seg = default_label(shape, _label_values(labels))
            write_image(folder / "labelsTr" / f"{case_id}{file_ending}", seg, spacing)
        self.write_json(
            folder,
            {
                "channel_names": {str(i): c for i, c in enumerate(channels)},
                "labels": labels,
                "numTraining": num_cases,
                "file_ending": file_ending,
                **(extra_json or {}),
            },
        )
        return folder

    @staticmethod
    def write_json(folder: Path, data: Mapping[str, Any]) -> Path:
        """(Re)write dataset.json of a dataset folder."""
        path = Path(folder) / "dataset.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path

    @staticmethod
    def read_json(folder: Path) -> dict[str, Any]:
        return json.loads((Path(folder) / "dataset.json").read_text(encoding="utf-8"))


@pytest.fixture
def make_dataset(tmp_path: Path) -> DatasetBuilder:
    """Builder for synthetic raw datasets in tmp_path: ``make_dataset(num_cases=3, ...)``."""
    return DatasetBuilder(tmp_path)


@pytest.fixture
def shared_hippocampus() -> Path:
    """The real Dataset004_Hippocampus from ../shared; skips when it is not available."""
    folder = SHARED / "data" / "Dataset004_Hippocampus"
    if not (folder / "dataset.json").is_file():
        pytest.skip(f"shared data not available at {folder}")
    return folder


@pytest.fixture(scope="session")
def tiny_preprocessed(tmp_path_factory: pytest.TempPathFactory) -> DataRoots:
    """Six small CT-like cases, planned and preprocessed for 3d_fullres (built once per session)."""
    root = tmp_path_factory.mktemp("tiny")
    roots = DataRoots(root / "raw", root / "preprocessed", root / "results")
    spec = SyntheticSpec(shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0))
    make_synthetic_dataset(roots.raw, dataset_id=901, name="Tiny", num_cases=6, spec=spec)
    folders = DatasetFolders.resolve(901, roots)
    fingerprint_dataset(folders, 1)
    plans = plan_dataset(folders, PlannerOptions())
    preprocess_configurations(folders, plans.plans_name, ["3d_fullres", "2d"], 1)
    return roots


@pytest.fixture
def private_preprocessed(tiny_preprocessed: DataRoots, tmp_path: Path) -> DataRoots:
    """A copy of the tiny preprocessed data a test may modify (e.g. its splits file)."""
    target = tmp_path / "preprocessed"
    shutil.copytree(tiny_preprocessed.preprocessed, target)
    return DataRoots(tiny_preprocessed.raw, target, tmp_path / "results")
