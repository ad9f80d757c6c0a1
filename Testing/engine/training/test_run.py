"""Training a fold end to end on a tiny synthetic dataset: files, resume, stop, lock, validation."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from autoseg.checkpoint import BEST, FINAL, LATEST, load_checkpoint
from autoseg.errors import AutoSegError
from autoseg.evaluation import load_summary
from autoseg.out_of_memory import OutOfMemory
from autoseg.training import run as run_module
from autoseg.training import trainer as trainer_module
from autoseg.training.fold_lock import LOCK_FILE, FoldLocked, LockHolder, read_lock
from autoseg.training.run import RunOptions, train_fold
from autoseg.training.settings import SETTINGS_FILE, TrainingSettings
from autoseg.training.stop_request import STOP_REQUEST_FILE, TrainingStopped, write_stop_request

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
    last = _events(job.fold_dir)[-1]
    assert (last["event"], last["reason"], last["phase"]) == ("stopped", "SIGTERM", "training")
    assert last["checkpoint"] == str(job.fold_dir / LATEST)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert read_lock(job.fold_dir) is None  # released


def test_a_stop_request_file_ends_the_run_after_the_iteration(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path, epochs=5, checkpoint_every=50)
    write_stop_request(job.fold_dir)  # left over from an earlier run: must not stop this one
    original = trainer_module.Trainer.train_step
    steps = []

    def step_then_request(self, batch):
        steps.append(original(self, batch))
        if len(steps) == 3:  # the first step of the second epoch
            write_stop_request(job.fold_dir, requested_by="test")
        return steps[-1]

    monkeypatch.setattr(trainer_module.Trainer, "train_step", step_then_request)
    with pytest.raises(
        TrainingStopped, match=r"training stopped \(stop request\).*resume with --c"
    ):
        train_fold(job)
    assert len(steps) == 3  # the loop ended right after the iteration that saw the request
    assert load_checkpoint(job.fold_dir / LATEST)["current_epoch"] == 1
    last = _events(job.fold_dir)[-1]
    assert (last["event"], last["reason"], last["next_epoch"]) == ("stopped", "stop request", 1)
    assert "resume with --c" in last["message"]
    assert not (job.fold_dir / STOP_REQUEST_FILE).exists()  # honoured, then removed
    assert read_lock(job.fold_dir) is None


def test_a_stop_request_during_the_final_validation_keeps_the_training(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path, epochs=1)

    def validation_that_takes_long(*args):
        write_stop_request(job.fold_dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # interrupted by the stop-request watcher
            time.sleep(0.01)
        raise AssertionError("the stop request did not interrupt the validation")

    monkeypatch.setattr(run_module, "run_final_validation", validation_that_takes_long)
    with pytest.raises(TrainingStopped, match="redo the validation with --val"):
        train_fold(job)
    assert (job.fold_dir / FINAL).is_file()
    kinds = [e["event"] for e in _events(job.fold_dir)]
    assert "stopping" in kinds  # the watcher acknowledged the request at once
    last = _events(job.fold_dir)[-1]
    assert (last["event"], last["phase"]) == ("stopped", "validation")
    assert read_lock(job.fold_dir) is None


def test_out_of_memory_is_an_error_event_and_one_line(tiny_preprocessed, tmp_path, monkeypatch):
    job = tiny_job(tiny_preprocessed, tmp_path)

    def allocation_fails(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(trainer_module.Trainer, "train_step", allocation_fails)
    with pytest.raises(OutOfMemory, match="Training ran out of GPU memory"):
        train_fold(job)
    last = _events(job.fold_dir)[-1]
    assert (last["event"], last["kind"]) == ("error", "out_of_memory")
    assert "--gpu-memory-target" in last["message"]
    assert read_lock(job.fold_dir) is None


def test_a_fold_that_another_process_trains_is_refused(tiny_preprocessed, tmp_path) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        job.fold_dir.mkdir(parents=True)
        holder = LockHolder(other.pid, socket.gethostname(), time.time(), "autoseg train 901 x 0")
        (job.fold_dir / LOCK_FILE).write_text(json.dumps(holder.__dict__))
        with pytest.raises(FoldLocked, match=f"pid {other.pid}"):
            train_fold(job)
        assert sorted(p.name for p in job.fold_dir.iterdir()) == [LOCK_FILE]  # nothing written
    finally:
        other.kill()
        other.wait()


class _FakeClock:
    """Minutes that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_time_based_checkpoint_is_written_and_resumed(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path, epochs=4, checkpoint_every=50, checkpoint_minutes=1)
    clock = _FakeClock()
    monkeypatch.setattr(trainer_module.Trainer, "clock", staticmethod(clock))
    run_epoch = trainer_module.Trainer.run_epoch
    after_epoch = trainer_module.Trainer._after_epoch

    def forty_seconds_per_epoch(self, epoch):
        record = run_epoch(self, epoch)
        clock.now += 40.0
        return record

    def die_after_third_epoch(self, record):
        after_epoch(self, record)
        if record.epoch == 2:
            raise _Killed

    monkeypatch.setattr(trainer_module.Trainer, "run_epoch", forty_seconds_per_epoch)
    monkeypatch.setattr(trainer_module.Trainer, "_after_epoch", die_after_third_epoch)
    with pytest.raises(_Killed):
        train_fold(job)
    # 40 s after epoch 0: not yet; 80 s after epoch 1: written; 40 s after that: not yet.
    latest = [e for e in _events(job.fold_dir) if e.get("kind") == "checkpoint_latest"]
    assert len(latest) == 1
    assert load_checkpoint(job.fold_dir / LATEST)["current_epoch"] == 2
    assert read_lock(job.fold_dir) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = LockHolder(dead.pid, socket.gethostname(), time.time(), "killed run")
    (job.fold_dir / LOCK_FILE).write_text(json.dumps(stale.__dict__))  # as a SIGKILL leaves it
    monkeypatch.setattr(trainer_module.Trainer, "_after_epoch", after_epoch)
    (job.fold_dir / BEST).unlink(missing_ok=True)  # else --c takes it when it is newer
    train_fold(job, RunOptions(resume=True))
    final = load_checkpoint(job.fold_dir / FINAL)
    assert final["current_epoch"] == 4
    starts = [e for e in _events(job.fold_dir) if e["event"] == "start"]
    assert starts[-1]["resumed_from_epoch"] == 2


