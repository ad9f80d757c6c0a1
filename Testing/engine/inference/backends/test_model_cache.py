"""The converted-network cache: keyed by the network and the runtime, rebuilt when stale or damaged,
never written outside its cache folders, usable when no folder is writable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from autoseg.inference.backends import model_cache
from autoseg.inference.backends.base import FP32, ConversionRequest
from autoseg.inference.backends.model_cache import (
    CACHE_FOLDER_NAME,
    cache_entry,
    cache_folders_for,
    first_writable,
    load_or_build,
    network_digest,
)

SHAPE = (1, 1, 8, 8, 8)


def _network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.GroupNorm(2, 2)).eval()


class Converter:
    """A stand-in conversion: writes the network digest into two files and counts its runs."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.runs = 0

    def __call__(self, scratch: Path) -> dict[str, Path]:
        self.runs += 1
        files = {".a": scratch / "model.a", ".b": scratch / "model.b"}
        for suffix, path in files.items():
            path.write_text(network_digest(self.network) + suffix, encoding="utf-8")
        return files


def _entry(folder: Path, network: nn.Module, shape=SHAPE, version: str = "1.0"):
    request = ConversionRequest(network, shape, FP32, (folder,))
    return cache_entry(request, "fake", version, (".a", ".b"))


def _read(files) -> dict[str, str]:
    return {suffix: path.read_text(encoding="utf-8") for suffix, path in files.items()}


def test_a_conversion_is_built_once_and_reused(tmp_path: Path) -> None:
    network = _network()
    build = Converter(network)
    first = load_or_build(_entry(tmp_path, network), build, _read)
    again = load_or_build(_entry(tmp_path, network), build, _read)
    assert build.runs == 1
    assert first == again
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fake_1x8x8x8.a",
        "fake_1x8x8x8.b",
        "fake_1x8x8x8.json",
    ]  # the scratch folder is gone
    manifest = json.loads((tmp_path / "fake_1x8x8x8.json").read_text(encoding="utf-8"))
    assert manifest["key"]["network_sha256"] == network_digest(network)
    assert manifest["key"]["input_shape"] == list(SHAPE)
    assert manifest["key"]["runtime_version"] == "1.0"
    assert manifest["key"]["stored_precision"] == FP32


@pytest.mark.parametrize(
    "change",
    ["weights", "runtime version", "patch size"],
)
def test_a_stale_entry_is_rebuilt_in_place(tmp_path: Path, change: str) -> None:
    network = _network()
    load_or_build(_entry(tmp_path, network), Converter(network), _read)
    shape, version = SHAPE, "1.0"
    if change == "weights":
        with torch.no_grad():
            network[0].weight[0, 0, 0, 0, 0] += 1e-3
    elif change == "runtime version":
        version = "2.0"
    else:
        shape = (1, 1, 8, 8, 16)
    build = Converter(network)
    files = load_or_build(_entry(tmp_path, network, shape, version), build, _read)
    assert build.runs == 1
    assert files[".a"] == network_digest(network) + ".a"


@pytest.mark.parametrize("damage", ["file", "manifest", "missing file", "interrupted"])
def test_a_damaged_entry_is_rebuilt_not_trusted(tmp_path: Path, damage: str) -> None:
    network = _network()
    entry = _entry(tmp_path, network)
    load_or_build(entry, Converter(network), _read)
    if damage == "file":
        (tmp_path / "fake_1x8x8x8.b").write_text("garbage", encoding="utf-8")
    elif damage == "manifest":
        (tmp_path / "fake_1x8x8x8.json").write_text("{not json", encoding="utf-8")
    elif damage == "missing file":
        (tmp_path / "fake_1x8x8x8.a").unlink()
    else:  # files moved into place, crash before the manifest
        (tmp_path / "fake_1x8x8x8.json").unlink()
    assert not entry.is_valid()
    build = Converter(network)
    files = load_or_build(entry, build, _read)
    assert build.runs == 1
    assert files == {".a": network_digest(network) + ".a", ".b": network_digest(network) + ".b"}
    assert entry.is_valid()


def test_the_digest_follows_weights_and_architecture() -> None:
    assert network_digest(_network(0)) == network_digest(_network(0))
    assert network_digest(_network(0)) != network_digest(_network(1))
    wider = nn.Sequential(nn.Conv3d(1, 2, 3, padding=2), nn.GroupNorm(2, 2))
    wider.load_state_dict(_network(0).state_dict())
    assert network_digest(wider) != network_digest(_network(0))  # same weights, other padding


def test_the_cache_lives_beside_the_checkpoint_else_in_the_user_cache(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model" / "fold_0" / "checkpoint_final.pth"
    beside, user = cache_folders_for(checkpoint, tmp_path / "user")
    assert beside == checkpoint.parent / CACHE_FOLDER_NAME
    assert user.parent == tmp_path / "user" / CACHE_FOLDER_NAME
    other = cache_folders_for(tmp_path / "other" / "fold_0" / "checkpoint_final.pth", tmp_path)
    assert other[1] != user  # one user-cache folder per model fold
    blocked = tmp_path / "read_only_model"
    blocked.write_text(
        "a file where a folder would be", encoding="utf-8"
    )  # mkdir fails, as root too
    assert first_writable([blocked / CACHE_FOLDER_NAME, user]) == user
    assert blocked.read_text(encoding="utf-8") == "a file where a folder would be"


def test_without_a_writable_folder_the_conversion_is_used_once_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_cache._say_not_cached.cache_clear()
    blocked = tmp_path / "file"
    blocked.write_text("", encoding="utf-8")
    network = _network()
    request = ConversionRequest(network, SHAPE, FP32, (blocked / "cache",))
    for _ in range(2):
        entry = cache_entry(request, "fake", "1.0", (".a", ".b"))
        assert entry is None
        build = Converter(network)
        assert load_or_build(entry, build, _read)[".a"] == network_digest(network) + ".a"
        assert build.runs == 1
    assert capsys.readouterr().err.count("no writable cache folder") == 1
