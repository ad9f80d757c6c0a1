"""``autoseg evaluate``: folder against folder, summary.json, clear errors."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from autoseg.cli import main
from autoseg.evaluation import load_summary


def _write(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))


def test_evaluate_writes_summary_and_prints_means(tmp_path, capsys) -> None:
    reference = np.zeros((4, 8, 8))
    reference[1:3, 2:6, 2:6] = 1
    reference[0, 0, 0] = 2
    prediction = reference.copy()
    prediction[1, 2:6, 2:6] = 0  # half of label 1 missed
    _write(tmp_path / "ref" / "a.nii.gz", reference)
    _write(tmp_path / "pred" / "a.nii.gz", prediction)
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "liver": 1, "dot": 2},
                "numTraining": 1,
                "file_ending": ".nii.gz",
            }
        )
    )
    code = main(
        [
            "evaluate",
            str(tmp_path / "ref"),
            str(tmp_path / "pred"),
            "-djfile",
            str(tmp_path / "dataset.json"),
            "-np",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = load_summary(tmp_path / "pred" / "summary.json")
    assert summary["mean"]["1"]["Dice"] == 2 * 16 / (32 + 16)
    assert summary["mean"]["2"]["Dice"] == 1.0
    assert "liver" in out
    assert "Mean foreground Dice" in out


def test_missing_folder_is_one_line(tmp_path, capsys) -> None:
    code = main(["evaluate", str(tmp_path / "nope"), str(tmp_path), "-djfile", "x.json"])
    assert code == 2
    assert "folder not found" in capsys.readouterr().err
