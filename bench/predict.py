"""Benchmark: seconds per case and peak memory of prediction, every backend side by side in one run.

Every scenario runs in its own Python process, so its peak RSS (``ru_maxrss``) is its own and the
"incl. start-up" figure contains interpreter start, imports and model loading, as a user sees it.
Backends are given as BACKEND:PRECISION (``torch:fp32`` is what AVX2 CPUs get today, ``torch:auto``
is bf16 autocast on CPUs with native bf16, ``openvino:auto`` is what ``--backend auto`` runs on the
CPU); runtimes that are not installed are left out with a note. A runtime converts its network once
(the first scenario's "load" includes it) and reuses the cache in the model folder afterwards.

- Hippocampus (3d_fullres): ``--model`` names a trained model folder; without it the shared
  Dataset004_Hippocampus is planned into a temporary folder (like bench/train_speed.py) and a
  model folder with random weights is built from the real plan (speed and memory only; Dice is
  printed when ``--model`` is given, on the validation cases of ``--splits`` if given).
  Full mode: mirroring TTA, step 0.5, every given fold. Fast mode (``autoseg predict --fast``):
  no TTA, step 0.75, the first fold. Label agreement with the torch fp32 run is printed per backend.
- CT-sized: one synthetic 512x512x300 volume (int16 HU, 0.8x0.8x1.5 mm) through a hand-made
  3d_fullres-like plan (6 stages, 32..320 features, patch 64x128x128 by default) with random
  weights, read from and written to .nii.gz, in fast mode. Each step's time and share is printed
  (read, preprocess, network, window, resample back, argmax, write; bench/predict_steps.py).
  Targets (issue 15): <= 120 s and <= 3 GB peak RSS on the 2-core CPU.

For scale, the reference implementation on the same 2-core machine
(bench/reference/run_reference_prediction.sh, one fold, TTA): 100 hippocampus cases in 322 s,
3.2 s per case including start-up, 809 MB peak; about 1.9 s per case of network passes.

The one command for the README table (on a quiet machine):

    python bench/predict.py

    python bench/predict.py [--model FOLDER] [--folds 0 1 ...] [--cases 5] [--splits FILE]
        [--device cpu|cuda] [--backends torch:fp32 torch:auto openvino:auto ...]
        [--ct-backends openvino:auto torch:auto] [--skip-hippocampus] [--skip-ct]
        [--ct-size 512 512 300] [--ct-patch 64 128 128] [--ct-step 0.75] [--ct-tta]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from peak_memory import peak_rss_mb
from predict_steps import PEAKS, print_steps, profiled_prediction

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
HIPPOCAMPUS = "Dataset004_Hippocampus"
MODEL_NAME = "AutoSegTrainer__AutoSegPlans__3d_fullres"
CT_SPACING_XYZ = (0.8, 0.8, 1.5)
HIPPOCAMPUS_BACKENDS = [
    "torch:fp32",
    "torch:auto",
    "openvino:fp32",
    "openvino:auto",
    "onnxruntime:fp32",
]
CT_BACKENDS = ["openvino:auto", "torch:auto"]
REFERENCE_BACKEND = "torch:fp32"  # what agreement is measured against
CT_MEMORY_TARGET_GB = 3.0
CT_SECONDS_TARGET = 120.0


# ------------------------------------------------------------------------------------ worker


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the model and predict the given cases; runs in its own process (see ``scenario``)."""
    import torch

    from autoseg.inference.predictor import PredictionOptions, Predictor

    started = time.perf_counter()
    backend, precision = spec["backend"].split(":")
    options = PredictionOptions(
        step=spec["step"],
        mirror_tta=spec["tta"],
        device=spec["device"],
        precision=precision,
        backend=backend,
    )
    predictor = Predictor.from_model_folder(Path(spec["model"]), options, spec["folds"])
    load_s = time.perf_counter() - started
    ending = predictor.model.dataset.file_ending
    seconds, steps = [], None
    for case_id, files in spec["cases"]:
        t0 = time.perf_counter()
        target = Path(spec["output"]) / f"{case_id}{ending}"
        if spec.get("profile"):
            steps = profiled_prediction(predictor, [Path(f) for f in files], target)
        else:
            predictor.predict_files([Path(f) for f in files], target)
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if predictor.device.type == "cuda" else None
    return {
        "load_s": load_s,
        "case_s": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "gpu_peak_mb": gpu_mb,
        "device": str(predictor.device),
        "runs": predictor.backend_description,
        "folds": list(predictor.model.folds),
        "steps": steps,
        "peaks": dict(PEAKS),
    }


