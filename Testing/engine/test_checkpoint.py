"""Checkpoints: plain state, atomic writes, weights_only loading, resume order."""

from __future__ import annotations

import os
import pickle  # noqa: TID251 - builds a malicious file to prove it is refused

import pytest
import torch

from autoseg.checkpoint import (
    BEST,
    FINAL,
    LATEST,
    load_checkpoint,
    newest_checkpoint,
    save_checkpoint,
    unwrap_state_dict,
)
from autoseg.errors import AutoSegError


def test_round_trip_plain_state(tmp_path) -> None:
    net = torch.nn.Linear(3, 2)
    state = {"network_weights": net.state_dict(), "current_epoch": 5, "history": {"x": [1.0]}}
    save_checkpoint(tmp_path / "c.pth", state)
    loaded = load_checkpoint(tmp_path / "c.pth")
    assert loaded["current_epoch"] == 5
    assert loaded["format"] == "autoseg-checkpoint"
    assert torch.equal(loaded["network_weights"]["weight"], net.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]  # no temporary left behind


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_pickled_code(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"network_weights": _Evil()}))
    with pytest.raises(AutoSegError, match="cannot load the checkpoint safely"):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(AutoSegError, match="not found"):
        load_checkpoint(tmp_path / "none.pth")
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(AutoSegError, match="not an AutoSeg checkpoint"):
        load_checkpoint(tmp_path / "other.pth")


def test_resume_prefers_final_then_the_newer_of_latest_and_best(tmp_path) -> None:
    assert newest_checkpoint(tmp_path) is None
    for name in (BEST, LATEST):
        save_checkpoint(tmp_path / name, {"network_weights": {}})
    os.utime(tmp_path / BEST, ns=(1, 1))
    assert newest_checkpoint(tmp_path) == tmp_path / LATEST
    os.utime(tmp_path / LATEST, ns=(0, 0))
    assert newest_checkpoint(tmp_path) == tmp_path / BEST
    save_checkpoint(tmp_path / FINAL, {"network_weights": {}})
    assert newest_checkpoint(tmp_path) == tmp_path / FINAL


def test_unwrap_removes_compile_and_ddp_prefixes() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))

    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    keys = set(unwrap_state_dict(Wrapper(Wrapper(net))))
    assert keys == {"0.weight", "0.bias"}
