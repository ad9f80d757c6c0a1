"""Segment volumes with a trained model: write the inputs, run ``autoseg predict``, import.

The engine runs as a child process (``PythonSlicer -m autoseg predict``, see
AutoSegCoreLib.process_runner): torch never loads in Slicer's process, Slicer stays responsive,
and cancelling ends the whole process tree. A ``PredictionJob`` is what the module polls from a
timer; ``AutoSegPredictLogic.segment`` is the blocking console API built on it::

    AutoSegPredictLogic().segment(volumeNode, "/results/Dataset004_Hippocampus", device="cpu")
    AutoSegPredictLogic().segment(volumeNode, modelFolder, backend="openvino")  # CPU runtime

Every job works in its own temporary folder (inputs, outputs, nothing else) that is removed in
every outcome: success, failure, cancel, and a job that is dropped without being finished. A job
whose input volume leaves the scene (the scene was closed, the volume deleted) cancels itself:
there is nothing left to put its result on.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import slicer

from autoseg.errors import AutoSegError
from autoseg.inference.backends.base import AUTO, check_backend
from AutoSegCoreLib.process_runner import EngineProcess, ProcessEvent
from AutoSegCoreLib.segmentation_import import import_label_file, import_label_file_into
from AutoSegCoreLib.volume_io import VolumeError, as_volume_list, write_input_volumes
from AutoSegPredictLib.model_catalog import ModelDescription, describe_model

CASE_ID = "case"
INPUT_FOLDER = "input"
OUTPUT_FOLDER = "output"
_KEPT_LINES = 40  # output lines kept for an error message
_SHOWN_LINES = 12
_CANCEL_TIMEOUT_S = 5.0
# The node class the input selectors list; subclasses (label maps, vectors...) are not images to
# segment (the selectors set showChildNodeTypes false).
INPUT_VOLUME_CLASS = "vtkMRMLScalarVolumeNode"
INPUT_REMOVED = (
    "The input volume was removed from the scene (was the scene closed?), so the "
    "segmentation was cancelled. Choose a volume and start it again."
)

UpdateKind = Literal["progress", "text", "stderr"]


class PredictionError(AutoSegError, RuntimeError):
    """The engine failed; the message carries its last error lines."""


class PredictionCancelled(PredictionError):
    """``finish()`` was called on a job that had been cancelled."""


@dataclass(frozen=True)
class PredictionUpdate:
    """One thing the running prediction reported.

    ``kind`` is "progress" (``stage``, ``done`` of ``total``), "text" (a line the engine printed)
    or "stderr" (a warning or error line). ``text`` is always a line fit for a status label.
    """

    kind: UpdateKind
    text: str
    stage: str = ""
    done: int = 0
    total: int = 0

    @property
    def fraction(self) -> float | None:
        """done / total for progress updates, else None."""
        return self.done / self.total if self.kind == "progress" and self.total > 0 else None


def _update_from(event: ProcessEvent) -> PredictionUpdate | None:
    payload: Any = event.payload
    if event.kind == "json":
        if payload.get("event") != "progress":
            return None
        stage, done, total = (
            str(payload.get("stage", "")),
            payload.get("done"),
            payload.get("total"),
        )
        if not isinstance(done, int) or not isinstance(total, int):
            return None
        return PredictionUpdate("progress", f"{stage}: {done}/{total}", stage, done, total)
    if event.kind == "exit" or not str(payload).strip():
        return None
    return PredictionUpdate("stderr" if event.kind == "stderr" else "text", str(payload))


@dataclass(frozen=True)
class PredictOptions:
    """How ``autoseg predict`` runs: device, mirroring TTA, fast mode, folds and the backend
    that runs the network (one of the engine's BACKENDS; a runtime must be installed, see
    AutoSegCoreLib.dependency_install.ensure_backend_runtime)."""

    device: str = "auto"
    tta: bool = True
    fast: bool = False
    folds: Sequence[int | str] | None = None
    backend: str = AUTO

    def __post_init__(self) -> None:
        check_backend(self.backend)  # a typo fails here, before any file is written


def predict_arguments(
    input_dir: Path, output_dir: Path, model_folder: Path, options: PredictOptions
) -> list[str]:
    """The ``autoseg predict`` arguments (after ``python -m autoseg``) for one job."""
    args = ["predict", "-i", str(input_dir), "-o", str(output_dir), "-m", str(model_folder)]
    args += ["--progress", "json", "-device", options.device, "--backend", options.backend]
    if not options.tta:
        args.append("--disable_tta")
    if options.fast:
        args.append("--fast")
    if options.folds:
        args += ["-f", *(str(fold) for fold in options.folds)]
    return args


@dataclass(frozen=True)
class _Target:
    """Where the job's result lands and how it becomes a segmentation node: a new node called
    ``name``, or ``into`` (an existing segmentation node) when given and still in the scene."""

    output_file: Path
    reference_volume: Any
    labels: Mapping[str, int]
    name: str
    into: Any = None

    def import_result(self) -> Any:
        if self.into is not None and self.into.GetScene() is not None:
            return import_label_file_into(
                self.output_file, self.reference_volume, self.labels, self.into
            )
        return import_label_file(
            self.output_file, self.reference_volume, self.labels, name=self.name
        )


def _abandon(process: EngineProcess, work_dir: Path) -> None:
    """End the process tree and remove the work folder (runs at most once per job)."""
    if process.returncode is None:
        process.cancel(_CANCEL_TIMEOUT_S)
    shutil.rmtree(work_dir, ignore_errors=True)


class PredictionJob:
    """A running ``autoseg predict``: poll it, cancel it, or finish it into a segmentation node."""

    def __init__(self, process: EngineProcess, work_dir: Path, target: _Target) -> None:
        self.work_dir = Path(work_dir)
        self.command = list(process.command)
        self.cancelled = False
        self._process = process
        self._target = target
        self._lines: deque[str] = deque(maxlen=_KEPT_LINES)
        self._errors: deque[str] = deque(maxlen=_KEPT_LINES)
        self._started = time.monotonic()
        self._ended: float | None = None
        self._result: Any = None
        self._cleanup = weakref.finalize(self, _abandon, process, self.work_dir)

    @property
    def is_running(self) -> bool:
        """True until the engine process has ended (or the job was cancelled)."""
        return not self.cancelled and self._process.is_running

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def elapsed_seconds(self) -> float:
        """Seconds since the start, up to the end once the job finished or was cancelled."""
        end = self._ended if self._ended is not None else time.monotonic()
        return end - self._started

    @property
    def log_lines(self) -> tuple[str, ...]:
        """The last lines the engine printed (stdout text and stderr), for a log view."""
        return tuple(self._lines)

    @property
    def input_removed(self) -> bool:
        """True once the input volume is no longer in a scene (scene closed, node deleted)."""
        return self._target.reference_volume.GetScene() is None

    def poll(self) -> list[PredictionUpdate]:
        """Progress and output lines that arrived since the last call; never blocks.

        A job whose input volume left the scene cancels itself and says so in a last update.
        """
        updates = self._digest(self._process.poll_events())
        if self.is_running and self.input_removed:
            self.cancel()
            updates.append(PredictionUpdate("text", INPUT_REMOVED))
        return updates

    def cancel(self) -> None:
        """End the engine's whole process tree and remove the work folder; safe to repeat."""
        if self._result is not None or self.cancelled:
            return
        self.cancelled = True
        self._process.cancel(_CANCEL_TIMEOUT_S)
        self._digest(self._process.poll_events())
        self._end()

    def finish(self, timeout: float | None = None) -> Any:
        """Wait for the engine and import its result (a new vtkMRMLSegmentationNode, or the
        chosen one, see ``start_segmentation``).

        Raises PredictionError (with the engine's last error lines) when it failed or did not
        end within ``timeout`` seconds (then it is cancelled), PredictionCancelled after
        ``cancel()``. The work folder is removed in every case.
        """
        if self._result is not None:
            return self._result
        if self.cancelled or self.input_removed:
            why = INPUT_REMOVED if self.input_removed else "The segmentation was cancelled."
            self.cancel()
            raise PredictionCancelled(why)
        try:
            self._digest(self._process.collect_until_exit(timeout))
            if self._process.returncode is None:
                self.cancel()
                raise PredictionError(
                    f"the segmentation did not finish within {timeout:g} s and was cancelled. "
                    "Allow more time, choose a GPU device, or use the fast mode."
                )
            self._check_success()
            if self.input_removed:  # while the engine ran (e.g. a console user closed the scene)
                raise PredictionCancelled(INPUT_REMOVED)
            self._result = self._target.import_result()
            return self._result
        finally:
            self._end()

    def _digest(self, events: list[ProcessEvent]) -> list[PredictionUpdate]:
        updates = [u for u in map(_update_from, events) if u is not None]
        for update in updates:
            if update.kind != "progress":
                self._lines.append(update.text)
            if update.kind == "stderr":
                self._errors.append(update.text)
        return updates

    def _check_success(self) -> None:
        code = self._process.returncode
        if code == 0 and self._target.output_file.is_file():
            return
        lines = list(self._errors or self._lines)[-_SHOWN_LINES:]
        if code is not None and code < 0:
            what = f"was killed by signal {-code} (out of memory?)"
        elif code == 0:
            what = f"wrote no {self._target.output_file.name}"
        else:
            what = f"failed with exit code {code}"
        details = "\n".join(lines) or "(it printed nothing)"
        raise PredictionError(f"autoseg predict {what}. Its last output:\n{details}")

    def _end(self) -> None:
        if self._ended is None:
            self._ended = time.monotonic()
        self._cleanup()


