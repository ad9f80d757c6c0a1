"""nnU-Net's find_best_configuration output (inference_information.json + postprocessing.json; the
pickle is never read) runs like AutoSeg's: ``predict -m <dataset results folder>`` predicts the chosen
ensemble, post-processes it, and agrees with nnunetv2's own recommended inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
from Testing.engine.interop.nnunet_reference import (
    CASES,
    DATASET,
    IMAGES,
    MIN_AGREEMENT,
    MODELS,
    PLAIN,
    TWO_D,
    agreement,
    reference_labels,
)

from autoseg.cli import main
from autoseg.errors import AutoSegError
from autoseg.inference.recommendation import read_recommendation
from autoseg.interop.nnunet_selection import postprocessing_json_from_nnunet
from autoseg.postprocessing import Postprocessing, PostprocessingRule

RECOMMENDED = "recommended"  # nnunetv2's ensemble + apply_postprocessing of the test images


def test_the_fixture_selection_reads_as_an_ensemble_with_postprocessing() -> None:
    recommendation = read_recommendation(MODELS)
    assert [m.name for m in recommendation.model_dirs] == [PLAIN, TWO_D]
    assert recommendation.folds == ("0",)
    assert recommendation.is_ensemble
    pp_file = recommendation.postprocessing_file
    assert pp_file is not None
    assert pp_file.name == "postprocessing.json"
    assert pp_file.is_relative_to(MODELS)  # nnU-Net's absolute /tmp/... path is not used
    assert Postprocessing.load(pp_file).rules == (PostprocessingRule("largest_per_region", (1, 2)),)


def test_predict_m_on_the_dataset_folder_matches_nnunetv2(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            "-i",
            str(IMAGES),
            "-o",
            str(out),
            "-m",
            str(MODELS),
            "-device",
            "cpu",
            "--progress",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert (code, err) == (0, "")
    for case in CASES:
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        assert agreement(ours, reference_labels(RECOMMENDED, case)) >= MIN_AGREEMENT
    assert not (out / ".models").exists()


@pytest.mark.parametrize(
    ("kwargs", "region"),
    [({"labels_or_regions": [1, 2]}, (1, 2)), ({"labels_or_regions": 2}, (2,)),
     ({"labels_or_regions": [[1, 2], 3]}, (1, 2, 3))],
)  # fmt: skip
def test_nnunet_rules_become_largest_component_rules(kwargs: dict, region: tuple) -> None:
    data = {
        "postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"],
        "postprocessing_kwargs": [kwargs],
        "input_folder": {"foreground_mean": {"Dice": 0.5}},
        "postprocessed": {"foreground_mean": {"Dice": 0.6}},
    }
    postprocessing = Postprocessing.from_json(data, "pp.json")
    assert postprocessing.rules == (PostprocessingRule("largest_per_region", region),)
    assert postprocessing.after["foreground_mean"]["Dice"] == 0.6


@pytest.mark.parametrize(
    "data",
    [
        {"postprocessing_fns": ["my_filter"], "postprocessing_kwargs": [{}]},
        {"postprocessing_fns": [], "postprocessing_kwargs": [{}]},
        {
            "postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"],
            "postprocessing_kwargs": [{"labels_or_regions": [0]}],
        },
    ],
)
def test_nnunet_postprocessing_autoseg_cannot_reproduce_is_refused(data: dict) -> None:
    with pytest.raises(AutoSegError) as caught:
        postprocessing_json_from_nnunet(data, "pp.json")
    assert "pp.json" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.fixture
def dataset_copy(tmp_path: Path) -> Path:
    """The fixture's dataset results folder, without the models the selection does not use."""
    target = tmp_path / DATASET
    shutil.copytree(
        MODELS, target, ignore=shutil.ignore_patterns("*ResEnc*", "*lowres*", "*cascade*")
    )
    return target


def _rewrite(folder: Path, change) -> None:
    file = folder / "inference_information.json"
    data = json.loads(file.read_text())
    change(data["best_model_or_ensemble"])
    file.write_text(json.dumps(data))


def test_a_missing_postprocessing_json_names_the_pickle_rule(dataset_copy: Path) -> None:
    for file in dataset_copy.rglob("postprocessing.json"):
        file.unlink()
    with pytest.raises(AutoSegError, match="never reads") as caught:
        read_recommendation(dataset_copy)
    assert "postprocessing.json" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda best: best.update(postprocessing_file="/elsewhere/postprocessing.pkl"), "not in a"),
        (
            lambda best: best.update(postprocessing_file=f"/r/{DATASET}/../x/postprocessing.pkl"),
            "leaves",
        ),
        (lambda best: best["selected_model_or_models"][0].update(trainer="Other"), "missing"),
        (lambda best: best.update(selected_model_or_models=[]), "one model or two"),
    ],
)
def test_a_broken_selection_is_one_line(dataset_copy: Path, change, message: str) -> None:
    _rewrite(dataset_copy, change)
    with pytest.raises(AutoSegError, match=message) as caught:
        read_recommendation(dataset_copy)
    assert "\n" not in str(caught.value)
