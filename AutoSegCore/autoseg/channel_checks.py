"""Does a case supply the channels that dataset.json names? Part of :mod:`autoseg.case_checks`.

A case's channels are those of its image files in order, a file holding several components
supplying that many (an RGB PNG 3, RGBA 4, a 4D image its volumes), as nnU-Net reads them; their
number must equal ``channel_names``. The messages say which file holds how many, because the fix
differs: a missing grey file, or an RGB file whose components need names (or an alpha plane to go).
Channels named "rgb_to_0_1" are divided by 255, so their values must be 8-bit colour values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoseg.channel_schemes import RGB_VALUE_RANGE
from autoseg.dataset_files import CHANNEL_FILE
from autoseg.errors import Problem

_CHANNEL_NAME = re.compile(CHANNEL_FILE.pattern + r"(?P<ending>\..+)")  # with the file ending


def _more_files(last: Path, count: int) -> str:
    """Names of the ``count`` channel files after ``last`` (``CASE_0000.png`` -> ``CASE_0001.png``),
    or a description when ``last`` does not follow the channel naming."""
    match = _CHANNEL_NAME.fullmatch(last.name)
    if match is None:
        return f"{count} more grey file(s)"
    first = int(match["channel"]) + 1
    names = [f"{match['case']}_{i:04d}{match['ending']}" for i in range(first, first + count)]
    return ", ".join(names)


def channel_problems(
    case_id: str, components: Sequence[tuple[Path, int]], expected: int, owner: str
) -> list[Problem]:
    """A case must supply exactly the channels of channel_names. ``components``: each image file
    with the channels it holds (1 for grey, 3 for RGB, 4 for RGBA, the volumes of a 4D file)."""
    total = sum(count for _, count in components)
    if total == expected or not components:
        return []
    held = ", ".join(f"{path.name} {count}" for path, count in components)
    msg = (
        f"case {case_id} has {total} channel(s); the channel_names of {owner} list "
        f"{expected} (channels per file: {held})."
    )
    several = [(path, count) for path, count in components if count > 1]
    if total < expected:
        where = components[-1][0]
        fix = (
            f"Add {_more_files(where, expected - total)} (one grey file per channel), or store "
            "the channels as the components of one file (an RGB image for R, G, B)."
        )
    elif several:
        where, count = several[0]
        fitting = count - (total - expected)  # what this file would need to hold
        fix = (
            f"{where.name} holds {count} channels (colour components, RGB 3, RGBA 4, or the "
            "volumes of a 4D image): name each in the training dataset's channel_names (e.g. "
            "R, G, B), or save "
            + (
                f"the image with {fitting} (without alpha, or grey)."
                if fitting > 0
                else "it again."
            )
        )
    else:
        where = components[0][0]
        fix = f"Give every case {expected} channel(s): remove the extra files."
    return [Problem("error", str(where), msg, fix, "channels")]


def rgb_range_problems(
    images: np.ndarray, components: Sequence[tuple[Path, int]], rgb_channels: Sequence[int]
) -> list[Problem]:
    """An "rgb_to_0_1" channel is divided by 255, so it must hold 8-bit colour values; a 16-bit
    image would stop preprocessing later (nnU-Net asserts the same). Names the channel's file."""
    owners = [path for path, count in components for _ in range(count)]
    bottom, top = RGB_VALUE_RANGE
    problems = []
    for channel in (c for c in rgb_channels if c < min(len(owners), images.shape[0])):
        low, high = float(images[channel].min()), float(images[channel].max())
        if low < bottom or high > top:
            msg = (
                f'channel {channel} is named "rgb_to_0_1" (divided by {top:g}) but holds values '
                f"{low:g}..{high:g}, outside {bottom:g}..{top:g}."
            )
            fix = "Save it as 8-bit colour, or name the channel e.g. 'zscore' in channel_names."
            problems.append(Problem("error", str(owners[channel]), msg, fix, "intensities"))
    return problems
