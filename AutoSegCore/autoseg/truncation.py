"""Refuse image files whose stored bytes end early or fail their checksum.

ITK fills what a truncated NIfTI file lacks with zeros and returns success: an interrupted copy or
download becomes an image whose last slices are black, which trains and predicts without a word.
Compressed NRRD and MetaImage files that were damaged in the middle also read "successfully" with
garbage. So every image is checked before ITK reads it:

- gzip data (``.nii.gz`` and any other file that starts with the gzip magic, and the data of an
  NRRD with ``encoding: gzip``): the stream is inflated to its end, which checks the end-of-stream
  marker, the CRC-32 and the stored length; the output is discarded chunk by chunk.
- MetaImage with ``CompressedData = True``: the zlib stream is inflated to its end (Adler-32).
- NIfTI (compressed or not): the payload the header announces (``vox_offset`` + voxels x bytes)
  must be present.

Inflating costs about as much as ITK's own decompression (measured on the hippocampus data: see
the README's reliability section); raw files cost only a header read. Uncompressed NRRD and
MetaImage data that ends early already makes ITK fail, so they need nothing here.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from autoseg.errors import AutoSegError

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 31  # zlib's gzip mode: header, deflate stream, CRC-32 and length are checked
_ZLIB_WBITS = 15  # zlib wrapper with Adler-32, as MetaImage writes it
_CHUNK = 1 << 20
_HEADER_PEEK = 4096  # NRRD/MetaImage headers and the NIfTI header fit easily
_FIX = "copy or export the file again from its source; it was cut off or damaged."
_NIFTI1_SIZE, _NIFTI2_SIZE = 348, 540


def _damaged(path: Path, problem: str) -> AutoSegError:
    return AutoSegError(f"{path}: {problem}. Fix: {_FIX}")


def _next_data(handle: BinaryIO) -> bytes:
    """The next bytes that are not zero padding (empty at the end of the file)."""
    while chunk := handle.read(_CHUNK):
        if data := chunk.lstrip(b"\0"):
            return data
    return b""


def _inflate(handle: BinaryIO, path: Path, wbits: int) -> tuple[int, bytes]:
    """Inflate every member of the stream at the handle's position to its end, keeping at most
    ``_CHUNK`` inflated bytes in memory (a label of zeros inflates 1000-fold).

    Returns:
        The number of inflated bytes and the first inflated bytes (for the NIfTI header check).
    """
    inflater = zlib.decompressobj(wbits)
    total, head = 0, b""
    data = handle.read(_CHUNK)
    while data:
        try:
            out = inflater.decompress(data, _CHUNK)
        except zlib.error as error:
            raise _damaged(path, f"compressed data is corrupt ({error})") from None
        if len(head) < _HEADER_PEEK:
            head += out[: _HEADER_PEEK - len(head)]
        total += len(out)
        if inflater.eof:  # another member may follow; zero padding after the last is allowed
            data = inflater.unused_data.lstrip(b"\0") or _next_data(handle)
            if not data:
                return total, head
            inflater = zlib.decompressobj(wbits)
        else:
            data = inflater.unconsumed_tail or handle.read(_CHUNK)
    raise _damaged(path, "the compressed data ends early (file truncated)")


def _nifti_fields(header: bytes) -> tuple[tuple[int, ...], int, int] | None:
    """``(dims, bitpix, vox_offset)`` of a NIfTI-1 or NIfTI-2 header in either byte order."""
    for order in "<>":
        size = struct.unpack(order + "i", header[:4])[0] if len(header) >= 4 else 0
        if size == _NIFTI1_SIZE and len(header) >= _NIFTI1_SIZE:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            return dims, bitpix, max(offset, _NIFTI1_SIZE + 4)
        if size == _NIFTI2_SIZE and len(header) >= _NIFTI2_SIZE:
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            return dims, bitpix, max(offset, _NIFTI2_SIZE + 4)
    return None


def _nifti_payload_end(header: bytes) -> int | None:
    """``vox_offset`` + voxels x bytes per voxel of a NIfTI header; None if not NIfTI."""
    fields = _nifti_fields(header)
    if fields is None:
        return None
    dims, bitpix, offset = fields
    rank = dims[0]
    if not 1 <= rank <= 7 or bitpix <= 0 or any(d < 0 for d in dims[1 : rank + 1]):
        return None  # not a plausible header: the reader gives the verdict
    return offset + (math.prod(dims[1 : rank + 1]) * bitpix + 7) // 8


def _check_nifti_size(path: Path, header: bytes, available: int) -> None:
    expected = _nifti_payload_end(header)
    if expected is not None and available < expected:
        raise _damaged(
            path,
            f"has {available} bytes of image data, its header announces {expected} (file truncated)",
        )


def _header_end(head: bytes, marker: bytes) -> int | None:
    index = head.find(marker)
    return None if index < 0 else index + len(marker)


def _nrrd_gzip_offset(head: bytes) -> int | None:
    """Where the gzip data of an NRRD file with attached gzip data starts (else None)."""
    end = _header_end(head, b"\n\n")
    if end is None:
        return None
    fields = head[:end].lower()
    attached = b"data file:" not in fields and b"datafile:" not in fields
    gzip = b"encoding: gzip" in fields or b"encoding: gz\n" in fields
    return end if attached and gzip else None


def _mha_zlib_offset(head: bytes) -> int | None:
    """Where the zlib data of a compressed single-file MetaImage starts (else None)."""
    end = _header_end(head, b"ElementDataFile = LOCAL\n")
    if end is None or b"CompressedData = True" not in head[:end]:
        return None
    return end


def _gzip_nifti_trailer_matches(handle: BinaryIO, head: bytes) -> bool:
    """O(1) test for a gzip-compressed NIfTI: the length in the gzip trailer equals the size its
    header announces. A cut-off file ends in compressed data, which matches by chance once in 2^32.
    """
    try:
        header = zlib.decompressobj(_GZIP_WBITS).decompress(head, _NIFTI2_SIZE + 4)
    except zlib.error:
        return False
    expected = _nifti_payload_end(header)
    if expected is None:
        return False
    handle.seek(-4, 2)
    stored = struct.unpack("<I", handle.read(4))[0]
    return stored == expected % (1 << 32)


def _check_gzip(handle: BinaryIO, path: Path, head: bytes, thorough: bool) -> None:
    if not thorough and _gzip_nifti_trailer_matches(handle, head):
        return  # ITK's NIfTI reader checks the CRC itself; only truncation slips through it
    handle.seek(0)
    total, inflated = _inflate(handle, path, _GZIP_WBITS)
    _check_nifti_size(path, inflated, total)


def ensure_complete(path: Path, *, thorough: bool = False) -> None:
    """Raise a one-line AutoSegError when the file's data ends early or fails its checksum.

    Args:
        path: any image file; other formats, and files that cannot be opened, pass (the reader
            reports those).
        thorough: also inflate a gzip NIfTI whose trailer matches its header (to name a CRC error
            that ITK reports only as "cannot determine the reader").
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_PEEK)
            if head.startswith(_GZIP_MAGIC):
                _check_gzip(handle, path, head, thorough)
                return
            for offset, wbits in (
                (_nrrd_gzip_offset(head) if head.startswith(b"NRRD") else None, _GZIP_WBITS),
                (_mha_zlib_offset(head), _ZLIB_WBITS),
            ):
                if offset is not None:
                    handle.seek(offset)
                    _inflate(handle, path, wbits)
                    return
            _check_nifti_size(path, head, path.stat().st_size)
    except OSError:
        return
