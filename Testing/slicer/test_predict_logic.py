"""predict_logic: jobs run ``autoseg predict`` in a child process, report, cancel and clean up.

Most tests use a stand-in engine (a small script given as the Python executable) so that the job
plumbing is tested in well under a second per test; one test runs the real engine on a tiny
random-weight model and compares the result voxel for voxel with the command line.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from Testing.slicer import model_fixtures

from autoseg.errors import AutoSegError
from autoseg.inference.backends.base import BACKENDS
from AutoSegCoreLib.volume_io import VolumeError, write_input_volumes
from AutoSegPredictLib.predict_logic import (
    INPUT_REMOVED,
    AutoSegPredictLogic,
    PredictionCancelled,
    PredictionError,
    PredictionJob,
    PredictionUpdate,
    PredictOptions,
    default_input_volume,
    listed_input_volumes,
    predict_arguments,
)

LABELS = {"background": 0, "organ": 1, "lesion": 2}
FAKE_ENGINE = '''#!{python}
"""Stands in for `python -m autoseg predict`; FAKE_ENGINE_MODE says how it behaves."""
import json, os, sys, time
mode, args = os.environ.get("FAKE_ENGINE_MODE", "ok"), sys.argv[1:]
with open(os.environ["FAKE_ENGINE_ARGS"], "w") as handle:
    json.dump(args, handle)
if mode == "sleep":
    time.sleep(60)
if mode == "fail":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("autoseg predict: error: the model is broken", file=sys.stderr)
    sys.exit(3)
import SimpleITK as sitk
source, target = args[args.index("-i") + 1], args[args.index("-o") + 1]
print(json.dumps({{"event": "progress", "stage": "cases", "done": 0, "total": 1}}), flush=True)
print("predicting case", flush=True)
print("a warning", file=sys.stderr, flush=True)
image = sitk.ReadImage(os.path.join(source, "case_0000.nii.gz"))
os.makedirs(target, exist_ok=True)
if mode != "no_output":
    sitk.WriteImage(sitk.Cast(image > 0, sitk.sitkUInt8), os.path.join(target, "case.nii.gz"))
print(json.dumps({{"event": "progress", "stage": "cases", "done": 1, "total": 1}}), flush=True)
'''


def oblique_matrix() -> np.ndarray:
    """IJK-to-RAS: 30 degrees about S, k axis flipped (det < 0), anisotropic spacing."""
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]]) @ np.diag(
        [0.9, 1.1, 1.5]
    )
    matrix[:3, 3] = (-40.5, 20.25, 13.0)
    return matrix


def make_model(folder: Path, channels: int = 1) -> Path:
    """A model folder's files with empty checkpoints (enough for the stand-in engine)."""
    names = [f"CT{i}" for i in range(channels)]
    dataset = folder / "Dataset901_Tiny"
    return model_fixtures.make_model(dataset, folds=("0",), labels=LABELS, channels=names)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(logic with the stand-in engine, model folder, file the engine writes its arguments to)."""
    script = tmp_path / "fake_python"
    script.write_text(FAKE_ENGINE.format(python=sys.executable), encoding="utf-8")
    script.chmod(0o755)
    arguments = tmp_path / "engine_args.json"
    monkeypatch.setenv("FAKE_ENGINE_ARGS", str(arguments))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))  # to see leftovers
    (tmp_path / "temp").mkdir()
    return AutoSegPredictLogic(str(script)), make_model(tmp_path / "results"), arguments


def add_volume(name: str = "ct", seed: int = 0):
    rng = np.random.default_rng(seed)
    array = rng.normal(0.0, 1.0, size=(6, 7, 8)).astype(np.float32)
    return slicer.util.addVolumeFromArray(array, oblique_matrix(), name=name), array


def segmentation_nodes(scene) -> list:
    return [
        scene.GetNthNode(i)
        for i in range(scene.GetNumberOfNodes())
        if scene.GetNthNode(i).IsA("vtkMRMLSegmentationNode")
    ]


def wait_until_ended(job: PredictionJob, seconds: float = 30.0) -> list[PredictionUpdate]:
    """Poll like the module's timer does until the engine has ended."""
    updates: list[PredictionUpdate] = []
    deadline = time.monotonic() + seconds
    while job.is_running and time.monotonic() < deadline:
        updates += job.poll()
        time.sleep(0.02)
    return updates + job.poll()


