"""nnU-Net model zips (nnUNetv2_export_model_to_zip) import with ``autoseg import_model`` and then
predict; their pickles are never extracted.

The zip is built with exactly the member names nnunetv2's exporter wrote for the fixture
(``export_members.json``): the fixture's own files where it has them, stand-ins for the files it
does not keep (training plots, debug.json, the validation summaries and the pickle)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import SimpleITK as sitk
from Testing.engine.interop.nnunet_reference import (
    CASES,
    DATASET,
    IMAGES,
    MIN_AGREEMENT,
    PLAIN,
    REFERENCE,
    RESULTS,
    TWO_D,
    agreement,
    read_json,
    reference_labels,
)

from autoseg.cli import main

# A protocol-0 pickle that would call os.system if anything unpickled it.
HOSTILE_PICKLE = b"cos\nsystem\n(S'echo imported-code-ran'\ntR."
STAND_INS = {".json": b"{}", ".png": b"\x89PNG\r\n\x1a\n", ".pkl": HOSTILE_PICKLE}


def _nnunet_zip(path: Path) -> Path:
    names = read_json(REFERENCE / "export_members.json")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            source = RESULTS / name
            data = source.read_bytes() if source.is_file() else STAND_INS[Path(name).suffix]
            archive.writestr(name, data)
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_an_nnunet_zip_imports_without_its_pickles_and_predicts(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    zip_path = _nnunet_zip(tmp_path / "model.zip")
    code, err = _run(capsys, "import_model", str(zip_path), "--results", str(results))
    assert (code, err) == (0, "")
    dataset = results / DATASET
    assert sorted(p.name for p in dataset.glob("*__*__*")) == sorted([PLAIN, TWO_D])
    assert not list(results.rglob("*.pkl"))
    assert (dataset / "inference_information.json").is_file()
    assert (dataset / PLAIN / "fold_0" / "debug.json").is_file()
    out = tmp_path / "out"
    flags = ["-device", "cpu", "--progress", "none"]
    code, err = _run(
        capsys, "predict", "-i", str(IMAGES), "-o", str(out), "-m", str(dataset), *flags
    )
    assert (code, err) == (0, "")
    for case in CASES:  # nnU-Net's recommended inference: the ensemble + its post-processing
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        assert agreement(ours, reference_labels("recommended", case)) >= MIN_AGREEMENT
    settings = json.loads((out / "predict_args.json").read_text())
    assert "ensemble" in json.dumps(settings)


@pytest.mark.parametrize(
    "member",
    [
        f"{DATASET}/{PLAIN}/fold_0/checkpoint_final.pkl",  # a pickle where nnU-Net writes none
        f"{DATASET}/{PLAIN}/fold_0/validation/case.pkl",
        f"{DATASET}/{PLAIN}/crossval_results_folds_0/run.sh",
        f"{DATASET}/ensembles/e/../../../escape.pkl",
    ],
)
def test_other_files_in_an_nnunet_zip_are_still_refused(
    tmp_path: Path, capsys, member: str
) -> None:
    path = _nnunet_zip(tmp_path / "model.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(member, HOSTILE_PICKLE)
    results = tmp_path / "results"
    code, err = _run(capsys, "import_model", str(path), "--results", str(results))
    assert code != 0
    assert "nothing was imported" in err
    assert not results.exists() or not any(results.iterdir())
