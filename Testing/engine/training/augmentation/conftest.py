"""Fixtures for the augmentation tests: seeded random state and binomial-count checks."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from autoseg.training.augmentation import seed_augmentation

BinomialCheck = Callable[[int, int, float], None]


def assert_binomial(count: int, n: int, p: float) -> None:
    """``count`` successes of ``n`` trials lie within 4 binomial standard deviations of n·p."""
    sd = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= 4 * sd, f"{count}/{n} draws, expected {n * p:.1f} ± {4 * sd:.1f}"


@pytest.fixture
def binomial() -> BinomialCheck:
    return assert_binomial


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same global random state (the transforms draw from it)."""
    seed_augmentation(1234)
