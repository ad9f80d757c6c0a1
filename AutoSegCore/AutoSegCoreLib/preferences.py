"""The AutoSeg modules' user preferences: data folders, compute device, prediction backend, engine
Python.

Why not the parameter node: these belong to the user and the machine, not to a scene. A scene
shared with a colleague must not carry one's folders or GPU choice, and a new scene must not lose
them, so they live in Slicer's application settings (``qt.QSettings``) under ``AutoSeg/...``.

The store is anything with ``value(key, default)`` and ``setValue(key, value)``: ``qt.QSettings()``
in Slicer, a dict-backed object in tests, so this module stays Qt-free. Everything is stored as
text because QSettings' ini files hand every value back as a string (and a hand-edited value may
come back as anything); :meth:`Preferences.load` therefore falls back to the default, value by
value, for whatever it cannot read, rather than failing when a module starts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from autoseg.inference.backends.base import AUTO, BACKENDS
from autoseg.paths import ROOT_SOURCES, DataRoots

KEYS = {
    "raw_folder": "AutoSeg/RawFolder",
    "preprocessed_folder": "AutoSeg/PreprocessedFolder",
    "results_folder": "AutoSeg/ResultsFolder",
    "device": "AutoSeg/Device",
    "backend": "AutoSeg/PredictionBackend",
    "python_executable": "AutoSeg/PythonExecutable",
    "last_model": "AutoSeg/LastModel",
}
# The engine's -device choices: auto, cpu, mps, cuda (the first GPU) or cuda:N.
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEFAULT_DEVICE = "auto"
DEFAULT_BACKEND = AUTO  # the engine's --backend choices are its BACKENDS
# Sub-folder of the data folder per root, named like the roots of autoseg.paths.
_ROOT_FIELDS = {
    "raw": "raw_folder",
    "preprocessed": "preprocessed_folder",
    "results": "results_folder",
}


class SettingsStore(Protocol):
    """What :class:`Preferences` needs from ``qt.QSettings``."""

    def value(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key``, or ``default`` when there is none."""

    def setValue(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""


def default_data_folder(home: Path | None = None) -> Path:
    """``~/AutoSeg``: visible, outside Slicer's install and cache folders, easy to find again."""
    return (Path.home() if home is None else home) / "AutoSeg"


def _check_folder(name: str, value: object) -> None:
    if not isinstance(value, Path) or not value.is_absolute():
        raise ValueError(
            f"Preference {name} must be an absolute folder path, got {value!r}; "
            "choose the folder again in the module's settings."
        )


@dataclass(frozen=True)
class Preferences:
    """User preferences that outlive a scene.

    ``python_executable`` overrides the Python that runs the engine (``None``: Slicer's
    PythonSlicer); ``device`` is passed to the engine's ``-device``, ``backend`` to
    ``autoseg predict --backend`` (what runs the network; the machine's, like the device);
    ``last_model`` is the
    model folder the Predict module shows: the Predict panel writes it when the user chooses a
    model, the Train panel's Improve model when it improved one, and the Predict panel, when
    entered, follows a value another module wrote.
    """

    raw_folder: Path
    preprocessed_folder: Path
    results_folder: Path
    device: str = DEFAULT_DEVICE
    backend: str = DEFAULT_BACKEND
    python_executable: Path | None = None
    last_model: Path | None = None

    def __post_init__(self) -> None:
        for name in _ROOT_FIELDS.values():
            _check_folder(name, getattr(self, name))
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(
                f"Device {self.device!r} is not one of auto, cpu, mps, cuda or cuda:N "
                "(N = GPU index, e.g. cuda:0)."
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"Backend {self.backend!r} is not one of {', '.join(BACKENDS)}; choose it again "
                "in the Predict module's options."
            )
        if self.python_executable is not None and not isinstance(self.python_executable, Path):
            raise ValueError(
                f"Python executable {self.python_executable!r} must be a path or None."
            )

    @classmethod
    def defaults(cls, home: Path | None = None) -> Preferences:
        """``~/AutoSeg/{raw,preprocessed,results}``, device and backend ``auto``, Slicer's Python."""
        folder = default_data_folder(home)
        return cls(**{field: folder / root for root, field in _ROOT_FIELDS.items()})

    @classmethod
    def load(cls, store: SettingsStore, *, home: Path | None = None) -> Preferences:
        """The stored preferences; every missing or unreadable value takes its default."""
        default = cls.defaults(home)
        folders = {
            field: _read_folder(store, KEYS[field]) or getattr(default, field)
            for field in _ROOT_FIELDS.values()
        }
        device = _read_text(store, KEYS["device"]).lower()
        backend = _read_text(store, KEYS["backend"]).lower()
        python = _read_text(store, KEYS["python_executable"])
        return cls(
            **folders,
            device=device if DEVICE_PATTERN.fullmatch(device) else DEFAULT_DEVICE,
            backend=backend if backend in BACKENDS else DEFAULT_BACKEND,
            python_executable=Path(python).expanduser() if python else None,
            last_model=_read_folder(store, KEYS["last_model"]),
        )

    def save(self, store: SettingsStore) -> None:
        """Write every preference as text (``""`` for "Slicer's own Python")."""
        for field in _ROOT_FIELDS.values():
            store.setValue(KEYS[field], str(getattr(self, field)))
        store.setValue(KEYS["device"], self.device)
        store.setValue(KEYS["backend"], self.backend)
        python = "" if self.python_executable is None else str(self.python_executable)
        store.setValue(KEYS["python_executable"], python)
        store.setValue(KEYS["last_model"], "" if self.last_model is None else str(self.last_model))

    @classmethod
    def update(cls, store: SettingsStore, **changes: Any) -> Preferences:
        """Change some preferences in ``store`` and return them all.

        Reads the store first, so that two modules (each holding the preferences it loaded at
        start-up) never write back each other's stale values. Invalid values raise ValueError
        and leave the store unchanged.
        """
        preferences = dataclasses.replace(cls.load(store), **changes)
        preferences.save(store)
        return preferences

    def data_roots(self) -> DataRoots:
        """The folders as the engine's :class:`autoseg.paths.DataRoots`."""
        return DataRoots(
            raw=self.raw_folder, preprocessed=self.preprocessed_folder, results=self.results_folder
        )

    def engine_env(self) -> dict[str, str]:
        """``AUTOSEG_RAW``/``AUTOSEG_PREPROCESSED``/``AUTOSEG_RESULTS`` for the engine process.

        The engine prefers these over any ``nnUNet_*`` variable the user's environment may hold.
        """
        return {
            ROOT_SOURCES[root][1]: str(getattr(self, field)) for root, field in _ROOT_FIELDS.items()
        }


def _read_text(store: SettingsStore, key: str) -> str:
    """The stored text of ``key``; ``""`` when absent or not text (e.g. a list or a number)."""
    value = store.value(key, "")
    return value.strip() if isinstance(value, str) else ""


def _read_folder(store: SettingsStore, key: str) -> Path | None:
    """The stored absolute folder of ``key``; ``None`` when absent, empty or relative."""
    text = _read_text(store, key)
    if not text:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else None
