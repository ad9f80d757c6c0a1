"""TrainingRun with real child processes: order, parallel GPU slots, failure, cancel, progress.

The scheduling tests run a small fake engine script (a real process that writes events.jsonl
and checkpoints like the engine, in milliseconds); one slow test runs the real engine.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from patience import PATIENCE

from AutoSegTrainLib.fold_status import fold_status
from AutoSegTrainLib.training_runs import (
    EngineStep,
    RunSnapshot,
    TrainingRequest,
    TrainingRun,
    plan_steps,
    preprocessing_done,
)

DATASET = "Dataset008_Run"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="process groups and signals")

FAKE_ENGINE = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    args = sys.argv[1:]
    log = os.environ["FAKE_LOG"]
    def note(what):
        line = {"what": what, "args": args, "t": time.time(),
                "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}
        with open(log, "a") as f:
            f.write(json.dumps(line) + "\\n")
    note("start")
    if args[0] == "plan_and_preprocess":
        for k in range(3):
            print(json.dumps({"event": "progress", "stage": "preprocessing", "done": k, "total": 2}))
    elif args[0] == "train":
        dataset, cfg, fold = args[1:4]
        results = args[args.index("--results") + 1]
        folder = os.path.join(results, dataset, "AutoSegTrainer__AutoSegPlans__" + cfg, "fold_" + fold)
        os.makedirs(folder, exist_ok=True)
        def event(**e):
            with open(os.path.join(folder, "events.jsonl"), "a") as f:
                f.write(json.dumps(e) + "\\n")
        def touch(name):
            open(os.path.join(folder, name), "w").close()
        def stop(*_):
            touch("checkpoint_latest.pth")
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        request = os.path.join(folder, "STOP_REQUEST")
        if os.path.exists(request):  # the engine drops a request left from an earlier run
            os.remove(request)
        def wait(seconds):  # like the engine: a stop request ends the run after "saving"
            deadline = time.time() + seconds
            while time.time() < deadline:
                if os.environ.get("FAKE_OBEYS", "1") == "1" and os.path.exists(request):
                    touch("checkpoint_latest.pth")
                    if os.path.isfile(os.path.join(folder, "events.jsonl")):
                        event(event="stopped", reason="stop request", phase="training",
                              next_epoch=0, checkpoint="checkpoint_latest.pth")
                    sys.exit(0)
                time.sleep(0.02)
        if os.environ.get("FAKE_FAIL") == cfg + " " + fold:
            print("Traceback (most recent call last):", file=sys.stderr)
            print("RuntimeError: boom in " + fold, file=sys.stderr)
            sys.exit(3)
        if os.environ.get("FAKE_BREAK_EVENTS"):
            event(event="start", epochs=2, resumed_from_epoch=None)
            os.remove(os.path.join(folder, "events.jsonl"))
            os.mkdir(os.path.join(folder, "events.jsonl"))
            wait(60)
        if os.environ.get("FAKE_HANG"):
            grandchild = subprocess.Popen(
                [sys.executable, "-c",
                 "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.environ["FAKE_HANG"], "w") as f:
                f.write(str(grandchild.pid))
            wait(60)
        event(event="start", epochs=2, resumed_from_epoch=None)
        for k in range(2):
            wait(float(os.environ.get("FAKE_EPOCH_S", "0.05")))
            event(event="epoch", epoch=k, epochs=2, train_loss=-k, val_loss=-k, epoch_time=1.5,
                  pseudo_dice=[0.5, 0.7], mean_fg_dice=0.6, ema_fg_dice=0.1 * (k + 1))
            print("Epoch " + str(k))
        touch("checkpoint_final.pth")
        os.makedirs(os.path.join(folder, "validation"), exist_ok=True)
        open(os.path.join(folder, "validation", "summary.json"), "w").close()
        event(event="end", status="finished")
    note("end")
    """
)


