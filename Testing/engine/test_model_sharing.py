"""Export/import of model zips: the right files travel byte for byte, hostile zips write nothing."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from autoseg import model_zip_layout
from autoseg.errors import AutoSegError
from autoseg.model_sharing import ExportOptions, export_model, import_model

DATASET = "Dataset004_Hippo"
MODEL = "AutoSegTrainer__AutoSegPlans__{}"
FOLD_FILES = (
    "checkpoint_final.pth",
    "checkpoint_best.pth",
    "checkpoint_latest.pth",
    "training_settings.json",
    "network.txt",
    "progress.png",
    "events.jsonl",
    "training_log_2024_1_1_00_00_00.txt",
    "validation/case_0.nii.gz",
    "validation/case_0.npz",
    "validation/case_0.json",
    "validation/summary.json",
)
MODEL_FILES = (
    "plans.json",
    "dataset.json",
    "dataset_fingerprint.json",
    "postprocessing.json",
    "crossval_results_folds_0_1/summary.json",
    "crossval_results_folds_0_1/case_0.nii.gz",
)
ENSEMBLE = "ensembles/ensemble___model_a___model_b___0_1"
DATASET_FILES = (
    "inference_information.json",
    "inference_instructions.txt",
    "notes.md",
    f"{ENSEMBLE}/postprocessing.json",  # a recommended ensemble's rules: predict -m needs them
    f"{ENSEMBLE}/summary.json",
    f"{ENSEMBLE}/case_0.nii.gz",
    f"{ENSEMBLE}/case_0.npz",
)


def _write(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes((seed * 31 + i) % 256 for i in range(64 + seed % 7)))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results dataset folder with two configurations (2 folds each) and a foreign trainer."""
    dataset = tmp_path / "results" / DATASET
    names = [*DATASET_FILES]
    for configuration in ("3d_fullres", "2d"):
        model = MODEL.format(configuration)
        names += [f"{model}/{n}" for n in MODEL_FILES]
        names += [f"{model}/fold_{k}/{n}" for k in (0, 1) for n in FOLD_FILES]
    names += ["OtherTrainer__AutoSegPlans__3d_fullres/plans.json"]
    for seed, name in enumerate(names):
        _write(dataset / name, seed)
    return dataset


