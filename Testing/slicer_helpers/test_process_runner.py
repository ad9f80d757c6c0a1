"""The engine process runner with real child processes (no mocks of subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from patience import PATIENCE, wait_for

import autoseg
from autoseg.training.stop_request import STOP_REQUEST_FILE
from AutoSegCoreLib import process_runner, process_tree
from AutoSegCoreLib.process_runner import (
    EngineProcess,
    ProcessEvent,
    default_python,
    engine_command,
    engine_environment,
    engine_search_path,
    failure_message,
    follow_jsonl,
    parse_stdout_line,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="process groups and signals")


def _python(script: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script)]


def _alive(pid: int) -> bool:
    """A pid that exists and is not a zombie (an orphan may wait unreaped in a container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with_state = stat.read_text().rsplit(")", 1)[-1].split()
        return with_state[0] != "Z"
    return True


def test_events_json_text_stderr_and_exit_in_order() -> None:
    script = """
        import json, sys
        for k in range(3):
            print(json.dumps({"event": "progress", "stage": "s", "done": k, "total": 3}))
        print("plain text")
        print("[1, 2]")
        print("{not json")
        sys.stderr.write("warn 1\\nwarn 2\\n")
        sys.exit(3)
    """
    process = EngineProcess(_python(script))
    events = process.collect_until_exit(timeout=PATIENCE)
    assert events[-1] == ProcessEvent("exit", 3)
    stdout = [e for e in events if e.kind in {"json", "text"}]
    assert [e.payload["done"] for e in stdout[:3]] == [0, 1, 2]
    assert all(e.kind == "json" for e in stdout[:3])
    assert stdout[3:] == [
        ProcessEvent("text", "plain text"),
        ProcessEvent("text", "[1, 2]"),
        ProcessEvent("text", "{not json"),
    ]
    assert [e.payload for e in events if e.kind == "stderr"] == ["warn 1", "warn 2"]
    assert process.returncode == 3
    assert not process.is_running
    assert process.poll_events() == []


def test_poll_events_never_blocks_and_drains_everything(tmp_path: Path) -> None:
    """The child waits for the test between its two lines, so a poll that blocked until more
    output came would never return: the poll runs on a thread that must finish while the child
    still waits (no wall-clock limit is asserted)."""
    go = tmp_path / "go"
    script = f"""
        import pathlib, time
        print("first", flush=True)
        while not pathlib.Path({str(go)!r}).exists():
            time.sleep(0.01)
        print("second")
    """
    process = EngineProcess(_python(script))
    seen: list[ProcessEvent] = []
    assert wait_for(lambda: seen.extend(process.poll_events()) or bool(seen))
    assert seen == [ProcessEvent("text", "first")]
    polled: list[list[ProcessEvent]] = []
    poller = threading.Thread(target=lambda: polled.append(process.poll_events()), daemon=True)
    poller.start()
    poller.join(PATIENCE)
    assert polled == [[]], "poll_events waited for output instead of returning"
    go.touch()

    def exited() -> bool:
        seen.extend(process.poll_events())
        return seen[-1].kind == "exit"

    assert wait_for(exited)
    assert seen == [
        ProcessEvent("text", "first"),
        ProcessEvent("text", "second"),
        ProcessEvent("exit", 0),
    ]
    assert process.collect_until_exit(timeout=0.1) == []


@posix_only
def test_cancel_ends_child_and_grandchild(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"""
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(grandchild.pid))
        print("ready", flush=True)
        time.sleep(60)
    """
    process = EngineProcess(_python(script))
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text() != "")
    grandchild = int(pid_file.read_text())
    assert _alive(process.pid)
    assert _alive(grandchild)
    code = process.cancel(timeout=2)
    assert code == -signal.SIGTERM
    assert not process.is_running
    assert wait_for(lambda: not _alive(grandchild))
    events = process.collect_until_exit(timeout=PATIENCE)
    assert ProcessEvent("text", "ready") in events
    assert events[-1] == ProcessEvent("exit", -signal.SIGTERM)


@posix_only
def test_cancel_kills_a_child_that_ignores_sigterm() -> None:
    script = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    process = EngineProcess(_python(script))
    seen: list[ProcessEvent] = []
    assert wait_for(lambda: seen.extend(process.poll_events()) or bool(seen))
    assert process.cancel(timeout=0.3) == -signal.SIGKILL
    assert process.cancel(timeout=0.1) == -signal.SIGKILL  # a second cancel is harmless


def test_environment_overrides_reach_the_child() -> None:
    env = engine_environment(
        {"AUTOSEG_TEST_VALUE": "é-ü", "AUTOSEG_REMOVED": None},
        base={**os.environ, "AUTOSEG_REMOVED": "x"},
    )
    assert "AUTOSEG_REMOVED" not in env
    script = """
        import json, os
        keys = ["AUTOSEG_TEST_VALUE", "AUTOSEG_REMOVED", "PYTHONUNBUFFERED"]
        print(json.dumps({k: os.environ.get(k) for k in keys}))
    """
    process = EngineProcess(_python(script), env=env)
    events = process.collect_until_exit(timeout=PATIENCE)
    assert events[0] == ProcessEvent(
        "json",
        {"AUTOSEG_TEST_VALUE": "é-ü", "AUTOSEG_REMOVED": None, "PYTHONUNBUFFERED": "1"},
    )


def test_real_engine_version() -> None:
    assert engine_command("py", ["train", 3]) == ["py", "-m", "autoseg", "train", "3"]
    process = EngineProcess.for_engine(sys.executable, ["--version"])
    events = process.collect_until_exit(timeout=PATIENCE)
    assert events[-1] == ProcessEvent("exit", 0)
    lines = [e.payload for e in events if e.kind == "text"]
    assert lines == [f"autoseg {autoseg.__version__}"]


def test_parse_stdout_line() -> None:
    assert parse_stdout_line('{"event": "end"}\r\n') == ProcessEvent("json", {"event": "end"})
    assert parse_stdout_line("  done \n") == ProcessEvent("text", "  done ")
    assert parse_stdout_line('"string"\n') == ProcessEvent("text", '"string"')


def test_follow_jsonl_keeps_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    assert follow_jsonl(path, 0) == ([], 0)
    first = json.dumps({"event": "start", "epochs": 2}) + "\n"
    half = json.dumps({"event": "epoch", "epoch": 0})
    path.write_text(first + "\n" + "garbage\n" + half[:10], encoding="utf-8")
    events, offset = follow_jsonl(path, 0)
    assert events == [{"event": "start", "epochs": 2}]
    assert offset == len(first) + 1 + len("garbage\n")
    assert follow_jsonl(path, offset) == ([], offset)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(half[10:] + "\n")
    events, offset2 = follow_jsonl(path, offset)
    assert events == [{"event": "epoch", "epoch": 0}]
    assert offset2 == path.stat().st_size


def test_follow_jsonl_restarts_when_file_was_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "start"}\n' * 3, encoding="utf-8")
    _, offset = follow_jsonl(path, 0)
    path.write_text('{"event": "end"}\n', encoding="utf-8")
    events, new_offset = follow_jsonl(path, offset)
    assert events == [{"event": "end"}]
    assert new_offset == path.stat().st_size


