"""Cancel through a launcher that forwards no signals (PythonSlicer): the training still saves.

``launcher_standin.py`` behaves like CTKAppLauncher towards its child. The runner asks the engine
to stop through the fold's STOP_REQUEST file, which no launcher can swallow; the engine finishes
its iteration, writes checkpoint_latest.pth, a ``stopped`` event and exits 0, and the launcher
passes that 0 on. A bare SIGTERM would end the launcher at once; the runner then waits for the
whole process group, so the real Python is not killed while it saves.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autoseg.paths import DataRoots
from autoseg.planning import PlannerOptions
from autoseg.results_layout import LATEST_CHECKPOINT
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)
from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset
from autoseg.training.fold_lock import LOCK_FILE
from autoseg.training.stop_request import STOP_REQUEST_FILE
from AutoSegCoreLib.process_runner import EngineProcess
from AutoSegTrainLib.fold_status import fold_status
from AutoSegTrainLib.training_runs import TrainingRequest, TrainingRun, plan_steps

LAUNCHER = Path(__file__).with_name("launcher_standin.py")
DATASET = "Dataset909_Launch"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a process group")


def _through_launcher(python: str, args: list[str]) -> list[str]:
    """What ``PythonSlicer -m autoseg ARGS`` is: a launcher whose child is the real Python."""
    return [sys.executable, str(LAUNCHER), python, "-m", "autoseg", *args]


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory: pytest.TempPathFactory) -> DataRoots:
    root = tmp_path_factory.mktemp("launch")
    roots = DataRoots(root / "raw", root / "preprocessed", root / "results")
    spec = SyntheticSpec(shape=(8, 24, 24), spacing=(1.0, 1.0, 1.0))
    make_synthetic_dataset(roots.raw, dataset_id=909, name="Launch", num_cases=5, spec=spec)
    folders = DatasetFolders.resolve(909, roots)
    fingerprint_dataset(folders, 1)
    plans = plan_dataset(folders, PlannerOptions())
    preprocess_configurations(folders, plans.plans_name, ["3d_fullres"], 1)
    return roots


def _events(fold: Path) -> list[dict]:
    if not (fold / "events.jsonl").is_file():
        return []
    return [json.loads(line) for line in (fold / "events.jsonl").read_text().splitlines()]


def test_cancel_through_the_launcher_saves_a_checkpoint_and_exits_cleanly(tiny_roots) -> None:
    request = TrainingRequest(
        dataset=DATASET,
        configurations=("3d_fullres",),
        folds=(0,),
        device="cpu",
        epochs=1000,  # it is cancelled long before
        iterations_per_epoch=2,
        run_find_best=False,
        extra_train_args=("--val-iterations", "1", "--num-workers", "0", "--amp", "off"),
    )
    steps = plan_steps(request, tiny_roots.results, tiny_roots.preprocessed)
    assert [step.key for step in steps] == ["train 3d_fullres 0"]
    fold = steps[0].fold_dir
    run = TrainingRun(
        steps,
        python=sys.executable,
        env_overrides={"OMP_NUM_THREADS": "1"},
        command_builder=_through_launcher,
    )
    deadline = time.monotonic() + 300
    while not any(e["event"] == "epoch" for e in _events(fold)):  # inside the training loop
        snapshot = run.tick()
        assert not snapshot.finished, run.failed_message
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.cancel(timeout=120, block=True)
    step = run.snapshot().steps[0]
    assert (step.state, step.returncode) == ("cancelled", 0)  # the engine's own clean exit
    assert run.failed_message is None
    kinds = [e["event"] for e in _events(fold)]
    assert "stopping" in kinds  # acknowledged as soon as the request was seen
    stopped = _events(fold)[-1]
    assert (stopped["event"], stopped["reason"], stopped["phase"]) == (
        "stopped",
        "stop request",
        "training",
    )
    assert stopped["checkpoint"] == str(fold / LATEST_CHECKPOINT)
    assert (fold / LATEST_CHECKPOINT).is_file()
    assert not (fold / LOCK_FILE).exists()
    assert not (fold / STOP_REQUEST_FILE).exists()
    status = fold_status(tiny_roots.results, DATASET, "3d_fullres", 0)
    assert status.state == "interrupted"
    assert status.progress.message == f"stopped, resumes at epoch {stopped['next_epoch']}"
    assert "--c" in plan_steps(request, tiny_roots.results, tiny_roots.preprocessed)[0].args


# An engine stand-in that needs a while to save after SIGTERM, as a training does.
SLOW_SAVER = """
    import signal, sys, time
    def save(*_):
        time.sleep(1.0)
        open(sys.argv[1], "w").close()
        sys.exit(130)
    signal.signal(signal.SIGTERM, save)
    print("ready", flush=True)
    time.sleep(60)
"""


@posix_only
def test_signals_wait_for_the_real_python_behind_the_launcher(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    engine = [sys.executable, "-c", textwrap.dedent(SLOW_SAVER), str(saved)]
    process = EngineProcess([sys.executable, str(LAUNCHER), *engine])
    deadline = time.monotonic() + 60
    while not any(e.kind == "text" for e in process.poll_events()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.cancel(timeout=30)  # no stop folder: SIGTERM to the group at once
    assert saved.is_file()  # the launcher died at once, yet nothing was killed while saving


@posix_only
def test_the_launcher_turns_a_crash_into_exit_code_one(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    process = EngineProcess([sys.executable, str(LAUNCHER), *crash])
    events = process.collect_until_exit(timeout=60)
    assert events[-1].payload == 1
    assert any("exit abnormally" in e.payload for e in events if e.kind == "stderr")
