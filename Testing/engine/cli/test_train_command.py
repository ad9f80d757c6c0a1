"""``autoseg train``: flags become settings, several folds, nnU-Net spellings, one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from Testing.engine.training.conftest import tiny_job
from Testing.engine.training.test_warm_start import make_model_folder

from autoseg.checkpoint import FINAL, LATEST, load_checkpoint
from autoseg.cli import build_parser, main
from autoseg.cli.train_command import explicit_settings, settings_from, torchrun_env
from autoseg.cli.train_launch import TrainRequest, build_job, launch
from autoseg.training.fold_lock import LOCK_FILE
from autoseg.training.settings import TrainingSettings
from autoseg.training.stop_request import STOP_REQUEST_FILE


def _args(*argv: str):
    return build_parser().parse_args(["train", "4", "3d_fullres", "0", *argv])


def test_flags_settings_file_and_assignments_combine(tmp_path) -> None:
    settings_file = tmp_path / "variant.json"
    settings_file.write_text(json.dumps({"epochs": 10, "initial_lr": 0.02, "seed": 3}))
    settings = settings_from(
        _args(
            "--settings",
            str(settings_file),
            "--set",
            "weight_decay=1e-4",
            "--epochs",
            "7",
            "--iterations_per_epoch",
            "5",
            "-device",
            "cpu",
        )
    )
    assert (settings.epochs, settings.initial_lr, settings.seed) == (7, 0.02, 3)
    assert (settings.weight_decay, settings.iterations_per_epoch) == (1e-4, 5)
    assert settings.device == "cpu"


def test_nnunet_epoch_trainers_are_settings() -> None:
    assert settings_from(_args("-tr", "nnUNetTrainer_250epochs")).epochs == 250
    assert settings_from(_args("-tr", "nnUNetTrainer")).epochs == 1000
    assert not settings_from(_args("--disable_checkpointing")).save_checkpoints


def test_torchrun_environment_is_recognised() -> None:
    assert torchrun_env({}) is None
    assert torchrun_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert torchrun_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (3, 8, 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["0", "-tr", "nnUNetTrainerDA5"], "no trainer classes"),
        (["five"], "fold 'five' is not valid"),
        (["0", "--set", "epochz=3"], "unknown training setting"),
        (["0", "--epochs", "0"], "epochs must be >= 1"),
    ],
)
def test_mistakes_are_one_line_errors(tiny_preprocessed, capsys, argv, message) -> None:
    roots = tiny_preprocessed
    code = main(
        [
            "train",
            "901",
            "3d_fullres",
            *argv,
            "--preprocessed",
            str(roots.preprocessed),
            "--results",
            str(roots.results),
            "--raw",
            str(roots.raw),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_plans_says_what_to_run(tmp_path, capsys) -> None:
    (tmp_path / "pre" / "Dataset005_X").mkdir(parents=True)
    code = main(
        [
            "train",
            "5",
            "3d_fullres",
            "0",
            "--preprocessed",
            str(tmp_path / "pre"),
            "--results",
            str(tmp_path / "res"),
            "--raw",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "plan_and_preprocess -d 5" in capsys.readouterr().err


def test_several_folds_train_one_after_another(private_preprocessed, capsys) -> None:
    roots = private_preprocessed
    code = main(
        [
            "train",
            "Dataset901_Tiny",
            "3d_fullres",
            "0",
            "1",
            "-device",
            "cpu",
            "--epochs",
            "1",
            "--iterations-per-epoch",
            "1",
            "--val-iterations",
            "1",
            "--num-workers",
            "0",
            "--amp",
            "off",
            "--seed",
            "0",
            "--quiet",
            "--preprocessed",
            str(roots.preprocessed),
            "--results",
            str(roots.results),
            "--raw",
            str(roots.raw),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    model = roots.results / "Dataset901_Tiny" / "AutoSegTrainer__AutoSegPlans__3d_fullres"
    for fold in (0, 1):
        assert (model / f"fold_{fold}" / "validation" / "summary.json").is_file()
        assert f"fold_{fold}: mean validation Dice" in out


def test_sigkill_then_resume_loses_only_the_work_since_the_checkpoint(private_preprocessed) -> None:
    roots = private_preprocessed
    command = [
        sys.executable,
        "-m",
        "autoseg",
        "train",
        "901",
        "3d_fullres",
        "0",
        "-device",
        "cpu",
        "--epochs",
        "6",
        "--iterations-per-epoch",
        "2",
        "--val-iterations",
        "1",
        "--num-workers",
        "0",
        "--amp",
        "off",
        "--seed",
        "0",
        "--checkpoint-every",
        "1",
        "--quiet",
        "--preprocessed",
        str(roots.preprocessed),
        "--results",
        str(roots.results),
        "--raw",
        str(roots.raw),
    ]
    fold = roots.results / "Dataset901_Tiny" / "AutoSegTrainer__AutoSegPlans__3d_fullres" / "fold_0"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (fold / LATEST).is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = load_checkpoint(fold / LATEST)["current_epoch"]
    assert 1 <= saved < 6

    resumed = subprocess.run([*command, "--c"], capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    final = load_checkpoint(fold / FINAL)
    assert final["current_epoch"] == 6
    assert len(final["history"]["epoch"]) == 6  # the log continues where the checkpoint was
    starts = [json.loads(line) for line in (fold / "events.jsonl").read_text().splitlines()]
    resumed_from = [e["resumed_from_epoch"] for e in starts if e["event"] == "start"]
    assert resumed_from[0] is None
    assert resumed_from[-1] >= saved


def test_several_folds_with_several_workers_train_one_fold_each(private_preprocessed) -> None:
    """``-num_gpus 2`` with two folds: each process trains its own fold (shown with CPU ranks)."""
    roots = private_preprocessed
    settings = TrainingSettings(
        epochs=1,
        iterations_per_epoch=1,
        val_iterations=1,
        device="cpu",
        num_workers=0,
        amp="off",
        seed=0,
        cpu_threads=1,
    )
    request = TrainRequest("901", "3d_fullres", ("0", "1"), None, settings, roots, num_gpus=2)
    assert launch(request, None) == 0
    model = roots.results / "Dataset901_Tiny" / "AutoSegTrainer__AutoSegPlans__3d_fullres"
    for fold in (0, 1):
        assert (model / f"fold_{fold}" / FINAL).is_file()
        assert (model / f"fold_{fold}" / "validation" / "summary.json").is_file()


def _train_command(roots, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "autoseg",
        "train",
        "901",
        "3d_fullres",
        "0",
        "-device",
        "cpu",
        "--iterations-per-epoch",
        "2",
        "--val-iterations",
        "1",
        "--num-workers",
        "0",
        "--amp",
        "off",
        "--seed",
        "0",
        "--quiet",
        "--preprocessed",
        str(roots.preprocessed),
        "--results",
        str(roots.results),
        "--raw",
        str(roots.raw),
        *extra,
    ]


@pytest.mark.slow  # two engine start-ups and a training: about 20-35 s
def test_a_second_run_of_a_fold_is_refused_and_a_stop_request_ends_the_first(
    private_preprocessed,
) -> None:
    """Real processes: the lock refuses a second ``train`` of the fold with one line naming the
    first; STOP_REQUEST makes the first save, report ``stopped`` and exit 0."""
    roots = private_preprocessed
    fold = roots.results / "Dataset901_Tiny" / "AutoSegTrainer__AutoSegPlans__3d_fullres" / "fold_0"
    command = _train_command(roots, "--epochs", "1000", "--progress", "json")
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as first:
        try:
            deadline = time.monotonic() + 300
            events = fold / "events.jsonl"
            while not (events.is_file() and '"epoch"' in events.read_text()):
                assert first.poll() is None, first.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.1)
            second = subprocess.run(
                _train_command(roots, "--epochs", "1000"),
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert second.returncode == 2
            assert second.stderr.count("\n") == 1, second.stderr
            assert f"being trained by another process (pid {first.pid} on" in second.stderr
            assert "autoseg train 901 3d_fullres 0" in second.stderr
            (fold / STOP_REQUEST_FILE).write_text("{}")
            out, err = first.communicate(timeout=300)
        finally:
            first.kill()
    assert first.returncode == 0, err
    assert "training stopped (stop request)" in err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines[0]["event"] == "start"
    assert lines[-1]["event"] == "stopped"
    assert lines[-1]["checkpoint"] == str(fold / LATEST)
    assert load_checkpoint(fold / LATEST)["current_epoch"] == lines[-1]["next_epoch"]
    assert not (fold / LOCK_FILE).exists()
    assert not (fold / STOP_REQUEST_FILE).exists()


def test_from_model_is_a_setting_and_explicit_choices_are_known(tmp_path) -> None:
    settings_file = tmp_path / "variant.json"
    settings_file.write_text(json.dumps({"weight_decay": 1e-4}))
    argv = ("--from-model", "M", "--set", "initial_lr=0.02", "--settings", str(settings_file))
    args = _args(*argv, "-tr", "nnUNetTrainer_5epochs")
    assert settings_from(args).from_model == "M"
    chosen = explicit_settings(args)
    assert {"from_model", "initial_lr", "weight_decay", "epochs"} <= chosen
    assert "seed" not in explicit_settings(_args("--from-model", "M"))


def _warm_request(roots, model, *argv: str) -> TrainRequest:
    args = _args("--from-model", str(model), *argv)
    return TrainRequest(
        dataset="901",
        configuration="3d_fullres",
        folds=("0",),
        plans_name=None,
        settings=settings_from(args),
        roots=roots,
        explicit_settings=explicit_settings(args),
    )


def test_from_model_gets_the_fine_tuning_schedule_unless_chosen(tiny_preprocessed, tmp_path):
    model = make_model_folder(tiny_job(tiny_preprocessed, tmp_path / "model"), epochs=400)
    job = build_job(_warm_request(tiny_preprocessed, model), 0)
    assert (job.settings.epochs, job.settings.initial_lr) == (40, 1e-3)
    job = build_job(_warm_request(tiny_preprocessed, model, "--epochs", "3"), 0)
    assert (job.settings.epochs, job.settings.initial_lr) == (3, 1e-3)


def test_from_model_refusals_are_one_line(tiny_preprocessed, tmp_path, capsys) -> None:
    model = make_model_folder(tiny_job(tiny_preprocessed, tmp_path / "model"))
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = [8, 32, 32]
    (model / "plans.json").write_text(json.dumps(plans))
    roots = tiny_preprocessed
    code = main(
        [
            *("train", "901", "3d_fullres", "0", "--from-model", str(model)),
            *("--preprocessed", str(roots.preprocessed), "--results", str(tmp_path / "results")),
            *("--raw", str(roots.raw)),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--plans-from" in err
    assert not (tmp_path / "results").exists()  # refused before anything was written
