"""What model selection found and how it is written down for the user.

``inference_information.json`` records every score and the choice (paths relative to the dataset's
results folder, so the file stays true after export and import); ``inference_instructions.txt``
holds the exact commands (absolute paths) that reproduce the chosen result on new images: predict
with each chosen configuration, ensemble when two were chosen, then post-process. Every line that
is not a command starts with ``#``, so the file reads as a shell script.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.labels import LabelSpec
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.postprocessing import Postprocessing
from autoseg.results_layout import PLANS_FILE, model_folder_name
from autoseg.training.job import TRAINER_NAME

__all__ = [
    "Candidate",
    "SelectionResult",
    "SelectionSetup",
    "information_json",
    "instructions_text",
    "model_dir",
]


@dataclass(frozen=True)
class Candidate:
    """One single model or ensemble: its name, prediction folder, configurations and score."""

    name: str
    folder: Path
    configurations: tuple[str, ...]
    score: float  # cross-validation foreground mean Dice (NaN when nothing could be scored)


@dataclass(frozen=True)
class SelectionResult:
    """What :func:`find_best_configuration` chose and wrote."""

    candidates: tuple[Candidate, ...]
    best: Candidate
    postprocessing: Postprocessing
    postprocessing_file: Path
    information_file: Path
    instructions_file: Path
    instructions: str
    notes: tuple[str, ...] = ()

    @property
    def scores(self) -> dict[str, float]:
        return {c.name: c.score for c in self.candidates}

    @property
    def score_before_postprocessing(self) -> float:
        return self.postprocessing.before.get("foreground_mean", {}).get("Dice", math.nan)

    @property
    def score_after_postprocessing(self) -> float:
        return self.postprocessing.after.get("foreground_mean", {}).get("Dice", math.nan)


@dataclass(frozen=True)
class SelectionSetup:
    """What every step of one selection shares (folders, labels, folds, names, options)."""

    results_dir: Path
    gt_dir: Path
    labels: LabelSpec
    file_ending: str
    folds: tuple[int, ...]
    num_processes: int = 1
    trainer: str = TRAINER_NAME
    plans: str = DEFAULT_PLANS_NAME
    ensembling: bool = True


def model_dir(setup: SelectionSetup, configuration: str) -> Path:
    """``<results>/DatasetXXX/<trainer>__<plans>__<configuration>``."""
    return setup.results_dir / model_folder_name(setup.trainer, setup.plans, configuration)


def _predict_lines(best: Candidate, setup: SelectionSetup) -> list[str]:
    ensemble = len(best.configurations) > 1
    folds = " ".join(map(str, setup.folds))
    lines = []
    for index, configuration in enumerate(best.configurations, start=1):
        if configuration == "3d_cascade_fullres":
            lines.append("# 3d_cascade_fullres: predict runs its 3d_lowres stage first by itself")
        lines.append(
            f"autoseg predict -d {setup.results_dir.name} -i INPUT_FOLDER "
            f"-o {f'OUTPUT_FOLDER_MODEL_{index}' if ensemble else 'OUTPUT_FOLDER'} -f {folds} "
            f"-tr {setup.trainer} -p {setup.plans} -c {configuration}"
            + (" --save_probabilities" if ensemble else "")
        )
    return lines


def instructions_text(
    best: Candidate, setup: SelectionSetup, pp_file: Path, dataset_json: Path
) -> str:
    """The commands that reproduce the chosen result on new images (a shell script's text)."""
    plans_json = model_dir(setup, best.configurations[0]) / PLANS_FILE
    jsons = f"-dataset_json {shlex.quote(str(dataset_json))}"
    if plans_json.is_file():
        jsons = f"-plans_json {shlex.quote(str(plans_json))} {jsons}"
    lines = [
        f"# Inference for {setup.results_dir.name}, chosen by autoseg find_best_configuration",
        f"# on folds {' '.join(map(str, setup.folds))}: {best.name}.",
        "# Replace INPUT_FOLDER and the OUTPUT_FOLDER names; add --results FOLDER to predict when",
        "# AUTOSEG_RESULTS (or nnUNet_results) is not set.",
        "",
        "# 1. Predict",
        *_predict_lines(best, setup),
        "",
    ]
    if len(best.configurations) > 1:
        inputs = " ".join(f"OUTPUT_FOLDER_MODEL_{i + 1}" for i in range(len(best.configurations)))
        lines += [
            "# 2. Ensemble the probabilities",
            f"autoseg ensemble -i {inputs} -o OUTPUT_FOLDER {jsons}",
            "",
        ]
    lines += [
        f"# {2 + (len(best.configurations) > 1)}. Post-process",
        f"autoseg apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP "
        f"-pp {shlex.quote(str(pp_file))} {jsons}",
    ]
    return "\n".join(lines) + "\n"


def _relative(path: Path, setup: SelectionSetup) -> str:
    """Paths relative to the dataset's results folder, so they survive export and import."""
    try:
        return Path(path).relative_to(setup.results_dir).as_posix()
    except ValueError:
        return str(path)


def _json_score(value: float) -> float | None:
    return None if math.isnan(value) else value


def information_json(result: SelectionResult, setup: SelectionSetup) -> dict[str, Any]:
    """The content of inference_information.json (what was compared, what won, its scores)."""

    def model(configuration: str) -> dict[str, str]:
        folder = _relative(model_dir(setup, configuration), setup)
        return {
            "configuration": configuration,
            "trainer": setup.trainer,
            "plans": setup.plans,
            "folder": folder,
        }

    best = result.best
    return {
        "dataset": setup.results_dir.name,
        "folds": list(setup.folds),
        "paths_relative_to": "the folder of this file (the dataset's results folder)",
        "considered_models": [
            model(c.configurations[0]) for c in result.candidates if len(c.configurations) == 1
        ],
        "ensembling_allowed": setup.ensembling,
        "notes": list(result.notes),
        "all_results": {c.name: _json_score(c.score) for c in result.candidates},
        "best_model_or_ensemble": {
            "name": best.name,
            "folder": _relative(best.folder, setup),
            "selected_models": [model(c) for c in best.configurations],
            "result_on_crossval_pre_pp": _json_score(result.score_before_postprocessing),
            "result_on_crossval_post_pp": _json_score(result.score_after_postprocessing),
            "postprocessing_file": _relative(result.postprocessing_file, setup),
            "postprocessing_rules": [rule.to_json() for rule in result.postprocessing.rules],
            "some_plans_file": model(best.configurations[0])["folder"] + "/plans.json",
        },
    }
