"""Fixtures for the nnU-Net interoperability tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from Testing.engine.interop.nnunet_reference import DATASET, MODELS, PLAIN


@pytest.fixture
def model_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy a fixture model folder into the test's tmp_path (to break one thing in it)."""

    def copy(name: str = PLAIN) -> Path:
        target = tmp_path / "results" / DATASET / name
        shutil.copytree(MODELS / name, target)
        return target

    return copy
