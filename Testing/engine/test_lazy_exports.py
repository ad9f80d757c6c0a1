"""Lazy package exports: light submodules stay light, every exported name still resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

import autoseg.planning
import autoseg.preprocessing


@pytest.mark.parametrize("package", [autoseg.planning, autoseg.preprocessing])
def test_every_exported_name_resolves_and_unknown_names_fail(package: object) -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018


def test_reading_presets_and_stored_cases_does_not_import_scipy() -> None:
    code = (
        "import sys, autoseg.planning.presets, autoseg.preprocessing.storage\n"
        "print('scipy' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
