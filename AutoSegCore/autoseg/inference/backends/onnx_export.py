"""Export a network to ONNX, the exchange format both runtimes read.

The TorchScript-based exporter is used: it needs only the ``onnx`` package (the newer
torch.export-based one also needs ``onnxscript``) and exported our networks in 2-20 s in
measurements, against 9-22 s for OpenVINO's own conversion from torch. The batch axis stays free,
the patch is fixed: the sliding window only ever passes patch-sized tiles, and fixed shapes let the
runtimes plan memory and pick kernels ahead of time.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from autoseg.errors import AutoSegError

INPUT_NAME = "patches"
OUTPUT_NAME = "logits"
OPSET = 17


def export_onnx(network: nn.Module, input_shape: tuple[int, ...], target: Path) -> Path:
    """Write ``network`` (eval mode, CPU, float32) as ONNX with a free batch axis to ``target``."""
    if getattr(network, "deep_supervision", False):
        raise AutoSegError(
            "the network returns deep-supervision outputs, which a runtime cannot average. Fix: "
            "switch deep supervision off (network.deep_supervision = False) before predicting."
        )
    module = copy.deepcopy(network).to("cpu", torch.float32).eval()  # the caller's stays as it is
    example = torch.zeros(input_shape, dtype=torch.float32)
    free_batch = {0: "batch"}
    try:
        # The exporter's deprecation notice and tracer warnings are about its internals, not
        # about anything the user can change.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(target),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: free_batch, OUTPUT_NAME: free_batch},
                opset_version=OPSET,
                dynamo=False,
            )
    except (ImportError, torch.onnx.errors.OnnxExporterError) as error:
        raise AutoSegError(
            f"the network could not be exported to ONNX ({str(error).splitlines()[0]}). "
            "Fix: pip install 'autoseg[cpu]' (it brings the onnx package), or predict with "
            "--backend torch."
        ) from None
    return target
