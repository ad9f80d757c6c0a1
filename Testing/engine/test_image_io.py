"""Image readers/writers: geometry round trips, channel handling, format choice and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.image_formats import header_channels
from autoseg.image_io import (
    READER_WRITERS,
    Geometry,
    ImageReaderWriter,
    NaturalImage2DIO,
    SimpleITKIO,
    SimpleITKIOWithReorient,
    Tiff3DIO,
    choose_reader_writer,
)

SPACING = (0.7, 1.3, 2.9)  # SimpleITK (x, y, z) order, anisotropic
ORIGIN = (-10.1, 3.3, 7.7)


def _oblique_direction() -> tuple[float, ...]:
    a, b = 0.3, 0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return tuple((rz @ rx).ravel())


def _write_volume(path: Path, array: np.ndarray, direction: tuple[float, ...]) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((4, 5, 6)).astype(np.float32)


def _assert_close(a: Geometry, b: Geometry, tol: float) -> None:
    for name in ("spacing", "origin", "direction"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=tol)


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_simpleitk_round_trip_oblique(tmp_path: Path, ending: str) -> None:
    source = _write_volume(tmp_path / f"img_0000{ending}", _volume(), _oblique_direction())
    io = SimpleITKIO()
    image, geometry = io.read_image(source)
    assert image.shape == (1, 4, 5, 6)
    assert image.dtype == np.float32
    np.testing.assert_allclose(geometry.spacing, SPACING[::-1], rtol=1e-6)
    seg = (image[0] > 0.5).astype(np.uint8)
    io.write_seg(seg, tmp_path / f"seg{ending}", geometry)
    back, back_geometry = io.read_seg(tmp_path / f"seg{ending}")
    assert back.shape == (1, 4, 5, 6)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back[0], seg)
    if ending == ".mha":
        assert back_geometry == geometry  # MetaImage stores doubles: bit-exact
    else:
        # NIfTI keeps float32 and ITK re-orthonormalises oblique matrices on read; NRRD stores
        # spacing*direction and divides again: both lose at most ~1e-9 on an oblique direction.
        assert back_geometry.spacing == geometry.spacing or ending == ".nrrd"
        assert back_geometry.origin == geometry.origin
        _assert_close(back_geometry, geometry, 1e-8)


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_simpleitk_round_trip_axis_aligned_is_exact(tmp_path: Path, ending: str) -> None:
    flipped = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    source = _write_volume(tmp_path / f"img{ending}", _volume(), flipped)
    io = SimpleITKIO()
    image, geometry = io.read_image(source)
    io.write_seg(np.ones(image.shape[1:], np.uint8), tmp_path / f"seg{ending}", geometry)
    assert io.read_seg(tmp_path / f"seg{ending}")[1] == geometry


def test_geometry_json_round_trip_is_exact() -> None:
    geometry = Geometry((2.9, 1.3, 0.7), ORIGIN, _oblique_direction())
    text = json.dumps(geometry.to_json())
    assert Geometry.from_json(json.loads(text)) == geometry
    with pytest.raises(AutoSegError, match="lacks"):
        Geometry.from_json({"spacing": [1, 1, 1]})
    with pytest.raises(AutoSegError, match="Invalid geometry"):
        Geometry((1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))  # type: ignore[arg-type]


def test_four_d_file_becomes_channels(tmp_path: Path) -> None:
    image = sitk.JoinSeries([sitk.GetImageFromArray(_volume(i)) for i in range(2)])
    image.SetSpacing((0.5, 0.6, 0.75, 3.0))
    image.SetOrigin((1.0, 2.0, 3.0, 4.0))
    sitk.WriteImage(image, str(tmp_path / "four.nii.gz"))
    array, geometry = SimpleITKIO().read_image(tmp_path / "four.nii.gz")
    assert array.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(array[1], _volume(1))
    assert geometry.spacing == (0.75, 0.6000000238418579, 0.5)  # float32 in NIfTI
    assert geometry.origin == (1.0, 2.0, 3.0)
    assert len(geometry.direction) == 9


def test_vector_pixels_become_channels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 6, 3), dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "v.mha"))
    array, _ = SimpleITKIO().read_image(tmp_path / "v.mha")
    assert array.shape == (3, 4, 5, 6)
    np.testing.assert_array_equal(array[2], rgb[..., 2])


def test_two_d_nifti(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.arange(35, dtype=np.float32).reshape(5, 7))
    image.SetSpacing((0.5, 0.75))
    image.SetOrigin((1.5, -2.0))
    image.SetDirection((0.0, 1.0, 1.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "flat.nii.gz"))
    io = SimpleITKIO()
    array, geometry = io.read_image(tmp_path / "flat.nii.gz")
    assert array.shape == (1, 1, 5, 7)
    assert geometry.spacing == (999 * 0.75, 0.75, 0.5)
    assert geometry.is_2d
    io.write_seg(np.ones((1, 5, 7), np.uint8), tmp_path / "flat_seg.nii.gz", geometry)
    seg, seg_geometry = io.read_seg(tmp_path / "flat_seg.nii.gz")
    assert seg.shape == (1, 1, 5, 7)
    assert seg_geometry == geometry


def test_label_300_is_written_uint16(tmp_path: Path) -> None:
    io = SimpleITKIO()
    geometry = Geometry(SPACING[::-1], ORIGIN, _oblique_direction())
    seg = np.zeros((4, 5, 6), np.int64)
    seg[0, 0, 0] = 300
    io.write_seg(seg, tmp_path / "big.mha", geometry)
    back, _ = io.read_seg(tmp_path / "big.mha")
    assert back.dtype == np.uint16
    assert back.max() == 300
    io.write_seg(seg.clip(0, 254), tmp_path / "small.mha", geometry)
    assert io.read_seg(tmp_path / "small.mha")[0].dtype == np.uint8


def test_float_label_file_is_returned_as_stored(tmp_path: Path) -> None:
    labels = np.zeros((4, 5, 6), np.float32)
    labels[0, 0, 0] = 0.5
    _write_volume(tmp_path / "float_seg.nii.gz", labels, _oblique_direction())
    seg, _ = SimpleITKIO().read_seg(tmp_path / "float_seg.nii.gz")
    assert seg.dtype == np.float32
    assert seg[0, 0, 0, 0] == 0.5


def test_reorient_reader_restores_file_frame(tmp_path: Path) -> None:
    flipped = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    source = _write_volume(tmp_path / "img.mha", _volume(), flipped)
    io = SimpleITKIOWithReorient()
    array, geometry = io.read_image(source)
    assert array.shape == (1, 4, 6, 5)  # x and y swapped by the reorientation
    io.write_seg((array[0] > 0.5).astype(np.uint8), tmp_path / "seg.mha", geometry)
    seg, seg_geometry = SimpleITKIO().read_seg(tmp_path / "seg.mha")
    plain, plain_geometry = SimpleITKIO().read_image(source)
    np.testing.assert_array_equal(seg[0], plain[0] > 0.5)
    assert seg_geometry == plain_geometry


def test_png_grey_and_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    io = NaturalImage2DIO()
    grey = rng.integers(0, 255, (6, 8), dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(tmp_path / "grey.png"))
    array, geometry = io.read_image(tmp_path / "grey.png")
    assert array.shape == (1, 1, 6, 8)
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array[0, 0], grey)
    assert geometry == Geometry((999.0, 1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    for planes in (3, 4):
        rgb = rng.integers(0, 255, (6, 8, planes), dtype=np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.png"))
        array, _ = io.read_image(tmp_path / "rgb.png")
        assert array.shape == (planes, 1, 6, 8)
        np.testing.assert_array_equal(array[1, 0], rgb[..., 1])


def test_header_channels_match_what_the_readers_return(tmp_path: Path) -> None:
    """The folder scans count channels from headers; they must agree with the full read."""
    rgb = sitk.GetImageFromArray(np.zeros((6, 8, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.png"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 8), np.uint8)), str(tmp_path / "g.png"))
    volume = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(tmp_path / "four_d.nii.gz"))
    (tmp_path / "broken.png").write_bytes(b"no image")
    assert header_channels(tmp_path / "rgb.png") == 3
    assert header_channels(tmp_path / "g.png") == 1
    assert header_channels(tmp_path / "four_d.nii.gz") == 2
    assert header_channels(tmp_path / "broken.png") is None
    assert NaturalImage2DIO().read_image(tmp_path / "rgb.png")[0].shape[0] == 3
    assert SimpleITKIO().read_image(tmp_path / "four_d.nii.gz")[0].shape[0] == 2


@pytest.mark.parametrize("ending", [".png", ".bmp", ".tif"])
def test_natural_image_seg_round_trip(tmp_path: Path, ending: str) -> None:
    io = NaturalImage2DIO()
    seg = np.zeros((1, 6, 8), np.uint8)
    seg[0, 2:4, 3:6] = 2
    geometry = Geometry((999.0, 1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    io.write_seg(seg, tmp_path / f"case{ending}", geometry)
    back, back_geometry = io.read_seg(tmp_path / f"case{ending}")
    assert back.shape == (1, 1, 6, 8)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back[0], seg)
    assert back_geometry == geometry


def _write_stack(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def test_tiff_3d_with_sidecar(tmp_path: Path) -> None:
    stack = _write_stack(tmp_path / "img_0000.tif", _volume())
    (tmp_path / "img.json").write_text(json.dumps({"spacing": [2.0, 0.5, 0.25]}), encoding="utf-8")
    io = Tiff3DIO()
    assert io.can_read(stack)
    assert not NaturalImage2DIO().can_read(stack)
    array, geometry = io.read_image(stack)
    assert array.shape == (1, 4, 5, 6)
    assert geometry.spacing == (2.0, 0.5, 0.25)
    (tmp_path / "out").mkdir()
    io.write_seg(np.ones((4, 5, 6), np.uint16) * 300, tmp_path / "out" / "img.tif", geometry)
    assert json.loads((tmp_path / "out" / "img.json").read_text(encoding="utf-8")) == {
        "spacing": [2.0, 0.5, 0.25]
    }
    seg, seg_geometry = io.read_seg(tmp_path / "out" / "img.tif")
    assert seg.dtype == np.uint16
    assert seg.shape == (1, 4, 5, 6)
    assert seg_geometry == geometry


def test_tiff_3d_without_sidecar_warns(tmp_path: Path) -> None:
    stack = _write_stack(tmp_path / "img_0000.tiff", _volume())
    with pytest.warns(UserWarning, match=r"img\.json"):
        _, geometry = Tiff3DIO().read_image(stack)
    assert geometry.spacing == (1.0, 1.0, 1.0)


def test_tiff_bad_sidecar_is_user_error(tmp_path: Path) -> None:
    stack = _write_stack(tmp_path / "img_0000.tif", _volume())
    (tmp_path / "img.json").write_text('{"spacing": [1, 2]}', encoding="utf-8")
    with pytest.raises(AutoSegError, match=r"img\.json"):
        Tiff3DIO().read_image(stack)


def test_read_images_stacks_channels(tmp_path: Path) -> None:
    direction = _oblique_direction()
    paths = [_write_volume(tmp_path / f"c_{i:04d}.mha", _volume(i), direction) for i in range(2)]
    array, geometry = SimpleITKIO().read_images(paths)
    assert array.shape == (2, 4, 5, 6)
    assert array.dtype == np.float32
    assert geometry == SimpleITKIO().read_image(paths[0])[1]


def test_read_images_shape_or_spacing_mismatch_names_files(tmp_path: Path) -> None:
    direction = _oblique_direction()
    first = _write_volume(tmp_path / "c_0000.mha", _volume(), direction)
    small = _write_volume(tmp_path / "c_0001.mha", _volume()[:3], direction)
    with pytest.raises(AutoSegError, match=r"c_0001\.mha.*c_0000\.mha"):
        SimpleITKIO().read_images([first, small])
    other = sitk.ReadImage(str(first))
    other.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(other, str(tmp_path / "c_0002.mha"))
    with pytest.raises(AutoSegError, match=r"c_0002\.mha.*spacing.*c_0000\.mha"):
        SimpleITKIO().read_images([first, tmp_path / "c_0002.mha"])


def test_read_images_ignores_origin_difference(tmp_path: Path) -> None:
    first = _write_volume(tmp_path / "c_0000.mha", _volume(), _oblique_direction())
    moved = sitk.ReadImage(str(first))
    moved.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(moved, str(tmp_path / "c_0001.mha"))
    _, geometry = SimpleITKIO().read_images([first, tmp_path / "c_0001.mha"])
    assert geometry.origin == ORIGIN


@pytest.mark.parametrize(
    ("ending", "expected"),
    [
        (".nii.gz", "SimpleITKIO"),
        (".nii", "SimpleITKIO"),
        (".nrrd", "SimpleITKIO"),
        (".nhdr", "SimpleITKIO"),
        (".mha", "SimpleITKIO"),
        (".mhd", "SimpleITKIO"),
        (".gipl", "SimpleITKIO"),
        (".png", "NaturalImage2DIO"),
        (".bmp", "NaturalImage2DIO"),
        (".tif", "NaturalImage2DIO"),
        (".tiff", "NaturalImage2DIO"),
    ],
)
def test_choose_by_ending(ending: str, expected: str) -> None:
    chosen = choose_reader_writer(ending)
    assert chosen.name == expected
    assert isinstance(chosen, ImageReaderWriter)


def test_choose_uses_example_file(tmp_path: Path) -> None:
    stack = _write_stack(tmp_path / "img_0000.tif", _volume())
    assert choose_reader_writer(".tif", stack).name == "Tiff3DIO"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 8), np.uint8)), str(tmp_path / "f.tif"))
    assert choose_reader_writer(".tif", tmp_path / "f.tif").name == "NaturalImage2DIO"


def test_choose_override_and_errors(tmp_path: Path) -> None:
    assert choose_reader_writer(".png", override="Tiff3DIO").name == "Tiff3DIO"
    assert choose_reader_writer(".nii.gz", override="None").name == "SimpleITKIO"
    assert choose_reader_writer(".nii.gz", override="NibabelIO").name == "SimpleITKIO"
    assert choose_reader_writer(".nii.gz", override="NibabelIOWithReorient").name == "SimpleITKIO"
    reorient = choose_reader_writer(".nii.gz", override="SimpleITKIOWithReorient")
    assert reorient.name == "SimpleITKIOWithReorient"
    assert set(READER_WRITERS) >= {"SimpleITKIO", "NaturalImage2DIO", "Tiff3DIO"}
    with pytest.raises(AutoSegError, match=r"Fancy.*SimpleITKIO"):
        choose_reader_writer(".nii.gz", override="FancyIO")
    with pytest.raises(AutoSegError, match=r"\.jpg.*JPEG is lossy.*\.nii\.gz"):
        choose_reader_writer(".jpg")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(AutoSegError, match=r"bad\.nii\.gz"):
        choose_reader_writer(".nii.gz", bad)


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "données_ü"
    folder.mkdir()
    source = _write_volume(folder / "bild_0000.nii.gz", _volume(), _oblique_direction())
    io = choose_reader_writer(".nii.gz", source)
    array, geometry = io.read_images([source])
    io.write_seg(np.zeros(array.shape[1:], np.uint8), folder / "bild.nii.gz", geometry)
    assert io.read_seg(folder / "bild.nii.gz")[0].shape == (1, 4, 5, 6)


def test_corrupt_and_missing_files_are_user_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.nii.gz"
    garbage.write_bytes(b"garbage" * 20)
    truncated = tmp_path / "truncated.nii.gz"
    _write_volume(tmp_path / "whole.nii.gz", _volume(), _oblique_direction())
    truncated.write_bytes((tmp_path / "whole.nii.gz").read_bytes()[:200])
    io = SimpleITKIO()
    assert not io.can_read(garbage)
    assert not io.can_read(tmp_path / "missing.nii.gz")
    for path in (garbage, truncated, tmp_path / "missing.nii.gz"):
        with pytest.raises(AutoSegError, match=path.name.replace(".", r"\.")):
            io.read_image(path)
    with pytest.raises(AutoSegError, match="writable"):
        io.write_seg(
            np.zeros((4, 5, 6), np.uint8),
            tmp_path / "no_such_dir" / "s.nii.gz",
            Geometry(SPACING, ORIGIN, _oblique_direction()),
        )
