"""Make the small real nnU-Net v2 models and predictions that AutoSeg's interoperability tests use.

Runs only inside the separate virtual environment that ``make_nnunet_fixture.sh`` builds (nnunetv2
from the package registry); AutoSeg itself never imports nnU-Net. Steps, all with nnunetv2's own code:

1. ``dataset``: write a synthetic two-channel dataset (a "CT" channel and an "MR" channel, labels
   0/1/2, a zero border so cropping and the masked z-score matter, anisotropic spacing along the
   file's x axis so nnU-Net transposes and resamples "separately along z") and three test images
   whose spacings and sizes differ from the training cases (resampling both ways, several tiles).
2. ``plan``: nnunetv2's planners (default and ResEnc M), then shrink the plans (few stages, few
   features, small patch and batch) so every checkpoint is a few hundred KB.
3. ``train``: nnunetv2's trainers for a few short epochs on the CPU (fold 0).
4. ``predict``: ``nnUNetv2_predict`` on the test images, with probabilities.

The fixture's README says which command made it; ``manifest.json`` records the versions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

DATASET_ID = 990
DATASET = f"Dataset{DATASET_ID}_AutoSegInterop"
TRAINING_CASES = 10
# (plans name, planner, configuration, trainer class, fold): the models the fixture holds, in
# training order. The cascade trains on the lowres model's validation predictions of every case,
# which fold "all" provides without training five lowres folds.
MODELS = (
    ("nnUNetPlans", "ExperimentPlanner", "3d_fullres", "nnUNetTrainer", 0),
    ("nnUNetPlans", "ExperimentPlanner", "2d", "nnUNetTrainer", 0),
    ("nnUNetResEncUNetMPlans", "nnUNetPlannerResEncM", "3d_fullres", "nnUNetTrainer_5epochs", 0),
    ("nnUNetPlans", "ExperimentPlanner", "3d_lowres", "nnUNetTrainer", "all"),
    ("nnUNetPlans", "ExperimentPlanner", "3d_cascade_fullres", "nnUNetTrainer", "all"),
)
# Configurations nnunetv2 preprocesses (the cascade reads 3d_fullres' data).
PREPROCESSED = {
    "nnUNetPlans": ["2d", "3d_fullres", "3d_lowres"],
    "nnUNetResEncUNetMPlans": ["3d_fullres"],
}
# Test images: (name, array shape in SimpleITK's (z, y, x) order, spacing in the same order,
# whether the body fills the whole image (no zero border, so cropping keeps everything)).
TEST_CASES = (
    ("interop_000", (26, 40, 10), (1.0, 1.0, 3.2), True),
    ("interop_001", (30, 44, 12), (0.9, 0.8, 2.6), False),
    ("interop_002", (28, 30, 8), (1.1, 1.2, 4.0), False),
)


def _ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    return distance <= 1.0


def synthetic_case(
    shape: tuple[int, ...], full_body: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two channels (CT-like HU, MR-like) and labels: 1 = a large blob, 2 = a smaller one inside it."""
    size = np.array(shape, dtype=np.float32)
    centre = size / 2 + rng.uniform(-1.5, 1.5, 3)
    big = _ellipsoid(shape, centre, size * rng.uniform(0.24, 0.32, 3))
    inner_centre = centre + size * rng.uniform(-0.04, 0.04, 3)
    small = _ellipsoid(shape, inner_centre, size * 0.14 + 0.8) & big
    labels = np.where(small, 2, np.where(big, 1, 0)).astype(np.uint8)
    body = np.ones(shape, dtype=bool)
    if not full_body:  # a zero border: nnU-Net crops it and z-scores the MR channel inside a mask
        margin = [max(1, round(s * 0.14)) for s in shape]
        body[:] = False
        body[tuple(slice(m, s - m) for m, s in zip(margin, shape, strict=True))] = True
        labels[~body] = 0
    ct = -120 + 90 * big + 130 * small + rng.normal(0, 25, shape)
    mr = 300 - 110 * big + 160 * small + rng.normal(0, 30, shape)
    ct, mr = np.where(body, ct, 0).round(), np.where(body, np.maximum(mr, 1), 0).round()
    return ct.astype(np.int16), mr.astype(np.int16), labels


def _write(array: np.ndarray, spacing: tuple[float, ...], path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing][::-1])  # SimpleITK wants (x, y, z)
    image.SetOrigin((12.5, -40.0, 7.25))
    sitk.WriteImage(image, str(path), useCompression=True)


