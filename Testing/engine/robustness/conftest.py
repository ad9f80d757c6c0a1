"""Fault injection: break one thing, run every command that reads it, check that it fails cleanly.

A *clean refusal* is what a user of a medical tool must get for bad input: a non-zero exit code, a
line that names the broken file and says how to fix it (``Fix:``), no traceback, and nothing outside
the command's own output changed (every other file keeps its bytes and its modification time).

How to add a bad-input class (one row each)
-------------------------------------------
1. Write a builder ``def broken_thing(ws: Workspace) -> Path``: it creates valid material with the
   workspace (``ws.raw_dataset()``, ``ws.predict_inputs()``, ``ws.evaluation_folders()``, or your
   own files under ``ws.root``), breaks exactly one thing and returns the file the error must name.
2. Add ``BadInput("short-id", broken_thing, refused=("verify", ...))`` to a table (a module-level
   list) and parametrize a test over ``row_commands(TABLE)``::

       @pytest.mark.parametrize(("row", "command"), row_commands(TABLE))
       def test_bad_input_is_refused(row, command, workspace, capsys):
           bad = row.build(workspace)
           refuse(workspace, capsys, command, bad)

   ``refuse`` snapshots everything the command must not touch, runs the command in-process
   (``autoseg.cli.main``), and asserts the clean refusal; it returns the :class:`Outcome` for
   row-specific checks. ``warn`` is the same for commands that must succeed with a WARNING line.

Commands known to ``Workspace.argv`` (extend ``_ARGV`` for new ones): ``verify``,
``plan_and_preprocess`` (3d_fullres only, one process), ``preprocess`` and ``train`` (one tiny
epoch of fold ``all``; both need ``ws.planned_dataset()`` first), ``predict`` (the session's tiny
model on ``ws.predict_dir``), ``evaluate`` (``ws.reference_dir`` against ``ws.prediction_dir``). For a
command with other arguments, call ``refuse(ws, capsys, argv=[...], outputs=[...])`` directly.
Everything is tiny (8x12x10 voxels, two cases) so a row costs well under a second per command.
"""

from __future__ import annotations

import hashlib
import json
import math
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main
from autoseg.inference.backends.model_cache import CACHE_FOLDER_NAME
from autoseg.paths import DataRoots
from autoseg.planning import PlannerOptions
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)

DATASET_ID = 950
DATASET = "Dataset950_Robust"
SHAPE = (8, 12, 10)  # array-axis order; small enough that every command runs in well under a second
LABELS = {"background": 0, "a": 1, "b": 2}
MODEL_DATASET = "Dataset901_Tiny"  # the shared session fixture ``tiny_preprocessed``
_FAST_PREDICT = ["-device", "cpu", "--disable_tta", "--progress", "none"]

Snapshot = dict[str, tuple[int, int, str]]  # relative path -> (size, mtime_ns, sha256)


@dataclass(frozen=True)
class Outcome:
    """What one command run produced (``code`` is None when it raised instead of returning)."""

    argv: tuple[str, ...]
    code: int | None
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    def lines_naming(self, path: Path) -> list[str]:
        """Output lines that name ``path`` (its full path or its file name)."""
        return [line for line in self.lines if str(path) in line or Path(path).name in line]


@dataclass(frozen=True)
class BadInput:
    """One class of broken input: how to build it and which commands must refuse or warn.

    Attributes:
        name: short id shown in the test name.
        build: breaks something in the workspace; returns the file the error must name.
        refused: commands that must fail cleanly.
        warned: commands that must succeed but print a WARNING line naming the file.
        case_id: when set, ``plan_and_preprocess`` must store nothing of this case.
    """

    name: str
    build: Callable[[Workspace], Path]
    refused: tuple[str, ...] = ()
    warned: tuple[str, ...] = ()
    case_id: str | None = None
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


def row_commands(table: Iterable[BadInput]) -> list[object]:
    """``pytest.param(row, command)`` for every (row, command) pair, with readable ids."""
    params = []
    for row in table:
        for command in (*row.refused, *row.warned):
            params.append(pytest.param(row, command, id=f"{row.name}-{command}", marks=row.marks))
    return params


