"""nnU-Net parameter names map one to one onto AutoSeg's network: every fixture checkpoint fills the
network its plans describe exactly (strict load, no tensor left over), and foreign names are refused."""

from __future__ import annotations

import pytest
import torch
from Testing.engine.interop.nnunet_reference import ALL_MODELS, MODELS, read_json

from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_checkpoint import load_nnunet_checkpoint
from autoseg.interop.nnunet_plans import plans_from_nnunet
from autoseg.interop.nnunet_weights import autoseg_name, autoseg_state_dict
from autoseg.network import build_network

NAMES = {
    "encoder.stages.1.0.convs.0.conv.weight": "encoder.stages.1.0.conv.weight",
    "encoder.stages.2.0.convs.1.norm.bias": "encoder.stages.2.1.norm.bias",
    "encoder.stem.convs.0.norm.weight": "encoder.stem.norm.weight",
    "encoder.stages.1.blocks.0.conv2.norm.weight": "encoder.stages.1.0.conv2.norm.weight",
    "encoder.stages.1.blocks.0.skip.1.conv.weight": "encoder.stages.1.0.skip.1.weight",
    "encoder.stages.1.blocks.0.skip.1.norm.bias": "encoder.stages.1.0.skip.2.bias",
    "encoder.stages.1.blocks.0.skip.0.norm.weight": "encoder.stages.1.0.skip.1.weight",
    "decoder.transpconvs.0.weight": "decoder.upsamplers.0.weight",
    "decoder.stages.1.convs.1.conv.bias": "decoder.stages.1.1.conv.bias",
    "decoder.seg_layers.2.weight": "decoder.seg_layers.2.weight",
}


@pytest.mark.parametrize(("nnunet", "ours"), NAMES.items())
def test_names_map_by_layer_kind(nnunet: str, ours: str) -> None:
    assert autoseg_name(nnunet) == ours


@pytest.mark.parametrize("model", ALL_MODELS)
def test_each_fixture_checkpoint_fills_its_network_exactly(model: str) -> None:
    folder = MODELS / model
    configuration = model.split("__")[2]
    plans = plans_from_nnunet(read_json(folder / "plans.json"), "plans", configuration)
    config = plans.configuration(configuration)
    labels = len(read_json(folder / "dataset.json")["labels"])
    channels = 2 + (labels - 1 if config.previous_stage else 0)  # cascade: one-hot of the labels
    network = build_network(config.architecture, channels, labels, deep_supervision=False)
    weights = load_nnunet_checkpoint(next(folder.glob("fold_*/checkpoint_final.pth")))
    result = network.load_state_dict(weights.network_weights, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys


def test_wrapper_prefixes_and_duplicate_copies_are_dropped() -> None:
    tensor = torch.zeros(2)
    weights = {
        "_orig_mod.decoder.seg_layers.0.bias": tensor,
        "module.decoder.encoder.stages.0.0.convs.0.conv.bias": tensor,
        "encoder.stages.0.0.convs.0.all_modules.0.bias": tensor,
    }
    assert autoseg_state_dict(weights, "c.pth") == {"decoder.seg_layers.0.bias": tensor}


def test_a_parameter_of_another_network_is_refused_by_name() -> None:
    weights = {"encoder.stages.0.attention.qkv.weight": torch.zeros(2)}
    with pytest.raises(AutoSegError) as caught:
        autoseg_state_dict(weights, "fold_0/checkpoint_final.pth")
    message = str(caught.value)
    assert "encoder.stages.0.attention.qkv.weight" in message
    assert "fold_0/checkpoint_final.pth" in message
    assert "\n" not in message
