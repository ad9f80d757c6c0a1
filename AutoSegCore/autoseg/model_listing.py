"""Every trained model and kept version under a results root, read from files alone (no torch).

Why: after a few rounds of the annotation loop a dataset has a model and several kept versions
(``<model folder>/versions/<n>``, see results_layout.py), plus perhaps models made with nnU-Net. A
user (``autoseg list_models``) and the Slicer panel (``--json``) must see at once which exist, how
long each was trained, when, and how good it was on its validation cases, without loading a
network. So everything comes from small files: a fold counts as trained when it holds
``checkpoint_final.pth``; the epochs from AutoSeg's ``events.jsonl`` (else the last ``Epoch N``
line of nnU-Net's text logs); the date from the final checkpoint's modification time; the Dice from
the fold's ``validation/summary.json`` (AutoSeg and nnU-Net write the same file).

This module also owns the record of the cases a fold was trained on (``training_cases.json``): a
later training reads it to find the cases added since (the before/after comparison), and the
listing shows how many there were.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError
from autoseg.evaluation import SUMMARY_FILE, load_summary
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN, is_nnunet_plans
from autoseg.results_layout import (
    ALL_FOLDS,
    FINAL_CHECKPOINT,
    FOLD_CASES_FILE,
    FOLD_PREFIX,
    PLANS_FILE,
    VERSION_INFO_FILE,
    split_model_folder_name,
    version_folder,
    version_numbers,
)
from autoseg.training.run_log import EVENTS_FILE
from autoseg.training.settings import SETTINGS_FILE

# The same name as the final validation's folder (training/validation.py imports torch).
VALIDATION_FOLDER = "validation"
AUTOSEG_ORIGIN = "autoseg"
_EPOCH_LINE = re.compile(r": Epoch (\d+)\s*$")


@dataclass(frozen=True)
class FoldInfo:
    """One trained fold: ``epochs`` trained (None: no log says), ``date`` the final checkpoint's
    time (ISO 8601), ``validation_dice`` the mean foreground Dice of its validation (None: not
    validated), ``cases`` trained on (None: not recorded), ``from_model`` its warm start."""

    fold: str
    epochs: int | None
    date: str
    validation_dice: float | None
    cases: int | None
    from_model: str | None


@dataclass(frozen=True)
class ModelInfo:
    """One model folder or kept version; ``version`` None is the current model."""

    dataset: str
    path: str
    trainer: str
    plans: str
    configuration: str
    origin: str
    version: int | None
    kept: str | None
    folds: tuple[FoldInfo, ...]

    @property
    def validation_dice(self) -> float | None:
        """Mean over the folds that were validated."""
        values = [f.validation_dice for f in self.folds if f.validation_dice is not None]
        return sum(values) / len(values) if values else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["validation_dice"] = self.validation_dice
        return data


# ------------------------------------------------------------------------------- case records


def record_fold_cases(fold_dir: Path, train: Sequence[str], validation: Sequence[str]) -> None:
    """Write the fold's case ids (sorted) to ``training_cases.json``, atomically."""
    data = {"train": sorted(train), "validation": sorted(validation)}
    write_json_atomic(Path(fold_dir) / FOLD_CASES_FILE, data)


def read_fold_cases(fold_dir: Path) -> dict[str, list[str]] | None:
    """The fold's recorded ``{"train": [...], "validation": [...]}``, None when not recorded."""
    path = Path(fold_dir) / FOLD_CASES_FILE
    if not path.is_file():
        return None
    data = _read_json(path)
    parts = ("train", "validation")
    if not isinstance(data, dict) or not all(isinstance(data.get(p), list) for p in parts):
        raise AutoSegError(
            f"{path}: not a case record (expected lists 'train' and 'validation'). Fix: delete "
            "the file; it is written again when the fold is trained."
        )
    return {part: [str(case) for case in data[part]] for part in parts}


# ------------------------------------------------------------------------------------ reading


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AutoSegError(
            f"{path}: cannot be read as JSON ({error}). Fix: restore the file or delete it."
        ) from None


def _epochs_from_events(path: Path) -> int | None:
    """Epochs trained, from the last ``epoch`` event (epochs count from 0)."""
    last = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(event, dict) and event.get("event") == "epoch":
            last = event.get("epoch")
    return int(last) + 1 if isinstance(last, int) else None


def _epochs_from_text_logs(fold_dir: Path) -> int | None:
    """nnU-Net's fold folders have only text logs: their last ``<time>: Epoch N`` line."""
    numbers = [
        int(match.group(1))
        for log in fold_dir.glob("training_log_*.txt")
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
        if (match := _EPOCH_LINE.search(line))
    ]
    return max(numbers) + 1 if numbers else None


def _epochs_trained(fold_dir: Path) -> int | None:
    events = fold_dir / EVENTS_FILE
    if events.is_file():
        return _epochs_from_events(events)
    return _epochs_from_text_logs(fold_dir)


