"""Which stored cases are still current: a re-run redoes exactly the cases whose inputs changed.

A stored case is current when its recorded provenance equals what it would be made from now:

- the stamps (name, size, mtime) of its raw image and label files (see :mod:`autoseg.provenance`);
- a digest of the settings that shape the stored arrays: the configuration's preprocessing spec,
  the axis transposition, the labels, 2D or 3D, the reader, and the dataset intensity statistics
  of the channels whose normalization uses them (CT). Statistics of other channels are left out on
  purpose: re-planning after one case changed alters them, but not a single stored z-scored voxel,
  so including them would redo every case of an MR dataset for nothing;
- :data:`PREPROCESSING_FORMAT`, raised whenever a code change alters what is stored.

Cases stored without provenance (by AutoSeg before it recorded one) count as unknown and are redone
once: there is no way to tell whether they match the raw data. Cases whose raw files are gone are
deleted, because training uses every case in the folder and the user removed that case on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.dataset import CaseFiles
from autoseg.preprocessing.case import CaseRecipe
from autoseg.preprocessing.normalization import SCHEMES_USING_DATASET_STATISTICS
from autoseg.preprocessing.storage import (
    is_complete,
    remove_case,
    remove_cases_except,
    stored_provenance,
)
from autoseg.provenance import case_sources, named_list, settings_digest

# Raise when a change of the preprocessing code changes the stored arrays or properties.
PREPROCESSING_FORMAT = 2  # 2: labels resampled by argmax with nnU-Net's tie rule


def recipe_digest(recipe: CaseRecipe, reader: str) -> str:
    """Digest of everything besides the raw files that decides a stored case's content."""
    schemes = recipe.spec.normalization_schemes
    used_statistics = [
        stats if scheme in SCHEMES_USING_DATASET_STATISTICS else None
        for scheme, stats in zip(schemes, recipe.intensity_stats, strict=False)
    ]
    return settings_digest(
        {
            "spec": recipe.spec,
            "transpose_forward": recipe.transpose_forward,
            "intensity_stats": used_statistics,
            "labels": recipe.labels,
            "is_2d": recipe.is_2d,
            "reader": reader,
        }
    )


def case_provenance(case: CaseFiles, digest: str) -> dict[str, Any]:
    """What a case is made from now (stored with the case; compared on the next run)."""
    return {"format": PREPROCESSING_FORMAT, "settings": digest, "sources": case_sources(case)}


@dataclass
class Reconciliation:
    """The outcome of comparing a folder with the raw dataset (stale and orphaned cases deleted)."""

    todo: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def messages(self, folder: Path) -> list[str]:
        """One line per kind of surprise (none when cases are only new or were interrupted)."""
        kinds = (
            (self.changed, "redoing {n} case(s) whose raw files or preprocessing settings changed"),
            (self.unrecorded, "redoing {n} case(s) stored without a record of their raw files"),
            (self.removed, "removed {n} case(s) whose raw files are no longer in the dataset"),
        )
        return [
            f"{folder}: {text.format(n=len(ids))}: {named_list(ids)}" for ids, text in kinds if ids
        ]


def reconcile(folder: Path, expected: Mapping[str, Mapping[str, Any]]) -> Reconciliation:
    """Delete stored cases that are stale or no longer in the dataset; list the cases to (re)do.

    Stale cases are deleted before they are redone, so a redo that fails leaves no outdated case
    that training would pick up.
    """
    result = Reconciliation(removed=remove_cases_except(folder, expected))
    for case_id, provenance in expected.items():
        stored = stored_provenance(folder, case_id)
        if stored == provenance:
            continue
        result.todo.append(case_id)
        if is_complete(folder, case_id):
            (result.unrecorded if stored is None else result.changed).append(case_id)
            remove_case(folder, case_id)
    return result
