"""Benchmark: the annotation loop's warm start on the shared hippocampus data (issue 14).

Why: the loop's promise is that adding cases to a model and improving it by a warm start is
faster than training again from scratch, without costing Dice. Three arms, 3d_fullres, all scored
on the same held-out cases that no arm trains on:

  A  trained from scratch on TRAIN cases (fold 0 of a split this script writes: TRAIN for
     training, the held-out cases for validation);
  B  A improved with ADDED more cases as a user would: the dataset grows (the new cases join fold
     0's training set, its validation set stays), ``plan_and_preprocess --plans-from A``
     (preprocesses only the new cases), ``train --from-model A`` (A is kept as a version, the
     fine-tuning learning rate applies, the before/after comparison is written);
  C  trained from scratch on all TRAIN + ADDED cases for A's + B's iterations together, on the same
     plans and preprocessed data (its own results folder).

Prints Dice per label and the mean on the held-out cases for A, B and C, the before/after
comparison on the added cases, and wall times (each command, and the training loops alone), and
writes everything to a JSON summary. The cases are drawn from ../shared/data/Dataset004_Hippocampus
with a seeded shuffle; the derived dataset is made of symbolic links in the work folder (the
shared data are never copied or changed). Every step is an ``autoseg`` command of this checkout
(``python -m autoseg``), its output in WORK/logs/.

The default budget (A 20 x 20 = 400 iterations, B the fine-tuning default of 10 epochs = 200,
C 600; the 40-case plans train batches of 2) is sized for about 25 minutes on a quiet 2-core CPU
with bf16 (README, "Training speed"); run it with ``nice -n 19`` when no other training runs, as
wall times under contention mean little. A CPU shared with other work can be ten times slower.

    python bench/warm_start.py [--work DIR] [--epochs-a 20] [--epochs-b N] [--lr-b LR]
        [--iterations-per-epoch 20] [--val-iterations 4] [--train-cases 20] [--added-cases 20]
        [--validation-cases 20] [--device cpu] [--seed 0] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.dataset import DATASET_JSON, IMAGES_DIR
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.results_layout import (
    VERSIONS_FOLDER,
    fold_folder_name,
    model_folder_name,
)
from autoseg.training.comparison import COMPARISON_FILE
from autoseg.training.job import TRAINER_NAME
from autoseg.training.run_log import EVENTS_FILE
from autoseg.training.settings import SETTINGS_FILE
from autoseg.training.splits import SPLITS_FILE
from autoseg.training.validation import SUMMARY_FILE, VALIDATION_FOLDER

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "Dataset004_Hippocampus"
DATASET = "Dataset904_HippocampusWarmStart"
CONFIGURATION = "3d_fullres"
FOLD = "0"
LABELS_DIR = "labelsTr"
CHANNEL_SUFFIX = "_0000"


class BenchError(Exception):
    """A step failed or the input is wrong; main prints it as one line."""


@dataclass(frozen=True)
class Cases:
    """The held-out validation cases and the two training batches, disjoint."""

    validation: list[str]
    train: list[str]
    added: list[str]


@dataclass
class Workspace:
    """The work folder's data roots and the step logs."""

    root: Path
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed"

    def results(self, arm: str) -> Path:
        return self.root / ("results_scratch" if arm == "C" else "results")

    def fold_dir(self, arm: str) -> Path:
        model = model_folder_name(TRAINER_NAME, DEFAULT_PLANS_NAME, CONFIGURATION)
        return self.results(arm) / DATASET / model / fold_folder_name(FOLD)


# ------------------------------------------------------------------------------ the data


def shared_case_ids(data: Path, file_ending: str) -> list[str]:
    """The shared dataset's case ids, sorted (from its label files)."""
    return sorted(
        p.name.removesuffix(file_ending) for p in (data / LABELS_DIR).glob(f"*{file_ending}")
    )


