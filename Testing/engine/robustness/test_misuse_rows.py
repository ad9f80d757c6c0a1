"""Misuse rows: output folders that cannot be made, and hostile model zips, refused cleanly.

Output rows: every command that creates folders is run with its output flag (``-o``,
``--preprocessed``, ``--results``, ``--raw`` of the converters, ``--output`` of the demo) pointing
(a) below a regular file and (b) below ``/sys``, which refuses new entries even to root (running as
root defeats ``chmod`` tricks). Each must stop with one line naming the path, the operating
system's reason and a fix, before any work, and change nothing else.

Zip rows: a zip bomb, a member with ``..`` and a member that is no model file are refused by
``import_model`` before anything is written into the results folder.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoseg.paths import DataRoots
from autoseg.postprocessing import Postprocessing

from .conftest import DATASET_ID, MODEL_DATASET, Workspace, refuse, write_volume

UNWRITABLE = Path("/sys/autoseg-robustness")  # EPERM for everyone, root included
_ROOTS = ("--progress", "none")


@dataclass(frozen=True)
class OutputRow:
    """One command whose output folder is bad: ``argv(ws, out, given)`` builds valid input in the
    workspace and returns the command line with ``out`` as the output folder (or file).
    ``fixture`` names a session fixture whose value is ``given``; with ``robust_model`` it is
    also the workspace's model (``ws.model``)."""

    name: str
    argv: Callable[[Workspace, Path, Any], list[str]]
    fixture: str | None = None


def _plan_and_preprocess(ws: Workspace, out: Path, given: Any) -> list[str]:
    ws.raw_dataset()
    return [
        "plan_and_preprocess",
        *("-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"),
        *("--raw", str(ws.roots.raw), "--preprocessed", str(out), *_ROOTS),
    ]


def _extract_fingerprint(ws: Workspace, out: Path, given: Any) -> list[str]:
    ws.raw_dataset()
    return [
        "extract_fingerprint",
        *("-d", str(DATASET_ID), "-np", "1"),
        *("--raw", str(ws.roots.raw), "--preprocessed", str(out), *_ROOTS),
    ]


def _train(ws: Workspace, out: Path, given: Any) -> list[str]:
    tiny: DataRoots = given
    return [
        *("train", "901", "3d_fullres", "0", "--quiet"),
        *("--raw", str(tiny.raw), "--preprocessed", str(tiny.preprocessed), "--results", str(out)),
    ]


def _predict(ws: Workspace, out: Path, given: Any) -> list[str]:
    inputs = ws.predict_inputs()
    return ["predict", "-i", str(inputs), "-o", str(out), "-m", str(ws.model), "-device", "cpu"]


def _evaluate(ws: Workspace, out: Path, given: Any) -> list[str]:
    dataset_json = ws.evaluation_folders()
    return [
        *("evaluate", str(ws.reference_dir), str(ws.prediction_dir)),
        *("-djfile", str(dataset_json), "-o", str(out / "summary.json"), "-np", "1"),
    ]


def _ensemble(ws: Workspace, out: Path, given: Any) -> list[str]:
    for name in ("plans.json", "dataset.json"):
        (ws.root / name).write_bytes((ws.model / name).read_bytes())
    inputs = [ws.root / "a" / "pred", ws.root / "b" / "pred"]
    for folder in inputs:
        folder.mkdir(parents=True)
    return ["ensemble", "-i", *map(str, inputs), "-o", str(out), "-np", "1"]


def _export_model(ws: Workspace, out: Path, given: Any) -> list[str]:
    results = ws.model.parents[1]
    return [
        "export_model",
        "-d",
        MODEL_DATASET,
        "-o",
        str(out / "model.zip"),
        "--results",
        str(results),
    ]


def _import_model(ws: Workspace, out: Path, given: Any) -> list[str]:
    zip_path = _model_zip(ws)
    return ["import_model", str(zip_path), "--results", str(out)]


def _apply_postprocessing(ws: Workspace, out: Path, given: Any) -> list[str]:
    ws.evaluation_folders()
    (ws.prediction_dir / "dataset.json").write_bytes(
        (ws.root / "evaluation_dataset.json").read_bytes()
    )
    rules = Postprocessing().save(ws.root / "postprocessing.json")
    return [
        *("apply_postprocessing", "-i", str(ws.prediction_dir), "-o", str(out)),
        *("-pp", str(rules), "-np", "1"),
    ]


def _msd_task(ws: Workspace) -> Path:
    task = ws.root / "Task05_Small"
    seg = ws.valid_label()
    write_volume(task / "imagesTr" / "small_1.nii.gz", seg.astype(np.float32))
    write_volume(task / "labelsTr" / "small_1.nii.gz", seg)
    description = {
        "name": "Small",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "a", "2": "b"},
        "numTraining": 1,
        "training": [{"image": "./imagesTr/small_1.nii.gz", "label": "./labelsTr/small_1.nii.gz"}],
    }
    (task / "dataset.json").write_text(json.dumps(description), encoding="utf-8")
    return task


def _convert_msd(ws: Workspace, out: Path, given: Any) -> list[str]:
    return ["convert_msd", "-i", str(_msd_task(ws)), "-np", "1", "--raw", str(out)]