def _names(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return {m.filename for m in archive.infolist()}


def _expected(configurations: tuple[str, ...], folds: tuple[int, ...]) -> set[str]:
    kept = {"checkpoint_final.pth", "training_settings.json", "network.txt", "progress.png"}
    names = {f"{DATASET}/{n}" for n in DATASET_FILES if n.endswith((".json", ".txt"))}
    for configuration in configurations:
        model = f"{DATASET}/{MODEL.format(configuration)}"
        names |= {f"{model}/{n}" for n in MODEL_FILES if not n.endswith(".nii.gz")}
        for k in folds:
            names |= {f"{model}/fold_{k}/{n}" for n in kept | {"validation/summary.json"}}
    return names


def test_round_trip_copies_the_chosen_files_byte_for_byte(results: Path, tmp_path: Path):
    zip_path = export_model(results, tmp_path / "model.zip")
    assert _names(zip_path) == _expected(("2d", "3d_fullres"), (0, 1))

    imported = import_model(zip_path, tmp_path / "other")
    target = tmp_path / "other" / DATASET
    assert imported == [target / MODEL.format("2d"), target / MODEL.format("3d_fullres")]
    copied = sorted(p for p in target.rglob("*") if p.is_file())
    assert len(copied) == len(_names(zip_path))
    for path in copied:
        assert path.read_bytes() == (results / path.relative_to(target)).read_bytes()
    assert [p.name for p in (tmp_path / "other").iterdir()] == [DATASET]  # no staging left


def test_include_validation_exports_the_whole_validation_folder(results: Path, tmp_path: Path):
    options = ExportOptions(configurations=["3d_fullres"], folds=["0"], include_validation=True)
    names = _names(export_model(results, tmp_path / "model.zip", options))
    fold = f"{DATASET}/{MODEL.format('3d_fullres')}/fold_0"
    assert {n for n in names if "/validation/" in n} == {
        f"{fold}/validation/{n}"
        for n in ("case_0.nii.gz", "case_0.npz", "case_0.json", "summary.json")
    }
    assert f"{fold}/checkpoint_latest.pth" not in names
    import_model(tmp_path / "model.zip", tmp_path / "other")  # every exported name is accepted
    assert (tmp_path / "other" / fold / "validation" / "case_0.npz").is_file()


def test_configurations_folds_and_checkpoint_are_chosen(results: Path, tmp_path: Path):
    options = ExportOptions(
        configurations=["2d"], folds=["fold_1"], checkpoint="checkpoint_best.pth"
    )
    names = _names(export_model(results, tmp_path / "model.zip", options))
    fold = f"{DATASET}/{MODEL.format('2d')}/fold_1"
    assert f"{fold}/checkpoint_best.pth" in names
    assert not any("3d_fullres" in n or "fold_0" in n or "final" in n for n in names)


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        (ExportOptions(configurations=["3d_lowres"]), "AutoSegTrainer__AutoSegPlans__2d"),
        (ExportOptions(trainer="Missing"), "OtherTrainer__AutoSegPlans__3d_fullres"),
        (ExportOptions(folds=["4"]), "existing folds: 0, 1"),
        (ExportOptions(checkpoint="checkpoint_latest.pth"), "checkpoint_final.pth"),
    ],
)
def test_missing_choices_are_reported_with_what_exists(
    results: Path, tmp_path: Path, options: ExportOptions, mentions: str
):
    with pytest.raises(AutoSegError, match=mentions):
        export_model(results, tmp_path / "model.zip", options)
    assert not list(tmp_path.glob("*.zip*"))


def test_missing_checkpoint_lists_the_checkpoints_present(results: Path, tmp_path: Path):
    (results / MODEL.format("2d") / "fold_1" / "checkpoint_final.pth").unlink()
    with pytest.raises(AutoSegError, match=r"fold_1: checkpoint_best\.pth, checkpoint_latest"):
        export_model(results, tmp_path / "model.zip")


def test_export_never_overwrites_an_existing_file(results: Path, tmp_path: Path):
    existing = tmp_path / "model.zip"
    existing.write_bytes(b"mine")
    with pytest.raises(AutoSegError, match="already exists"):
        export_model(results, existing)
    assert existing.read_bytes() == b"mine"


