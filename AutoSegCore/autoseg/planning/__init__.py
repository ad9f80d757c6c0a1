"""Fingerprint extraction and experiment planning (no torch: networks are sized analytically)."""

from autoseg.planning.fingerprint import DatasetFingerprint, extract_fingerprint
from autoseg.planning.planner import PlannerOptions, PlanningTask, plan_experiment
from autoseg.planning.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "DatasetFingerprint",
    "PlannerOptions",
    "PlanningTask",
    "extract_fingerprint",
    "get_preset",
    "plan_experiment",
]
