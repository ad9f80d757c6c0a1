"""Facts about the extension the modules show: supported Slicer, documentation, contributors.

And what an older Slicer shows instead of an import traceback.

AutoSeg supports Slicer 5.10 and newer, which ship Python 3.12.10. Slicer 5.8 ships Python 3.9.10,
where AutoSeg's code fails on import (``int | None`` at runtime, zip(strict=), ...). The check is
on what actually breaks, the Python version: the engine needs 3.10 or newer (requires-python in
pyproject.toml), and no Slicer release has a Python between 3.9 and 3.12. The module files import
this file first and, in an older Slicer, register a module whose panel and help show one message,
with no import traceback.

Keep this file importable by Python 3.9 and free of AutoSeg imports: it runs before the check.
Testing/slicer_helpers/test_module_files.py parses it with Python 3.9's grammar.
"""

from __future__ import annotations

import sys

MINIMUM_SLICER = "5.10"
# The engine's requires-python; a packaging test keeps them equal.
MINIMUM_PYTHON = (3, 10)
# The README on the extension's homepage (EXTENSION_HOMEPAGE in CMakeLists.txt; a packaging test
# keeps the two equal).
DOCUMENTATION_URL = "https://github.com/autoseg/SlicerAutoSeg#readme"
# "Name (Institution)", as Slicer lists contributors; equal to EXTENSION_CONTRIBUTORS.
CONTRIBUTORS = ["AutoSeg maintainers (AutoSeg open-source project)"]


def unsupported_reason(version_info: tuple = tuple(sys.version_info)) -> str:
    """Why AutoSeg cannot run in this Slicer ("" when it can)."""
    if tuple(version_info[:2]) >= MINIMUM_PYTHON:
        return ""
    running = ".".join(str(part) for part in version_info[:3])
    return (
        f"AutoSeg needs 3D Slicer {MINIMUM_SLICER} or newer; this Slicer runs Python {running}. "
        "Install a current Slicer release from https://download.slicer.org and AutoSeg from its "
        "Extensions Manager."
    )


def help_text(summary: str, reason: str = "") -> str:
    """A module's help: the unsupported message first when there is one, then a docs link."""
    link = f'<p>Documentation: <a href="{DOCUMENTATION_URL}">{DOCUMENTATION_URL}</a></p>'
    warning = f"<p><b>{reason}</b></p>" if reason else ""
    return f"{warning}<p>{summary}</p>{link}"


def unsupported_classes(module_name: str, reason: str) -> tuple[type, type]:
    """The widget and self-test classes of a module in a Slicer AutoSeg does not support.

    The widget shows ``reason`` in the panel; the self-test fails with it. Their names follow
    Slicer's ``<Module>Widget`` / ``<Module>Test`` rule, from which Slicer derives the module.
    """
    import qt  # noqa: PLC0415 (Slicer only)
    from slicer.ScriptedLoadableModule import (  # noqa: PLC0415
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        label = qt.QLabel(reason)
        label.wordWrap = True
        self.layout.addWidget(label)
        self.layout.addStretch(1)

    def run_test(self) -> None:
        self.fail(reason)

    widget = type(f"{module_name}Widget", (ScriptedLoadableModuleWidget,), {"setup": setup})
    test = type(f"{module_name}Test", (ScriptedLoadableModuleTest,), {"runTest": run_test})
    return widget, test
