"""``autoseg find_best_configuration``, ``apply_postprocessing`` and ``determine_postprocessing``
on constructed cross-validation results (no training)."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import build_parser, main
from autoseg.image_formats import Geometry
from autoseg.inference.export import save_probabilities, write_segmentation
from autoseg.postprocessing import Postprocessing, PostprocessingRule

DATASET = "Dataset998_Cli"
GEOMETRY = Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3).ravel())
SPLIT = {0: ("case_0", "case_1"), 1: ("case_2", "case_3")}
DATASET_JSON = {
    "channel_names": {"0": "MR"},
    "labels": {"background": 0, "a": 1},
    "numTraining": 4,
    "file_ending": ".nii.gz",
}


def _reference() -> np.ndarray:
    seg = np.zeros((5, 6, 6), dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    return seg


def _write(seg: np.ndarray, path: Path) -> Path:
    write_segmentation(seg.astype(np.uint8), {"geometry": GEOMETRY.to_json()}, path, "SimpleITKIO")
    return path


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(results root, preprocessed root) with references and a dataset.json."""
    preprocessed = tmp_path / "preprocessed" / DATASET
    preprocessed.mkdir(parents=True)
    (preprocessed / "dataset.json").write_text(json.dumps(DATASET_JSON), encoding="utf-8")
    for case in (c for cases in SPLIT.values() for c in cases):
        _write(_reference(), preprocessed / "gt_segmentations" / f"{case}.nii.gz")
    return tmp_path / "results", tmp_path / "preprocessed"


def _train(results_root: Path, configuration: str, stray: float) -> Path:
    """Fake validation of folds 0 and 1: the reference plus a stray voxel of probability ``stray``."""
    p = np.where(_reference() > 0, 0.9, 0.1).astype(np.float32)
    p[4, 5, 5] = stray
    model = results_root / DATASET / f"AutoSegTrainer__AutoSegPlans__{configuration}"
    for fold, cases in SPLIT.items():
        validation = model / f"fold_{fold}" / "validation"
        for case in cases:
            _write(p > 0.5, validation / f"{case}.nii.gz")
            save_probabilities(
                np.stack([1 - p, p]), {"geometry": GEOMETRY.to_json()}, validation / case
            )
        (validation / "summary.json").write_text("{}", encoding="utf-8")
    return model


def _find_best(roots: tuple[Path, Path], *extra: str) -> int:
    results, preprocessed = roots
    flags = ["--results", str(results), "--preprocessed", str(preprocessed), "-np", "1"]
    return main(["find_best_configuration", DATASET, "-f", "0", "1", *flags, *extra])


def test_default_configurations_use_the_trained_ones_and_print_commands(roots, capsys) -> None:
    _train(roots[0], "3d_fullres", stray=0.8)
    _train(roots[0], "2d", stray=0.1)
    assert _find_best(roots) == 0
    printed = capsys.readouterr().out
    assert "Best: AutoSegTrainer__AutoSegPlans__2d" in printed
    assert "with post-processing (none)" in printed
    assert "3d_lowres" not in printed  # not trained, so not compared
    instructions = (roots[0] / DATASET / "inference_instructions.txt").read_text()
    assert instructions in printed


def test_instructions_parse_and_their_postprocessing_runs(roots, tmp_path) -> None:
    _train(roots[0], "3d_fullres", stray=0.8)
    _train(roots[0], "2d", stray=0.8)
    assert _find_best(roots, "-c", "3d_fullres", "2d") == 0
    text = (roots[0] / DATASET / "inference_instructions.txt").read_text()
    commands = [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("autoseg ")]
    parsed = {args[0]: build_parser().parse_args(args) for args in commands}
    assert parsed["predict"].dataset == DATASET
    assert parsed["predict"].configuration == "3d_fullres"
    assert parsed["predict"].folds == ["0", "1"]
    apply = parsed["apply_postprocessing"]
    assert Postprocessing.load(Path(apply.pp)).rules == (PostprocessingRule("largest_foreground"),)

    # Run the printed post-processing on "predictions": the 3d_fullres cross-validation folder.
    crossval = roots[0] / DATASET / "AutoSegTrainer__AutoSegPlans__3d_fullres"
    shutil.copytree(crossval / "crossval_results_folds_0_1", tmp_path / "OUTPUT_FOLDER")
    line = next(args for args in commands if args[0] == "apply_postprocessing")
    line = [str(tmp_path / a) if a.startswith("OUTPUT_FOLDER") else a for a in line]
    assert main([*line, "-np", "1"]) == 0
    np.testing.assert_array_equal(
        _read(tmp_path / "OUTPUT_FOLDER_PP" / "case_3.nii.gz"), _reference()
    )


