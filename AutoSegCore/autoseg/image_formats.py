"""The concrete image readers/writers behind :mod:`autoseg.image_io`.

Every reader turns a file into a channel-first float32 array ``(c, x, y, z)`` plus a :class:`Geometry`
that is enough to write a segmentation back with exactly the same spacing, origin and direction.
All formats go through SimpleITK (no extra dependency); the classes differ only in how they map a
file's dimensionality and metadata onto that contract. Users see :class:`AutoSegError` for any
unreadable or unwritable file, never a raw SimpleITK ``RuntimeError``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.truncation import ensure_complete

#: Spacing given to the artificial first axis of 2D data, so that it is never resampled or patched.
FAKE_2D_SPACING = 999.0
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")


@dataclass(frozen=True)
class Geometry:
    """Where an image lies in space; kept verbatim so a written segmentation overlays its image.

    Attributes:
        spacing: voxel size per axis of the ``(c, x, y, z)`` array (SimpleITK spacing reversed; for 2D
            files a large fake value first).
        origin: the file's own physical origin, in SimpleITK order (2 or 3 values).
        direction: the file's own direction matrix, row-major flattened (4 or 9 values).
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        # Coerce to plain float tuples so equality, hashing and JSON behave the same for every caller.
        for name in ("spacing", "origin", "direction"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        dim = len(self.origin)
        if len(self.spacing) != 3 or dim not in (2, 3) or len(self.direction) != dim * dim:
            raise AutoSegError(
                f"Invalid geometry: spacing needs 3 values, origin 2 or 3 and direction origin² "
                f"(got {len(self.spacing)}, {dim}, {len(self.direction)}). Fix: re-read the image."
            )

    @property
    def is_2d(self) -> bool:
        """True when the file itself is 2D (the array still has a singleton first spatial axis)."""
        return len(self.origin) == 2

    def to_json(self) -> dict[str, list[float]]:
        """Plain lists; Python's float repr round-trips through JSON exactly."""
        return {
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Geometry:
        """Inverse of :meth:`to_json`; a missing key is a user-facing error."""
        missing = [k for k in ("spacing", "origin", "direction") if k not in data]
        if missing:
            raise AutoSegError(
                f"Geometry JSON lacks {missing}. Fix: regenerate the file that stored this geometry."
            )
        return cls(tuple(data["spacing"]), tuple(data["origin"]), tuple(data["direction"]))


def read_error(path: Path, problem: object, fix: str = "") -> AutoSegError:
    """Build the one-line error for a file that cannot be read or written."""
    fix = fix or "check that the file exists, is complete and is a supported image format."
    return AutoSegError(f"{path}: {problem}. Fix: {fix}")


def read_sitk(path: Path) -> sitk.Image:
    """Read a whole image, turning SimpleITK failures into :class:`AutoSegError`.

    A file that ends early is refused first: ITK would silently fill it with zeros.
    """
    path = Path(path)
    if not path.is_file():
        raise read_error(path, "file not found", "check the path and the dataset's file_ending.")
    ensure_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        ensure_complete(path, thorough=True)  # names damaged compressed data precisely
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise read_error(path, f"cannot be read ({first})") from exc


def read_header(path: Path) -> sitk.ImageFileReader | None:
    """Header-only read for cheap checks; ``None`` when the file is missing or unreadable."""
    try:
        if not Path(path).is_file():
            return None
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except Exception:  # can_read must never raise, whatever the backend throws.
        return None
    return reader


def header_channels(path: Path) -> int | None:
    """How many channels a file supplies, from its header alone (the rule of ``sitk_to_channels``):
    its pixel components (an RGB PNG gives 3, RGBA 4), or the volumes of a 4D file; ``None`` when
    the header is unreadable. Lets a folder scan tell an RGB case from a missing channel file
    without reading any voxels."""
    reader = read_header(path)
    if reader is None:
        return None
    if reader.GetNumberOfComponents() > 1:
        return int(reader.GetNumberOfComponents())
    return int(reader.GetSize()[3]) if reader.GetDimension() == 4 else 1


def write_sitk(image: sitk.Image, path: Path, compressor: str = "") -> None:
    """Write compressed; failures become :class:`AutoSegError`."""
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.SetUseCompression(True)
    if compressor:
        writer.SetCompressor(compressor)
    try:
        writer.Execute(image)
    except RuntimeError as exc:
        raise read_error(
            Path(path), "cannot be written", "check that the folder exists and is writable."
        ) from exc


def sitk_to_channels(image: sitk.Image, path: Path) -> np.ndarray:
    """Array ``(c, x, y, z)`` in the stored dtype: vector components or a 4th axis become channels."""
    array = sitk.GetArrayFromImage(image)
    dim = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() > 1:
        if dim == 4:
            raise read_error(path, "is 4D with vector pixels", "store one channel per file.")
        array = np.moveaxis(array, -1, 0)
    elif dim != 4:
        array = array[None]
    if dim == 2:
        array = array[:, None]
    if array.ndim != 4:
        raise read_error(path, f"has unsupported dimension {dim}", "use 2D, 3D or 4D images.")
    return array


def sitk_geometry(image: sitk.Image) -> Geometry:
    """Geometry of a 2D/3D/4D SimpleITK image (4D: the first three axes describe space)."""
    dim = image.GetDimension()
    spacing = image.GetSpacing()
    if dim == 2:
        return Geometry(
            (FAKE_2D_SPACING * max(spacing), spacing[1], spacing[0]),
            image.GetOrigin(),
            image.GetDirection(),
        )
    direction = np.asarray(image.GetDirection()).reshape(dim, dim)[:3, :3]
    return Geometry(tuple(spacing[2::-1]), image.GetOrigin()[:3], tuple(direction.ravel()))


def seg_to_sitk(seg: np.ndarray, geometry: Geometry, path: Path) -> sitk.Image:
    """Segmentation ``(x, y, z)`` as uint8 (uint16 from label 255 on) with the geometry's spacing."""
    seg = np.asarray(seg)
    if seg.ndim != 3:
        raise read_error(
            path, f"segmentation has shape {seg.shape}, expected (x, y, z)", "fix the caller."
        )
    top = int(seg.max()) if seg.size else 0
    if (seg.size and int(seg.min()) < 0) or top > np.iinfo(np.uint16).max:
        raise read_error(path, "labels must lie in 0..65535", "check the label values.")
    seg = seg.astype(np.uint16 if top >= 255 else np.uint8)
    if geometry.is_2d:
        if seg.shape[0] != 1:
            raise read_error(
                path, f"2D geometry but segmentation shape {seg.shape}", "fix the caller."
            )
        image = sitk.GetImageFromArray(seg[0])
        image.SetSpacing(geometry.spacing[:0:-1])
    else:
        image = sitk.GetImageFromArray(seg)
        image.SetSpacing(geometry.spacing[::-1])
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


class _SitkBase:
    """Shared read_images / read_seg logic; subclasses implement ``_load``."""

    name = ""
    file_endings: tuple[str, ...] = ()
    #: True/False when every file reads as 2D/3D whatever its header says; None: the file decides.
    fixed_2d: bool | None = None

    def _load(self, path: Path, is_seg: bool) -> tuple[np.ndarray, Geometry]:
        raise NotImplementedError

    def read_image(self, path: Path) -> tuple[np.ndarray, Geometry]:
        """One file as float32 ``(c, x, y, z)``."""
        array, geometry = self._load(Path(path), is_seg=False)
        return array.astype(np.float32, copy=False), geometry

    def read_images(self, paths: Sequence[Path]) -> tuple[np.ndarray, Geometry]:
        """All channel files of one case stacked on axis 0; shape and spacing must agree."""
        if not paths:
            raise AutoSegError(
                "read_images got no files. Fix: pass every channel file of the case."
            )
        arrays, geometries = zip(*(self.read_image(Path(p)) for p in paths), strict=True)
        for path, array, geometry in zip(paths[1:], arrays[1:], geometries[1:], strict=True):
            if array.shape[1:] != arrays[0].shape[1:]:
                raise AutoSegError(
                    f"{path}: shape {array.shape[1:]} differs from {paths[0]} "
                    f"{arrays[0].shape[1:]}. Fix: resample all channels of a case to one grid."
                )
            if not np.allclose(geometry.spacing, geometries[0].spacing):
                raise AutoSegError(
                    f"{path}: spacing {geometry.spacing} differs from {paths[0]} "
                    f"{geometries[0].spacing}. Fix: resample all channels of a case to one grid."
                )
        return np.concatenate(arrays, axis=0), geometries[0]

    def read_seg(self, path: Path) -> tuple[np.ndarray, Geometry]:
        """Label file as ``(1, x, y, z)`` in its stored dtype (floats kept so checks can flag them)."""
        array, geometry = self._load(Path(path), is_seg=True)
        if array.shape[0] != 1:
            raise read_error(
                Path(path),
                f"label file has {array.shape[0]} channels (a colour image, or a palette PNG, "
                "which is read as colour)",
                "store the label values 0, 1, 2, ... in one grey channel (an 8-bit grey PNG).",
            )
        return array, geometry


class SimpleITKIO(_SitkBase):
    """Medical formats (NIfTI, NRRD, MetaImage, GIPL) through SimpleITK, geometry kept verbatim."""

    name = "SimpleITKIO"
    file_endings = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".gipl")

    def can_read(self, path: Path) -> bool:
        """Header readable and 2D, 3D or 4D."""
        reader = read_header(path)
        return reader is not None and reader.GetDimension() in (2, 3, 4)

    def _load(self, path: Path, is_seg: bool) -> tuple[np.ndarray, Geometry]:
        image = read_sitk(path)
        return sitk_to_channels(image, path), sitk_geometry(image)

    def write_seg(self, seg: np.ndarray, path: Path, geometry: Geometry) -> None:
        """Write with the geometry the image was read with (2D geometry writes a 2D file)."""
        write_sitk(seg_to_sitk(seg, geometry, Path(path)), Path(path))


_IDENTITY_2D = Geometry((FAKE_2D_SPACING, 1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))


class NaturalImage2DIO(_SitkBase):
    """PNG/BMP/TIFF photographs and microscopy frames: 2D only, colour planes become channels."""

    name = "NaturalImage2DIO"
    file_endings = (".png", ".bmp", ".tif", ".tiff")
    fixed_2d = True

    def can_read(self, path: Path) -> bool:
        """Only 2D files (a multi-page TIFF is 3D and belongs to Tiff3DIO)."""
        reader = read_header(path)
        return reader is not None and reader.GetDimension() == 2

    def _load(self, path: Path, is_seg: bool) -> tuple[np.ndarray, Geometry]:
        image = read_sitk(path)
        if image.GetDimension() != 2:
            raise read_error(
                path,
                f"is a {image.GetDimension()}D image where a 2D one was expected",
                "a dataset of 3D TIFF stacks is read by Tiff3DIO, chosen automatically when its "
                'first training image is a stack; set "overwrite_image_reader_writer": "Tiff3DIO" '
                "in dataset.json to force it.",
            )
        array = sitk_to_channels(image, path)
        if is_seg and array.shape[0] > 1 and all(np.array_equal(array[0], a) for a in array[1:]):
            array = array[:1]  # BMP stores grey label maps as identical colour planes
        # Pixel size metadata of natural images is meaningless for training: fixed geometry.
        return array, _IDENTITY_2D

    def write_seg(self, seg: np.ndarray, path: Path, geometry: Geometry) -> None:
        """Write a 2D uint8/uint16 image; the fixed natural-image geometry is not stored."""
        image = seg_to_sitk(seg, _IDENTITY_2D, Path(path))
        image.SetSpacing((1.0, 1.0))
        write_sitk(image, Path(path), _tiff_compressor(Path(path)))


def _tiff_compressor(path: Path) -> str:
    return "Deflate" if path.name.lower().endswith((".tif", ".tiff")) else ""


def _strip_ending(name: str) -> str:
    lower = name.lower()
    for ending in (".tiff", ".tif"):
        if lower.endswith(ending):
            return name[: -len(ending)]
    return Path(name).stem


def sidecar_path(path: Path, is_seg: bool) -> Path:
    """``CASE.json`` next to a TIFF: image files drop their ``_XXXX`` channel suffix, labels do not.

    Labels keep their full stem because a case id may itself end in four digits.
    """
    stem = _strip_ending(Path(path).name)
    if not is_seg:
        stem = _CHANNEL_SUFFIX.sub("", stem)
    return Path(path).with_name(stem + ".json")


def _read_sidecar_spacing(path: Path, is_seg: bool) -> tuple[float, float, float]:
    sidecar = sidecar_path(path, is_seg)
    if not sidecar.is_file():
        warnings.warn(
            f"{path}: no spacing file {sidecar.name}; assuming spacing (1, 1, 1). "
            f'Fix: write {{"spacing": [a, b, c]}} to {sidecar}.',
            UserWarning,
            stacklevel=4,
        )
        return (1.0, 1.0, 1.0)
    try:
        spacing = json.loads(sidecar.read_text(encoding="utf-8"))["spacing"]
        values = tuple(float(v) for v in spacing)
    except (ValueError, KeyError, TypeError) as exc:
        raise read_error(
            sidecar, "is not valid spacing JSON", 'write {"spacing": [a, b, c]}.'
        ) from exc
    if len(values) != 3 or min(values) <= 0:
        raise read_error(sidecar, f"spacing {values} invalid", "give three positive numbers.")
    return values  # type: ignore[return-value]


class Tiff3DIO(_SitkBase):
    """3D TIFF stacks (microscopy); the spacing lives in a ``CASE.json`` sidecar."""

    name = "Tiff3DIO"
    file_endings = (".tif", ".tiff")
    fixed_2d = False

    def can_read(self, path: Path) -> bool:
        """Only multi-page (3D) TIFF files."""
        reader = read_header(path)
        return reader is not None and reader.GetDimension() == 3

    def _load(self, path: Path, is_seg: bool) -> tuple[np.ndarray, Geometry]:
        image = read_sitk(path)
        array = sitk_to_channels(image, path)  # a single-page stack reads as 2D: one slice
        identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        return array, Geometry(_read_sidecar_spacing(path, is_seg), (0.0, 0.0, 0.0), identity)

    def write_seg(self, seg: np.ndarray, path: Path, geometry: Geometry) -> None:
        """Write a Deflate-compressed TIFF stack and its spacing sidecar."""
        path = Path(path)
        image = seg_to_sitk(seg, Geometry((1.0, 1.0, 1.0), (0.0,) * 3, np.eye(3).ravel()), path)
        write_sitk(image, path, "Deflate")
        sidecar = sidecar_path(path, is_seg=True)
        try:
            sidecar.write_text(json.dumps({"spacing": list(geometry.spacing)}), encoding="utf-8")
        except OSError as exc:
            raise read_error(sidecar, "cannot be written", "check the folder is writable.") from exc
