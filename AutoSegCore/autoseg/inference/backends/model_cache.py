"""The cache of converted networks: next to the checkpoint, keyed by what the conversion depends on.

Converting a network (ONNX export, OpenVINO conversion) takes seconds to a minute, so it is done
once and the result kept. A cache entry is a set of files plus a manifest ``<slot>.json`` written
last, holding the key and the SHA-256 of every file. An entry is used only when the manifest's key
equals the expected key and every file's hash matches; anything else (another checkpoint, patch
size, precision, runtime or torch version, an interrupted write, a damaged file) is rebuilt, never
trusted. Files are moved into place atomically, so a crash leaves either the old or the new entry;
they are never rewritten in place (kept model versions hard-link them, training/model_versions.py).
Two processes converting one model at once (``-num_parts``) write the same content (OpenVINO's
generated node names aside; weights and offsets are identical), so whichever files win the renames
form a working model; at worst the manifest then lists the other writer's hashes and the next run
converts once more.

The key is the hash of the network itself (its architecture text and every weight tensor), not of
the checkpoint file: an AutoSeg checkpoint and an nnU-Net one holding the same weights convert to
the same model, and a retrained checkpoint changes the hash. An entry's file names depend only on
the runtime and input shape (its slot), so a stale entry is replaced in place, not accumulated.

Location: ``fold_<k>/runtime_cache/`` next to the checkpoint. When the model folder is read-only
(shared models, a read-only mount) the cache goes to the user's cache folder, one subfolder per
model fold. The user's own files are never written: only new files inside the cache folders.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError
from autoseg.inference.backends.base import FP32, ConversionRequest
from autoseg.paths import make_folder

#: Bump when the conversion itself changes, so older cache entries are rebuilt.
CACHE_FORMAT = 1
CACHE_FOLDER_NAME = "runtime_cache"
_CHUNK = 1 << 20

T = TypeVar("T")


def network_digest(network: nn.Module) -> str:
    """SHA-256 of a network's architecture text and every weight and buffer (name, type, bytes)."""
    hasher = hashlib.sha256(repr(network).encode())
    for name, tensor in sorted(network.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        hasher.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def user_cache_root() -> Path:
    """The per-user cache folder (``~/.cache/autoseg``, ``%LOCALAPPDATA%`` or ``~/Library/Caches``)."""
    home = Path.home()
    system = platform.system()
    if system == "Windows":
        return home / "AppData" / "Local" / "autoseg" / "Cache"
    if system == "Darwin":
        return home / "Library" / "Caches" / "autoseg"
    return home / ".cache" / "autoseg"


def cache_folders_for(checkpoint: Path, user_root: Path | None = None) -> tuple[Path, ...]:
    """Where to cache conversions of ``checkpoint``'s network: beside it, else in the user cache."""
    checkpoint = Path(checkpoint)
    where = hashlib.sha256(str(checkpoint.resolve().parent).encode()).hexdigest()[:16]
    user = (user_root or user_cache_root()) / CACHE_FOLDER_NAME / where
    return (checkpoint.parent / CACHE_FOLDER_NAME, user)


def first_writable(folders: Iterable[Path]) -> Path | None:
    """The first folder that exists or can be created and accepts a new file; None if none does."""
    for folder in folders:
        try:
            return make_folder(folder, "the runtime cache", check_writable=True)
        except AutoSegError:
            continue
    return None


@dataclass(frozen=True)
class CacheEntry:
    """One converted network in a cache folder.

    Attributes:
        folder: the cache folder.
        slot: the file stem of the entry (runtime and input shape), e.g. ``openvino_1x40x56x40``.
        key: everything the conversion depends on; a differing key means a stale entry.
        suffixes: the entry's files, ``<slot><suffix>`` each (e.g. ``.xml`` and ``.bin``).
    """

    folder: Path
    slot: str
    key: Mapping[str, object]
    suffixes: tuple[str, ...]

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.slot}.json"

    def paths(self) -> dict[str, Path]:
        """The entry's files by suffix."""
        return {suffix: self.folder / f"{self.slot}{suffix}" for suffix in self.suffixes}

    def _json_key(self) -> object:
        return json.loads(json.dumps(dict(self.key)))  # tuples become lists, as in the manifest

    def is_valid(self) -> bool:
        """Whether the manifest holds this key and every file has the hash the manifest lists."""
        try:
            manifest = json.loads(self.manifest.read_text(encoding="utf-8"))
            if manifest.get("key") != self._json_key():
                return False
            hashes = manifest["files"]
            return all(hashes[f.name] == file_digest(f) for f in self.paths().values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False

    def store(self, built: Mapping[str, Path]) -> None:
        """Move freshly built files (by suffix, in this folder) into place; the manifest last."""
        self.manifest.unlink(missing_ok=True)  # the old entry is invalid from here on
        hashes = {}
        for suffix, target in self.paths().items():
            hashes[target.name] = file_digest(built[suffix])
            built[suffix].replace(target)  # same folder: an atomic rename
        write_json_atomic(self.manifest, {"key": self._json_key(), "files": hashes})


Builder = Callable[[Path], Mapping[str, Path]]


def load_or_build(
    entry: CacheEntry | None, build: Builder, use: Callable[[Mapping[str, Path]], T]
) -> T:
    """``use`` the entry's files (by suffix), building and storing them first unless it is valid.

    ``build(folder)`` converts into an empty scratch folder and returns the files by suffix. With
    no entry (no writable cache folder) the conversion is used from a temporary folder and lost.
    """
    if entry is not None and entry.is_valid():
        return use(entry.paths())
    scratch_parent = entry.folder if entry is not None else None
    # A runtime may keep a converted file mapped (Windows cannot delete those): cleanup is best effort.
    with tempfile.TemporaryDirectory(
        prefix=".convert-", dir=scratch_parent, ignore_cleanup_errors=True
    ) as scratch:
        built = build(Path(scratch))
        if entry is None:
            return use(built)
        entry.store(built)
    return use(entry.paths())


def cache_entry(
    request: ConversionRequest, runtime: str, version: str, suffixes: tuple[str, ...]
) -> CacheEntry | None:
    """The cache entry of ``request`` for a runtime, in the first writable cache folder."""
    folder = first_writable(request.cache_folders)
    if folder is None:
        _say_not_cached(tuple(str(f) for f in request.cache_folders))
        return None
    shape = [int(s) for s in request.input_shape]
    key = {
        "format": CACHE_FORMAT,
        "runtime": runtime,
        "runtime_version": version,
        "torch": torch.__version__,
        "network_sha256": network_digest(request.network),
        "input_shape": shape,
        "stored_precision": FP32,  # bf16 is chosen when compiling, from the same fp32 model
    }
    slot = f"{runtime}_{'x'.join(str(s) for s in shape[1:])}"
    return CacheEntry(folder, slot, key, suffixes)


@functools.cache
def _say_not_cached(folders: tuple[str, ...]) -> None:
    print(
        f"Note: no writable cache folder ({', '.join(folders) or 'none given'}): the converted "
        "network is used for this run only and converted again next time.",
        file=sys.stderr,
    )
