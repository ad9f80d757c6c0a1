"""On-disk format of preprocessed cases, built for fast random patch reads during training.

Per case, inside ``preprocessed/DatasetXXX/<data_identifier>/``:

- ``CASE.npy``: float32 image ``(c, x, y, z)``, C order, uncompressed.
- ``CASE_seg.npy``: int8/int16 labels ``(1, x, y, z)`` (-1 outside the non-zero mask).
- ``CASE_locations.npz``: class locations, ``keys`` (unicode array) plus ``class_0..n`` ``(N, 3)``
  int32 arrays, so it loads with ``allow_pickle=False``.
- ``CASE.json``: properties (shapes, crop box, spacing, geometry); written last, so its presence
  marks a complete case and an interrupted run simply redoes the case. Its ``provenance`` entry
  records what the case was made from (raw file stamps and a digest of the preprocessing
  settings, see :mod:`autoseg.provenance`), so a re-run redoes a case whose inputs changed.

Why plain ``.npy``: the training loader reads one small patch (e.g. 40x56x40 or one 2D slice) per
sample. ``np.load(mmap_mode="r")`` maps the file and a patch read touches only the pages of that
patch, with no decompression; a compressed ``.npz`` has to inflate the whole array for every
patch, which is orders of magnitude slower for CT-sized volumes (see bench/preprocess_storage.py).
The price is disk space (no compression), which is what nnU-Net's uncompressed mode also pays.
Pickle is never used: properties are JSON, arrays are numpy's own format with pickling disabled.
Every file is written to a temporary name and renamed, so a crash never leaves a truncated array.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoseg.atomic import atomic_path, write_json_atomic
from autoseg.errors import AutoSegError
from autoseg.provenance import PROVENANCE_KEY

if TYPE_CHECKING:  # only a type here: reading stored cases must not import scipy (Slicer's side)
    from autoseg.preprocessing.case import PreprocessedCase

DATA_SUFFIX = ".npy"
SEG_SUFFIX = "_seg.npy"
PROPERTIES_SUFFIX = ".json"
LOCATIONS_SUFFIX = "_locations.npz"
# Longest first, so "CASE_seg.npy" is recognised as case CASE and not as case "CASE_seg".
_ARRAY_SUFFIXES = (LOCATIONS_SUFFIX, SEG_SUFFIX, DATA_SUFFIX)
_SUFFIXES = (*_ARRAY_SUFFIXES, PROPERTIES_SUFFIX)


def _path(folder: Path, case_id: str, suffix: str) -> Path:
    return Path(folder) / f"{case_id}{suffix}"


def _save_array(target: Path, array: np.ndarray) -> None:
    with atomic_path(target, suffix=".npy") as temporary:
        np.save(temporary, np.ascontiguousarray(array), allow_pickle=False)


def _save_locations(target: Path, locations: dict[str, np.ndarray]) -> None:
    arrays = {f"class_{i}": np.asarray(v, dtype=np.int32) for i, v in enumerate(locations.values())}
    keys = np.array(list(locations), dtype=np.str_)
    with atomic_path(target, suffix=".npz") as temporary:
        np.savez(temporary, keys=keys, **arrays)


def _json_ready(value: Any) -> Any:
    """Plain Python types for json (numpy scalars/arrays and tuples appear in properties)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_case(
    folder: Path,
    case_id: str,
    case: PreprocessedCase,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Write one case; the properties JSON (with ``provenance``, what the case was made from)
    comes last and marks the case as complete."""
    folder = Path(folder)
    _path(folder, case_id, PROPERTIES_SUFFIX).unlink(missing_ok=True)
    _path(folder, case_id, SEG_SUFFIX).unlink(missing_ok=True)  # not left from an older version
    _save_array(_path(folder, case_id, DATA_SUFFIX), case.data.astype(np.float32, copy=False))
    if case.seg is not None:
        _save_array(_path(folder, case_id, SEG_SUFFIX), case.seg)
    _save_locations(_path(folder, case_id, LOCATIONS_SUFFIX), case.class_locations)
    properties = dict(case.properties)
    if provenance is not None:
        properties[PROVENANCE_KEY] = provenance
    write_json_atomic(_path(folder, case_id, PROPERTIES_SUFFIX), _json_ready(properties))


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise AutoSegError(
            f"{path}: preprocessed file is missing. Fix: re-run preprocessing for this dataset."
        ) from None
    except ValueError as error:
        raise AutoSegError(
            f"{path}: unreadable preprocessed array ({error}). Fix: re-run preprocessing with --clean."
        ) from None


def load_properties(folder: Path, case_id: str) -> dict[str, Any]:
    """The case's properties (shapes, crop box, spacing, geometry)."""
    path = _path(folder, case_id, PROPERTIES_SUFFIX)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutoSegError(
            f"{path}: properties of case '{case_id}' are missing. Fix: re-run preprocessing."
        ) from None
    except json.JSONDecodeError as error:
        raise AutoSegError(
            f"{path}: not valid JSON ({error}). Fix: re-run preprocessing with --clean."
        ) from None


def load_class_locations(folder: Path, case_id: str) -> dict[str, np.ndarray]:
    """Class locations ``{key: (N, 3) int32}``; empty when the case had no segmentation."""
    path = _path(folder, case_id, LOCATIONS_SUFFIX)
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as archive:
        keys = [str(k) for k in archive["keys"]]
        return {key: archive[f"class_{i}"] for i, key in enumerate(keys)}


def load_case(
    folder: Path, case_id: str, mmap: bool = True
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """``(data, seg or None, properties)``; with ``mmap`` the arrays are read-only memory maps."""
    data = _load_array(_path(folder, case_id, DATA_SUFFIX), mmap)
    seg_path = _path(folder, case_id, SEG_SUFFIX)
    seg = _load_array(seg_path, mmap) if seg_path.is_file() else None
    return data, seg, load_properties(folder, case_id)


def is_complete(folder: Path, case_id: str) -> bool:
    """True when the case was fully written (properties present and the arrays next to them)."""
    return all(
        _path(folder, case_id, suffix).is_file()
        for suffix in (PROPERTIES_SUFFIX, DATA_SUFFIX, LOCATIONS_SUFFIX)
    )


def case_ids(folder: Path) -> list[str]:
    """Sorted ids of the complete cases in a preprocessed folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = (p.name[: -len(PROPERTIES_SUFFIX)] for p in folder.glob(f"*{PROPERTIES_SUFFIX}"))
    return sorted(name for name in names if is_complete(folder, name))


def stored_provenance(folder: Path, case_id: str) -> dict[str, Any] | None:
    """What a complete stored case was made from; None when it is incomplete, unreadable or was
    written before provenance was recorded (the caller then redoes it)."""
    if not is_complete(folder, case_id):
        return None
    try:
        properties = json.loads(_path(folder, case_id, PROPERTIES_SUFFIX).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    value = properties.get(PROVENANCE_KEY) if isinstance(properties, dict) else None
    return value if isinstance(value, dict) else None


def _array_owner(name: str) -> str | None:
    """The case id an array file of ours belongs to (None for other names, hidden ones included:
    those are temporary files of atomic writes, possibly of a running process)."""
    suffix = next((s for s in _ARRAY_SUFFIXES if name.endswith(s)), None)
    if suffix is None or name.startswith(".") or len(name) == len(suffix):
        return None
    return name[: -len(suffix)]


def remove_cases_except(folder: Path, keep: Iterable[str]) -> list[str]:
    """Delete every stored case not in ``keep``; returns the removed ids, sorted.

    Only cases with an array file written by :func:`save_case` count, so other files a user put
    there stay. A file of a kept case is never touched, even where names are ambiguous (the
    segmentation of case ``x`` and the image of a case called ``x_seg`` are both ``x_seg.npy``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    kept = set(keep)
    protected = {f"{case_id}{suffix}" for case_id in kept for suffix in _SUFFIXES}
    owners = {_array_owner(p.name) for p in folder.iterdir() if p.name not in protected}
    removed = sorted(case_id for case_id in owners if case_id is not None and case_id not in kept)
    for case_id in removed:
        for suffix in (PROPERTIES_SUFFIX, DATA_SUFFIX, SEG_SUFFIX, LOCATIONS_SUFFIX):
            if f"{case_id}{suffix}" not in protected:
                _path(folder, case_id, suffix).unlink(missing_ok=True)
    return removed


def remove_case(folder: Path, case_id: str) -> None:
    """Delete a stored case; the properties go first, so a crash leaves an incomplete case."""
    for suffix in (PROPERTIES_SUFFIX, DATA_SUFFIX, SEG_SUFFIX, LOCATIONS_SUFFIX):
        _path(folder, case_id, suffix).unlink(missing_ok=True)
