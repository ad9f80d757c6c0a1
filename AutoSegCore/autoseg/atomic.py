"""Atomic file writes: a crash or a full disk never leaves a half-written plan, checkpoint or result.

Data is written to a temporary file in the same folder and then renamed over the target, which is
atomic on POSIX and on Windows (``Path.replace``). A folder that cannot be created or written is
one clear error (:func:`autoseg.paths.make_folder`), not an OSError.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from autoseg.paths import folder_error, make_folder


def _default_file_mode() -> int:
    """0666 minus the process umask: what ``open(..., "w")`` would have created."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


@contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    ``suffix`` keeps the real ending on the temporary file for writers that choose their format by
    file name (``np.save`` appends ``.npy`` to names without it).
    """
    target = Path(target)
    make_folder(target.parent, f"the folder of {target.name}", check_writable=False)
    try:
        handle, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent
        )
    except OSError as error:
        raise folder_error(
            target.parent, f"the folder of {target.name}", error, "write in"
        ) from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if temporary.exists():  # mkstemp creates 0600; give the file the usual permissions
            temporary.chmod(_FILE_MODE)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write bytes through ``write(file)`` and move the result into place atomically."""
    with atomic_path(target) as temporary, temporary.open("wb") as file:
        write(file)


# A JSON list holding only numbers, booleans, null or simple strings (no brackets or braces inside).
_FLAT_LIST = re.compile(
    r'\[\s*((?:-?[\w.+-]+|"[^"\[\]{}]*")(?:,\s*(?:-?[\w.+-]+|"[^"\[\]{}]*"))*)\s*\]'
)


def json_text(data: Any) -> str:
    """Indented JSON in which flat lists (shapes, spacings, kernel sizes) stay on one line."""
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=True)
    return _FLAT_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def write_json_atomic(target: Path, data: Any) -> None:
    """Write human-readable JSON atomically (UTF-8, keys in insertion order)."""
    text = json_text(data)
    write_atomic(target, lambda file: file.write(text.encode("utf-8")))
