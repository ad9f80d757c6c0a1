"""Share a trained model as one zip file: export what prediction needs, import it safely.

A results dataset folder holds far more than prediction needs (the latest checkpoint kept only for
resuming, logs, every validation prediction). Export picks the plans, the dataset description, one
checkpoint per fold and the small reports that document the model, so a shared zip stays small.

Import treats the zip as untrusted input. Every member is checked before anything is written (no
absolute paths, drive letters, ``..``, backslashes, duplicates or symlinks; exactly one
``DatasetXXX_Name/`` top folder; nothing that would land outside the results root; only the files
export writes, or nnU-Net's export; sizes within the limits that stop zip bombs: see
:mod:`autoseg.model_zip_layout`). The pickles of an nnU-Net zip are never extracted.
Files are extracted into a staging folder inside the results root and only then moved into place,
so a damaged or hostile zip never leaves half an import behind, and files the user already has are
replaced only when asked.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoseg import results_layout as layout
from autoseg.atomic import atomic_path
from autoseg.errors import AutoSegError
from autoseg.model_zip_layout import (
    DATASET_FOLDER,
    ENSEMBLES_DIR,
    FOLD_FILES,
    OPTIONAL_MODEL_FILES,
    SHARED_FILES,
    archive_problems,
    is_skipped,
)
from autoseg.paths import folder_error, make_folder

# Already compressed (or incompressible float weights): deflating them only costs time.
_STORED_ENDINGS = (".pth", ".png", ".gz", ".npz", ".zip")
_MAX_LISTED_PROBLEMS = 20
_RESULTS_FOLDER = "the results folder (--results)"
_NOT_A_MODEL_ZIP = (
    "a model zip holds one DatasetXXX_Name/ folder of model folders; export it again."
)


@dataclass(frozen=True)
class ExportOptions:
    """Which parts of a results dataset folder go into the zip.

    The defaults export every configuration and fold of the default trainer and plans with their
    final checkpoint and only the validation summary (not every validation prediction).
    """

    configurations: Sequence[str] | None = None
    folds: Sequence[str] | None = None
    trainer: str = "AutoSegTrainer"
    plans: str = "AutoSegPlans"
    include_validation: bool = False
    checkpoint: str = layout.FINAL_CHECKPOINT


def export_model(
    results_dataset_dir: Path, output_zip: Path, options: ExportOptions | None = None
) -> Path:
    """Zip the chosen models of ``<results>/DatasetXXX_Name`` into ``output_zip`` and return it.

    The zip is written atomically and an existing file is never overwritten, so an interrupted
    export leaves no broken zip and nothing the user made is lost.
    """
    options = options or ExportOptions()
    output = Path(output_zip)
    source, models = models_to_export(results_dataset_dir, output, options)
    files = _shared_files(source)
    for model, folds in models:
        files += _model_files(model)
        for fold in folds:
            files += _fold_files(fold, options)
    _write_zip(files, source, output)
    return output


def models_to_export(
    results_dataset_dir: Path, output_zip: Path, options: ExportOptions
) -> tuple[Path, list[tuple[Path, list[Path]]]]:
    """The checks every export makes before writing (dataset folder, checkpoint name, a new zip)
    and the chosen model folders, each with its chosen fold folders.

    Shared with the nnU-Net export (``autoseg.interop.nnunet_export``), so both formats choose
    models, folds and checkpoints by the same rules."""
    source = _check_dataset_folder(Path(results_dataset_dir))
    _check_checkpoint_name(options.checkpoint)
    output = Path(output_zip)
    if output.is_symlink() or output.exists():
        raise AutoSegError(
            f"{output} already exists; export never overwrites a file. "
            "Choose another file name or move the existing file away."
        )
    return source, [(m, _fold_folders(m, options.folds)) for m in _model_folders(source, options)]


def _check_dataset_folder(folder: Path) -> Path:
    folder = folder.resolve()
    if not folder.is_dir() or not DATASET_FOLDER.fullmatch(folder.name):
        raise AutoSegError(
            f"{folder} is not a folder named DatasetXXX_Name. Pass the results folder of one "
            "dataset, e.g. <results>/Dataset004_Hippocampus."
        )
    return folder


def _check_checkpoint_name(name: str) -> None:
    if name == layout.LATEST_CHECKPOINT or not name.endswith(".pth") or "/" in name or "\\" in name:
        raise AutoSegError(
            f"Checkpoint {name!r} cannot be exported ({layout.LATEST_CHECKPOINT} only resumes "
            f"training). Use {layout.FINAL_CHECKPOINT} or {layout.BEST_CHECKPOINT}."
        )


def _model_folders(source: Path, options: ExportOptions) -> list[Path]:
    """The model folders of the chosen configurations; all of them when none are named."""
    folders = sorted(p for p in source.iterdir() if layout.is_model_folder_name(p.name))
    chosen = (options.trainer, options.plans)
    split = {p: layout.split_model_folder_name(p.name) for p in folders if p.is_dir()}
    found = {name[2]: p for p, name in split.items() if name[:2] == chosen}
    wanted = sorted(found) if options.configurations is None else list(options.configurations)
    missing = [c for c in wanted if c not in found]
    if missing or not wanted:
        which = f" for configuration(s) {', '.join(missing)}" if missing else ""
        raise AutoSegError(
            f"{source} has no model folder {layout.model_folder_name(*chosen, '<configuration>')}"
            f"{which}. Model folders there: {', '.join(p.name for p in folders) or 'none'}. "
            "Choose a configuration, trainer and plans that exist."
        )
    return [found[c] for c in dict.fromkeys(wanted)]


def _fold_name(fold: object) -> str:
    return str(fold).removeprefix(layout.FOLD_PREFIX)


def _fold_order(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


def _fold_folders(model: Path, folds: Sequence[str] | None) -> list[Path]:
    """The chosen ``fold_<k>`` folders of one model; all of them when none are named."""
    found = {_fold_name(p.name): p for p in model.glob(f"{layout.FOLD_PREFIX}*") if p.is_dir()}
    wanted = sorted(found, key=_fold_order) if folds is None else [_fold_name(f) for f in folds]
    missing = [f for f in wanted if f not in found]
    if missing or not wanted:
        existing = ", ".join(sorted(found, key=_fold_order)) or "none"
        raise AutoSegError(
            f"{model} has no fold(s) {', '.join(missing) or '(none chosen)'}; existing folds: "
            f"{existing}. Choose folds that were trained."
        )
    return [found[f] for f in dict.fromkeys(wanted)]


def _existing(folder: Path, names: Sequence[str]) -> list[Path]:
    return [folder / n for n in names if (folder / n).is_file()]


def _shared_files(folder: Path) -> list[Path]:
    """Postprocessing and inference notes of a dataset or model folder (JSON and text only), with
    a recommended ensemble's post-processing (``ensembles/<name>/``; predict -m needs it)."""
    found = [*folder.glob(f"{layout.CROSSVAL_PATTERN}/*"), *folder.glob(f"{ENSEMBLES_DIR}/*/*")]
    kept = {"summary.json", layout.POSTPROCESSING_FILE}  # not the per-case probability properties
    notes = sorted(p for p in found if p.is_file() and p.name in kept)
    return _existing(folder, SHARED_FILES) + notes


