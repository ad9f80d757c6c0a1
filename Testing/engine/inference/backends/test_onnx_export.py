"""The ONNX export both runtimes convert from: a free batch axis, fixed patch, refusals in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autoseg.errors import AutoSegError
from autoseg.inference.backends.onnx_export import INPUT_NAME, export_onnx


def test_a_deep_supervision_network_is_refused_before_converting(tmp_path: Path) -> None:
    network = nn.Conv3d(1, 2, 1)
    network.deep_supervision = True
    with pytest.raises(AutoSegError, match="switch deep supervision off"):
        export_onnx(network, (1, 1, 4, 4, 4), tmp_path / "n.onnx")
    assert not (tmp_path / "n.onnx").exists()


def test_the_export_runs_any_batch_size_and_leaves_the_module_alone(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    network = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.GroupNorm(3, 3)).train()
    file = export_onnx(network, (1, 2, 8, 8), tmp_path / "n.onnx")
    assert network.training  # exported from a copy in eval mode
    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    batch = torch.randn(5, 2, 8, 8)
    (logits,) = session.run(None, {INPUT_NAME: batch.numpy()})
    with torch.no_grad():
        expected = network.eval()(batch).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
