from __future__ import annotations

import os

import pytest

from autoseg.errors import AutoSegError
from autoseg.parallel import map_cases


def square(value: int) -> int:
    return value * value


def fail_on_three(value: int) -> int:
    if value == 3:
        raise ValueError("three")
    return value


def die(value: int) -> int:
    os._exit(1)


def test_results_keep_input_order_in_process_and_in_a_pool():
    items = list(range(7))
    assert map_cases(square, items, 1) == [v * v for v in items]
    assert map_cases(square, items, 2) == [v * v for v in items]


def test_progress_is_reported_from_zero_to_total():
    seen: list[tuple[str, int, int]] = []
    map_cases(square, [1, 2, 3], 1, lambda *event: seen.append(event), "stage")
    assert seen == [("stage", 0, 3), ("stage", 1, 3), ("stage", 2, 3), ("stage", 3, 3)]


def test_worker_exception_reaches_the_caller():
    with pytest.raises(ValueError, match="three"):
        map_cases(fail_on_three, [1, 2, 3, 4], 2)


def test_dead_worker_becomes_a_clear_error():
    with pytest.raises(AutoSegError, match="fewer processes"):
        map_cases(die, [1, 2], 2, stage="demo")
