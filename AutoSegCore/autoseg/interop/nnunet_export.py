"""``export_model --format nnunet``: a zip nnunetv2 installs and runs with its own code.

The zip has the layout ``nnUNetv2_export_model_to_zip`` writes (``DatasetXXX_Name/<trainer>__<plans>__
<configuration>/`` with plans.json, dataset.json, dataset_fingerprint.json and
``fold_<k>/<checkpoint>``), so ``nnUNetv2_install_pretrained_model_from_zip`` unpacks it into
``nnUNet_results`` and ``nnUNetv2_predict -d D -c C -f F -tr nnUNetTrainer -p <plans>`` runs it.
For an AutoSeg model the plans are written in nnU-Net's schema
(:mod:`autoseg.interop.nnunet_plans_writer`), every checkpoint is rewritten with nnU-Net's
parameter names (:mod:`autoseg.interop.nnunet_export_checkpoint`) and the cross-validation
post-processing JSON in nnU-Net's schema; an nnU-Net model folder (imported before) is passed on
as it is, after the same checks.

The trainer: nnunetv2 looks its class up by the name in the checkpoint and the folder name, and
uses it only to build the network from plans.json. AutoSeg's trainer is no nnunetv2 class, so an
AutoSeg model is exported as ``nnUNetTrainer`` (its network is exactly the plans' standard one);
an nnU-Net model keeps the trainer name it was trained with. The plans name stays the model's
(e.g. ``AutoSegPlans``), so installing the zip never overwrites a user's own ``nnUNetPlans`` models.

No pickle is written: nnunetv2's ``postprocessing.pkl`` is needed only by
``nnUNetv2_apply_postprocessing``, never by ``nnUNetv2_predict``; the same rules are in the
``postprocessing.json`` beside where nnU-Net keeps it.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoseg.atomic import atomic_path, json_text
from autoseg.dataset import DATASET_JSON
from autoseg.inference.model_folder import ModelFolder
from autoseg.interop.nnunet_export_checkpoint import (
    nnunet_checkpoint,
    nnunet_fold,
    save_nnunet_checkpoint,
)
from autoseg.interop.nnunet_export_selection import information_to_nnunet, renamed_ensemble
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN, NNUNET_TRAINER
from autoseg.interop.nnunet_plans_writer import nnunet_plans_json
from autoseg.interop.nnunet_selection import is_nnunet_information, postprocessing_json_to_nnunet
from autoseg.model_sharing import ExportOptions, models_to_export
from autoseg.model_zip_layout import OPTIONAL_MODEL_FILES
from autoseg.postprocessing import Postprocessing
from autoseg.results_layout import (
    CROSSVAL_PATTERN,
    ENSEMBLES_DIR,
    INFORMATION_FILE,
    PLANS_FILE,
    POSTPROCESSING_FILE,
    fold_folder_name,
    fold_of_folder,
    model_folder_name,
    split_model_folder_name,
)


@dataclass(frozen=True)
class _Member:
    """One file of the zip: its name there, and its bytes or the file holding them."""

    name: str
    data: bytes | None = None
    path: Path | None = None


def export_nnunet_model(
    results_dataset_dir: Path, output_zip: Path, options: ExportOptions | None = None
) -> Path:
    """Write the chosen models of ``<results>/DatasetXXX_Name`` as an nnU-Net v2 model zip.

    Models, folds and the checkpoint are chosen as for AutoSeg's zip (same options, same errors);
    the zip is written atomically and never over an existing file."""
    options = options or ExportOptions()
    output = Path(output_zip)
    source, models = models_to_export(results_dataset_dir, output, options)
    with tempfile.TemporaryDirectory(prefix="autoseg-nnunet-export-") as scratch:
        members: list[_Member] = []
        renamed: dict[str, str] = {}  # AutoSeg's model folder names -> the exported ones
        last: ModelFolder | None = None
        for model_dir, fold_dirs in models:
            folds = [fold_of_folder(d.name) or d.name for d in fold_dirs]
            model = ModelFolder.open(model_dir, folds, options.checkpoint)
            top = f"{source.name}/{exported_folder_name(model)}"
            members += _model_members(model, top, Path(scratch))
            if model.origin != NNUNET_ORIGIN:
                renamed[model_dir.name], last = exported_folder_name(model), model
        if last is not None:
            labels = last.dataset.labels.foreground_labels
            members += _selection_members(source, renamed, labels, last.folds)
        _write_zip(members, output)
    return output


def exported_folder_name(model: ModelFolder) -> str:
    """``<trainer>__<plans>__<configuration>`` in the zip: AutoSeg's models as nnUNetTrainer."""
    trainer, plans_name, configuration = split_model_folder_name(model.path.name)
    if model.origin != NNUNET_ORIGIN:
        trainer = NNUNET_TRAINER
    return model_folder_name(trainer, plans_name, configuration)


