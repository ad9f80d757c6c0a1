"""Connected-component post-processing: keep only the rules that help on cross-validation.

Keeping the largest component removes spurious blobs but also real second components (two kidneys),
so a rule is kept only when the cross-validation predictions improve: (a) largest component of the
whole foreground, if the foreground mean Dice strictly improves and no label/region mean Dice drops;
(b) with several labels/regions, for each in dataset order, its own largest component if its own
mean Dice strictly improves (cumulative). Full connectivity (26 in 3D, 8 in 2D). Rules are stored as
JSON; pickle is never read (loading one can run code). No torch here: numpy, scipy, SimpleITK only.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from scipy import ndimage

from autoseg import evaluation
from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError
from autoseg.evaluation import SUMMARY_FILE, CaseMetrics, case_metrics, region_or_label_mask
from autoseg.image_io import READER_WRITERS, ImageReaderWriter, choose_reader_writer
from autoseg.interop.nnunet_selection import postprocessing_json_from_nnunet
from autoseg.labels import LabelSpec
from autoseg.parallel import map_cases
from autoseg.results_layout import POSTPROCESSING_FILE

POSTPROCESSED_DIR = "postprocessed"
RuleKind = Literal["largest_foreground", "largest_per_region"]
Summary = dict[str, Any]
Rules = tuple["PostprocessingRule", ...]


def keep_largest_component(
    segmentation: np.ndarray, region: int | tuple[int, ...] | None
) -> np.ndarray:
    """A copy in which the voxels of ``region`` (None: all foreground; int: a label; tuple: union
    of labels) outside its largest component are background (0); other labels stay untouched."""
    result = np.array(segmentation, copy=True)
    _remove_outside_largest(result, region)
    return result


def _remove_outside_largest(segmentation: np.ndarray, region: int | Sequence[int] | None) -> None:
    """In place: set the voxels of ``region`` (None: all foreground) outside its largest component
    to 0. Ties keep the component met first in array order."""
    mask = segmentation > 0 if region is None else region_or_label_mask(segmentation, region)
    found = ndimage.find_objects(mask.view(np.uint8)) if mask.ndim else []
    if not found:  # no voxel of the region
        return
    box = found[0]  # labelling only the bounding box is much cheaper on large images
    inside = mask[box]
    components, count = ndimage.label(inside, structure=np.ones((3,) * inside.ndim, dtype=bool))
    if count < 2:
        return
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    drop = components != np.argmax(sizes)
    drop &= inside
    segmentation[box][drop] = 0  # basic slicing gives a view, so this writes into segmentation


def _is_region(region: Any) -> bool:
    """A non-empty list of foreground label values (JSON true/false are bools, never labels)."""
    if not isinstance(region, list | tuple) or not region:
        return False
    return all(isinstance(v, int | np.integer) and type(v) is not bool and v > 0 for v in region)


@dataclass(frozen=True)
class PostprocessingRule:
    """Keep the largest component of the foreground (``largest_foreground``, region None) or of
    one label/region (``largest_per_region``; region = its label values, e.g. ``(1,)``)."""

    kind: RuleKind
    region: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        region = (self.region,) if isinstance(self.region, int) else self.region
        valid = region is None if self.kind == "largest_foreground" else _is_region(region)
        if self.kind not in get_args(RuleKind) or not valid:
            raise ValueError(f"invalid rule: kind {self.kind!r} with region {self.region!r}")
        if region is not None:
            object.__setattr__(self, "region", tuple(int(v) for v in region))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "region": None if self.region is None else list(self.region)}


def _file_error(source: str, problem: str) -> AutoSegError:
    fix = 'rewrite it with determine_postprocessing (rules: {"kind": ..., "region": [1] or null})'
    return AutoSegError(f"{source}: {problem}. Fix: {fix}.")


@dataclass(frozen=True)
class Postprocessing:
    """The accepted rules in order; ``before``/``after``: cross-validation ``foreground_mean`` and
    ``mean`` (per label/region) without and with them."""

    rules: Rules = ()
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)

    def apply(self, segmentation: np.ndarray) -> np.ndarray:
        """A copy of ``segmentation`` with every rule applied in order (one copy, then in place)."""
        result = np.array(segmentation, copy=True)
        for rule in self.rules:
            _remove_outside_largest(result, rule.region)
        return result

    def to_json(self) -> dict[str, Any]:
        """Strict JSON: NaN scores become null."""
        return {
            "rules": [rule.to_json() for rule in self.rules],
            "before": _nan_to_none(self.before),
            "after": _nan_to_none(self.after),
        }

    @classmethod
    def from_json(cls, data: Any, source: str = POSTPROCESSING_FILE) -> Postprocessing:
        """Inverse of :meth:`to_json` (null scores back to NaN)."""
        if isinstance(data, dict) and "postprocessing_fns" in data:  # nnU-Net's JSON
            data = postprocessing_json_from_nnunet(data, source)
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise _file_error(source, "holds no rules (expected an object with a 'rules' list)")
        scores = [data.get(key, {}) for key in ("before", "after")]
        if not all(isinstance(value, dict) for value in scores):
            raise _file_error(source, "'before' and 'after' must be objects")
        try:
            rules = tuple(PostprocessingRule(r["kind"], r.get("region")) for r in data["rules"])
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise _file_error(source, f"holds a rule that is not valid ({error})") from None
        return cls(rules, *(_nan_to_none(value, back=True) for value in scores))

    def save(self, path: Path) -> Path:
        """Write atomically to ``path`` (a folder gets a postprocessing.json); returns the file."""
        target = Path(path)
        if target.is_dir():
            target = target / POSTPROCESSING_FILE
        write_json_atomic(target, self.to_json())
        return target

    @classmethod
    def load(cls, path: Path) -> Postprocessing:
        """Read a postprocessing.json (or the one in a folder); pickle files are refused."""
        path = Path(path) / POSTPROCESSING_FILE if Path(path).is_dir() else Path(path)
        if path.suffix.lower() == ".pkl":
            beside = path.with_name(POSTPROCESSING_FILE)
            state = "" if beside.is_file() else " (run determine_postprocessing if it is missing)"
            raise AutoSegError(
                f"{path}: AutoSeg never reads pickle files (loading one can run arbitrary code). "
                f"Fix: pass the {POSTPROCESSING_FILE} beside it instead: {beside}{state}."
            )
        if not path.is_file():
            raise AutoSegError(
                f"{path}: post-processing file not found. Fix: check the path, or run "
                "determine_postprocessing on the cross-validation predictions to create it."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _file_error(str(path), f"cannot be read as JSON ({error})") from None
        return cls.from_json(data, str(path))


def _nan_to_none(value: Any, back: bool = False) -> Any:
    """NaN -> None for strict JSON (``back``: None -> NaN), through nested dicts and lists."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v, back) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v, back) for v in value]
    if back:
        return math.nan if value is None else value
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass(frozen=True)
class _CaseJob:
    """One case for a worker process (module level and picklable for spawned workers)."""

    prediction: Path
    reader: str
    rules: Rules = ()
    reference: Path | None = None
    labels: LabelSpec | None = None
    candidates: Rules = ()
    output: Path | None = None