def _request(**changes) -> TrainingRequest:
    values = {"dataset": DATASET, "configurations": ("3d_fullres",), "folds": (0, 1)}
    return TrainingRequest(**{**values, **changes})


def _keys(steps: list[EngineStep]) -> list[str]:
    return [step.key for step in steps]


def test_run_checks_the_step_keys() -> None:
    with pytest.raises(ValueError, match="depends on unknown"):
        TrainingRun([EngineStep("b", "B", ("x",), depends_on=("a",))], python=sys.executable)


# ---------------------------------------------------------------- running with a fake engine


@pytest.fixture
def fake(tmp_path: Path):
    """A runner factory for the fake engine, and the log of what each process did."""
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE, encoding="utf-8")
    log = tmp_path / "log.jsonl"

    def make(steps, gpus=(), **env) -> TrainingRun:
        return TrainingRun(
            steps,
            python=sys.executable,
            env_overrides={"FAKE_LOG": str(log), **env},
            gpus=gpus,
            command_builder=lambda python, args: [python, str(script), *args],
        )

    def entries() -> list[dict]:
        if not log.is_file():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    make.entries = entries
    return make


def _run(run: TrainingRun, timeout: float = PATIENCE) -> list[RunSnapshot]:
    snapshots = []
    deadline = time.monotonic() + timeout
    while not run.is_finished:
        assert time.monotonic() < deadline, snapshots[-1].status if snapshots else "no tick"
        snapshots.append(run.tick())
        time.sleep(0.01)
    snapshots.append(run.tick())
    return snapshots


def _intervals(entries: list[dict]) -> dict[str, tuple[float, float, str | None]]:
    """Step (args[0..3] joined) -> (start, end, CUDA_VISIBLE_DEVICES)."""
    times: dict[str, list] = {}
    for entry in entries:
        name = " ".join(entry["args"][:4]) if entry["args"][0] == "train" else entry["args"][0]
        times.setdefault(name, [None, None, entry["gpu"]])[entry["what"] == "end"] = entry["t"]
    return {k: tuple(v) for k, v in times.items()}


