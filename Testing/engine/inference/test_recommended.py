"""``autoseg predict -m <results>/DatasetXXX_Name``: the recommended models, ensemble and
post-processing in one call, checked against the manual predict -> ensemble -> apply_postprocessing
chain on tiny random-weight models (the model folders of test_predict_command)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from Testing.engine.cli.test_predict_command import DATASET, FAST, build_model, write_case

from autoseg import selection_report
from autoseg.atomic import write_json_atomic
from autoseg.cli import main
from autoseg.dataset import load_dataset_json
from autoseg.image_formats import Geometry
from autoseg.inference.export import save_probabilities, write_segmentation
from autoseg.inference.recommendation import Recommendation, read_recommendation
from autoseg.inference.recommended import MODELS_DIR
from autoseg.model_selection import (
    ENSEMBLES_DIR,
    crossval_folder_name,
    ensemble_folder_name,
    find_best_configuration,
)
from autoseg.model_sharing import export_model, import_model
from autoseg.paths import DataRoots
from autoseg.postprocessing import POSTPROCESSING_FILE, Postprocessing, PostprocessingRule
from autoseg.results_layout import INFORMATION_FILE
from autoseg.selection_report import Candidate, SelectionResult, SelectionSetup

FOLDS = (0, 1)
RULES = (PostprocessingRule("largest_foreground"),)
ENSEMBLE = ("3d_fullres", "2d")


@pytest.fixture
def roots(tiny_preprocessed: DataRoots, tmp_path: Path) -> DataRoots:
    """The tiny dataset's plans with a private results folder."""
    return DataRoots(tiny_preprocessed.raw, tiny_preprocessed.preprocessed, tmp_path / "results")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    for index in range(2):
        write_case(tmp_path / "in", f"case_{index}", seed=index)
    return tmp_path / "in"


def recommend(roots: DataRoots, configurations: Sequence[str]) -> Path:
    """Model folders plus what find_best_configuration writes when it chose them (its own
    information_json, the post-processing where it puts it); returns the dataset results folder."""
    results = roots.results / DATASET
    models = [build_model(roots, configuration, FOLDS) for configuration in configurations]
    if len(models) == 1:
        folder = models[0] / crossval_folder_name(FOLDS)
    else:
        folder = results / ENSEMBLES_DIR / ensemble_folder_name([m.name for m in models], FOLDS)
    folder.mkdir(parents=True)
    postprocessing = Postprocessing(RULES)
    pp_file = postprocessing.save(folder / POSTPROCESSING_FILE)
    best = Candidate(folder.name, folder, tuple(configurations), 0.5)
    labels = load_dataset_json(models[0] / "dataset.json").labels
    setup = SelectionSetup(results, roots.preprocessed, labels, ".nii.gz", FOLDS)
    info, notes = results / INFORMATION_FILE, results / "inference_instructions.txt"
    result = SelectionResult((best,), best, postprocessing, pp_file, info, notes, "")
    write_json_atomic(info, selection_report.information_json(result, setup))
    return results


def predict(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in folder.glob("*.nii.gz")}


def manual_chain(results: Path, configurations: Sequence[str], inputs: Path, work: Path) -> Path:
    """The commands of inference_instructions.txt: predict each model, ensemble, post-process."""
    models = [results / f"AutoSegTrainer__AutoSegPlans__{c}" for c in configurations]
    ensemble = len(models) > 1
    outputs = [work / f"model_{index}" for index in range(len(models))]
    for model, output in zip(models, outputs, strict=True):
        extra = ["--save_probabilities"] if ensemble else []
        argv = ["-i", str(inputs), "-o", str(output), "-m", str(model), *FAST, *extra]
        assert main(["predict", *argv, "-f", "0", "1"]) == 0
    jsons = ["-dataset_json", str(models[0] / "dataset.json"), "-np", "1"]
    source = outputs[0]
    if ensemble:
        source = work / "ensemble"
        assert main(["ensemble", "-i", *map(str, outputs), "-o", str(source), *jsons]) == 0
    pp = read_recommendation(results).postprocessing_file
    final = work / "final"
    argv = ["-i", str(source), "-o", str(final), "-pp", str(pp), *jsons]
    assert main(["apply_postprocessing", *argv]) == 0
    return final


def assert_same_labels(first: Path, second: Path) -> None:
    expected, found = labels(first), labels(second)
    assert sorted(found) == sorted(expected) == ["case_0.nii.gz", "case_1.nii.gz"]
    for name, array in expected.items():
        np.testing.assert_array_equal(found[name], array)