def test_a_long_epoch_writes_the_time_based_checkpoint_within_it(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path, epochs=2, checkpoint_every=50, checkpoint_minutes=1)
    clock = _FakeClock()
    monkeypatch.setattr(trainer_module.Trainer, "clock", staticmethod(clock))
    original = trainer_module.Trainer.train_step

    def one_minute_per_step_then_die(self, batch):
        loss = original(self, batch)
        clock.now += 61.0
        if (job.fold_dir / LATEST).is_file():
            raise _Killed
        return loss

    monkeypatch.setattr(trainer_module.Trainer, "train_step", one_minute_per_step_then_die)
    with pytest.raises(_Killed):
        train_fold(job)
    assert load_checkpoint(job.fold_dir / LATEST)["current_epoch"] == 0  # epoch 0 is redone


def test_existing_training_is_never_overwritten(tiny_preprocessed, tmp_path) -> None:
    """A finished model is kept as versions/1 (model_versions.py); an unfinished run is refused."""
    job = tiny_job(tiny_preprocessed, tmp_path, epochs=1, iterations_per_epoch=1)
    train_fold(job)
    before = (job.fold_dir / FINAL).read_bytes()
    train_fold(job)
    assert (job.model_dir / "versions" / "1" / "fold_0" / FINAL).read_bytes() == before
    assert (job.fold_dir / FINAL).read_bytes() != before
    assert "version_kept" in [e["event"] for e in _events(job.fold_dir)]
    (job.fold_dir / FINAL).rename(job.fold_dir / LATEST)
    with pytest.raises(AutoSegError, match="--c to continue"):
        train_fold(job)


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
