"""Benchmark: fingerprint + planning and preprocessing, on the shared hippocampus data and the demo data.

Prints wall time, cases/s and peak memory (this process and its worker processes) per stage. For
scale: the reference implementation needs about 34 s for fingerprint + planning of the 100
hippocampus cases on a 2-core machine.

    python bench/preprocess.py [--processes N] [--configurations 2d 3d_fullres]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autoseg.paths import DataRoots
from autoseg.planning import PlannerOptions
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)
from autoseg.synthetic import make_synthetic_dataset
from peak_memory import peak_rss_mb

SHARED_RAW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def timed(label: str, cases: int, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    own, children = peak_rss_mb(), peak_rss_mb(children=True)
    print(
        f"{label:<38} {seconds:7.2f} s {cases / seconds:8.1f} cases/s "
        f"peak RSS {own:6.0f} MB (workers {children:5.0f} MB)"
    )


def bench_dataset(name: str, roots: DataRoots, processes: int, configurations: list[str]) -> None:
    folders = DatasetFolders.resolve(name, roots)
    cases = sum(1 for _ in (folders.raw / "labelsTr").iterdir())
    print(f"\n{folders.name}: {cases} cases, {processes} processes")

    def fingerprint_and_plan() -> None:
        fingerprint_dataset(folders, processes, clean=True)
        plan_dataset(folders, PlannerOptions())

    timed("fingerprint + plan", cases, fingerprint_and_plan)
    for configuration in configurations:
        timed(
            f"preprocess {configuration}",
            cases,
            lambda c=configuration: preprocess_configurations(
                folders, "AutoSegPlans", [c], processes, clean=True
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--configurations", nargs="+", default=["2d", "3d_fullres"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="autoseg-bench-"))
    try:
        if (SHARED_RAW / "Dataset004_Hippocampus").is_dir():
            roots = DataRoots(raw=SHARED_RAW.resolve(), preprocessed=work / "hippocampus")
            bench_dataset("Dataset004_Hippocampus", roots, args.processes, args.configurations)
        else:
            print(f"(skipping hippocampus: {SHARED_RAW} not found)")
        demo = DataRoots(raw=work / "raw", preprocessed=work / "demo")
        make_synthetic_dataset(demo.raw, dataset_id=900, num_cases=20)  # type: ignore[arg-type]
        bench_dataset("Dataset900_DemoCT", demo, args.processes, args.configurations)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
