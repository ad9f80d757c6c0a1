"""nnU-Net checkpoints load with weights_only=True and a numpy-scalar allow-list; anything else that
would need code to run is refused in one line, before it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from Testing.engine.interop.nnunet_reference import (
    ALL_MODELS,
    MODELS,
    PLAIN,
    RESENC,
    UNPICKLED,
    CodeOnLoad,
)

from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_checkpoint import load_nnunet_checkpoint


def _fold_file(model: str) -> Path:
    return next((MODELS / model).glob("fold_*/checkpoint_final.pth"))


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_fixture_checkpoint_loads_safely(model: str) -> None:
    checkpoint = load_nnunet_checkpoint(_fold_file(model))
    assert checkpoint.configuration == model.split("__")[2]
    assert checkpoint.trainer_name == model.split("__", maxsplit=1)[0]
    assert checkpoint.mirror_axes == ((0, 1) if model.endswith("__2d") else (0, 1, 2))
    assert checkpoint.network_weights
    assert not any(
        ".all_modules." in k or k.startswith("decoder.encoder.") for k in checkpoint.network_weights
    )


def test_the_resenc_checkpoint_has_residual_projections() -> None:
    weights = load_nnunet_checkpoint(_fold_file(RESENC)).network_weights
    assert any(".skip." in name for name in weights)
    assert "encoder.stem.conv.weight" in weights


def _save(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


def test_a_checkpoint_that_needs_an_arbitrary_class_is_refused_before_it_runs(
    tmp_path: Path,
) -> None:
    weights = {"decoder.seg_layers.0.weight": torch.zeros(3, 4, 1, 1, 1)}
    path = _save(tmp_path / "checkpoint_final.pth", {"network_weights": weights, "x": CodeOnLoad()})
    UNPICKLED.clear()
    with pytest.raises(AutoSegError) as caught:
        load_nnunet_checkpoint(path)
    message = str(caught.value)
    assert UNPICKLED == []
    assert "\n" not in message
    assert str(path) in message
    assert "record_unpickling" in message  # the refused global is named
    assert "Fix:" in message


def test_a_numpy_array_is_not_on_the_allow_list(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.pth", {"network_weights": {}, "logging": {"a": np.zeros(3)}})
    with pytest.raises(AutoSegError, match="refused to load"):
        load_nnunet_checkpoint(path)


def test_float32_and_float64_log_scalars_load(tmp_path: Path) -> None:
    """nnU-Net's logs hold numpy scalars: float32 (nnunetv2 2.8) or float64 (older versions)."""
    weights = {"decoder.seg_layers.0.weight": torch.ones(3, 4, 1, 1, 1)}
    logging = {"mean_fg_dice": [np.float32(0.5), np.float64(0.25)]}
    state = {"network_weights": weights, "logging": logging, "init_args": {"configuration": "2d"}}
    checkpoint = load_nnunet_checkpoint(_save(tmp_path / "c.pth", state))
    assert checkpoint.configuration == "2d"
    assert checkpoint.mirror_axes == ()  # nnU-Net stores None when mirroring was off
    assert torch.equal(
        checkpoint.network_weights["decoder.seg_layers.0.weight"],
        weights["decoder.seg_layers.0.weight"],
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a checkpoint at all", "cannot read the checkpoint"),
        (None, "not an nnU-Net checkpoint"),
    ],
)
def test_damaged_or_foreign_files_are_one_line(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "checkpoint_final.pth"
    if content is None:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(AutoSegError) as caught:
        load_nnunet_checkpoint(path)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_truncated_fixture_checkpoint_is_one_line(tmp_path: Path) -> None:
    data = _fold_file(PLAIN).read_bytes()
    path = tmp_path / "checkpoint_final.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AutoSegError, match="cannot read the checkpoint") as caught:
        load_nnunet_checkpoint(path)
    assert "\n" not in str(caught.value)
