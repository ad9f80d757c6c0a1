"""Cross-validation splits: the 5-fold split, the user's own splits file, and the extra folds.

The default split reproduces scikit-learn's ``KFold(5, shuffle=True, random_state=12345)`` over the
sorted case identifiers exactly (without importing scikit-learn), so AutoSeg folds contain the same
cases as nnU-Net folds of the same dataset and results can be compared fold by fold. The split is
written once to ``splits_final.json`` in the preprocessed dataset folder; a file the user put there
is used as is (any number of splits), which is how custom or stratified splits are made.

A dataset that changed after its splits were written (the annotation loop adds corrected cases; a
case may be removed) keeps its validation sets: a case in no split joins the training set of every
fold, and a listed case that is gone is dropped, each with one line on stderr. Re-splitting instead
would move cases between training and validation of folds already trained, and their validation
Dice would stop meaning anything. Delete ``splits_final.json`` to re-split on purpose.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError

__all__ = ["SPLITS_FILE", "fold_cases", "kfold_splits", "load_or_create_splits"]

SPLITS_FILE = "splits_final.json"
DEFAULT_SEED = 12345
Split = dict[str, list[str]]


def kfold_splits(
    case_ids: Iterable[str], n_splits: int = 5, seed: int = DEFAULT_SEED
) -> list[Split]:
    """``n_splits`` folds over the sorted ids, identical to sklearn's shuffled KFold.

    The ids' positions are shuffled with ``RandomState(seed)``; consecutive blocks become the
    validation sets, the first ``n % n_splits`` blocks one case larger. Both lists come out sorted.
    """
    keys = sorted(case_ids)
    if n_splits < 2 or len(keys) < n_splits:
        raise AutoSegError(
            f"Cannot make {n_splits} cross-validation folds from {len(keys)} training cases. "
            f"Fix: add cases, train with fold 'all', or write your own {SPLITS_FILE} "
            "into the preprocessed dataset folder."
        )
    order = np.arange(len(keys))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, len(keys) // n_splits)
    sizes[: len(keys) % n_splits] += 1
    splits = []
    start = 0
    for size in sizes:
        is_val = np.zeros(len(keys), dtype=bool)
        is_val[order[start : start + size]] = True
        start += size
        splits.append(
            {
                "train": [keys[i] for i in np.flatnonzero(~is_val)],
                "val": [keys[i] for i in np.flatnonzero(is_val)],
            }
        )
    return splits


def _shown(ids: Sequence[str]) -> str:
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


def _split_problem(split: Any, index: int, known: set[str]) -> str | None:
    """What is wrong with one entry of a splits file, or None.

    Unknown case ids are a problem only when nothing of that part is left without them: the
    others were removed from the dataset and are dropped by :func:`_fit_to_cases`.
    """
    if not isinstance(split, dict) or not {"train", "val"} <= split.keys():
        return f"entry {index} is not an object with 'train' and 'val' lists"
    for part in ("train", "val"):
        ids = split[part]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return f"entry {index} '{part}' must be a non-empty list of case identifiers"
        if not set(ids) & known:
            unknown = sorted(set(ids) - known)
            return f"entry {index} '{part}' names only unknown case(s): {_shown(unknown)}"
    return None


def _fit_to_cases(splits: list[Split], case_ids: Sequence[str], path: Path) -> list[Split]:
    """Drop cases that are gone; add cases in no split to every training set (see module doc)."""
    known = set(case_ids)
    listed = {i for split in splits for part in split.values() for i in part}
    gone, added = sorted(listed - known), sorted(known - listed)
    if gone:
        print(
            f"{path}: {len(gone)} listed case(s) are no longer in the dataset and are left "
            f"out: {_shown(gone)}",
            file=sys.stderr,
        )
    if added:
        print(
            f"{path}: {len(added)} case(s) added after the splits were written join the "
            f"training set of every fold (validation sets unchanged): {_shown(added)}. "
            f"Delete {SPLITS_FILE} to re-split.",
            file=sys.stderr,
        )
    return [
        {
            "train": [i for i in s["train"] if i in known] + added,
            "val": [i for i in s["val"] if i in known],
        }
        for s in splits
    ]


def _read_splits(path: Path, case_ids: Sequence[str]) -> list[Split]:
    fix = f"Fix: correct the file, or delete it to get the default {SPLITS_FILE}."
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AutoSegError(f"{path}: cannot be read as JSON ({error}). {fix}") from None
    if not isinstance(splits, list) or not splits:
        raise AutoSegError(
            f'{path}: must be a non-empty list of {{"train": [...], "val": [...]}}. {fix}'
        )
    known = set(case_ids)
    for index, split in enumerate(splits):
        problem = _split_problem(split, index, known)
        if problem:
            raise AutoSegError(f"{path}: {problem}. {fix}")
    return _fit_to_cases(splits, case_ids, path)


def load_or_create_splits(preprocessed_dataset_dir: Path, case_ids: Iterable[str]) -> list[Split]:
    """The dataset's splits: the existing ``splits_final.json`` (validated) or a new 5-fold one."""
    case_ids = list(case_ids)
    path = Path(preprocessed_dataset_dir) / SPLITS_FILE
    if path.is_file():
        return _read_splits(path, case_ids)
    splits = kfold_splits(case_ids)
    write_json_atomic(path, splits)
    return splits


def _fold_number(fold: int | str) -> int:
    if isinstance(fold, str) and fold.strip().isdigit():
        return int(fold)
    if isinstance(fold, int) and not isinstance(fold, bool) and fold >= 0:
        return fold
    raise AutoSegError(f"Fold {fold!r} is not valid. Fix: use a fold number 0, 1, ... or 'all'.")


def fold_cases(
    splits: Sequence[Split], fold: int | str, case_ids: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(train, val) case ids of a fold.

    ``"all"`` trains and validates on every case. A fold beyond the splits gets a random 80:20
    split of the sorted ids seeded with ``12345 + fold``, so extra folds (e.g. for ensembles of
    more than five models) are reproducible.
    """
    keys = sorted(case_ids)
    if isinstance(fold, str) and fold.strip().lower() == "all":
        return list(keys), list(keys)
    number = _fold_number(fold)
    if number < len(splits):
        return list(splits[number]["train"]), list(splits[number]["val"])
    rng = np.random.RandomState(DEFAULT_SEED + number)
    train_index = rng.choice(len(keys), int(len(keys) * 0.8), replace=False)
    is_train = np.zeros(len(keys), dtype=bool)
    is_train[train_index] = True
    train = [keys[i] for i in train_index]
    val = [keys[i] for i in np.flatnonzero(~is_train)]
    return train, val
