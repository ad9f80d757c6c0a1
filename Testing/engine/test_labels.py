"""LabelSpec: plain labels, regions, the ignore label and their validation rules."""

from __future__ import annotations

import pytest

from autoseg.errors import ProblemsFound
from autoseg.labels import LabelSpec, parse_labels

BRATS = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing": 3}


def _errors(labels, order=None) -> list[str]:
    _, problems = parse_labels(labels, order)
    return [p.message for p in problems if p.is_error]


def test_plain_labels_properties():
    spec = LabelSpec.from_json({"background": 0, "liver": 1, "tumor": 2})
    assert spec.all_labels == (0, 1, 2)
    assert spec.foreground_labels == (1, 2)
    assert not spec.has_regions
    assert spec.ignore_label is None
    assert spec.num_segmentation_heads == 3
    assert spec.names_by_value == {0: "background", 1: "liver", 2: "tumor"}
    assert spec.name_of(2) == "tumor"
    assert spec.name_of(7) == "label_7"
    assert spec.to_json() == {"background": 0, "liver": 1, "tumor": 2}


def test_json_order_is_kept():
    spec = LabelSpec.from_json({"background": 0, "b": 2, "a": 1})
    assert [name for name, _ in spec.entries] == ["background", "b", "a"]
    assert spec.all_labels == (0, 1, 2)
    assert spec.foreground_regions == ((2,), (1,))


def test_regions():
    spec = LabelSpec.from_json(BRATS, [1, 2, 3])
    assert spec.has_regions
    assert spec.foreground_regions == ((1, 2, 3), (2, 3), (3,))
    assert spec.num_segmentation_heads == 3
    assert spec.all_labels == (0, 1, 2, 3)
    assert spec.regions_class_order == (1, 2, 3)
    assert spec.to_json()["whole_tumor"] == [1, 2, 3]


def test_single_element_list_is_a_plain_label():
    spec = LabelSpec.from_json({"background": [0], "a": [1]})
    assert not spec.has_regions
    assert spec.all_labels == (0, 1)


def test_regions_need_regions_class_order():
    assert any("regions_class_order" in m and "missing" in m for m in _errors(BRATS))


def test_regions_class_order_needs_one_entry_per_region():
    errors = _errors(BRATS, [1, 2])
    assert any("2 entries" in m and "3 foreground regions" in m for m in errors)
    assert any("list of integers" in m for m in _errors(BRATS, ["a", "b", "c"]))


def test_regions_class_order_without_regions_is_a_warning():
    spec, problems = parse_labels({"background": 0, "a": 1}, [1])
    assert spec is not None
    assert spec.regions_class_order is None
    assert [p.severity for p in problems] == ["warning"]


def test_ignore_label():
    spec = LabelSpec.from_json({"background": 0, "a": 1, "ignore": 2})
    assert spec.ignore_label == 2
    assert spec.has_ignore_label
    assert spec.all_labels == (0, 1)
    assert spec.expected_values == (0, 1, 2)
    assert spec.num_segmentation_heads == 2
    assert spec.foreground_regions == ((1,),)


def test_ignore_label_in_region_mode_is_not_a_region():
    spec = LabelSpec.from_json({**BRATS, "ignore": 4}, [1, 2, 3])
    assert spec.ignore_label == 4
    assert spec.num_segmentation_heads == 3


def test_ignore_must_be_max_plus_one():
    errors = _errors({"background": 0, "a": 1, "ignore": 5})
    assert any("ignore" in m and "largest label + 1 = 2" in m for m in errors)


def test_ignore_must_be_an_int():
    assert any("ignore" in m for m in _errors({"background": 0, "a": 1, "ignore": [2, 3]}))


def test_background_zero_required():
    assert any("background" in m for m in _errors({"a": 1, "b": 2}))


@pytest.mark.parametrize("bad", [1.5, "1", True, None, [], [1, "x"], -1])
def test_bad_label_values_name_the_label(bad):
    errors = _errors({"background": 0, "organ": bad})
    assert errors
    assert 'labels["organ"]' in errors[0]


def test_labels_must_be_an_object():
    assert any('"labels"' in m for m in _errors([0, 1]))
    assert any('"labels"' in m for m in _errors({}))


def test_duplicate_values_are_errors_outside_region_mode():
    assert any("both have the value 1" in m for m in _errors({"background": 0, "a": 1, "b": 1}))


def test_from_json_collects_every_error():
    with pytest.raises(ProblemsFound) as info:
        LabelSpec.from_json({"a": 1.5, "b": "x", "ignore": 9})
    messages = [p.message for p in info.value.problems]
    assert any('labels["a"]' in m for m in messages)
    assert any('labels["b"]' in m for m in messages)
    assert any("background" in m for m in messages)
    assert any("ignore" in m for m in messages)


def test_value_to_name_labels_of_nnunet_v1_get_the_swapped_form():
    spec, problems = parse_labels({"0": "background", "1": "liver"}, None, "ds.json")
    assert spec is None or any(p.is_error for p in problems)
    (problem,) = problems
    assert "maps values to names" in problem.message
    assert '"labels": {"background": 0, "liver": 1}' in problem.fix