def _check_channels(volumes: list, model: ModelDescription) -> None:
    if len(volumes) != model.num_channels:
        raise VolumeError(
            f"the model {model.dataset_name} needs {model.num_channels} input volume(s) "
            f"({', '.join(model.channel_names)}), but {len(volumes)} were given. Choose one "
            "volume per channel, in this order."
        )


def listed_input_volumes(scene: slicer.vtkMRMLScene) -> list:
    """The volumes an input selector lists, in scene order: plain scalar volumes, not hidden."""
    nodes = (
        scene.GetNthNodeByClass(index, INPUT_VOLUME_CLASS)
        for index in range(scene.GetNumberOfNodesByClass(INPUT_VOLUME_CLASS))
    )
    return [
        node
        for node in nodes
        if node.GetClassName() == INPUT_VOLUME_CLASS and not node.GetHideFromEditors()
    ]


def default_input_volume(scene: slicer.vtkMRMLScene) -> Any:
    """The volume to preselect: the first one the selector lists (never a label map)."""
    listed = listed_input_volumes(scene)
    return listed[0] if listed else None


class AutoSegPredictLogic:
    """Segment volumes with a trained AutoSeg model (no Qt, no torch in this process).

    ``python_executable`` runs the engine; the Slicer module passes ``default_python()``
    (PythonSlicer), tests the current interpreter (the default).
    """

    def __init__(self, python_executable: str | None = None) -> None:
        self.python_executable = python_executable or sys.executable

    def start_segmentation(  # noqa: PLR0913 - the agreed API; options are keyword-only
        self,
        volume_nodes: Any,
        model_path: Path | str,
        *,
        device: str = "auto",
        tta: bool = True,
        fast: bool = False,
        folds: Sequence[int | str] | None = None,
        env_overrides: Mapping[str, str | None] | None = None,
        into: Any = None,
        backend: str = AUTO,
    ) -> PredictionJob:
        """Write the volumes (one per model channel, in order) and start ``autoseg predict``.

        ``into``: an existing segmentation node to write the result into (segments named like a
        label replaced, the others kept); None (default) makes a new segmentation node.
        ``backend``: what runs the network (``auto``, ``torch``, ``openvino``, ``onnxruntime``).
        """
        options = PredictOptions(device=device, tta=tta, fast=fast, folds=folds, backend=backend)
        volumes = as_volume_list(volume_nodes)
        model = describe_model(Path(model_path))
        _check_channels(volumes, model)
        work_dir = Path(tempfile.mkdtemp(prefix="autoseg-predict-"))
        try:
            inputs, outputs = work_dir / INPUT_FOLDER, work_dir / OUTPUT_FOLDER
            write_input_volumes(volumes, inputs, file_ending=model.file_ending, case_id=CASE_ID)
            args = predict_arguments(inputs, outputs, model.predict_folder, options)
            process = EngineProcess.for_engine(
                self.python_executable, args, env_overrides=env_overrides, cwd=work_dir
            )
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        output_file = outputs / f"{CASE_ID}{model.file_ending}"
        name = f"{volumes[0].GetName()} segmentation"
        target = _Target(output_file, volumes[0], model.labels, name, into)
        return PredictionJob(process, work_dir, target)

    def segment(  # noqa: PLR0913 - the console API; options are keyword-only
        self,
        volume_nodes: Any,
        model_path: Path | str,
        *,
        device: str = "auto",
        tta: bool = True,
        fast: bool = False,
        timeout: float | None = None,
        into: Any = None,
        backend: str = AUTO,
    ) -> slicer.vtkMRMLSegmentationNode:
        """Segment and wait (console API); one volume node or a list (one per channel); ``into``
        an existing segmentation node to write into, ``backend`` what runs the network (see
        ``start_segmentation``)."""
        job = self.start_segmentation(
            volume_nodes, model_path, device=device, tta=tta, fast=fast, into=into, backend=backend
        )
        try:
            return job.finish(timeout)
        except BaseException:  # Ctrl+C in the console must not leave the engine running
            job.cancel()
            raise