def _model_members(model: ModelFolder, top: str, scratch: Path) -> list[_Member]:
    """plans.json, dataset.json, the fingerprint, every fold's checkpoint and post-processing."""
    notes = [model.path / name for name in OPTIONAL_MODEL_FILES if (model.path / name).is_file()]
    members = [
        _Member(f"{top}/{DATASET_JSON}", path=model.path / DATASET_JSON),
        *(_Member(f"{top}/{file.name}", path=file) for file in notes),
    ]
    if model.origin == NNUNET_ORIGIN:  # nnU-Net's own files, already checked by ModelFolder.open
        members.append(_Member(f"{top}/{PLANS_FILE}", path=model.path / PLANS_FILE))
        members += [
            _Member(_fold_member(top, model, f), path=model.checkpoint_file(f)) for f in model.folds
        ]
        return members + _postprocessing_members(model, top, translate=False)
    plans = nnunet_plans_json(model.plans, str(model.path / PLANS_FILE))
    members.append(_Member(f"{top}/{PLANS_FILE}", data=json_text(plans).encode("utf-8")))
    for fold in model.folds:
        members.append(_converted_checkpoint(model, fold, plans, top, scratch))
    return members + _postprocessing_members(model, top, translate=True)


def _fold_member(top: str, model: ModelFolder, fold: str) -> str:
    return f"{top}/{fold_folder_name(fold)}/{model.checkpoint_name}"


def _converted_checkpoint(
    model: ModelFolder, fold: str, plans: dict, top: str, scratch: Path
) -> _Member:
    """One fold's weights (loaded into AutoSeg's network first, so only weights that fit the
    plans are exported) saved as nnunetv2's checkpoint in the scratch folder."""
    one_fold = ModelFolder.open(model.path, [fold], model.checkpoint_name)
    network = one_fold.load_fold_networks()[0]
    dataset_json = json.loads((model.path / DATASET_JSON).read_text(encoding="utf-8"))
    init_args = {
        "plans": plans,
        "configuration": model.configuration,
        "fold": nnunet_fold(fold),
        "dataset_json": dataset_json,
    }
    source = model.checkpoint_file(fold)
    checkpoint = nnunet_checkpoint(
        network.state_dict(), init_args, NNUNET_TRAINER, one_fold.mirror_axes, source
    )
    file = scratch / _fold_member(top, model, fold)
    file.parent.mkdir(parents=True, exist_ok=True)
    save_nnunet_checkpoint(file, checkpoint)
    return _Member(_fold_member(top, model, fold), path=file)


def _postprocessing_members(model: ModelFolder, top: str, *, translate: bool) -> list[_Member]:
    """Each ``crossval_results_folds_*/postprocessing.json`` (nnU-Net's place for it), in
    nnU-Net's schema; nnU-Net's own file is passed on as it is."""
    members = []
    for file in sorted(model.path.glob(f"{CROSSVAL_PATTERN}/{POSTPROCESSING_FILE}")):
        name = f"{top}/{file.parent.name}/{file.name}"
        if not translate:
            members.append(_Member(name, path=file))
            continue
        rules = Postprocessing.load(file).to_json()
        labels = model.dataset.labels.foreground_labels
        converted = postprocessing_json_to_nnunet(rules, labels)
        members.append(_Member(name, data=json_text(converted).encode("utf-8")))
    return members


def _selection_members(
    source: Path, renamed: dict[str, str], labels: Sequence[int], folds: Sequence[str]
) -> list[_Member]:
    """The dataset's model selection in nnU-Net's schema, for the exported models only: the
    choice (inference_information.json) and each ensemble's post-processing."""
    members = []
    for file in sorted(source.glob(f"{ENSEMBLES_DIR}/*/{POSTPROCESSING_FILE}")):
        folder = renamed_ensemble(file.parent.name, renamed)
        if folder is not None:
            rules = postprocessing_json_to_nnunet(Postprocessing.load(file).to_json(), labels)
            name = f"{source.name}/{ENSEMBLES_DIR}/{folder}/{POSTPROCESSING_FILE}"
            members.append(_Member(name, data=json_text(rules).encode("utf-8")))
    information = source / INFORMATION_FILE
    if information.is_file():
        data = json.loads(information.read_text(encoding="utf-8"))
        converted = (
            None
            if is_nnunet_information(data)
            else information_to_nnunet(data, renamed, source.name, folds)
        )
        if converted is not None:
            name = f"{source.name}/{INFORMATION_FILE}"
            members.append(_Member(name, data=json_text(converted).encode("utf-8")))
    return members


def _write_zip(members: list[_Member], output: Path) -> None:
    """Checkpoints stored (float weights do not compress), everything else deflated."""
    with (
        atomic_path(output, suffix=".zip") as temporary,
        zipfile.ZipFile(
            temporary, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False
        ) as archive,
    ):
        for member in members:
            stored = member.name.endswith(".pth")
            compress = zipfile.ZIP_STORED if stored else None
            if member.path is not None:
                archive.write(member.path, member.name, compress_type=compress)
            else:
                archive.writestr(member.name, member.data or b"", compress_type=compress)
