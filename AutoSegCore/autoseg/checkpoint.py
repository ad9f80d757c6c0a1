"""Checkpoint files: plain state written atomically and read back with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no classes, no pickle of
code), so loading one can never execute anything. Training writes them; inference reads only the
``network_weights`` and the small metadata next to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from autoseg.atomic import atomic_path
from autoseg.errors import AutoSegError
from autoseg.results_layout import BEST_CHECKPOINT, FINAL_CHECKPOINT, LATEST_CHECKPOINT

CHECKPOINT_FORMAT = "autoseg-checkpoint"
CHECKPOINT_VERSION = 1
# Named in results_layout, which torch-free readers import.
FINAL = FINAL_CHECKPOINT
LATEST = LATEST_CHECKPOINT
BEST = BEST_CHECKPOINT


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    with atomic_path(Path(path), suffix=".pth") as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a foreign or damaged file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise AutoSegError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for damaged or unsafe files
        raise AutoSegError(
            f"{path}: cannot load the checkpoint safely ({type(error).__name__}: {error}). "
            "AutoSeg reads only plain-state checkpoints it wrote itself."
        ) from None
    if not isinstance(state, dict) or "network_weights" not in state:
        raise AutoSegError(f"{path}: not an AutoSeg checkpoint (no 'network_weights' entry)")
    return state


def newest_checkpoint(fold_dir: Path) -> Path | None:
    """The checkpoint ``--c`` resumes from: the final one, else the newer of latest and best.

    nnU-Net prefers latest over best; but best is written whenever the EMA improves, so after a
    hard kill it is often the more recent state, and resuming from it loses less work.
    """
    fold_dir = Path(fold_dir)
    if (fold_dir / FINAL).is_file():
        return fold_dir / FINAL
    candidates = [fold_dir / name for name in (LATEST, BEST) if (fold_dir / name).is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)


def unwrap_state_dict(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights without DDP (``module.``) or torch.compile (``_orig_mod.``) wrappers in the names."""
    inner = network
    while True:
        wrapped = inner.__dict__.get("_modules", {})
        child = wrapped.get("module") or wrapped.get("_orig_mod")
        if child is None:
            break
        inner = child
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}