def _model_files(model: Path) -> list[Path]:
    missing = [n for n in layout.MODEL_FILES if not (model / n).is_file()]
    if missing:
        raise AutoSegError(
            f"{model} lacks {', '.join(missing)}; a model cannot be used without them. "
            "Copy them from the preprocessed folder or train the model again."
        )
    files = _existing(model, layout.MODEL_FILES + OPTIONAL_MODEL_FILES)
    return files + _shared_files(model)


def _fold_files(fold: Path, options: ExportOptions) -> list[Path]:
    checkpoint = fold / options.checkpoint
    if not checkpoint.is_file():
        present = sorted(p.name for p in fold.glob("checkpoint_*.pth"))
        raise AutoSegError(
            f"{checkpoint} does not exist; checkpoints in {fold}: {', '.join(present) or 'none'} "
            f"({layout.LATEST_CHECKPOINT} is never exported). Finish training this fold, "
            "choose another checkpoint, or leave the fold out."
        )
    files = [checkpoint, *_existing(fold, FOLD_FILES)]
    validation = fold / "validation"
    if options.include_validation and validation.is_dir():
        files += sorted(p for p in validation.rglob("*") if p.is_file())
    elif (validation / "summary.json").is_file():
        files.append(validation / "summary.json")
    return files


def _write_zip(files: list[Path], source: Path, output: Path) -> None:
    """Files go under the top folder ``DatasetXXX_Name/`` with forward slashes, in order given."""
    with (
        atomic_path(output, suffix=".zip") as temporary,
        zipfile.ZipFile(
            temporary, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False
        ) as archive,
    ):
        for path in dict.fromkeys(files):
            name = f"{source.name}/{path.relative_to(source).as_posix()}"
            stored = path.name.endswith(_STORED_ENDINGS)
            archive.write(path, name, compress_type=zipfile.ZIP_STORED if stored else None)


