"""Names of the results layout shared by training, prediction and selection (one definition).

A trained model lives in ``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>``, as in
nnU-Net, so both tools find each other's models by the same rule. Kept in the data layer (no torch)
because training, inference and the Slicer side all need it, and inference never imports training.
"""

from __future__ import annotations

MODEL_FOLDER_SEPARATOR = "__"


def model_folder_name(trainer: str, plans_name: str, configuration: str) -> str:
    """``<trainer>__<plans>__<configuration>``."""
    return MODEL_FOLDER_SEPARATOR.join((trainer, plans_name, configuration))


def split_model_folder_name(name: str) -> tuple[str, str, str]:
    """(trainer, plans, configuration) of a model folder's name; ValueError for another name."""
    trainer, plans_name, configuration = name.split(MODEL_FOLDER_SEPARATOR)
    return trainer, plans_name, configuration
