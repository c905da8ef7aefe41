"""Drawing material of the synthetic street scenes (panonet.data.synthetic): the Cityscapes
labelIds they use, sprites and the pen that draws them, texture, and the colour palettes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image, ImageDraw

__all__ = [
    "BUILDINGS",
    "BUS_PAINT",
    "CAR_PAINT",
    "CLOTHS",
    "HAIRS",
    "LABEL_ID",
    "Pen",
    "SKINS",
    "SceneObject",
    "Sprite",
    "THING_LABEL_IDS",
    "TROUSERS",
    "TRUCK_PAINT",
    "colourise",
    "jitter",
    "value_noise",
]

# labelIds from the official table (one place per fact: never retype the numbers).
LABEL_ID = {
    name: name2label[name].id
    for name in (
        "ego vehicle", "road", "sidewalk", "building", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "motorcycle",
        "bicycle",
    )
}  # fmt: skip
THING_LABEL_IDS = frozenset(name2label[n].id for n in name2label if name2label[n].hasInstances)


@dataclass
class Sprite:
    """An object's appearance in its own box: part map, colours and per-part labels."""

    parts: np.ndarray  # (h, w) uint8 part index, 0 = transparent
    rgb: np.ndarray  # (h, w, 3) float32
    part_label: np.ndarray  # (P,) labelId of each part index (entry 0 unused)
    group: bool = False  # thing parts get instanceId = labelId (a Cityscapes group region)


@dataclass
class SceneObject:
    """A sprite placed in the scene; painted in order of decreasing depth."""

    z: float  # depth in metres (painter's order key)
    order: int  # tie-break at equal depth (e.g. a rider after its bicycle)
    sprite: Sprite
    x0: int  # top-left corner in the image
    y0: int
    shadow: tuple[float, float, float] | None = None  # contact shadow (cx, cy, rx) in pixels
    twin_key: int | None = None  # objects sharing a key are twins


class Pen:
    """Draws parts into a sprite box with coordinates in units of the box height.

    Working in height units (x in [0, aspect], y in [0, 1]) keeps each shape's proportions
    independent of the pixel size; PIL rasterises, so thin parts stay at least a pixel wide.
    """

    def __init__(self, h: int, aspect: float) -> None:
        self.h = h
        self.w = max(1, round(aspect * h))
        self.img = Image.new("L", (self.w, self.h), 0)
        self.draw = ImageDraw.Draw(self.img)

    def _xy(self, pts):
        return [(x * self.h, y * self.h) for x, y in pts]

    def poly(self, pts, part: int) -> None:
        self.draw.polygon(self._xy(pts), fill=int(part))

    def rect(self, x0: float, y0: float, x1: float, y1: float, part: int) -> None:
        self.draw.rectangle(self._xy([(x0, y0), (x1, y1)]), fill=int(part))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, part: int, width=None) -> None:
        box = self._xy([(cx - rx, cy - ry), (cx + rx, cy + ry)])
        if width is None:
            self.draw.ellipse(box, fill=int(part))
        else:
            self.draw.ellipse(box, outline=int(part), width=max(1, round(width * self.h)))

    def line(self, pts, width: float, part: int) -> None:
        self.draw.line(self._xy(pts), fill=part, width=max(1, round(width * self.h)))

    def parts(self) -> np.ndarray:
        return np.asarray(self.img)


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """(h, w) float32 smooth noise, about unit variance, features ~``cell`` pixels wide."""
    gy, gx = max(2, round(h / cell) + 2), max(2, round(w / cell) + 2)
    grid = rng.standard_normal((gy, gx), dtype=np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BILINEAR))


def colourise(
    parts: np.ndarray,
    colours: np.ndarray,
    rng: np.random.Generator,
    *,
    texture: float = 0.08,
    grain: float = 3.0,
    shade: tuple[float, float] = (1.1, 0.8),
    rounding: float = 0.15,
) -> np.ndarray:
    """Sprite RGB: part colours, vertical light falloff, rounded sides, smooth noise, grain.

    All of it is in sprite coordinates, so two sprites from the same rng state are identical
    wherever they are pasted (twins).
    """
    h, w = parts.shape
    base = colours[parts]  # (h, w, 3)
    vert = np.linspace(shade[0], shade[1], h, dtype=np.float32)[:, None]
    u = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    light = vert * (1.0 - rounding * u * u)
    low = value_noise(rng, h, w, max(4.0, max(h, w) / 5))
    fine = rng.standard_normal((h, w), dtype=np.float32)
    rgb = base * (light * (1.0 + texture * low))[..., None] + (grain * fine)[..., None]
    return rgb.astype(np.float32)


def jitter(rng: np.random.Generator, colour, amount: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


CAR_PAINT = [
    (170, 20, 25), (25, 50, 120), (185, 185, 190), (25, 25, 28), (225, 225, 220),
    (30, 80, 45), (230, 180, 20), (110, 110, 115), (90, 25, 35), (70, 120, 170),
]  # fmt: skip
TRUCK_PAINT = [(220, 220, 215), (200, 60, 40), (40, 80, 150), (150, 150, 150), (230, 200, 40)]
BUS_PAINT = [(230, 200, 30), (190, 30, 30), (240, 240, 235), (30, 100, 170), (60, 140, 80)]
BUILDINGS = [
    (190, 170, 140), (150, 80, 60), (210, 205, 195), (125, 125, 130), (200, 180, 115),
    (185, 150, 150), (95, 85, 80), (160, 170, 175),
]  # fmt: skip
SKINS = [(240, 200, 170), (210, 160, 120), (160, 110, 75), (110, 70, 45)]
CLOTHS = [
    (30, 30, 35), (200, 30, 40), (40, 60, 140), (220, 220, 215), (60, 120, 60), (120, 90, 60),
    (240, 170, 40), (100, 100, 105), (150, 40, 120), (40, 150, 170),
]  # fmt: skip
TROUSERS = [(30, 35, 60), (25, 25, 25), (90, 90, 95), (150, 130, 90), (60, 70, 110)]
HAIRS = [(30, 20, 15), (90, 60, 30), (200, 170, 100), (120, 120, 120)]