def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in a fresh interpreter; adds the wall time including start-up."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"scenario {spec['name']} failed:\n{done.stdout}\n{done.stderr}")
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "wall_s": wall}


# ------------------------------------------------------------------------------ model folders


def _save_random_model(
    folder: Path, plans: dict[str, Any], dataset: dict[str, Any], folds: list[str]
) -> Path:
    """A model folder as training writes it, with random weights for every fold."""
    import torch

    from autoseg.checkpoint import FINAL, save_checkpoint
    from autoseg.labels import parse_labels
    from autoseg.network import build_network
    from autoseg.plans import Plans

    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    (folder / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    config = Plans.load(folder / "plans.json").configuration("3d_fullres")
    labels, _ = parse_labels(dataset["labels"], "dataset.json")
    for fold in folds:
        torch.manual_seed(int(fold) if fold.isdigit() else 0)
        network = build_network(
            config.architecture,
            len(dataset["channel_names"]),
            labels.num_segmentation_heads,
            deep_supervision=False,
        )
        state = {
            "network_weights": network.state_dict(),
            "configuration": "3d_fullres",
            "inference_allowed_mirroring_axes": [0, 1, 2],
        }
        save_checkpoint(folder / f"fold_{fold}" / FINAL, state)
    return folder


def hippocampus_plans(root: Path, data: Path) -> dict[str, Any]:
    """Fingerprint and plan the shared hippocampus data into ``root`` (no preprocessing)."""
    from autoseg.paths import DataRoots
    from autoseg.planning import PlannerOptions
    from autoseg.stages import DatasetFolders, fingerprint_dataset, plan_dataset

    roots = DataRoots(root / "raw", root / "preprocessed", root / "results")
    roots.raw.mkdir(parents=True)
    (roots.raw / HIPPOCAMPUS).symlink_to((data / HIPPOCAMPUS).resolve())
    folders = DatasetFolders.resolve(4, roots)
    fingerprint_dataset(folders, 2)
    plans = plan_dataset(folders, PlannerOptions())
    path = roots.preprocessed / HIPPOCAMPUS / f"{plans.plans_name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def ct_model(root: Path, template: dict[str, Any], args: argparse.Namespace) -> Path:
    """A hand-made 3d_fullres-like CT plan (no resampling for the benchmark volume)."""
    plans = json.loads(json.dumps(template))
    config = plans["configurations"]["3d_fullres"]
    stages = 6
    spacing = list(CT_SPACING_XYZ[::-1])  # numpy (z, y, x) order = the plan's axis order
    size = list(args.ct_size[::-1])
    config.update(
        patch_size=list(args.ct_patch),  # already in (z, y, x) order
        spacing=spacing,
        median_image_size_in_voxels=size,
        batch_size=2,
        normalization_schemes=["ZScore"],
        use_mask_for_norm=[False],
    )
    config["architecture"].update(
        features_per_stage=[32, 64, 128, 256, 320, 320],
        kernel_sizes=[[3, 3, 3]] * stages,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
        n_blocks_per_stage=[2] * stages,
        n_conv_per_stage_decoder=[2] * (stages - 1),
        n_stages=stages,
    )
    plans["transpose_forward"], plans["transpose_backward"] = [0, 1, 2], [0, 1, 2]
    plans["original_median_spacing_after_transp"] = spacing
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    return _save_random_model(root / "ct" / MODEL_NAME, plans, dataset, ["0"])


def write_ct_volume(path: Path, size_xyz: list[int]) -> Path:
    """A body-shaped int16 volume: -1000 HU air around an ellipse of noisy soft tissue."""
    import SimpleITK as sitk

    x, y, z = size_xyz
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:y, :x]
    body = ((yy - y / 2) / (0.4 * y)) ** 2 + ((xx - x / 2) / (0.45 * x)) ** 2 <= 1.0
    volume = np.full((z, y, x), -1000, dtype=np.int16)
    for k in range(z):  # slice by slice keeps this process small
        noise = rng.normal(40.0, 20.0, size=(y, x)).astype(np.int16)
        volume[k][body] = noise[body]
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(CT_SPACING_XYZ)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


