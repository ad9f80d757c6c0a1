"""The whole Slicer workflow on synthetic volumes: MRML -> dataset -> training -> segmentation.

Shared by the headless end-to-end test (pytest with slicer-core) and the modules' self-tests
inside Slicer, so what a developer runs in Slicer is exactly what CI checks: three annotated
volumes become dataset cases through the Train module's logic, one fold is planned, preprocessed
and trained for a few iterations through the same process runner the module uses, and a fourth,
oblique volume is segmented through the Predict module's logic. It is the one place that uses
both modules' libraries, so they are imported where they are needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer

SEGMENT_NAMES = ("organ", "lesion")
SHAPE_KJI = (16, 24, 20)
DATASET_ID = 987
DATASET_NAME = "SlicerScenario"
TRAINING_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ScenarioModel:
    """What the training part produced."""

    dataset_folder: Path
    case_ids: tuple[str, ...]
    model_folder: Path
    fold_done: bool


def _ijk_to_ras(index: int, oblique: bool) -> np.ndarray:
    """Anisotropic spacing; oblique volumes are rotated 30 degrees with a flipped k axis."""
    spacing = np.diag([0.9, 0.8, 1.6])
    direction = np.eye(3)
    if oblique:
        angle = np.deg2rad(30.0)
        c, s = np.cos(angle), np.sin(angle)
        direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ spacing
    matrix[:3, 3] = (-10.0 + index, 5.0 - 2 * index, 3.0 * index)
    return matrix


def _masks(index: int) -> dict[str, np.ndarray]:
    """An ellipsoidal organ and a separate spherical lesion that move from case to case."""
    k, j, i = np.indices(SHAPE_KJI)
    shift = index % 3
    organ = ((k - 8) / 5.0) ** 2 + ((j - 9 - shift) / 6.0) ** 2 + ((i - 7) / 5.0) ** 2 <= 1.0
    lesion = (k - 8) ** 2 + (j - 17 + shift) ** 2 + (i - 14) ** 2 <= 9
    return {"organ": organ, "lesion": lesion & ~organ}


def add_synthetic_case(scene: object, index: int, *, oblique: bool = False) -> tuple:
    """A volume and its segmentation in ``scene``; segments are added in a case-dependent order."""
    masks = _masks(index)
    rng = np.random.default_rng(index)
    image = rng.normal(0.0, 20.0, SHAPE_KJI)
    image += 100.0 * masks["organ"] + 220.0 * masks["lesion"]
    volume = slicer.util.addVolumeFromArray(
        image.astype(np.int16), _ijk_to_ras(index, oblique), name=f"synthetic {index}"
    )
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"synthetic {index} labels")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    names = SEGMENT_NAMES if index % 2 == 0 else SEGMENT_NAMES[::-1]
    for name in names:
        segmentation.GetSegmentation().AddEmptySegment(name, name)
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            masks[name].astype(np.uint8), segmentation, name, volume
        )
    return volume, segmentation


def train_scenario_model(
    scene: object,
    folder: Path,
    python: str,
    *,
    iterations: int = 2,
    on_tick: Callable[[str], None] | None = None,
) -> ScenarioModel:
    """Export three cases from ``scene`` and train fold ``all`` briefly on the CPU.

    Raises RuntimeError with the engine's message when a step fails or time runs out.
    """
    from AutoSegTrainLib.case_export import export_case  # noqa: PLC0415
    from AutoSegTrainLib.dataset_folder import create_dataset  # noqa: PLC0415
    from AutoSegTrainLib.training_runs import TrainingRequest, TrainingRun, plan_steps  # noqa: PLC0415

    raw, preprocessed, results = (folder / name for name in ("raw", "preprocessed", "results"))
    info = create_dataset(raw, DATASET_ID, DATASET_NAME, ["CT"])
    case_ids = []
    for index in range(3):
        volume, segmentation = add_synthetic_case(scene, index)
        exported = export_case(info, [volume], segmentation, allow_new_labels=True)
        info, case_ids = exported.dataset, [*case_ids, exported.case_id]
    request = TrainingRequest(
        dataset=info.folder.name,
        configurations=("3d_fullres",),
        folds=("all",),
        device="cpu",
        epochs=1,
        iterations_per_epoch=iterations,
        run_find_best=False,
        extra_train_args=("--set", "val_iterations=2"),
    )
    steps = plan_steps(request, results, preprocessed, raw_root=raw)
    run = TrainingRun(steps, python=python)
    _wait(run, on_tick)
    fold_dir = steps[-1].fold_dir
    return ScenarioModel(
        dataset_folder=info.folder,
        case_ids=tuple(case_ids),
        model_folder=fold_dir.parent,
        fold_done=(fold_dir / "checkpoint_final.pth").is_file(),
    )


def _wait(run: object, on_tick: Callable[[str], None] | None) -> None:
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while not run.is_finished:
        if time.monotonic() > deadline:
            run.cancel(block=True)
            raise RuntimeError(f"training did not finish within {TRAINING_TIMEOUT_S:.0f} s")
        snapshot = run.tick()
        if on_tick is not None:
            on_tick(snapshot.status)
        time.sleep(0.2)
    if run.failed_message:
        raise RuntimeError(run.failed_message)


def segment_scenario_volume(scene: object, model: ScenarioModel, python: str) -> tuple:
    """A fourth, oblique volume segmented through the Predict logic: (volume, segmentation)."""
    from AutoSegPredictLib.predict_logic import AutoSegPredictLogic  # noqa: PLC0415

    volume, _ = add_synthetic_case(scene, 3, oblique=True)
    segmentation = AutoSegPredictLogic(python).segment(volume, model.model_folder, device="cpu")
    return volume, segmentation
