"""What a channel's name in dataset.json means for its intensity normalization (method §3.5, 9).

As in nnU-Net, each channel's normalization follows from its name, compared case-insensitively:
"CT" (clip and scale with the dataset's foreground statistics), "noNorm", "zscore",
"rescale_to_0_1", "rgb_to_0_1" (8-bit colour values divided by 255); any other name (also "R",
"G", "B") gets z-score. The planner stores the resulting scheme per channel in the plans; verify and
every stage use it to refuse an "rgb_to_0_1" channel whose values are no 8-bit colour values (a
16-bit PNG), naming the file, before preprocessing would stop on it without one.
"""

from __future__ import annotations

_SCHEME_BY_CHANNEL_NAME = {
    "ct": "CT",
    "nonorm": "NoNorm",
    "zscore": "ZScore",
    "rescale_to_0_1": "RescaleTo01",
    "rgb_to_0_1": "RGBTo01",
}
DEFAULT_SCHEME = "ZScore"
RGB_SCHEME = "RGBTo01"
#: The values an RGBTo01 channel may hold: 8-bit colour components.
RGB_VALUE_RANGE = (0.0, 255.0)


def normalization_scheme(channel_name: str) -> str:
    """The normalization scheme of a dataset.json channel name (unknown names get z-score).

    Exactly nnU-Net's lookup (case-folded, not stripped), so a dataset trains with the same
    normalization in both tools.
    """
    return _SCHEME_BY_CHANNEL_NAME.get(channel_name.casefold(), DEFAULT_SCHEME)


def rgb_channels(channel_names: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the channels normalized by RGBTo01 (their values must lie in 0..255)."""
    return tuple(
        i for i, name in enumerate(channel_names) if normalization_scheme(name) == RGB_SCHEME
    )