def _read_reference(reader: ImageReaderWriter, job: _CaseJob, shape: tuple) -> np.ndarray:
    reference, _ = reader.read_seg(job.reference)
    if reference.shape != shape:
        raise AutoSegError(
            f"{job.prediction}: shape {shape[1:]} differs from the reference {job.reference} "
            f"{reference.shape[1:]}. Fix: predictions must be on the grid of their reference image."
        )
    return reference


def _score_case(job: _CaseJob) -> list[CaseMetrics]:
    """Metrics after ``job.rules``, then after each candidate added on top of them (one read)."""
    reader = READER_WRITERS[job.reader]()
    prediction, _ = reader.read_seg(job.prediction)
    current = Postprocessing(job.rules).apply(prediction) if job.rules else prediction
    reference = _read_reference(reader, job, prediction.shape)
    scored = [case_metrics(reference, current, job.labels)]
    for rule in job.candidates:
        trial = np.array(current, copy=True)
        _remove_outside_largest(trial, rule.region)
        scored.append(case_metrics(reference, trial, job.labels))
    return scored


def _write_case(job: _CaseJob) -> CaseMetrics | None:
    """Apply the rules and write with the input's geometry; score when a reference is set.

    Written in a temporary folder next to the target; companion files (a TIFF's spacing sidecar)
    are moved first and the segmentation last, so a visible file is always complete.
    """
    reader = READER_WRITERS[job.reader]()
    prediction, geometry = reader.read_seg(job.prediction)
    result = Postprocessing(job.rules).apply(prediction)
    target = Path(job.output)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as folder:
        staged = Path(folder) / target.name
        reader.write_seg(result[0], staged, geometry)
        for extra in sorted(p for p in Path(folder).iterdir() if p != staged):
            extra.replace(target.parent / extra.name)
        staged.replace(target)
    if job.reference is None:
        return None
    return case_metrics(_read_reference(reader, job, prediction.shape), result, job.labels)


