"""User preferences: defaults, a QSettings-like round trip, tolerant loading, the engine's env."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from autoseg.inference.backends.base import BACKENDS
from autoseg.paths import DataRoots
from AutoSegCoreLib.preferences import KEYS, Preferences, default_data_folder

DEVICES = ["auto", "cpu", "mps", "cuda", "cuda:1"]


class TextSettings:
    """Behaves like ``qt.QSettings`` on an ini file: whatever is stored comes back as text."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})

    def value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def setValue(self, key: str, value: Any) -> None:
        self.values[key] = value if isinstance(value, list) else str(value)


def test_defaults_live_in_an_autoseg_folder_of_the_home_folder(tmp_path: Path) -> None:
    prefs = Preferences.defaults(home=tmp_path)
    assert prefs.raw_folder == tmp_path / "AutoSeg" / "raw"
    assert prefs.preprocessed_folder == tmp_path / "AutoSeg" / "preprocessed"
    assert prefs.results_folder == tmp_path / "AutoSeg" / "results"
    assert prefs.device == "auto"
    assert prefs.backend == "auto"
    assert prefs.python_executable is None
    assert default_data_folder() == Path.home() / "AutoSeg"


def test_an_empty_store_loads_the_defaults(tmp_path: Path) -> None:
    assert Preferences.load(TextSettings(), home=tmp_path) == Preferences.defaults(home=tmp_path)


@pytest.mark.parametrize("python", [None, Path("/opt/python3/bin/python3")])
@pytest.mark.parametrize(
    ("device", "backend"), [(d, BACKENDS[i % len(BACKENDS)]) for i, d in enumerate(DEVICES)]
)
def test_save_then_load_gives_the_same_preferences(
    tmp_path: Path, device: str, backend: str, python: Path | None
) -> None:
    prefs = Preferences(
        raw_folder=tmp_path / "raw data",
        preprocessed_folder=tmp_path / "pré",
        results_folder=tmp_path / "results",
        device=device,
        backend=backend,
        python_executable=python,
        last_model=None if python is None else tmp_path / "results" / "Dataset004_Hippocampus",
    )
    store = TextSettings()
    prefs.save(store)
    assert set(store.values) == set(KEYS.values())
    assert all(key.startswith("AutoSeg/") for key in store.values)
    assert all(isinstance(value, str) for value in store.values.values())
    assert Preferences.load(store, home=tmp_path / "elsewhere") == prefs


def test_unreadable_values_fall_back_one_by_one(tmp_path: Path) -> None:
    store = TextSettings(
        {
            KEYS["raw_folder"]: "relative/folder",
            KEYS["preprocessed_folder"]: ["a", "b"],  # QSettings splits unquoted commas
            KEYS["results_folder"]: f"  {tmp_path / 'mine'}  ",
            KEYS["device"]: "gpu",
            KEYS["backend"]: "tensorrt",  # not an engine backend (e.g. from a newer AutoSeg)
            KEYS["python_executable"]: 3,
        }
    )
    prefs = Preferences.load(store, home=tmp_path)
    default = Preferences.defaults(home=tmp_path)
    assert prefs.raw_folder == default.raw_folder
    assert prefs.preprocessed_folder == default.preprocessed_folder
    assert prefs.results_folder == tmp_path / "mine"
    assert prefs.device == "auto"
    assert prefs.backend == "auto"
    assert prefs.python_executable is None


def test_loading_normalises_device_case_and_expands_the_home_folder(tmp_path: Path) -> None:
    store = TextSettings(
        {KEYS["device"]: " CUDA:0 ", KEYS["backend"]: "OpenVINO ", KEYS["raw_folder"]: "~/scans"}
    )
    prefs = Preferences.load(store, home=tmp_path)
    assert prefs.device == "cuda:0"
    assert prefs.backend == "openvino"
    assert prefs.raw_folder == Path("~/scans").expanduser()


def test_engine_env_names_the_three_roots_the_engine_reads(tmp_path: Path) -> None:
    prefs = Preferences.defaults(home=tmp_path)
    env = prefs.engine_env()
    assert env == {
        "AUTOSEG_RAW": str(tmp_path / "AutoSeg" / "raw"),
        "AUTOSEG_PREPROCESSED": str(tmp_path / "AutoSeg" / "preprocessed"),
        "AUTOSEG_RESULTS": str(tmp_path / "AutoSeg" / "results"),
    }
    # The engine's own reader sees the same folders, and they win over nnU-Net's variables.
    assert DataRoots.from_env({**env, "nnUNet_raw": "/elsewhere"}) == prefs.data_roots()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"raw_folder": Path("relative")}, "raw_folder must be an absolute folder path"),
        ({"results_folder": "/as/text"}, "results_folder must be an absolute folder path"),
        ({"device": "gpu0"}, "Device 'gpu0' is not one of auto, cpu, mps, cuda or cuda:N"),
        ({"device": "cuda:"}, "Device 'cuda:' is not one of"),
        ({"backend": "ov"}, "Backend 'ov' is not one of auto, torch, openvino, onnxruntime"),
        ({"python_executable": "/usr/bin/python3"}, "must be a path or None"),
    ],
)
def test_invalid_preferences_are_refused_with_the_value(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(Preferences.defaults(home=tmp_path), **change)


def test_preferences_are_immutable(tmp_path: Path) -> None:
    prefs = Preferences.defaults(home=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prefs.device = "cpu"  # type: ignore[misc]


def test_update_changes_only_the_given_values_on_top_of_the_store(tmp_path: Path) -> None:
    store = TextSettings()
    Preferences.defaults(tmp_path).save(store)
    stale = Preferences.load(store)  # what another module loaded at start-up
    Preferences.update(store, raw_folder=tmp_path / "new raw")
    Preferences.update(store, device="cpu")  # must not write stale.raw_folder back
    updated = Preferences.update(store, backend="onnxruntime")  # nor the device it had
    assert updated.raw_folder == tmp_path / "new raw"
    assert updated.device == "cpu"
    assert updated.backend == "onnxruntime"
    assert stale.raw_folder != updated.raw_folder
    assert Preferences.load(store) == updated


def test_an_invalid_update_leaves_the_store_unchanged(tmp_path: Path) -> None:
    store = TextSettings()
    Preferences.defaults(tmp_path).save(store)
    before = dict(store.values)
    with pytest.raises(ValueError, match="relative"):
        Preferences.update(store, results_folder=Path("relative/results"))
    assert store.values == before
