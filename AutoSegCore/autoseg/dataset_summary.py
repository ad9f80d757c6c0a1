"""The short table ``verify`` ends with: what the dataset is, at a glance.

A list of problems says what is wrong; it does not say whether the folder holds what the user
meant (the right number of cases, the channels in the right order, every label present somewhere,
spacings and sizes in a sane range). These few lines do, from numbers the checks collected anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from autoseg.errors import Problem

if TYPE_CHECKING:
    from autoseg.integrity import DatasetReport

_WIDTH = 16  # label column width


def _axes(values: Sequence[float]) -> str:
    return " x ".join(f"{v:g}" for v in values)


def _range(rows: list[tuple[float, ...]]) -> str:
    """Per-axis minimum .. per-axis maximum (axes in the reader's array order)."""
    if not rows or len({len(r) for r in rows}) != 1:
        return "-"
    array = np.asarray(rows, dtype=float)
    low, high = array.min(axis=0), array.max(axis=0)
    return _axes(low) if np.array_equal(low, high) else f"{_axes(low)} .. {_axes(high)}"


def _labels_line(report: DatasetReport, checked: int) -> str:
    if report.spec is None:
        return "-"
    present = Counter(
        v for case in report.cases.values() for v, n in case.label_voxels.items() if n
    )
    names = report.spec.labels.names_by_value
    values = sorted(set(report.spec.labels.expected_values) | set(present))
    return ", ".join(f"{v} {names.get(v, '(undeclared)')} {present[v]}/{checked}" for v in values)


def _by_kind(problems: Sequence[Problem], severity: str) -> str:
    kinds = Counter(p.kind or _fallback_kind(p) for p in problems if p.severity == severity)
    if not kinds:
        return f"0 {severity}s"
    listed = ", ".join(f"{kind} {count}" for kind, count in kinds.most_common())
    return f"{sum(kinds.values())} {severity}(s): {listed}"


def _fallback_kind(problem: Problem) -> str:
    return "dataset.json" if problem.location.endswith("dataset.json") else "file layout"


def summary_lines(report: DatasetReport) -> list[str]:
    """The table as lines: cases, channels, label presence, spacing and size ranges, problems."""
    spec = report.spec
    read = [case for case in report.cases.values() if case.shape is not None]
    labelled = sum(1 for case in report.cases.values() if case.label_voxels)
    channels = ", ".join(spec.channel_names) if spec is not None else "-"
    declared = spec.num_training if spec is not None else "?"
    rows = [
        ("cases", f"{len(report.cases)} found ({declared} declared), {len(read)} readable"),
        ("channels", f"{len(spec.channel_names) if spec else 0}: {channels}"),
        ("labels (cases)", _labels_line(report, labelled)),
        ("spacing", _range([c.spacing for c in read if c.spacing is not None])),
        ("size (voxels)", _range([tuple(map(float, c.shape)) for c in read if c.shape])),
        (
            "problems",
            f"{_by_kind(report.problems, 'error')}; {_by_kind(report.problems, 'warning')}",
        ),
    ]
    return ["Summary:", *(f"  {name:<{_WIDTH}}{value}" for name, value in rows)]