def label_map(node, reference) -> np.ndarray:
    """The segmentation as one (K, J, I) label array on the reference grid."""
    segmentation = node.GetSegmentation()
    result = None
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference)
        value = segmentation.GetSegment(segment_id).GetLabelValue()
        result = mask.astype(np.int32) * value + (0 if result is None else result)
    return result


def test_logic_runs_the_engine_with_this_python_by_default() -> None:
    assert AutoSegPredictLogic().python_executable == sys.executable


def test_predict_arguments_follow_the_options(tmp_path: Path) -> None:
    options = PredictOptions(device="cpu", tta=False, fast=True, folds=(0, "all"), backend="torch")
    args = predict_arguments(tmp_path / "i", tmp_path / "o", tmp_path / "m", options)
    assert args == [
        *("predict", "-i", str(tmp_path / "i"), "-o", str(tmp_path / "o")),
        *("-m", str(tmp_path / "m"), "--progress", "json", "-device", "cpu"),
        *("--backend", "torch", "--disable_tta", "--fast", "-f", "0", "all"),
    ]
    default = predict_arguments(tmp_path, tmp_path, tmp_path, PredictOptions())
    assert "--disable_tta" not in default
    assert default[default.index("--backend") + 1] == "auto"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_engine_backend_is_accepted_and_passed_on(tmp_path: Path, backend: str) -> None:
    args = predict_arguments(tmp_path, tmp_path, tmp_path, PredictOptions(backend=backend))
    assert args[args.index("--backend") + 1] == backend


def test_an_unknown_backend_is_refused_before_any_file_is_written(scene, fake, tmp_path) -> None:
    logic, model, arguments = fake
    volume, _ = add_volume()
    with pytest.raises(AutoSegError, match=r"backend 'openvno' is unknown.*auto, torch, openvino"):
        logic.start_segmentation(volume, model, backend="openvno")
    assert list((tmp_path / "temp").iterdir()) == []
    assert not arguments.exists()  # no engine started


def test_a_job_reports_progress_and_imports_the_result(scene, fake) -> None:
    logic, model, arguments = fake
    volume, array = add_volume()
    job = logic.start_segmentation(volume, model, device="cpu", tta=False, fast=True, folds=[0])
    assert job.work_dir.is_dir()
    updates = wait_until_ended(job)
    progress = [u for u in updates if u.kind == "progress"]
    assert [(u.stage, u.done, u.total) for u in progress] == [("cases", 0, 1), ("cases", 1, 1)]
    assert progress[-1].fraction == 1.0
    assert progress[-1].text == "cases: 1/1"
    assert PredictionUpdate("text", "predicting case") in updates
    assert PredictionUpdate("stderr", "a warning") in updates
    node = job.finish()
    assert node.GetName() == "ct segmentation"
    assert node.GetSegmentation().GetSegment("organ").GetLabelValue() == 1
    np.testing.assert_array_equal(label_map(node, volume), (array > 0).astype(np.int32))
    assert job.finish() is node
    assert not job.work_dir.exists()
    assert set(job.log_lines) == {"predicting case", "a warning"}
    assert job.returncode == 0
    assert job.elapsed_seconds > 0
    args = json.loads(arguments.read_text(encoding="utf-8"))
    assert args[:3] == ["-m", "autoseg", "predict"]
    assert args[args.index("-m", 1) + 1] == str(model)
    assert args[args.index("-device") + 1] == "cpu"
    assert {"--disable_tta", "--fast"} <= set(args)
    assert args[args.index("-f") + 1 :][:1] == ["0"]


def test_a_failed_engine_is_an_error_with_its_last_lines(scene, fake) -> None:
    logic, model, _ = fake
    volume, _ = add_volume()
    job = logic.start_segmentation([volume], model, env_overrides={"FAKE_ENGINE_MODE": "fail"})
    wait_until_ended(job)
    with pytest.raises(PredictionError) as caught:
        job.finish()
    assert "failed with exit code 3" in str(caught.value)
    assert "autoseg predict: error: the model is broken" in str(caught.value)
    assert not job.work_dir.exists()
    assert segmentation_nodes(scene) == []


def test_an_engine_that_writes_nothing_is_an_error(scene, fake) -> None:
    logic, model, _ = fake
    volume, _ = add_volume()
    job = logic.start_segmentation(volume, model, env_overrides={"FAKE_ENGINE_MODE": "no_output"})
    with pytest.raises(PredictionError, match=r"wrote no case\.nii\.gz"):
        job.finish(timeout=30)
    assert not job.work_dir.exists()