def test_steps_run_one_after_another_with_live_progress(tmp_path: Path, fake) -> None:
    steps = plan_steps(_request(), tmp_path / "res", tmp_path / "pre")
    run = fake(steps, FAKE_EPOCH_S="0.3")
    snapshots = _run(run)
    final = snapshots[-1]
    assert [s.state for s in final.steps] == ["done"] * 4
    assert final.finished
    assert final.failed_message is None
    assert final.status == "Finished: 4 steps done"
    order = [" ".join(e["args"][:4]) for e in fake.entries() if e["what"] == "start"]
    assert order == [
        f"plan_and_preprocess -d {DATASET} -c",
        f"train {DATASET} 3d_fullres 0",
        f"train {DATASET} 3d_fullres 1",
        f"find_best_configuration {DATASET} -c 3d_fullres",
    ]
    spans = sorted(_intervals(fake.entries()).values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # never overlapping
    assert final.step("plan").plan_progress.done == 2
    progress = final.step("train 3d_fullres 1").fold_progress
    assert (progress.phase, progress.epochs_done, progress.epochs) == ("finished", 2, 2)
    assert (progress.pseudo_dice, progress.mean_fg_dice, progress.ema_fg_dice) == (
        (0.5, 0.7),
        0.6,
        0.2,
    )
    assert final.step("train 3d_fullres 1").last_line == "Epoch 1"
    live = [s.step("train 3d_fullres 0") for s in snapshots if s.running]
    midway = [s for s in live if s.fold_progress and s.fold_progress.epochs_done == 1]
    assert midway
    assert midway[0].fold_progress.eta_seconds == pytest.approx(1.5)
    assert "epoch 1/2" in midway[0].text()
    assert any("Train 3d_fullres fold 0" in s.status for s in snapshots)
    assert fold_status(tmp_path / "res", DATASET, "3d_fullres", 1).state == "done"


def test_two_gpus_train_two_folds_at_a_time(tmp_path: Path, fake) -> None:
    request = _request(folds=(0, 1, 2), gpus=(0, 1), run_find_best=False)
    steps = plan_steps(request, tmp_path / "res", tmp_path / "pre")
    run = fake(steps, gpus=(0, 1), FAKE_EPOCH_S="0.25")
    snapshots = _run(run)
    assert [s.state for s in snapshots[-1].steps] == ["done"] * 4
    assert snapshots[-1].step("plan").gpu is None  # only train steps take a GPU
    spans = _intervals(fake.entries())
    first, second, third = (spans[f"train {DATASET} 3d_fullres {k}"] for k in range(3))
    assert first[0] < second[1]
    assert second[0] < first[1]
    assert {first[2], second[2]} == {"0", "1"}
    assert third[0] >= min(first[1], second[1])  # fold 2 waited for a free GPU
    assert max(len(s.running) for s in snapshots) == 2
    assert {s.gpu for s in snapshots[-1].steps[1:]} == {0, 1}


def test_a_failed_step_stops_the_run_with_its_stderr(tmp_path: Path, fake) -> None:
    steps = plan_steps(_request(), tmp_path / "res", tmp_path / "pre")
    run = fake(steps, FAKE_FAIL="3d_fullres 0")
    final = _run(run)[-1]
    assert [s.state for s in final.steps] == ["done", "failed", "cancelled", "cancelled"]
    assert final.step("train 3d_fullres 0").returncode == 3
    message = run.failed_message
    assert message.startswith("Train 3d_fullres fold 0 failed (exit code 3):")
    assert message.endswith("RuntimeError: boom in 0")
    assert final.status == "Failed: Train 3d_fullres fold 0 failed (exit code 3):"
    assert len(fake.entries()) == 3  # plan start and end, fold 0 start: nothing else ran


def test_the_log_box_gets_every_output_line_once_with_its_step(tmp_path: Path, fake) -> None:
    steps = plan_steps(_request(folds=(0,), run_find_best=False), tmp_path / "r", tmp_path / "p")
    run = fake(steps, FAKE_FAIL="3d_fullres 0")
    taken: list[str] = []
    deadline = time.monotonic() + PATIENCE
    while not run.is_finished and time.monotonic() < deadline:
        run.tick()
        taken += run.take_log()
    run.tick()
    taken += run.take_log()
    assert run.take_log() == []  # taken lines are gone
    fold = "[Train 3d_fullres fold 0] "
    assert f"{fold}RuntimeError: boom in 0" in taken
    assert f"{fold}exit code 3" in taken
    assert taken.index(f"{fold}Traceback (most recent call last):") < taken.index(
        f"{fold}RuntimeError: boom in 0"
    )
    assert "[Plan and preprocess] exit code 0" in taken
    assert not any('"event"' in line for line in taken)  # JSON progress stays out of the log


def _script_step(tmp_path: Path, body: str) -> TrainingRun:
    script = tmp_path / "step.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    return TrainingRun(
        [EngineStep("verify", "Verify the dataset", ("verify",))],
        python=sys.executable,
        env_overrides={"AUTOSEG_RAW": "/data/raw"},
        command_builder=lambda python, args: [python, str(script), *args],
    )


def test_a_step_that_reports_on_stdout_fails_with_those_lines(tmp_path: Path) -> None:
    run = _script_step(
        tmp_path,
        """
        import sys
        print("imagesTr/case_001_0000.nii.gz: spacing differs from its label")
        print("1 error(s), 0 warning(s)")
        sys.exit(1)
        """,
    )
    _run(run)
    assert run.failed_message.endswith(
        "imagesTr/case_001_0000.nii.gz: spacing differs from its label\n1 error(s), 0 warning(s)"
    )


def test_children_inherit_this_environment_plus_the_overrides(tmp_path: Path) -> None:
    run = _script_step(
        tmp_path,
        """
        import os
        print(os.environ["AUTOSEG_RAW"], "PATH" in os.environ)
        """,
    )
    _run(run)
    assert run.failed_message is None
    assert run.output_lines("verify") == ["/data/raw True"]