def test_a_named_configuration_must_be_trained(roots, capsys) -> None:
    _train(roots[0], "2d", stray=0.1)
    assert _find_best(roots, "-c", "2d", "3d_lowres") == 2
    error = capsys.readouterr().err
    assert "3d_lowres (folds 0 1)" in error
    assert len(error.strip().splitlines()) == 1


def test_nothing_trained_is_one_clear_line(roots, capsys) -> None:
    (roots[0] / DATASET).mkdir(parents=True)
    assert _find_best(roots) == 2
    error = capsys.readouterr().err
    assert "no finished validation for 2d (folds 0 1), 3d_fullres" in error
    assert len(error.strip().splitlines()) == 1


def test_fold_all_is_refused_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["find_best_configuration", "4", "-f", "all"])
    assert "not a cross-validation fold" in capsys.readouterr().err


def _two_components(folder: Path) -> Path:
    seg = _reference()
    seg[4, 5, 5] = 1
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON), encoding="utf-8")
    return _write(seg, folder / "case_9.nii.gz")


def test_apply_postprocessing_round_trip(tmp_path) -> None:
    source = _two_components(tmp_path / "in")
    before = source.read_bytes()
    rules = Postprocessing((PostprocessingRule("largest_foreground"),))
    pp = rules.save(tmp_path / "postprocessing.json")
    out = tmp_path / "out"
    assert (
        main(
            [
                "apply_postprocessing",
                "-i",
                str(source.parent),
                "-o",
                str(out),
                "-pp",
                str(pp),
                "-np",
                "1",
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(_read(out / "case_9.nii.gz"), _reference())
    assert source.read_bytes() == before


def test_a_pickle_file_gets_the_json_beside_it(tmp_path, capsys) -> None:
    source = _two_components(tmp_path / "in")
    pkl = tmp_path / "model" / "postprocessing.pkl"
    args = ["apply_postprocessing", "-i", str(source.parent), "-o", str(tmp_path / "out")]
    assert main([*args, "-pp_pkl_file", str(pkl)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert f"-pp {pkl.with_name('postprocessing.json')}" in error
    assert not (tmp_path / "out").exists()


def test_determine_postprocessing_writes_rules_beside_the_predictions(tmp_path, capsys) -> None:
    prediction = _two_components(tmp_path / "cv" / "predictions")
    reference = _write(_reference(), tmp_path / "gt" / "case_9.nii.gz").parent
    assert (
        main(
            [
                "determine_postprocessing",
                "-i",
                str(prediction.parent),
                "-ref",
                str(reference),
                "-np",
                "1",
            ]
        )
        == 0
    )
    assert "Rules: largest_foreground" in capsys.readouterr().out
    assert Postprocessing.load(tmp_path / "cv" / "postprocessing.json").rules


def test_a_results_folder_that_cannot_be_written_fails_before_the_search(
    roots, capsys, monkeypatch
) -> None:
    _train(roots[0], "2d", stray=0.1)
    dataset_dir = roots[0] / DATASET
    real_mkstemp = tempfile.mkstemp

    def read_only_mount(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == dataset_dir:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_mount)
    assert _find_best(roots) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{dataset_dir}: cannot write in the dataset's results folder (--results)" in err
    assert "Read-only file system" in err
    assert not (dataset_dir / "inference_instructions.txt").exists()