def test_cancel_ends_the_job_and_removes_its_folder(scene, fake, tmp_path: Path) -> None:
    logic, model, _ = fake
    volume, _ = add_volume()
    job = logic.start_segmentation(volume, model, env_overrides={"FAKE_ENGINE_MODE": "sleep"})
    time.sleep(0.2)
    assert job.is_running
    job.cancel()
    assert not job.is_running
    assert job.cancelled
    assert job.returncode is not None
    assert not job.work_dir.exists()
    job.cancel()  # again: nothing happens
    with pytest.raises(PredictionCancelled):
        job.finish()
    assert segmentation_nodes(scene) == []
    assert list((tmp_path / "temp").iterdir()) == []


@pytest.mark.parametrize("how", ["scene closed", "volume deleted"])
def test_a_job_whose_input_leaves_the_scene_cancels_itself(scene, fake, how: str) -> None:
    """Closing the scene mid-prediction must not end in a failed import of a vanished volume."""
    logic, model, _ = fake
    volume, _ = add_volume()
    job = logic.start_segmentation(volume, model, env_overrides={"FAKE_ENGINE_MODE": "sleep"})
    assert job.poll() == []
    if how == "scene closed":
        scene.Clear(0)
    else:
        scene.RemoveNode(volume)
    updates = job.poll()
    assert updates[-1] == PredictionUpdate("text", INPUT_REMOVED)
    assert job.cancelled
    assert not job.is_running
    assert job.returncode is not None
    assert not job.work_dir.exists()
    with pytest.raises(PredictionCancelled, match="removed from the scene"):
        job.finish()
    assert segmentation_nodes(scene) == []


def test_finish_refuses_a_result_whose_input_left_the_scene(scene, fake) -> None:
    """The console API (finish without polling): the engine ends, the volume is gone."""
    logic, model, _ = fake
    volume, _ = add_volume()
    job = logic.start_segmentation(volume, model)
    scene.RemoveNode(volume)
    with pytest.raises(PredictionCancelled, match="removed from the scene"):
        job.finish(timeout=30)
    assert not job.work_dir.exists()
    assert segmentation_nodes(scene) == []


def test_the_default_input_is_the_first_volume_the_selector_lists(scene) -> None:
    """GetFirstNodeByClass would also return label maps, which the selector does not list."""
    label_map_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    assert scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is label_map_node
    assert default_input_volume(scene) is None
    hidden, _ = add_volume("hidden")
    hidden.SetHideFromEditors(True)
    first, _ = add_volume("first")
    second, _ = add_volume("second")
    assert listed_input_volumes(scene) == [first, second]
    assert default_input_volume(scene) is first


def test_a_job_that_takes_too_long_is_cancelled(scene, fake) -> None:
    logic, model, _ = fake
    volume, _ = add_volume()
    job = logic.start_segmentation(volume, model, env_overrides={"FAKE_ENGINE_MODE": "sleep"})
    with pytest.raises(PredictionError, match=r"did not finish within 0\.3 s"):
        job.finish(timeout=0.3)
    assert job.returncode is not None
    assert not job.work_dir.exists()


def test_a_dropped_job_ends_its_engine_and_removes_its_folder(scene, fake) -> None:
    logic, model, _ = fake
    volume, _ = add_volume()
    job = logic.start_segmentation(volume, model, env_overrides={"FAKE_ENGINE_MODE": "sleep"})
    folder, process = job.work_dir, job._process
    del job
    gc.collect()
    assert not folder.exists()
    assert process.returncode is not None


def test_wrong_channels_are_refused_before_anything_starts(scene, fake, tmp_path: Path) -> None:
    logic, _, _ = fake
    model = make_model(tmp_path / "two", channels=2)
    volume, _ = add_volume()
    with pytest.raises(VolumeError, match=r"needs 2 input volume\(s\) \(CT0, CT1\), but 1 were"):
        logic.start_segmentation(volume, model)
    other = slicer.util.addVolumeFromArray(np.zeros((2, 3, 4), np.float32), name="other")
    with pytest.raises(VolumeError, match="do not share one voxel grid"):
        logic.start_segmentation([volume, other], model)
    assert list((tmp_path / "temp").iterdir()) == []


def _backend_of(arguments: Path) -> str:
    """The --backend the stand-in engine was started with."""
    args = json.loads(arguments.read_text(encoding="utf-8"))
    return args[args.index("--backend") + 1]