def _zip(path: Path, members: dict[str | zipfile.ZipInfo, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"{DATASET}/{MODEL.format('2d')}/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    "evil",
    [
        "/evil.txt",
        f"{DATASET}/../evil.txt",
        f"{DATASET}/../../evil.txt",
        f"{DATASET}\\..\\..\\evil.txt",
        "C:/evil.txt",
        f"C:{DATASET}/evil.txt",
        "Dataset005_Other/evil.txt",
        "evil.txt",
        DATASET,
        _symlink_member(),
    ],
    ids=str,
)
def test_unsafe_members_are_rejected_before_anything_is_written(
    tmp_path: Path, evil: str | zipfile.ZipInfo
):
    good = {f"{DATASET}/{MODEL.format('2d')}/plans.json": b"{}"}
    zip_path = _zip(tmp_path / "evil.zip", {**good, evil: b"../../outside"})
    root = tmp_path / "deep" / "results"
    with pytest.raises(AutoSegError, match=r"evil\.zip is not a safe .*nothing was imported"):
        import_model(zip_path, root)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.zip"]


def test_a_symlinked_dataset_folder_pointing_outside_is_rejected(tmp_path: Path):
    zip_path = _zip(tmp_path / "m.zip", {f"{DATASET}/{MODEL.format('2d')}/plans.json": b"{}"})
    (tmp_path / "results").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results" / DATASET).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AutoSegError, match="outside"):
        import_model(zip_path, tmp_path / "results")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_zip_without_a_model_is_rejected(tmp_path: Path):
    zip_path = _zip(tmp_path / "m.zip", {f"{DATASET}/inference_instructions.txt": b"hi"})
    with pytest.raises(AutoSegError, match="holds no model"):
        import_model(zip_path, tmp_path / "results")


def test_existing_files_are_kept_unless_overwrite(results: Path, tmp_path: Path):
    zip_path = export_model(results, tmp_path / "model.zip")
    root = tmp_path / "other"
    import_model(zip_path, root)
    plans = root / DATASET / MODEL.format("2d") / "plans.json"
    plans.write_bytes(b"edited")
    extra = root / DATASET / MODEL.format("2d") / "mine.txt"
    extra.write_bytes(b"mine")
    with pytest.raises(AutoSegError, match=r"(?s)overwrite.*plans\.json: already exists"):
        import_model(zip_path, root)
    assert plans.read_bytes() == b"edited"

    import_model(zip_path, root, overwrite=True)
    assert plans.read_bytes() == (results / MODEL.format("2d") / "plans.json").read_bytes()
    assert extra.read_bytes() == b"mine"
    assert sorted(p.name for p in root.iterdir()) == [DATASET]


def test_a_failed_move_restores_the_previous_files(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    zip_path = export_model(results, tmp_path / "model.zip")
    root = tmp_path / "other"
    import_model(zip_path, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    plans = root / DATASET / MODEL.format("2d") / "plans.json"
    plans.write_bytes(b"edited")
    before[plans] = b"edited"
    (root / DATASET / MODEL.format("2d") / "fold_1").rename(root / "fold_1_moved_away")
    real_replace, calls = Path.replace, []

    def failing_replace(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == 40:
            raise OSError("disk full")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_replace)
    with pytest.raises(AutoSegError, match=r"disk full.*restored"):
        import_model(zip_path, root, overwrite=True)
    monkeypatch.undo()
    (root / "fold_1_moved_away").rename(root / DATASET / MODEL.format("2d") / "fold_1")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert len(calls) > 40  # the failure happened mid-way and the rollback ran


def test_a_folder_where_a_file_belongs_blocks_even_overwrite(results: Path, tmp_path: Path):
    zip_path = export_model(results, tmp_path / "model.zip")
    (tmp_path / "other" / DATASET / MODEL.format("2d") / "plans.json").mkdir(parents=True)
    with pytest.raises(AutoSegError, match="clash"):
        import_model(zip_path, tmp_path / "other", overwrite=True)
    assert not (tmp_path / "other" / DATASET / MODEL.format("3d_fullres")).exists()


def test_a_file_that_is_not_a_zip_is_named_in_the_error(tmp_path: Path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(AutoSegError, match=r"broken\.zip is not a readable zip file"):
        import_model(broken, tmp_path / "results")


def test_a_damaged_member_leaves_nothing_behind(tmp_path: Path):
    payload = b"weights" * 100
    name = f"{DATASET}/{MODEL.format('2d')}/plans.json"
    zip_path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{DATASET}/{MODEL.format('2d')}/fold_0/network.txt", b"fine")
        archive.writestr(name, payload)
    data = zip_path.read_bytes()
    at = data.rindex(payload) + 10
    zip_path.write_bytes(data[:at] + b"X" + data[at + 1 :])  # CRC no longer matches
    root = tmp_path / "results"
    with pytest.raises(AutoSegError, match=r"damaged\.zip is damaged"):
        import_model(zip_path, root)
    assert list(root.iterdir()) == []


PLANS = f"{DATASET}/{MODEL.format('2d')}/plans.json"
FOLD = f"{DATASET}/{MODEL.format('2d')}/fold_0"


def _assert_nothing_written(tmp_path: Path, zip_name: str) -> None:
    assert sorted(p.name for p in tmp_path.rglob("*")) == [zip_name]


def _fail_if_read(*args: object, **kwargs: object) -> None:
    raise AssertionError("a member was read: the refusal must come from the listing alone")


def _zip_bomb(path: Path, member: str, megabytes: int) -> Path:
    """A zip with one member of ``megabytes`` MB of zeros, written in 1 MB steps (the zip itself
    is about 1 kB per MB); the 1 MB buffer is the only memory it takes."""
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(PLANS, b"{}")
        with archive.open(member, "w", force_zip64=True) as stream:
            for _ in range(megabytes):
                stream.write(zeros)
    return path


def test_a_zip_bomb_is_refused_from_its_listing_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = _zip_bomb(tmp_path / "bomb.zip", f"{FOLD}/checkpoint_final.pth", 200)
    assert zip_path.stat().st_size < 400_000
    monkeypatch.setattr(zipfile.ZipFile, "open", _fail_if_read)
    with pytest.raises(AutoSegError, match=r"(?s)bomb\.zip is not a safe.*inflate 10\d\d:1"):
        import_model(zip_path, tmp_path / "results")
    _assert_nothing_written(tmp_path, "bomb.zip")


@pytest.mark.parametrize(
    "member",
    [
        f"{FOLD}/evil.exe",
        f"{FOLD}/checkpoint_final.pkl",
        f"{FOLD}/validation/case_0.pkl",
        f"{FOLD}/debug.log",
        f"{FOLD}/training_log_2024.txt",
        f"{FOLD}/sub/checkpoint_final.pth",
        f"{DATASET}/{MODEL.format('2d')}/run.sh",
        f"{DATASET}/notes.md",
        f"{DATASET}/not_a_model/plans.json",
        f"{DATASET}/{MODEL.format('2d')}/PLANS.JSON",
    ],
)
def test_unknown_members_are_refused(tmp_path: Path, member: str) -> None:
    zip_path = _zip(tmp_path / "odd.zip", {PLANS: b"{}", member: b"x"})
    with pytest.raises(AutoSegError, match="is not a file a model zip holds") as error:
        import_model(zip_path, tmp_path / "results")
    assert repr(member) in str(error.value)
    _assert_nothing_written(tmp_path, "odd.zip")


def test_folder_entries_on_the_way_to_model_files_are_accepted(tmp_path: Path) -> None:
    folders = [f"{DATASET}/", f"{DATASET}/{MODEL.format('2d')}/", f"{FOLD}/", f"{FOLD}/validation/"]
    members = {**dict.fromkeys(folders, b""), PLANS: b"{}", f"{FOLD}/network.txt": b"net"}
    import_model(_zip(tmp_path / "dirs.zip", members), tmp_path / "results")
    assert (tmp_path / "results" / FOLD / "validation").is_dir()
    stray = _zip(tmp_path / "stray.zip", {PLANS: b"{}", f"{FOLD}/secrets/": b""})
    with pytest.raises(AutoSegError, match=r"secrets/'. is not a file a model zip holds"):
        import_model(stray, tmp_path / "results2")


def test_duplicate_members_are_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "twice.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr(PLANS, b"{}")
        with pytest.warns(UserWarning, match="Duplicate"):
            archive.writestr(PLANS, b"{}")
    with pytest.raises(AutoSegError, match="appears more than once"):
        import_model(zip_path, tmp_path / "results")
    _assert_nothing_written(tmp_path, "twice.zip")


def test_members_and_archives_over_the_size_limits_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = _zip(tmp_path / "big.zip", {PLANS: b"{}", f"{FOLD}/network.txt": bytes(3000)})
    monkeypatch.setattr(model_zip_layout, "MAX_MEMBER_BYTES", 2000)
    with pytest.raises(
        AutoSegError, match=r"network\.txt'. inflates to 3000 bytes, over the limit"
    ):
        import_model(zip_path, tmp_path / "results")
    monkeypatch.setattr(model_zip_layout, "MAX_MEMBER_BYTES", 4000)
    monkeypatch.setattr(model_zip_layout, "MAX_TOTAL_BYTES", 2500)
    with pytest.raises(AutoSegError, match="the files inflate to 3002 bytes, over the limit"):
        import_model(zip_path, tmp_path / "results")
    _assert_nothing_written(tmp_path, "big.zip")
