"""Label definitions from dataset.json: plain labels, region labels and the ignore label.

dataset.json maps label *names* to values. A value is either one integer (a class) or a list of
integers (a region, the union of those classes, trained with one sigmoid output each). A label named
exactly ``ignore`` marks voxels without annotation; it is never predicted. The JSON order of the
entries matters in region mode because ``regions_class_order`` refers to the regions in that order,
so the order is kept exactly as written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoseg.errors import Problem, ProblemsFound

IGNORE_NAME = "ignore"
LabelValue = int | tuple[int, ...]


@dataclass(frozen=True)
class LabelSpec:
    """The validated ``labels`` (and ``regions_class_order``) of a dataset.json.

    Attributes:
        entries: ``(name, value)`` pairs in JSON order; a value is an int or a tuple of ints (region).
        regions_class_order: for region mode, the label value written for each foreground region.
    """

    entries: tuple[tuple[str, LabelValue], ...]
    regions_class_order: tuple[int, ...] | None = None

    @classmethod
    def from_json(
        cls, labels: Any, regions_class_order: Any = None, location: str = "dataset.json"
    ) -> LabelSpec:
        """Parses and validates the JSON values; raises ProblemsFound listing every error."""
        spec, problems = parse_labels(labels, regions_class_order, location)
        if spec is None or any(p.is_error for p in problems):
            raise ProblemsFound(problems)
        return spec

    def to_json(self) -> dict[str, Any]:
        """The ``labels`` dict as it would be written to JSON (regions become lists)."""
        return {n: list(v) if isinstance(v, tuple) else v for n, v in self.entries}

    @property
    def ignore_label(self) -> int | None:
        """The value of the ``ignore`` label, or None when the dataset has none."""
        for name, value in self.entries:
            if name == IGNORE_NAME and isinstance(value, int):
                return value
        return None

    @property
    def has_ignore_label(self) -> bool:
        return self.ignore_label is not None

    @property
    def all_labels(self) -> tuple[int, ...]:
        """Sorted unique ints used by all non-ignore entries (region members included)."""
        values: set[int] = set()
        for name, value in self.entries:
            if name != IGNORE_NAME:
                values.update(_members(value))
        return tuple(sorted(values))

    @property
    def expected_values(self) -> tuple[int, ...]:
        """All values a label file may contain: ``all_labels`` plus the ignore label."""
        extra = () if self.ignore_label is None else (self.ignore_label,)
        return tuple(sorted({*self.all_labels, *extra}))

    @property
    def has_regions(self) -> bool:
        """True when any entry is a region of more than one label (sigmoid outputs are used)."""
        return any(isinstance(v, tuple) and len(v) > 1 for _, v in self.entries)

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """``all_labels`` without background (0)."""
        return tuple(v for v in self.all_labels if v != 0)

    @property
    def foreground_regions(self) -> tuple[tuple[int, ...], ...]:
        """Each non-background, non-ignore entry as a tuple of label values, in JSON order."""
        return tuple(
            _members(value)
            for name, value in self.entries
            if name != IGNORE_NAME and _members(value) != (0,)
        )

    @property
    def num_segmentation_heads(self) -> int:
        """Output channels of the network: one per region (sigmoid) or one per label (softmax)."""
        return len(self.foreground_regions) if self.has_regions else len(self.all_labels)

    @property
    def names_by_value(self) -> dict[int, str]:
        """Name of each single-valued entry (ignore included), keyed by its value."""
        names: dict[int, str] = {}
        for name, value in self.entries:
            if isinstance(value, int):
                names.setdefault(value, name)
        return names

    def name_of(self, value: int) -> str:
        """Name of a label value, or ``label_<value>`` when no entry uses it alone."""
        return self.names_by_value.get(value, f"label_{value}")


def _members(value: LabelValue) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, which is an int subclass; they are never valid label values.
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_value(name: str, value: Any, where: str) -> tuple[LabelValue | None, list[Problem]]:
    fix = 'Use a non-negative integer, e.g. "liver": 1, or a list of integers for a region.'
    if _is_int(value):
        if value < 0:
            return None, [Problem("error", where, f'labels["{name}"] is {value} (<0).', fix)]
        return value, []
    if isinstance(value, list | tuple) and value and all(_is_int(v) and v >= 0 for v in value):
        return (value[0] if len(value) == 1 else tuple(value)), []
    message = f'labels["{name}"] is {value!r}; expected an integer or a non-empty list of integers.'
    return None, [Problem("error", where, message, fix)]


def _parse_entries(labels: Any, where: str) -> tuple[list[tuple[str, LabelValue]], list[Problem]]:
    if not isinstance(labels, Mapping) or not labels:
        message = f'"labels" is {type(labels).__name__}; expected a non-empty object name -> value.'
        fix = 'Write e.g. "labels": {"background": 0, "tumor": 1} (names map to values).'
        return [], [Problem("error", where, message, fix)]
    if all(str(k).isdigit() and isinstance(v, str) for k, v in labels.items()):
        # nnU-Net v1 (and MSD) wrote value -> name; v2 reads name -> value.
        swapped = json.dumps({v: int(k) for k, v in labels.items()})
        message = '"labels" maps values to names (the nnU-Net v1 / MSD order).'
        fix = f'Write names to values: "labels": {swapped} (or run convert_old_dataset).'
        return [], [Problem("error", where, message, fix)]
    entries: list[tuple[str, LabelValue]] = []
    problems: list[Problem] = []
    for name, raw in labels.items():
        value, found = _parse_value(str(name), raw, where)
        problems += found
        if value is not None:
            entries.append((str(name), value))
    return entries, problems


def _check_background_and_ignore(spec: LabelSpec, where: str) -> list[Problem]:
    problems: list[Problem] = []
    if 0 not in spec.all_labels:
        problems.append(
            Problem(
                "error",
                where,
                '"labels" has no background entry with value 0.',
                'Add "background": 0; background must be 0.',
            )
        )
    for name, value in spec.entries:
        if name != IGNORE_NAME:
            continue
        if not isinstance(value, int):
            msg = f'labels["ignore"] is the region {list(value)}; the ignore label must be one int.'
            problems.append(Problem("error", where, msg, "Give ignore a single integer value."))
            continue
        wanted = max(spec.all_labels, default=-1) + 1
        if value != wanted:
            msg = f'labels["ignore"] is {value}; it must be the largest label + 1 = {wanted}.'
            problems.append(Problem("error", where, msg, f'Set "ignore": {wanted}.'))
    return problems


def _check_duplicates(spec: LabelSpec, where: str) -> list[Problem]:
    if spec.has_regions:
        return []  # overlapping regions are the point of region mode
    seen: dict[int, str] = {}
    problems: list[Problem] = []
    for name, value in spec.entries:
        if isinstance(value, int) and value in seen:
            msg = f'labels["{name}"] and labels["{seen[value]}"] both have the value {value}.'
            problems.append(Problem("error", where, msg, "Give every label its own value."))
        if isinstance(value, int):
            seen.setdefault(value, name)
    return problems


def _parse_order(order: Any, spec: LabelSpec, where: str) -> tuple[tuple[int, ...] | None, list]:
    n_regions = len(spec.foreground_regions)
    fix = (
        f'Add "regions_class_order" with {n_regions} integers, one per foreground region in order.'
    )
    if not spec.has_regions:
        if order is None:
            return None, []
        msg = '"regions_class_order" is given but no label is a region; it is ignored.'
        return None, [Problem("warning", where, msg, 'Remove "regions_class_order".')]
    if order is None:
        msg = '"regions_class_order" is missing; it is required when labels contain regions.'
        return None, [Problem("error", where, msg, fix)]
    if not isinstance(order, list | tuple) or not all(_is_int(v) for v in order):
        msg = f'"regions_class_order" is {order!r}; expected a list of integers.'
        return None, [Problem("error", where, msg, fix)]
    if len(order) != n_regions:
        msg = (
            f'"regions_class_order" has {len(order)} entries but there are {n_regions} '
            "foreground regions (all labels except background and ignore)."
        )
        return None, [Problem("error", where, msg, fix)]
    return tuple(order), []


def parse_labels(
    labels: Any, regions_class_order: Any = None, location: str = "dataset.json"
) -> tuple[LabelSpec | None, list[Problem]]:
    """Validates ``labels``/``regions_class_order``, collecting every problem instead of stopping.

    Returns:
        The spec (None when ``labels`` is unusable) and all problems found; the spec is only safe to
        use when no problem is an error.
    """
    entries, problems = _parse_entries(labels, location)
    if not entries:
        return None, problems
    spec = LabelSpec(tuple(entries))
    problems += _check_background_and_ignore(spec, location)
    problems += _check_duplicates(spec, location)
    order, found = _parse_order(regions_class_order, spec, location)
    problems += found
    return LabelSpec(tuple(entries), order), problems
