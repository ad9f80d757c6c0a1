"""Which engine steps a training request needs, decided from data folders built here."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from autoseg.errors import AutoSegError
from autoseg.plans import (
    ArchitectureSpec,
    ConfigurationPlan,
    IntensityStats,
    Plans,
    PreprocessingSpec,
)
from AutoSegTrainLib.training_plan import (
    EngineStep,
    TrainingRequest,
    plan_steps,
    preprocessing_done,
    request_from_choices,
    step_keys,
)

DATASET = "Dataset008_Run"
CASES = ("case_000", "case_001")

# ---------------------------------------------------------------- data folders


def _configuration(name: str, data: str, previous: str | None = None) -> ConfigurationPlan:
    arch = ArchitectureSpec(
        "PlainConvUNet", (8, 16), ((3, 3, 3),) * 2, ((1, 1, 1), (2, 2, 2)), (1, 1), (1,)
    )
    prep = PreprocessingSpec((1.0, 1.0, 1.0), ("ZScore",), (False,))
    shape = (8, 8, 8)
    return ConfigurationPlan(
        name, data, shape, 2, shape, False, prep, arch, previous_stage=previous
    )


def _preprocessed(root: Path, configurations: dict[str, str | None], complete: bool = True) -> Path:
    """Plans with these configurations (name -> previous stage), gt labels and case files."""
    folder = root / DATASET
    folder.mkdir(parents=True)
    data_ids = {c: f"AutoSegPlans_{c.replace('cascade_', '')}" for c in configurations}
    Plans(
        dataset_name=DATASET,
        plans_name="AutoSegPlans",
        image_reader_writer="SimpleITKIO",
        transpose_forward=(0, 1, 2),
        transpose_backward=(0, 1, 2),
        original_median_spacing_after_transp=(1.0, 1.0, 1.0),
        original_median_shape_after_transp=(8.0, 8.0, 8.0),
        foreground_intensity_properties_per_channel={"0": IntensityStats(1, 1, 1, 0, 2, 0, 2)},
        configurations={c: _configuration(c, data_ids[c], p) for c, p in configurations.items()},
    ).save(folder / "AutoSegPlans.json")
    (folder / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz"}))
    (folder / "gt_segmentations").mkdir()
    for case in CASES:
        (folder / "gt_segmentations" / f"{case}.nii.gz").write_bytes(b"")
    for data_id in set(data_ids.values()):
        (folder / data_id).mkdir()
        for case in CASES[: None if complete else 1]:
            for suffix in (".json", ".npy", "_seg.npy", "_locations.npz"):
                (folder / data_id / f"{case}{suffix}").write_bytes(b"")
    return root


def _done_fold(results: Path, configuration: str, fold: int, *files: str) -> Path:
    folder = results / DATASET / f"AutoSegTrainer__AutoSegPlans__{configuration}" / f"fold_{fold}"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return folder


def _request(**changes) -> TrainingRequest:
    values = {"dataset": DATASET, "configurations": ("3d_fullres",), "folds": (0, 1)}
    return TrainingRequest(**{**values, **changes})


def _keys(steps: list[EngineStep]) -> list[str]:
    return [step.key for step in steps]


# ---------------------------------------------------------------- request and plan


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "Hippocampus"}, "not a dataset name"),
        ({"configurations": ()}, "No configuration"),
        ({"folds": ()}, "No fold"),
        ({"folds": ("x",)}, "fold 'x' is not valid"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"device": "cpu", "gpus": (0, 1)}, "use cuda"),
        ({"gpus": (1, 1)}, "different non-negative"),
        ({"epochs": 0}, "epochs is 0"),
    ],
)
def test_request_rejects_mistakes(changes: dict, message: str) -> None:
    with pytest.raises(AutoSegError, match=message):
        _request(**changes)


def test_request_normalises_folds() -> None:
    assert _request(folds=("0", 0, "all", 3)).folds == (0, "all", 3)


def test_fresh_dataset_plans_trains_every_fold_then_selects(tmp_path: Path) -> None:
    request = _request(configurations=("2d", "3d_fullres"), epochs=3, iterations_per_epoch=4)
    steps = plan_steps(request, tmp_path / "res", tmp_path / "pre", raw_root=tmp_path / "raw")
    assert _keys(steps) == [
        "plan",
        "train 2d 0",
        "train 2d 1",
        "train 3d_fullres 0",
        "train 3d_fullres 1",
        "find_best",
    ]
    roots = ("--raw", str(tmp_path / "raw"), "--preprocessed", str(tmp_path / "pre"))
    roots += ("--results", str(tmp_path / "res"))
    plan, train, best = steps[0], steps[3], steps[-1]
    assert plan.args == (
        *("plan_and_preprocess", "-d", DATASET, "-c", "2d", "3d_fullres", "--progress", "json"),
        *roots,
    )
    assert train.args == (
        *("train", DATASET, "3d_fullres", "0", "-device", "auto"),
        *("--epochs", "3", "--iterations-per-epoch", "4", "--npz"),
        *roots,
    )
    assert (train.fold, train.depends_on, train.label) == (
        ("3d_fullres", 0),
        ("plan",),
        "Train 3d_fullres fold 0",
    )
    assert (
        train.fold_dir
        == tmp_path / "res" / DATASET / "AutoSegTrainer__AutoSegPlans__3d_fullres" / "fold_0"
    )
    assert best.args[:7] == (
        "find_best_configuration",
        DATASET,
        "-c",
        "2d",
        "3d_fullres",
        "-f",
        "0",
    )
    assert best.depends_on == tuple(_keys(steps)[1:-1])


def test_preprocessed_data_skips_planning_unless_a_case_is_missing(tmp_path: Path) -> None:
    pre = _preprocessed(tmp_path / "pre", {"2d": None, "3d_fullres": None})
    assert preprocessing_done(pre, DATASET, ["2d", "3d_fullres"])
    steps = plan_steps(_request(), tmp_path / "res", pre)
    assert _keys(steps) == ["train 3d_fullres 0", "train 3d_fullres 1", "find_best"]
    assert steps[0].depends_on == ()
    assert "--raw" not in steps[0].args

    partial = _preprocessed(tmp_path / "pre2", {"3d_fullres": None}, complete=False)
    assert not preprocessing_done(partial, DATASET, ["3d_fullres"])
    assert _keys(plan_steps(_request(), tmp_path / "res", partial))[0] == "plan"
    with pytest.raises(AutoSegError, match="not planned and preprocessed for 3d_fullres"):
        plan_steps(_request(run_planning=False), tmp_path / "res", partial)


def test_configuration_missing_from_the_plans_is_named(tmp_path: Path) -> None:
    pre = _preprocessed(tmp_path / "pre", {"3d_fullres": None})
    with pytest.raises(AutoSegError, match=r"have no 3d_lowres.*Choose among 3d_fullres"):
        plan_steps(_request(configurations=("3d_lowres",)), tmp_path / "res", pre)


def test_done_folds_are_skipped_interrupted_resume_unvalidated_revalidate(tmp_path: Path) -> None:
    pre = _preprocessed(tmp_path / "pre", {"3d_fullres": None})
    res = tmp_path / "res"
    _done_fold(res, "3d_fullres", 0, "checkpoint_final.pth", "validation/summary.json")
    _done_fold(res, "3d_fullres", 1, "checkpoint_latest.pth")
    _done_fold(res, "3d_fullres", 2, "checkpoint_final.pth")
    steps = plan_steps(_request(folds=(0, 1, 2, 3), npz=False), res, pre)
    assert _keys(steps) == [
        "train 3d_fullres 1",
        "train 3d_fullres 2",
        "train 3d_fullres 3",
        "find_best",
    ]
    resume, validate, fresh = steps[:3]
    assert "--c" in resume.args
    assert "--val" not in resume.args
    assert resume.label == "Resume 3d_fullres fold 1"
    assert "--val" in validate.args
    assert "--c" not in validate.args
    assert validate.label == "Validate 3d_fullres fold 2"
    assert not {"--c", "--val", "--npz"} & set(fresh.args)
    assert steps[-1].args[4:9] == ("-f", "0", "1", "2", "3")  # done folds are compared too


def test_cascade_waits_for_every_lowres_fold(tmp_path: Path) -> None:
    stages = {"3d_fullres": None, "3d_lowres": None, "3d_cascade_fullres": "3d_lowres"}
    pre = _preprocessed(tmp_path / "pre", stages)
    request = _request(configurations=("3d_cascade_fullres", "3d_lowres"), run_find_best=False)
    steps = plan_steps(request, tmp_path / "res", pre)
    assert _keys(steps) == [
        "train 3d_lowres 0",
        "train 3d_lowres 1",
        "train 3d_cascade_fullres 0",
        "train 3d_cascade_fullres 1",
    ]
    lowres = ("train 3d_lowres 0", "train 3d_lowres 1")
    assert steps[2].depends_on == lowres
    assert steps[3].depends_on == lowres
    assert steps[0].depends_on == ()


def test_cascade_order_holds_before_planning(tmp_path: Path) -> None:
    request = _request(configurations=("3d_cascade_fullres", "3d_lowres"), folds=(0,))
    steps = plan_steps(request, tmp_path / "res", tmp_path / "pre")
    assert _keys(steps) == ["plan", "train 3d_lowres 0", "train 3d_cascade_fullres 0", "find_best"]
    assert steps[2].depends_on == ("plan", "train 3d_lowres 0")


def test_gpus_train_on_cuda_and_find_best_skips_the_all_fold(tmp_path: Path) -> None:
    steps = plan_steps(_request(folds=("all",), gpus=(0, 1)), tmp_path / "res", tmp_path / "pre")
    assert _keys(steps) == ["plan", "train 3d_fullres all"]  # 'all' has no validation to compare
    assert steps[1].args[3:6] == ("all", "-device", "cuda")
    steps = plan_steps(_request(run_find_best=False), tmp_path / "res", tmp_path / "pre")
    assert "find_best" not in _keys(steps)


def test_step_keys_reject_repeats_and_unknown_dependencies() -> None:
    assert step_keys([EngineStep("a", "A", ()), EngineStep("b", "B", (), depends_on=("a",))]) == [
        "a",
        "b",
    ]
    with pytest.raises(ValueError, match="depends on unknown or later steps"):
        step_keys([EngineStep("b", "B", ("x",), depends_on=("a",))])
    with pytest.raises(ValueError, match="two steps"):
        step_keys([EngineStep("a", "A", ()), EngineStep("a", "A", ())])


# ---------------------------------------------------------------- the module's controls


def _choices(**overrides: object) -> SimpleNamespace:
    values = {
        "use2d": False,
        "use3dFullres": True,
        "use3dLowres": False,
        "useCascade": False,
        "folds": "0 1 2 3 4",
        "gpus": "",
        "epochs": 1000,
        "iterationsPerEpoch": 250,
        "runFindBest": True,
        "gpuMemoryTarget": 0.0,
    }
    return SimpleNamespace(**{**values, **overrides})


def test_request_from_choices_reads_every_control() -> None:
    choices = _choices(use2d=True, folds="0, 2 all", gpus="1,0", epochs=50, runFindBest=False)
    request = request_from_choices(DATASET, choices, "cuda")
    assert request.configurations == ("2d", "3d_fullres")
    assert request.folds == (0, 2, "all")
    assert request.gpus == (1, 0)
    assert (request.epochs, request.iterations_per_epoch) == (50, 250)
    assert request.device == "cuda"
    assert not request.run_find_best
    assert request.gpu_memory_target is None  # 0 in the panel: the planner's default
    assert (
        request_from_choices(DATASET, _choices(gpuMemoryTarget=5.5), "cuda").gpu_memory_target
        == 5.5
    )


def test_a_gpu_memory_target_plans_again_with_it(tmp_path: Path) -> None:
    _preprocessed(tmp_path / "pre", {"3d_fullres": None})
    request = TrainingRequest(DATASET, ("3d_fullres",), folds=(0,), run_find_best=False)
    steps = plan_steps(request, tmp_path / "res", tmp_path / "pre")
    assert [s.key for s in steps] == ["train 3d_fullres 0"]  # preprocessed: no planning
    request = TrainingRequest(
        DATASET, ("3d_fullres",), folds=(0,), run_find_best=False, gpu_memory_target=5.5
    )
    plan, _ = plan_steps(request, tmp_path / "res", tmp_path / "pre")
    assert plan.args[:7] == (
        "plan_and_preprocess", "-d", DATASET, "-c", "3d_fullres", "--gpu-memory-target", "5.5"
    )  # fmt: skip
    with pytest.raises(AutoSegError, match="GPU memory target -1 GB"):
        TrainingRequest(DATASET, ("3d_fullres",), gpu_memory_target=-1)


def test_the_cascade_brings_its_lowres_stage() -> None:
    request = request_from_choices(DATASET, _choices(useCascade=True), "auto")
    assert request.configurations == ("3d_fullres", "3d_lowres", "3d_cascade_fullres")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gpus": "0 x"}, "GPU numbers"),
        ({"folds": "  "}, "No fold"),
        ({"use3dFullres": False}, "No configuration"),
    ],
)
def test_unusable_choices_are_one_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(AutoSegError, match=message):
        request_from_choices(DATASET, _choices(**overrides), "auto")


def test_a_case_added_or_edited_in_the_raw_dataset_plans_again(tmp_path: Path) -> None:
    """Cases added from Slicer, or saved back after a correction, must reach training."""
    from autoseg.cli import main
    from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset

    raw, pre, res = tmp_path / "raw", tmp_path / "pre", tmp_path / "res"
    spec = SyntheticSpec(shape=(8, 16, 16), spacing=(1.0, 1.0, 1.0))
    dataset_dir = make_synthetic_dataset(raw, dataset_id=8, name="Run", num_cases=3, spec=spec)
    roots = ["--raw", str(raw), "--preprocessed", str(pre), "--results", str(res)]
    assert main(["plan_and_preprocess", "-d", "8", "-c", "3d_fullres", "-np", "1", *roots]) == 0
    request = _request(configurations=("3d_fullres",), folds=(0,))
    assert "plan" not in _keys(plan_steps(request, res, pre, raw_root=raw))

    image = next((dataset_dir / "imagesTr").iterdir())
    image.write_bytes(image.read_bytes())  # saved again: a new modification time
    assert _keys(plan_steps(request, res, pre, raw_root=raw))[0] == "plan"
    assert main(["plan_and_preprocess", "-d", "8", "-c", "3d_fullres", "-np", "1", *roots]) == 0
    assert "plan" not in _keys(plan_steps(request, res, pre, raw_root=raw))

    case_id = image.name.removesuffix("_0000.nii.gz")
    for path in (dataset_dir / "imagesTr").glob(f"{case_id}_*"):
        path.rename(path.with_name(path.name.replace(case_id, "zz_added")))
    label = dataset_dir / "labelsTr" / f"{case_id}.nii.gz"
    label.rename(label.with_name("zz_added.nii.gz"))
    assert _keys(plan_steps(request, res, pre, raw_root=raw))[0] == "plan"
