"""``autoseg predict --backend``: the choice reaches the predictor, is recorded in predict_args.json,
and an impossible one is a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from Testing.engine.interop.nnunet_reference import IMAGES, MODELS, PLAIN

from autoseg.cli import main

QUIET = ["-device", "cpu", "--progress", "none", "--disable_tta", "-step_size", "1"]


def test_the_backend_flag_runs_the_runtime_and_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = Path(shutil.copytree(MODELS / PLAIN, tmp_path / PLAIN))
    out = tmp_path / "out"
    argv = ["predict", "-i", str(IMAGES), "-o", str(out), "-m", str(model), *QUIET]
    assert main([*argv, "--backend", "onnxruntime"]) == 0
    assert json.loads((out / "predict_args.json").read_text(encoding="utf-8"))["backend"] == (
        "onnxruntime"
    )
    assert len(list((model / "fold_0" / "runtime_cache").glob("onnxruntime_*.onnx"))) == 1
    assert "Predicted 3 case(s)" in capsys.readouterr().out


def test_an_unknown_backend_is_refused_by_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", "-i", str(IMAGES), "-o", str(tmp_path), "-m", str(MODELS / PLAIN)]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--backend", "tensorrt"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err
