from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autoseg.errors import AutoSegError
from autoseg.training.history import EpochRecord, TrainingHistory

NAN = math.nan


def record(epoch: int, ema: float = 0.5, *, dice: tuple[float, ...] = (0.6, NAN)) -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        train_loss=-0.1 * epoch,
        val_loss=NAN if epoch == 1 else -0.05 * epoch,
        pseudo_dice=dice,
        mean_fg_dice=float(np.nanmean(dice)) if not all(map(math.isnan, dice)) else NAN,
        ema_fg_dice=ema,
        lr=0.01 * (1 - epoch / 10),
        epoch_start=100.0 * epoch,
        epoch_end=100.0 * epoch + 30.0 + epoch,
    )


def history_of(*emas: float) -> TrainingHistory:
    history = TrainingHistory()
    for epoch, ema in enumerate(emas):
        history.append(record(epoch, ema))
    return history


def same(a: list, b: list) -> bool:
    """List equality in which NaN equals NaN (nested one level for the Dice rows)."""
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


def test_json_round_trip_keeps_every_list_and_nan():
    history = history_of(NAN, 0.4, 0.7, 0.6)
    history.append(record(4, 0.65, dice=(NAN, NAN)))
    text = json.dumps(history.to_json(), allow_nan=False)  # strict JSON: NaN must be null
    assert "null" in text
    restored = TrainingHistory.from_json(json.loads(text))
    assert restored.epoch == [0, 1, 2, 3, 4]
    for name in ("train_loss", "val_loss", "mean_fg_dice", "ema_fg_dice", "lr", "pseudo_dice"):
        assert same(getattr(restored, name), getattr(history, name)), name
    assert restored.epoch_start == history.epoch_start
    assert restored.epoch_end == history.epoch_end
    assert math.isnan(restored.val_loss[1])
    assert math.isnan(restored.pseudo_dice[4][0])
    assert restored.best_ema == 0.7


def test_empty_history_round_trips_with_no_best():
    restored = TrainingHistory.from_json(json.loads(json.dumps(TrainingHistory().to_json())))
    assert len(restored) == 0
    assert restored.best_ema is None


def test_append_reports_strict_improvements_and_ignores_nan():
    history = TrainingHistory()
    assert history.append(record(0, NAN)) is False
    assert history.best_ema is None
    assert history.append(record(1, 0.5)) is True
    assert history.append(record(2, 0.5)) is False  # equal is not better
    assert history.append(record(3, NAN)) is False
    assert history.append(record(4, 0.6)) is True
    assert history.best_ema == 0.6


def test_append_stores_plain_floats_from_numpy():
    history = TrainingHistory()
    values = record(0, np.float32(0.25), dice=tuple(np.array([0.5, 0.25], dtype=np.float32)))
    history.append(values)
    assert type(history.ema_fg_dice[0]) is float
    assert type(history.pseudo_dice[0][1]) is float
    json.dumps(history.to_json(), allow_nan=False)


def test_append_rejects_a_gap_or_repeat_in_the_epochs():
    history = history_of(0.1, 0.2)
    with pytest.raises(ValueError, match="expected epoch 2"):
        history.append(record(3))
    with pytest.raises(ValueError, match="expected epoch 2"):
        history.append(record(1))


def test_truncate_keeps_the_first_epochs_and_recomputes_the_best():
    history = history_of(0.3, 0.5, 0.4, 0.9, 0.8)
    history.truncate(3)
    assert history.epoch == [0, 1, 2]
    assert len(history.pseudo_dice) == len(history.lr) == len(history.epoch_end) == 3
    assert history.best_ema == 0.5
    assert history.append(record(3, 0.45)) is False  # 0.9 from the discarded epochs is gone
    history.truncate(0)
    assert len(history) == 0
    assert history.best_ema is None


def test_truncate_cannot_invent_epochs():
    history = history_of(0.3, 0.5)
    history.truncate(2)
    assert len(history) == 2
    with pytest.raises(ValueError, match="2 epochs to 3"):
        history.truncate(3)


def test_epoch_time_and_record_read_back_one_epoch():
    history = history_of(0.3, 0.5, 0.4)
    assert history.epoch_time(2) == pytest.approx(32.0)
    assert history.epoch_time(-1) == history.epoch_time(2)
    back = history.record(2)
    assert back.epoch == 2
    assert back.epoch_time == pytest.approx(32.0)
    assert back.ema_fg_dice == 0.4


def test_from_json_names_missing_fields():
    data = history_of(0.3).to_json()
    del data["lr"]
    with pytest.raises(AutoSegError, match="missing lr"):
        TrainingHistory.from_json(data)


def test_from_json_rejects_lists_of_different_lengths():
    data = history_of(0.3, 0.4).to_json()
    data["train_loss"].pop()
    with pytest.raises(AutoSegError, match="inconsistent"):
        TrainingHistory.from_json(data)
