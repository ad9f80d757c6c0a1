"""Model versions: a retrained fold keeps the whole previous model as versions/<n>, usable by predict."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from Testing.engine.cli.test_predict_command import FAST, build_model, write_case

from autoseg.checkpoint import FINAL
from autoseg.cli import main
from autoseg.paths import DataRoots
from autoseg.training import model_versions
from autoseg.training.distributed import DistributedContext, spawn
from autoseg.training.fold_lock import LOCK_FILE
from autoseg.training.job import TrainingJob
from autoseg.training.model_versions import (
    keep_previous_model,
    newest_version,
    warm_start_from_version,
)
from autoseg.training.run import RunOptions
from autoseg.training.starting_point import keep_previous_model_on_ranks

from .conftest import tiny_job

DATASET = "Dataset901_Tiny"


@pytest.fixture
def job(tiny_preprocessed: DataRoots, tmp_path: Path) -> TrainingJob:
    """Fold 0 of a model folder with two trained folds (tiny random networks) and run files."""
    roots = DataRoots(tiny_preprocessed.raw, tiny_preprocessed.preprocessed, tmp_path / "results")
    model = build_model(roots)
    (model / "dataset_fingerprint.json").write_text("{}")
    fold = model / "fold_0"
    (fold / "validation").mkdir()
    (fold / "validation" / "summary.json").write_text('{"foreground_mean": {"Dice": 0.5}}')
    (fold / "events.jsonl").write_text('{"event": "end"}\n')
    (fold / LOCK_FILE).write_text("{}")  # the new run holds the lock
    (fold / ".checkpoint_latest.pth.abc.tmp").write_bytes(b"half written")
    job = tiny_job(tiny_preprocessed, roots.results / DATASET)
    assert job.model_dir == model
    return job


def test_the_whole_model_is_kept_and_the_fold_emptied(job: TrainingJob) -> None:
    model = job.model_dir
    assert newest_version(model) is None
    weights = {f: (model / f / FINAL).read_bytes() for f in ("fold_0", "fold_1")}
    version = keep_previous_model(job, "autoseg train 901 3d_fullres 0", clock=lambda: 0.0)
    assert version == model / "versions" / "1"
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        assert (version / name).read_bytes() == (model / name).read_bytes()
    for fold, data in weights.items():
        assert (version / fold / FINAL).read_bytes() == data
    assert (version / "fold_0" / "validation" / "summary.json").is_file()
    assert (version / "fold_0" / "events.jsonl").is_file()
    assert not (version / "fold_0" / LOCK_FILE).exists()
    assert not list(version.rglob(".*"))  # no temporaries, no staging left
    info = json.loads((version / "version.json").read_text())
    assert (info["version"], info["fold"], info["command"]) == (
        1,
        "0",
        "autoseg train 901 3d_fullres 0",
    )
    assert info["kept"].startswith("1970-01-01") or info["kept"].startswith("1969-12-31")
    # The retrained fold holds only the run's lock; the other fold is untouched.
    assert [p.name for p in job.fold_dir.iterdir()] == [LOCK_FILE]
    assert (model / "fold_1" / FINAL).read_bytes() == weights["fold_1"]
    assert list((model / "versions").iterdir()) == [version]


def test_checkpoints_are_linked_not_copied(job: TrainingJob) -> None:
    cache = job.model_dir / "fold_1" / "runtime_cache" / "openvino_1x12x32x32.bin"
    cache.parent.mkdir()
    cache.write_bytes(b"converted network")
    (job.model_dir / "fold_1" / "network.txt").write_text("rewritten by every run")
    version = keep_previous_model(job, "train")
    assert version is not None
    for shared in (Path("fold_1") / FINAL, cache.relative_to(job.model_dir)):
        assert (version / shared).stat().st_ino == (job.model_dir / shared).stat().st_ino
    assert (version / "fold_1" / "network.txt").stat().st_nlink == 1
    summary = version / "fold_0" / "validation" / "summary.json"
    assert summary.stat().st_nlink == 1  # fold 0's own files left the model folder


def test_without_hard_links_files_are_copied(job: TrainingJob, monkeypatch) -> None:
    def no_links(source, target) -> None:
        raise OSError("hard links not supported")

    monkeypatch.setattr(model_versions.os, "link", no_links)
    before = (job.model_dir / "fold_1" / FINAL).read_bytes()
    version = keep_previous_model(job, "train")
    assert version is not None
    assert (version / "fold_1" / FINAL).read_bytes() == before


def test_versions_are_numbered_and_never_reused(job: TrainingJob, monkeypatch) -> None:
    first = keep_previous_model(job, "train")
    assert keep_previous_model(job, "train") is None  # the fold holds no final model now
    (job.fold_dir / FINAL).write_bytes((first / "fold_0" / FINAL).read_bytes())
    calls = []

    def stale(model_dir: Path) -> list[int]:  # another run kept version 1 a moment ago
        calls.append(model_dir)
        return [] if len(calls) == 1 else [1]

    monkeypatch.setattr(model_versions, "version_numbers", stale)
    second = keep_previous_model(job, "train")
    assert second == job.model_dir / "versions" / "2"
    assert json.loads((second / "version.json").read_text())["version"] == 2
    assert sorted(p.name for p in (job.model_dir / "versions").iterdir()) == ["1", "2"]
    monkeypatch.undo()
    assert newest_version(job.model_dir) == second


def test_a_kept_version_predicts_with_autoseg_predict(job: TrainingJob, tmp_path, capsys) -> None:
    version = keep_previous_model(job, "train")
    inputs = tmp_path / "in"
    write_case(inputs, "case_0")
    code = main(
        ["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(version), *FAST]
    )
    assert (code, capsys.readouterr().err) == (0, "")
    assert (tmp_path / "out" / "case_0.nii.gz").is_file()
    assert json.loads((tmp_path / "out" / "predict_args.json").read_text())["folds"] == ["0", "1"]


def test_warm_start_from_this_model_reads_the_kept_version(job: TrainingJob, tmp_path) -> None:
    version = job.model_dir / "versions" / "3"
    same = replace(job, settings=replace(job.settings, from_model=str(job.model_dir) + os.sep))
    assert warm_start_from_version(same, version).settings.from_model == str(version)
    assert warm_start_from_version(same, None) is same
    other = replace(job, settings=replace(job.settings, from_model=str(tmp_path / "other")))
    assert warm_start_from_version(other, version) is other
    assert warm_start_from_version(job, version) is job  # trained from scratch


def _keep_in_rank(context: DistributedContext, job: TrainingJob, out: Path) -> None:
    """Runs in each spawned process: the run's keep step, then what this rank learnt."""
    kept_job, kept = keep_previous_model_on_ranks(job, RunOptions(), context)
    (out / f"rank{context.rank}.txt").write_text(f"{kept}|{kept_job.settings.from_model}")


def test_every_rank_of_a_distributed_run_learns_the_kept_version(
    job: TrainingJob, tmp_path
) -> None:
    """Only the main rank keeps the model; the others start from the same version."""
    warm = replace(job, settings=replace(job.settings, from_model=str(job.model_dir)))
    spawn(_keep_in_rank, (warm, tmp_path), world_size=2, use_cuda=False)
    version = job.model_dir / "versions" / "1"
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == f"{version}|{version}"
    assert [p.name for p in (job.model_dir / "versions").iterdir()] == ["1"]
