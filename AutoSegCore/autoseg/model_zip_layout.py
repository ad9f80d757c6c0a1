"""What a model zip may hold: the files of a model folder, and size limits against zip bombs.

Export writes these names (:mod:`autoseg.model_sharing`); import accepts nothing else, so a zip
cannot bring executables, pickles or stray files into the results folder. The names are listed
once, in :data:`ALLOWED_MEMBERS`, as patterns below the zip's ``DatasetXXX_Name/`` folder.

Size limits, against zip bombs (a small zip that inflates to fill the disk). Measured with this
code's network and checkpoint format (deflate level 6, as ``zip`` and Python use by default):

- checkpoints (float32 weights, also with SGD momentum): 1.08:1 (66 MB and 132 MB files);
- network.txt 11:1, dataset_fingerprint.json 11:1 (100 cases; more cases compress better),
  plans.json 4:1, dataset.json 1.5:1; progress.png and .nii.gz predictions about 1:1;
- a validation prediction in an uncompressed format (.nii, .nrrd, .mha) of a mostly-background
  volume: up to deflate's limit of about 1000:1.

Checkpoints dominate every model zip, so a real one inflates to under 2:1 overall, and even one
with uncompressed validation predictions stays far below :data:`MAX_TOTAL_RATIO` (100:1), while a
zip bomb sits near 1000:1 (200 MB of zeros fit in 200 kB). There is no limit per member ratio,
because single prediction files legitimately reach 1000:1. :data:`MAX_MEMBER_BYTES` (8 GiB) is
four times the largest checkpoint we know of (a ResEnc XL network with optimizer state, about
2 GB); :data:`MAX_TOTAL_BYTES` (128 GiB) holds three configurations of five such folds with their
validation predictions. The sizes checked are the ones the zip declares; extraction never writes
more than a member declared.
"""

from __future__ import annotations

import fnmatch
import re
import stat
import zipfile
from pathlib import Path

from autoseg.image_io import supported_file_endings
from autoseg.results_layout import (
    CROSSVAL_PATTERN,
    ENSEMBLES_DIR,
    FINGERPRINT_FILE,
    FOLD_PREFIX,
    INFORMATION_FILE,
    INSTRUCTIONS_FILE,
    MODEL_FILES,
    MODEL_FOLDER_PATTERN,
    POSTPROCESSING_FILE,
)

DATASET_FOLDER = re.compile(r"Dataset\d{3,}_[^/\\:]+")
OPTIONAL_MODEL_FILES = (FINGERPRINT_FILE,)
# Written by postprocessing / best-configuration search, at dataset level or in a model folder.
SHARED_FILES = (POSTPROCESSING_FILE, INFORMATION_FILE, INSTRUCTIONS_FILE)
FOLD_FILES = ("training_settings.json", "network.txt", "progress.png")
MAX_MEMBER_BYTES = 8 << 30
MAX_TOTAL_BYTES = 128 << 30
MAX_TOTAL_RATIO = 100.0
_RATIO_CHECKED_FROM = 64 << 20
_NOTES = tuple(  # cross-validation and ensemble reports, at dataset level or in a model folder
    f"{folder}/{name}"
    for folder in (CROSSVAL_PATTERN, f"{ENSEMBLES_DIR}/*")
    for name in ("summary.json", POSTPROCESSING_FILE)
)
_VALIDATION_FILES = tuple(  # predictions (every format a dataset may use), probabilities, reports
    f"validation/*{ending}" for ending in (*supported_file_endings(), ".npz", ".json")
)
# nnU-Net v2's zips (nnUNetv2_export_model_to_zip) hold a few more files than AutoSeg's export:
# each fold's debug.json (and network_architecture.pdf when it exists), inference_information.txt,
# and with --exp_cv_preds the cross-validation predictions with their plans and dataset.json.
_CROSSVAL_FOLDERS = (f"{MODEL_FOLDER_PATTERN}/{CROSSVAL_PATTERN}", f"{ENSEMBLES_DIR}/*")
_NNUNET_MEMBERS = (
    "inference_information.txt",
    *(
        f"{MODEL_FOLDER_PATTERN}/{FOLD_PREFIX}*/{name}"
        for name in ("debug.json", "network_architecture.pdf")
    ),
    *(
        f"{folder}/{name}"
        for folder in _CROSSVAL_FOLDERS
        for name in (*(f"*{e}" for e in (*supported_file_endings(), ".npz")), *MODEL_FILES)
    ),
)
# nnU-Net also zips pickles there (postprocessing.pkl beside postprocessing.json; with
# --exp_cv_preds the predictions' properties): they are never extracted, because loading one can
# run code and AutoSeg reads the JSON. Pickles anywhere else are refused like any unknown file.
SKIPPED_MEMBERS = tuple(f"{folder}/*.pkl" for folder in _CROSSVAL_FOLDERS)
# Every file a model zip may hold, below its DatasetXXX_Name/ folder: what export writes, with
# any checkpoint name. Patterns match one path component per "*" (fnmatch, case-sensitive).
ALLOWED_MEMBERS = (
    *SHARED_FILES,
    *_NOTES,
    *(
        f"{MODEL_FOLDER_PATTERN}/{name}"
        for name in (*MODEL_FILES, *OPTIONAL_MODEL_FILES, *SHARED_FILES, *_NOTES)
    ),
    *(
        f"{MODEL_FOLDER_PATTERN}/{FOLD_PREFIX}*/{name}"
        for name in ("*.pth", *FOLD_FILES, *_VALIDATION_FILES)
    ),
    *_NNUNET_MEMBERS,
    *SKIPPED_MEMBERS,
)


