"""Training settings: method defaults, overrides from files/flags, clear errors for typos."""

from __future__ import annotations

import json

import pytest

from autoseg.errors import AutoSegError
from autoseg.training.settings import TrainingSettings, parse_assignment


def test_defaults_are_the_methods() -> None:
    s = TrainingSettings()
    assert (s.epochs, s.iterations_per_epoch, s.val_iterations) == (1000, 250, 50)
    assert (s.initial_lr, s.weight_decay, s.momentum) == (1e-2, 3e-5, 0.99)
    assert (s.poly_exponent, s.grad_clip, s.oversample_foreground) == (0.9, 12.0, 0.33)
    assert s.checkpoint_every == 50
    assert s.deep_supervision


def test_file_then_flags_override(tmp_path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"epochs": 5, "initial_lr": 0.001}))
    s = TrainingSettings.load(path).updated({"epochs": 7, "seed": None})
    assert (s.epochs, s.initial_lr, s.seed) == (7, 0.001, None)


def test_save_load_round_trip(tmp_path) -> None:
    s = TrainingSettings(epochs=3, device="cpu", num_workers=0, seed=4)
    s.save(tmp_path / "s.json")
    assert TrainingSettings.load(tmp_path / "s.json") == s


def test_unknown_key_names_the_key_and_known_ones() -> None:
    with pytest.raises(AutoSegError, match=r"unknown training setting\(s\) epoch\b.*epochs"):
        TrainingSettings.from_mapping({"epoch": 3})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"epochs": 2.5}, "not a valid int"),
        ({"device": "tpu"}, "device must be one of"),
        ({"oversample_foreground": 1.5}, "oversample_foreground"),
        ({"deep_supervision": "maybe"}, "not a valid bool"),
        ({"checkpoint_minutes": -1}, "checkpoint_minutes must be >= 0"),
        ({"checkpoint_minutes": "nan"}, "checkpoint_minutes must be >= 0"),
    ],
)
def test_invalid_values_are_clear_errors(values, message) -> None:
    with pytest.raises(AutoSegError, match=message):
        TrainingSettings.from_mapping(values, "run.json")


def test_bad_settings_file(tmp_path) -> None:
    with pytest.raises(AutoSegError, match="not found"):
        TrainingSettings.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(AutoSegError, match="JSON object"):
        TrainingSettings.load(tmp_path / "bad.json")


def test_assignments_parse_json_values() -> None:
    assert parse_assignment("initial_lr=1e-3") == ("initial_lr", 1e-3)
    assert parse_assignment("device=cpu") == ("device", "cpu")
    assert (
        TrainingSettings().updated(dict([parse_assignment("mirror_tta=false")])).mirror_tta is False
    )
    with pytest.raises(AutoSegError, match="KEY=VALUE"):
        parse_assignment("epochs")


def test_the_time_based_checkpoint_defaults_to_ten_minutes_and_can_be_off() -> None:
    assert TrainingSettings().checkpoint_minutes == 10.0
    assert TrainingSettings.from_mapping({"checkpoint_minutes": 0}).checkpoint_minutes == 0.0
