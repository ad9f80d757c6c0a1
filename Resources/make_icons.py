"""Draw the AutoSeg icons: the extension icon and one icon per module, 128 x 128 RGBA PNGs.

Why a script rather than hand-drawn files: the three icons share one design (a brain with a
segmentation overlay on a coloured tile, plus a badge naming the module's job), so a change of
colour or shape is made once and the icons stay consistent. Run from anywhere:

    .venv/bin/python Resources/make_icons.py

Everything is drawn at 4x the final size and scaled down with a Lanczos filter, which gives
anti-aliased edges without depending on Pillow's (version-dependent) anti-aliasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

SIZE = 128
SCALE = 4
CANVAS = SIZE * SCALE
ROOT = Path(__file__).resolve().parents[1]

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class IconStyle:
    """Colours of one icon and the badge it carries (``None``, ``"train"`` or ``"predict"``)."""

    top: RGB
    bottom: RGB
    overlay: RGB
    badge: str | None


STYLES = {
    ROOT / "Resources" / "AutoSeg.png": IconStyle(
        (38, 92, 170), (20, 48, 102), (52, 199, 89), None
    ),
    ROOT / "AutoSegTrain" / "Resources" / "Icons" / "AutoSegTrain.png": IconStyle(
        (240, 146, 60), (176, 78, 24), (40, 120, 220), "train"
    ),
    ROOT / "AutoSegPredict" / "Resources" / "Icons" / "AutoSegPredict.png": IconStyle(
        (40, 176, 140), (14, 100, 82), (250, 200, 40), "predict"
    ),
}

# The brain is a union of lobes (circles), seen from the side: frontal lobe on the left,
# occipital on the right, temporal lobe below; centres and radii in units of the canvas.
LOBES = (
    (0.33, 0.42, 0.19),
    (0.50, 0.33, 0.20),
    (0.66, 0.40, 0.18),
    (0.43, 0.55, 0.17),
    (0.62, 0.55, 0.15),
    (0.30, 0.52, 0.13),
)
# Sulci as polylines in canvas units: the central sulcus running down from the top, the lateral
# fissure above the temporal lobe, and a fold each in the frontal and occipital lobes. Drawn
# asymmetric on purpose: symmetric arcs read as a face.
SULCI = (
    ((0.52, 0.16), (0.49, 0.24), (0.53, 0.31), (0.48, 0.40)),
    ((0.26, 0.50), (0.36, 0.47), (0.46, 0.48), (0.58, 0.44)),
    ((0.22, 0.38), (0.30, 0.34), (0.34, 0.27)),
    ((0.62, 0.24), (0.68, 0.32), (0.76, 0.34)),
)


def _px(value: float) -> int:
    return round(value * CANVAS)


def _gradient_tile(style: IconStyle) -> Image.Image:
    """A rounded square filled with a vertical gradient from ``top`` to ``bottom``."""
    ramp = Image.linear_gradient("L").resize((CANVAS, CANVAS))
    tile = Image.composite(
        Image.new("RGBA", (CANVAS, CANVAS), (*style.bottom, 255)),
        Image.new("RGBA", (CANVAS, CANVAS), (*style.top, 255)),
        ramp,
    )
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    margin = _px(0.03)
    ImageDraw.Draw(mask).rounded_rectangle(
        (margin, margin, CANVAS - margin, CANVAS - margin), radius=_px(0.18), fill=255
    )
    tile.putalpha(mask)
    return tile


def _brain_mask() -> Image.Image:
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    for cx, cy, r in LOBES:
        draw.ellipse((_px(cx - r), _px(cy - r), _px(cx + r), _px(cy + r)), fill=255)
    # Brain stem below the temporal lobe.
    draw.rounded_rectangle((_px(0.55), _px(0.60), _px(0.65), _px(0.82)), radius=_px(0.04), fill=255)
    return mask


def _draw_brain(icon: Image.Image, overlay: RGB) -> None:
    """Brain silhouette, its sulci, and a segmentation (filled region + contour) inside it."""
    brain = _brain_mask()
    outline = ImageChops.subtract(brain.filter(ImageFilter.MaxFilter(19)), brain)
    icon.paste((246, 226, 220, 255), (0, 0), brain)
    draw = ImageDraw.Draw(icon)
    width = _px(0.018)
    for line in SULCI:
        points = [(_px(x), _px(y)) for x, y in line]
        draw.line(points, fill=(196, 150, 142, 255), width=width, joint="curve")
    segment = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(segment).ellipse((_px(0.36), _px(0.51), _px(0.62), _px(0.67)), fill=255)
    segment = ImageChops.multiply(segment, brain)
    contour = ImageChops.subtract(segment, segment.filter(ImageFilter.MinFilter(15)))
    icon.paste((*overlay, 255), (0, 0), segment.point(lambda v: v * 150 // 255))
    icon.paste((*overlay, 255), (0, 0), contour)
    icon.paste((255, 255, 255, 255), (0, 0), outline)


def _draw_badge(icon: Image.Image, style: IconStyle) -> None:
    """A white disc in the lower right with a learning curve (train) or a play arrow (predict)."""
    if style.badge is None:
        return
    draw = ImageDraw.Draw(icon)
    cx, cy, r = _px(0.76), _px(0.76), _px(0.17)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255, 255))
    colour = (*style.bottom, 255)
    if style.badge == "train":
        # A rising, saturating curve: what a training run's Dice does.
        points = [
            (cx - r * 0.6 + t * r * 1.2, cy + r * 0.45 - r * 0.95 * (1 - math.exp(-4 * t)))
            for t in (i / 20 for i in range(21))
        ]
        draw.line(points, fill=colour, width=_px(0.035), joint="curve")
    else:
        draw.polygon(
            [(cx - r * 0.35, cy - r * 0.55), (cx - r * 0.35, cy + r * 0.55), (cx + r * 0.6, cy)],
            fill=colour,
        )


def draw_icon(style: IconStyle) -> Image.Image:
    """One 128 x 128 RGBA icon in ``style``."""
    icon = _gradient_tile(style)
    alpha = icon.getchannel("A")
    _draw_brain(icon, style.overlay)
    _draw_badge(icon, style)
    icon.putalpha(ImageChops.multiply(icon.getchannel("A"), alpha))
    return icon.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main() -> None:
    """Write every icon next to where CMake and the ExtensionsIndex expect it."""
    for path, style in STYLES.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_icon(style).save(path, optimize=True)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