def test_default_python_prefers_python_slicer(tmp_path: Path) -> None:
    python = tmp_path / "python-real"
    python.write_text("", encoding="utf-8")
    assert default_python(str(python)) == str(python)
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    (tmp_path / name).write_text("", encoding="utf-8")
    assert default_python(str(python)) == str(tmp_path / name)


def test_the_child_finds_the_engine_this_process_would_import(tmp_path: Path) -> None:
    env = engine_environment(base={"PATH": os.environ.get("PATH", "")})
    folder = engine_search_path()
    assert folder is not None
    assert env["PYTHONPATH"].split(os.pathsep)[0] == folder
    script = "import autoseg, pathlib; print(pathlib.Path(autoseg.__file__).parent.parent)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(result.stdout.strip()) == Path(folder)


# ---------------------------------------------------------------- cooperative stop

# Behaves like the engine towards the stop-request file: drops a leftover one when it starts
# (after ``START_DELAY`` s), then polls it and, when asked, "saves" and exits 0.
STOPPABLE = """
    import os, sys, time
    folder, delay, obey = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "obey"
    request = os.path.join(folder, "STOP_REQUEST")
    time.sleep(delay)
    if os.path.exists(request):
        os.remove(request)
    print("started", flush=True)
    while True:
        if obey and os.path.exists(request):
            open(os.path.join(folder, "checkpoint_latest.pth"), "w").close()
            os.remove(request)
            sys.exit(0)
        time.sleep(0.02)
"""


