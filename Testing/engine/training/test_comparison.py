"""Before/after comparison of a warm-started run: case sets, both models' Dice, comparison.json."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from autoseg.checkpoint import FINAL, save_checkpoint
from autoseg.model_listing import record_fold_cases
from autoseg.preprocessing.storage import case_ids
from autoseg.training.comparison import (
    COMPARISON_FILE,
    compare_after_warm_start,
    compare_models,
    comparison_table,
    known_cases,
)
from autoseg.training.job import TrainingJob
from autoseg.training.recipe import build_network_for
from autoseg.training.run import split_for, train_fold
from autoseg.training.validation import ValidationSetup

from .conftest import tiny_job

SETUP = ValidationSetup(torch.device("cpu"), (0, 1, 2))


def _finished_model(job: TrainingJob, known: list[str], seed: int = 0) -> torch.nn.Module:
    """The job's model folder with a finished fold (random weights) that knew ``known`` cases."""
    job.write_model_files()
    torch.manual_seed(seed)
    network = build_network_for(job)
    state = {
        "network_weights": network.state_dict(),
        "configuration": job.configuration,
        "inference_allowed_mirroring_axes": [0, 1, 2],
        "settings": {"epochs": 20},
    }
    save_checkpoint(job.fold_dir / FINAL, state)
    record_fold_cases(job.fold_dir, known[1:], known[:1])
    return network


@pytest.fixture
def warm_job(tiny_preprocessed, tmp_path) -> TrainingJob:
    job = tiny_job(
        tiny_preprocessed, tmp_path / "results", epochs=1, iterations_per_epoch=1, mirror_tta=False
    )
    return replace(job, settings=replace(job.settings, from_model=str(job.model_dir)))


def _means(comparison: dict, case_set: str) -> tuple[float, float]:
    entry = comparison["case_sets"][case_set]
    return entry["previous"]["mean"], entry["new"]["mean"]


def test_the_same_weights_score_the_same_on_both_case_sets(warm_job: TrainingJob) -> None:
    cases = case_ids(warm_job.data_dir)
    previous = _finished_model(warm_job, cases[:4])
    val = split_for(warm_job)[1]
    comparison = compare_models(warm_job, previous, val, SETUP)
    sets = comparison["case_sets"]
    assert sets["added"]["cases"] == cases[4:]
    assert sets["validation"]["cases"] == sorted(val)
    for name in ("added", "validation"):
        before, after = _means(comparison, name)
        assert before == after  # one prediction path for both models
        assert set(sets[name]["new"]["Dice"]) == {"organ", "lesion"}
    assert comparison["previous_model"] == {"path": str(warm_job.model_dir), "fold": "0"}
    written = json.loads((warm_job.fold_dir / "validation" / COMPARISON_FILE).read_text())
    assert written == comparison


def test_another_model_scores_differently(warm_job: TrainingJob) -> None:
    cases = case_ids(warm_job.data_dir)
    _finished_model(warm_job, cases[:4], seed=0)
    torch.manual_seed(1)
    other = build_network_for(warm_job)
    with torch.no_grad():
        other.decoder.seg_layers[-1].bias[1:] += 5.0  # predicts foreground almost everywhere
    comparison = compare_models(warm_job, other, cases[:2], SETUP)
    before, after = _means(comparison, "validation")
    assert before != after


def test_cases_known_from_the_fingerprint_or_not_at_all(warm_job: TrainingJob) -> None:
    cases = case_ids(warm_job.data_dir)
    _finished_model(warm_job, cases)
    (warm_job.fold_dir / "training_cases.json").unlink()
    fingerprint = json.loads((warm_job.model_dir / "dataset_fingerprint.json").read_text())
    assert set(fingerprint["provenance"]["cases"]) == set(
        cases
    )  # the tiny dataset's fingerprint lists them
    known, source = known_cases(warm_job.model_dir, "0")
    assert (known, source) == (set(cases), "dataset_fingerprint.json")
    (warm_job.model_dir / "dataset_fingerprint.json").unlink()
    assert known_cases(warm_job.model_dir, "0") == (None, None)
    comparison = compare_models(warm_job, build_network_for(warm_job), cases[:1], SETUP)
    assert comparison["case_sets"]["added"] == {"cases": None, "previous": None, "new": None}
    lines = comparison_table(comparison)
    assert "unknown (the previous model does not record its cases)" in lines[1]
    assert "1 cases" in lines[2]


def test_a_comparison_that_cannot_be_made_is_one_log_line(warm_job: TrainingJob) -> None:
    lines: list[str] = []

    class Log:
        def message(self, text: str) -> None:
            lines.append(text)

    network = build_network_for(warm_job)  # no previous model in the folder
    result = compare_after_warm_start(warm_job, network, ["x"], SETUP, Log())  # type: ignore[arg-type]
    assert result is None
    assert lines[0].startswith("Before/after comparison not made: ")
    assert network.deep_supervision is True  # restored for the caller
    scratch = replace(warm_job, settings=replace(warm_job.settings, from_model=None))
    assert compare_after_warm_start(scratch, network, ["x"], SETUP, None) is None


def test_a_warm_started_retraining_keeps_the_version_and_compares(warm_job: TrainingJob) -> None:
    """The loop in one call: fold 0 holds a model that knew 4 of the 6 cases; training it again
    from itself keeps it as versions/1, starts from it and compares against it."""
    cases = case_ids(warm_job.data_dir)
    _finished_model(warm_job, cases[:4])
    train_fold(warm_job)
    version = warm_job.model_dir / "versions" / "1"
    comparison = json.loads((warm_job.fold_dir / "validation" / COMPARISON_FILE).read_text())
    assert comparison["previous_model"]["path"] == str(version)
    assert comparison["case_sets"]["added"]["cases"] == cases[4:]
    for name in ("added", "validation"):
        before, after = _means(comparison, name)
        assert 0.0 <= before <= 1.0
        assert 0.0 <= after <= 1.0
    events = [
        json.loads(line) for line in (warm_job.fold_dir / "events.jsonl").read_text().splitlines()
    ]
    told = next(e for e in events if e["event"] == "comparison")
    assert told["case_sets"]["added"]["cases"] == 2
    assert [e["event"] for e in events][-2:] == ["validation", "end"]
    settings = json.loads((warm_job.fold_dir / "training_settings.json").read_text())
    assert settings["from_model"] == str(version)
    log = next(warm_job.fold_dir.glob("training_log_*.txt")).read_text()
    assert "Before/after (fold 0)" in log