def _validation_dice(fold_dir: Path) -> float | None:
    path = fold_dir / VALIDATION_FOLDER / SUMMARY_FILE
    if not path.is_file():
        return None
    value = load_summary(path).get("foreground_mean", {}).get("Dice")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _from_model(fold_dir: Path) -> str | None:
    path = fold_dir / SETTINGS_FILE
    settings = _read_json(path) if path.is_file() else None
    value = settings.get("from_model") if isinstance(settings, dict) else None
    return str(value) if value else None


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def fold_info(fold_dir: Path) -> FoldInfo:
    """What one trained fold folder (holding the final checkpoint) says about itself."""
    fold_dir = Path(fold_dir)
    cases = read_fold_cases(fold_dir)
    return FoldInfo(
        fold=fold_dir.name.removeprefix(FOLD_PREFIX),
        epochs=_epochs_trained(fold_dir),
        date=_timestamp((fold_dir / FINAL_CHECKPOINT).stat().st_mtime),
        validation_dice=_validation_dice(fold_dir),
        cases=None if cases is None else len(set(cases["train"]) | set(cases["validation"])),
        from_model=_from_model(fold_dir),
    )


def trained_folds(model_dir: Path) -> list[Path]:
    """Fold folders holding the final checkpoint: numbered ones in order, then ``fold_all``."""
    folds = [
        child
        for child in Path(model_dir).glob(f"{FOLD_PREFIX}*")
        if (child / FINAL_CHECKPOINT).is_file()
    ]
    names = [f.name.removeprefix(FOLD_PREFIX) for f in folds]
    valid = [(n, f) for n, f in zip(names, folds, strict=True) if n.isdigit() or n == ALL_FOLDS]
    return [f for n, f in sorted(valid, key=lambda p: (0, int(p[0])) if p[0].isdigit() else (1, 0))]


def _origin(model_dir: Path) -> str:
    plans = model_dir / PLANS_FILE
    data = _read_json(plans) if plans.is_file() else {}
    return NNUNET_ORIGIN if isinstance(data, dict) and is_nnunet_plans(data) else AUTOSEG_ORIGIN


def _kept(folder: Path) -> str | None:
    path = folder / VERSION_INFO_FILE
    info = _read_json(path) if path.is_file() else None
    return str(info.get("kept")) if isinstance(info, dict) and info.get("kept") else None


def describe_model(folder: Path, model_dir: Path, version: int | None = None) -> ModelInfo:
    """One model folder (``version`` None) or one of its kept versions (``folder`` is then
    ``versions/<n>``; ``model_dir`` gives the names)."""
    trainer, plans, configuration = split_model_folder_name(model_dir.name)
    return ModelInfo(
        dataset=model_dir.parent.name,
        path=str(folder),
        trainer=trainer,
        plans=plans,
        configuration=configuration,
        origin=_origin(folder),
        version=version,
        kept=_kept(folder) if version is not None else None,
        folds=tuple(fold_info(fold) for fold in trained_folds(folder)),
    )


def _is_model_folder(folder: Path) -> bool:
    if not folder.is_dir() or not (folder / PLANS_FILE).is_file():
        return False
    try:
        return all(split_model_folder_name(folder.name))
    except ValueError:
        return False


def _model_folders(results: Path) -> Iterator[Path]:
    for dataset in sorted(p for p in results.iterdir() if p.is_dir()):
        yield from sorted(p for p in dataset.iterdir() if _is_model_folder(p))


def list_models(results: Path) -> list[ModelInfo]:
    """Every model folder ``<results>/<dataset>/<trainer>__<plans>__<configuration>`` and its
    kept versions (newest first after the current model), sorted by dataset and name."""
    results = Path(results).absolute()  # paths that stay valid from any working folder
    if not results.is_dir():
        raise AutoSegError(
            f"{results}: results folder not found. Fix: pass --results FOLDER, or set "
            "AUTOSEG_RESULTS / nnUNet_results to the folder training writes to."
        )
    models = []
    for model_dir in _model_folders(results):
        models.append(describe_model(model_dir, model_dir))
        for number in reversed(version_numbers(model_dir)):
            models.append(describe_model(version_folder(model_dir, number), model_dir, number))
    return models


# ------------------------------------------------------------------------------------ showing

_COLUMNS = ("DATASET", "MODEL", "VERSION", "TOOL", "FOLDS", "EPOCHS", "TRAINED", "VAL DICE")


def _epochs_text(folds: Sequence[FoldInfo]) -> str:
    values = sorted({f.epochs for f in folds if f.epochs is not None})
    return "/".join(str(v) for v in values) if values else "-"


def _row(model: ModelInfo) -> tuple[str, ...]:
    dice = model.validation_dice
    return (
        model.dataset,
        f"{model.trainer}__{model.plans}__{model.configuration}",
        "current" if model.version is None else str(model.version),
        "nnU-Net" if model.origin == NNUNET_ORIGIN else "AutoSeg",
        ",".join(f.fold for f in model.folds) or "-",
        _epochs_text(model.folds),
        max((f.date for f in model.folds), default="-")[:16].replace("T", " "),
        "-" if dice is None else f"{dice:.4f}",
    )


def models_table(models: Sequence[ModelInfo]) -> str:
    """A plain-text table, one row per model or version (the newest fold's date)."""
    rows = [_COLUMNS, *(_row(m) for m in models)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
