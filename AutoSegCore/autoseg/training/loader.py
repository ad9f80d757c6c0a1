"""Training patch sampler: draws cases, crops enlarged patches and oversamples foreground.

Each batch draws ``batch_size`` case ids uniformly *with replacement* (the loader is infinite) and
crops one *initial* (enlarged) patch per sample, so that the spatial augmentation can later rotate or
scale and centre-crop the final patch without running out of image. Sample slots flagged in
``forced_slots`` are centred on a stored foreground voxel (about a third of each batch, see
:func:`foreground_slots`): random crops of small structures would otherwise rarely show foreground.

Only the patch window is read from the memory-mapped ``.npy`` files, so a sample costs a few page
reads however large the case is. Memory maps and class locations stay in a small per-process LRU
cache; the cache is dropped when the sampler is sent to a worker process, because pickling a memory
map would copy the whole array.

A 2D configuration trains on single slices along axis 0 of the 3D preprocessed arrays: the sampler
picks one slice (random, or the slice of the chosen foreground voxel) and crops the 2D window there.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.errors import AutoSegError
from autoseg.preprocessing.storage import load_case, load_class_locations

FOREGROUND_FRACTION = 0.33
MAX_CACHED_CASES = 512
MAX_CACHED_LOCATION_BYTES = 64 * 2**20

Batch = dict[str, Any]


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise AutoSegError(
            f"foreground fraction {fraction}: must lie in [0, 1]. Fix: pass e.g. 0.33."
        )


def foreground_slots(batch_size: int, fraction: float = FOREGROUND_FRACTION) -> list[bool]:
    """Which batch slots are forced to contain foreground: slot j iff j >= round(bs·(1 − f)).

    Python's ``round`` (half to even) is used on purpose, as the method does: bs 2 -> [F, T],
    bs 4 -> [F, F, F, T], bs 9 -> the last three.
    """
    _check_fraction(fraction)
    if batch_size < 1:
        raise AutoSegError(f"batch size {batch_size}: must be at least 1. Fix: check the plans.")
    first = round(batch_size * (1 - fraction))
    return [j >= first for j in range(batch_size)]


def _check_ranks(global_batch_size: int, world_size: int, rank: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise AutoSegError(
            f"rank {rank} of world size {world_size}: need world_size >= 1 and "
            "0 <= rank < world_size. Fix: check the distributed launch settings."
        )
    if global_batch_size < world_size:
        raise AutoSegError(
            f"batch size {global_batch_size} is smaller than the number of processes "
            f"({world_size}): every process needs at least one sample. Fix: use fewer GPUs "
            "or a larger batch size."
        )


def rank_batch_size(global_batch_size: int, world_size: int, rank: int) -> int:
    """This rank's share of the global batch; the remainder goes to the lowest ranks."""
    _check_ranks(global_batch_size, world_size, rank)
    base, extra = divmod(global_batch_size, world_size)
    return base + (1 if rank < extra else 0)


def rank_slots(
    global_batch_size: int, world_size: int, rank: int, fraction: float = FOREGROUND_FRACTION
) -> list[bool]:
    """The global slot flags of the samples this rank holds.

    Ranks own consecutive slices of the global batch, so the union over ranks is exactly the
    single-process rule and DDP oversamples as much foreground as one process would.
    """
    flags = foreground_slots(global_batch_size, fraction)
    start = sum(rank_batch_size(global_batch_size, world_size, r) for r in range(rank))
    return flags[start : start + rank_batch_size(global_batch_size, world_size, rank)]


