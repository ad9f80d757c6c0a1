"""The engine's synthetic demo data in Slicer: try AutoSeg without data, and the self-tests.

The cases come from the engine's own generator (``autoseg.synthetic`` with ``DEMO_SPEC``, the data
``autoseg demo`` trains on), written once into a cache folder and loaded from there: nothing is
downloaded, and a second click reuses the files. The demo spec is small (16 x 48 x 48 voxels), so a
model that learns both classes trains in minutes on a CPU, which makes it the data on which the
Train panel's help explains the annotation loop.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from autoseg.dataset import IMAGES_DIR, LABELS_DIR
from autoseg.paths import dataset_folder_name
from autoseg.synthetic import DEMO_SPEC, LABELS, make_synthetic_dataset
from AutoSegCoreLib.case_loading import LoadedCase, load_case
from AutoSegCoreLib.process_runner import EngineProcess, ProcessEvent, failure_message

DEMO_DATASET_ID = 990
DEMO_DATASET_NAME = "AutoSegDemo"
#: Enough cases to train a fold and to keep some back for "segment a new volume".
DEMO_NUM_CASES = 8
SEGMENT_NAMES = tuple(name for name, value in LABELS.items() if value)
SAMPLE_NAME = "AutoSeg synthetic CT"
STEP_TIMEOUT_S = 600.0

Tick = Callable[[str], None]


def demo_dataset(cache_root: Path) -> Path:
    """``cache_root/Dataset990_AutoSegDemo``, generated on the first call (about a second)."""
    folder = Path(cache_root) / dataset_folder_name(DEMO_DATASET_ID, DEMO_DATASET_NAME)
    if not (folder / "dataset.json").is_file():
        make_synthetic_dataset(
            Path(cache_root),
            DEMO_DATASET_ID,
            DEMO_DATASET_NAME,
            num_cases=DEMO_NUM_CASES,
            spec=DEMO_SPEC,
            overwrite=folder.exists(),
        )
    return folder


def demo_case_id(index: int) -> str:
    """The generator's name of training case ``index``."""
    return f"case_{index:03d}"


def load_demo_case(cache_root: Path, index: int = 0, *, with_labels: bool = True) -> LoadedCase:
    """Synthetic training case ``index`` as a volume (and its segmentation) in the scene."""
    folder = demo_dataset(cache_root)
    case_id = demo_case_id(index)
    ending = DEMO_SPEC.file_ending
    image = folder / IMAGES_DIR / f"{case_id}_0000{ending}"
    label = folder / LABELS_DIR / f"{case_id}{ending}" if with_labels else None
    return load_case([image], label, LABELS, name=f"{SAMPLE_NAME} {index}")


def end_to_end_skip_reason() -> str:
    """Why an end-to-end self-test cannot run here ("" when it can): it needs torch."""
    if importlib.util.find_spec("torch") is not None:
        return ""
    return (
        "torch is not installed in this Python, so the end-to-end part (training and "
        "prediction) is skipped; the parts without torch ran. Install torch (the AutoSeg panels "
        "offer it, or the PyTorch extension) to run it."
    )


def _run_engine(python: str, args: list[str], on_tick: Tick | None) -> None:
    """One engine command to its end; RuntimeError with the engine's message when it fails."""
    process = EngineProcess.for_engine(python, args)
    deadline, events = time.monotonic() + STEP_TIMEOUT_S, list[ProcessEvent]()
    while process.is_running and time.monotonic() < deadline:
        events += process.poll_events()
        if on_tick is not None:
            on_tick(f"autoseg {args[0]}")
        time.sleep(0.2)
    if process.is_running:
        process.cancel()
        raise RuntimeError(f"autoseg {args[0]} did not finish within {STEP_TIMEOUT_S:.0f} s")
    events += process.collect_until_exit(timeout=10.0)
    if process.returncode != 0:
        lines = [str(e.payload) for e in events if e.kind in ("text", "stderr")][-10:]
        raise RuntimeError(failure_message(events) or "\n".join(lines) or "the engine failed")


def train_demo_model(
    cache_root: Path, work_folder: Path, python: str, *, on_tick: Tick | None = None
) -> Path:
    """A tiny model (fold ``all``, two iterations, CPU) on the demo cases; its model folder."""
    dataset = demo_dataset(cache_root)
    roots = ["--preprocessed", str(work_folder / "preprocessed"), "--results"]
    roots.append(str(work_folder / "results"))
    plan = ["plan_and_preprocess", "-d", dataset.name, "-c", "3d_fullres", "--raw"]
    _run_engine(python, [*plan, str(dataset.parent), *roots], on_tick)
    train = ["train", dataset.name, "3d_fullres", "all", "-device", "cpu", "--epochs", "1"]
    train += ["--iterations-per-epoch", "2", "--set", "val_iterations=2"]
    _run_engine(python, [*train, *roots], on_tick)
    configurations = (work_folder / "results" / dataset.name).glob("*__3d_fullres")
    return next(iter(sorted(configurations)))