def _segmentation_names(folder: Path, file_ending: str) -> list[str]:
    if not folder.is_dir():
        raise AutoSegError(f"{folder}: folder not found. Fix: check the path.")
    found = [p.name for p in folder.glob(f"*{file_ending}") if p.is_file()]
    names = sorted(n for n in found if not n.startswith("."))  # no macOS "._" shadow files
    if not names:
        raise AutoSegError(
            f"{folder}: no files ending with {file_ending!r}. Fix: check the folder and the ending."
        )
    return names


def _check_distinct(input_dir: Path, output_dir: Path) -> None:
    if output_dir.resolve() == input_dir.resolve():
        raise AutoSegError(
            f"{output_dir}: the output folder is the input folder; post-processing never "
            "overwrites its input. Fix: choose another output folder."
        )


def _matched_names(prediction_dir: Path, reference_dir: Path, file_ending: str) -> list[str]:
    """Prediction file names, each with a reference of the same name."""
    names = _segmentation_names(prediction_dir, file_ending)
    if not reference_dir.is_dir():
        raise AutoSegError(f"{reference_dir}: reference folder not found. Fix: check the path.")
    orphans = [n for n in names if not (reference_dir / n).is_file()]
    if orphans:
        raise AutoSegError(
            f"{prediction_dir}: no reference in {reference_dir} for {len(orphans)} predictions "
            f"({', '.join(orphans[:10])}). Fix: use the matching reference folder or remove them."
        )
    return names


@dataclass(frozen=True)
class _Search:
    """What every scoring pass of determine_postprocessing shares."""

    pairs: tuple[tuple[Path, Path], ...]  # (prediction, reference)
    labels: LabelSpec
    reader: str
    num_processes: int

    def score(self, rules: Rules, candidates: Sequence[PostprocessingRule]) -> list[Summary]:
        """Summaries after ``rules``, then after ``rules`` + each candidate (one read per case)."""
        jobs = [
            _CaseJob(p, self.reader, rules, r, self.labels, (*candidates,)) for p, r in self.pairs
        ]
        per_case = map_cases(_score_case, jobs, self.num_processes, stage="post-processing")
        return [_summary([c[i] for c in per_case], self.pairs) for i in range(len(candidates) + 1)]


def _summary(metrics: Sequence[CaseMetrics], pairs: Sequence[tuple[Path, Path]]) -> Summary:
    """What evaluate_folders returns: means plus metrics and files per case."""
    summary = evaluation.summarize(metrics)
    summary["metric_per_case"] = [
        {"metrics": m, "prediction_file": str(p), "reference_file": str(r)}
        for m, (p, r) in zip(metrics, pairs, strict=True)
    ]
    return summary


def _dice(summary: Summary, region: tuple[int, ...]) -> float:
    return summary["mean"][evaluation.region_key(region)]["Dice"]


def _foreground_accepted(before: Summary, after: Summary) -> bool:
    """Strictly better foreground mean Dice and no label worse (NaN compares false, as intended)."""
    if not after["foreground_mean"]["Dice"] > before["foreground_mean"]["Dice"]:
        return False
    return not any(after["mean"][k]["Dice"] < before["mean"][k]["Dice"] for k in before["mean"])


