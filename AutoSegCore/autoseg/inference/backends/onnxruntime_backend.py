"""The onnxruntime backend: the network as ONNX, run by onnxruntime's CPU execution provider.

fp32 only: onnxruntime's CPU provider has no bf16 convolution kernels. It measured slower than
torch fp32 on this project's networks (``bench/predict.py``), so ``auto`` never picks it; it is
offered for machines where it is the runtime already installed or allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from autoseg.inference.backends.base import FP32, ONNXRUNTIME, ConversionRequest
from autoseg.inference.backends.model_cache import cache_entry, load_or_build
from autoseg.inference.backends.onnx_export import INPUT_NAME, export_onnx

SUFFIXES = (".onnx",)


def runtime_version() -> str:
    return str(ort.__version__)


class OnnxRuntimeBackend:
    """Runs the converted network in one onnxruntime session (the batch axis is free)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.description = f"{ONNXRUNTIME} {runtime_version()} {FP32}"

    @classmethod
    def convert(cls, request: ConversionRequest, threads: int) -> OnnxRuntimeBackend:
        """Load the cached ONNX of ``request.network`` (exporting it first if needed)."""
        entry = cache_entry(request, ONNXRUNTIME, runtime_version(), SUFFIXES)

        def build(scratch: Path) -> dict[str, Path]:
            return {".onnx": export_onnx(request.network, request.input_shape, scratch / "n.onnx")}

        def load(files: Mapping[str, Path]) -> ort.InferenceSession:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return ort.InferenceSession(
                str(files[".onnx"]), options, providers=["CPUExecutionProvider"]
            )

        return cls(load_or_build(entry, build, load))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run(None, {INPUT_NAME: array})
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))
