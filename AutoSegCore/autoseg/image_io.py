"""Image readers/writers: the contract, the registry and the automatic choice.

A reader turns the channel files of a case into a float32 array ``(c, x, y, z)`` and a
:class:`Geometry`; the matching writer stores a segmentation ``(x, y, z)`` with exactly that geometry,
so predictions overlay their images in any viewer. Which reader a dataset uses is decided once from
its ``file_ending`` (and an example image), or forced by ``overwrite_image_reader_writer`` in
dataset.json. The concrete formats live in :mod:`autoseg.image_formats`.

nnU-Net dataset.json files may name ``NibabelIO`` or ``NibabelIOWithReorient``. We map both to our
SimpleITK reader: they handle the same NIfTI files, and SimpleITK keeps the NIfTI geometry exactly
(spacing, origin and direction round-trip unchanged), so the written segmentations land where the
images are. The array axis order equals nnU-Net's NibabelIO (which transposes to SimpleITK's order);
we do not reproduce nibabel's RAS reorientation, which only matters for mixing models across tools.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.image_formats import (
    Geometry,
    NaturalImage2DIO,
    SimpleITKIO,
    Tiff3DIO,
    read_error,
    read_sitk,
    seg_to_sitk,
    sitk_geometry,
    sitk_to_channels,
    write_sitk,
)

__all__ = [
    "READER_WRITERS",
    "Geometry",
    "ImageReaderWriter",
    "NaturalImage2DIO",
    "SimpleITKIO",
    "SimpleITKIOWithReorient",
    "Tiff3DIO",
    "choose_reader_writer",
    "read_error",
    "supported_file_endings",
]

_TARGET_ORIENTATION = "RAS"


@runtime_checkable
class ImageReaderWriter(Protocol):
    """What every format provides; other modules code against this, never a concrete class."""

    name: str
    file_endings: tuple[str, ...]

    def can_read(self, path: Path) -> bool: ...

    def read_image(self, path: Path) -> tuple[np.ndarray, Geometry]: ...

    def read_images(self, paths: Sequence[Path]) -> tuple[np.ndarray, Geometry]: ...

    def read_seg(self, path: Path) -> tuple[np.ndarray, Geometry]: ...

    def write_seg(self, seg: np.ndarray, path: Path, geometry: Geometry) -> None: ...


class SimpleITKIOWithReorient(SimpleITKIO):
    """SimpleITKIO that reorients 3D images to RAS on read and back to the file's frame on write.

    Useful when a dataset mixes acquisition orientations. The returned geometry keeps the file's own
    origin and direction (so writing restores them exactly) and the spacing of the reoriented array.
    """

    name = "SimpleITKIOWithReorient"

    def _load(self, path: Path, is_seg: bool) -> tuple[np.ndarray, Geometry]:
        image = read_sitk(path)
        if image.GetDimension() != 3:
            return sitk_to_channels(image, path), sitk_geometry(image)
        reoriented = sitk.DICOMOrient(image, _TARGET_ORIENTATION)
        geometry = Geometry(reoriented.GetSpacing()[::-1], image.GetOrigin(), image.GetDirection())
        return sitk_to_channels(reoriented, path), geometry

    def write_seg(self, seg: np.ndarray, path: Path, geometry: Geometry) -> None:
        """Undo the read-time reorientation, then stamp the file's exact geometry back on."""
        if geometry.is_2d:
            super().write_seg(seg, path, geometry)
            return
        # The reoriented direction depends only on the original one, so a tiny probe finds it.
        probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)
        probe.SetDirection(geometry.direction)
        image = seg_to_sitk(seg, geometry, Path(path))
        image.SetDirection(sitk.DICOMOrient(probe, _TARGET_ORIENTATION).GetDirection())
        code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(geometry.direction)
        restored = sitk.DICOMOrient(image, code)
        restored.SetOrigin(geometry.origin)
        restored.SetDirection(geometry.direction)
        write_sitk(restored, Path(path))


#: Registry name -> factory. Auto-selection only considers the first three (in ``_AUTO_ORDER``).
READER_WRITERS: dict[str, Callable[[], ImageReaderWriter]] = {
    "NaturalImage2DIO": NaturalImage2DIO,
    "SimpleITKIO": SimpleITKIO,
    "Tiff3DIO": Tiff3DIO,
    "SimpleITKIOWithReorient": SimpleITKIOWithReorient,
    "NibabelIO": SimpleITKIO,  # same NIfTI files and exact geometry; see the module docstring
    "NibabelIOWithReorient": SimpleITKIO,
}
_AUTO_ORDER = ("NaturalImage2DIO", "SimpleITKIO", "Tiff3DIO")
_LOSSY_ENDINGS = (".jpg", ".jpeg")  # refused like nnU-Net: labels must survive storage exactly


def supported_file_endings() -> tuple[str, ...]:
    """Every file ending some auto-selectable reader handles, in selection order, no duplicates."""
    endings: dict[str, None] = {}
    for key in _AUTO_ORDER:
        endings.update(dict.fromkeys(READER_WRITERS[key]().file_endings))
    return tuple(endings)


def choose_reader_writer(
    file_ending: str, example_file: Path | None = None, override: str | None = None
) -> ImageReaderWriter:
    """Pick the reader/writer for a dataset.

    Args:
        file_ending: the dataset's ``file_ending`` (e.g. ``".nii.gz"``).
        example_file: a training image; when given, the reader must also be able to open it.
        override: ``overwrite_image_reader_writer`` from dataset.json; ``"None"`` means no override.

    Raises:
        AutoSegError: unknown override, or no reader supports the ending / opens the example.
    """
    if override and override != "None":
        factory = READER_WRITERS.get(override)
        if factory is None:
            # nnU-Net falls back to the automatic choice only when it lacks the class; a custom
            # reader it has would read differently from any of ours, so we refuse instead.
            raise AutoSegError(
                f"dataset.json: overwrite_image_reader_writer {override!r} is unknown. "
                f"Fix: use one of {sorted(READER_WRITERS)}, or remove the key to choose the reader "
                "from the file ending (what nnU-Net does when it lacks that class)."
            )
        return factory()
    ending = file_ending.lower()
    for key in _AUTO_ORDER:
        candidate = READER_WRITERS[key]()
        if ending not in candidate.file_endings:
            continue
        if example_file is None or candidate.can_read(Path(example_file)):
            return candidate
    where = f" that can open {example_file}" if example_file is not None else ""
    lossy = " (JPEG is lossy: it would alter label values)" if ending in _LOSSY_ENDINGS else ""
    raise AutoSegError(
        f"No image reader for file_ending {file_ending!r}{where}{lossy}. "
        f"Fix: convert the images to one of {list(supported_file_endings())} "
        f"(readers: {list(_AUTO_ORDER)})."
    )
