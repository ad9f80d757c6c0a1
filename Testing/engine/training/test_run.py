"""Training a fold end to end on a tiny synthetic dataset: files, resume, stop, validation."""

from __future__ import annotations

import json
import signal

import pytest
import torch

from autoseg.checkpoint import BEST, FINAL, LATEST, load_checkpoint
from autoseg.errors import AutoSegError
from autoseg.evaluation import load_summary
from autoseg.training import trainer as trainer_module
from autoseg.training.run import RunOptions, train_fold
from autoseg.training.settings import SETTINGS_FILE, TrainingSettings

from .conftest import tiny_job


def _same(a, b) -> bool:
    """Equal nested results, NaN included (JSON text compares NaN as equal)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _events(fold_dir) -> list[dict]:
    lines = (fold_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_fold_writes_checkpoints_logs_and_validation(tiny_preprocessed, tmp_path) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path)
    summary = train_fold(job)
    fold = job.fold_dir
    assert (fold / FINAL).is_file()
    assert (fold / BEST).is_file()
    assert not (fold / LATEST).exists()  # removed once the final checkpoint exists
    assert TrainingSettings.load(fold / SETTINGS_FILE) == job.settings
    assert "PlainConvUNet" in (fold / "network.txt").read_text()
    assert (fold / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kinds = [e["event"] for e in _events(fold)]
    assert kinds[0] == "start"
    assert kinds.count("epoch") == 2
    assert kinds[-2:] == ["validation", "end"]
    assert len(list(fold.glob("training_log_*.txt"))) == 1
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        assert (job.model_dir / name).is_file()
    # Final validation: one label file per validation case and a summary that matches it.
    val_cases = json.loads((job.preprocessed_dir / "splits_final.json").read_text())[0]["val"]
    written = sorted(p.name for p in (fold / "validation").glob("*.nii.gz"))
    assert written == sorted(f"{c}.nii.gz" for c in val_cases)
    assert _same(load_summary(fold / "validation" / "summary.json"), summary)
    assert {"1", "2"} <= set(summary["mean"])
    state = load_checkpoint(fold / FINAL)
    assert state["current_epoch"] == 2
    assert len(state["history"]["train_loss"]) == 2


class _Killed(Exception):
    """Stands in for SIGKILL: the process dies after a checkpoint, nothing else is saved."""


def test_resume_after_a_kill_gives_the_uninterrupted_state(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    straight = tiny_job(tiny_preprocessed, tmp_path / "a", epochs=3)
    train_fold(straight)
    interrupted = tiny_job(tiny_preprocessed, tmp_path / "b", epochs=3)
    original = trainer_module.Trainer._after_epoch

    def die_after_second_epoch(self, record):
        original(self, record)
        if record.epoch == 1:
            raise _Killed

    monkeypatch.setattr(trainer_module.Trainer, "_after_epoch", die_after_second_epoch)
    with pytest.raises(_Killed):
        train_fold(interrupted)
    assert load_checkpoint(interrupted.fold_dir / LATEST)["current_epoch"] == 2
    monkeypatch.undo()
    train_fold(interrupted, RunOptions(resume=True))

    a = load_checkpoint(straight.fold_dir / FINAL)
    b = load_checkpoint(interrupted.fold_dir / FINAL)
    assert a["history"]["train_loss"] == pytest.approx(b["history"]["train_loss"], rel=1e-5)
    assert a["best_ema"] == pytest.approx(b["best_ema"], rel=1e-5)
    for key, value in a["network_weights"].items():
        torch.testing.assert_close(b["network_weights"][key], value, rtol=1e-4, atol=1e-5)
    momentum_a = a["optimizer_state"]["state"][0]["momentum_buffer"]
    torch.testing.assert_close(
        b["optimizer_state"]["state"][0]["momentum_buffer"], momentum_a, rtol=1e-4, atol=1e-5
    )


def test_a_stop_signal_saves_the_latest_checkpoint(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path, epochs=5, checkpoint_every=50)
    original = trainer_module.Trainer.train_step

    def step_then_signal(self, batch):
        loss = original(self, batch)
        signal.raise_signal(signal.SIGTERM)
        return loss

    monkeypatch.setattr(trainer_module.Trainer, "train_step", step_then_signal)
    with pytest.raises(KeyboardInterrupt):
        train_fold(job)
    state = load_checkpoint(job.fold_dir / LATEST)
    assert state["current_epoch"] == 0  # the interrupted epoch is redone on resume
    assert _events(job.fold_dir)[-1]["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_existing_training_is_never_overwritten(tiny_preprocessed, tmp_path) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path, epochs=1)
    train_fold(job)
    before = (job.fold_dir / FINAL).read_bytes()
    with pytest.raises(AutoSegError, match="--c to continue"):
        train_fold(job)
    assert (job.fold_dir / FINAL).read_bytes() == before


def test_validation_only_and_pretrained_weights(tiny_preprocessed, tmp_path) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path / "first", epochs=1)
    first = train_fold(job)
    again = train_fold(job, RunOptions(validation_only=True, save_npz=True))
    assert _same(again["foreground_mean"], first["foreground_mean"])
    assert list((job.fold_dir / "validation").glob("*.npz"))
    with pytest.raises(AutoSegError, match=r"--val needs"):
        train_fold(tiny_job(tiny_preprocessed, tmp_path / "none"), RunOptions(validation_only=True))

    second = tiny_job(tiny_preprocessed, tmp_path / "second", epochs=1, iterations_per_epoch=1)
    train_fold(second, RunOptions(pretrained_weights=job.fold_dir / FINAL))
    with pytest.raises(AutoSegError, match="cannot be combined"):
        train_fold(second, RunOptions(resume=True, pretrained_weights=job.fold_dir / FINAL))


def test_pretrained_weights_must_match_the_architecture(tiny_preprocessed, tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"network_weights": {"encoder.stages.0.0.conv.weight": torch.zeros(1)}}, bad)
    job = tiny_job(tiny_preprocessed, tmp_path)
    with pytest.raises(AutoSegError, match="does not match"):
        train_fold(job, RunOptions(pretrained_weights=bad))


def test_fold_all_trains_on_every_case(private_preprocessed, tmp_path) -> None:
    job = tiny_job(private_preprocessed, tmp_path, fold="all", epochs=1)
    (job.preprocessed_dir / "splits_final.json").unlink(missing_ok=True)
    train_fold(job)
    assert len(list((job.fold_dir / "validation").glob("*.nii.gz"))) == 6
    assert not (job.preprocessed_dir / "splits_final.json").exists()


def _add_cascade_configurations(preprocessed_dataset) -> None:
    """A 3d_lowres -> 3d_cascade_fullres pair on the existing 3d_fullres data (same grid, so the
    next-stage resampling is the identity and no extra preprocessing is needed)."""
    path = preprocessed_dataset / "AutoSegPlans.json"
    data = json.loads(path.read_text())
    data["configurations"]["3d_lowres"] = {
        "inherits_from": "3d_fullres",
        "next_stage": "3d_cascade_fullres",
    }
    data["configurations"]["3d_cascade_fullres"] = {
        "inherits_from": "3d_fullres",
        "previous_stage": "3d_lowres",
    }
    path.write_text(json.dumps(data))


def test_lowres_validation_feeds_the_cascade(private_preprocessed, tmp_path) -> None:
    _add_cascade_configurations(private_preprocessed.preprocessed / "Dataset901_Tiny")
    results = tmp_path / "results"
    cascade = tiny_job(private_preprocessed, results, configuration="3d_cascade_fullres", epochs=1)
    with pytest.raises(AutoSegError, match="train all 5 folds of 3d_lowres first"):
        train_fold(cascade)

    lowres = tiny_job(
        private_preprocessed, results, fold="all", configuration="3d_lowres", epochs=1
    )
    train_fold(lowres)
    inputs = sorted(
        (lowres.model_dir / "predicted_next_stage" / "3d_cascade_fullres").glob("*.npy")
    )
    assert len(inputs) == 6
    assert cascade.num_input_channels == 1 + 2  # image + one-hot of the 2 foreground labels
    summary = train_fold(cascade)
    assert summary is not None
    assert (cascade.fold_dir / "validation" / "summary.json").is_file()


@pytest.mark.slow
def test_a_short_run_learns(tiny_preprocessed, tmp_path) -> None:
    job = tiny_job(
        tiny_preprocessed,
        tmp_path,
        epochs=12,
        iterations_per_epoch=8,
        val_iterations=4,
        initial_lr=0.01,
    )
    train_fold(job)
    history = load_checkpoint(job.fold_dir / FINAL)["history"]
    assert sum(history["train_loss"][-3:]) < sum(history["train_loss"][:3])
    assert history["ema_fg_dice"][-1] > history["ema_fg_dice"][0] + 0.1


def test_the_2d_configuration_trains_on_slices(tiny_preprocessed, tmp_path) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path, configuration="2d", epochs=1)
    assert job.config.is_2d
    summary = train_fold(job)
    assert summary is not None
    assert "2d" in job.model_dir.name
    assert len(list((job.fold_dir / "validation").glob("*.nii.gz"))) == 2
