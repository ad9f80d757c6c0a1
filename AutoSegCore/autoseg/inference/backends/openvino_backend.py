"""The OpenVINO backend: the network compiled by OpenVINO's CPU plugin.

Measured fastest on the CPU (``bench/predict.py``): its bf16 kernels use AMX/AVX512-BF16 more
fully than torch's autocast, and its fp32 kernels are at least as fast as torch's. The network is
converted once (ONNX, then OpenVINO's own format with fp32 weights) and cached; the precision is
chosen when compiling (``INFERENCE_PRECISION_HINT``), so one cached model serves fp32 and bf16.
A model is compiled per batch size with every shape fixed, which lets the plugin plan its memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch

from autoseg.inference.backends.base import BF16, OPENVINO, ConversionRequest
from autoseg.inference.backends.model_cache import cache_entry, load_or_build
from autoseg.inference.backends.onnx_export import export_onnx

SUFFIXES = (".xml", ".bin")


def runtime_version() -> str:
    return str(ov.get_version())


def _convert(request: ConversionRequest, scratch: Path) -> dict[str, Path]:
    onnx_file = export_onnx(request.network, request.input_shape, scratch / "network.onnx")
    model = ov.convert_model(onnx_file)
    xml = scratch / "network.xml"
    ov.save_model(model, xml, compress_to_fp16=False)  # fp16 weights would change the results
    onnx_file.unlink()
    return {".xml": xml, ".bin": xml.with_suffix(".bin")}


class OpenVinoBackend:
    """Runs the converted network; compiled lazily for every batch size it is called with."""

    def __init__(self, model: ov.Model, precision: str, threads: int) -> None:
        self.model = model
        self.precision = precision
        self.config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == BF16 else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        }
        self.requests: dict[tuple[int, ...], ov.InferRequest] = {}
        self.core = ov.Core()
        release = runtime_version().split("-", 1)[0]  # "2026.4.1-22982-..." -> "2026.4.1"
        self.description = f"{OPENVINO} {release} {precision}"

    @classmethod
    def convert(cls, request: ConversionRequest, threads: int) -> OpenVinoBackend:
        """Load the cached conversion of ``request.network`` (converting it first if needed)."""
        entry = cache_entry(request, OPENVINO, runtime_version(), SUFFIXES)

        def load(files: Mapping[str, Path]) -> ov.Model:
            return ov.Core().read_model(model=files[".xml"], weights=files[".bin"])

        model = load_or_build(entry, lambda scratch: _convert(request, scratch), load)
        backend = cls(model, request.precision, threads)
        backend._request(tuple(request.input_shape))  # compile now: loading, not the first case
        return backend

    def _request(self, shape: tuple[int, ...]) -> ov.InferRequest:
        request = self.requests.get(shape)
        if request is None:
            model = self.model.clone()
            model.reshape(list(shape))
            request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self.requests[shape] = request
        return request

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        request = self._request(tuple(array.shape))
        request.infer({0: array})
        # The output buffer belongs to the request and is reused by the next call: copy it.
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32))
