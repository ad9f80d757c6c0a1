"""model_export: the export step's command line, as the engine's own parser reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.cli import build_parser
from autoseg.errors import AutoSegError
from AutoSegTrainLib.model_export import (
    EXPORT_FORMATS,
    EXPORT_KEY,
    default_zip_name,
    export_step,
)

DATASET = "Dataset042_Liver"


@pytest.mark.parametrize("format_name", sorted(EXPORT_FORMATS.values()))
def test_the_engine_parses_the_export_command(tmp_path: Path, format_name: str) -> None:
    output = tmp_path / default_zip_name(DATASET, format_name)
    step = export_step(DATASET, output, tmp_path / "results", format_name=format_name)
    assert step.key == EXPORT_KEY
    assert step.fold is None
    args = build_parser().parse_args(list(step.args))
    assert args.command == "export_model"
    assert (args.dataset, args.output, args.format) == (DATASET, str(output), format_name)
    assert args.results == str(tmp_path / "results")
    assert (args.configurations, args.folds) == (None, None)  # every trained model
    assert format_name in step.label


def test_default_names_say_the_format() -> None:
    assert default_zip_name(DATASET, "nnunet") == "Dataset042_Liver_nnunet.zip"


def test_unusable_targets_are_refused_before_starting(tmp_path: Path) -> None:
    existing = tmp_path / "model.zip"
    existing.write_bytes(b"keep me")
    with pytest.raises(AutoSegError, match="exists; nothing is overwritten"):
        export_step(DATASET, existing, tmp_path)
    with pytest.raises(AutoSegError, match=r"end the name in \.zip"):
        export_step(DATASET, tmp_path / "model.tar", tmp_path)
    with pytest.raises(AutoSegError, match="export format 'onnx' is unknown"):
        export_step(DATASET, tmp_path / "m.zip", tmp_path, format_name="onnx")
    assert existing.read_bytes() == b"keep me"
