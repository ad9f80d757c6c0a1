"""A deterministic, CT-like synthetic raw dataset for the demo command and for tests.

Real data cannot ship with the project, yet every stage (integrity check, fingerprint, planning,
preprocessing, training, inference, evaluation) needs a dataset that behaves like a real one:
anisotropic spacing, a non-trivial origin, cases of different sizes, a padded border that
crop-to-nonzero removes, CT intensities with noise, and two foreground classes of very different size
(an organ and a small lesion next to it). Each case is drawn from its own random stream
``(seed, case index)``, so the same seed gives byte-identical files and the first cases do not change
when ``num_cases`` does. Everything is vectorised numpy; 20 default cases take well under a second.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autoseg.atomic import write_json_atomic
from autoseg.conversion_common import refuse_existing, staged_folder
from autoseg.errors import AutoSegError
from autoseg.image_formats import write_sitk
from autoseg.paths import dataset_folder_name

__all__ = ["DEMO_SPEC", "LABELS", "SyntheticSpec", "channel_names", "make_synthetic_dataset"]

#: The label definition of every synthetic dataset.
LABELS = {"background": 0, "organ": 1, "lesion": 2}
_MR_NAMES = ("T2", "T1", "FLAIR", "PD")
_WRITABLE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
# Tissue classes painted into each case; rows of the intensity tables below follow this order.
_AIR, _BODY, _ORGAN, _LESION, _FOV_OUTSIDE, _PADDING = range(6)
# Mean intensity per tissue (air, body, organ, lesion, outside scanner FOV, zero padding) and noise.
_CT_VALUES = np.array([-1000.0, 40.0, 80.0, 150.0, -1024.0, 0.0], dtype=np.float32)
_MR_VALUES = np.array([0.0, 300.0, 500.0, 200.0, 0.0, 0.0], dtype=np.float32)
_NOISE_SIGMA = {"CT": 20.0, "MR": 15.0}
_NOISY = np.array([True, True, True, True, False, False])


@dataclass(frozen=True)
class SyntheticSpec:
    """What the generated images look like.

    Attributes:
        shape: nominal image size ``(z, y, x)`` (numpy order of the SimpleITK image); y and x vary
            by up to ±10% per case.
        spacing: voxel size in SimpleITK ``(x, y, z)`` order; the default is anisotropic.
        num_channels: channels per case: "CT" first, then MR-like contrasts ("T2", "T1", ...).
        seed: base seed; the same seed gives byte-identical datasets.
        file_ending: ``.nii.gz`` (default), ``.nii``, ``.nrrd`` or ``.mha``.
        with_test_cases: extra cases written to imagesTs/ with ground truth in labelsTs/.
        lesion_size: range of the lesion radius as a fraction of the organ's smaller in-plane
            radius, drawn per case (never below 0.7 of the coarsest spacing, so it covers a slice).
    """

    shape: tuple[int, int, int] = (24, 64, 64)
    spacing: tuple[float, float, float] = (0.8, 0.8, 3.0)
    num_channels: int = 1
    seed: int = 0
    file_ending: str = ".nii.gz"
    with_test_cases: int = 0
    lesion_size: tuple[float, float] = (0.4, 0.6)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 4:
            raise AutoSegError(f"SyntheticSpec.shape {self.shape} needs three sizes >= 4.")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise AutoSegError(f"SyntheticSpec.spacing {self.spacing} needs three positive values.")
        if self.num_channels < 1 or self.with_test_cases < 0:
            raise AutoSegError("SyntheticSpec needs num_channels >= 1 and with_test_cases >= 0.")
        if len(self.lesion_size) != 2 or not 0 < self.lesion_size[0] <= self.lesion_size[1]:
            raise AutoSegError(
                f"SyntheticSpec.lesion_size {self.lesion_size} needs 0 < smallest <= largest."
            )
        if self.file_ending not in _WRITABLE_ENDINGS:
            raise AutoSegError(
                f"SyntheticSpec.file_ending {self.file_ending!r} is not supported; "
                f"use one of {list(_WRITABLE_ENDINGS)}."
            )


#: The demo dataset (``autoseg demo``, Slicer's sample data). With the default spec the lesion is
#: 20-115 voxels, one to three 3 mm slices thick, about 0.05 % of the image: the demo's few hundred
#: training iterations learn the organ but never predict any lesion (Dice 0), which makes the demo
#: look broken. Here the lesion radius is 0.6-0.8 of the organ's in-plane radius (about 50-220
#: voxels, three to five slices, about 0.3 % of the image), and the volumes are small (16 x 48 x 48),
#: so a CPU runs those iterations in about a minute. The slices stay twice as thick as the pixels.
DEMO_SPEC = SyntheticSpec(
    shape=(16, 48, 48), spacing=(1.0, 1.0, 2.0), with_test_cases=4, lesion_size=(0.6, 0.8)
)


def channel_names(num_channels: int) -> dict[str, str]:
    """``{"0": "CT", "1": "T2", ...}``; channels beyond the named contrasts are called MR5, MR6, ..."""
    names = ["CT", *_MR_NAMES]
    return {str(i): names[i] if i < len(names) else f"MR{i}" for i in range(num_channels)}


def _case_grid(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[tuple[int, ...], np.ndarray]:
    """Jittered ``(z, y, x)`` shape and a non-trivial physical origin in SimpleITK order."""
    nz, ny, nx = spec.shape
    shape = (nz, *(max(4, round(n * rng.uniform(0.9, 1.1))) for n in (ny, nx)))
    extent = np.array(shape[::-1]) * np.array(spec.spacing)  # mm, (x, y, z)
    origin = -extent / 2 + rng.uniform(-20.0, 20.0, size=3) + np.array([0.0, 0.0, -150.0])
    return shape, origin


def _coordinates(shape: tuple[int, ...], spacing: tuple[float, ...]) -> list[np.ndarray]:
    """Broadcastable physical coordinates (mm, centred on the image) along z, y and x."""
    axes = []
    for axis, (n, step) in enumerate(zip(shape, spacing[::-1], strict=True)):
        values = (np.arange(n, dtype=np.float32) - (n - 1) / 2) * step
        view = [1, 1, 1]
        view[axis] = n
        axes.append(values.reshape(view))
    return axes


def _ellipsoid(axes: list[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean mask of an axis-aligned ellipsoid; centre and radii in (z, y, x) mm."""
    total = sum(((a - c) / r) ** 2 for a, c, r in zip(axes, centre, radii, strict=True))
    return total <= 1.0