def choose_cases(ids: list[str], args: argparse.Namespace) -> Cases:
    """Seeded shuffle, then validation, training and added cases in that order."""
    needed = args.validation_cases + args.train_cases + args.added_cases
    if needed > len(ids):
        raise BenchError(
            f"{SHARED}: {len(ids)} cases, {needed} needed. Fix: lower --train-cases, "
            "--added-cases or --validation-cases."
        )
    order = random.Random(args.seed).sample(ids, needed)
    first, second = args.validation_cases, args.validation_cases + args.train_cases
    return Cases(sorted(order[:first]), sorted(order[first:second]), sorted(order[second:]))


def link_cases(data: Path, dataset: Path, cases: list[str], file_ending: str) -> None:
    """Symbolic links to the shared image and label files of ``cases``."""
    for case in cases:
        image = f"{case}{CHANNEL_SUFFIX}{file_ending}"
        (dataset / IMAGES_DIR / image).symlink_to((data / IMAGES_DIR / image).resolve())
        label = f"{case}{file_ending}"
        (dataset / LABELS_DIR / label).symlink_to((data / LABELS_DIR / label).resolve())


def write_dataset_json(data: Path, dataset: Path, count: int) -> None:
    """The shared dataset.json with this dataset's case count and a note of what it is."""
    description = json.loads((data / DATASET_JSON).read_text(encoding="utf-8"))
    description["numTraining"] = count
    description["description"] = "bench/warm_start.py: cases linked from Dataset004_Hippocampus"
    (dataset / DATASET_JSON).write_text(json.dumps(description, indent=2), encoding="utf-8")


def read_file_ending(data: Path) -> str:
    try:
        return json.loads((data / DATASET_JSON).read_text(encoding="utf-8"))["file_ending"]
    except (OSError, ValueError, KeyError) as error:
        raise BenchError(
            f"{data / DATASET_JSON}: cannot be read ({error}). Fix: point --data at "
            "Dataset004_Hippocampus."
        ) from None


# ------------------------------------------------------------------------------ the steps


def autoseg(work: Workspace, step: str, arguments: list[str]) -> float:
    """Run ``python -m autoseg ARGUMENTS`` with the output in WORK/logs/STEP.log; its wall time."""
    log = work.root / "logs" / f"{step}.log"
    log.parent.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "autoseg", *arguments]
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as output:
        result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8").strip().splitlines()[-1:] or ["(no output)"]
        raise BenchError(f"step '{step}' failed (exit {result.returncode}): {tail[0]} (see {log})")
    work.steps.append({"step": step, "command": " ".join(command[1:]), "seconds": seconds})
    print(f"  {step:<24} {seconds:7.1f} s", flush=True)
    return seconds


def roots(work: Workspace, arm: str) -> list[str]:
    return [
        "--raw", str(work.raw),
        "--preprocessed", str(work.preprocessed),
        "--results", str(work.results(arm)),
    ]  # fmt: skip


def plan(work: Workspace, step: str, extra: list[str]) -> float:
    arguments = ["plan_and_preprocess", "-d", DATASET, "-c", CONFIGURATION, "--progress", "none"]
    return autoseg(work, step, [*arguments, *extra, *roots(work, "A")])


def train(
    work: Workspace, arm: str, epochs: int | None, args: argparse.Namespace, extra: list[str]
) -> float:
    """``autoseg train`` of one arm; ``epochs`` None leaves the engine's default (B: the
    fine-tuning schedule, 10 % of A's epochs, at least 10)."""
    arguments = [
        "train", DATASET, CONFIGURATION, FOLD,
        *(["--epochs", str(epochs)] if epochs is not None else []),
        "--iterations-per-epoch", str(args.iterations_per_epoch),
        "--val-iterations", str(args.val_iterations),
        "--seed", str(args.seed),
        "--progress", "none",
    ]  # fmt: skip
    if args.device:
        arguments += ["-device", args.device]
    return autoseg(work, f"train_{arm}", [*arguments, *extra, *roots(work, arm)])


