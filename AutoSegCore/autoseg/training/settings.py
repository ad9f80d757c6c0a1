"""Training settings as data: the method's defaults, overridden by a settings file or flags.

nnU-Net changes epochs, learning rate or the loss by subclassing its trainer (a dozen subclasses
only change the epoch count). Here every such knob is a field of ``TrainingSettings``; a variant is a
JSON file (``--settings run.json``) or a flag (``--epochs 5``). The resolved settings are saved next
to the checkpoints as ``training_settings.json`` so a run documents exactly what it did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError

SETTINGS_FILE = "training_settings.json"
DEVICES = ("auto", "cpu", "cuda", "mps")
TRI_STATE = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainingSettings:
    """Every training knob, with defaults equal to the method's (method.md §5.1, §5.5, §5.8)."""

    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations: int = 50
    initial_lr: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    oversample_foreground: float = 0.33
    deep_supervision: bool = True
    ema_momentum: float = 0.9
    checkpoint_every: int = 50
    # Also write checkpoint_latest.pth when this many minutes passed since the last one, so a
    # crash loses at most about that much work whatever an epoch takes (0 = off: epochs only).
    checkpoint_minutes: float = 10.0
    save_checkpoints: bool = True
    device: str = "auto"
    amp: str = "auto"
    compile: str = "auto"
    num_workers: int | None = None
    val_workers: int | None = None
    cpu_threads: int | None = None
    seed: int | None = None
    tile_step: float = 0.5
    mirror_tta: bool = True
    # The model folder this run was warm-started from (``train --from-model``), kept so the run
    # documents where its first weights came from; None = trained from scratch.
    from_model: str | None = None

    def __post_init__(self) -> None:
        problems = _check(self)
        if problems:
            raise AutoSegError("invalid training settings: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        write_json_atomic(Path(path), self.to_json())

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "settings") -> TrainingSettings:
        """Settings from a mapping; unknown keys are an error (a typo must not be ignored)."""
        return cls().updated(values, source)

    @classmethod
    def load(cls, path: Path) -> TrainingSettings:
        return cls.from_mapping(read_settings_file(path), str(path))

    def updated(self, values: Mapping[str, Any], source: str = "settings") -> TrainingSettings:
        """A copy with ``values`` applied; ``None`` values are skipped (flag not given)."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise AutoSegError(
                f"{source}: unknown training setting(s) {', '.join(unknown)}; "
                f"known settings are: {', '.join(known)}"
            )
        changes = {k: _coerce(k, v, source) for k, v in values.items() if v is not None}
        return replace(self, **changes)


def read_settings_file(path: Path) -> dict[str, Any]:
    """The JSON object in a settings file, with a clear error for a missing or malformed file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutoSegError(f"{path}: settings file not found") from None
    except (OSError, ValueError) as error:
        raise AutoSegError(f"{path}: cannot read the settings file as JSON ({error})") from None
    if not isinstance(data, dict):
        raise AutoSegError(f"{path}: a settings file must hold a JSON object of setting: value")
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--set``; the value is read as JSON when it parses, else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise AutoSegError(f"--set {text!r}: expected KEY=VALUE, e.g. --set initial_lr=0.001")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


_FIELD_TYPES = {f.name: f.type for f in fields(TrainingSettings)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Accept JSON/CLI values of the right kind; ``1`` for a float field is fine, "x" is not."""
    kind = str(_FIELD_TYPES[key])
    try:
        if kind.startswith("bool"):
            return _as_bool(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise AutoSegError(f"{source}: {key}={value!r} is not a valid {kind}") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _check(s: TrainingSettings) -> list[str]:
    positive = ("epochs", "iterations_per_epoch", "checkpoint_every")
    problems = [
        f"{name} must be >= 1 (got {getattr(s, name)})" for name in positive if getattr(s, name) < 1
    ]
    if s.val_iterations < 0:
        problems.append(f"val_iterations must be >= 0 (got {s.val_iterations})")
    if not s.checkpoint_minutes >= 0:  # also refuses NaN
        problems.append(f"checkpoint_minutes must be >= 0 (got {s.checkpoint_minutes})")
    if not 0.0 <= s.oversample_foreground <= 1.0:
        problems.append(f"oversample_foreground must be in [0, 1] (got {s.oversample_foreground})")
    if not 0.0 < s.tile_step <= 1.0:
        problems.append(f"tile_step must be in (0, 1] (got {s.tile_step})")
    if s.initial_lr <= 0:
        problems.append(f"initial_lr must be > 0 (got {s.initial_lr})")
    if s.device not in DEVICES:
        problems.append(f"device must be one of {', '.join(DEVICES)} (got {s.device!r})")
    problems += [
        f"{name} must be one of {', '.join(TRI_STATE)} (got {getattr(s, name)!r})"
        for name in ("amp", "compile")
        if getattr(s, name) not in TRI_STATE
    ]
    for name in ("num_workers", "val_workers", "cpu_threads"):
        value = getattr(s, name)
        if value is not None and value < 0:
            problems.append(f"{name} must be >= 0 (got {value})")
    return problems
