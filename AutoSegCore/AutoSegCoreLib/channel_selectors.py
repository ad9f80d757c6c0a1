"""One volume selector per image channel, for the modules' panels (Slicer only: it builds widgets).

Both modules ask for "a volume for every channel of the dataset/model" in channel order. The
selectors live in a QFormLayout of the module's .ui, are rebuilt only when the channel names change
(so a refresh keeps the user's choices), and offer scalar volumes but not label maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import slicer


class ChannelSelectors:
    """Node combo boxes, one per channel, added to ``layout`` (a QFormLayout)."""

    def __init__(self, layout: object, on_change: Callable[..., None], label: str) -> None:
        """``label`` is a format string with ``{channel}``, e.g. ``"{channel} volume:"``."""
        self._layout = layout
        self._on_change = on_change
        self._label = label
        self._channels: tuple[str, ...] = ()
        self._selectors: list = []

    def set_channels(self, channels: Sequence[str]) -> None:
        """Show one selector per channel; nothing changes while the names stay the same."""
        channels = tuple(channels)
        if channels == self._channels:
            return
        for selector in self._selectors:
            self._layout.removeRow(selector)
        self._channels, self._selectors = channels, []
        for channel in channels:
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.showChildNodeTypes = False  # no label maps as image channels
            selector.addEnabled = selector.removeEnabled = False
            selector.noneEnabled = True
            selector.setMRMLScene(slicer.mrmlScene)
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self._on_change)
            self._layout.addRow(self._label.format(channel=channel), selector)
            self._selectors.append(selector)

    def volumes(self) -> list:
        """The chosen volume per channel, in channel order (None where none is chosen)."""
        return [selector.currentNode() for selector in self._selectors]

    def all_chosen(self) -> bool:
        """True when there is at least one channel and every one has a volume."""
        return bool(self._selectors) and all(self.volumes())