def write_split(work: Workspace, cases: Cases) -> None:
    """Fold 0: the first training cases and the held-out ones. Cases added later join its
    training set and leave the validation set as it is (training/splits.py)."""
    path = work.preprocessed / DATASET / SPLITS_FILE
    path.write_text(json.dumps([{"train": cases.train, "val": cases.validation}]), "utf-8")


# ------------------------------------------------------------------------------ the figures


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BenchError(f"{path}: cannot be read ({error})") from None


def label_names(work: Workspace) -> dict[str, str]:
    labels = read_json(work.raw / DATASET / DATASET_JSON)["labels"]
    return {str(value): name for name, value in labels.items() if value != 0}


def validation_dice(fold_dir: Path, names: dict[str, str]) -> dict[str, Any]:
    """Dice per label name and the mean foreground Dice of a fold's final validation."""
    summary = read_json(fold_dir / VALIDATION_FOLDER / SUMMARY_FILE)
    per_label = {names[k]: summary["mean"][k]["Dice"] for k in names if k in summary["mean"]}
    return {"Dice": per_label, "mean": summary["foreground_mean"]["Dice"]}


def run_events(fold_dir: Path) -> list[dict[str, Any]]:
    lines = (fold_dir / EVENTS_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def loop_figures(fold_dir: Path) -> dict[str, Any]:
    """From the last run's events: the training loop's seconds (start event to the final
    checkpoint), the final validation's (to its summary file) and the before/after comparison's
    (to its event), the first and last epochs' pseudo Dice."""
    events = run_events(fold_dir)
    last_start = max(i for i, e in enumerate(events) if e["event"] == "start")
    events = events[last_start:]
    final = [e for e in events if e["event"] == "checkpoint" and e["kind"].endswith("final")]
    epochs = [e for e in events if e["event"] == "epoch"]
    validated = (fold_dir / VALIDATION_FOLDER / SUMMARY_FILE).stat().st_mtime
    compared = [e["time"] for e in events if e["event"] == "comparison"]
    return {
        "training_loop_seconds": final[-1]["time"] - events[0]["time"] if final else None,
        "final_validation_seconds": validated - final[-1]["time"] if final else None,
        "comparison_seconds": compared[-1] - validated if compared else None,
        "first_epoch_pseudo_dice": epochs[0]["mean_fg_dice"] if epochs else None,
        "last_epoch_pseudo_dice": epochs[-1]["mean_fg_dice"] if epochs else None,
        "epochs": events[0]["epochs"],
        "iterations": events[0]["epochs"] * events[0]["iterations_per_epoch"],
        "initial_lr": read_json(fold_dir / SETTINGS_FILE).get("initial_lr"),
    }


def arm_figures(work: Workspace, arm: str, command_seconds: float) -> dict[str, Any]:
    fold_dir = work.fold_dir(arm)
    names = label_names(work)
    return {
        "validation": validation_dice(fold_dir, names),
        "command_seconds": command_seconds,
        **loop_figures(fold_dir),
    }


def comparison_figures(work: Workspace) -> dict[str, Any]:
    """B's before/after file: A ('previous') and B ('new') on the added and validation cases."""
    comparison = read_json(work.fold_dir("B") / VALIDATION_FOLDER / COMPARISON_FILE)
    return {
        name: {model: entry[model] for model in ("previous", "new")}
        | {"cases": len(entry["cases"] or [])}
        for name, entry in comparison["case_sets"].items()
    }


# ------------------------------------------------------------------------------ the benchmark


def make_workspace(folder: Path | None) -> Workspace:
    """A new work folder, or the given one if it is empty (a used one would hold models that
    the new run would keep as versions and mix into the figures)."""
    if folder is None:
        return Workspace(Path(tempfile.mkdtemp(prefix="autoseg_warm_start_")))
    if folder.exists() and any(folder.iterdir()):
        raise BenchError(
            f"{folder}: the work folder is not empty. Fix: give a new or empty --work."
        )
    folder.mkdir(parents=True, exist_ok=True)
    return Workspace(folder.resolve())


def grow_dataset(work: Workspace, data: Path, cases: list[str], count: int) -> None:
    """Link ``cases`` into the dataset (creating it) and set its case count to ``count``."""
    dataset = work.raw / DATASET
    for sub in (IMAGES_DIR, LABELS_DIR):
        (dataset / sub).mkdir(parents=True, exist_ok=True)
    file_ending = read_file_ending(data)
    link_cases(data, dataset, cases, file_ending)
    write_dataset_json(data, dataset, count)


def run_arms(work: Workspace, data: Path, cases: Cases, args: argparse.Namespace) -> dict[str, Any]:
    """A, then B from A on the grown dataset, then C from scratch on it; each arm's figures."""
    first = cases.validation + cases.train
    grow_dataset(work, data, first, len(first))
    plan(work, "plan_and_preprocess_A", [])
    write_split(work, cases)
    arms = {"A": arm_figures(work, "A", train(work, "A", args.epochs_a, args, []))}
    grow_dataset(work, data, cases.added, len(first) + len(cases.added))
    model_a = work.fold_dir("A").parent
    preprocess_b = plan(work, "plan_and_preprocess_B", ["--plans-from", str(model_a)])
    lr_b = ["--set", f"initial_lr={args.lr_b}"] if args.lr_b is not None else []
    seconds = train(work, "B", args.epochs_b, args, ["--from-model", str(model_a), *lr_b])
    arms["B"] = arm_figures(work, "B", seconds) | {"preprocess_seconds": preprocess_b}
    epochs_c = args.epochs_a + arms["B"]["epochs"]  # the same total budget as A + B
    arms["C"] = arm_figures(work, "C", train(work, "C", epochs_c, args, []))
    grown = len(cases.train) + len(cases.added)
    for arm, trained_on in (("A", len(cases.train)), ("B", grown), ("C", grown)):
        arms[arm]["training_cases"] = trained_on
    arms["B"]["versions_kept"] = sorted(p.name for p in (model_a / VERSIONS_FOLDER).iterdir())
    return arms


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def summarize_run(work: Workspace, cases: Cases, args: argparse.Namespace, arms: dict) -> dict:
    b, c = arms["B"], arms["C"]
    return {
        "command": "python bench/warm_start.py " + " ".join(sys.argv[1:]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "work": str(work.root),
        "cases": {"validation": cases.validation, "train": cases.train, "added": cases.added},
        "arms": arms,
        "before_after": comparison_figures(work),
        "b_vs_c": {
            "training_loop_ratio": _ratio(b["training_loop_seconds"], c["training_loop_seconds"]),
            "command_ratio": _ratio(b["command_seconds"], c["command_seconds"]),
            "with_preprocessing_ratio": _ratio(
                b["command_seconds"] + b["preprocess_seconds"], c["command_seconds"]
            ),
        },
        "steps": work.steps,
    }


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


TIME_COLUMNS = {
    "training_loop_seconds": "loop s",
    "final_validation_seconds": "valid. s",
    "comparison_seconds": "compare s",
    "command_seconds": "command s",
}


def print_arms(arms: dict[str, Any], cases: int) -> None:
    """One line per arm: what it trained on, its budget, its Dice and where its time went."""
    labels = list(arms["A"]["validation"]["Dice"])
    print(f"\nDice on the {cases} held-out validation cases (final validation of each arm):")
    heads = ["arm", "cases", "iterations", *labels, "mean", *TIME_COLUMNS.values()]
    print(" ".join(f"{h:>10}" for h in heads))
    for arm, figures in arms.items():
        dice = figures["validation"]
        cells = [
            arm,
            str(figures["training_cases"]),
            f"{figures['epochs']}x{figures['iterations'] // figures['epochs']}",
            *(_fmt(dice["Dice"][n]) for n in labels),
            _fmt(dice["mean"]),
            *(_fmt(figures[key], 0) for key in TIME_COLUMNS),
        ]
        print(" ".join(f"{c:>10}" for c in cells))


def print_report(summary: dict[str, Any]) -> None:
    arms = summary["arms"]
    print_arms(arms, len(summary["cases"]["validation"]))
    print("\nBefore/after (B's comparison.json), mean Dice A -> B:")
    for name, entry in summary["before_after"].items():
        means = [None if entry[m] is None else entry[m]["mean"] for m in ("previous", "new")]
        print(f"  {name:<11} {entry['cases']:>3} cases  {_fmt(means[0])} -> {_fmt(means[1])}")
    ratios, b = summary["b_vs_c"], arms["B"]
    print(
        f"\nWall time B / C: training loop {_fmt(ratios['training_loop_ratio'], 2)}x, train "
        f"command {_fmt(ratios['command_ratio'], 2)}x (B's includes the before/after "
        f"comparison), with B's preprocessing of the added cases ({_fmt(b['preprocess_seconds'], 0)}"
        f" s) {_fmt(ratios['with_preprocessing_ratio'], 2)}x"
    )
    print(
        f"B's first-epoch pseudo Dice {_fmt(b['first_epoch_pseudo_dice'])} (A's last "
        f"{_fmt(arms['A']['last_epoch_pseudo_dice'])}, C's first "
        f"{_fmt(arms['C']['first_epoch_pseudo_dice'])}); B's initial learning rate {b['initial_lr']}"
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=None, help="empty work folder (default: new temp)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON summary (default WORK/warm_start.json)"
    )
    parser.add_argument(
        "--data", type=Path, default=SHARED, help="the shared Dataset004_Hippocampus"
    )
    parser.add_argument("--epochs-a", type=int, default=20, help="A's epochs (C gets A's + B's)")
    parser.add_argument(
        "--epochs-b",
        type=int,
        default=None,
        help="B's epochs (default: the engine's fine-tuning default)",
    )
    parser.add_argument(
        "--lr-b",
        type=float,
        default=None,
        help="B's initial learning rate (default: the engine's fine-tuning default, 1e-3)",
    )
    parser.add_argument("--iterations-per-epoch", type=int, default=20)
    parser.add_argument(
        "--val-iterations", type=int, default=4, help="pseudo-Dice batches per epoch"
    )
    parser.add_argument("--train-cases", type=int, default=20)
    parser.add_argument("--added-cases", type=int, default=20)
    parser.add_argument("--validation-cases", type=int, default=20)
    parser.add_argument(
        "--device", default=None, help="-device of the trainings (default: engine's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="case draw and training seed")
    args = parser.parse_args()
    numbers = (
        "epochs_a",
        "epochs_b",
        "iterations_per_epoch",
        "train_cases",
        "added_cases",
        "validation_cases",
    )
    for name in numbers:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main() -> int:
    args = parse_arguments()
    try:
        if not (args.data / DATASET_JSON).is_file():
            raise BenchError(
                f"{args.data}: no {DATASET_JSON}. Fix: point --data at Dataset004_Hippocampus."
            )
        data = args.data.resolve()
        cases = choose_cases(shared_case_ids(data, read_file_ending(data)), args)
        work = make_workspace(args.work)
        print(f"Work folder {work.root}; steps (logs in {work.root / 'logs'}):", flush=True)
        summary = summarize_run(work, cases, args, run_arms(work, data, cases, args))
    except BenchError as error:
        print(f"warm_start: {error}", file=sys.stderr)
        return 1
    output = args.output or work.root / "warm_start.json"
    output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_report(summary)
    print(f"\nSummary written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
