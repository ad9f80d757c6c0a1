"""Out-of-memory failures, recognised where they happen and told as one line with a fix.

Why here and not from the exit code: a process killed for memory looks like any crash from outside
(in Slicer the launcher even turns it into exit code 1), but the engine knows when an allocation
failed. It turns that failure into an ``OutOfMemory`` error that says which memory ran out and
what to change, records it as an ``error`` event with ``kind: "out_of_memory"`` (training's
``events.jsonl``, prediction's ``--progress json`` line), and the command line prints it as one
line. Torch-free: torch's errors are recognised by class name and message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from autoseg.errors import AutoSegError
from autoseg.progress import write_json_event

OUT_OF_MEMORY = "out_of_memory"
# Messages of allocation failures that torch raises as plain RuntimeError (older CUDA builds,
# the CPU allocator, MPS, cuDNN/cuBLAS workspace allocations).
_MESSAGES = (
    "out of memory",
    "can't allocate memory",
    "cudnn_status_alloc_failed",
    "cublas_status_alloc_failed",
)
_GPU_WORDS = ("cuda", "gpu", "mps", "cudnn", "cublas")

TRAINING_ADVICE = (
    "Fix: use less memory: plan again with a smaller GPU memory target (`autoseg "
    "plan_and_preprocess ... --gpu-memory-target 6`, which makes patch and batch smaller), "
    "train on the CPU (-device cpu), or, when the computer's RAM ran out, use fewer augmentation "
    "workers (--num-workers 2); then resume with --c"
)
PREDICTION_ADVICE = (
    "Fix: use less memory: predict on the CPU (-device cpu), without mirroring (--disable_tta), "
    "or close other programs that use the GPU"
)


class OutOfMemory(AutoSegError):
    """An allocation failed; the message names the memory and the fix."""

    kind = OUT_OF_MEMORY


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``MemoryError``, torch's ``OutOfMemoryError`` and allocation-failure messages."""
    if isinstance(error, OutOfMemory | MemoryError):
        return True
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(error).__mro__):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(message in text for message in _MESSAGES)


def out_of_memory(error: BaseException, what: str, advice: str) -> OutOfMemory:
    """The one-line error for an allocation failure of ``what`` (e.g. "training")."""
    if isinstance(error, OutOfMemory):
        return error
    text = f"{type(error).__name__}: {error}"
    gpu = any(word in text.lower() for word in _GPU_WORDS)
    detail = " ".join(str(error).split())[:200] or type(error).__name__
    memory = "GPU" if gpu else "main (RAM)"
    return OutOfMemory(f"{what} ran out of {memory} memory ({detail}). {advice}")


def report_as_json_event(failure: OutOfMemory) -> None:
    """The ``--progress json`` line for an allocation failure (on stdout, with the progress)."""
    write_json_event({"event": "error", "kind": failure.kind, "message": str(failure)})


@contextlib.contextmanager
def out_of_memory_reported(
    what: str, advice: str, report: Callable[[OutOfMemory], None] | None = None
) -> Iterator[None]:
    """Inside the block an allocation failure becomes ``OutOfMemory`` (reported first)."""
    try:
        yield
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        failure = out_of_memory(error, what, advice)
        if report is not None:
            report(failure)
        raise failure from error
