"""Ensembles of saved predictions: average the probabilities of several folders, case by case.

Configuration ensembles average *probabilities* (the ``.npz`` files written with ``--npz`` or
``--save_probabilities``), unlike fold ensembles, which average logits inside one prediction.
Each case's geometry comes from the ``CASE.json`` properties written next to its probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoseg.errors import AutoSegError
from autoseg.inference.export import (
    probabilities_to_segmentation,
    save_probabilities,
    write_segmentation,
)
from autoseg.labels import LabelSpec
from autoseg.parallel import map_cases


@dataclass(frozen=True)
class EnsembleTarget:
    """What the averaged cases are written as."""

    output_dir: Path
    labels: LabelSpec
    file_ending: str
    reader_writer: str
    save_npz: bool = False


def shared_cases(input_dirs: Sequence[Path]) -> list[str]:
    """Case ids with probabilities in every folder; differing sets are an error listing them."""
    if len(input_dirs) < 2:
        raise AutoSegError("ensemble: give at least two prediction folders (-i F1 F2 ...)")
    sets = []
    for folder in map(Path, input_dirs):
        cases = {p.name[: -len(".npz")] for p in folder.glob("*.npz")}
        if not cases:
            raise AutoSegError(
                f"{folder}: no .npz probabilities; predict with --save_probabilities "
                "(or train with --npz) to ensemble"
            )
        sets.append(cases)
    common = set.intersection(*sets)
    for folder, cases in zip(input_dirs, sets, strict=True):
        extra = sorted(cases - common)
        if extra:
            raise AutoSegError(
                f"{folder}: cases missing from other folders: {', '.join(extra[:5])}"
                + (" ..." if len(extra) > 5 else "")
                + ". Fix: ensemble folders that predicted the same cases"
            )
    return sorted(common)


def _load(folder: Path, case_id: str) -> np.ndarray:
    with np.load(Path(folder) / f"{case_id}.npz", allow_pickle=False) as data:
        return data["probabilities"].astype(np.float32)


def _ensemble_case(item: tuple[str, tuple[Path, ...], EnsembleTarget]) -> Path:
    case_id, folders, target = item
    total = _load(folders[0], case_id)
    for folder in folders[1:]:
        probabilities = _load(folder, case_id)
        if probabilities.shape != total.shape:
            raise AutoSegError(
                f"{folder / case_id}.npz: shape {probabilities.shape} differs from "
                f"{total.shape} in {folders[0]}; the folders come from different label sets"
            )
        total += probabilities
    total /= len(folders)
    properties = json.loads((Path(folders[0]) / f"{case_id}.json").read_text(encoding="utf-8"))
    output = target.output_dir / f"{case_id}{target.file_ending}"
    segmentation = probabilities_to_segmentation(total, target.labels)
    write_segmentation(segmentation, properties, output, target.reader_writer)
    if target.save_npz:
        save_probabilities(total, properties, target.output_dir / case_id)
    return output


def ensemble_folders(
    input_dirs: Sequence[Path], target: EnsembleTarget, num_processes: int = 1
) -> list[Path]:
    """Average every shared case's probabilities and write its segmentation (and npz)."""
    folders = tuple(Path(f) for f in input_dirs)
    if any(target.output_dir.resolve() == f.resolve() for f in folders):
        raise AutoSegError(f"{target.output_dir}: the output folder must not be an input folder")
    cases = shared_cases(folders)
    target.output_dir.mkdir(parents=True, exist_ok=True)
    items = [(case, folders, target) for case in cases]
    return map_cases(_ensemble_case, items, num_processes, stage="ensemble")
