"""Which label value each segment gets in a training dataset.

Segments are matched to the dataset's label names, never by their position in the segment list:
a user who paints "tumor" before "liver" in one case and after it in the next must still get the
same values in both label files, or the network learns noise. Matching ignores case and
surrounding spaces because Slicer's own lookup by name is case-insensitive, so "Liver" and
"liver" are one structure to the user. Names the dataset does not know yet get the values after
the current largest one, in segment order, exactly as ``dataset_folder.add_labels`` appends them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoseg.errors import AutoSegError
from autoseg.labels import IGNORE_NAME

BACKGROUND_NAME = "background"


class LabelMappingError(AutoSegError, ValueError):
    """Segment names that cannot be turned into label values; the message names the segments."""


@dataclass(frozen=True)
class LabelPlan:
    """The label value of every segment and the names that dataset.json does not define yet.

    Attributes:
        values: segment name (exactly as given) -> label value.
        new_names: names (stripped of surrounding spaces) to append to dataset.json, in segment order.
    """

    values: dict[str, int]
    new_names: tuple[str, ...]


def normalize_label_name(name: str) -> str:
    """The form two names are compared in: surrounding spaces removed, case folded."""
    return name.strip().casefold()


def _name_problems(segment_names: Sequence[str]) -> list[str]:
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for position, name in enumerate(segment_names, start=1):
        key = normalize_label_name(name)
        if not key:
            problems.append(f"segment #{position} has an empty name; give it a name.")
        elif key == BACKGROUND_NAME:
            problems.append(
                f'segment "{name}" is named background; background (0) is every voxel outside '
                "all segments, so delete this segment or rename it."
            )
        elif key in first_seen:
            problems.append(
                f'segments "{first_seen[key]}" and "{name}" have the same name (names are '
                "compared ignoring case and surrounding spaces); rename or merge one of them."
            )
        else:
            first_seen[key] = name
    return problems


def _check_plain_labels(labels: Mapping[str, object]) -> None:
    regions = [name for name, value in labels.items() if not isinstance(value, int)]
    if regions:
        raise LabelMappingError(
            f"dataset.json defines region labels ({', '.join(regions)}): a region is a list of "
            "values, so a segment cannot be mapped to one value. Fix: add cases to a region-based "
            "dataset outside AutoSegTrain, or use a dataset with one value per label."
        )


def _match(name: str, labels: Mapping[str, int]) -> int | None:
    """The value of ``name``; an exact (stripped) match wins over a case-insensitive one."""
    stripped = name.strip()
    if stripped in labels:
        return labels[stripped]
    key = normalize_label_name(name)
    matches = sorted(label for label in labels if normalize_label_name(label) == key)
    if len(matches) > 1:
        raise LabelMappingError(
            f'segment "{name}" matches the dataset labels {", ".join(matches)}, which differ only '
            "in case. Fix: rename the segment to exactly one of them."
        )
    return labels[matches[0]] if matches else None


def plan_label_values(segment_names: Sequence[str], labels: Mapping[str, int]) -> LabelPlan:
    """Label values for the segments of one segmentation, stable across cases.

    Args:
        segment_names: the segment names in the segmentation's order.
        labels: the dataset's ``labels`` (name -> value, "background": 0 included).

    Returns:
        The value of each segment and the names that must be added to dataset.json first.

    Raises:
        LabelMappingError: empty, duplicate (ignoring case/spaces) or "background" segment names,
            a segment named "ignore" in a dataset without ignore label, or region labels; the
            message lists every such segment.
    """
    _check_plain_labels(labels)
    problems = _name_problems(segment_names)
    if problems:
        raise LabelMappingError("Cannot map segments to labels:\n" + "\n".join(problems))
    next_value = max(labels.values(), default=0) + 1
    values: dict[str, int] = {}
    new_names: list[str] = []
    for name in segment_names:
        value = _match(name, labels)
        if value is None and normalize_label_name(name) == IGNORE_NAME:
            raise LabelMappingError(
                f'segment "{name}" is named ignore, but dataset.json has no "ignore" label. '
                'Fix: rename the segment, or add "ignore" (largest label + 1) to dataset.json.'
            )
        if value is None:
            value = next_value + len(new_names)
            new_names.append(name.strip())
        values[name] = value
    return LabelPlan(values, tuple(new_names))