def member_problem(info: zipfile.ZipInfo, root: Path) -> str | None:
    """Why a member is unsafe or does not belong in a model zip; None when it is fine."""
    name, mode = info.filename, info.external_attr >> 16
    parts = name.removesuffix("/").split("/")
    checks = (
        ("\\" in name, "contains a backslash"),
        (":" in name, "contains a drive letter or colon"),
        (name.startswith("/"), "is an absolute path"),
        (bool({"", ".", ".."} & set(parts)), "has an empty, '.' or '..' path component"),
        (not DATASET_FOLDER.fullmatch(parts[0]), "is not inside a DatasetXXX_Name/ folder"),
        (len(parts) == 1 and not info.is_dir(), "is a file where the top folder belongs"),
        (stat.S_ISLNK(mode), "is a symbolic link"),
        (stat.S_IFMT(mode) not in {0, stat.S_IFREG, stat.S_IFDIR}, "is not a file or folder"),
        (bool(info.flag_bits & 0x1), "is encrypted"),
        (not (root / name).resolve().is_relative_to(root), f"would be written outside {root}"),
        (
            info.file_size > MAX_MEMBER_BYTES,
            f"inflates to {info.file_size} bytes, over the limit of {MAX_MEMBER_BYTES} per file",
        ),
        (
            not _is_allowed(parts[1:], info.is_dir()),
            "is not a file a model zip holds (plans, dataset description, checkpoints, "
            "training settings, reports, validation results)",
        ),
    )
    return next((reason for failed, reason in checks if failed), None)


def is_skipped(info: zipfile.ZipInfo) -> bool:
    """A member that passes the checks but is never extracted (:data:`SKIPPED_MEMBERS`)."""
    parts = info.filename.split("/")[1:]
    return not info.is_dir() and _matches(parts, False, SKIPPED_MEMBERS)


def _is_allowed(parts: list[str], is_dir: bool) -> bool:
    """Whether a path below the top folder is in :data:`ALLOWED_MEMBERS` (a folder: whether it
    lies on the way to such a file)."""
    return _matches(parts, is_dir, ALLOWED_MEMBERS)


def _matches(parts: list[str], is_dir: bool, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        wanted = pattern.split("/")
        deep_enough = len(wanted) > len(parts) if is_dir else len(wanted) == len(parts)
        if deep_enough and all(map(fnmatch.fnmatchcase, parts, wanted)):
            return True
    return False


def size_problems(members: list[zipfile.ZipInfo]) -> list[str]:
    """The whole archive's uncompressed size and compression ratio against the limits (see the
    module docstring). Below 64 MiB the ratio is not checked: such a zip cannot fill a disk."""
    total = sum(m.file_size for m in members)
    packed = max(sum(m.compress_size for m in members), 1)
    problems = []
    if total > MAX_TOTAL_BYTES:
        problems.append(f"the files inflate to {total} bytes, over the limit of {MAX_TOTAL_BYTES}")
    if total > _RATIO_CHECKED_FROM and total > MAX_TOTAL_RATIO * packed:
        problems.append(
            f"the files inflate {total / packed:.0f}:1 ({packed} bytes to {total}); model zips "
            f"inflate under 2:1, so this looks like a zip bomb (limit {MAX_TOTAL_RATIO:.0f}:1)"
        )
    return problems


def archive_problems(members: list[zipfile.ZipInfo], root: Path) -> tuple[list[str], str]:
    """Every problem of a zip's members (one line each) and its single top folder ("" if none)."""
    problems: list[str] = [] if members else ["the zip is empty"]
    tops: set[str] = set()
    seen: set[str] = set()
    for info in members:
        reason = member_problem(info, root)
        if reason is None and info.filename in seen:
            reason = "appears more than once"
        seen.add(info.filename)
        if reason is None:
            tops.add(info.filename.split("/", 1)[0])
        else:
            problems.append(f"{info.filename!r}: {reason}")
    if len(tops) > 1:
        problems.append(f"members lie in several top folders: {', '.join(sorted(tops))}")
    return problems + size_problems(members), next(iter(tops), "")