def write_volume(
    path: Path,
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] | None = None,
) -> Path:
    """Write an array (array-axis order, 2D or 3D) with spacing in the same order."""
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing([float(s) for s in spacing][::-1][: image.GetDimension()])
    if origin is not None:
        image.SetOrigin([float(o) for o in origin][: image.GetDimension()])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def truncate(path: Path, fraction: float = 0.9) -> Path:
    """Cut a file to ``fraction`` of its bytes, as an interrupted copy or download leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: max(1, math.floor(len(data) * fraction))])
    return Path(path)


def snapshot(roots: Iterable[Path], exclude: Iterable[Path] = ()) -> Snapshot:
    """Size, mtime and hash of every file under ``roots``, except under the ``exclude`` paths and
    the prediction backends' caches (``runtime_cache/`` beside a checkpoint: the engine's own
    files, converted networks it may write on any prediction and verifies before use)."""
    skipped = [Path(p).resolve() for p in exclude]
    state: Snapshot = {}
    for folder in (Path(r).resolve() for r in roots):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
            if not path.is_file() or any(path == s or s in path.parents for s in skipped):
                continue
            if CACHE_FOLDER_NAME in path.relative_to(folder).parts:
                continue
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path)] = (stat.st_size, stat.st_mtime_ns, digest)
    return state


def run_cli(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> Outcome:
    """Run ``autoseg`` in this process as the real command line would (warnings printed, not
    raised); an escaping exception becomes an Outcome with ``code=None`` and its traceback."""
    capsys.readouterr()  # drop what the builders printed
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        try:
            code: int | None = main(list(argv))
            crash = ""
        except SystemExit as exit_:  # argparse's usage errors
            code, crash = (exit_.code if isinstance(exit_.code, int) else 1), ""
        except Exception:
            code, crash = None, traceback.format_exc()
    out, err = capsys.readouterr()
    return Outcome(tuple(argv), code, out, err + crash)


def _describe(outcome: Outcome) -> str:
    return f"autoseg {' '.join(outcome.argv)}\n--- exit {outcome.code}\n{outcome.text}"


def assert_clean_refusal(outcome: Outcome, bad: Path) -> None:
    """Non-zero exit, no traceback, and a line naming ``bad`` that says how to fix it."""
    assert outcome.code is not None, f"crashed instead of refusing:\n{_describe(outcome)}"
    assert outcome.code != 0, f"accepted broken input {bad}:\n{_describe(outcome)}"
    assert "Traceback" not in outcome.text, _describe(outcome)
    naming = [
        line
        for line in outcome.lines_naming(bad)
        if "Fix:" in line and not line.startswith("WARNING")
    ]
    assert naming, f"no error line names {bad.name} with a fix:\n{_describe(outcome)}"


def assert_unchanged(before: Snapshot, after: Snapshot) -> None:
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files outside the command's output changed: {changed[:10]}"


class Workspace:
    """Folders of one test: a raw root, preprocessed and results roots, inputs and outputs."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root = Path(root)
        self.roots = DataRoots(self.root / "raw", self.root / "preprocessed", self.root / "results")
        self.model = model
        self.predict_dir = self.root / "predict_in"
        self.predict_out = self.root / "predict_out"
        self.reference_dir = self.root / "reference"
        self.prediction_dir = self.root / "prediction"
        self.summary_file = self.root / "evaluation" / "summary.json"

    # ---------------------------------------------------------------- valid material to break
    @property
    def dataset_dir(self) -> Path:
        return self.roots.raw / DATASET

    def raw_dataset(
        self, num_cases: int = 2, file_ending: str = ".nii.gz", channels: int = 1
    ) -> Path:
        """A valid raw dataset (``case_000``, ``case_001``, ...) of SHAPE-sized images."""
        rng = np.random.default_rng(0)
        for case in range(num_cases):
            for channel in range(channels):
                image = rng.normal(100.0, 10.0, size=SHAPE).astype(np.float32)
                write_volume(self.image_file(f"case_{case:03d}", channel, file_ending), image)
            write_volume(self.label_file(f"case_{case:03d}", file_ending), self.valid_label())
        self.write_dataset_json(
            {
                "channel_names": {str(c): f"MR{c}" for c in range(channels)},
                "labels": LABELS,
                "numTraining": num_cases,
                "file_ending": file_ending,
            }
        )
        return self.dataset_dir

    def planned_dataset(self, preprocess: bool = False, **dataset: Any) -> Path:
        """A valid raw dataset, fingerprinted and planned (and preprocessed for 3d_fullres), so
        that a row can break it afterwards for ``preprocess`` or ``train``."""
        self.raw_dataset(**dataset)
        folders = DatasetFolders.resolve(DATASET_ID, self.roots)
        fingerprint_dataset(folders, 1)
        plans = plan_dataset(folders, PlannerOptions())
        if preprocess:
            preprocess_configurations(folders, plans.plans_name, ["3d_fullres"], 1)
        return self.dataset_dir

    @staticmethod
    def valid_label() -> np.ndarray:
        """Label 1 and label 2 as two slabs inside a background border."""
        seg = np.zeros(SHAPE, dtype=np.uint8)
        seg[2:4, 2:-2, 2:-2] = 1
        seg[5:7, 2:-2, 2:-2] = 2
        return seg

    def image_file(self, case_id: str, channel: int = 0, file_ending: str = ".nii.gz") -> Path:
        return self.dataset_dir / "imagesTr" / f"{case_id}_{channel:04d}{file_ending}"

    def label_file(self, case_id: str, file_ending: str = ".nii.gz") -> Path:
        return self.dataset_dir / "labelsTr" / f"{case_id}{file_ending}"

    def dataset_json(self) -> dict[str, object]:
        return json.loads((self.dataset_dir / "dataset.json").read_text(encoding="utf-8"))

    def write_dataset_json(self, data: dict[str, object]) -> None:
        self.dataset_dir.mkdir(parents=True, exist_ok=True)
        (self.dataset_dir / "dataset.json").write_text(json.dumps(data), encoding="utf-8")

    def predict_inputs(self, num_cases: int = 1) -> Path:
        """Valid inputs for the session model (one channel, .nii.gz) in ``predict_dir``."""
        rng = np.random.default_rng(1)
        for case in range(num_cases):
            image = rng.normal(0.0, 100.0, size=(10, 20, 20)).astype(np.float32)
            write_volume(self.predict_dir / f"in_{case:03d}_0000.nii.gz", image)
        return self.predict_dir

    def evaluation_folders(self, num_cases: int = 1) -> Path:
        """Reference and prediction folders with matching labels, and a dataset.json (returned)."""
        for case in range(num_cases):
            write_volume(self.reference_dir / f"case_{case:03d}.nii.gz", self.valid_label())
            write_volume(self.prediction_dir / f"case_{case:03d}.nii.gz", self.valid_label())
        path = self.root / "evaluation_dataset.json"
        path.write_text(
            json.dumps(
                {
                    "channel_names": {"0": "MR"},
                    "labels": LABELS,
                    "numTraining": num_cases,
                    "file_ending": ".nii.gz",
                }
            ),
            encoding="utf-8",
        )
        return path

    # ---------------------------------------------------------------- commands
    def argv(self, command: str) -> list[str]:
        """The standard invocation of ``command`` on this workspace."""
        if command not in _ARGV:
            raise KeyError(f"unknown command {command!r}; add it to _ARGV in robustness/conftest")
        return _ARGV[command](self)

    def outputs(self, command: str) -> list[Path]:
        """What ``command`` may write (everything else must stay untouched)."""
        return {
            "plan_and_preprocess": [self.roots.preprocessed],
            "preprocess": [self.roots.preprocessed / DATASET],
            "train": [self.roots.results],
            "predict": [self.predict_out],
            "evaluate": [self.summary_file.parent],
        }.get(command, [])

    def protected(self) -> list[Path]:
        """Trees the unchanged-check covers: the workspace and the shared model."""
        return [self.root, self.model]


