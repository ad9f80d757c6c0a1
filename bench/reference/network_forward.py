"""AutoSeg's network against nnU-Net's (dynamic_network_architectures) on the CPU: same outputs? how fast?

Runs only inside the reference environment (``make_nnunet_fixture.sh`` or
``run_reference_training.sh`` builds it), which has nnU-Net's network package; AutoSeg is imported
from this checkout. For the hippocampus 3d_fullres network (nnU-Net's plans for Dataset004: patch
40x56x40, 4 stages, 32..256 features) and its ResEnc M counterpart it builds nnU-Net's network,
copies its weights into AutoSeg's through AutoSeg's nnU-Net name mapping, checks both give the same
logits, and times one forward pass of a batch-1 patch in fp32 and under bf16 autocast, alternating
the two networks so machine load affects both alike. Prints one JSON line per network and precision.

    <venv>/bin/python bench/reference/network_forward.py [--repeats 15] [--threads 2]

Measured on this project's 2-core CPU VM (torch 2.13.0, 2 threads, 20 repeats, median s per forward,
nnU-Net's network / AutoSeg's): PlainConvUNet fp32 0.194 / 0.189, bf16 0.067 / 0.064; ResEnc M
fp32 0.335 / 0.322, bf16 0.136 / 0.135; logits equal to 2e-6. AutoSeg's network (GroupNorm with one
channel per group = InstanceNorm) is 1-9 % faster (two runs) and computes the same function, so nnU-Net models
run on it through the name mapping and dynamic-network-architectures is not a dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "AutoSegCore"))
from autoseg.interop.nnunet_plans import plans_from_nnunet
from autoseg.interop.nnunet_weights import autoseg_state_dict
from autoseg.network import build_network

PATCH = (40, 56, 40)
STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
COMMON = {
    "n_stages": 4,
    "features_per_stage": [32, 64, 128, 256],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 4,
    "strides": STRIDES,
    "n_conv_per_stage_decoder": [2, 2, 2],
    "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}
NETWORKS = {
    "PlainConvUNet": (PlainConvUNet, {"n_conv_per_stage": [2, 2, 2, 2]}),
    "ResidualEncoderUNet": (ResidualEncoderUNet, {"n_blocks_per_stage": [1, 3, 4, 6]}),
}


def _plans(name: str, extra: dict) -> dict:
    """A minimal nnU-Net plans file holding one configuration with this architecture."""
    configuration = {
        "patch_size": list(PATCH),
        "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "architecture": {
            "network_class_name": f"dynamic_network_architectures.architectures.unet.{name}",
            "arch_kwargs": {**COMMON, **extra},
        },
    }
    return {
        "dataset_name": "Dataset004_Hippocampus",
        "plans_name": "nnUNetPlans",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": configuration},
    }


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    cls, extra = NETWORKS[name]
    kwargs = {**COMMON, **extra}
    kwargs.update(
        conv_op=torch.nn.Conv3d,
        norm_op=torch.nn.InstanceNorm3d,
        nonlin=torch.nn.LeakyReLU,
        dropout_op=None,
    )
    theirs = cls(input_channels=1, num_classes=3, deep_supervision=False, **kwargs).eval()
    plans = plans_from_nnunet(_plans(name, extra), "bench", "3d_fullres")
    ours = build_network(
        plans.configuration("3d_fullres").architecture, 1, 3, deep_supervision=False
    ).eval()
    ours.load_state_dict(autoseg_state_dict(theirs.state_dict(), "bench"))
    return theirs, ours


def _time(network: torch.nn.Module, x: torch.Tensor, bf16: bool) -> float:
    autocast = torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        started = time.perf_counter()
        network(x)
        return time.perf_counter() - started


def measure(name: str, repeats: int) -> list[dict]:
    theirs, ours = _pair(name)
    x = torch.randn(1, 1, *PATCH, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = (theirs(x) - ours(x)).abs().max().item()
    rows = []
    for bf16 in (False, True):
        for network in (theirs, ours):  # warm-up
            _time(network, x, bf16)
        times: dict[str, list[float]] = {"nnunet": [], "autoseg": []}
        for _ in range(repeats):
            times["nnunet"].append(_time(theirs, x, bf16))
            times["autoseg"].append(_time(ours, x, bf16))
        nnunet, autoseg = (statistics.median(times[k]) for k in ("nnunet", "autoseg"))
        rows.append(
            {
                "network": name,
                "precision": "bf16" if bf16 else "fp32",
                "patch": list(PATCH),
                "nnunet_dna_s": round(nnunet, 4),
                "autoseg_s": round(autoseg, 4),
                "autoseg_vs_nnunet": round(autoseg / nnunet, 3),
                "max_abs_logit_difference_fp32": difference,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in NETWORKS:
        for row in measure(name, args.repeats):
            print(json.dumps({**row, "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
