"""Allocation failures are recognised and told as one line with a fix; predict reports them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from autoseg.cli import main, predict_command
from autoseg.out_of_memory import (
    OUT_OF_MEMORY,
    PREDICTION_ADVICE,
    TRAINING_ADVICE,
    OutOfMemory,
    is_out_of_memory,
    out_of_memory,
    out_of_memory_reported,
)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    ],
)
def test_allocation_failures_are_recognised(error) -> None:
    assert is_out_of_memory(error)


@pytest.mark.parametrize(
    "error", [RuntimeError("shape mismatch"), ValueError("out of memory"), KeyError("x")]
)
def test_other_errors_are_not(error) -> None:
    assert not is_out_of_memory(error)


def test_the_message_names_the_memory_and_the_fix() -> None:
    gpu = out_of_memory(
        torch.OutOfMemoryError("CUDA out of memory.\nTried"), "Training", TRAINING_ADVICE
    )
    assert isinstance(gpu, OutOfMemory)
    assert gpu.kind == OUT_OF_MEMORY
    text = str(gpu)
    assert "\n" not in text
    assert text.startswith("Training ran out of GPU memory (CUDA out of memory. Tried).")
    assert "--gpu-memory-target" in text
    assert "-device cpu" in text
    assert "--num-workers" in text
    ram = str(out_of_memory(MemoryError(), "Prediction", PREDICTION_ADVICE))
    assert ram.startswith("Prediction ran out of main (RAM) memory (MemoryError).")
    assert out_of_memory(gpu, "x", "y") is gpu


def test_the_block_reports_then_raises_and_lets_other_errors_through() -> None:
    reported: list[OutOfMemory] = []
    with pytest.raises(OutOfMemory), out_of_memory_reported("Training", "Fix.", reported.append):
        raise MemoryError
    assert len(reported) == 1
    with pytest.raises(KeyError), out_of_memory_reported("Training", "Fix.", reported.append):
        raise KeyError("x")
    assert len(reported) == 1


def test_predict_reports_out_of_memory_as_a_json_event_and_one_line(
    tmp_path, monkeypatch, capsys
) -> None:
    def fail(job, progress):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(
        predict_command, "job_from", lambda args, env: SimpleNamespace(model_dir=tmp_path)
    )
    monkeypatch.setattr(predict_command, "predict", fail)
    argv = ["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-m", str(tmp_path)]
    assert main([*argv, "--progress", "json"]) == 2
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "error"
    assert events[-1]["kind"] == OUT_OF_MEMORY
    assert "-device cpu" in events[-1]["message"]
    assert captured.err.count("\n") == 1
    assert "Prediction ran out of GPU memory" in captured.err
    assert "Traceback" not in captured.err
    assert main(argv) == 2  # without --progress json: only the line on stderr
    assert capsys.readouterr().out == ""
