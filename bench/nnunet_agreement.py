"""How closely AutoSeg's predictions with an nnU-Net v2 model folder match nnunetv2's own.

Predicts every case of IMAGES with the nnU-Net model folder (AutoSeg's loader, no nnunetv2 needed)
and compares with the predictions nnunetv2 wrote for the same images (REFERENCE: CASE<ending> and,
when present, CASE.npz probabilities): the fraction of voxels with the same label per case and over
all cases, and the largest and mean absolute probability difference. Prints one JSON line per case
and one summary line.

    python bench/nnunet_agreement.py MODEL_FOLDER IMAGES REFERENCE [--precision fp32|auto]
        [-f 0 ...] [-chk checkpoint_final.pth] [-step_size 0.5] [--disable_tta]
        [--previous FOLDER]   (cascade: the previous stage's segmentations)

On the committed fixture, e.g.:
    python bench/nnunet_agreement.py Testing/data/nnunet_reference/results/Dataset990_AutoSegInterop/\
nnUNetTrainer__nnUNetPlans__3d_fullres Testing/data/nnunet_reference/imagesTs \
Testing/data/nnunet_reference/predictions/nnUNetTrainer__nnUNetPlans__3d_fullres --precision fp32
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from autoseg.image_io import choose_reader_writer
from autoseg.inference.case_files import find_input_cases
from autoseg.inference.model_folder import ModelFolder
from autoseg.inference.predictor import PredictionOptions, Predictor


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "auto"))
    parser.add_argument("-f", dest="folds", nargs="+", default=None)
    parser.add_argument("-chk", dest="checkpoint", default="checkpoint_final.pth")
    parser.add_argument("-step_size", type=float, default=0.5)
    parser.add_argument("--disable_tta", action="store_true")
    parser.add_argument("--previous", type=Path, default=None)
    parser.add_argument("-device", default="cpu")
    return parser.parse_args()


def _compare(result, reference: Path, case_id: str, ending: str, reader) -> dict:
    labels = reader.read_seg(reference / f"{case_id}{ending}")[0][0]
    row = {"case": case_id, "voxels": int(labels.size)}
    row["same"] = int(np.sum(result.segmentation == labels))
    row["agreement"] = round(row["same"] / labels.size, 6)
    npz = reference / f"{case_id}.npz"
    if result.probabilities is not None and npz.is_file():
        with np.load(npz) as data:
            difference = np.abs(result.probabilities - data["probabilities"])
        row["probability_max_difference"] = float(difference.max())
        row["probability_mean_difference"] = float(difference.mean())
    return row


def main() -> None:
    args = _arguments()
    model = ModelFolder.open(args.model, args.folds, args.checkpoint)
    options = PredictionOptions(
        step=args.step_size,
        mirror_tta=not args.disable_tta,
        device=args.device,
        save_probabilities=any(args.reference.glob("*.npz")),
        precision=args.precision,
    )
    predictor = Predictor.from_model_folder(model, options)
    ending = model.dataset.file_ending
    reader = choose_reader_writer(ending, override=model.plans.image_reader_writer)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for case_id, files in find_input_cases(args.images, model.dataset.num_channels, ending):
            previous = None if args.previous is None else args.previous / f"{case_id}{ending}"
            target = Path(scratch) / f"{case_id}{ending}"
            result = predictor.predict_files(files, target, previous_segmentation_file=previous)
            rows.append(_compare(result, args.reference, case_id, ending, reader))
            print(json.dumps(rows[-1]))
    same, total = sum(r["same"] for r in rows), sum(r["voxels"] for r in rows)
    summary = {
        "model": model.path.name,
        "precision": args.precision,
        "cases": len(rows),
        "overall_agreement": round(same / total, 6),
        "worst_case_agreement": min(r["agreement"] for r in rows),
        "mean_case_agreement": round(sum(r["agreement"] for r in rows) / len(rows), 6),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