def _stoppable(folder: Path, delay: float = 0.0, obey: bool = True) -> EngineProcess:
    command = [*_python(STOPPABLE), str(folder), str(delay), "obey" if obey else "ignore"]
    return EngineProcess(command, stop_folder=folder)


def test_cancel_asks_through_the_stop_request_file_first(tmp_path: Path) -> None:
    process = _stoppable(tmp_path)
    seen: list[ProcessEvent] = []
    assert wait_for(lambda: seen.extend(process.poll_events()) or bool(seen), timeout=30)
    assert process.cancel(timeout=30) == 0  # it saved and exited by itself
    assert (tmp_path / "checkpoint_latest.pth").is_file()
    assert not (tmp_path / STOP_REQUEST_FILE).exists()  # no request is left for the next run


def test_a_request_the_engine_drops_at_its_start_is_asked_again(tmp_path: Path) -> None:
    process = _stoppable(tmp_path, delay=0.5)
    assert process.request_stop()  # before the engine started: it deletes this one
    assert (tmp_path / STOP_REQUEST_FILE).is_file()
    assert process.cancel(timeout=30) == 0
    assert (tmp_path / "checkpoint_latest.pth").is_file()


def test_a_request_needs_an_existing_folder_and_a_running_process(tmp_path: Path) -> None:
    missing = tmp_path / "fold_0"
    process = _stoppable(missing, delay=30)
    assert not process.request_stop()  # the engine makes its folder; nothing is created for it
    assert not missing.exists()
    process.cancel(timeout=0.2)
    assert not process.request_stop()
    assert not EngineProcess(_python("pass")).request_stop()  # no stop folder


@posix_only
def test_signals_follow_when_the_request_is_not_honoured(tmp_path: Path) -> None:
    process = _stoppable(tmp_path, obey=False)
    seen: list[ProcessEvent] = []
    assert wait_for(lambda: seen.extend(process.poll_events()) or bool(seen), timeout=30)
    assert process.cancel(timeout=0.5) == -signal.SIGTERM
    assert not (tmp_path / "checkpoint_latest.pth").exists()
    assert not (tmp_path / STOP_REQUEST_FILE).exists()


def test_the_engines_error_event_tells_why_it_failed() -> None:
    events = [
        ProcessEvent("json", {"event": "progress", "done": 1, "total": 2}),
        ProcessEvent("json", {"event": "error", "kind": "out_of_memory", "message": "ran out"}),
        ProcessEvent("stderr", "autoseg predict: error: ran out"),
        ProcessEvent("exit", 1),
    ]
    assert failure_message(events) == "ran out"
    assert failure_message(events[:1]) is None


# ---------------------------------------------------------------- Windows flags


def test_children_open_no_console_window_on_windows(monkeypatch) -> None:
    monkeypatch.setattr(process_tree, "IS_WINDOWS", True)
    assert process_tree.windowless() == {"creationflags": process_tree.CREATE_NO_WINDOW}
    started: list[dict] = []

    def fake_popen(command, **kwargs):
        started.append(kwargs)
        raise OSError("not really started")

    monkeypatch.setattr(process_runner.subprocess, "Popen", fake_popen)
    with pytest.raises(OSError, match="not really"):
        EngineProcess(["PythonSlicer.exe", "-m", "autoseg", "--version"])
    flags = process_tree.CREATE_NO_WINDOW | process_tree.CREATE_NEW_PROCESS_GROUP
    assert started[0]["creationflags"] == flags
    assert "start_new_session" not in started[0]
    ran: list[dict] = []

    class Ended:
        pid = 4242

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(process_tree.subprocess, "run", lambda cmd, **kw: ran.append(kw))
    process_tree.cancel_tree(Ended(), 0.0)  # taskkill of the tree: windowless too
    assert ran[0]["creationflags"] == process_tree.CREATE_NO_WINDOW
    monkeypatch.setattr(process_tree, "IS_WINDOWS", False)
    assert process_tree.windowless() == {}
    assert process_tree.new_group_kwargs() == {"start_new_session": True}
