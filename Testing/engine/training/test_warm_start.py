"""Warm start (``from_model``): every weight from the model, heads fresh when labels are added,
fine-tuning defaults, and one-line refusals for a model the dataset's plans do not fit."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from Testing.engine.interop.nnunet_reference import MODELS, PLAIN

from autoseg.checkpoint import FINAL, load_checkpoint, save_checkpoint
from autoseg.dataset import load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.inference.model_files import read_model_plans
from autoseg.interop.nnunet_checkpoint import load_nnunet_checkpoint
from autoseg.labels import LabelSpec
from autoseg.planning.plans_transfer import transfer_plans
from autoseg.training.job import TRAINER_NAME, TrainingJob, model_folder_name
from autoseg.training.recipe import build_network_for
from autoseg.training.run import RunOptions, train_fold
from autoseg.training.settings import SETTINGS_FILE, TrainingSettings
from autoseg.training.warm_start import (
    HEAD_MARKER,
    apply_warm_start,
    find_source,
    fine_tuning_settings,
    load_warm_start,
    with_fine_tuning,
)

from .conftest import tiny_job

MODEL_EPOCHS = 200


def make_model_folder(job: TrainingJob, folds=("0",), epochs: int = MODEL_EPOCHS) -> Path:
    """A model folder as training leaves it, with random weights (what is copied is what counts)."""
    job.write_model_files()
    torch.manual_seed(1)
    for fold in folds:
        state = {
            "network_weights": build_network_for(job).state_dict(),
            "settings": replace(job.settings, epochs=epochs).to_json(),
            "current_epoch": epochs,
            "configuration": job.configuration,
        }
        save_checkpoint(job.model_dir / f"fold_{fold}" / FINAL, state)
    return job.model_dir


@pytest.fixture
def model(tiny_preprocessed, tmp_path) -> Path:
    return make_model_folder(tiny_job(tiny_preprocessed, tmp_path / "model"))


def warm_job(roots, results: Path, model: Path, **settings) -> TrainingJob:
    return tiny_job(roots, results, from_model=str(model), **settings)


def _with_labels(job: TrainingJob, **extra: int) -> TrainingJob:
    labels = LabelSpec((*job.dataset.labels.entries, *extra.items()))
    return replace(job, dataset=replace(job.dataset, labels=labels))


def test_every_weight_heads_included_is_the_models(tiny_preprocessed, tmp_path, model) -> None:
    job = warm_job(tiny_preprocessed, tmp_path / "new", model)
    network = build_network_for(job)
    lines = apply_warm_start(network, load_warm_start(job))
    expected = load_checkpoint(model / "fold_0" / FINAL)["network_weights"]
    own = network.state_dict()
    assert set(own) == set(expected)
    assert any(HEAD_MARKER in key for key in own)
    for key, value in expected.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    assert lines == [f"Warm start from {model}, fold 0 ({FINAL})"]


def test_added_labels_start_only_the_heads_fresh(tiny_preprocessed, tmp_path, model) -> None:
    job = _with_labels(warm_job(tiny_preprocessed, tmp_path / "new", model), vessel=3)
    warm = load_warm_start(job)
    assert warm.source.added_labels == ("vessel",)
    network = build_network_for(job)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    lines = apply_warm_start(network, warm)
    expected = warm.weights
    heads = [k for k in network.state_dict() if HEAD_MARKER in k]
    assert heads
    for key, value in network.state_dict().items():
        if HEAD_MARKER in key:  # deep-supervision heads too: fresh, one more output channel
            assert torch.equal(value, before[key])
            assert value.shape[0] == expected[key].shape[0] + 1 or value.ndim == 1
        else:
            assert torch.equal(value, expected[key])
    assert "vessel" in lines[-1]


def test_a_missing_fold_starts_from_fold_all_then_fold_0(tiny_preprocessed, tmp_path) -> None:
    source = tiny_job(tiny_preprocessed, tmp_path / "model")
    model = make_model_folder(source, folds=("0", "all"))
    job = warm_job(tiny_preprocessed, tmp_path / "new", model, fold=3)
    source_found = find_source(job)
    assert (source_found.fold, source_found.requested_fold) == ("all", "3")
    shutil.rmtree(model / "fold_all")
    warm = load_warm_start(job)
    assert warm.source.fold == "0"
    lines = apply_warm_start(build_network_for(job), warm)
    assert "no trained fold 3" in lines[1]
    assert "fold 0" in lines[1]


def _one_line_error(job: TrainingJob) -> str:
    with pytest.raises(AutoSegError) as error:
        find_source(job)
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert "Fix:" in message
    return message


def test_plans_that_are_not_the_models_are_refused(tiny_preprocessed, tmp_path, model) -> None:
    job = warm_job(tiny_preprocessed, tmp_path / "new", model)
    config = replace(job.config, patch_size=(8, 32, 32))
    other = replace(job.plans, configurations={**job.plans.configurations, "3d_fullres": config})
    message = _one_line_error(replace(job, plans=other))
    assert "patch size" in message
    assert "--plans-from" in message
    stats = {"0": replace(job.plans.intensity_stats()[0], percentile_99_5=1e4)}
    other = replace(job.plans, foreground_intensity_properties_per_channel=stats)
    assert "normalization" in _one_line_error(replace(job, plans=other))  # CT uses the statistics


def test_a_model_without_checkpoints_is_refused(tiny_preprocessed, tmp_path, model) -> None:
    shutil.rmtree(model / "fold_0")
    message = _one_line_error(warm_job(tiny_preprocessed, tmp_path / "new", model))
    assert "fold_0, fold_all" in message


def test_other_channels_or_labels_are_refused(tiny_preprocessed, tmp_path, model) -> None:
    job = warm_job(tiny_preprocessed, tmp_path / "new", model)
    two = replace(job.dataset, channel_names=("CT", "T1"))
    assert "channels" in _one_line_error(replace(job, dataset=two))
    renumbered = LabelSpec((("background", 0), ("organ", 2), ("lesion", 1)))
    message = _one_line_error(replace(job, dataset=replace(job.dataset, labels=renumbered)))
    assert "organ" in message


def test_fine_tuning_defaults_and_what_the_user_chose() -> None:
    settings = TrainingSettings(from_model="m")
    assert (
        fine_tuning_settings(settings, 200).epochs,
        fine_tuning_settings(settings, 60).epochs,
    ) == (
        20,
        10,
    )
    assert fine_tuning_settings(settings, 200).initial_lr == 1e-3
    chosen = fine_tuning_settings(replace(settings, epochs=7, initial_lr=0.02), 200, {"epochs"})
    assert (chosen.epochs, chosen.initial_lr) == (7, 1e-3)


def test_with_fine_tuning_scales_from_the_models_epochs(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    model = make_model_folder(tiny_job(tiny_preprocessed, tmp_path / "model"), epochs=300)
    job = tiny_job(tiny_preprocessed, tmp_path / "new")
    assert with_fine_tuning(job) is job  # no from_model: unchanged
    monkeypatch.chdir(tmp_path)
    job = replace(job, settings=replace(job.settings, from_model=str(model.relative_to(tmp_path))))
    tuned = with_fine_tuning(job, explicit={"initial_lr"})
    assert (tuned.settings.epochs, tuned.settings.initial_lr) == (30, job.settings.initial_lr)
    assert tuned.settings.from_model == str(model.resolve())
    # A continued run keeps the schedule it was started with (saved with it).
    job.fold_dir.mkdir(parents=True)
    replace(tuned.settings, epochs=12).save(job.fold_dir / SETTINGS_FILE)
    assert with_fine_tuning(job, resume=True).settings.epochs == 12
    assert with_fine_tuning(job, {"epochs"}, resume=True).settings.epochs == job.settings.epochs


def test_a_warm_started_fold_trains_and_records_its_source(tiny_preprocessed, tmp_path, model):
    job = warm_job(tiny_preprocessed, tmp_path / "new", model, epochs=1, iterations_per_epoch=1)
    train_fold(job)
    assert TrainingSettings.load(job.fold_dir / SETTINGS_FILE).from_model == str(model)
    log = next(job.fold_dir.glob("training_log_*.txt")).read_text()
    assert f"Warm start from {model}, fold 0" in log
    with pytest.raises(AutoSegError, match="both choose the first weights"):
        train_fold(job, RunOptions(pretrained_weights=model / "fold_0" / FINAL))


def test_an_nnunet_model_is_a_source_too(tmp_path) -> None:
    nnunet = read_model_plans(MODELS / PLAIN)
    plans = transfer_plans(nnunet, "Dataset952_Own", "AutoSegPlans", "SimpleITKIO")
    job = TrainingJob(
        plans=plans,
        configuration="3d_fullres",
        dataset=load_dataset_json(MODELS / PLAIN / "dataset.json"),
        preprocessed_dir=tmp_path / "Dataset952_Own",
        model_dir=tmp_path / model_folder_name(TRAINER_NAME, "AutoSegPlans", "3d_fullres"),
        fold=0,
        settings=TrainingSettings(from_model=str(MODELS / PLAIN)),
    )
    warm = load_warm_start(job)
    assert warm.model_epochs == 12  # the fixture's nnU-Net training
    network = build_network_for(job)
    apply_warm_start(network, warm)
    expected = load_nnunet_checkpoint(MODELS / PLAIN / "fold_0" / FINAL).network_weights
    for key, value in network.state_dict().items():
        assert torch.equal(value, expected[key])
    assert fine_tuning_settings(job.settings, warm.model_epochs).epochs == 10


@pytest.mark.slow
def test_the_first_epoch_of_a_warm_start_segments_like_the_model(tiny_preprocessed, tmp_path):
    """On the same data, a warm start's first pseudo Dice is the model's last, not a fresh
    network's near-zero one."""
    fast = {"fold": "all", "val_iterations": 2, "mirror_tta": False}
    source = tiny_job(
        tiny_preprocessed, tmp_path / "model", epochs=4, iterations_per_epoch=10, **fast
    )
    train_fold(source)
    model_dice = load_checkpoint(source.fold_dir / FINAL)["history"]["mean_fg_dice"]
    assert model_dice[-1] > 0.3  # the model learned something worth keeping
    warm = warm_job(
        tiny_preprocessed,
        tmp_path / "warm",
        source.model_dir,
        epochs=1,
        iterations_per_epoch=2,
        initial_lr=1e-3,
        **fast,
    )
    train_fold(warm)
    first = load_checkpoint(warm.fold_dir / FINAL)["history"]["mean_fg_dice"][0]
    assert first > 0.3
    assert first == pytest.approx(model_dice[-1], abs=0.2)
    events = (warm.fold_dir / "events.jsonl").read_text().splitlines()
    assert json.loads(events[0])["event"] == "start"


def test_improving_a_model_in_place_starts_from_its_kept_version(tiny_preprocessed, tmp_path):
    """The loop's common case: the dataset grew and the same fold of the same model is trained
    again from itself; the previous model is kept as a version and the new run starts from it."""
    results = tmp_path / "results"
    model = make_model_folder(tiny_job(tiny_preprocessed, results))
    before = load_checkpoint(model / "fold_0" / FINAL)["network_weights"]
    job = warm_job(tiny_preprocessed, results, model, epochs=1, iterations_per_epoch=1)
    train_fold(job)
    kept = model / "versions" / "1"
    assert TrainingSettings.load(job.fold_dir / SETTINGS_FILE).from_model == str(kept)
    log = next(job.fold_dir.glob("training_log_*.txt")).read_text()
    assert f"Warm start from {kept}, fold 0" in log  # the weights the fold had before
    started_from = load_checkpoint(kept / "fold_0" / FINAL)["network_weights"]
    for key, value in before.items():
        assert torch.equal(started_from[key], value)
