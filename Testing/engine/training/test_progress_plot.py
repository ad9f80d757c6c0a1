from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autoseg.training.history import EpochRecord, TrainingHistory
from autoseg.training.progress_plot import plot_progress

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BLUE, RED, GREEN = (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 0.5, 0.0)


def make_history(n: int, *, dice: bool = True) -> TrainingHistory:
    rng = np.random.default_rng(0)
    history = TrainingHistory()
    ema = math.nan
    for epoch in range(n):
        mean = 0.5 + 0.4 * epoch / max(n, 1) + 0.05 * rng.random() if dice else math.nan
        ema = mean if epoch == 0 else 0.9 * ema + 0.1 * mean
        history.append(
            EpochRecord(
                epoch=epoch,
                train_loss=1.0 - epoch / max(n, 1),
                val_loss=1.1 - epoch / max(n, 1),
                pseudo_dice=(mean, mean),
                mean_fg_dice=mean,
                ema_fg_dice=ema,
                lr=0.01 * (1 - epoch / max(n, 1)) ** 0.9,
                epoch_start=40.0 * epoch,
                epoch_end=40.0 * epoch + 30.0 + rng.random(),
            )
        )
    return history


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return imread(path)[..., :3]


def count_color(image: np.ndarray, color: tuple[float, float, float]) -> int:
    return int((np.abs(image - np.asarray(color)).max(axis=-1) < 0.1).sum())


@pytest.mark.parametrize("n", [1, 2, 50])
def test_plot_draws_the_curves(tmp_path, n):
    path = tmp_path / "progress.png"
    plot_progress(make_history(n), path)
    image = read_png(path)
    assert image.shape[0] > image.shape[1] > 300  # three stacked panels
    assert image.var() > 1e-3
    assert count_color(image, BLUE) > 50
    assert count_color(image, RED) > 20
    assert count_color(image, GREEN) > 20
    assert [p.name for p in tmp_path.iterdir()] == ["progress.png"]  # no temporary file left


def test_all_nan_dice_still_plots_the_rest(tmp_path):
    with_dice, without_dice = tmp_path / "dice.png", tmp_path / "nan.png"
    plot_progress(make_history(20), with_dice)
    plot_progress(make_history(20, dice=False), without_dice)
    image = read_png(without_dice)
    assert image.var() > 1e-3
    assert count_color(image, RED) > 20
    # Only the legend's samples remain green when every Dice is NaN.
    assert count_color(image, GREEN) < count_color(read_png(with_dice), GREEN) / 2


def test_plot_replaces_an_existing_file(tmp_path):
    path = tmp_path / "progress.png"
    path.write_bytes(b"old")
    plot_progress(make_history(3), path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_a_thousand_epochs_plot_quickly(tmp_path):
    history, path = make_history(1000), tmp_path / "progress.png"
    plot_progress(history, path)  # the first call pays for fonts and caches
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        plot_progress(history, path)
        timings.append(time.perf_counter() - start)
    # About 0.2 s on an idle core; the bound leaves room for a shared CI machine.
    assert min(timings) < 0.6


def test_importing_the_plot_module_does_not_import_matplotlib():
    code = (
        "import sys, autoseg.training.progress_plot, autoseg.training.run_log; "
        "sys.exit('matplotlib' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
