"""Segment names -> label values: by name, stable across cases, every bad name reported."""

from __future__ import annotations

import pytest

from AutoSegCoreLib.label_mapping import (
    LabelMappingError,
    LabelPlan,
    normalize_label_name,
    plan_label_values,
)

LABELS = {"background": 0, "liver": 1, "Tumor": 2}


def test_known_names_match_ignoring_case_and_surrounding_spaces():
    plan = plan_label_values([" LIVER ", "tumor"], LABELS)
    assert plan == LabelPlan({" LIVER ": 1, "tumor": 2}, ())


def test_values_do_not_depend_on_segment_order():
    forward = plan_label_values(["liver", "tumor", "cyst", "vessel"], LABELS)
    backward = plan_label_values(["tumor", "liver"], LABELS)
    assert forward.values["liver"] == backward.values["liver"] == 1
    assert forward.values["tumor"] == backward.values["tumor"] == 2


def test_new_names_get_the_values_after_the_largest_in_segment_order():
    plan = plan_label_values(["cyst ", "liver", "Vessel"], LABELS)
    assert plan.values == {"cyst ": 3, "liver": 1, "Vessel": 4}
    assert plan.new_names == ("cyst", "Vessel")


def test_new_values_follow_the_largest_value_not_the_count():
    plan = plan_label_values(["a"], {"background": 0, "x": 7})
    assert plan.values == {"a": 8}


def test_every_bad_name_is_reported_in_one_error():
    names = ["liver", "", "Background", "Liver ", "   "]
    with pytest.raises(LabelMappingError) as caught:
        plan_label_values(names, LABELS)
    message = str(caught.value)
    assert "segment #2 has an empty name" in message
    assert "segment #5 has an empty name" in message
    assert '"Background" is named background' in message
    assert 'segments "liver" and "Liver " have the same name' in message
    assert isinstance(caught.value, ValueError)


def test_region_labels_are_refused_with_their_names():
    with pytest.raises(LabelMappingError, match=r"region labels \(whole\)"):
        plan_label_values(["whole"], {"background": 0, "a": 1, "whole": (1, 2)})


def test_an_ignore_segment_uses_the_datasets_ignore_label():
    plan = plan_label_values(["Ignore", "liver"], {"background": 0, "liver": 1, "ignore": 2})
    assert plan == LabelPlan({"Ignore": 2, "liver": 1}, ())


def test_an_ignore_segment_without_ignore_label_is_refused():
    with pytest.raises(LabelMappingError, match='segment "ignore" is named ignore'):
        plan_label_values(["ignore"], LABELS)


def test_exact_name_wins_over_labels_differing_only_in_case():
    labels = {"background": 0, "Liver": 1, "liver": 2}
    assert plan_label_values(["liver"], labels).values == {"liver": 2}
    with pytest.raises(LabelMappingError, match="differ only in case"):
        plan_label_values(["LIVER"], labels)


def test_normalized_form():
    assert normalize_label_name("  Große Leber ") == "grosse leber"
