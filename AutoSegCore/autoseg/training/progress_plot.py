"""progress.png: the training curves a person checks while a fold trains.

Three stacked panels share the epoch axis: (1) train loss (blue) and validation loss (red) on the
left axis with the pseudo Dice (green dotted) and its EMA (green solid) on a right axis; (2) epoch
duration in seconds; (3) learning rate. The file is rewritten after every epoch, so it must be cheap
(well under a second for 1000 epochs): a small figure, no automatic legend placement (``loc="best"``
scans every point), fast PNG compression, and matplotlib imported only here so that importing the
trainer stays fast. A ``Figure`` with an Agg canvas is used instead of pyplot: no global state, no
GUI backend, safe in worker threads and under Slicer's own Qt.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoseg.atomic import atomic_path
from autoseg.training.history import TrainingHistory

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_FIGSIZE = (10.0, 11.0)
_DPI = 80
# A line through one point draws nothing; markers keep the first epochs visible.
_MARKER_UNTIL = 20


def _style(n: int) -> dict[str, Any]:
    return {"marker": "o", "markersize": 3} if n <= _MARKER_UNTIL else {}


def _loss_and_dice_panel(ax: Axes, history: TrainingHistory) -> None:
    x, style = history.epoch, _style(len(history))
    lines = ax.plot(x, history.train_loss, color="b", linewidth=2, label="train loss", **style)
    lines += ax.plot(x, history.val_loss, color="r", linewidth=2, label="val loss", **style)
    ax.set_ylabel("loss")
    right = ax.twinx()
    lines += right.plot(
        x, history.mean_fg_dice, color="g", linestyle=":", linewidth=2, label="pseudo Dice", **style
    )
    lines += right.plot(
        x, history.ema_fg_dice, color="g", linewidth=2, label="pseudo Dice (EMA)", **style
    )
    right.set_ylabel("pseudo Dice")
    if all(math.isnan(v) for v in history.ema_fg_dice + history.mean_fg_dice):
        right.set_ylim(0.0, 1.0)  # nothing to scale to (no class seen yet)
    # On the right axis: it is drawn last, so no curve covers the legend.
    right.legend(lines, [line.get_label() for line in lines], loc="upper right", framealpha=0.9)


def plot_progress(history: TrainingHistory, path: Path) -> None:
    """Draw the three panels of ``history`` into ``path`` (PNG), replacing it atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - lazy: slow import
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    # Fixed margins: an automatic layout engine would double the drawing time.
    figure = Figure(figsize=_FIGSIZE, dpi=_DPI)
    figure.subplots_adjust(left=0.1, right=0.9, bottom=0.06, top=0.98, hspace=0.08)
    FigureCanvasAgg(figure)
    try:
        loss_ax, time_ax, lr_ax = figure.subplots(3, 1, sharex=True)
        _loss_and_dice_panel(loss_ax, history)
        times = [history.epoch_time(i) for i in range(len(history))]
        time_ax.plot(history.epoch, times, color="b", linewidth=2, **_style(len(history)))
        time_ax.set_ylabel("epoch duration [s]")
        lr_ax.plot(history.epoch, history.lr, color="b", linewidth=2, **_style(len(history)))
        lr_ax.set_ylabel("learning rate")
        lr_ax.set_xlabel("epoch")
        lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # the x axis is shared
        for ax in (loss_ax, time_ax, lr_ax):
            ax.grid(alpha=0.3)
        with atomic_path(Path(path), suffix=".png") as temporary:
            figure.savefig(temporary, format="png", pil_kwargs={"compress_level": 1})
    finally:
        figure.clear()
