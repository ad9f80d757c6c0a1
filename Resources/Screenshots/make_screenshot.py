"""Render the catalog screenshot: what AutoSeg produces on a synthetic case, drawn offscreen.

There is no Slicer application on the machines that build AutoSeg, so this is not a picture of
Slicer's window. It is the real output of the extension's code path, drawn from the MRML scene
with VTK (slicer-core) and matplotlib: three synthetic annotated volumes are exported into a
dataset through the Train module's logic, a small model is trained on them by the engine (CPU,
a few hundred iterations), and a fourth, oblique volume is segmented through the Predict module's
logic. Left: a slice of that volume with the predicted segments; right: their 3D surfaces, as
Slicer's segmentation node holds them. The caption says all this in the image itself.

Run from the repository root (takes a few minutes on a CPU)::

    .venv/bin/python Resources/Screenshots/make_screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for folder in ("AutoSegCore", "AutoSegTrain", "AutoSegPredict"):
    sys.path.insert(0, str(ROOT / folder))
sys.path.insert(0, str(ROOT))  # the test scenario: Testing/slicer/synthetic_scenario.py

import slicer  # noqa: E402, TID251 - a script of the Slicer side
import vtk  # noqa: E402, TID251
import vtk.util.numpy_support  # noqa: E402, TID251
from Testing.slicer.synthetic_scenario import (  # noqa: E402
    SEGMENT_NAMES,
    oracle_label_array,
    segment_scenario_volume,
    train_scenario_model,
)

from AutoSegCoreLib.headless_mrml import headless_scene  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "AutoSegPredict-synthetic-result.png"
TRAINING_ITERATIONS = 250
CAPTION = (
    "AutoSeg output on a synthetic oblique volume: a model trained by AutoSeg on three synthetic "
    "cases ({iterations} iterations, CPU) segmented it through the Predict module's logic.\n"
    "Drawn offscreen from the MRML scene (slicer-core, VTK, matplotlib) by "
    "Resources/Screenshots/make_screenshot.py; not a screenshot of the Slicer window. "
    "Dice against the known shapes: {dice}."
)


def segment_arrays(segmentation, volume) -> dict[str, np.ndarray]:
    segments = segmentation.GetSegmentation()
    arrays = {}
    for name in SEGMENT_NAMES:
        segment_id = segments.GetSegmentIdBySegmentName(name)
        arrays[name] = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
    return arrays


def segment_color(segmentation, name: str) -> tuple[float, float, float]:
    segments = segmentation.GetSegmentation()
    return tuple(segments.GetSegment(segments.GetSegmentIdBySegmentName(name)).GetColor())


def dice_text(arrays: dict[str, np.ndarray]) -> str:
    truth = oracle_label_array(3)
    scores = []
    for value, name in enumerate(SEGMENT_NAMES, start=1):
        predicted, expected = arrays[name] > 0, truth == value
        total = predicted.sum() + expected.sum()
        scores.append(f"{name} {2 * (predicted & expected).sum() / total:.2f}" if total else name)
    return ", ".join(scores)


def render_surfaces(segmentation, size: int = 560) -> np.ndarray:
    """The segments' closed surfaces rendered offscreen (RGB array, rows top to bottom)."""
    segmentation.CreateClosedSurfaceRepresentation()
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(0.1, 0.1, 0.12)
    segments = segmentation.GetSegmentation()
    for name in SEGMENT_NAMES:
        surface = vtk.vtkPolyData()
        segment_id = segments.GetSegmentIdBySegmentName(name)
        segmentation.GetClosedSurfaceRepresentation(segment_id, surface)
        normals = vtk.vtkPolyDataNormals()  # smooth shading of the marching-cubes surface
        normals.SetInputData(surface)
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputConnection(normals.GetOutputPort())
        mapper.ScalarVisibilityOff()  # the segment's colour, not its point scalars
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*segment_color(segmentation, name))
        renderer.AddActor(actor)
    renderer.ResetCamera()
    renderer.GetActiveCamera().Elevation(25)
    renderer.GetActiveCamera().Azimuth(35)
    renderer.ResetCameraClippingRange()
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(size, size)
    window.AddRenderer(renderer)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    image = grab.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return pixels.reshape(height, width, -1)[::-1, :, :3]


def draw(volume, segmentation, iterations: int) -> None:
    image = slicer.util.arrayFromVolume(volume)
    arrays = segment_arrays(segmentation, volume)
    k = int(np.argmax(sum(a.sum(axis=(1, 2)) for a in arrays.values())))
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 6.6), dpi=100)
    left.imshow(image[k], cmap="gray", interpolation="nearest")
    overlay = np.zeros((*image[k].shape, 4))
    for name in SEGMENT_NAMES:
        overlay[arrays[name][k] > 0] = (*segment_color(segmentation, name), 0.55)
    left.imshow(overlay, interpolation="nearest")
    left.set_title(f"Slice {k} of '{volume.GetName()}' with the predicted segments")
    right.imshow(render_surfaces(segmentation))
    right.set_title(f"3D surfaces of '{segmentation.GetName()}'")
    for axes in (left, right):
        axes.set_axis_off()
    caption = CAPTION.format(iterations=iterations, dice=dice_text(arrays))
    figure.text(0.5, 0.02, caption, ha="center", va="bottom", fontsize=8.5, wrap=True)
    figure.savefig(OUTPUT, facecolor="white")
    print(f"wrote {OUTPUT}")


def main() -> None:
    with headless_scene() as scene, tempfile.TemporaryDirectory() as folder:
        model = train_scenario_model(
            scene, Path(folder), sys.executable, iterations=TRAINING_ITERATIONS
        )
        volume, segmentation = segment_scenario_volume(scene, model, sys.executable)
        draw(volume, segmentation, TRAINING_ITERATIONS)


if __name__ == "__main__":
    main()
