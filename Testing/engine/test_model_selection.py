"""Model selection on constructed cross-validation results (no training).

Two configurations of a one-label dataset are faked per fold: validation label files plus their
probabilities (``CASE.npz`` + ``CASE.json``), a ground truth block per case, and a results layout
like training writes. The foreground probability maps are built so the expected winner is known.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import build_parser
from autoseg.errors import AutoSegError
from autoseg.image_formats import Geometry
from autoseg.inference.export import save_probabilities, write_segmentation
from autoseg.labels import LabelSpec
from autoseg.model_selection import (
    ENSEMBLES_DIR,
    INFORMATION_FILE,
    accumulate_cv_results,
    crossval_folder_name,
    ensemble_folder_name,
    find_best_configuration,
    unfinished_folds,
)

DATASET = "Dataset999_Toy"
LABELS = LabelSpec.from_json({"background": 0, "a": 1})
GEOMETRY = Geometry(spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3).ravel())
SHAPE = (6, 8, 8)
SPLIT = {0: ("case_0", "case_1"), 1: ("case_2", "case_3")}
BLOCK = (slice(1, 4), slice(2, 6), slice(2, 6))  # the reference foreground of every case
STRAY = (5, 7, 7)  # a voxel far from the block: a separate component


def _block() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[BLOCK] = True
    return mask


def foreground(*, stray: float = 0.1, half_missed: bool = False, extra=None) -> np.ndarray:
    """Foreground probability: 0.9 in the block, 0.1 outside, ``stray`` at STRAY; ``half_missed``
    drops half the block to 0.2; ``extra`` = (index, p) sets one more region."""
    p = np.where(_block(), 0.9, 0.1).astype(np.float32)
    p[STRAY] = stray
    if half_missed:
        p[1:4, 2:4, 2:6] = 0.2
    if extra is not None:
        p[extra[0]] = extra[1]
    return p


def _seg_file(segmentation: np.ndarray, path: Path) -> None:
    write_segmentation(
        segmentation.astype(np.uint8), {"geometry": GEOMETRY.to_json()}, path, "SimpleITKIO"
    )


class Toy:
    """A results folder and a preprocessed folder (dataset.json, gt_segmentations) for DATASET."""

    def __init__(self, root: Path) -> None:
        self.results = root / "results" / DATASET
        self.preprocessed = root / "preprocessed" / DATASET
        self.preprocessed.mkdir(parents=True)
        dataset = {
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "a": 1},
            "numTraining": 4,
            "file_ending": ".nii.gz",
        }
        (self.preprocessed / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
        for case in (c for cases in SPLIT.values() for c in cases):
            _seg_file(_block(), self.preprocessed / "gt_segmentations" / f"{case}.nii.gz")

    @property
    def gt(self) -> Path:
        return self.preprocessed / "gt_segmentations"

    def model_dir(self, configuration: str) -> Path:
        return self.results / f"AutoSegTrainer__AutoSegPlans__{configuration}"

    def model(
        self,
        configuration: str,
        p: np.ndarray,
        *,
        npz: bool = True,
        split: Mapping[int, Sequence[str]] = SPLIT,
    ) -> Path:
        """Validation of every fold of ``split``: label file = p > 0.5 (+ probabilities)."""
        for fold, cases in split.items():
            validation = self.model_dir(configuration) / f"fold_{fold}" / "validation"
            for case in cases:
                _seg_file(p > 0.5, validation / f"{case}.nii.gz")
                if npz:
                    properties = {"geometry": GEOMETRY.to_json()}
                    save_probabilities(np.stack([1 - p, p]), properties, validation / case)
            (validation / "summary.json").write_text("{}", encoding="utf-8")
        return self.model_dir(configuration)

    def select(self, configurations: Sequence[str], **options):
        options = {"folds": tuple(SPLIT), **options}
        return find_best_configuration(self.results, self.preprocessed, configurations, **options)


@pytest.fixture
def toy(tmp_path: Path) -> Toy:
    return Toy(tmp_path)


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_the_better_configuration_wins_and_its_postprocessing_is_written(toy: Toy) -> None:
    toy.model("2d", foreground(half_missed=True))
    good = toy.model("3d_fullres", foreground(stray=0.8))
    result = toy.select(["2d", "3d_fullres"], allow_ensembling=False)

    assert [c.name for c in result.candidates] == [toy.model_dir("2d").name, good.name]
    assert result.scores[good.name] > result.scores[toy.model_dir("2d").name]
    assert result.best.configurations == ("3d_fullres",)
    crossval = good / crossval_folder_name((0, 1))
    assert result.postprocessing_file == crossval / "postprocessing.json"
    assert json.loads(result.postprocessing_file.read_text())["rules"] == [
        {"kind": "largest_foreground", "region": None}
    ]
    assert not (good / "postprocessing.json").exists()  # moved into the crossval folder
    assert result.score_before_postprocessing == pytest.approx(result.scores[good.name])
    assert result.score_after_postprocessing == pytest.approx(1.0)
    assert not (_read(crossval / "postprocessed" / "case_0.nii.gz")[STRAY])

    information = json.loads((toy.results / INFORMATION_FILE).read_text())
    best = information["best_model_or_ensemble"]
    assert information["folds"] == [0, 1]
    assert set(information["all_results"]) == set(result.scores)
    assert best["selected_models"][0]["configuration"] == "3d_fullres"
    assert best["result_on_crossval_post_pp"] == pytest.approx(1.0)
    assert (toy.results / best["postprocessing_file"]) == result.postprocessing_file
    assert "-c 3d_fullres" in result.instructions
    assert "--save_probabilities" not in result.instructions


def test_an_ensemble_wins_when_it_beats_both_models(toy: Toy) -> None:
    # Each model has its own false positive at 0.6; averaged with the other's 0.1 it is gone.
    toy.model("2d", foreground(extra=((0, 0, slice(0, 3)), 0.6)))
    toy.model("3d_fullres", foreground(extra=((5, 0, slice(0, 3)), 0.6)))
    result = toy.select(["2d", "3d_fullres"])

    names = [toy.model_dir(c).name for c in ("2d", "3d_fullres")]
    expected = toy.results / ENSEMBLES_DIR / ensemble_folder_name(names, (0, 1))
    assert result.best.folder == expected
    assert result.best.configurations == ("2d", "3d_fullres")
    assert result.best.score == pytest.approx(1.0)
    assert max(result.scores[n] for n in names) < 0.99
    assert result.postprocessing_file == expected / "postprocessing.json"
    assert not (expected.parent / "postprocessing.json").exists()
    assert result.instructions.count("--save_probabilities") == 2
    lines = [
        shlex.split(x)[1:] for x in result.instructions.splitlines() if x.startswith("autoseg")
    ]
    parsed = [build_parser().parse_args(args) for args in lines]
    assert [args.command for args in parsed] == [
        "predict",
        "predict",
        "ensemble",
        "apply_postprocessing",
    ]
    assert [args.save_probabilities for args in parsed[:2]] == [True, True]
    assert parsed[2].inputs == ["OUTPUT_FOLDER_MODEL_1", "OUTPUT_FOLDER_MODEL_2"]
    assert Path(parsed[3].pp) == result.postprocessing_file


def test_ties_go_to_the_first_single_model(toy: Toy) -> None:
    toy.model("3d_fullres", foreground(half_missed=True))
    toy.model("2d", foreground(half_missed=True))
    result = toy.select(["3d_fullres", "2d"])

    assert len(result.candidates) == 3  # the ensemble was evaluated and scored the same
    assert len({round(c.score, 12) for c in result.candidates}) == 1
    assert result.best.name == toy.model_dir("3d_fullres").name


def test_any_subset_of_folds(toy: Toy) -> None:
    toy.model("2d", foreground(half_missed=True))
    toy.model("3d_fullres", foreground())
    result = toy.select(["2d", "3d_fullres"], folds=[1])

    crossval = toy.model_dir("3d_fullres") / "crossval_results_folds_1"
    assert sorted(p.name for p in crossval.glob("*.nii.gz")) == ["case_2.nii.gz", "case_3.nii.gz"]
    assert result.candidates[-1].name.endswith("___1")
    assert " -f 1 " in result.instructions
    assert json.loads((toy.results / INFORMATION_FILE).read_text())["folds"] == [1]


def test_a_case_in_two_folds_is_an_error(toy: Toy) -> None:
    model = toy.model("2d", foreground(), split={0: ("case_0", "case_1"), 1: ("case_1", "case_2")})
    with pytest.raises(AutoSegError, match=r"case_1 was predicted by fold 0 and fold 1"):
        accumulate_cv_results(model, [0, 1], toy.gt, LABELS, ".nii.gz")


def test_missing_probabilities_mean_no_ensembles_and_a_note(toy: Toy) -> None:
    toy.model("2d", foreground(), npz=False)
    toy.model("3d_fullres", foreground(half_missed=True))
    result = toy.select(["2d", "3d_fullres"])

    assert [c.configurations for c in result.candidates] == [("2d",), ("3d_fullres",)]
    assert len(result.notes) == 1
    assert toy.model_dir("2d").name in result.notes[0]
    assert "--npz" in result.notes[0]
    assert not (toy.results / ENSEMBLES_DIR).exists()
    information = json.loads((toy.results / INFORMATION_FILE).read_text())
    assert information["notes"] == list(result.notes)


def test_accumulation_gathers_probabilities_and_is_rebuilt(toy: Toy) -> None:
    model = toy.model("2d", foreground(half_missed=True))
    crossval = model / crossval_folder_name((1, 0))
    crossval.mkdir()
    (crossval / "stale.nii.gz").write_bytes(b"left over from an earlier run")
    summary = accumulate_cv_results(model, (1, 0), toy.gt, LABELS, ".nii.gz")

    cases = [f"case_{i}" for i in range(4)]
    assert sorted(p.name for p in crossval.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in cases]
    assert all(
        (crossval / f"{c}.npz").is_file() and (crossval / f"{c}.json").is_file() for c in cases
    )
    assert summary["foreground_mean"]["Dice"] == pytest.approx(2 * 24 / (48 + 24))
    assert (crossval / "summary.json").is_file()


def test_an_unfinished_validation_says_how_to_finish_it(toy: Toy) -> None:
    model = toy.model("2d", foreground())
    (model / "fold_1" / "validation" / "summary.json").unlink()
    assert unfinished_folds(model, [0, 1, 2]) == [1, 2]
    with pytest.raises(AutoSegError, match=r"fold_1.*--val"):
        accumulate_cv_results(model, [0, 1], toy.gt, LABELS, ".nii.gz")