def test_segment_blocks_and_never_replaces_a_node(scene, fake) -> None:
    logic, model, arguments = fake
    volume, _ = add_volume()
    first = logic.segment(volume, model, device="cpu")
    assert _backend_of(arguments) == "auto"
    second = logic.segment([volume], model, device="cpu", timeout=30, backend="openvino")
    assert _backend_of(arguments) == "openvino"  # the console API passes it on
    assert first.GetName() == "ct segmentation"
    assert second.GetName() not in ("", first.GetName())
    assert len(segmentation_nodes(scene)) == 2


def test_a_chosen_segmentation_receives_the_result(scene, fake) -> None:
    """Segments named like a label are replaced, others kept; no new node; a chosen node that
    left the scene while the engine ran gives a new node instead."""
    logic, model, _ = fake
    volume, array = add_volume()
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    mine.GetSegmentation().AddEmptySegment("organ", "organ")
    mine.GetSegmentation().AddEmptySegment("vessel", "vessel")
    assert logic.segment(volume, model, device="cpu", into=mine) is mine
    assert len(segmentation_nodes(scene)) == 1
    segmentation = mine.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(3)]
    assert names == ["organ", "vessel", "lesion"]
    organ = slicer.util.arrayFromSegmentBinaryLabelmap(mine, "organ", volume)
    np.testing.assert_array_equal(organ, (array > 0).astype(organ.dtype))
    job = logic.start_segmentation(volume, model, device="cpu", into=mine)
    scene.RemoveNode(mine)
    wait_until_ended(job)
    assert job.finish().GetName() == "ct segmentation"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3d_fullres model folder of the synthetic dataset with tiny random weights."""
    import torch

    from autoseg.checkpoint import FINAL, save_checkpoint
    from autoseg.network import build_network
    from autoseg.paths import DataRoots
    from autoseg.planning import PlannerOptions
    from autoseg.plans import Plans
    from autoseg.stages import DatasetFolders, fingerprint_dataset, plan_dataset
    from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_model")
    roots = DataRoots(root / "raw", root / "preprocessed", root / "results")
    spec = SyntheticSpec(shape=(8, 24, 24), spacing=(1.0, 1.0, 1.0))
    make_synthetic_dataset(roots.raw, dataset_id=901, name="Tiny", num_cases=2, spec=spec)
    folders = DatasetFolders.resolve(901, roots)
    fingerprint_dataset(folders, 1)
    plan_dataset(folders, PlannerOptions())
    source = roots.preprocessed / "Dataset901_Tiny"
    model = roots.results / "Dataset901_Tiny" / "AutoSegTrainer__AutoSegPlans__3d_fullres"
    model.mkdir(parents=True)
    plans = json.loads((source / "AutoSegPlans.json").read_text(encoding="utf-8"))
    for entry in plans["configurations"].values():
        stages = entry["architecture"]["n_stages"]
        entry["architecture"]["features_per_stage"] = [min(4 * 2**i, 8) for i in range(stages)]
    (model / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    (model / "dataset.json").write_bytes((source / "dataset.json").read_bytes())
    config = Plans.load(model / "plans.json").configuration("3d_fullres")
    torch.manual_seed(0)
    network = build_network(config.architecture, 1, 3, deep_supervision=True)
    state = {
        "network_weights": network.state_dict(),
        "configuration": "3d_fullres",
        "inference_allowed_mirroring_axes": [0, 1, 2],
    }
    save_checkpoint(model / "fold_0" / FINAL, state)
    return model


@pytest.mark.slow
def test_the_real_engine_gives_what_the_command_line_gives(
    scene, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from autoseg.cli import main

    rng = np.random.default_rng(3)
    array = rng.normal(40.0, 20.0, size=(10, 20, 22)).astype(np.float32)
    array[3:7, 6:14, 5:15] += 120.0  # something organ-like for the network to react to
    volume = slicer.util.addVolumeFromArray(array, oblique_matrix(), name="ct")
    node = AutoSegPredictLogic().segment(volume, tiny_model.parent, device="cpu", tta=False)
    assert [node.GetSegmentation().GetNthSegment(i).GetName() for i in range(2)] == [
        "organ",
        "lesion",
    ]
    write_input_volumes([volume], tmp_path / "in")
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(tiny_model)]
    assert main(["predict", *argv, "-device", "cpu", "--disable_tta", "--progress", "none"]) == 0
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "case.nii.gz")))
    assert len(np.unique(expected)) > 1  # a prediction with content, not all background
    np.testing.assert_array_equal(label_map(node, volume), expected)
    capsys.readouterr()