def crop_bounds(
    shape: Sequence[int], initial: Sequence[int], patch: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive range ``[lower, upper]`` of a crop's lower corner, per axis.

    Our reading of the method's "[−pad/2, shape + pad/2 + pad%2 − patch]", in Python integer
    arithmetic, where the cropped size is the *initial* patch:

    - ``pad = initial − patch``, grown to ``initial − shape`` when the image is smaller, so the
      padded image always holds one initial patch;
    - ``lower = (−pad) // 2 = −ceil(pad / 2)`` (unary minus binds before floor division);
    - ``upper = shape + pad // 2 + pad % 2 − initial = shape + ceil(pad / 2) − initial``;
    - both ends inclusive (drawn with ``integers(lower, upper + 1)``).

    A crop may therefore stick out ``ceil(pad / 2)`` voxels past either border, and the final
    (centre) patch of a random crop can reach half the margin beyond the image on each side.
    """
    shape_a = np.asarray(shape, dtype=np.int64)
    initial_a = np.asarray(initial, dtype=np.int64)
    pad = np.maximum(initial_a - np.asarray(patch, dtype=np.int64), initial_a - shape_a)
    lower = -pad // 2
    upper = shape_a + pad // 2 + pad % 2 - initial_a
    return lower, upper


@dataclass(frozen=True)
class SamplerConfig:
    """What the sampler reads and how it crops.

    Attributes:
        folder: preprocessed folder of the configuration (``CASE.npy``, ``CASE_seg.npy``, ...).
        case_ids: the cases of this split (training or validation).
        patch_size: the final patch (2 entries for a 2D configuration, 3 for 3D).
        initial_patch_size: the enlarged crop actually read (same length, >= patch_size).
        forced_slots: one flag per batch slot; its length is the batch size.
        ignore_label: the dataset's ignore label; random slots are then centred on annotated voxels.
        previous_stage_folder: cascade only, holds ``CASE.npy`` segmentations of the lower stage.
        seed: base seed; worker ``i`` uses ``seed + i``.
    """

    folder: Path
    case_ids: tuple[str, ...]
    patch_size: tuple[int, ...]
    initial_patch_size: tuple[int, ...]
    forced_slots: tuple[bool, ...]
    ignore_label: int | None = None
    previous_stage_folder: Path | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        patch, initial = tuple(self.patch_size), tuple(self.initial_patch_size)
        if len(patch) not in (2, 3) or len(initial) != len(patch):
            raise AutoSegError(
                f"patch size {patch} / initial patch size {initial}: need 2 or 3 entries each, "
                "of equal length. Fix: check the configuration's patch_size."
            )
        if any(p < 1 or i < p for p, i in zip(patch, initial, strict=True)):
            raise AutoSegError(
                f"initial patch size {initial} must be >= patch size {patch} >= 1 on every axis. "
                "Fix: recompute the initial patch size from the final patch."
            )
        if not self.forced_slots or not self.case_ids:
            raise AutoSegError(
                f"sampler for {self.folder}: needs at least one case and one batch slot "
                f"(got {len(self.case_ids)} cases, {len(self.forced_slots)} slots). "
                "Fix: check the split and the batch size."
            )


@dataclass(frozen=True)
class _CaseArrays:
    """One opened case: memory maps plus the non-empty location arrays the sampler draws from."""

    data: np.ndarray
    seg: np.ndarray
    previous: np.ndarray | None
    foreground: tuple[np.ndarray, ...]
    annotated: np.ndarray | None
    nbytes: int


def _key_members(key: str, where: Path) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in key.strip("()").split(","))
    except ValueError:
        raise AutoSegError(
            f"{where}: class location key '{key}' is not a label or a tuple of labels. "
            "Fix: re-run preprocessing with --clean."
        ) from None


def _split_locations(
    locations: dict[str, np.ndarray], where: Path
) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
    """Foreground classes/regions vs. the 'annotated' group (its key contains -1); empty ones dropped."""
    foreground: list[np.ndarray] = []
    annotated = None
    for key, coords in locations.items():
        if len(coords) == 0:
            continue
        if -1 in _key_members(key, where):
            annotated = coords
        else:
            foreground.append(coords)
    return tuple(foreground), annotated


def _open_previous(folder: Path, case_id: str, expected: tuple[int, ...]) -> np.ndarray:
    path = Path(folder) / f"{case_id}.npy"
    try:
        previous = np.load(path, mmap_mode="r", allow_pickle=False)
    except (FileNotFoundError, ValueError) as error:
        raise AutoSegError(
            f"{path}: previous-stage segmentation missing or unreadable ({error}). "
            "Fix: predict the training cases with the lower cascade stage first."
        ) from None
    if previous.ndim == len(expected) - 1:
        previous = previous[None]
    if previous.shape != expected or not np.issubdtype(previous.dtype, np.integer):
        raise AutoSegError(
            f"{path}: previous-stage segmentation is {previous.dtype} {previous.shape}, expected "
            f"integer labels of shape {expected}. Fix: export it in this plan's preprocessed space."
        )
    return previous


def _open_case(config: SamplerConfig, case_id: str) -> _CaseArrays:
    folder = Path(config.folder)
    data, seg, _ = load_case(folder, case_id, mmap=True)
    if seg is None:
        raise AutoSegError(
            f"{folder / case_id}_seg.npy: missing; training needs the segmentation. "
            "Fix: re-run preprocessing of the training cases."
        )
    if data.ndim != 4 or seg.shape != (1, *data.shape[1:]):
        raise AutoSegError(
            f"{folder / case_id}: image {data.shape} / seg {seg.shape} are not (c, x, y, z) / "
            "(1, x, y, z) of one shape. Fix: re-run preprocessing with --clean."
        )
    where = folder / f"{case_id}_locations.npz"
    foreground, annotated = _split_locations(load_class_locations(folder, case_id), where)
    previous = None
    if config.previous_stage_folder is not None:
        previous = _open_previous(config.previous_stage_folder, case_id, seg.shape)
    nbytes = sum(a.nbytes for a in foreground) + (0 if annotated is None else annotated.nbytes)
    return _CaseArrays(data, seg, previous, foreground, annotated, nbytes)


def _copy_window(source: np.ndarray, lead: tuple[int, ...], lower: list[int], out: np.ndarray):
    """Copy the in-bounds part of the window at ``lower`` into ``out`` (pre-filled with padding).

    ``source`` is ``(C, *lead_axes, *window_axes)``; ``lead`` fixes the leading spatial axes (the
    slice index of a 2D configuration). Only the window is read from the memory map.
    """
    shape = source.shape[1 + len(lead) :]
    src: list[Any] = [slice(None), *lead]
    dst: list[Any] = [slice(None)]
    for low, size, extent in zip(lower, out.shape[1:], shape, strict=True):
        start, stop = max(low, 0), min(low + size, extent)
        if stop <= start:
            return
        src.append(slice(start, stop))
        dst.append(slice(start - low, stop - low))
    out[tuple(dst)] = source[tuple(src)]


class PatchSampler:
    """Infinite iterator of training batches ``{"data", "seg", "keys"}`` (see module docstring).

    ``data`` is float32 ``(b, c, *initial_patch_size)``; ``seg`` is int16 ``(b, 1, ...)``, or
    ``(b, 2, ...)`` in a cascade (channel 1 = previous stage). Outside the image, data is 0 and
    seg is -1.
    """

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self._patch = np.asarray(config.patch_size, dtype=np.int64)
        self._initial = np.asarray(config.initial_patch_size, dtype=np.int64)
        self._is_2d = len(config.patch_size) == 2
        self._rng = np.random.default_rng(config.seed)
        self._cache: OrderedDict[str, _CaseArrays] = OrderedDict()
        self._cached_bytes = 0

    def set_thread_id(self, thread_id: int) -> None:
        """Reseed with ``seed + thread_id`` so that every background worker draws its own stream."""
        self._rng = np.random.default_rng(self.config.seed + thread_id)

    def __getstate__(self) -> dict[str, Any]:
        # Sent to a worker process: drop the memory maps (pickling them copies whole arrays).
        return {**self.__dict__, "_cache": OrderedDict(), "_cached_bytes": 0}

    def __iter__(self) -> PatchSampler:
        return self

    def __next__(self) -> Batch:
        config = self.config
        size = len(config.forced_slots)
        keys = [config.case_ids[i] for i in self._rng.integers(len(config.case_ids), size=size)]
        cases = [self._case(key) for key in keys]
        channels = {case.data.shape[0] for case in cases}
        if len(channels) != 1:
            raise AutoSegError(
                f"{config.folder}: cases {keys} have different channel counts {sorted(channels)}. "
                "Fix: re-run preprocessing with --clean."
            )
        initial = tuple(config.initial_patch_size)
        data = np.zeros((size, channels.pop(), *initial), dtype=np.float32)
        seg_channels = 1 if config.previous_stage_folder is None else 2
        seg = np.full((size, seg_channels, *initial), -1, dtype=np.int16)
        for j, (case, forced) in enumerate(zip(cases, config.forced_slots, strict=True)):
            self._fill(case, forced, data[j], seg[j])
        return {"data": data, "seg": seg, "keys": keys}

    def _case(self, case_id: str) -> _CaseArrays:
        cached = self._cache.get(case_id)
        if cached is not None:
            self._cache.move_to_end(case_id)
            return cached
        case = _open_case(self.config, case_id)
        self._cache[case_id] = case
        self._cached_bytes += case.nbytes
        while len(self._cache) > 1 and (
            len(self._cache) > MAX_CACHED_CASES or self._cached_bytes > MAX_CACHED_LOCATION_BYTES
        ):
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= dropped.nbytes
        return case

    def _choose_voxel(self, case: _CaseArrays, forced: bool) -> np.ndarray | None:
        """A stored voxel to centre on, or None for a random crop.

        Forced slots pick a class/region uniformly among those present, then a voxel; the
        'annotated' group is the fallback when a case has no foreground. With an ignore label,
        random slots are centred on an annotated voxel so that they are not mostly unlabelled.
        """
        annotated = () if case.annotated is None else (case.annotated,)
        if forced:
            pool = case.foreground or annotated
        elif self.config.ignore_label is not None:
            pool = annotated
        else:
            return None
        if not pool:
            return None
        coords = pool[int(self._rng.integers(len(pool)))]
        return coords[int(self._rng.integers(len(coords)))]

    def _lower_corner(self, shape: tuple[int, ...], centre: np.ndarray | None) -> list[int]:
        lower, upper = crop_bounds(shape, self._initial, self._patch)
        if centre is None:
            return self._rng.integers(lower, upper + 1).tolist()
        # Centred on the voxel; only the lower end is clipped, as in the method.
        return np.maximum(lower, centre.astype(np.int64) - self._initial // 2).tolist()

    def _fill(self, case: _CaseArrays, forced: bool, data: np.ndarray, seg: np.ndarray) -> None:
        spatial = case.seg.shape[1:]
        voxel = self._choose_voxel(case, forced)
        lead: tuple[int, ...] = ()
        centre = voxel
        if self._is_2d:
            index = int(self._rng.integers(spatial[0])) if voxel is None else int(voxel[0])
            lead, spatial, centre = (index,), spatial[1:], None if voxel is None else voxel[1:]
        lower = self._lower_corner(spatial, centre)
        _copy_window(case.data, lead, lower, data)
        _copy_window(case.seg, lead, lower, seg[:1])
        if case.previous is not None:
            _copy_window(case.previous, lead, lower, seg[1:])