@posix_only
def test_progress_that_cannot_be_read_fails_the_run_and_ends_the_step(tmp_path: Path, fake) -> None:
    steps = plan_steps(_request(folds=(0,)), tmp_path / "res", tmp_path / "pre")
    run = fake(steps, FAKE_BREAK_EVENTS="1")
    final = _run(run)[-1]
    assert final.step("train 3d_fullres 0").state == "failed"
    assert "cannot follow its progress" in run.failed_message
    process = run._slots[1].process  # the step's child: ended, not left sleeping for 60 s
    assert process is not None
    assert process.wait(timeout=15) is not None


def test_a_command_that_cannot_start_fails_the_run(tmp_path: Path) -> None:
    step = EngineStep("x", "Broken", ("train",))
    run = TrainingRun(
        [step], python=sys.executable, command_builder=lambda p, a: [str(tmp_path / "nope")]
    )
    final = run.tick()
    assert final.finished
    assert final.steps[0].state == "failed"
    assert run.failed_message.startswith("Broken could not start:")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


@posix_only
@pytest.mark.parametrize(("obeys", "code", "timeout"), [("1", 0, 60.0), ("0", 130, 1.0)])
def test_cancel_ends_child_and_grandchild_and_leaves_a_resumable_fold(
    tmp_path: Path, fake, obeys: str, code: int, timeout: float
) -> None:
    """The training is asked to stop through its STOP_REQUEST file (it saves and exits 0); one
    that does not answer within ``timeout`` gets SIGTERM (it saves and exits 130). Either way the
    whole process group ends, also a grandchild that ignores SIGTERM, and no request is left."""
    pid_file = tmp_path / "grandchild.pid"
    steps = plan_steps(_request(), tmp_path / "res", tmp_path / "pre")
    run = fake(steps, FAKE_HANG=str(pid_file), FAKE_OBEYS=obeys)
    deadline = time.monotonic() + PATIENCE
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline
        run.tick()
        time.sleep(0.02)
    grandchild = int(pid_file.read_text())
    assert _alive(grandchild)
    run.cancel(timeout=timeout)  # returns at once: helper threads do the waiting
    assert run.tick().status.startswith("Stopping: Train 3d_fullres fold 0")
    run.cancel(timeout=timeout, block=True)
    final = run.snapshot()
    assert final.finished
    assert run.cancelled
    assert run.failed_message is None
    assert [s.state for s in final.steps] == ["done", "cancelled", "cancelled", "cancelled"]
    assert final.steps[1].returncode == code  # the child saved and exited itself
    assert final.status == "Cancelled (1 of 4 steps done)"
    deadline = time.monotonic() + PATIENCE
    while _alive(grandchild) and time.monotonic() < deadline:  # killed; waiting to be reaped
        time.sleep(0.02)
    assert not _alive(grandchild)  # SIGKILL to the group ended it
    fold = tmp_path / "res" / DATASET / "AutoSegTrainer__AutoSegPlans__3d_fullres" / "fold_0"
    assert not (fold / "STOP_REQUEST").exists()  # no request is left for the next run
    assert fold_status(tmp_path / "res", DATASET, "3d_fullres", 0).state == "interrupted"
    assert "--c" in plan_steps(_request(), tmp_path / "res", tmp_path / "pre")[1].args


