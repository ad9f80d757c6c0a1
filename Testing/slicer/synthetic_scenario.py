"""The whole Slicer workflow on synthetic volumes: MRML -> dataset -> training -> segmentation.

Used by the headless tests (pytest with slicer-core) and the screenshot script; it imports both
modules' libraries, so it lives here and not in the runtime library (the modules' self-tests use
``AutoSegCoreLib.synthetic_cases``, the engine's own synthetic data). Two parts:

- Without torch or network (the extension build machines have neither): three annotated volumes
  become dataset cases through the Train module's logic (``export_scenario_cases``), and a label
  file on a fourth, oblique volume's grid, written here as the engine would write it, becomes a
  segmentation through the Predict module's import (``import_scenario_prediction``).
- End to end, when torch is importable: one fold is planned, preprocessed and trained for a few
  iterations through the process runner the module uses, and the fourth volume is segmented
  through the Predict logic. Waiting calls ``on_tick`` so that Slicer can process its events.

It uses both modules' libraries, which are imported where needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

SEGMENT_NAMES = ("organ", "lesion")
SHAPE_KJI = (16, 24, 20)
DATASET_ID = 987
DATASET_NAME = "SlicerScenario"
TRAINING_TIMEOUT_S = 600.0
PREDICTION_TIMEOUT_S = 300.0
ORACLE_LABELS = {"background": 0, "organ": 1, "lesion": 2}

Tick = Callable[[str], None]


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


def export_scenario_cases(scene: object, raw_root: Path) -> tuple[object, list[str]]:
    """Three synthetic cases exported through the Train logic: (DatasetInfo, case ids)."""
    from AutoSegCoreLib.case_export import export_case
    from AutoSegCoreLib.dataset_folder import create_dataset

    info = create_dataset(raw_root, DATASET_ID, DATASET_NAME, ["CT"])
    case_ids = []
    for index in range(3):
        volume, segmentation = add_synthetic_case(scene, index)
        exported = export_case(info, [volume], segmentation, allow_new_labels=True)
        info, case_ids = exported.dataset, [*case_ids, exported.case_id]
    return info, case_ids


def oracle_label_array(index: int) -> np.ndarray:
    """The label array (K, J, I) of synthetic case ``index``, values as in ORACLE_LABELS."""
    masks = _masks(index)
    label = np.zeros(SHAPE_KJI, np.uint8)
    for name, mask in masks.items():
        label[mask] = ORACLE_LABELS[name]
    return label


def import_scenario_prediction(scene: object, folder: Path) -> tuple:
    """A fourth, oblique volume and a segmentation imported from a label file on its grid.

    The label file is what ``autoseg predict`` would write (same grid and geometry as the input
    file the Predict logic writes), made here from the known masks, so no torch is needed.
    Returns (volume, segmentation node).
    """
    from AutoSegCoreLib.segmentation_import import import_label_file
    from AutoSegCoreLib.volume_io import write_input_volumes

    volume, _ = add_synthetic_case(scene, 3, oblique=True)
    (image_file,) = write_input_volumes([volume], Path(folder) / "input")
    label = sitk.GetImageFromArray(oracle_label_array(3))
    label.CopyInformation(sitk.ReadImage(str(image_file)))
    label_file = Path(folder) / "case.nii.gz"
    sitk.WriteImage(label, str(label_file))
    name = f"{volume.GetName()} segmentation"
    return volume, import_label_file(label_file, volume, ORACLE_LABELS, name=name)


def train_scenario_model(
    scene: object,
    folder: Path,
    python: str,
    *,
    iterations: int = 2,
    on_tick: Tick | None = None,
) -> ScenarioModel:
    """Export three cases from ``scene`` and train fold ``all`` briefly on the CPU.

    Raises RuntimeError with the engine's message when a step fails or time runs out.
    """
    from AutoSegTrainLib.training_runs import TrainingRequest, TrainingRun, plan_steps

    raw, preprocessed, results = (folder / name for name in ("raw", "preprocessed", "results"))
    info, case_ids = export_scenario_cases(scene, raw)
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


def _wait(run: object, on_tick: Tick | None) -> None:
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


def segment_scenario_volume(
    scene: object, model: ScenarioModel, python: str, *, on_tick: Tick | None = None
) -> tuple:
    """A fourth, oblique volume segmented through the Predict logic: (volume, segmentation).

    Polls the job as the module's timer does, calling ``on_tick`` between polls.
    """
    from AutoSegPredictLib.predict_logic import AutoSegPredictLogic

    volume, _ = add_synthetic_case(scene, 3, oblique=True)
    job = AutoSegPredictLogic(python).start_segmentation(volume, model.model_folder, device="cpu")
    deadline, status = time.monotonic() + PREDICTION_TIMEOUT_S, "starting the engine"
    while job.is_running and time.monotonic() < deadline:
        updates = job.poll()
        status = updates[-1].text if updates else status
        if on_tick is not None:
            on_tick(status)
        time.sleep(0.1)
    return volume, job.finish(timeout=max(deadline - time.monotonic(), 1.0))