def _roots_args(ws: Workspace) -> list[str]:
    return [
        "--raw",
        str(ws.roots.raw),
        "--preprocessed",
        str(ws.roots.preprocessed),
        "--results",
        str(ws.roots.results),
        "--progress",
        "none",
    ]


_ARGV: dict[str, Callable[[Workspace], list[str]]] = {
    "verify": lambda ws: ["verify", "-d", str(DATASET_ID), "-np", "1", *_roots_args(ws)],
    "plan_and_preprocess": lambda ws: [
        "plan_and_preprocess",
        "-d",
        str(DATASET_ID),
        "-c",
        "3d_fullres",
        "-np",
        "1",
        "-npfp",
        "1",
        *_roots_args(ws),
    ],
    "preprocess": lambda ws: [
        "preprocess",
        *("-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1"),
        *_roots_args(ws),
    ],
    "train": lambda ws: [
        "train",
        *(str(DATASET_ID), "3d_fullres", "all", "--epochs", "1", "--iterations-per-epoch", "1"),
        *("--val-iterations", "1", "--num-workers", "0", "-device", "cpu", "--quiet"),
        *_roots_args(ws)[:-2],
    ],
    "predict": lambda ws: [
        "predict",
        "-i",
        str(ws.predict_dir),
        "-o",
        str(ws.predict_out),
        "-m",
        str(ws.model),
        *_FAST_PREDICT,
    ],
    "evaluate": lambda ws: [
        "evaluate",
        str(ws.reference_dir),
        str(ws.prediction_dir),
        "-djfile",
        str(ws.root / "evaluation_dataset.json"),
        "-o",
        str(ws.summary_file),
        "-np",
        "1",
    ],
}