def _validate(model: Path, stray: tuple[int, int, int], gt_dir: Path) -> None:
    """Fake validation of FOLDS: the reference of each case plus one false-positive voxel."""
    truth = np.zeros((4, 6, 6), dtype=np.uint8)
    truth[1:3, 1:3, 1:5], truth[1:3, 4:6, 1:5] = 1, 2
    properties = {"geometry": Geometry((1.0,) * 3, (0.0,) * 3, np.eye(3).ravel()).to_json()}
    probabilities = np.moveaxis(np.eye(3, dtype=np.float32)[truth], -1, 0)
    probabilities[:, stray[0], stray[1], stray[2]] = (0.4, 0.6, 0.0)
    for fold in FOLDS:
        folder, case = model / f"fold_{fold}" / "validation", f"case_{fold}"
        write_segmentation(
            probabilities.argmax(0).astype(np.uint8),
            properties,
            folder / f"{case}.nii.gz",
            "SimpleITKIO",
        )
        save_probabilities(probabilities, properties, folder / case)
        (folder / "summary.json").write_text("{}", encoding="utf-8")
        write_segmentation(truth, properties, gt_dir / f"{case}.nii.gz", "SimpleITKIO")


def test_runs_what_find_best_configuration_chose(roots, inputs, tmp_path, capsys) -> None:
    models = [build_model(roots, configuration, FOLDS) for configuration in ENSEMBLE]
    gt_dir = tmp_path / "preprocessed" / "gt_segmentations"
    for model, stray in zip(models, [(3, 0, 0), (0, 5, 5)], strict=True):
        _validate(model, stray, gt_dir)  # each model errs where the other is sure: pair wins
    results = roots.results / DATASET
    chosen = find_best_configuration(results, gt_dir.parent, list(ENSEMBLE), folds=FOLDS)
    assert read_recommendation(results) == Recommendation(
        name=chosen.best.name,
        model_dirs=tuple(models),
        folds=("0", "1"),
        postprocessing_file=chosen.postprocessing_file,
        results_dir=results,
    )
    argv = ["-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(results), *FAST]
    assert predict(capsys, *argv)[0] == 0
    assert len(labels(tmp_path / "out")) == 2


def test_single_model_is_predict_then_postprocess(roots, inputs, tmp_path, capsys) -> None:
    results = recommend(roots, ["3d_fullres"])
    model = results / "AutoSegTrainer__AutoSegPlans__3d_fullres"
    assert read_recommendation(results) == Recommendation(
        name=crossval_folder_name(FOLDS),
        model_dirs=(model,),
        folds=("0", "1"),
        postprocessing_file=model / crossval_folder_name(FOLDS) / POSTPROCESSING_FILE,
        results_dir=results,
    )
    out = tmp_path / "out"
    code, stdout, err = predict(
        capsys, "-i", str(inputs), "-o", str(out), "-m", str(results), *FAST
    )
    assert (code, err) == (0, "")
    assert "Predicted 2 case(s)" in stdout
    assert not (out / MODELS_DIR).exists()
    assert {p.name for p in out.iterdir()} == {
        "case_0.nii.gz",
        "case_1.nii.gz",
        "dataset.json",
        "plans.json",
        "predict_args.json",
    }
    expected = manual_chain(results, ["3d_fullres"], inputs, tmp_path / "manual")
    assert_same_labels(expected, out)
    raw, final = labels(tmp_path / "manual" / "model_0"), labels(out)
    assert any((raw[name] != final[name]).any() for name in raw)  # the rule really removed voxels
    settings = json.loads((out / "predict_args.json").read_text())
    assert settings["folds"] == ["0", "1"]
    assert settings["recommendation"]["model_folders"] == [str(model)]


def test_ensemble_is_predict_ensemble_postprocess(roots, inputs, tmp_path, capsys) -> None:
    results = recommend(roots, ENSEMBLE)
    out = tmp_path / "out"
    argv = ["-i", str(inputs), "-o", str(out), "-m", str(results), *FAST[:3]]
    code, stdout, err = predict(capsys, *argv, "--progress", "json")
    assert (code, err) == (0, "")
    stages = [json.loads(line)["stage"] for line in stdout.splitlines() if line.startswith("{")]
    steps = ["predict 3d_fullres", "predict 2d", "ensemble", "postprocess"]
    assert [s for s in dict.fromkeys(stages) if s in steps] == steps
    assert not (out / MODELS_DIR).exists()
    assert_same_labels(manual_chain(results, ENSEMBLE, inputs, tmp_path / "manual"), out)


def test_export_import_then_predict_gives_the_same_labels(roots, inputs, tmp_path, capsys) -> None:
    results = recommend(roots, ENSEMBLE)
    argv = ["-i", str(inputs), *FAST, "-m"]
    assert predict(capsys, *argv, str(results), "-o", str(tmp_path / "original"))[0] == 0
    zip_file = export_model(results, tmp_path / "model.zip")
    import_model(zip_file, tmp_path / "elsewhere")
    shutil.rmtree(roots.results)  # nothing of the original may be used
    imported = tmp_path / "elsewhere" / DATASET
    assert predict(capsys, *argv, str(imported), "-o", str(tmp_path / "imported"))[0] == 0
    assert_same_labels(tmp_path / "original", tmp_path / "imported")


def test_continue_prediction_keeps_finished_cases(roots, inputs, tmp_path, capsys) -> None:
    results = recommend(roots, ENSEMBLE)
    out = tmp_path / "out"
    argv = ["-i", str(inputs), "-o", str(out), "-m", str(results), *FAST]
    assert predict(capsys, *argv)[0] == 0
    (out / "case_0.nii.gz").write_bytes(b"marker")
    (out / "case_1.nii.gz").unlink()
    code, stdout, _ = predict(capsys, *argv, "--continue_prediction")
    assert code == 0
    assert "Predicted 1 case(s)" in stdout
    assert "skipped 1" in stdout
    assert (out / "case_0.nii.gz").read_bytes() == b"marker"
    assert (out / "case_1.nii.gz").is_file()
    assert not (out / MODELS_DIR).exists()


@pytest.mark.parametrize(("flags", "folds"), [(["-f", "1"], ["1"]), (["--fast"], ["0"])])
def test_f_and_fast_choose_the_folds(roots, inputs, tmp_path, capsys, flags, folds) -> None:
    results = recommend(roots, ["3d_fullres"])
    out = tmp_path / "out"
    argv = ["-i", str(inputs), "-o", str(out), "-m", str(results), *FAST]
    assert predict(capsys, *argv, *flags)[0] == 0
    assert json.loads((out / "predict_args.json").read_text())["folds"] == folds


def _break(results: Path, mistake: str) -> list[str]:
    """Break one thing of a recommended ensemble; returns the extra predict arguments."""
    info = results / INFORMATION_FILE
    data = json.loads(info.read_text())
    best = data["best_model_or_ensemble"]
    if mistake == "no information file":
        info.unlink()
    elif mistake == "not JSON":
        info.write_text("{", encoding="utf-8")
    elif mistake == "model folder missing":
        shutil.rmtree(results / "AutoSegTrainer__AutoSegPlans__2d")
    elif mistake == "path outside":
        best["selected_models"][1]["folder"] = "../Dataset902_Other/AutoSegTrainer__P__2d"
        info.write_text(json.dumps(data), encoding="utf-8")
    elif mistake == "post-processing missing":
        (results / best["postprocessing_file"]).unlink()
    return {
        "fold missing": ["-f", "3"],
        "probabilities": ["--save_probabilities"],
        "parts": ["-num_parts", "2", "-part_id", "1"],
        "previous stage": ["-prev_stage_predictions", str(results)],
    }.get(mistake, [])


MISTAKES = {
    "no information file": "run autoseg find_best_configuration Dataset901_Tiny first",
    "not JSON": "inference_information.json: cannot be read as JSON",
    "model folder missing": "AutoSegTrainer__AutoSegPlans__2d named in",
    "path outside": "is not a relative path inside",
    "post-processing missing": "the post-processing file",
    "fold missing": "fold_3/checkpoint_final.pth is missing",
    "probabilities": "--save_probabilities does not apply",
    "parts": "-num_parts/-part_id does not apply",
    "previous stage": "-prev_stage_predictions does not apply",
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_mistakes_are_one_clear_line(roots, inputs, tmp_path, capsys, mistake: str) -> None:
    results = recommend(roots, ENSEMBLE)
    extra = _break(results, mistake)
    argv = ["-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(results), *FAST]
    code, _, err = predict(capsys, *argv, *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert MISTAKES[mistake] in err
    assert "Fix:" in err
    assert not (tmp_path / "out").exists()
