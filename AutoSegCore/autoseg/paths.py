"""Where raw data, preprocessed data and results live, and how dataset names are resolved.

The three root folders come from command-line flags or environment variables (``AUTOSEG_*`` first,
then the ``nnUNet_*`` names so existing nnU-Net setups keep working). This module never reads
``os.environ`` itself: the caller passes the environment, which keeps it testable and lets Slicer pass
its own settings. A root is only required when it is used, so e.g. prediction works without a raw
folder.

Every output folder a command creates (``-o``, the roots, the folders below them) is made with
:func:`make_folder`, so a path that cannot be created or written (a file in the way, no
permission, a read-only or missing mount) ends in one line naming the path and the reason.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from autoseg.errors import AutoSegError

_DATASET_NAME = re.compile(r"Dataset(\d{3,})_(.+)")
# root -> (command-line flag, preferred environment variable, nnU-Net environment variable)
ROOT_SOURCES: dict[str, tuple[str, str, str]] = {
    "raw": ("--raw", "AUTOSEG_RAW", "nnUNet_raw"),
    "preprocessed": ("--preprocessed", "AUTOSEG_PREPROCESSED", "nnUNet_preprocessed"),
    "results": ("--results", "AUTOSEG_RESULTS", "nnUNet_results"),
}


def _as_path(value: str | Path | None) -> Path | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return Path(value)


@dataclass(frozen=True)
class DataRoots:
    """The raw, preprocessed and results root folders; None where not configured."""

    raw: Path | None = None
    preprocessed: Path | None = None
    results: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DataRoots:
        """Reads the roots from an environment mapping (``AUTOSEG_*`` wins over ``nnUNet_*``)."""
        values = {}
        for root, (_, preferred, fallback) in ROOT_SOURCES.items():
            values[root] = _as_path(env.get(preferred)) or _as_path(env.get(fallback))
        return cls(**values)

    def with_overrides(
        self,
        raw: str | Path | None = None,
        preprocessed: str | Path | None = None,
        results: str | Path | None = None,
    ) -> DataRoots:
        """A copy where every given (not None) value replaces the configured one, e.g. from flags."""
        given = {"raw": raw, "preprocessed": preprocessed, "results": results}
        return replace(self, **{k: _as_path(v) for k, v in given.items() if _as_path(v)})

    def _require(self, root: str) -> Path:
        value = getattr(self, root)
        if value is None:
            flag, preferred, fallback = ROOT_SOURCES[root]
            raise AutoSegError(
                f"The {root} data folder is not set. Pass {flag} FOLDER or set the environment "
                f"variable {preferred} (or {fallback})."
            )
        return value

    def require_raw(self) -> Path:
        """The raw root; raises AutoSegError naming the flag and variable when it is not set."""
        return self._require("raw")

    def require_preprocessed(self) -> Path:
        """The preprocessed root; raises AutoSegError when it is not set."""
        return self._require("preprocessed")

    def require_results(self) -> Path:
        """The results root; raises AutoSegError when it is not set."""
        return self._require("results")

    def configured(self) -> tuple[Path, ...]:
        """The roots that are set, in the order raw, preprocessed, results."""
        return tuple(p for p in (self.raw, self.preprocessed, self.results) if p is not None)


def dataset_id(name: str) -> int:
    """The integer id of a ``DatasetXXX_Name`` folder name."""
    match = _DATASET_NAME.fullmatch(str(name))
    if match is None:
        raise AutoSegError(
            f"'{name}' is not a dataset name; expected DatasetXXX_Name with a 3-digit id, "
            "e.g. Dataset004_Hippocampus."
        )
    return int(match.group(1))


def dataset_folder_name(identifier: int, name: str) -> str:
    """``Dataset{id:03d}_{name}``, the folder name of a dataset."""
    if isinstance(identifier, bool) or not isinstance(identifier, int) or identifier < 0:
        raise AutoSegError(
            f"Dataset id {identifier!r} is invalid; use a non-negative integer, e.g. 4."
        )
    if not name or not re.fullmatch(r"[^/\\:*?\"<>|\s]+", name):
        raise AutoSegError(
            f"Dataset name '{name}' is invalid; use letters, digits, '-' or '_' without spaces "
            "or path separators."
        )
    return f"Dataset{identifier:03d}_{name}"


def _existing_datasets(roots: DataRoots) -> list[str]:
    names: set[str] = set()
    for root in roots.configured():
        if root.is_dir():
            names.update(
                p.name for p in root.iterdir() if p.is_dir() and _DATASET_NAME.fullmatch(p.name)
            )
    return sorted(names)


def _parse_identifier(identifier: str | int) -> int | str:
    """An int id, a full name (returned as str) or a bare name (str without "Dataset")."""
    if isinstance(identifier, bool):
        raise AutoSegError(f"Dataset identifier {identifier!r} is neither an id nor a name.")
    if isinstance(identifier, int):
        return identifier
    text = str(identifier).strip()
    if text.isdigit():
        return int(text)
    return text


def resolve_dataset_name(identifier: str | int, roots: DataRoots) -> str:
    """Turns "4", "004", 4, "Hippocampus" or "Dataset004_Hippocampus" into the full dataset name.

    A full name is returned as given (the dataset may not exist yet, e.g. when converting). Ids and
    bare names are looked up in all configured roots.

    Raises:
        AutoSegError: no dataset or several datasets match; the message lists the existing ones.
    """
    parsed = _parse_identifier(identifier)
    if isinstance(parsed, str) and _DATASET_NAME.fullmatch(parsed):
        return parsed
    existing = _existing_datasets(roots)
    if isinstance(parsed, int):
        matches = [n for n in existing if dataset_id(n) == parsed]
    else:
        matches = [n for n in existing if _DATASET_NAME.fullmatch(n).group(2) == parsed]  # type: ignore[union-attr]
    if len(matches) == 1:
        return matches[0]
    searched = ", ".join(str(r) for r in roots.configured()) or "no folder (none is configured)"
    listing = ", ".join(existing) or "none"
    if matches:
        raise AutoSegError(
            f"Dataset '{identifier}' is ambiguous: {', '.join(matches)} all match. "
            "Pass the full name, or give the datasets different ids."
        )
    raise AutoSegError(
        f"Dataset '{identifier}' not found in {searched}. Existing datasets: {listing}. "
        "Check the id, or set --raw/--preprocessed/--results (AUTOSEG_RAW, ...)."
    )


def _blocking_file(folder: Path) -> Path | None:
    """The file standing where ``folder`` or one of its parents should be, if any."""
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def folder_error(folder: Path, what: str, error: OSError, action: str = "create") -> AutoSegError:
    """One line: the path, what it is for, the operating system's reason and the fix."""
    blocking = _blocking_file(folder)
    if blocking is not None:
        reason = f"{blocking} is a file, not a folder"
        fix = "choose another path, or move that file away"
    else:
        reason = error.strerror or str(error)
        fix = "choose a folder you can write to (check the path, its permissions and its drive)"
    return AutoSegError(f"{folder}: cannot {action} {what} ({reason}). Fix: {fix}.")


def make_folder(
    folder: str | Path, what: str = "this folder", *, check_writable: bool = True
) -> Path:
    """Create ``folder`` with its missing parents and return it; with ``check_writable`` also try
    to create (and delete) a file in it, so a read-only folder fails now, before any work.

    Raises:
        AutoSegError: naming the path, ``what`` it is for (e.g. "the output folder (-o)") and the
            reason, instead of the OSError's traceback.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise folder_error(folder, what, error) from None
    if check_writable:
        try:
            handle, name = tempfile.mkstemp(prefix=".autoseg-write-test-", dir=folder)
            os.close(handle)
            Path(name).unlink()
        except OSError as error:
            raise folder_error(folder, what, error, action="write in") from None
    return folder