def _convert_old_dataset(ws: Workspace, out: Path, given: Any) -> list[str]:
    task = _msd_task(ws)
    (task / "imagesTr" / "small_1.nii.gz").rename(task / "imagesTr" / "small_1_0000.nii.gz")
    return ["convert_old_dataset", str(task), "Dataset105_Small", "--raw", str(out)]


def _demo(ws: Workspace, out: Path, given: Any) -> list[str]:
    return ["demo", "--output", str(out), "--progress", "none"]


OUTPUT_ROWS = [
    OutputRow("plan_and_preprocess", _plan_and_preprocess),
    OutputRow("extract_fingerprint", _extract_fingerprint),
    OutputRow("train", _train, fixture="tiny_preprocessed"),
    OutputRow("predict", _predict, fixture="robust_model"),
    OutputRow("evaluate", _evaluate),
    OutputRow("ensemble", _ensemble, fixture="robust_model"),
    OutputRow("export_model", _export_model, fixture="robust_model"),
    OutputRow("import_model", _import_model, fixture="robust_model"),
    OutputRow("apply_postprocessing", _apply_postprocessing),
    OutputRow("convert_msd", _convert_msd),
    OutputRow("convert_old_dataset", _convert_old_dataset),
    OutputRow("demo", _demo),
]


def _below_a_file(ws: Workspace) -> tuple[Path, Path]:
    """(output path, the file standing in its way)."""
    blocking = ws.root / "taken.txt"
    blocking.parent.mkdir(parents=True, exist_ok=True)
    blocking.write_text("a file the user made")
    return blocking / "out", blocking


def _unwritable(ws: Workspace) -> tuple[Path, Path]:
    return UNWRITABLE / "out", UNWRITABLE / "out"


PLACES = {"below-a-file": _below_a_file, "unwritable": _unwritable}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("row", OUTPUT_ROWS, ids=lambda row: row.name)
def test_an_output_folder_that_cannot_be_made_is_one_line(
    row: OutputRow,
    place: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if place == "unwritable" and not UNWRITABLE.parent.is_dir():
        pytest.skip("needs Linux /sys")
    given = request.getfixturevalue(row.fixture) if row.fixture else None
    model = given if row.fixture == "robust_model" else tmp_path / "no_model"
    ws = Workspace(tmp_path / "ws", model)
    ws.root.mkdir(parents=True)
    out, named = PLACES[place](ws)
    outcome = refuse(ws, capsys, argv=row.argv(ws, out, given), bad=named)
    reason = "is a file, not a folder" if place == "below-a-file" else "Operation not permitted"
    assert any(reason in line for line in outcome.lines_naming(named)), outcome.text
    assert len(outcome.err.strip().splitlines()) == 1, outcome.err


# ------------------------------------------------------------------------------- model zips
def _model_zip(ws: Workspace) -> Path:
    """A valid model zip of the session's tiny model (export of its results folder)."""
    from autoseg.model_sharing import export_model

    target = ws.root / "shared" / "model.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    return export_model(ws.model.parent, target)


def _zip_with(ws: Workspace, name: str, extra: dict[str, bytes]) -> Path:
    """The valid model zip with ``extra`` members added."""
    source = _model_zip(ws)
    target = ws.root / name
    with zipfile.ZipFile(source) as valid, zipfile.ZipFile(target, "w") as archive:
        for info in valid.infolist():
            archive.writestr(info, valid.read(info))
        for member, data in extra.items():
            archive.writestr(member, data)
    source.unlink()
    return target


def _bomb(ws: Workspace) -> Path:
    """The valid zip plus 200 MB of zeros as a checkpoint, streamed in 1 MB writes (~200 kB)."""
    target = _zip_with(ws, "bomb.zip", {})
    member = f"{MODEL_DATASET}/{ws.model.name}/fold_0/checkpoint_best.pth"
    zeros = bytes(1 << 20)
    with (
        zipfile.ZipFile(target, "a", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open(member, "w", force_zip64=True) as stream,
    ):
        for _ in range(200):
            stream.write(zeros)
    return target


def _dot_dot(ws: Workspace) -> Path:
    return _zip_with(ws, "dotdot.zip", {f"{MODEL_DATASET}/../../evil.txt": b"outside"})


def _unknown_member(ws: Workspace) -> Path:
    member = f"{MODEL_DATASET}/{ws.model.name}/fold_0/run_me.sh"
    return _zip_with(ws, "unknown.zip", {member: b"#!/bin/sh\nrm -rf ~\n"})


ZIP_ROWS = {
    "zip-bomb": (_bomb, "looks like a zip bomb"),
    "zip-dot-dot": (_dot_dot, "'..' path component"),
    "zip-unknown-member": (_unknown_member, "is not a file a model zip holds"),
}


@pytest.mark.parametrize("row", list(ZIP_ROWS))
def test_a_hostile_model_zip_is_refused_before_anything_is_written(
    row: str,
    tmp_path: Path,
    robust_model: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = Workspace(tmp_path / "ws", robust_model)
    ws.root.mkdir(parents=True)
    build, reason = ZIP_ROWS[row]
    zip_path = build(ws)
    results = ws.root / "results"
    outcome = refuse(
        ws, capsys, argv=["import_model", str(zip_path), "--results", str(results)], bad=zip_path
    )
    assert any(reason in line for line in outcome.lines), outcome.text
    assert not results.exists()  # not even the results folder was made
    assert not (tmp_path / "evil.txt").exists()