def import_model(zip_path: Path, results_root: Path, *, overwrite: bool = False) -> list[Path]:
    """Import a model zip into ``results_root`` and return the imported model folders.

    Nothing is written unless every member is safe and no existing file would be replaced (with
    ``overwrite`` only the files in the zip are replaced; other files stay).
    """
    zip_path, root = Path(zip_path), Path(results_root).resolve()
    with _open_zip(zip_path) as archive:
        members = archive.infolist()
        top = _validate_members(zip_path, members, root)
        members = [m for m in members if not is_skipped(m)]  # nnU-Net's pickles stay in the zip
        models = _model_names(zip_path, members, top)
        make_folder(root, _RESULTS_FOLDER)  # a safe zip, so the root may be made: can it?
        _check_targets(zip_path, members, root, overwrite=overwrite)
        staging = _staging_folder(root)
        try:
            _extract(zip_path, archive, members, staging / "new")
            _move_into_place(zip_path, members, staging, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return [root / top / m for m in models]


def _staging_folder(root: Path) -> Path:
    """A new hidden folder inside the results root for the extracted files."""
    try:
        return Path(tempfile.mkdtemp(prefix=".autoseg-import-", dir=root))
    except OSError as error:
        raise folder_error(root, _RESULTS_FOLDER, error, "write in") from None


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise AutoSegError(
            f"{path} is not a readable zip file ({error}). Download or export the model again."
        ) from error


def _validate_members(zip_path: Path, members: list[zipfile.ZipInfo], root: Path) -> str:
    """Check every member before anything is written; returns the single top folder."""
    problems, top = archive_problems(members, root)
    if problems:
        _refuse(zip_path, "is not a safe AutoSeg model zip", problems)
    return top


def _refuse(zip_path: Path, what: str, problems: list[str], fix: str = _NOT_A_MODEL_ZIP) -> None:
    """Raise one error naming the zip, the fix, and (at most 20 of) the problems found."""
    listed = problems[:_MAX_LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    lines = [*listed, f"... and {more} more"] if more else listed
    raise AutoSegError(
        f"{zip_path} {what}; nothing was imported. Fix: {fix}\n  " + "\n  ".join(lines)
    )


def _model_names(zip_path: Path, members: list[zipfile.ZipInfo], top: str) -> list[str]:
    """Model folders are the folders right below the top folder that hold a plans.json."""
    names = [m.filename.split("/") for m in members if not m.is_dir()]
    models = sorted(
        {p[1] for p in names if len(p) == 3 and p[0] == top and p[2] == layout.PLANS_FILE}
    )
    if not models:
        _refuse(
            zip_path, "holds no model", [f"no {top}/<trainer>__<plans>__<configuration>/plans.json"]
        )
    return models


def _target_problem(info: zipfile.ZipInfo, root: Path) -> tuple[bool, str] | None:
    """(blocking, message) when the member's target is taken; blocking even with overwrite."""
    target = root / info.filename
    ancestors = [root / p for p in list(target.relative_to(root).parents)[:-1]]
    taken = target.exists() or target.is_symlink()
    if any(p.exists() and not p.is_dir() for p in ancestors):
        return True, f"{target}: a file stands where a folder of the zip belongs"
    if info.is_dir() or target.is_dir():
        clash = taken and info.is_dir() != target.is_dir()
        return (True, f"{target}: a file and a folder of the same name clash") if clash else None
    return (False, f"{target}: already exists") if taken else None


def _check_targets(
    zip_path: Path, members: list[zipfile.ZipInfo], root: Path, *, overwrite: bool
) -> None:
    """Refuse existing files (unless ``overwrite``) and anything that blocks a file or folder."""
    found = [p for p in (_target_problem(m, root) for m in members) if p is not None]
    blocked = [message for blocking, message in found if blocking]
    existing = [message for blocking, message in found if not blocking]
    total = sum(m.file_size for m in members)
    if total > shutil.disk_usage(next(p for p in [root, *root.parents] if p.exists())).free:
        blocked.append(f"{root}: not enough free disk space for {total} bytes")
    if blocked or (existing and not overwrite):
        fix = "import with overwrite to replace the existing files, or move them away."
        if blocked:
            fix = "move the files or folders in the way (listed first) elsewhere."
        _refuse(zip_path, "cannot be imported", blocked + existing, fix)


def _extract(
    zip_path: Path, archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], staging: Path
) -> None:
    for info in members:
        target = staging / info.filename
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as e:
            raise AutoSegError(
                f"{zip_path} is damaged: member {info.filename!r} cannot be read ({e}); "
                "nothing was imported. Download or export the model again."
            ) from e
        except OSError as e:
            raise AutoSegError(
                f"Could not extract {info.filename!r} of {zip_path} ({e}); nothing was imported."
            ) from e


def _move_into_place(
    zip_path: Path, members: list[zipfile.ZipInfo], staging: Path, root: Path
) -> None:
    """One rename when the dataset folder is new; otherwise file by file, undone on failure."""
    top = members[0].filename.split("/", 1)[0]
    target = root / top
    try:
        if not (target.exists() or target.is_symlink()):
            (staging / "new" / top).replace(target)
            return
        _replace_files(members, staging, root)
    except OSError as error:
        raise AutoSegError(
            f"Could not move the files of {zip_path} into {root} ({error}); "
            "the previous files were restored. Check permissions and free space."
        ) from error


def _replace_files(members: list[zipfile.ZipInfo], staging: Path, root: Path) -> None:
    moved: list[tuple[Path, Path | None]] = []
    created: list[Path] = []
    try:
        for info in members:
            target = root / info.filename
            if info.is_dir():
                created += _make_folders(target, root)
                continue
            created += _make_folders(target.parent, root)
            backup = None
            if target.exists() or target.is_symlink():
                backup = staging / "old" / info.filename
                backup.parent.mkdir(parents=True, exist_ok=True)
                target.replace(backup)
            moved.append((target, backup))
            (staging / "new" / info.filename).replace(target)
    except OSError:
        _roll_back(moved, created)
        raise


def _make_folders(folder: Path, root: Path) -> list[Path]:
    """Create ``folder`` and missing parents below ``root``; returns the ones created, top first."""
    missing = [p for p in [folder, *folder.parents] if p.is_relative_to(root) and not p.exists()]
    for path in reversed(missing):
        path.mkdir()
    return missing[::-1]


def _roll_back(moved: list[tuple[Path, Path | None]], created: list[Path]) -> None:
    for target, backup in reversed(moved):
        if backup is None:
            target.unlink(missing_ok=True)
        else:
            backup.replace(target)
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()
