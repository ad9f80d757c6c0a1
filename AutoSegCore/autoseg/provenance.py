"""What a derived file was made from, so that a re-run can tell whether it is still current.

Preprocessed cases and the dataset fingerprint are caches of the raw data: a re-run must redo
exactly the parts whose inputs changed, or a model is trained on a version of the data the user
already fixed. Each derived file records, per raw file, its name, size and modification time in
nanoseconds (``mtime_ns``), plus a digest of the settings it was made with.

Why size + mtime and no content hash: it is the check ``make`` and ``rsync`` rely on, it costs one
``stat`` per file (re-running over 1,000 CT cases stays instant, also on network drives), and any
way of replacing or editing a file (an editor, a converter, ``cp``, Slicer's export) sets a new
mtime. What it misses is a file replaced by one of identical size that was given back the old
mtime on purpose (``touch -d``), which is not something a user does by accident. Names are stored
without their folder, so a raw dataset that is moved with its timestamps (``mv``, ``cp -a``)
stays current.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoseg.dataset import CaseFiles
from autoseg.errors import AutoSegError

PROVENANCE_KEY = "provenance"
_MAX_NAMED = 5


def file_stamp(path: Path) -> dict[str, Any]:
    """``{"name", "size", "mtime_ns"}`` of one raw file."""
    path = Path(path)
    try:
        status = path.stat()
    except OSError as error:
        raise AutoSegError(
            f"{path}: cannot be read ({error.strerror or error}). "
            "Fix: check that the file exists and is readable."
        ) from None
    return {"name": path.name, "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def case_sources(case: CaseFiles) -> dict[str, Any]:
    """Stamps of a training case's image files (channel order) and of its label file."""
    return {
        "images": [file_stamp(path) for path in case.images],
        "label": None if case.label is None else file_stamp(case.label),
    }


def _plain(value: Any) -> Any:
    """JSON-ready copy of dataclasses, tuples and mappings (for a stable digest)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def settings_digest(value: Any) -> str:
    """A short, stable digest of settings (dataclasses, dicts, lists, numbers, strings)."""
    text = json.dumps(_plain(value), sort_keys=True, allow_nan=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def named_list(ids: Sequence[str]) -> str:
    """ "a, b, c, d, e and 3 more": ids for a one-line message."""
    shown = ", ".join(ids[:_MAX_NAMED])
    return shown + (f" and {len(ids) - _MAX_NAMED} more" if len(ids) > _MAX_NAMED else "")


def describe_case_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """ "2 case(s) added (a, b), 1 changed (c)" between two ``{case_id: sources}``; None if equal."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    parts = [
        f"{len(ids)} case(s) {what} ({named_list(ids)})"
        for what, ids in (("added", added), ("removed", removed), ("changed", changed))
        if ids
    ]
    return ", ".join(parts) or None
