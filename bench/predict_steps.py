"""Where the time of one prediction goes: each step of ``Predictor.predict_files`` timed on its own.

The steps are the predictor's own functions called in its order (read, preprocess = crop +
resample + normalize, sliding window, resample back, argmax + uncrop, write); the sliding window is
split into the network's calls and everything else (cutting tiles, Gaussian weighting,
accumulation, mirroring flips), by timing every call of the fold networks. The process's peak RSS
is read after every step, so the step that raised the peak is the first one showing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peak_memory import peak_rss_mb

STEPS = (
    "read",
    "preprocess (crop, resample, normalize)",
    "network",
    "window (tiles, weighting, accumulation)",
    "resample back",
    "argmax + uncrop",
    "write",
)


PEAKS: dict[str, float] = {}  # peak RSS in MB after each step of the last profiled prediction


@contextmanager
def _clock(steps: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    steps[name] = steps.get(name, 0.0) + time.perf_counter() - started
    PEAKS[name] = peak_rss_mb()


def _timed(network: Callable[[Any], Any], steps: dict[str, float]) -> Callable[[Any], Any]:
    def run(batch: Any) -> Any:
        with _clock(steps, "network"):
            return network(batch)

    return run


def profiled_prediction(predictor: Any, files: list[Path], output: Path) -> dict[str, float]:
    """Predict one single-fold case like ``predict_files`` does; seconds per step of ``STEPS``."""
    from autoseg.case_checks import CaseRules, load_images
    from autoseg.inference import export

    model = predictor.model
    steps: dict[str, float] = {}
    with _clock(steps, "read"):
        rules = CaseRules(model.dataset.num_channels, None, is_2d=False, owner="this model")
        case_id = output.name.removesuffix(model.dataset.file_ending)
        images, geometry = load_images(predictor._reader(), case_id, files, rules)
    with _clock(steps, "preprocess (crop, resample, normalize)"):
        data, properties = predictor._preprocess(images, geometry, None)
    del images
    networks = predictor.networks
    predictor.networks = [_timed(network, steps) for network in networks]
    with _clock(steps, "sliding window"):
        logits = predictor.predict_preprocessed(data).numpy()
    predictor.networks = networks
    del data
    steps["window (tiles, weighting, accumulation)"] = steps.pop("sliding window") - steps.get(
        "network", 0.0
    )
    PEAKS["window (tiles, weighting, accumulation)"] = PEAKS.pop("sliding window")
    with _clock(steps, "resample back"):
        resampling = model.config.preprocessing.resampling_probabilities
        cropped = export._to_cropped_grid(logits, properties, resampling)
    del logits
    with _clock(steps, "argmax + uncrop"):
        segmentation = export._uncrop(export._segment(cropped, model.dataset.labels), properties, 0)
    del cropped
    with _clock(steps, "write"):
        export.write_segmentation(segmentation, properties, output, model.plans.image_reader_writer)
    return {name: steps.get(name, 0.0) for name in STEPS}


def print_steps(steps: dict[str, float], peaks: dict[str, float] | None = None) -> None:
    """Seconds and share per step; with ``peaks`` also the peak RSS reached by the end of it."""
    total = sum(steps.values())
    for name, seconds in steps.items():
        peak = f"  peak so far {peaks[name]:6.0f} MB" if peaks and name in peaks else ""
        print(f"    {name:<42} {seconds:8.2f} s  {100 * seconds / total:5.1f} %{peak}")
    print(f"    {'total':<42} {total:8.2f} s")
