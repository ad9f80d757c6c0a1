"""Channel names -> normalization schemes, exactly as nnU-Net maps them."""

from __future__ import annotations

import pytest

from autoseg.channel_schemes import normalization_scheme, rgb_channels


@pytest.mark.parametrize(
    ("name", "scheme"),
    [
        ("CT", "CT"),
        ("ct", "CT"),
        ("noNorm", "NoNorm"),
        ("zscore", "ZScore"),
        ("rescale_to_0_1", "RescaleTo01"),
        ("RGB_to_0_1", "RGBTo01"),
        ("R", "ZScore"),  # nnU-Net's RGB examples name channels R, G, B: plain z-score
        ("T2", "ZScore"),
        (" CT", "ZScore"),  # case-folded, not stripped, like nnU-Net
    ],
)
def test_channel_name_to_scheme(name: str, scheme: str) -> None:
    assert normalization_scheme(name) == scheme


def test_rgb_channels_are_found_by_name() -> None:
    assert rgb_channels(("rgb_to_0_1", "T2", "RGB_TO_0_1")) == (0, 2)
    assert rgb_channels(("R", "G", "B")) == ()
