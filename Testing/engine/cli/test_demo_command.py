"""``autoseg demo``: its closing table names every class's Dice, and the whole run works end to end."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from autoseg.cli import main
from autoseg.cli.demo_inference import format_dice_table
from autoseg.synthetic import DEMO_SPEC, LABELS


def _summary(dice: dict[str, float], cases: int) -> dict:
    foreground = sum(dice.values()) / len(dice)
    return {
        "mean": {key: {"Dice": value} for key, value in dice.items()},
        "foreground_mean": {"Dice": foreground},
        "metric_per_case": [{} for _ in range(cases)],
    }


def _row(table: str, name: str) -> list[float]:
    line = next(line for line in table.splitlines() if line.strip().startswith(name))
    return [float(v) for v in re.findall(r"nan|\d+\.\d+", line)]


def test_table_has_one_row_per_class_with_both_dice() -> None:
    validation = _summary({"1": 0.91, "2": 0.05}, cases=4)
    test = _summary({"1": 0.93, "2": 0.72}, cases=3)
    table = format_dice_table(validation, test, LABELS)
    assert "validation (4 cases)" in table
    assert "held-out test (3 cases)" in table
    assert "background" not in table
    assert _row(table, "organ") == [0.91, 0.93]
    assert _row(table, "lesion") == [0.05, 0.72]  # a failed class is visible, not averaged away
    assert _row(table, "mean foreground") == [0.48, 0.825]


def test_table_says_nan_for_a_missing_class() -> None:
    """A validation that crashed before writing a summary must not read as a Dice of 0."""
    table = format_dice_table({}, _summary({"1": 0.9, "2": 0.8}, cases=4), LABELS)
    assert "validation (0 cases)" in table
    organ = _row(table, "organ")
    assert math.isnan(organ[0])
    assert organ[1] == 0.9


@pytest.mark.slow
def test_demo_runs_end_to_end_with_a_tiny_budget(tmp_path: Path, capsys) -> None:
    """The real command with a budget of two iterations: every stage runs and the table closes it
    (the Dice of such a run says nothing, so only its presence and range are checked)."""
    output = tmp_path / "demo"
    argv = ["demo", "--output", str(output), "--cases", "5", "--epochs", "1"]
    assert main([*argv, "--iterations", "2", "-np", "1", "--progress", "none"]) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("After a 1 x 2-iteration demo training") :]
    for name in ("organ", "lesion", "mean foreground"):
        assert all(0.0 <= d <= 1.0 for d in _row(table, name)), name
    raw = output / "raw" / "Dataset900_DemoCT"
    written = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))["synthetic"]
    assert written["shape_zyx"] == list(DEMO_SPEC.shape)
    assert written["lesion_size"] == list(DEMO_SPEC.lesion_size)
    assert len(list((output / "predictions_postprocessed").glob("case_*.nii.gz"))) == 4
