"""Benchmark: the Slicer modules' own work on a CT-sized volume (real MRML from slicer-core).

What a user waits for in Slicer besides the engine: "Add case" (a volume and a 3-label
segmentation written as a training case through ``AutoSegCoreLib.case_export``) and importing a
prediction (a label file read into a named, coloured segmentation through
``AutoSegCoreLib.segmentation_import``), plus writing the input volume for prediction. Each
stage prints seconds and the process's peak RSS so far.

    python bench/slicer_io.py [--size 512 512 300] [--labels 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from peak_memory import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
for folder in ("AutoSegCore", "AutoSegTrain", "AutoSegPredict"):
    sys.path.insert(0, str(ROOT / folder))

import slicer  # noqa: E402  (slicer-core, after the module folders are on the path)

from AutoSegCoreLib.case_export import export_case  # noqa: E402
from AutoSegCoreLib.dataset_folder import create_dataset  # noqa: E402
from AutoSegCoreLib.headless_mrml import headless_scene  # noqa: E402
from AutoSegCoreLib.segmentation_import import import_label_file  # noqa: E402
from AutoSegCoreLib.volume_io import write_input_volumes  # noqa: E402


def timed(label: str, action: Callable[[], object]) -> object:
    started = time.perf_counter()
    result = action()
    print(f"{label:<44} {time.perf_counter() - started:7.2f} s   peak RSS {peak_rss_mb():6.0f} MB")
    return result


def ct_like(size_ijk: tuple[int, int, int], labels: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An int16 volume (K, J, I) and ``labels`` disjoint ellipsoid masks inside it."""
    shape = size_ijk[::-1]
    rng = np.random.default_rng(0)
    image = rng.normal(0, 30, shape).astype(np.int16)
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    masks = []
    for n in range(labels):
        centre = [s * (n + 1) / (labels + 1) for s in shape]
        radius = [s / (2.5 * (labels + 1)) for s in shape]
        inside = (
            sum(((a - c) / r) ** 2 for a, c, r in zip((k, j, i), centre, radius, strict=True))
            <= 1.0
        )
        masks.append(inside)
        image[inside] += np.int16(100 * (n + 1))
    return image, masks


def add_segmentation(scene: object, volume: object, masks: list[np.ndarray]) -> object:
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "labels")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for n, mask in enumerate(masks):
        name = f"organ{n + 1}"
        segmentation.GetSegmentation().AddEmptySegment(name, name)
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            mask.astype(np.uint8), segmentation, name, volume
        )
    return segmentation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, nargs=3, default=[512, 512, 300], metavar=("I", "J", "K")
    )
    parser.add_argument("--labels", type=int, default=3)
    args = parser.parse_args()
    size = tuple(args.size)
    print(f"CT-like volume {size[0]}x{size[1]}x{size[2]} voxels, {args.labels} labels")
    image, masks = ct_like(size, args.labels)
    ijk_to_ras = np.diag([-0.8, -0.8, 1.5, 1.0])
    with tempfile.TemporaryDirectory() as folder, headless_scene() as scene:
        work = Path(folder)
        volume = timed(
            "volume from array",
            lambda: slicer.util.addVolumeFromArray(image, ijk_to_ras, name="ct"),
        )
        segmentation = timed(
            "segmentation from masks", lambda: add_segmentation(scene, volume, masks)
        )
        info = create_dataset(work / "raw", 900, "Bench", ["CT"])
        case = timed(
            "Add case (export_case, .nii.gz)",
            lambda: export_case(info, [volume], segmentation, allow_new_labels=True),
        )
        timed(
            "write input for prediction (.nii.gz)",
            lambda: write_input_volumes([volume], work / "in"),
        )
        labels = {f"organ{n + 1}": n + 1 for n in range(args.labels)}
        result = timed(
            "import a prediction (import_label_file)",
            lambda: import_label_file(case.label_file, volume, labels, name="ct segmentation"),
        )
        print(f"segments imported: {result.GetSegmentation().GetNumberOfSegments()}")


if __name__ == "__main__":
    main()
