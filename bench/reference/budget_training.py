"""Time the reference nnU-Net v2 trainer on a small budget, for comparison with `autoseg train`.

Runs only inside the separate virtual environment that ``run_reference_training.sh`` builds; AutoSeg
itself never imports nnU-Net. It drives the reference trainer through its public API the way its
``nnUNetv2_train -device cpu`` does (all cores as torch threads, its default augmentation workers),
with the epoch and iteration budget given, and prints where the time went: seconds per training
step and per validation step, per epoch, and for the final validation. Those are the figures the
training issue's wall-time target is measured against, on the machine at hand.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class StepClock:
    """Adds up the time spent inside one bound method of the trainer."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, method: Callable) -> Callable:
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed

    def mean(self) -> float:
        return self.seconds / max(self.calls, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "preprocessed", type=Path, help="the reference's preprocessed dataset folder"
    )
    parser.add_argument("configuration")
    parser.add_argument("fold", type=int)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations-per-epoch", type=int, default=25)
    parser.add_argument(
        "--validation-iterations", type=int, default=50, help="per epoch (the trainer's 50)"
    )
    parser.add_argument(
        "--plans", default="nnUNetPlans", help="plans name, e.g. nnUNetResEncUNetMPlans"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="instead of the plan's (a CPU budget)"
    )
    parser.add_argument(
        "--continue",
        dest="continue_training",
        action="store_true",
        help="go on from the fold's checkpoint_final.pth up to --epochs (nnUNetv2_train --c)",
    )
    args = parser.parse_args()

    plans = json.loads((args.preprocessed / f"{args.plans}.json").read_text())
    if args.batch_size is not None:  # the network and the inference do not depend on it
        plans["configurations"][args.configuration]["batch_size"] = args.batch_size
    plans["continue_training"] = False  # the reference's entry point adds this key before use
    dataset_json = json.loads((args.preprocessed / "dataset.json").read_text())
    torch.set_num_threads(os.cpu_count() or 1)  # what nnUNetv2_train does for -device cpu
    trainer = nnUNetTrainer(
        plans, args.configuration, args.fold, dataset_json, device=torch.device("cpu")
    )
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations_per_epoch
    trainer.num_val_iterations_per_epoch = args.validation_iterations
    if args.continue_training:
        trainer.load_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
    train_clock, val_clock = StepClock(), StepClock()
    trainer.train_step = train_clock.wrap(trainer.train_step)
    trainer.validation_step = val_clock.wrap(trainer.validation_step)

    started = time.perf_counter()
    trainer.run_training()
    trained = time.perf_counter()
    trainer.perform_actual_validation(False)
    validated = time.perf_counter()

    epoch = (trained - started) / args.epochs
    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "iterations_per_epoch": args.iterations_per_epoch,
                "validation_iterations_per_epoch": trainer.num_val_iterations_per_epoch,
                "train_step_s": round(train_clock.mean(), 3),
                "validation_step_s": round(val_clock.mean(), 3),
                "epoch_s": round(epoch, 1),
                "final_validation_s": round(validated - trained, 1),
                "total_s": round(validated - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