def refuse(
    ws: Workspace,
    capsys: pytest.CaptureFixture[str],
    command: str | None = None,
    bad: Path | None = None,
    *,
    argv: Sequence[str] | None = None,
    outputs: Sequence[Path] = (),
) -> Outcome:
    """Run a command on broken input and assert the clean refusal (see the module docstring).

    Args:
        command: a command known to ``Workspace.argv``; or pass ``argv`` (and its ``outputs``).
        bad: the file the error must name.
    """
    assert bad is not None, "refuse() needs the broken file the error must name"
    argv = list(argv) if argv is not None else ws.argv(command or "")
    outputs = [*outputs, *(ws.outputs(command) if command else [])]
    before = snapshot(ws.protected(), exclude=outputs)
    outcome = run_cli(capsys, argv)
    assert_clean_refusal(outcome, bad)
    assert_unchanged(before, snapshot(ws.protected(), exclude=outputs))
    return outcome


def warn(ws: Workspace, capsys: pytest.CaptureFixture[str], command: str, bad: Path) -> Outcome:
    """Run a command that must succeed but print a WARNING line naming ``bad``."""
    outputs = ws.outputs(command)
    before = snapshot(ws.protected(), exclude=outputs)
    outcome = run_cli(capsys, ws.argv(command))
    assert outcome.code == 0, _describe(outcome)
    assert "Traceback" not in outcome.text, _describe(outcome)
    assert any("WARNING" in line for line in outcome.lines_naming(bad)), _describe(outcome)
    assert_unchanged(before, snapshot(ws.protected(), exclude=outputs))
    return outcome


def assert_case_not_stored(ws: Workspace, case_id: str) -> None:
    """Nothing of ``case_id`` (no array, no properties, no ground-truth copy) was stored."""
    stored = (
        [p for p in ws.roots.preprocessed.rglob(f"{case_id}*") if p.is_file()]
        if ws.roots.preprocessed.is_dir()
        else []
    )
    assert not stored, f"a refused case left files behind: {stored}"


# -------------------------------------------------------------------------------- fixtures
def _build_model(source: Path, results: Path) -> Path:
    """A 3d_fullres model folder with one fold of tiny random weights, as training writes it."""
    import torch  # only the predict rows need it

    from autoseg.checkpoint import FINAL, save_checkpoint
    from autoseg.network import build_network
    from autoseg.plans import Plans

    folder = results / MODEL_DATASET / "AutoSegTrainer__AutoSegPlans__3d_fullres"
    folder.mkdir(parents=True)
    plans = json.loads((source / "AutoSegPlans.json").read_text(encoding="utf-8"))
    for entry in plans["configurations"].values():
        entry["architecture"]["features_per_stage"] = [4, 8, 8, 8]
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    (folder / "dataset.json").write_bytes((source / "dataset.json").read_bytes())
    config = Plans.load(folder / "plans.json").configuration("3d_fullres")
    torch.manual_seed(0)
    network = build_network(config.architecture, 1, 3, deep_supervision=True)
    state = {
        "network_weights": network.state_dict(),
        "configuration": "3d_fullres",
        "inference_allowed_mirroring_axes": [0, 1, 2],
    }
    save_checkpoint(folder / "fold_0" / FINAL, state)
    return folder


@pytest.fixture(scope="session")
def robust_model(tiny_preprocessed: DataRoots, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight model (one CT channel, .nii.gz, labels 0-2), built once per session."""
    results = tmp_path_factory.mktemp("robust_model")
    return _build_model(tiny_preprocessed.preprocessed / MODEL_DATASET, results)


@pytest.fixture
def workspace(tmp_path: Path, request: pytest.FixtureRequest) -> Workspace:
    """The test's folders; the model is only built when a test asks for predict."""
    model = (
        request.getfixturevalue("robust_model") if _needs_model(request) else tmp_path / "no_model"
    )
    return Workspace(tmp_path / "ws", model)


def _needs_model(request: pytest.FixtureRequest) -> bool:
    callspec = getattr(request.node, "callspec", None)
    command = callspec.params.get("command") if callspec else None
    return command == "predict" or "robust_model" in request.fixturenames
