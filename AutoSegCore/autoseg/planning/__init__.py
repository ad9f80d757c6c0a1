"""Fingerprint extraction and experiment planning (no torch: networks are sized analytically).

The names are loaded on first use (PEP 562), so that reading a constant such as
``autoseg.planning.presets.DEFAULT_PLANS_NAME`` in Slicer's process does not import scipy.
"""

from __future__ import annotations

from autoseg.lazy_exports import lazy_getattr

_EXPORTS = {
    "DatasetFingerprint": "autoseg.planning.fingerprint",
    "extract_fingerprint": "autoseg.planning.fingerprint",
    "PlannerOptions": "autoseg.planning.planner",
    "PlanningTask": "autoseg.planning.planner",
    "plan_experiment": "autoseg.planning.planner",
    "PRESETS": "autoseg.planning.presets",
    "get_preset": "autoseg.planning.presets",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
