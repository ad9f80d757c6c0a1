"""The Predict panel's Backend option: what runs the network, remembered for this machine.

Kept apart from predict_panel.py (one concept per file, and the widget stays thin): the choices are
the engine's own ``BACKENDS`` (one definition), the choice is a user preference like the device
(it depends on the machine, not on a scene), and before a prediction the optional CPU runtime the
choice needs is offered, with consent, never forced (``auto`` predicts with torch without it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import qt

from autoseg.inference.backends.base import AUTO, BACKENDS
from AutoSegCoreLib.dependency_install import ensure_backend_runtime
from AutoSegCoreLib.preferences import Preferences


class BackendOption:
    """The backend combo box: filled from the engine's names, remembered in the preferences.

    ``preferencesChanged`` receives the preferences after the user changed the backend, so the
    widget holds the same values as the application settings.
    """

    def __init__(self, combo: Any, preferencesChanged: Callable[[Preferences], None]) -> None:
        self._combo = combo
        self._preferencesChanged = preferencesChanged
        combo.connect("currentIndexChanged(int)", self.onBackendChanged)

    def show(self, preferences: Preferences) -> None:
        """Fill the choices and select the remembered backend (no change is written back)."""
        wasBlocked = self._combo.blockSignals(True)
        self._combo.clear()
        for name in BACKENDS:
            self._combo.addItem(name, name)
        self._combo.setCurrentIndex(max(self._combo.findData(preferences.backend), 0))
        self._combo.blockSignals(wasBlocked)

    @property
    def chosen(self) -> str:
        """The backend to pass as ``autoseg predict --backend``."""
        return self._combo.currentData or AUTO

    def onBackendChanged(self, index: int) -> None:
        backend = self._combo.itemData(index) or AUTO
        self._preferencesChanged(Preferences.update(qt.QSettings(), backend=backend))

    def runtimeReady(self, requester: str, python: Path | None) -> bool:
        """True when the chosen backend can run; else its runtime was offered and declined
        (the user was told that ``auto`` and ``torch`` work without it)."""
        return ensure_backend_runtime(self.chosen, requester, python)
