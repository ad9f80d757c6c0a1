"""Prediction backends: what runs the network on a batch of patches.

Everything around the network (sliding window, Gaussian weighting, mirroring, fold ensembling,
export) is AutoSeg's own and shared by every backend; a backend only maps a float32 CPU batch of
patches ``(b, c, *patch)`` to logits ``(b, K, *patch)`` (:class:`base.PatchBackend`).

- ``torch``: the network module itself (bf16 autocast on CPUs with native bf16).
- ``openvino``: the network converted once to OpenVINO's format, compiled for this CPU (bf16 on
  CPUs with native bf16, else fp32). Measured fastest on the CPU, so ``auto`` uses it there.
- ``onnxruntime``: the network converted once to ONNX, run by onnxruntime's CPU provider (fp32).

Conversions are cached next to the checkpoint (:mod:`model_cache`). The runtimes are optional
(``pip install autoseg[cpu]``); :mod:`selection` resolves ``auto`` and builds the backends. Nothing
is imported here, so importing one backend never imports the others' runtimes.
"""

from __future__ import annotations