# ---------------------------------------------------------------------------------- scenarios


def hippocampus_cases(data: Path, count: int, splits: Path | None, fold: str) -> list[Any]:
    """The first ``count`` cases (of the fold's validation cases when a splits file is given)."""
    from autoseg.inference.case_files import find_input_cases

    cases = find_input_cases(data / HIPPOCAMPUS / "imagesTr", 1, ".nii.gz")
    if splits is not None:
        held_out = set(json.loads(splits.read_text(encoding="utf-8"))[int(fold)]["val"])
        cases = [case for case in cases if case[0] in held_out]
    return [(case_id, [str(f) for f in files]) for case_id, files in cases[:count]]


def dice_of(prediction: Path, data: Path) -> float:
    from autoseg.dataset import load_dataset_json
    from autoseg.evaluation import evaluate_folders

    dataset = load_dataset_json(data / HIPPOCAMPUS / "dataset.json")
    summary = evaluate_folders(
        data / HIPPOCAMPUS / "labelsTr",
        prediction,
        dataset.labels,
        dataset.file_ending,
        allow_missing=True,
    )
    return float(summary["foreground_mean"]["Dice"])


def available(backends: list[str]) -> list[str]:
    """The BACKEND:PRECISION entries whose runtime is installed (the others with a note)."""
    from autoseg.inference.backends.base import RUNTIMES
    from autoseg.inference.backends.selection import runtime_installed

    kept = []
    for entry in backends:
        backend = entry.split(":")[0]
        if backend in RUNTIMES and not runtime_installed(backend):
            print(f"(skipping {entry}: {backend} is not installed; pip install 'autoseg[cpu]')")
            continue
        kept.append(entry)
    return kept


def label_agreement(folder: Path, reference: Path) -> float:
    """Fraction of voxels with the same label as the reference run, over all cases."""
    import SimpleITK as sitk

    same = total = 0
    for file in sorted(reference.glob("*.nii.gz")):
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / file.name)))
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(file)))
        same += int((ours == theirs).sum())
        total += theirs.size
    return same / total


def report(name: str, result: dict[str, Any], extra: str = "") -> None:
    seconds = result["case_s"]
    n = len(seconds)
    steady = seconds[1:] or seconds
    gpu = f", GPU peak {result['gpu_peak_mb']:.0f} MB" if result["gpu_peak_mb"] else ""
    print(
        f"{name:<34} {sum(seconds) / n:7.2f} s/case (steady {np.mean(steady):.2f}), "
        f"{result['wall_s'] / n:6.2f} incl. start-up, load {result['load_s']:.1f} s, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB{gpu}{extra}  [{result['runs']}]"
    )


def _hippocampus_model(args: argparse.Namespace, root: Path, data: Path) -> tuple[Path, list]:
    if args.model:
        model = Path(args.model)
        folds = args.folds or sorted(
            p.name.removeprefix("fold_")
            for p in model.glob("fold_*")
            if (p / "checkpoint_final.pth").is_file()
        )
        return model, folds
    plans = hippocampus_plans(root / "plan", data)
    dataset = json.loads((data / HIPPOCAMPUS / "dataset.json").read_text(encoding="utf-8"))
    folds = args.folds or ["0"]
    return _save_random_model(root / "hippo" / MODEL_NAME, plans, dataset, folds), folds