def _tissues(
    shape: tuple[int, ...], spec: SyntheticSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue class map and label map ``(z, y, x)``: body, organ, lesion, FOV circle, padding."""
    axes = _coordinates(shape, spec.spacing)
    half = np.array([(n - 1) / 2 * s for n, s in zip(shape, spec.spacing[::-1], strict=True)])
    body_radii = np.array([1e6, half[1] * rng.uniform(0.6, 0.75), half[2] * rng.uniform(0.75, 0.9)])
    body = _ellipsoid(axes, np.zeros(3), body_radii)
    organ_radii = np.array([rng.uniform(0.3, 0.5) * half[0], *rng.uniform(0.2, 0.3, 2) * half[1:]])
    organ_radii = np.maximum(organ_radii, 2.5 * np.array(spec.spacing[::-1]))
    organ_centre = rng.uniform(-0.3, 0.3, 3) * np.array([half[0], *body_radii[1:]])
    organ = _ellipsoid(axes, organ_centre, organ_radii) & body
    lesion_radius = max(
        rng.uniform(*spec.lesion_size) * float(organ_radii[1:].min()), 0.7 * max(spec.spacing)
    )
    direction = rng.normal(size=3)
    offset = direction / np.linalg.norm(direction) * organ_radii * rng.uniform(0.4, 0.9)
    lesion_centre = np.clip(organ_centre + offset, -half + lesion_radius, half - lesion_radius)
    lesion = _ellipsoid(axes, lesion_centre, np.full(3, lesion_radius)) & body
    tissue = np.where(body, _BODY, _AIR).astype(np.uint8)
    tissue[organ] = _ORGAN
    tissue[lesion] = _LESION
    # The scanner's circular field of view leaves the image corners at -1024 ...
    fov = _ellipsoid(axes[1:], np.zeros(2), np.full(2, half[1:].max()))
    tissue[np.broadcast_to(~fov, tissue.shape)] = _FOV_OUTSIDE
    # ... and a zero-padded in-plane border gives crop-to-nonzero something to remove.
    pad = int(rng.integers(1, 4))
    tissue[:, :pad] = tissue[:, -pad:] = tissue[:, :, :pad] = tissue[:, :, -pad:] = _PADDING
    label = np.zeros(shape, dtype=np.uint8)
    label[tissue == _ORGAN] = 1
    label[tissue == _LESION] = 2
    return tissue, label


def _channel_image(tissue: np.ndarray, channel: int, rng: np.random.Generator) -> np.ndarray:
    """Intensities of one channel: CT in HU (int16) for channel 0, float MR-like contrast else."""
    kind = "CT" if channel == 0 else "MR"
    table = _CT_VALUES if kind == "CT" else _MR_VALUES * (1.0 + 0.15 * channel)
    noise = rng.normal(0.0, _NOISE_SIGMA[kind], size=tissue.shape).astype(np.float32)
    image = table[tissue] + np.where(_NOISY[tissue], noise, 0.0).astype(np.float32)
    return np.round(image).astype(np.int16) if kind == "CT" else image


def _to_sitk(array: np.ndarray, spec: SyntheticSpec, origin: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spec.spacing])
    image.SetOrigin([float(o) for o in origin])
    return image


def _write_case(
    folder: Path, case_id: str, spec: SyntheticSpec, index: int, split: tuple[str, str]
) -> None:
    """Draw case ``index`` from its own stream and write its channel files and label."""
    rng = np.random.default_rng([spec.seed, index])
    shape, origin = _case_grid(spec, rng)
    tissue, label = _tissues(shape, spec, rng)
    images_dir, labels_dir = (folder / name for name in split)
    for channel in range(spec.num_channels):
        image = _to_sitk(_channel_image(tissue, channel, rng), spec, origin)
        write_sitk(image, images_dir / f"{case_id}_{channel:04d}{spec.file_ending}")
    write_sitk(_to_sitk(label, spec, origin), labels_dir / f"{case_id}{spec.file_ending}")


def _dataset_json(name: str, num_cases: int, spec: SyntheticSpec) -> dict[str, object]:
    return {
        "channel_names": channel_names(spec.num_channels),
        "labels": dict(LABELS),
        "numTraining": num_cases,
        "file_ending": spec.file_ending,
        "name": name,
        "description": "Synthetic CT-like dataset: body, organ (1) and lesion (2); made by AutoSeg.",
        "licence": "CC0 (synthetic data)",
        "synthetic": {
            "seed": spec.seed,
            "shape_zyx": list(spec.shape),
            "spacing_xyz": list(spec.spacing),
            "num_test_cases": spec.with_test_cases,
            "lesion_size": list(spec.lesion_size),
        },
    }


def _make_room(target: Path, overwrite: bool) -> None:
    if target.exists() and overwrite:
        if not (target / "dataset.json").is_file() and any(target.iterdir()):
            raise AutoSegError(
                f"{target} exists but is not a dataset (no dataset.json); refusing to delete it. "
                "Fix: remove it yourself or choose another id/name."
            )
        shutil.rmtree(target)
    refuse_existing(target)


def make_synthetic_dataset(
    raw_root: Path,
    dataset_id: int = 900,
    name: str = "DemoCT",
    num_cases: int = 20,
    spec: SyntheticSpec | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``raw_root/DatasetXXX_Name`` with dataset.json, imagesTr/ and labelsTr/.

    Training cases are ``case_000 ...``; with ``spec.with_test_cases`` the following case numbers go
    to imagesTs/ and labelsTs/ (ground truth, so later stages can evaluate predictions).

    Args:
        raw_root: the raw data root.
        dataset_id: id of the new dataset.
        name: name part of the folder name.
        num_cases: number of training cases (>= 1).
        spec: image size, spacing, channels, seed, file ending and test cases; defaults if None.
        overwrite: replace an existing dataset folder of exactly this name.

    Raises:
        AutoSegError: the folder (or another dataset with this id) exists and overwrite is False.
    """
    spec = spec or SyntheticSpec()
    if num_cases < 1:
        raise AutoSegError(f"num_cases is {num_cases}; a dataset needs at least one case.")
    target = Path(raw_root) / dataset_folder_name(dataset_id, name)
    _make_room(target, overwrite)
    with staged_folder(target) as staging:
        folders = ["imagesTr", "labelsTr"] + (
            ["imagesTs", "labelsTs"] if spec.with_test_cases else []
        )
        for sub in folders:
            (staging / sub).mkdir()
        for index in range(num_cases + spec.with_test_cases):
            split = ("imagesTr", "labelsTr") if index < num_cases else ("imagesTs", "labelsTs")
            _write_case(staging, f"case_{index:03d}", spec, index, split)
        write_json_atomic(staging / "dataset.json", _dataset_json(name, num_cases, spec))
    return target
