from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from autoseg.errors import AutoSegError
from autoseg.training.splits import SPLITS_FILE, fold_cases, kfold_splits, load_or_create_splits


def ids(n: int) -> list[str]:
    return [f"case_{i:03d}" for i in range(n)]


@pytest.mark.parametrize("n", [5, 6, 7, 13, 20, 101])
def test_kfold_reproduces_sklearn_shuffled_kfold(n):
    model_selection = pytest.importorskip("sklearn.model_selection")
    keys = ids(n)
    expected = [
        {"train": [keys[i] for i in train], "val": [keys[i] for i in val]}
        for train, val in model_selection.KFold(5, shuffle=True, random_state=12345).split(keys)
    ]
    assert kfold_splits(reversed(keys)) == expected


def test_kfold_with_other_fold_counts_and_seeds_matches_sklearn():
    model_selection = pytest.importorskip("sklearn.model_selection")
    keys = ids(17)
    for n_splits, seed in [(3, 0), (4, 7), (10, 12345)]:
        folds = model_selection.KFold(n_splits, shuffle=True, random_state=seed).split(keys)
        expected = [[keys[i] for i in val] for _, val in folds]
        assert [s["val"] for s in kfold_splits(keys, n_splits, seed)] == expected


def test_kfold_partitions_the_cases_and_gives_extra_cases_to_the_first_folds():
    splits = kfold_splits(ids(12))
    assert [len(s["val"]) for s in splits] == [3, 3, 2, 2, 2]
    all_val = [c for s in splits for c in s["val"]]
    assert sorted(all_val) == ids(12)
    for split in splits:
        assert sorted(split["train"] + split["val"]) == ids(12)
        assert split["val"] == sorted(split["val"])


def test_too_few_cases_for_five_folds_is_a_clear_error():
    with pytest.raises(AutoSegError, match=r"5 cross-validation folds from 3 .*fold 'all'"):
        kfold_splits(ids(3))


def test_splits_module_does_not_import_sklearn():
    code = "import sys, autoseg.training.splits; print('sklearn' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_splits_file_is_created_once_and_then_read(tmp_path):
    created = load_or_create_splits(tmp_path, ids(10))
    path = tmp_path / SPLITS_FILE
    assert json.loads(path.read_text()) == created
    custom = [{"train": ids(10)[:8], "val": ids(10)[8:]}, {"train": ids(10)[2:], "val": ids(2)}]
    path.write_text(json.dumps(custom))
    assert load_or_create_splits(tmp_path, ids(10)) == custom


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read as JSON"),
        ("[]", "non-empty list"),
        ('[{"train": ["case_000"]}]', "entry 0 is not an object"),
        ('[{"train": ["case_000"], "val": []}]', "entry 0 'val' must be a non-empty list"),
        ('[{"train": ["case_000"], "val": ["ghost"]}]', "'val' names only unknown.*ghost"),
    ],
)
def test_broken_splits_file_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / SPLITS_FILE
    path.write_text(content)
    with pytest.raises(AutoSegError, match=message) as error:
        load_or_create_splits(tmp_path, ids(5))
    assert str(path) in str(error.value)
    assert "Fix:" in str(error.value)


def test_cases_added_later_train_in_every_fold_and_validation_sets_stay(tmp_path, capsys):
    """The annotation loop adds cases: folds already trained must keep their validation cases."""
    splits = load_or_create_splits(tmp_path, ids(10))
    grown = [*ids(10), "new_a", "new_b"]
    fitted = load_or_create_splits(tmp_path, grown)
    assert [s["val"] for s in fitted] == [s["val"] for s in splits]
    assert [s["train"] for s in fitted] == [s["train"] + ["new_a", "new_b"] for s in splits]
    err = capsys.readouterr().err
    assert "2 case(s) added after the splits were written" in err
    assert "new_a, new_b" in err
    assert json.loads((tmp_path / SPLITS_FILE).read_text()) == splits  # the file is not rewritten


def test_removed_cases_are_left_out_with_a_line(tmp_path, capsys):
    splits = load_or_create_splits(tmp_path, ids(10))
    removed = splits[0]["val"][0]
    fitted = load_or_create_splits(tmp_path, [i for i in ids(10) if i != removed])
    assert removed not in fitted[0]["val"]
    assert all(removed not in s["train"] for s in fitted)
    assert f"no longer in the dataset and are left out: {removed}" in capsys.readouterr().err


def test_fold_all_trains_and_validates_on_every_case():
    train, val = fold_cases([], "all", reversed(ids(4)))
    assert train == val == ids(4)


def test_fold_inside_the_splits_returns_that_split():
    splits = kfold_splits(ids(10))
    assert fold_cases(splits, 3, ids(10)) == (splits[3]["train"], splits[3]["val"])
    assert fold_cases(splits, "3", ids(10)) == (splits[3]["train"], splits[3]["val"])


def test_fold_beyond_the_splits_is_a_seeded_random_80_20_split():
    splits = kfold_splits(ids(10))
    train, val = fold_cases(splits, 5, reversed(ids(10)))
    chosen = np.random.RandomState(12345 + 5).choice(10, 8, replace=False)
    assert train == [ids(10)[i] for i in chosen]
    assert val == sorted(set(ids(10)) - set(train))
    assert len(val) == 2
    assert fold_cases(splits, 6, ids(10)) != (train, val)


@pytest.mark.parametrize("fold", [-1, "x", 1.5, True])
def test_invalid_fold_is_rejected(fold):
    with pytest.raises(AutoSegError, match="is not valid"):
        fold_cases(kfold_splits(ids(5)), fold, ids(5))
