"""The Predict panel's Backend option, run with the strict stand-ins of test_module_widgets: the
engine's backend names, the choice remembered in the preferences and passed to the engine, and the
optional CPU runtime offered with consent when it is missing (a refusal starts nothing and leaves
auto and torch working)."""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import slicer
from Testing.slicer.synthetic_scenario import add_synthetic_case
from Testing.slicer.test_module_widgets import StubJob, app, click, tick

from autoseg.inference.backends.base import BACKENDS
from AutoSegCoreLib import dependency_install
from AutoSegCoreLib.preferences import KEYS
from AutoSegPredictLib.model_catalog import describe_model

__all__ = ["app"]  # the fixture, used by name

PREDICT = "AutoSegPredict"


def _ready_widget(app, scene, tmp_path: Path) -> tuple[typing.Any, list[dict]]:
    """The Predict widget with a model and a volume chosen; start_segmentation records options."""
    from Testing.slicer.model_fixtures import make_model

    widget = app.open(app.load(PREDICT).AutoSegPredictWidget)
    model = make_model(tmp_path / "results" / "Dataset901_Tiny", folds=("0",), channels=("CT",))
    widget.ui.modelPathLineEdit.currentPath = str(model)
    assert widget._model == describe_model(model)
    volume, segmentation = add_synthetic_case(scene, 0)
    widget.ui.inputVolumeSelector.setCurrentNode(volume)
    started: list[dict] = []

    def start(volumes: list, model_path: Path, **options: object) -> StubJob:
        started.append(options)
        return StubJob(segmentation)

    app.monkeypatch.setattr(widget.logic, "start_segmentation", start)
    return widget, started


def _choose(widget: typing.Any, backend: str) -> None:
    combo = widget.ui.backendComboBox
    combo.setCurrentIndex(combo.findData(backend))


def test_the_choices_are_the_engines_backends_and_auto_is_the_default(app) -> None:
    widget = app.open(app.load(PREDICT).AutoSegPredictWidget)
    combo = widget.ui.backendComboBox
    assert [data for _, data in combo._items] == list(BACKENDS)
    assert combo.currentData == "auto"
    assert "CPU only" in combo.toolTip  # the tooltip says what each backend is
    assert KEYS["backend"] not in app.settings  # showing the choice writes nothing


def test_the_chosen_backend_is_remembered_and_passed_to_the_engine(app, scene, tmp_path) -> None:
    checks: list[tuple] = []
    widget, started = _ready_widget(app, scene, tmp_path)
    backend_panel = sys.modules["AutoSegPredictLib.backend_panel"]
    app.monkeypatch.setattr(
        backend_panel, "ensure_backend_runtime", lambda *args: checks.append(args) or True
    )
    _choose(widget, "onnxruntime")
    assert app.settings[KEYS["backend"]] == "onnxruntime"
    assert widget.preferences.backend == "onnxruntime"
    click(widget.ui.segmentButton)
    assert checks == [("onnxruntime", PREDICT, None)]
    assert started[-1]["backend"] == "onnxruntime"
    tick(widget)
    tick(widget)  # the job ended

    again = app.open(app.load(PREDICT).AutoSegPredictWidget)  # e.g. the next Slicer session
    assert again.ui.backendComboBox.currentData == "onnxruntime"


def test_a_missing_runtime_is_offered_and_a_refusal_leaves_auto_working(
    app, scene, tmp_path
) -> None:
    widget, started = _ready_widget(app, scene, tmp_path)
    # Slicer's Python without the CPU runtimes (the engine's own packages are checked elsewhere).
    app.monkeypatch.setattr(dependency_install, "installed_version", lambda name: None)
    questions: list[str] = []

    def refuse(text: str, *args: object, **kwargs: object) -> bool:
        questions.append(text)
        return False

    app.monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", refuse)
    _choose(widget, "openvino")
    click(widget.ui.segmentButton)
    (question,) = questions
    assert question.startswith(f"{PREDICT}: backend openvino needs")
    assert "- openvino~=2026.4\n- onnx~=1.23" in question
    assert started == []  # nothing started: the engine would refuse a missing runtime
    ((kind, warning),) = app.dialogs
    assert kind == "warning"
    assert "Choose backend auto or torch" in warning
    assert widget.ui.segmentButton.enabled
    assert app.settings[KEYS["backend"]] == "openvino"  # the choice stays the user's

    for backend in ("auto", "torch"):  # they need no runtime: nothing asked, the job starts
        _choose(widget, backend)
        click(widget.ui.segmentButton)
        assert started[-1]["backend"] == backend
        widget.onCancel()
    assert len(questions) == 1