def make_dataset(raw: Path, tests: Path) -> None:
    rng = np.random.default_rng(20260716)
    folder = raw / DATASET
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index in range(TRAINING_CASES):
        shape = (int(rng.integers(22, 28)), int(rng.integers(26, 32)), int(rng.integers(9, 12)))
        spacing = (float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.9, 1.1)), 3.2)
        ct, mr, labels = synthetic_case(shape, full_body=index % 4 == 0, rng=rng)
        case = f"interop_{100 + index:03d}"
        _write(ct, spacing, folder / "imagesTr" / f"{case}_0000.nii.gz")
        _write(mr, spacing, folder / "imagesTr" / f"{case}_0001.nii.gz")
        _write(labels, spacing, folder / "labelsTr" / f"{case}.nii.gz")
    dataset_json = {
        "channel_names": {"0": "CT", "1": "MR"},
        "labels": {"background": 0, "outer": 1, "inner": 2},
        "numTraining": TRAINING_CASES,
        "file_ending": ".nii.gz",
        "name": DATASET,
        "licence": "CC0 (synthetic, made by bench/reference/make_nnunet_fixture.py)",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    tests.mkdir(parents=True, exist_ok=True)
    for name, shape, spacing, full_body in TEST_CASES:
        ct, mr, _ = synthetic_case(shape, full_body, rng)
        _write(ct, spacing, tests / f"{name}_0000.nii.gz")
        _write(mr, spacing, tests / f"{name}_0001.nii.gz")


def _shrink_architecture(architecture: dict, stages: int) -> None:
    kwargs = architecture["arch_kwargs"]
    kwargs["n_stages"] = stages
    kwargs["features_per_stage"] = [4 * 2**s for s in range(stages)]
    for key in ("kernel_sizes", "strides", "n_conv_per_stage", "n_blocks_per_stage"):
        if key in kwargs:
            kwargs[key] = kwargs[key][:stages]
    if "n_blocks_per_stage" in kwargs:
        kwargs["n_blocks_per_stage"] = [1] + [2] * (stages - 1)
    kwargs["n_conv_per_stage_decoder"] = kwargs["n_conv_per_stage_decoder"][: stages - 1]


def _fit_patch(patch: list[int], strides: list[list[int]], limit: list[int]) -> list[int]:
    """The largest patch <= ``limit`` divisible by the total stride of every axis."""
    total = np.prod(np.array(strides), axis=0)
    return [
        max(int(t), int(min(p, m) // t * t)) for p, m, t in zip(patch, limit, total, strict=True)
    ]


def _add_cascade(plans: dict) -> None:
    """A 3d_lowres (half the in-plane resolution) and a 3d_cascade_fullres after it.

    nnU-Net's planner only plans a cascade for large images; its own integration tests add one to
    small datasets the same way (a lowres configuration with its own data identifier and
    next_stage, and a cascade configuration inheriting 3d_fullres with previous_stage).
    """
    fullres = plans["configurations"]["3d_fullres"]
    lowres = json.loads(json.dumps(fullres))
    lowres["data_identifier"] = "nnUNetPlans_3d_lowres"
    lowres["spacing"] = [fullres["spacing"][0], *(2 * s for s in fullres["spacing"][1:])]
    lowres["median_image_size_in_voxels"] = [
        fullres["median_image_size_in_voxels"][0],
        *(m / 2 for m in fullres["median_image_size_in_voxels"][1:]),
    ]
    lowres["patch_size"] = [fullres["patch_size"][0], 12, 12]
    lowres["next_stage"] = "3d_cascade_fullres"
    plans["configurations"]["3d_lowres"] = lowres
    plans["configurations"]["3d_cascade_fullres"] = {
        "inherits_from": "3d_fullres",
        "previous_stage": "3d_lowres",
    }


def shrink_plans(plans_file: Path) -> None:
    """Few stages and features, small patch and batch: a checkpoint of a few hundred KB."""
    plans = json.loads(plans_file.read_text())
    kept = {}
    for name in ("2d", "3d_fullres"):
        config = plans["configurations"].get(name)
        if config is None:
            continue
        architecture = config["architecture"]
        stages = 3
        _shrink_architecture(architecture, stages)
        limit = [16, 20] if name == "2d" else [8, 16, 20]
        config["patch_size"] = _fit_patch(
            config["patch_size"], architecture["arch_kwargs"]["strides"], limit
        )
        config["batch_size"] = 4 if name == "2d" else 2
        kept[name] = config
    plans["configurations"] = kept
    if plans["plans_name"] == "nnUNetPlans":
        _add_cascade(plans)
    plans_file.write_text(json.dumps(plans, indent=4))


def _run(command: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT)


def plan(venv_bin: Path, preprocessed: Path, log: Path) -> None:
    planners = sorted({(p, planner) for p, planner, _, _, _ in MODELS})
    _run([str(venv_bin / "nnUNetv2_extract_fingerprint"), "-d", str(DATASET_ID), "-np", "1"], log)
    for plans_name, planner in planners:
        configs = PREPROCESSED[plans_name]
        _run(
            [str(venv_bin / "nnUNetv2_plan_experiment"), "-d", str(DATASET_ID), "-pl", planner], log
        )
        shrink_plans(preprocessed / DATASET / f"{plans_name}.json")
        preprocess = [str(venv_bin / "nnUNetv2_preprocess"), "-d", str(DATASET_ID)]
        options = ["-plans_name", plans_name, "-c", *configs, "-np", *["1"] * len(configs)]
        _run([*preprocess, *options], log)


def _trainer_classes() -> dict[str, type]:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import (
        nnUNetTrainer_5epochs,
    )

    return {"nnUNetTrainer": nnUNetTrainer, "nnUNetTrainer_5epochs": nnUNetTrainer_5epochs}


def train(preprocessed: Path, epochs: int, iterations: int) -> None:
    """Each model as ``nnUNetv2_train`` would, with the epoch and iteration budget given."""
    trainers = _trainer_classes()
    torch.manual_seed(0)
    dataset_json = json.loads((preprocessed / DATASET / "dataset.json").read_text())
    for plans_name, _, configuration, trainer_name, fold in MODELS:
        plans = json.loads((preprocessed / DATASET / f"{plans_name}.json").read_text())
        plans["continue_training"] = False  # nnUNetv2_train adds this key before building it
        trainer = trainers[trainer_name](
            plans, configuration, fold, dataset_json, device=torch.device("cpu")
        )
        trainer.num_epochs = epochs
        trainer.num_iterations_per_epoch = iterations
        trainer.num_val_iterations_per_epoch = 4
        trainer.run_training()
        if configuration == "3d_lowres":  # writes predicted_next_stage for the cascade
            trainer.perform_actual_validation(False)


def _model_name(plans_name: str, configuration: str, trainer_name: str) -> str:
    return f"{trainer_name}__{plans_name}__{configuration}"


def _prediction_runs() -> list[tuple[str, str, dict]]:
    """(output name, model folder name, options) of every nnUNetv2_predict run, in order."""
    runs = []
    for plans_name, _, configuration, trainer_name, fold in MODELS:
        name = _model_name(plans_name, configuration, trainer_name)
        options = {"fold": fold, "probabilities": configuration != "3d_lowres"}
        if configuration == "3d_cascade_fullres":
            options["previous"] = _model_name(plans_name, "3d_lowres", trainer_name)
        runs.append((name, name, options))
    # The plain model again with nnU-Net's other flags: best checkpoint, no TTA, another step.
    other = {"fold": 0, "checkpoint": "checkpoint_best.pth", "tta": False, "step": 0.75}
    runs.append((f"{runs[0][0]}__best_notta_step075", runs[0][1], other))
    return runs


def predict(results: Path, tests: Path, predictions: Path) -> None:
    """What ``nnUNetv2_predict -f F -device cpu -npp 0 -nps 0 ...`` runs, called in-process.

    nnunetv2 finds the trainer class by importing every trainer module in turn, and its Primus
    trainers need timm/torchvision, which do not import beside this CPU torch wheel; so the class
    is handed over directly. Everything else is nnunetv2's own predictor.
    """
    from nnunetv2.inference import predict_from_raw_data
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    classes = _trainer_classes()
    predict_from_raw_data.recursive_find_trainer_class_by_name = classes.__getitem__
    for name, folder, options in _prediction_runs():
        (predictions / name).mkdir(parents=True, exist_ok=True)
        predictor = nnUNetPredictor(
            tile_step_size=options.get("step", 0.5),
            use_mirroring=options.get("tta", True),
            device=torch.device("cpu"),
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(
            str(results / DATASET / folder),
            (options["fold"],),
            options.get("checkpoint", "checkpoint_final.pth"),
        )
        previous = options.get("previous")
        predictor.predict_from_files_sequential(
            str(tests),
            str(predictions / name),
            save_probabilities=options.get("probabilities", False),
            folder_with_segs_from_prev_stage=str(predictions / previous) if previous else None,
        )


# The models find_best_configuration chooses between (fold 0 only: the fixture has no other folds).
SELECTION = ("3d_fullres", "2d")
SELECTION_FOLDS = (0,)


def select(preprocessed: Path, predictions: Path) -> None:
    """nnU-Net's model selection and its recommended inference, with nnunetv2's own functions.

    ``nnUNetv2_train 990 C 0 --val --npz`` (the final validation the short trainings skipped),
    ``nnUNetv2_find_best_configuration 990 -c 3d_fullres 2d -f 0`` (writes
    inference_information.json and postprocessing.json/.pkl), then what its
    inference_instructions.txt says for the test images: ensemble the chosen models' predictions
    (``nnUNetv2_ensemble``) if it chose an ensemble, and apply the post-processing
    (``nnUNetv2_apply_postprocessing``) into ``predictions/recommended``.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_pickle
    from nnunetv2.ensembling.ensemble import ensemble_folders
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing_to_folder

    trainer_class = _trainer_classes()["nnUNetTrainer"]
    dataset_json = json.loads((preprocessed / DATASET / "dataset.json").read_text())
    plans = json.loads((preprocessed / DATASET / "nnUNetPlans.json").read_text())
    for configuration in SELECTION:
        trainer = trainer_class(
            {**plans, "continue_training": False},
            configuration,
            0,
            dataset_json,
            device=torch.device("cpu"),
        )
        trainer.load_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
        trainer.perform_actual_validation(True)
    models = [
        {"plans": "nnUNetPlans", "configuration": c, "trainer": "nnUNetTrainer"} for c in SELECTION
    ]
    info = find_best_configuration(DATASET, models, num_processes=1, folds=SELECTION_FOLDS)
    best = info["best_model_or_ensemble"]
    chosen = [
        predictions / _model_name(m["plans_identifier"], m["configuration"], m["trainer"])
        for m in best["selected_model_or_models"]
    ]
    source = chosen[0]
    if len(chosen) > 1:
        source = predictions / "recommended_ensemble"
        ensemble_folders([str(f) for f in chosen], str(source), num_processes=1)
    functions, kwargs = load_pickle(best["postprocessing_file"])
    apply_postprocessing_to_folder(
        str(source),
        str(predictions / "recommended"),
        functions,
        kwargs,
        plans_file_or_dict=best["some_plans_file"],
        num_processes=1,
    )


def export(work: Path) -> None:
    """``nnUNetv2_export_model_to_zip -d 990 -c 3d_fullres 2d -f 0``; keeps only its member list.

    The zip itself (progress plots included) is too large to commit, so ``export_members.json``
    records what nnunetv2 puts into one, and the tests build a zip with those names.
    """
    from nnunetv2.model_sharing.model_export import export_pretrained_model

    target = work / "export.zip"
    export_pretrained_model(DATASET, str(target), configurations=SELECTION, folds=SELECTION_FOLDS)
    with zipfile.ZipFile(target) as archive:
        names = [info.filename for info in archive.infolist()]
    (work / "export_members.json").write_text(json.dumps(names, indent=2) + "\n")


def manifest(work: Path, epochs: int, iterations: int) -> None:
    record = {
        "nnunetv2": version("nnunetv2"),
        "dynamic_network_architectures": version("dynamic_network_architectures"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "dataset": DATASET,
        "models": [
            {"plans": p, "planner": pl, "configuration": c, "trainer": t, "fold": f}
            for p, pl, c, t, f in MODELS
        ],
        "predictions": [
            {"output": name, "model": folder, **options}
            for name, folder, options in _prediction_runs()
        ],
        "selection": {
            "configurations": list(SELECTION),
            "folds": list(SELECTION_FOLDS),
            "recommended_inference": "predictions/recommended",
        },
        "epochs": epochs,
        "iterations_per_epoch": iterations,
        "validation_iterations_per_epoch": 4,
        "device": "cpu",
    }
    (work / "manifest.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="work folder (raw, preprocessed, results, ...)")
    steps = ("dataset", "plan", "train", "predict", "select", "export", "manifest")
    parser.add_argument("step", choices=steps)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iterations-per-epoch", type=int, default=25)
    args = parser.parse_args()
    work = args.work.resolve()
    venv_bin = Path(sys.executable).parent
    log = work / "fixture.log"
    if args.step == "dataset":
        make_dataset(work / "raw", work / "imagesTs")
    elif args.step == "plan":
        plan(venv_bin, work / "preprocessed", log)
    elif args.step == "train":
        train(work / "preprocessed", args.epochs, args.iterations_per_epoch)
    elif args.step == "predict":
        predict(work / "results", work / "imagesTs", work / "predictions")
    elif args.step == "select":
        select(work / "preprocessed", work / "predictions")
    elif args.step == "export":
        export(work)
    else:
        manifest(work, args.epochs, args.iterations_per_epoch)


if __name__ == "__main__":
    main()
