"""Model listing: AutoSeg and nnU-Net model folders and kept versions, read from files alone."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from Testing.engine.interop.nnunet_reference import DATASET as NNUNET_DATASET
from Testing.engine.interop.nnunet_reference import MODELS, PLAIN, RESENC

from autoseg.errors import AutoSegError
from autoseg.model_listing import (
    list_models,
    models_table,
    read_fold_cases,
    record_fold_cases,
)

OURS = "Dataset901_Tiny"
MODEL = "AutoSegTrainer__AutoSegPlans__3d_fullres"


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _fold(folder: Path, epochs: int, dice: float | None, mtime: float) -> None:
    """A trained AutoSeg fold as training leaves it (the checkpoint is never opened here)."""
    folder.mkdir(parents=True)
    (folder / "checkpoint_final.pth").write_bytes(b"not read by the listing")
    os.utime(folder / "checkpoint_final.pth", (mtime, mtime))
    events = [{"event": "start", "epochs": epochs}]
    events += [{"event": "epoch", "epoch": e} for e in range(epochs)]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if dice is not None:
        _write_json(folder / "validation" / "summary.json", {"foreground_mean": {"Dice": dice}})


def _autoseg_model(results: Path) -> Path:
    model = results / OURS / MODEL
    _write_json(model / "plans.json", {"format": "autoseg-plans", "plans_name": "AutoSegPlans"})
    _write_json(model / "dataset.json", {"labels": {"background": 0}})
    _fold(model / "fold_0", epochs=3, dice=0.8, mtime=2_000_000_000)
    record_fold_cases(model / "fold_0", ["c3", "c1", "c2"], ["c4"])
    _write_json(model / "fold_0" / "training_settings.json", {"from_model": "/m/versions/1"})
    _fold(model / "fold_1", epochs=3, dice=None, mtime=1_900_000_000)
    (model / "fold_2").mkdir()  # unfinished: no final checkpoint, not listed
    version = model / "versions" / "1"
    shutil.copytree(model, version, ignore=shutil.ignore_patterns("versions", "fold_1"))
    _write_json(version / "version.json", {"version": 1, "kept": "2030-01-01T00:00:00+00:00"})
    (model / "versions" / ".incomplete-2-99").mkdir()  # a crashed keep is not a version
    return model


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    _autoseg_model(root)
    for name in (PLAIN, RESENC):
        shutil.copytree(MODELS / name, root / NNUNET_DATASET / name)
    log = root / NNUNET_DATASET / PLAIN / "fold_0" / "training_log_2024_1_1_00_00_00.txt"
    log.write_text("2024-01-01 00:00:00.000000: Epoch 10\n2024-01-01 00:01:00.000000: Epoch 11\n")
    (root / "notes.txt").write_text("a stray file in the results root")
    return root


def test_models_and_versions_of_both_tools_are_listed(results: Path) -> None:
    models = {(m.dataset, Path(m.path).name, m.version): m for m in list_models(results)}
    assert set(models) == {
        (OURS, MODEL, None),
        (OURS, "1", 1),
        (NNUNET_DATASET, PLAIN, None),
        (NNUNET_DATASET, RESENC, None),
    }
    current = models[(OURS, MODEL, None)]
    assert (current.configuration, current.origin, current.kept) == ("3d_fullres", "autoseg", None)
    assert [f.fold for f in current.folds] == ["0", "1"]
    first = current.folds[0]
    assert (first.epochs, first.validation_dice, first.cases) == (3, 0.8, 4)
    assert first.from_model == "/m/versions/1"
    assert current.validation_dice == pytest.approx(0.8)  # fold 1 was not validated
    kept = models[(OURS, "1", 1)]
    assert (kept.trainer, kept.configuration) == ("AutoSegTrainer", "3d_fullres")
    assert kept.kept == "2030-01-01T00:00:00+00:00"
    assert [f.fold for f in kept.folds] == ["0"]
    nnunet = models[(NNUNET_DATASET, PLAIN, None)]
    assert (nnunet.origin, nnunet.trainer, nnunet.folds[0].epochs) == (
        "nnunet",
        "nnUNetTrainer",
        12,
    )
    assert models[(NNUNET_DATASET, RESENC, None)].folds[0].epochs is None  # no log kept


def test_current_model_comes_before_its_versions_newest_first(results: Path) -> None:
    model = results / OURS / MODEL
    shutil.copytree(model / "versions" / "1", model / "versions" / "2")
    versions = [m.version for m in list_models(results) if m.dataset == OURS]
    assert versions == [None, 2, 1]


def test_table_has_a_row_per_model_with_dice_and_epochs(results: Path) -> None:
    lines = models_table(list_models(results)).splitlines()
    assert lines[0].split()[:3] == ["DATASET", "MODEL", "VERSION"]
    ours = [line for line in lines if line.startswith(OURS)]
    assert len(ours) == 2
    assert ours[0].split()[2:6] == ["current", "AutoSeg", "0,1", "3"]
    assert ours[0].endswith("0.8000")
    assert ours[1].split()[2] == "1"
    plain = next(line for line in lines if PLAIN in line).split()
    assert plain[2:6] == ["current", "nnU-Net", "0", "12"]  # epochs from nnU-Net's text log
    assert plain[-1] == "-"  # no validation summary kept in the fixture


def test_fold_cases_round_trip_and_bad_record(tmp_path: Path) -> None:
    record_fold_cases(tmp_path, ["b", "a"], ["c"])
    assert read_fold_cases(tmp_path) == {"train": ["a", "b"], "validation": ["c"]}
    assert read_fold_cases(tmp_path / "elsewhere") is None
    (tmp_path / "training_cases.json").write_text('{"train": "a"}')
    with pytest.raises(AutoSegError, match="not a case record"):
        read_fold_cases(tmp_path)


def test_missing_results_root_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(AutoSegError) as caught:
        list_models(tmp_path / "nowhere")
    assert "results folder not found" in str(caught.value)
    assert "\n" not in str(caught.value)
