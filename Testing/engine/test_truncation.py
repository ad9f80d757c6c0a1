"""Image files that end early or fail their checksum are refused before ITK zero-fills them."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.image_formats import read_sitk
from autoseg.truncation import ensure_complete

ARRAY = np.random.default_rng(0).normal(100.0, 10.0, size=(6, 7, 9)).astype(np.float32)


def _write(path: Path, compress: bool = True) -> Path:
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.SetUseCompression(compress)
    writer.Execute(sitk.GetImageFromArray(ARRAY))
    return path


def _cut(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _flip(path: Path, where: float = 0.5) -> Path:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("a.nii.gz", True),
        ("a.nii", False),
        ("a.nrrd", True),
        ("a.nrrd", False),
        ("a.mha", True),
        ("a.mha", False),
        ("a.gipl.gz", True),
    ],
)
def test_complete_files_pass(tmp_path: Path, name: str, compress: bool) -> None:
    path = _write(tmp_path / name, compress)
    ensure_complete(path)
    ensure_complete(path, thorough=True)
    assert np.array_equal(sitk.GetArrayFromImage(read_sitk(path)), ARRAY)


@pytest.mark.parametrize("name", ["a.nii.gz", "a.nii", "a.nrrd", "a.mha", "a.gipl.gz"])
def test_truncated_files_are_refused_with_their_name(tmp_path: Path, name: str) -> None:
    path = _cut(_write(tmp_path / name))
    with pytest.raises(AutoSegError, match="truncated") as error:
        ensure_complete(path)
    assert str(error.value).startswith(f"{path}: ")
    assert "Fix:" in str(error.value)


def test_reading_a_truncated_nifti_fails_instead_of_zero_filling(tmp_path: Path) -> None:
    path = _cut(_write(tmp_path / "a.nii.gz"), keep=0.9)
    assert sitk.ReadImage(str(path)).GetSize() == (9, 7, 6)  # what ITK alone would accept
    with pytest.raises(AutoSegError, match="truncated"):
        read_sitk(path)


def test_a_missing_gzip_trailer_counts_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "a.nii.gz"
    data = _write(path).read_bytes()
    path.write_bytes(data[:-8])  # every voxel is there; the CRC and length are not
    with pytest.raises(AutoSegError, match="ends early"):
        ensure_complete(path)


@pytest.mark.parametrize("name", ["a.nrrd", "a.mha"])
def test_checksum_errors_in_other_compressed_formats_are_refused(tmp_path: Path, name: str) -> None:
    path = _flip(_write(tmp_path / name))
    with pytest.raises(AutoSegError, match="corrupt"):
        ensure_complete(path)


def test_a_corrupt_nifti_is_named_precisely_when_itk_fails(tmp_path: Path) -> None:
    path = _flip(_write(tmp_path / "a.nii.gz"))
    with pytest.raises(AutoSegError, match="corrupt"):
        read_sitk(path)


def test_multi_member_gzip_and_zero_padding_are_accepted(tmp_path: Path) -> None:
    raw = _write(tmp_path / "a.nii", compress=False).read_bytes()
    path = tmp_path / "b.nii.gz"
    half = len(raw) // 2
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]) + b"\0" * 16)
    ensure_complete(path)
    path.write_bytes(gzip.compress(raw) + b"garbage")
    with pytest.raises(AutoSegError, match="corrupt"):
        ensure_complete(path)


@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("order", ["<", ">"])
def test_nifti_headers_of_both_versions_and_byte_orders(
    tmp_path: Path, image_class: type, order: str
) -> None:
    image = image_class(ARRAY.astype(order + "f4"), np.eye(4))
    image.header.set_data_dtype(np.dtype(order + "f4"))
    path = tmp_path / "a.nii"
    header = image.header.as_byteswapped(order) if order == ">" else image.header
    image_class(ARRAY.astype(order + "f4"), np.eye(4), header).to_filename(path)
    ensure_complete(path)
    with pytest.raises(AutoSegError, match="announces"):
        ensure_complete(_cut(path, keep=0.8))


def test_unknown_formats_and_unreadable_paths_pass(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    ensure_complete(text)
    ensure_complete(tmp_path / "missing.nii.gz")


def test_highly_compressed_data_is_inflated_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "zeros.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((64, 256, 256), np.uint8)), str(path))
    assert path.stat().st_size < 50_000  # > 80:1
    ensure_complete(path, thorough=True)
    with pytest.raises(AutoSegError, match="truncated"):
        ensure_complete(_cut(path, keep=0.5), thorough=True)
