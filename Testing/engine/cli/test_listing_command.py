"""``autoseg list_models``: the table, ``--json`` for programs, ``-d`` and the results variables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from Testing.engine.interop.nnunet_reference import DATASET, MODELS, PLAIN

from autoseg.cli import main


def _results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(MODELS / PLAIN, root / DATASET / PLAIN)
    version = root / DATASET / PLAIN / "versions" / "1"
    shutil.copytree(MODELS / PLAIN, version)
    (version / "version.json").write_text(json.dumps({"version": 1, "kept": "2030-01-01"}))
    return root


def test_json_lists_the_model_and_its_version(tmp_path: Path, capsys) -> None:
    root = _results(tmp_path)
    assert main(["list_models", "--results", str(root), "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert [(m["configuration"], m["version"]) for m in models] == [
        ("3d_fullres", None),
        ("3d_fullres", 1),
    ]
    assert models[1]["path"] == str(root.absolute() / DATASET / PLAIN / "versions" / "1")
    assert models[0]["folds"][0]["fold"] == "0"
    assert models[1]["kept"] == "2030-01-01"


def test_table_from_the_environment_and_dataset_filter(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AUTOSEG_RESULTS", str(_results(tmp_path)))
    (tmp_path / "results" / "Dataset991_Other").mkdir()
    assert main(["list_models", "-d", "990"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("DATASET")
    assert [line.split()[2] for line in lines[1:]] == ["current", "1"]
    assert main(["list_models", "-d", "991"]) == 0
    assert "No trained models" in capsys.readouterr().out


def test_no_models_and_no_root(tmp_path: Path, capsys, monkeypatch) -> None:
    for name in ("AUTOSEG_RESULTS", "nnUNet_results", "AUTOSEG_RAW", "nnUNet_raw"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert main(["list_models"]) == 0
    assert "No trained models under" in capsys.readouterr().out
    assert main(["list_models", "--results", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert "results folder not found" in error
    assert error.count("\n") == 1