def _region_rules(search: _Search, rules: Rules, current: Summary) -> Rules:
    """Step (b): the per-label/region rules that improve their own mean Dice, cumulatively."""
    regions = evaluation.evaluated_regions(search.labels)
    if len(regions) < 2:
        return ()
    candidates = [PostprocessingRule("largest_per_region", r) for r in regions]
    if not search.labels.has_regions:
        # A label's rule only turns that label's voxels into background, so it cannot change any
        # other label's score: scoring all rules in one pass equals trying them one after another.
        trials = search.score(rules, candidates)[1:]
        return tuple(
            rule
            for rule, trial in zip(candidates, trials, strict=True)
            if _dice(trial, rule.region) > _dice(current, rule.region)
        )
    accepted: list[PostprocessingRule] = []
    for rule in candidates:  # overlapping regions: each trial starts from the current best
        trial = search.score((*rules, *accepted), [rule])[1]
        if _dice(trial, rule.region) > _dice(current, rule.region):
            accepted.append(rule)
            current = trial
    return tuple(accepted)


def determine_postprocessing(
    prediction_dir: Path,
    reference_dir: Path,
    labels: LabelSpec,
    file_ending: str,
    *,
    num_processes: int = 1,
    output_dir: Path | None = None,
) -> Postprocessing:
    """Choose the post-processing rules on cross-validation predictions (steps (a) and (b)).

    Writes ``summary.json`` of the raw predictions into ``prediction_dir``, the post-processed
    files and their ``summary.json`` into ``output_dir`` (default ``<parent>/postprocessed``) and
    ``postprocessing.json`` into the parent of ``prediction_dir``. Returns the rules and scores.
    """
    prediction_dir, reference_dir = Path(prediction_dir), Path(reference_dir)
    output_dir = Path(output_dir or prediction_dir.parent / POSTPROCESSED_DIR)
    _check_distinct(prediction_dir, output_dir)
    names = _matched_names(prediction_dir, reference_dir, file_ending)
    pairs = tuple((prediction_dir / n, reference_dir / n) for n in names)
    reader = choose_reader_writer(file_ending, example_file=pairs[0][0]).name
    search = _Search(pairs, labels, reader, num_processes)

    foreground = PostprocessingRule("largest_foreground")
    raw, with_foreground = search.score((), [foreground])
    write_json_atomic(prediction_dir / SUMMARY_FILE, _nan_to_none(raw))
    rules: Rules = ()
    current = raw
    if _foreground_accepted(raw, with_foreground):
        rules, current = (foreground,), with_foreground
    rules += _region_rules(search, rules, current)

    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = [_CaseJob(p, reader, rules, r, labels, output=output_dir / p.name) for p, r in pairs]
    final = map_cases(_write_case, jobs, num_processes, stage="post-processing")
    after = _summary(final, [(job.output, job.reference) for job in jobs])
    write_json_atomic(output_dir / SUMMARY_FILE, _nan_to_none(after))
    headline = ("foreground_mean", "mean")
    result = Postprocessing(rules, *({k: s[k] for k in headline} for s in (raw, after)))
    result.save(prediction_dir.parent / POSTPROCESSING_FILE)
    return result


def apply_postprocessing_folder(
    input_dir: Path,
    output_dir: Path,
    postprocessing: Postprocessing,
    file_ending: str,
    *,
    num_processes: int = 1,
) -> list[Path]:
    """Post-process every segmentation of ``input_dir`` into ``output_dir`` (same file names and
    geometry); the input folder is never written to. Returns the written files in name order."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    _check_distinct(input_dir, output_dir)
    names = _segmentation_names(input_dir, file_ending)
    reader = choose_reader_writer(file_ending, example_file=input_dir / names[0]).name
    output_dir.mkdir(parents=True, exist_ok=True)
    rules = postprocessing.rules
    jobs = [_CaseJob(input_dir / n, reader, rules, output=output_dir / n) for n in names]
    map_cases(_write_case, jobs, num_processes, stage="post-processing")
    return [output_dir / n for n in names]