def test_a_training_stopped_from_elsewhere_ends_the_run_as_cancelled(tmp_path: Path, fake):
    steps = plan_steps(_request(), tmp_path / "res", tmp_path / "pre")
    run = fake(steps, FAKE_EPOCH_S="30")
    fold = tmp_path / "res" / DATASET / "AutoSegTrainer__AutoSegPlans__3d_fullres" / "fold_0"
    deadline = time.monotonic() + PATIENCE
    while not (fold / "events.jsonl").is_file():
        assert time.monotonic() < deadline
        run.tick()
        time.sleep(0.02)
    (fold / "STOP_REQUEST").write_text("{}")  # e.g. a user, or a Slicer session after a restart
    final = _run(run)[-1]
    assert [s.state for s in final.steps] == ["done", "cancelled", "cancelled", "cancelled"]
    assert final.steps[1].returncode == 0
    assert final.steps[1].fold_progress.phase == "interrupted"
    assert final.steps[1].fold_progress.message == "stopped, resumes at epoch 0"
    assert run.failed_message is None
    assert final.status.startswith("Cancelled")


def test_the_engines_own_error_is_the_failure_message(tmp_path: Path) -> None:
    """An out-of-memory error event says more than the exit code (which a launcher changes)."""
    fold = tmp_path / "fold_0"
    fold.mkdir()
    script = tmp_path / "oom.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            with open({str(fold / "events.jsonl")!r}, "a") as f:
                f.write(json.dumps({{"event": "start", "epochs": 5}}) + "\\n")
                f.write(json.dumps({{"event": "error", "kind": "out_of_memory",
                                    "message": "Training ran out of GPU memory. Fix: ..."}}) + "\\n")
            print("error: [PythonSlicer] exit abnormally - Report the problem.", file=sys.stderr)
            sys.exit(1)
            """
        ),
        encoding="utf-8",
    )
    step = EngineStep(
        "train", "Train 3d_fullres fold 0", ("train",), fold=("3d_fullres", 0), fold_dir=fold
    )
    run = TrainingRun(
        [step], python=sys.executable, command_builder=lambda python, args: [python, str(script)]
    )
    _run(run)
    assert run.failed_message.startswith(
        "Train 3d_fullres fold 0 failed: Training ran out of GPU memory. Fix: ..."
    )
    assert run.snapshot().status.startswith("Failed: Train 3d_fullres fold 0 failed: Training ran")


def test_nothing_to_do_finishes_at_once() -> None:
    run = TrainingRun([], python=sys.executable)
    snapshot = run.tick()
    assert snapshot.finished
    assert snapshot.status == "Nothing to do: all done"


# ---------------------------------------------------------------- the real engine


@pytest.mark.slow
def test_real_engine_plans_trains_and_selects(tmp_path: Path) -> None:
    from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset

    raw, pre, res = tmp_path / "raw", tmp_path / "pre", tmp_path / "res"
    spec = SyntheticSpec(shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0))
    make_synthetic_dataset(raw, dataset_id=8, name="Run", num_cases=6, spec=spec)
    request = _request(
        folds=(0,),
        device="cpu",
        epochs=1,
        iterations_per_epoch=2,
        extra_train_args=("--val-iterations", "1", "--num-workers", "0", "--amp", "off"),
    )
    steps = plan_steps(request, res, pre, raw_root=raw)
    assert _keys(steps) == ["plan", "train 3d_fullres 0", "find_best"]
    run = TrainingRun(steps, python=sys.executable, env_overrides={"OMP_NUM_THREADS": "2"})
    snapshots = _run(run, timeout=900)
    final = snapshots[-1]
    assert run.failed_message is None, run.failed_message
    assert [s.state for s in final.steps] == ["done"] * 3
    assert any(s.step("plan").plan_progress is not None for s in snapshots)
    progress = final.step("train 3d_fullres 0").fold_progress
    assert (progress.epochs_done, progress.epochs, progress.phase) == (1, 1, "finished")
    assert progress.train_loss is not None
    assert progress.epoch_time > 0
    assert progress.progress_png is not None
    assert progress.progress_png.is_file()
    assert progress.validation_dice is not None
    status = fold_status(res, DATASET, "3d_fullres", 0)
    assert (status.state, status.validated, status.epochs_done) == ("done", True, 1)
    assert preprocessing_done(pre, DATASET, ["3d_fullres"])
    assert _keys(plan_steps(request, res, pre)) == ["find_best"]  # only the selection is left
