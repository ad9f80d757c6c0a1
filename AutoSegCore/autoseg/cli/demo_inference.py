"""The second half of ``autoseg demo``: model selection, prediction, postprocessing, evaluation.

Each step runs the real sub-command (the same code path a user's command line takes), so the demo
also shows which commands to type.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.paths import DataRoots
from autoseg.results_layout import INSTRUCTIONS_FILE


def _run(step: str, argv: Sequence[str]) -> None:
    """Run one ``autoseg`` command in this process; a failure stops the demo with its message."""
    from autoseg.cli import main  # noqa: PLC0415 - the parser imports this module's caller

    print(f"{step}: autoseg {shlex.join(argv)}")
    if main(list(argv)) != 0:
        raise AutoSegError(f"demo step failed: autoseg {shlex.join(argv)}")


def _roots(roots: DataRoots) -> list[str]:
    return [
        "--raw",
        str(roots.raw),
        "--preprocessed",
        str(roots.preprocessed),
        "--results",
        str(roots.results),
    ]


def select_predict_evaluate(
    roots: DataRoots, dataset: str, raw_dataset: Path, output: Path
) -> dict[str, Path]:
    """find_best_configuration -> predict imagesTs -> apply postprocessing -> evaluate vs labelsTs.

    Returns the artefacts by name; the test cases' Dice is in ``artefacts["test summary"]``.
    """
    results = roots.results / dataset
    predictions, postprocessed = output / "predictions", output / "predictions_postprocessed"
    _run(
        "6/9 find_best_configuration",
        [
            "find_best_configuration",
            dataset,
            "-c",
            "3d_fullres",
            "-f",
            "0",
            "-np",
            "1",
            *_roots(roots),
        ],
    )
    _run(
        "7/9 predict the held-out cases",
        [
            "predict",
            "-i",
            str(raw_dataset / "imagesTs"),
            "-o",
            str(predictions),
            "-d",
            dataset,
            "-c",
            "3d_fullres",
            "-f",
            "0",
            "--progress",
            "none",
            *_roots(roots),
        ],
    )
    pp_files = sorted(results.glob("*/crossval_results_folds_0/postprocessing.json"))
    if not pp_files:
        raise AutoSegError(f"{results}: find_best_configuration wrote no postprocessing.json")
    _run(
        "8/9 apply the learned postprocessing",
        [
            "apply_postprocessing",
            "-i",
            str(predictions),
            "-o",
            str(postprocessed),
            "-pp",
            str(pp_files[0]),
            "-np",
            "1",
            "-dataset_json",
            str(raw_dataset / "dataset.json"),
        ],
    )
    _run(
        "9/9 evaluate against labelsTs",
        [
            "evaluate",
            str(raw_dataset / "labelsTs"),
            str(postprocessed),
            "-djfile",
            str(raw_dataset / "dataset.json"),
            "-np",
            "1",
        ],
    )
    return {
        "model selection": results / INSTRUCTIONS_FILE,
        "postprocessing": pp_files[0],
        "predictions": predictions,
        "postprocessed": postprocessed,
        "test summary": postprocessed / "summary.json",
    }


def format_dice_table(
    validation: Mapping[str, Any], test: Mapping[str, Any], labels: Mapping[str, int]
) -> str:
    """Dice of every foreground class on the fold's validation cases and on the held-out test cases.

    One row per class, not only the mean: a mean of 0.46 does not say that one class was never found,
    and the demo is where a newcomer decides whether the method works.
    """
    columns = [
        f"validation ({len(validation.get('metric_per_case', []))} cases)",
        f"held-out test ({len(test.get('metric_per_case', []))} cases)",
    ]
    lines = [f"  {'Dice':<16}" + "".join(f"{c:>26}" for c in columns)]
    for name, value in sorted(labels.items(), key=lambda item: item[1]):
        if value != 0:
            dice = (_mean_dice(s, str(value)) for s in (validation, test))
            lines.append(f"  {name:<16}" + "".join(f"{d:>26.3f}" for d in dice))
    means = (_mean_dice(s, None) for s in (validation, test))
    lines.append(f"  {'mean foreground':<16}" + "".join(f"{d:>26.3f}" for d in means))
    return "\n".join(lines)


def _mean_dice(summary: Mapping[str, Any], label: str | None) -> float:
    """A class's mean Dice (``label`` None: the foreground mean); NaN when the summary lacks it."""
    block = summary.get("foreground_mean") if label is None else summary.get("mean", {}).get(label)
    return float((block or {}).get("Dice", float("nan")))
