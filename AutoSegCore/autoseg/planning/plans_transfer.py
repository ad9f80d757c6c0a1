"""A trained model's plans reused for another dataset (``plan_and_preprocess --plans-from MODEL``).

Fine-tuning a model on more cases (its dataset grew, or a related dataset) only works when the new
cases are preprocessed exactly as the model's training cases were: the same target spacing, axis
order, normalization (with the model's intensity statistics, which CT clipping depends on), and the
same network and patch size, so that the weights fit. Planning the new dataset from its own
fingerprint would choose other values. So the model's plans are copied, the way nnU-Net's
move_plans_between_datasets does, and only what names the dataset changes: the dataset name, the
plans name (and the data identifiers derived from it), and the image reader (the new dataset's files
may be another format). Where the plans came from is recorded in them (``plans_from``), which also
tells the stages not to compare them with the new dataset's fingerprint.

The dataset must have the model's channels, in the model's order; it may add label classes (the
network's segmentation heads then start fresh when fine-tuning) but not drop or renumber the
model's. An nnU-Net v2 model folder works too: its plans are translated on the way in. The model
folder is read by ``autoseg.inference.model_files.read_model_plans``, the rule predict applies to
a model folder's name, plans and dataset.json (torch-free; no trained fold needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from autoseg.dataset import DatasetSpec
from autoseg.errors import AutoSegError
from autoseg.inference.model_files import ModelPlans
from autoseg.labels import IGNORE_NAME
from autoseg.plans import Plans

PLANS_FROM_KEY = "plans_from"
ORIGIN_KEY = "origin"


def _check_channels(model: ModelPlans, dataset: DatasetSpec, where: str) -> None:
    ours = [c.casefold() for c in dataset.channel_names]
    theirs = [c.casefold() for c in model.dataset.channel_names]
    if ours != theirs:
        raise AutoSegError(
            f"{where}: the channels {list(dataset.channel_names)} are not the model's "
            f"{list(model.dataset.channel_names)} ({model.folder}). Fix: the dataset needs the "
            "model's channels in the model's order (rename channel_names in its dataset.json if "
            "only the names differ), or use a model trained on these channels."
        )


def _check_labels(model: ModelPlans, dataset: DatasetSpec, where: str) -> tuple[str, ...]:
    ours = dict(dataset.labels.entries)
    for name, value in model.dataset.labels.entries:
        if ours.get(name) != value:
            found = "missing" if name not in ours else f"{ours[name]!r}"
            raise AutoSegError(
                f"{where}: the model's label '{name}' = {value!r} is {found} in this dataset "
                f"({model.folder}). Fix: keep the model's labels and values in dataset.json (new "
                "labels may be added), or start from the model's trunk only with "
                "'train -pretrained_weights <checkpoint>'."
            )
    known = {name for name, _ in model.dataset.labels.entries}
    return tuple(name for name, _ in dataset.labels.entries if name not in known | {IGNORE_NAME})


def added_labels(model: ModelPlans, dataset: DatasetSpec, where: str) -> tuple[str, ...]:
    """The label names ``dataset`` adds to the model's; an error when it cannot use the model.

    ``where`` names the dataset in the error (its dataset.json). Channels must be the model's, in
    order; every label of the model must keep its value; new labels are allowed.
    """
    _check_channels(model, dataset, where)
    return _check_labels(model, dataset, where)


def _data_identifier(identifier: str, old_plans: str, new_plans: str) -> str:
    """``<plans>_<configuration>`` follows the plans name, so the data of two plans never mixes."""
    if identifier.startswith(old_plans):
        return new_plans + identifier[len(old_plans) :]
    return f"{new_plans}_{identifier}"


def transfer_plans(model: ModelPlans, dataset_name: str, plans_name: str, reader: str) -> Plans:
    """The model's plans, renamed for ``dataset_name`` and read with the dataset's ``reader``."""
    source = model.plans
    configurations = {
        name: replace(
            config,
            data_identifier=_data_identifier(config.data_identifier, source.plans_name, plans_name),
        )
        for name, config in source.configurations.items()
    }
    extra: Mapping[str, Any] = {k: v for k, v in source.extra.items() if k != ORIGIN_KEY}
    record = {
        "model_folder": str(model.folder.resolve()),
        "configuration": model.configuration,
        "dataset_name": source.dataset_name,
        "plans_name": source.plans_name,
    }
    return replace(
        source,
        dataset_name=dataset_name,
        plans_name=plans_name,
        image_reader_writer=reader,
        configurations=configurations,
        extra={**extra, PLANS_FROM_KEY: record},
    )


def transferred_from(plans: Plans) -> dict[str, Any] | None:
    """Where plans were copied from (``--plans-from``), or None for plans made from a fingerprint."""
    record = plans.extra.get(PLANS_FROM_KEY)
    return record if isinstance(record, dict) else None
