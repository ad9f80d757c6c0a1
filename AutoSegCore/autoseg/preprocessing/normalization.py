"""Per-channel intensity normalization, selected by the scheme names stored in the plans.

The plans keep one scheme name per input channel ("CT", "ZScore", "NoNorm", "RescaleTo01",
"RGBTo01"). CT uses constants measured once over the whole training set (the fingerprint), so every
case maps the same Hounsfield value to the same network input; all other schemes only look at the
case itself. Normalization runs *before* resampling, on the cropped image.

The masked z-score is why the segmentation carries -1 outside the non-zero mask: for images with a
large zero background (skull-stripped MRI) the statistics are taken inside the mask only and the
background stays exactly 0. Only ZScore honours the mask, so the planner
(``autoseg.planning.planner``) only turns masking on for ZScore channels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from autoseg.channel_schemes import RGB_VALUE_RANGE
from autoseg.errors import AutoSegError
from autoseg.plans import IntensityStats

EPS = 1e-8

Normalizer = Callable[[np.ndarray, "np.ndarray | None", bool, "IntensityStats | None"], np.ndarray]


def _zscore(
    image: np.ndarray, mask: np.ndarray | None, use_mask: bool, stats: IntensityStats | None
) -> np.ndarray:
    """(x - mean) / std of this case; with the mask only voxels inside it are used and changed."""
    if use_mask and mask is not None:
        out = np.zeros_like(image, dtype=np.float32)
        values = image[mask].astype(np.float64)
        if values.size:
            mean, std = float(values.mean()), float(values.std())
            out[mask] = ((values - mean) / max(std, EPS)).astype(np.float32)
        return out
    mean, std = float(image.mean(dtype=np.float64)), float(image.std(dtype=np.float64))
    return ((image - mean) / max(std, EPS)).astype(np.float32)


def _ct(
    image: np.ndarray, mask: np.ndarray | None, use_mask: bool, stats: IntensityStats | None
) -> np.ndarray:
    """Clip to the dataset's foreground 0.5/99.5 percentiles, then dataset-wide z-score."""
    if stats is None:
        raise AutoSegError(
            "CT normalization needs the dataset's foreground intensity statistics, but the plans "
            "have none for this channel. Fix: re-run fingerprint extraction and planning."
        )
    clipped = np.clip(image, stats.percentile_00_5, stats.percentile_99_5)
    return ((clipped - stats.mean) / max(stats.std, EPS)).astype(np.float32)


def _no_norm(
    image: np.ndarray, mask: np.ndarray | None, use_mask: bool, stats: IntensityStats | None
) -> np.ndarray:
    return image.astype(np.float32, copy=True)


def _rescale_to_01(
    image: np.ndarray, mask: np.ndarray | None, use_mask: bool, stats: IntensityStats | None
) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    return ((image - low) / max(high - low, EPS)).astype(np.float32)


def _rgb_to_01(
    image: np.ndarray, mask: np.ndarray | None, use_mask: bool, stats: IntensityStats | None
) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    bottom, top = RGB_VALUE_RANGE
    if low < bottom or high > top:
        raise AutoSegError(
            f"RGBTo01 normalization expects values in {bottom:g}..{top:g} but found "
            f"{low:g}..{high:g}. Fix: name the channel differently in dataset.json (e.g. 'zscore') "
            "or convert the image to 8-bit colour values."
        )
    return (image / top).astype(np.float32)


# Schemes that use the dataset's intensity statistics (the fingerprint's) rather than only the case:
# a change of those statistics changes the preprocessed cases of these channels only.
SCHEMES_USING_DATASET_STATISTICS = frozenset({"CT"})

NORMALIZERS: dict[str, Normalizer] = {
    "CT": _ct,
    "ZScore": _zscore,
    "NoNorm": _no_norm,
    "RescaleTo01": _rescale_to_01,
    "RGBTo01": _rgb_to_01,
}


def _normalizer(scheme: str) -> Normalizer:
    try:
        return NORMALIZERS[scheme]
    except KeyError:
        raise AutoSegError(
            f"plans: unknown normalization scheme {scheme!r}. "
            f"Fix: use one of {sorted(NORMALIZERS)} in 'normalization_schemes' or re-run planning."
        ) from None


def normalize(
    data: np.ndarray,
    seg: np.ndarray | None,
    schemes: Sequence[str],
    use_mask_for_norm: Sequence[bool],
    intensity_stats: Sequence[IntensityStats],
) -> np.ndarray:
    """Normalize every channel of ``data`` (c, ...) with its scheme; returns a new float32 array.

    Args:
        data: the cropped image, channel first.
        seg: (1, ...) map with -1 outside the non-zero mask (the cropped segmentation or, without
            labels, the 0/-1 map from cropping); None disables masking.
        schemes: one scheme name per channel.
        use_mask_for_norm: per channel, whether statistics are taken inside the mask only.
        intensity_stats: per-channel dataset statistics (needed by CT); may be shorter when unused.
    """
    if len(schemes) != data.shape[0] or len(use_mask_for_norm) != data.shape[0]:
        raise AutoSegError(
            f"plans: {len(schemes)} normalization scheme(s) / {len(use_mask_for_norm)} mask flag(s) "
            f"for an image with {data.shape[0]} channel(s). Fix: the plans do not belong to this "
            "dataset; re-run planning."
        )
    mask = None if seg is None else seg[0] >= 0
    out = np.empty(data.shape, dtype=np.float32)
    for channel, scheme in enumerate(schemes):
        function = _normalizer(scheme)
        stats = intensity_stats[channel] if channel < len(intensity_stats) else None
        out[channel] = function(data[channel], mask, bool(use_mask_for_norm[channel]), stats)
    return out
