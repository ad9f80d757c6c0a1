"""Benchmark: random patch reads per second from the preprocessed storage format.

Compares the format used by ``autoseg.preprocessing.storage`` (``.npy`` opened with
``mmap_mode="r"``) with an ``np.savez_compressed`` alternative, for a hippocampus-sized case
(1, 36, 50, 35) and a CT-sized case (1, 200, 512, 512), reading 3D patches (40x56x40) and 2D
patches (one 56x40 slice). "cold" drops the file from the page cache before each read (Linux
only), which is what the first epoch on a big dataset sees. Runs in well under a minute.

Usage: python bench/preprocess_storage.py
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autoseg.preprocessing.case import PreprocessedCase
from autoseg.preprocessing.storage import load_case, save_case
from peak_memory import peak_rss_mb

SHAPES = {"hippocampus": (1, 36, 50, 35), "ct": (1, 200, 512, 512)}
PATCHES = {"3d 40x56x40": (40, 56, 40), "2d 56x40": (1, 56, 40)}
TIME_PER_CELL = 1.0  # seconds spent per measurement
COMPRESSED_READS = 3  # compressed archives inflate the whole array per read: few reads suffice


def _drop_cache(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
    return True


def _random_window(shape: tuple[int, ...], patch: tuple[int, ...], rng: np.random.Generator):
    starts = [int(rng.integers(0, max(s - p, 0) + 1)) for s, p in zip(shape, patch, strict=True)]
    return (slice(None), *(slice(a, a + p) for a, p in zip(starts, patch, strict=True)))


def _rate(read: Callable[[], object], limit: int | None = None, before=None) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < TIME_PER_CELL and (limit is None or count < limit):
        if before is not None:
            before()
        read()
        count += 1
    return count / (time.perf_counter() - start)


def _make_array(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    # Integer-valued intensities (like CT in HU) with a zero background: realistic compressibility.
    array = np.zeros(shape, np.float32)
    inner = tuple(slice(s // 8, s - s // 8) for s in shape[1:])
    array[(slice(None), *inner)] = np.round(rng.normal(40, 200, array[(0, *inner)].shape))
    return array


def _bench_npy(folder: Path, array: np.ndarray, patch, rng) -> tuple[float, float]:
    data, _, _ = load_case(folder, "case")
    path = folder / "case.npy"

    def read() -> None:
        np.array(data[_random_window(array.shape[1:], patch, rng)])

    warm = _rate(read)
    cold = _rate(read, before=lambda: _drop_cache(path)) if hasattr(os, "posix_fadvise") else np.nan
    return warm, cold


def _bench_npz(path: Path, array: np.ndarray, patch, rng) -> float:
    def read() -> None:
        with np.load(path, allow_pickle=False) as archive:
            np.array(archive["data"][_random_window(array.shape[1:], patch, rng)])

    return _rate(read, limit=COMPRESSED_READS)


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        for name, shape in SHAPES.items():
            array = _make_array(shape, rng)
            folder = root / name
            case = PreprocessedCase(array, None, {"shape": list(shape)}, {})
            start = time.perf_counter()
            save_case(folder, "case", case)
            write_npy = time.perf_counter() - start
            start = time.perf_counter()
            np.savez_compressed(folder / "case_compressed.npz", data=array)
            write_npz = time.perf_counter() - start
            sizes = (
                (folder / "case.npy").stat().st_size / 2**20,
                (folder / "case_compressed.npz").stat().st_size / 2**20,
            )
            for patch_name, patch in PATCHES.items():
                warm, cold = _bench_npy(folder, array, patch, rng)
                compressed = _bench_npz(folder / "case_compressed.npz", array, patch, rng)
                rows.append((name, patch_name, warm, cold, compressed, sizes, write_npy, write_npz))
            del array, case
    print(
        f"{'array':<12} {'patch':<12} {'npy mmap warm/s':>16} {'npy mmap cold/s':>16} "
        f"{'npz compr./s':>13} {'MiB npy/npz':>13} {'write s npy/npz':>16}"
    )
    for name, patch_name, warm, cold, compressed, sizes, w_npy, w_npz in rows:
        print(
            f"{name:<12} {patch_name:<12} {warm:>16.0f} {cold:>16.0f} {compressed:>13.2f} "
            f"{sizes[0]:>6.1f}/{sizes[1]:<6.1f} {w_npy:>7.2f}/{w_npz:<7.2f}"
        )
    print(f"peak memory (ru_maxrss): {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