def bench_hippocampus(args: argparse.Namespace, root: Path, data: Path) -> dict[str, Any]:
    """Full and fast mode, every backend; returns the plans used (the CT plan starts from them)."""
    model, folds = _hippocampus_model(args, root, data)
    plans = json.loads((model / "plans.json").read_text(encoding="utf-8"))
    if args.skip_hippocampus:
        return plans
    splits = Path(args.splits) if args.splits else None
    cases = hippocampus_cases(data, args.cases, splits, folds[0])
    modes = {"full": (0.5, True, folds), "fast": (0.75, False, folds[:1])}
    for mode, (step, tta, mode_folds) in modes.items():
        print(f"hippocampus {mode} mode ({len(cases)} cases, folds {mode_folds}):")
        reference: tuple[Path, float] | None = None
        for backend in available(args.backends):
            output = root / f"hippo_{mode}_{backend.replace(':', '_')}"
            spec = {
                "name": f"hippocampus {mode} {backend}",
                "model": str(model),
                "folds": mode_folds,
                "step": step,
                "tta": tta,
                "device": args.device,
                "backend": backend,
                "cases": cases,
                "output": str(output),
            }
            result = scenario(spec)
            per_case = sum(result["case_s"]) / len(cases)
            extra = f", Dice {dice_of(output, data):.4f}" if args.model else ""
            if backend == REFERENCE_BACKEND:
                reference = (output, per_case)
            elif reference is not None:
                extra += (
                    f", {reference[1] / per_case:.2f}x torch fp32, labels equal "
                    f"{100 * label_agreement(output, reference[0]):.3f} %"
                )
            report(f"  {backend}", result, extra)
    return plans


def bench_ct(args: argparse.Namespace, root: Path, template: dict[str, Any]) -> None:
    model = ct_model(root, template, args)
    volume = write_ct_volume(root / "ct_0000.nii.gz", list(args.ct_size))
    size = "x".join(str(s) for s in args.ct_size)
    patch = "x".join(str(s) for s in args.ct_patch)
    print(f"CT {size} (patch {patch}, step {args.ct_step}, TTA {args.ct_tta}), one fold:")
    for backend in available(args.ct_backends):
        spec = {
            "name": f"CT {backend}",
            "model": str(model),
            "folds": ["0"],
            "step": args.ct_step,
            "tta": args.ct_tta,
            "device": args.device,
            "backend": backend,
            "cases": [("ct", [str(volume)])],
            "output": str(root / f"ct_out_{backend.replace(':', '_')}"),
            "profile": True,
        }
        result = scenario(spec)
        report(f"  {backend}", result)
        print_steps(result["steps"], result.get("peaks"))
        seconds, memory_gb = result["case_s"][0], result["peak_rss_mb"] / 1024
        verdict = (
            "meets"
            if seconds <= CT_SECONDS_TARGET and memory_gb <= CT_MEMORY_TARGET_GB
            else "MISSES"
        )
        print(
            f"    {seconds:.0f} s, peak RSS {memory_gb:.2f} GB: {verdict} the target "
            f"(<= {CT_SECONDS_TARGET:.0f} s, <= {CT_MEMORY_TARGET_GB:.0f} GB)"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="a trained hippocampus 3d_fullres model folder"
    )
    parser.add_argument("--folds", nargs="+", default=None, help="default: every trained fold")
    parser.add_argument("--cases", type=int, default=5, help="hippocampus cases to predict")
    parser.add_argument("--splits", default=None, help="splits_final.json: use validation cases")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backends", nargs="+", default=HIPPOCAMPUS_BACKENDS, help="BACKEND:PRECISION each"
    )
    parser.add_argument("--ct-backends", nargs="+", default=CT_BACKENDS, help="for the CT case")
    parser.add_argument("--data", default=str(SHARED), help="folder holding Dataset004_Hippocampus")
    parser.add_argument("--skip-hippocampus", action="store_true")
    parser.add_argument("--skip-ct", action="store_true")
    parser.add_argument("--ct-size", type=int, nargs=3, default=[512, 512, 300], help="x y z")
    parser.add_argument("--ct-patch", type=int, nargs=3, default=[64, 128, 128], help="z y x")
    parser.add_argument("--ct-step", type=float, default=0.75)
    parser.add_argument("--ct-tta", action="store_true", help="mirroring TTA for the CT volume")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        print("RESULT " + json.dumps(run_worker(json.loads(args.worker))))
        return
    data = Path(args.data)
    with tempfile.TemporaryDirectory(prefix="autoseg-bench-predict-") as tmp:
        root = Path(tmp)
        plans = bench_hippocampus(args, root, data)
        if not args.skip_ct:
            bench_ct(args, root, plans)


if __name__ == "__main__":
    main()
