"""Procedural street scenes written in the Cityscapes layout (the offline stand-in for Cityscapes).

:func:`generate` writes, per image, exactly the files :class:`panonet.data.CityscapesPanoptic`
reads, with the Cityscapes id conventions::

    out/leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png     RGB
    out/gtFine/{split}/{city}/{city}_{seq:06d}_000019_gtFine_labelIds.png      8-bit labelIds
    out/gtFine/{split}/{city}/{city}_{seq:06d}_000019_gtFine_instanceIds.png   16-bit
    out/gtFine/{split}/{city}/{city}_{seq:06d}_000019_gtFine_color.png         RGB, trainId colours

``instanceIds`` is ``labelId * 1000 + k`` (k = 0, 1, ... per class, in painting order) on the
visible pixels of each individual thing, and the plain ``labelId`` on stuff, void (ego vehicle)
and *group* regions (a distant crowd, a far row of parked cars, a bicycle rack), just as in
Cityscapes. Label values come from cityscapesscripts' table.

The scene model (:func:`render`) is a one-point-perspective street: a pinhole camera at height
``h_cam`` above a flat ground, horizon row ``y_h``, vanishing point ``x_v``, focal length ``f``
(pixels). A ground point at lateral offset X and depth Z (metres) projects to
``x = x_v + X p``, ``y = y_h + h_cam p`` with ``p = f / Z`` pixels per metre, and a point Y metres
above it to ``y = y_h + (h_cam - Y) p``. So everything scales with depth: objects lower in the
image are nearer and bigger. The scene has

- stuff: sky, buildings along both sides and across the street end (with perspective-correct
  window grids), vegetation (hedges, tree lines, street trees), road with lane markings and
  sometimes a zebra crossing, curbs, sidewalks, grass verges (terrain), poles carrying traffic
  signs or traffic lights;
- things: cars, trucks and buses (rear and side views), persons (walking, in small overlapping
  groups, crossing), bicycles and motorcycles each with a rider, parked bicycles and motorcycles,
  chains of parked cars that overlap in depth;
- *twins*: pairs of pixel-identical objects (same sprite: shape, colour, texture, shading) side
  by side at the same depth, sometimes touching. Appearance alone cannot separate them, only
  position can (PanoNet Fig. 5: the reason for the coordinate channels);
- occlusion by painting far to near (painter's algorithm), soft contact shadows, texture noise,
  vertical and horizontal shading, a per-image colour grade, sometimes the ego vehicle's bonnet
  (labelId 1, void) at the bottom.

Determinism: an image depends only on ``(seed, split, index, size)``, through numpy's
``SeedSequence([seed, crc32(split), index])``, so the same arguments give byte-identical PNGs
and images can be generated in any order, or skipped when already present (resume).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from panonet._atomic import write_atomic
from panonet.data.labels import LABEL_TO_TRAIN, PALETTE
from panonet.data.transforms import check_size

__all__ = ["DEFAULT_CITIES", "MANIFEST", "Scene", "SynthSummary", "generate", "render"]

GENERATOR_VERSION = 1
"""Bumped whenever rendering changes, so a resumed run never mixes two generators' images."""

MANIFEST = "panonet_synth.json"
"""File in the output root recording the generator version, seed, size and cities."""

MIN_SIZE = 16
"""The smallest image side that generate and render accept."""

DEFAULT_CITIES: dict[str, tuple[str, ...]] = {
    # Disjoint train / val cities, as in Cityscapes. No "_" in names: Cityscapes tools split
    # file names on "_".
    "train": ("synthhausen", "pixelburg", "raycaststadt"),
    "val": ("renderdorf",),
}

_FRAME = 19  # Cityscapes' annotated frame is the 20th of each 30-frame snippet.

# labelIds from the official table (one place per fact: never retype the numbers).
_ID = {
    name: name2label[name].id
    for name in (
        "ego vehicle", "road", "sidewalk", "building", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "motorcycle",
        "bicycle",
    )
}  # fmt: skip
_THING_LABEL_IDS = frozenset(name2label[n].id for n in name2label if name2label[n].hasInstances)


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        label_ids: (H, W) uint8 Cityscapes labelIds.
        instance_ids: (H, W) uint16 Cityscapes instanceIds (``labelId * 1000 + k`` for
            individual things, ``labelId`` elsewhere).
        twins: ``(id_a, id_b, dy, dx)`` per pair of identical-looking things that are both
            visible: pixel (y, x) of ``id_a``'s sprite corresponds to (y + dy, x + dx) of
            ``id_b``'s.
    """

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    twins: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class SynthSummary:
    """What :func:`generate` did."""

    out_dir: Path
    written: int
    skipped: int
    seconds: float


# --------------------------------------------------------------------------------------------
# generation to disk


def generate(
    out_dir: str | os.PathLike,
    *,
    train: int = 0,
    val: int = 0,
    size: tuple[int, int] = (512, 1024),
    seed: int = 0,
    progress: bool = True,
    cities: Sequence[str] | None = None,
    max_thing_depth: float | None = None,
) -> SynthSummary:
    """Write a synthetic dataset in the Cityscapes layout under ``out_dir``.

    Images are distributed round-robin over the split's cities and named
    ``{city}_{seq:06d}_000019``. Each PNG is encoded in memory, written to ``<name>.tmp`` and
    renamed into place (``os.replace``), ground truth first and the image last, so an
    interrupted run leaves no partial PNG under a name the loader reads; a re-run skips every
    image whose four files all exist (resume) and regenerates the rest identically.

    Args:
        out_dir: dataset root (created if needed).
        train, val: number of images per split.
        size: (H, W) of every image, each >= 16.
        seed: base seed; image i of a split is a function of (seed, split, i, size) only.
        progress: show a tqdm progress bar.
        cities: city names used for every split (letters/digits/'-' only); default
            :data:`DEFAULT_CITIES` (different cities for train and val).
        max_thing_depth: farthest depth of instances in metres (see :func:`render`); None:
            the generator's own range. Recorded in the manifest when set.

    Returns:
        :class:`SynthSummary` with the number of images written and skipped.

    Raises:
        ValueError: bad counts, size or city names, or ``out_dir`` already holds a synthetic
            dataset made with another seed, size, city list or generator version (mixing them
            would silently corrupt it; use a fresh directory).
    """
    H, W = check_size(size, "generate", minimum=MIN_SIZE)
    counts = {"train": _check_count(train, "train"), "val": _check_count(val, "val")}
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"generate: expected seed as an integer >= 0, got {seed!r}")
    seed = int(seed)
    split_cities = {
        s: _check_cities(cities) if cities is not None else DEFAULT_CITIES[s] for s in counts
    }
    _check_max_depth(max_thing_depth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "panonet.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": [H, W],
        "cities": {s: list(c) for s, c in split_cities.items()},
    }
    if max_thing_depth is not None:
        # Only when set: datasets written before the option existed keep their manifest.
        manifest["max_thing_depth"] = float(max_thing_depth)
    _check_or_write_manifest(out, manifest)

    start = time.perf_counter()
    written = skipped = 0
    bar = tqdm(total=sum(counts.values()), desc="synth", unit="img", disable=not progress)
    try:
        for split, n in counts.items():
            towns = split_cities[split]
            for i in range(n):
                city = towns[i % len(towns)]
                stem = f"{city}_{i // len(towns):06d}_{_FRAME:06d}"
                paths = _paths(out, split, city, stem)
                if all(p.is_file() for p in paths.values()):
                    skipped += 1
                else:
                    scene = render(
                        (H, W), _image_seed(seed, split, i), max_thing_depth=max_thing_depth
                    )
                    _write_scene(scene, paths)
                    written += 1
                bar.set_postfix(split=split, written=written, skipped=skipped, refresh=False)
                bar.update(1)
    finally:
        bar.close()
    return SynthSummary(out, written, skipped, time.perf_counter() - start)


def _image_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    # crc32, not hash(): Python salts str hashes per process.
    return np.random.SeedSequence([seed, zlib.crc32(split.encode()), index])


def _paths(out: Path, split: str, city: str, stem: str) -> dict[str, Path]:
    gt = out / "gtFine" / split / city
    return {
        # Write order = dict order: ground truth first, the image (the loader's index) last.
        "color": gt / f"{stem}_gtFine_color.png",
        "label_ids": gt / f"{stem}_gtFine_labelIds.png",
        "instance_ids": gt / f"{stem}_gtFine_instanceIds.png",
        "image": out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
    }


def _write_scene(scene: Scene, paths: dict[str, Path]) -> None:
    arrays = {
        "color": PALETTE[LABEL_TO_TRAIN[scene.label_ids]],
        "label_ids": scene.label_ids,
        "instance_ids": scene.instance_ids,
        "image": scene.image,
    }
    for key, path in paths.items():
        # Level 1: the noisy RGB image barely compresses anyway and encoding dominates the
        # write time; the label maps are tiny at any level.
        _write_atomic(path, _encode_png(arrays[key], compress_level=1))


def _encode_png(array: np.ndarray, compress_level: int) -> bytes:
    buf = io.BytesIO()
    # uint16 arrays become PIL mode "I;16", written as a 16-bit greyscale PNG like Cityscapes'.
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    # Readers see no file or the complete one. "x.png.tmp" never matches the loader's "*.png"
    # patterns, and a run killed mid-write leaves one that the resumed run replaces.
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data), stable_tmp=True)


def _check_or_write_manifest(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"generate: unreadable manifest {path}: {e}") from e
        # Keys of either side: an option recorded only there (e.g. max_thing_depth) differs too.
        diff = sorted(k for k in manifest.keys() | old.keys() if old.get(k) != manifest.get(k))
        if diff:
            detail = ", ".join(
                f"{k}: {old.get(k)!r} there vs {manifest.get(k)!r} now" for k in diff
            )
            raise ValueError(
                f"generate: {out} already holds a synthetic dataset generated differently "
                f"({detail}); resuming would mix the two. Use another directory."
            )
        return
    if (out / "leftImg8bit").exists() or (out / "gtFine").exists():
        # Without a manifest this may be real Cityscapes (or another tool's output): writing
        # synthetic images into it would silently mix the two.
        raise ValueError(
            f"generate: {out} already holds a dataset that this generator did not write (no "
            f"{MANIFEST}). Use another directory."
        )
    _write_atomic(path, (json.dumps(manifest, indent=2) + "\n").encode())


def _check_count(n, name: str) -> int:
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"generate: expected {name} as an integer >= 0, got {n!r}")
    return int(n)


def _check_cities(cities: Sequence[str]) -> tuple[str, ...]:
    if isinstance(cities, str):
        cities = [cities]
    names = tuple(cities)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"generate: expected distinct city names, got {list(names)}")
    for c in names:
        if not re.fullmatch(r"[A-Za-z0-9-]+", c):
            raise ValueError(
                f"generate: city name {c!r} must be letters, digits or '-' (file names are "
                "split on '_' by Cityscapes tools)"
            )
    return names


# --------------------------------------------------------------------------------------------
# rendering


def render(
    size: tuple[int, int],
    seed: int | np.random.SeedSequence | np.random.Generator,
    *,
    max_thing_depth: float | None = None,
) -> Scene:
    """Render one street scene in memory.

    Args:
        size: (H, W) in pixels, each >= 16.
        seed: int, ``SeedSequence`` or numpy ``Generator``; equal seeds give equal scenes.
        max_thing_depth: farthest depth (metres) at which individually labelled things (the
            instances) are placed; None: up to 70 m (the street's own limits). Nearer things
            are bigger: at 256x512 a person at 70 m is about 13 pixels tall, 3 at the
            network's 1/4 output. Group regions, poles and trees keep their depths. None
            renders exactly the scene the generator rendered before this option existed.

    Returns:
        :class:`Scene` with the RGB image and its labelIds / instanceIds maps.
    """
    H, W = check_size(size, "render", minimum=MIN_SIZE)
    far = _check_max_depth(max_thing_depth)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return _Renderer(H, W, rng, far=far).run()


def _check_max_depth(value: float | None) -> float:
    """``max_thing_depth`` as the renderer's cap in metres (inf for None)."""
    if value is None:
        return float("inf")
    if isinstance(value, bool) or not np.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"expected max_thing_depth > 0 metres or None, got {value!r}")
    return float(value)


@dataclass
class _Sprite:
    """An object's appearance in its own box: part map, colours and per-part labels."""

    parts: np.ndarray  # (h, w) uint8 part index, 0 = transparent
    rgb: np.ndarray  # (h, w, 3) float32
    part_label: np.ndarray  # (P,) labelId of each part index (entry 0 unused)
    group: bool = False  # thing parts get instanceId = labelId (a Cityscapes group region)


@dataclass
class _Object:
    """A sprite placed in the scene; painted in order of decreasing depth."""

    z: float  # depth in metres (painter's order key)
    order: int  # tie-break at equal depth (e.g. a rider after its bicycle)
    sprite: _Sprite
    x0: int  # top-left corner in the image
    y0: int
    shadow: tuple[float, float, float] | None = None  # contact shadow (cx, cy, rx) in pixels
    twin_key: int | None = None  # objects sharing a key are twins


class _Pen:
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


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """(h, w) float32 smooth noise, about unit variance, features ~``cell`` pixels wide."""
    gy, gx = max(2, round(h / cell) + 2), max(2, round(w / cell) + 2)
    grid = rng.standard_normal((gy, gx), dtype=np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BILINEAR))


def _colourise(
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
    low = _value_noise(rng, h, w, max(4.0, max(h, w) / 5))
    fine = rng.standard_normal((h, w), dtype=np.float32)
    rgb = base * (light * (1.0 + texture * low))[..., None] + (grain * fine)[..., None]
    return rgb.astype(np.float32)


def _jitter(rng: np.random.Generator, colour, amount: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


_CAR_PAINT = [
    (170, 20, 25), (25, 50, 120), (185, 185, 190), (25, 25, 28), (225, 225, 220),
    (30, 80, 45), (230, 180, 20), (110, 110, 115), (90, 25, 35), (70, 120, 170),
]  # fmt: skip
_TRUCK_PAINT = [(220, 220, 215), (200, 60, 40), (40, 80, 150), (150, 150, 150), (230, 200, 40)]
_BUS_PAINT = [(230, 200, 30), (190, 30, 30), (240, 240, 235), (30, 100, 170), (60, 140, 80)]
_BUILDING = [
    (190, 170, 140), (150, 80, 60), (210, 205, 195), (125, 125, 130), (200, 180, 115),
    (185, 150, 150), (95, 85, 80), (160, 170, 175),
]  # fmt: skip
_SKIN = [(240, 200, 170), (210, 160, 120), (160, 110, 75), (110, 70, 45)]
_CLOTH = [
    (30, 30, 35), (200, 30, 40), (40, 60, 140), (220, 220, 215), (60, 120, 60), (120, 90, 60),
    (240, 170, 40), (100, 100, 105), (150, 40, 120), (40, 150, 170),
]  # fmt: skip
_PANTS = [(30, 35, 60), (25, 25, 25), (90, 90, 95), (150, 130, 90), (60, 70, 110)]
_HAIR = [(30, 20, 15), (90, 60, 30), (200, 170, 100), (120, 120, 120)]


class _Renderer:
    """Builds one scene: camera and street layout, background regions, objects, then paints."""

    def __init__(
        self, H: int, W: int, rng: np.random.Generator, *, far: float = float("inf")
    ) -> None:
        self.H, self.W, self.rng = H, W, rng
        # Cap on the depth of instances (render's max_thing_depth).
        self.far = far
        r = rng
        self.f = W * r.uniform(0.9, 1.2)  # focal length, pixels
        self.y_h = H * r.uniform(0.36, 0.47)  # horizon row
        self.x_v = W * r.uniform(0.4, 0.6)  # vanishing point column
        self.h_cam = r.uniform(1.3, 1.7)  # camera height, metres
        # Lateral layout (metres, camera at X = 0), from the road outwards on each side:
        # road | optional grass verge | curb + sidewalk | facade.
        self.road = (-r.uniform(2.5, 7.0), r.uniform(2.5, 7.0))
        self.verge = tuple(r.uniform(0.8, 2.0) if r.random() < 0.35 else 0.0 for _ in range(2))
        self.walk = (r.uniform(2.0, 5.0), r.uniform(2.0, 5.0))
        self.facade = (
            self.road[0] - self.verge[0] - self.walk[0],
            self.road[1] + self.verge[1] + self.walk[1],
        )
        self.z_end = r.uniform(60.0, 160.0)  # where the street ends in a row of buildings
        # Nearest depth whose ground point is still in the image (bottom row).
        self.z_min = self.f * self.h_cam / (H - self.y_h)
        self.objects: list[_Object] = []
        self._twin_keys = 0
        self.zebra: float | None = None  # depth of a zebra crossing, set by _markings

    # --- projection ----------------------------------------------------------------------

    def p(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.f / z

    def ground(self, x: float, z: float, y: float = 0.0) -> tuple[float, float]:
        """Image (x, y) of the point at lateral x, depth z, height y (metres)."""
        p = self.f / z
        return self.x_v + x * p, self.y_h + (self.h_cam - y) * p

    # --- background ----------------------------------------------------------------------

    def background(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) float32 and labelIds (H, W) uint8 of sky, buildings and ground."""
        H, W, r = self.H, self.W, self.rng
        canvas = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(canvas)
        labels = [_ID["sky"]]
        colours = [(0.0, 0.0, 0.0)]
        textures = [(0.0, 0.0)]  # (smooth-noise amplitude, leafy-noise amplitude)
        facades: list[tuple[int, str, float, float, float]] = []  # region, kind, X, floor, column

        def region(label: str, colour, tex=(0.08, 0.0)) -> int:
            labels.append(_ID[label])
            colours.append(tuple(float(c) for c in colour))
            textures.append(tex)
            return len(labels) - 1

        z_end, p_end = self.z_end, self.p(self.z_end)
        z_near = self.f * self.h_cam / (H - self.y_h) * 0.5  # beyond the bottom edge

        # Buildings / tree lines across the far end of the street, covering the full width.
        x_left = (-self.x_v - 20) / p_end
        x_right = (W - self.x_v + 20) / p_end
        x = x_left
        while x < x_right:
            width = r.uniform(8.0, 30.0)
            height = r.uniform(6.0, 30.0)
            (xa, yb), (xb, yt) = self.ground(x, z_end), self.ground(x + width, z_end, height)
            if r.random() < 0.2:
                idx = region("vegetation", _jitter(r, (70, 110, 45), 20), (0.2, 0.35))
                self._bumpy_top(draw, idx, xa, xb, yb, yt, p_end)
            else:
                idx = region("building", _jitter(r, _BUILDING[r.integers(len(_BUILDING))]))
                draw.rectangle([xa, yt, xb, yb], fill=idx)
                facades.append((idx, "end", 0.0, r.uniform(2.8, 3.6), r.uniform(2.0, 3.5)))
            x += width

        # Ground strips: sector polygons between lines through the vanishing point.
        def strip(x0: float, x1: float, label: str, colour, tex=(0.08, 0.0)) -> int:
            idx = region(label, colour, tex)
            a, b = self.ground(x0, z_end), self.ground(x1, z_end)
            c, d = self.ground(x1, z_near), self.ground(x0, z_near)
            draw.polygon([a, b, c, d], fill=idx)
            return idx

        walk_colour = _jitter(r, (150, 145, 135), 15)
        curb_colour = np.clip(walk_colour + 25, 0, 255)
        (rl, rr), (fl, fr) = self.road, self.facade
        strip(fl - 50, fr + 50, "sidewalk", walk_colour)
        if self.verge[0]:
            strip(rl - self.verge[0], rl, "terrain", _jitter(r, (115, 135, 65), 15), (0.15, 0.3))
        if self.verge[1]:
            strip(rr, rr + self.verge[1], "terrain", _jitter(r, (115, 135, 65), 15), (0.15, 0.3))
        strip(rl - self.verge[0] - 0.25, rl - self.verge[0], "sidewalk", curb_colour)
        strip(rr + self.verge[1], rr + self.verge[1] + 0.25, "sidewalk", curb_colour)
        strip(rl, rr, "road", _jitter(r, (80, 80, 85), 10), (0.06, 0.0))
        self._markings(draw, region, z_near)

        # Side facades: consecutive buildings (or hedges / tree lines) from near to the end.
        for xf in (fl, fr):
            z = self.f * abs(xf) / (W + 20) * 0.5  # a building boundary left of the image
            while z < z_end:
                length = r.uniform(8.0, 30.0)
                z1 = min(z + length, z_end)
                height = r.uniform(8.0, 28.0)
                if r.random() < 0.18:
                    idx = region("vegetation", _jitter(r, (65, 105, 40), 20), (0.2, 0.35))
                    pts = [self.ground(xf, z), self.ground(xf, z1)]
                    zs = np.linspace(z1, z, 24)
                    tops = r.uniform(2.5, 6.0) + r.uniform(-0.6, 0.6, zs.size)
                    pts += [self.ground(xf, zz, tt) for zz, tt in zip(zs, tops, strict=True)]
                    draw.polygon(pts, fill=idx)
                else:
                    idx = region("building", _jitter(r, _BUILDING[r.integers(len(_BUILDING))]))
                    pts = [
                        self.ground(xf, z),
                        self.ground(xf, z1),
                        self.ground(xf, z1, height),
                        self.ground(xf, z, height),
                    ]
                    draw.polygon(pts, fill=idx)
                    facades.append((idx, "side", xf, r.uniform(2.8, 3.6), r.uniform(2.0, 3.5)))
                z = z1

        reg = np.asarray(canvas)
        lab = np.asarray(labels, np.uint8)[reg]
        col = np.asarray(colours, np.float32)
        tex = np.asarray(textures, np.float32)
        low = _value_noise(r, H, W, max(8.0, W / 24))
        leafy = _value_noise(r, H, W, max(2.0, W / 256))
        fine = r.standard_normal((H, W), dtype=np.float32)
        amp = tex[reg]
        rgb = col[reg] * (1.0 + amp[..., 0:1] * low[..., None] + amp[..., 1:2] * leafy[..., None])
        rgb += 3.0 * fine[..., None]
        self._windows(rgb, reg, facades)
        self._sky(rgb, reg == 0, low)
        return rgb, lab

    def _bumpy_top(self, draw, idx, xa, xb, yb, yt, p) -> None:
        xs = np.linspace(xa, xb, 16)
        tops = yt + self.rng.uniform(-1.5, 1.5, xs.size) * p
        draw.polygon([(xa, yb), (xb, yb), *zip(xs[::-1], tops[::-1], strict=True)], fill=idx)

    def _markings(self, draw, region, z_near: float) -> None:
        """Dashed lane lines, edge lines and sometimes a zebra crossing (road label, white)."""
        r = self.rng
        (rl, rr), white = self.road, _jitter(r, (215, 215, 205), 10)
        idx = region("road", white, (0.05, 0.0))

        def quad(x0, x1, z0, z1):
            draw.polygon(
                [
                    self.ground(x0, z0),
                    self.ground(x1, z0),
                    self.ground(x1, z1),
                    self.ground(x0, z1),
                ],
                fill=idx,
            )

        for x in (rl + 0.3, rr - 0.3):  # solid edge lines
            quad(x - 0.07, x + 0.07, z_near, self.z_end)
        lanes = max(1, round((rr - rl) / 3.2))
        phase = r.uniform(0, 12)
        for k in range(1, lanes):
            x = rl + k * (rr - rl) / lanes
            z = z_near - phase
            while z < self.z_end:
                if z + 4.0 > z_near:  # depths <= 0 would project above the horizon
                    quad(x - 0.07, x + 0.07, max(z, z_near), min(z + 4.0, self.z_end))
                z += 12.0
        if r.random() < 0.3:
            z0 = r.uniform(self.z_min * 1.5, min(35.0, self.z_end - 5))
            x = rl + 0.3
            while x < rr - 0.3:
                quad(x, min(x + 0.5, rr - 0.3), z0, z0 + 4.0)
                x += 1.0
            self.zebra = z0

    def _windows(self, rgb: np.ndarray, reg: np.ndarray, facades) -> None:
        """Perspective-correct window grids: a pixel is glass when its facade coordinates
        (depth or lateral position, and height, in metres) fall inside a window cell."""
        r = self.rng
        for idx, kind, xf, floor, column in facades:
            ys, xs = np.nonzero(reg == idx)
            if ys.size == 0:
                continue
            y = ys.astype(np.float32)
            x = xs.astype(np.float32)
            if kind == "side":
                p = np.maximum((x - self.x_v) / xf, 1e-3)  # pixels per metre at that column
                along = self.f / p  # depth Z
            else:
                p = np.float32(self.p(self.z_end))
                along = (x - self.x_v) / p  # lateral X
            height = self.h_cam - (y - self.y_h) / p
            u = np.mod(along / column, 1.0)
            v = np.mod(height / floor, 1.0)
            glass = (u > 0.25) & (u < 0.75) & (v > 0.3) & (v < 0.8) & (height > 1.0)
            tint = _jitter(r, (60, 75, 95), 15)
            rgb[ys[glass], xs[glass]] = tint * (0.8 + 0.4 * v[glass, None])

    def _sky(self, rgb: np.ndarray, mask: np.ndarray, low: np.ndarray) -> None:
        r = self.rng
        if r.random() < 0.3:  # overcast
            top, bottom = _jitter(r, (170, 175, 185), 15), _jitter(r, (215, 215, 220), 10)
        else:
            top, bottom = _jitter(r, (60, 120, 200), 20), _jitter(r, (190, 210, 230), 15)
        t = np.clip(np.arange(self.H, dtype=np.float32) / max(self.y_h, 1.0), 0, 1)[:, None, None]
        sky = top * (1 - t) + bottom * t + 18.0 * np.maximum(low, 0)[..., None]
        rgb[mask] = np.broadcast_to(sky, rgb.shape)[mask]

    # --- objects -------------------------------------------------------------------------

    def place(
        self,
        sprite: _Sprite,
        x_m: float,
        z: float,
        bottom_m: float = 0.0,
        *,
        anchor: str = "centre",
        order: int = 0,
        shadow: bool = True,
        twin_key: int | None = None,
    ) -> _Object | None:
        """Put a sprite whose bottom edge is ``bottom_m`` above the ground at (x_m, z)."""
        h, w = sprite.parts.shape
        gx, gy = self.ground(x_m, z, bottom_m)
        x0 = round(gx - w / 2) if anchor == "centre" else round(gx)
        y0 = round(gy) - h
        if x0 >= self.W or y0 >= self.H or x0 + w <= 0 or y0 + h <= 0:
            return None
        sh = None
        if shadow:
            p = self.p(z)
            _, ground_y = self.ground(x_m, z)
            sh = (x0 + w / 2, ground_y, w * 0.55, max(1.0, 0.35 * p))
        obj = _Object(z, order, sprite, x0, y0, sh, twin_key)
        self.objects.append(obj)
        return obj

    def sprite_height(self, metres: float, z: float) -> int:
        return int(round(metres * self.p(z)))

    def depth(self, lo: float | None = None, hi: float = 70.0) -> float:
        """A depth in [lo, hi], log-uniform: near (big) objects as often as far ones."""
        lo = self.z_min * 0.95 if lo is None else lo
        hi = max(min(hi, self.z_end - 3.0), lo * 1.01)
        return float(np.exp(self.rng.uniform(np.log(lo), np.log(hi))))

    def thing_depth(self, lo: float | None = None, hi: float = 70.0) -> float:
        """:meth:`depth` for an instance: ``hi`` capped at ``far`` (the same random draw, so
        an uncapped scene is unchanged)."""
        return self.depth(lo, min(hi, self.far))

    def objects_pass(self) -> None:
        """Choose and place every object of the scene (sprites are rendered here)."""
        r = self.rng
        (rl, rr), (fl, fr) = self.road, self.facade
        walk = ((fl + 0.4, rl - self.verge[0] - 0.4), (rr + self.verge[1] + 0.4, fr - 0.4))
        lanes = max(1, round((rr - rl) / 3.2))
        lane_x = [rl + (k + 0.5) * (rr - rl) / lanes for k in range(lanes)]

        # Traffic: vehicles seen from behind (or the front) in the lanes.
        for _ in range(r.integers(1, 6)):
            z = self.thing_depth(self.z_min * 1.3)
            kind = r.choice(["car"] * 8 + ["truck", "bus"])
            x = r.choice(lane_x) + r.uniform(-0.4, 0.4)
            self.place(self.vehicle(kind, "rear", z), x, z)

        # Parked car chains along the curbs: neighbours overlap in the image.
        for side in (0, 1):
            if r.random() < 0.6:
                x = rl + 1.1 if side == 0 else rr - 1.1
                z = self.thing_depth(self.z_min * 1.2, 30.0)
                for _ in range(r.integers(2, 7)):
                    self.place(self.vehicle("car", "rear", z), x + r.uniform(-0.15, 0.15), z)
                    z += r.uniform(4.6, 6.5)
                    if z > min(self.z_end - 3, self.far):
                        break

        # A vehicle crossing, seen from the side.
        if r.random() < 0.35:
            z = self.thing_depth(self.z_min * 2.0, 40.0)
            kind = r.choice(["car"] * 6 + ["truck", "bus"])
            self.place(self.vehicle(kind, "side", z), r.uniform(rl, rr), z)

        # Pedestrians on the sidewalks, some in small overlapping groups.
        for _ in range(r.integers(2, 9)):
            lo, hi = walk[r.integers(2)]
            z = self.thing_depth()
            x = r.uniform(lo, hi)
            for k in range(r.choice([1, 1, 1, 2, 3])):
                dz = r.uniform(-0.6, 0.6) if k else 0.0
                self.place(self.person(self.sprite_height(r.uniform(1.55, 1.95), z + dz)),
                           x + k * r.uniform(0.35, 0.6), z + dz)  # fmt: skip
        if self.zebra is not None:
            for _ in range(r.integers(1, 5)):
                z = self.zebra + r.uniform(0.5, 3.5)
                if z > self.far:
                    continue
                h = self.sprite_height(r.uniform(1.55, 1.95), z)
                self.place(self.person(h), r.uniform(rl, rr), z)

        # Cyclists and motorcyclists (two instances: the vehicle and its rider, overlapping).
        for kind, prob in (("bicycle", 0.5), ("motorcycle", 0.3)):
            if r.random() < prob:
                for _ in range(r.integers(1, 3)):
                    z = self.thing_depth(self.z_min * 1.2, 40.0)
                    x = r.uniform(rl + 0.5, rr - 0.5)
                    self.ridden(kind, x, z, facing=r.choice([-1, 1]))

        # Parked two-wheelers on the sidewalk.
        for _ in range(r.integers(0, 3)):
            lo, hi = walk[r.integers(2)]
            z = self.thing_depth(hi=40.0)
            kind = "bicycle" if r.random() < 0.7 else "motorcycle"
            self.place(self.two_wheeler(kind, z, facing=r.choice([-1, 1])), r.uniform(lo, hi), z)

        # Twins: the same sprite twice at one depth, side by side, often touching.
        for _ in range(r.integers(1, 3)):
            self.twins(lane_x, walk)

        # Group regions: a class's area without instance numbers (instanceIds = labelId).
        if r.random() < 0.4:  # a distant crowd
            lo, hi = walk[r.integers(2)]
            z0, x0 = self.depth(25.0, 70.0), r.uniform(lo, hi)
            for _ in range(r.integers(4, 9)):
                z = z0 + r.uniform(-1.0, 1.0)
                sprite = self.person(self.sprite_height(r.uniform(1.55, 1.95), z), group=True)
                self.place(sprite, x0 + r.uniform(-1.2, 1.2), z, shadow=False)
        if r.random() < 0.3:  # a far row of parked cars
            x = rl + 1.1 if r.random() < 0.5 else rr - 1.1
            z = self.depth(40.0, 90.0)
            for _ in range(r.integers(3, 6)):
                self.place(self.vehicle("car", "rear", z, group=True), x, z, shadow=False)
                z += r.uniform(3.5, 5.0)
        if r.random() < 0.2:  # a bicycle rack
            lo, hi = walk[r.integers(2)]
            z, x = self.depth(hi=30.0), r.uniform(lo, hi)
            for k in range(r.integers(3, 6)):
                sprite = self.two_wheeler("bicycle", z + 0.4 * k, facing=1, group=True)
                self.place(sprite, x, z + 0.4 * k, shadow=False)

        # Street furniture and trees on the sidewalks (stuff, but painted in depth order too).
        for _ in range(r.integers(2, 7)):
            side = r.integers(2)
            x = rl - self.verge[0] - 0.5 if side == 0 else rr + self.verge[1] + 0.5
            z = self.depth(hi=60.0)
            self.place(self.pole(z), x, z, shadow=False)
        for _ in range(r.integers(0, 7)):
            lo, hi = walk[r.integers(2)]
            z = self.depth(hi=60.0)
            self.place(self.tree(z), r.uniform(lo, hi), z, shadow=False)

    def twins(self, lane_x, walk) -> None:
        """Two copies of one sprite at one depth, side by side (touching when gap = 0), placed
        where both are in view: a pair the embedding can only tell apart by position."""
        r = self.rng
        kind = r.choice(["car", "car", "person", "person", "bicycle", "truck"])
        key = self._twin_keys
        self._twin_keys += 1
        gap = 0.0 if r.random() < 0.5 else r.uniform(0.2, 1.5)
        z = self.thing_depth(self.z_min * 1.5, 30.0)
        p = self.p(z)
        if kind == "person":
            sprite = self.person(self.sprite_height(r.uniform(1.6, 1.9), z))
            gap *= 0.5
        elif kind == "bicycle":
            sprite = self.two_wheeler("bicycle", z, facing=1)
        else:
            sprite = self.vehicle(kind, "rear", z)
        width = sprite.parts.shape[1] / p  # metres
        pair = 2 * width + gap
        # Lateral range in view at this depth, and where this kind of object belongs.
        view = ((0 - self.x_v) / p, (self.W - self.x_v) / p)
        if kind in ("person", "bicycle"):
            home = walk[r.integers(2)]
        else:
            lane = r.choice(lane_x)
            home = (lane - width, lane + width + gap)
        lo, hi = max(home[0], view[0]), min(home[1], view[1]) - pair
        if lo > hi:  # its usual place is out of view at this depth: anywhere in view
            lo, hi = view[0], max(view[0], view[1] - pair)
        left = r.uniform(lo, hi)
        # Same depth, same sprite: identical pixels, only the position differs.
        self.place(sprite, left + width / 2, z, twin_key=key)
        self.place(sprite, left + width * 1.5 + gap, z, twin_key=key)

    # --- sprites -------------------------------------------------------------------------

    def _thing(self, pen: _Pen, colours, label: str, rng, group: bool, **look) -> _Sprite:
        parts = pen.parts()
        table = np.zeros(len(colours), np.uint8)
        table[1:] = _ID[label]
        rgb = _colourise(parts, np.asarray(colours, np.float32), rng, **look)
        return _Sprite(parts, rgb, table, group)

    def vehicle(self, kind: str, view: str, z: float, *, group: bool = False) -> _Sprite:
        r = self.rng
        height_m = {"car": r.uniform(1.4, 1.6), "truck": r.uniform(3.0, 3.6), "bus": 3.1}[kind]
        h = max(2, self.sprite_height(height_m, z))
        paint = {"car": _CAR_PAINT, "truck": _TRUCK_PAINT, "bus": _BUS_PAINT}[kind]
        body = _jitter(r, paint[r.integers(len(paint))], 8)
        glass = _jitter(r, (45, 55, 70), 10)
        tyre, dark = (25, 25, 25), body * 0.45
        light = (200, 30, 30) if view == "rear" else (230, 230, 200)
        colours = [(0, 0, 0), body, glass, tyre, light, dark]
        BODY, GLASS, TYRE, LIGHT, DARK = 1, 2, 3, 4, 5
        if view == "rear":
            aspect = {"car": 1.2, "truck": 0.8, "bus": 0.82}[kind]
            pen, a = _Pen(h, aspect), aspect
            if kind == "car":
                pen.rect(0.05 * a, 0.8, 0.22 * a, 1.0, TYRE)
                pen.rect(0.78 * a, 0.8, 0.95 * a, 1.0, TYRE)
                pen.poly(
                    [(0.12 * a, 0.42), (0.22 * a, 0.05), (0.78 * a, 0.05), (0.88 * a, 0.42)], BODY
                )
                pen.poly([(0.2 * a, 0.4), (0.27 * a, 0.1), (0.73 * a, 0.1), (0.8 * a, 0.4)], GLASS)
                pen.rect(0.0, 0.4, a, 0.88, BODY)
            else:
                pen.rect(0.06 * a, 0.86, 0.26 * a, 1.0, TYRE)
                pen.rect(0.74 * a, 0.86, 0.94 * a, 1.0, TYRE)
                pen.rect(0.0, 0.0, a, 0.9, BODY)
                if kind == "bus":
                    pen.rect(0.08 * a, 0.12, 0.92 * a, 0.45, GLASS)
            pen.rect(0.03 * a, 0.55, 0.18 * a, 0.64, LIGHT)
            pen.rect(0.82 * a, 0.55, 0.97 * a, 0.64, LIGHT)
            pen.rect(0.02 * a, 0.76, 0.98 * a, 0.86, DARK)
        else:
            aspect = {"car": 2.8, "truck": 2.6, "bus": 3.8}[kind]
            pen, a = _Pen(h, aspect), aspect
            wheel_r = {"car": 0.2, "truck": 0.16, "bus": 0.15}[kind]
            if kind == "car":
                pen.poly(
                    [(0.25 * a, 0.38), (0.36 * a, 0.03), (0.7 * a, 0.03), (0.83 * a, 0.38)], BODY
                )
                pen.poly(
                    [(0.3 * a, 0.36), (0.38 * a, 0.08), (0.52 * a, 0.08), (0.52 * a, 0.36)], GLASS
                )
                pen.poly(
                    [(0.55 * a, 0.36), (0.55 * a, 0.08), (0.68 * a, 0.08), (0.78 * a, 0.36)], GLASS
                )
                pen.poly(
                    [
                        (0.0, 0.45),
                        (0.08 * a, 0.36),
                        (0.95 * a, 0.36),
                        (a, 0.5),
                        (a, 0.82),
                        (0.0, 0.82),
                    ],
                    BODY,
                )
            elif kind == "truck":
                pen.rect(0.0, 0.18, 0.24 * a, 0.86, BODY)
                pen.rect(0.03 * a, 0.24, 0.2 * a, 0.45, GLASS)
                pen.rect(0.26 * a, 0.0, a, 0.84, DARK if r.random() < 0.3 else BODY)
            else:
                pen.rect(0.0, 0.04, a, 0.88, BODY)
                for k in range(8):
                    pen.rect((0.03 + 0.12 * k) * a, 0.18, (0.13 + 0.12 * k) * a, 0.48, GLASS)
            for cx in (0.18 * a, 0.82 * a):
                pen.ellipse(cx, 1.0 - wheel_r, wheel_r, wheel_r, TYRE)
                pen.ellipse(cx, 1.0 - wheel_r, wheel_r * 0.45, wheel_r * 0.45, DARK)
            if r.random() < 0.5:
                pen.img = pen.img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._thing(pen, colours, kind, r, group)

    def person(self, h: int, *, group: bool = False) -> _Sprite:
        r = self.rng
        h = max(3, h)
        pen = _Pen(h, 0.42)
        cx, s = 0.21, r.uniform(0.0, 0.09)  # centre, stride
        swing = r.uniform(-0.04, 0.04)
        skin = _jitter(r, _SKIN[r.integers(len(_SKIN))], 8)
        colours = [
            (0, 0, 0), skin, _jitter(r, _HAIR[r.integers(len(_HAIR))], 8),
            _jitter(r, _CLOTH[r.integers(len(_CLOTH))], 15),
            _jitter(r, _PANTS[r.integers(len(_PANTS))], 10), (30, 28, 25),
        ]  # fmt: skip
        SKIN, HAIR, SHIRT, PANTS, SHOES = 1, 2, 3, 4, 5
        pen.poly(
            [(cx - 0.07, 0.52), (cx - 0.005, 0.52), (cx - s + 0.02, 0.96), (cx - s - 0.045, 0.96)],
            PANTS,
        )
        pen.poly(
            [(cx + 0.005, 0.52), (cx + 0.07, 0.52), (cx + s + 0.045, 0.96), (cx + s - 0.02, 0.96)],
            PANTS,
        )
        pen.rect(cx - s - 0.05, 0.95, cx - s + 0.025, 1.0, SHOES)
        pen.rect(cx + s - 0.025, 0.95, cx + s + 0.05, 1.0, SHOES)
        coat = r.uniform(0.55, 0.68)
        pen.poly([(cx - 0.1, 0.18), (cx + 0.1, 0.18), (cx + 0.09, coat), (cx - 0.09, coat)], SHIRT)
        for side in (-1, 1):
            hand = (cx + side * 0.115 + swing * side, 0.5)
            pen.line([(cx + side * 0.095, 0.2), hand], 0.045, SHIRT)
            pen.ellipse(*hand, 0.022, 0.025, SKIN)
        pen.rect(cx - 0.02, 0.12, cx + 0.02, 0.19, SKIN)
        pen.ellipse(cx, 0.07, 0.058, 0.06, HAIR)
        pen.ellipse(cx, 0.08, 0.052, 0.055, SKIN)
        if r.random() < 0.5:
            pen.img = pen.img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._thing(pen, colours, "person", r, group, texture=0.1)

    def two_wheeler(self, kind: str, z: float, *, facing: int, group: bool = False) -> _Sprite:
        r = self.rng
        height_m = 1.05 if kind == "bicycle" else 1.15
        h = max(3, self.sprite_height(height_m, z))
        frame = _jitter(r, _CLOTH[r.integers(len(_CLOTH))], 20)
        colours = [(0, 0, 0), frame, (28, 28, 28), (150, 150, 155), (20, 20, 22)]
        FRAME, TYRE, METAL, SEAT = 1, 2, 3, 4
        if kind == "bicycle":
            pen = _Pen(h, 1.75)
            for cx in (0.35, 1.4):
                pen.ellipse(cx, 0.66, 0.33, 0.33, TYRE, width=0.06)
                pen.line([(cx, 0.66), (cx, 0.4)], 0.02, METAL)
            hub, bb, seat, head = (0.35, 0.66), (0.8, 0.68), (0.66, 0.26), (1.2, 0.24)
            pen.line([hub, bb, seat, hub], 0.05, FRAME)
            pen.line([seat, head, bb], 0.05, FRAME)
            pen.line([head, (1.4, 0.66)], 0.05, FRAME)
            pen.line([head, (1.17, 0.08), (1.27, 0.1)], 0.04, METAL)
            pen.rect(0.56, 0.17, 0.76, 0.23, SEAT)
        else:
            pen = _Pen(h, 1.9)
            for cx in (0.35, 1.55):
                pen.ellipse(cx, 0.72, 0.28, 0.28, TYRE)
                pen.ellipse(cx, 0.72, 0.13, 0.13, METAL)
            pen.poly([(0.5, 0.7), (0.6, 0.38), (1.2, 0.3), (1.38, 0.5), (1.2, 0.72)], FRAME)
            pen.rect(0.45, 0.3, 0.95, 0.4, SEAT)
            pen.line([(1.3, 0.12), (1.35, 0.45), (1.55, 0.72)], 0.05, METAL)
            pen.ellipse(1.45, 0.36, 0.06, 0.06, METAL)
        if facing < 0:
            pen.img = pen.img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._thing(pen, colours, kind, r, group, rounding=0.0)

    def rider(self, h: int, *, facing: int) -> _Sprite:
        r = self.rng
        h = max(3, h)
        pen = _Pen(h, 0.5)
        skin = _jitter(r, _SKIN[r.integers(len(_SKIN))], 8)
        colours = [
            (0, 0, 0), skin, _jitter(r, _CLOTH[r.integers(len(_CLOTH))], 15),
            _jitter(r, _PANTS[r.integers(len(_PANTS))], 10),
            _jitter(r, (40, 40, 45) if r.random() < 0.5 else (220, 220, 225), 10),
        ]  # fmt: skip
        SKIN, SHIRT, PANTS, HELMET = 1, 2, 3, 4
        pen.line([(0.2, 0.5), (0.33, 0.68), (0.28, 0.97)], 0.08, PANTS)
        pen.line([(0.18, 0.5), (0.26, 0.72), (0.15, 0.97)], 0.08, PANTS)
        pen.poly([(0.24, 0.15), (0.38, 0.15), (0.27, 0.53), (0.11, 0.53)], SHIRT)
        pen.line([(0.34, 0.18), (0.47, 0.33)], 0.05, SHIRT)
        pen.ellipse(0.47, 0.33, 0.025, 0.025, SKIN)
        pen.ellipse(0.35, 0.09, 0.055, 0.058, SKIN)
        pen.ellipse(0.35, 0.065, 0.062, 0.045, HELMET)
        if facing < 0:
            pen.img = pen.img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._thing(pen, colours, "rider", r, False, texture=0.1)

    def ridden(self, kind: str, x: float, z: float, *, facing: int) -> None:
        """A bicycle or motorcycle and its rider: two things that overlap (rider in front)."""
        vehicle = self.two_wheeler(kind, z, facing=facing)
        obj = self.place(vehicle, x, z, order=0)
        if obj is None:
            return
        rider_m = 1.5
        rider = self.rider(self.sprite_height(rider_m, z), facing=facing)
        p = self.p(z)
        # Put the rider's hip (0.18 of its height from the left / back) above the saddle.
        bike_w_m = vehicle.parts.shape[1] / p
        saddle = (0.66 if kind == "bicycle" else 0.7) * vehicle.parts.shape[0] / p
        hip = 0.18 * rider.parts.shape[0] / p
        left = x - bike_w_m / 2
        if facing > 0:
            rider_left = left + saddle - hip
        else:
            rider_w_m = rider.parts.shape[1] / p
            rider_left = left + bike_w_m - saddle + hip - rider_w_m
        bottom = 0.2 if kind == "bicycle" else 0.35
        self.place(rider, rider_left, z, bottom, anchor="left", order=1, shadow=False)

    def pole(self, z: float) -> _Sprite:
        r = self.rng
        height_m = r.uniform(3.5, 6.5)
        h = max(3, self.sprite_height(height_m, z))
        aspect = 0.7 / height_m  # sprite wide enough for a sign
        pen = _Pen(h, aspect)
        cx = aspect / 2
        pw = max(0.5 / h, 0.09 / height_m)  # pole half-width, at least half a pixel
        kind = r.choice(["sign", "light", "plain"])
        colours = [(0, 0, 0), _jitter(r, (110, 110, 115), 15), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
        labels = [0, _ID["pole"], 0, 0, 0]
        pen.rect(cx - pw, 0.0, cx + pw, 1.0, 1)
        if kind == "sign":
            face = [(200, 30, 30), (30, 70, 170), (235, 235, 235), (225, 190, 30)][r.integers(4)]
            colours[2], colours[3] = _jitter(r, face, 10), (240, 240, 240)
            labels[2] = labels[3] = _ID["traffic sign"]
            sr = 0.3 / height_m
            shape = r.integers(3)
            if shape == 0:
                pen.ellipse(cx, sr * 1.2, sr, sr, 3)
                pen.ellipse(cx, sr * 1.2, sr * 0.75, sr * 0.75, 2)
            elif shape == 1:
                pen.rect(cx - sr, 0.02, cx + sr, 0.02 + 2 * sr, 2)
            else:
                pen.poly([(cx - sr, 2.2 * sr), (cx + sr, 2.2 * sr), (cx, 0.02)], 3)
                pen.poly(
                    [(cx - 0.6 * sr, 1.95 * sr), (cx + 0.6 * sr, 1.95 * sr), (cx, 0.5 * sr)], 2
                )
        elif kind == "light":
            colours[2], colours[3] = (
                (35, 35, 38),
                [(220, 40, 30), (240, 180, 30), (40, 200, 80)][r.integers(3)],
            )
            labels[2] = labels[3] = _ID["traffic light"]
            bw, bh = 0.16 / height_m, 0.85 / height_m
            pen.rect(cx - bw, 0.0, cx + bw, bh, 2)
            lamp = r.integers(3)
            pen.ellipse(cx, (0.17 + 0.27 * lamp) * bh + 0.03 * bh, bw * 0.6, bw * 0.6, 3)
        parts = pen.parts()
        rgb = _colourise(parts, np.asarray(colours, np.float32), r, rounding=0.3)
        return _Sprite(parts, rgb, np.asarray(labels, np.uint8))

    def tree(self, z: float) -> _Sprite:
        r = self.rng
        height_m = r.uniform(4.0, 9.0)
        h = max(3, self.sprite_height(height_m, z))
        aspect = r.uniform(0.45, 0.8)
        pen = _Pen(h, aspect)
        cx = aspect / 2
        trunk = r.uniform(0.015, 0.03)
        pen.rect(cx - trunk, 0.4, cx + trunk, 1.0, 1)
        for _ in range(r.integers(5, 10)):
            rx = r.uniform(0.12, 0.22)
            pen.ellipse(cx + r.uniform(-0.6, 0.6) * (cx - rx), r.uniform(0.15, 0.45),
                        rx, rx * r.uniform(0.8, 1.1), 2 + r.integers(2))  # fmt: skip
        green = _jitter(r, (65, 110, 40), 20)
        colours = [(0, 0, 0), _jitter(r, (85, 65, 45), 10), green, green * 0.75]
        parts = pen.parts()
        rgb = _colourise(parts, np.asarray(colours, np.float32), r, texture=0.35, grain=8.0)
        return _Sprite(parts, rgb, np.full(4, _ID["vegetation"], np.uint8))

    # --- painting ------------------------------------------------------------------------

    def run(self) -> Scene:
        rgb, lab = self.background()
        self.objects_pass()
        inst = lab.astype(np.int32)
        counter: dict[int, int] = {}
        twin_ids: dict[int, list[tuple[int, int, int]]] = {}
        # Painter's algorithm: far to near; at equal depth by `order`, then placement order.
        order = sorted(
            range(len(self.objects)), key=lambda i: (-self.objects[i].z, self.objects[i].order, i)
        )
        # Contact shadows lie on the ground, under every object: paint them all first, so no
        # shadow darkens another object (which would also break the twins' identical pixels).
        for obj in self.objects:
            if obj.shadow is not None:
                self._shadow(rgb, *obj.shadow)
        for i in order:
            obj = self.objects[i]
            ids = self._paste(rgb, lab, inst, obj, counter)
            if obj.twin_key is not None and ids is not None:
                twin_ids.setdefault(obj.twin_key, []).append((ids, obj.y0, obj.x0))
        if self.rng.random() < 0.5:
            self._ego_vehicle(rgb, lab, inst)

        # Colour grade of the whole frame (exposure and white balance); same for twins.
        grade = self.rng.uniform(0.85, 1.1) * self.rng.uniform(0.95, 1.05, 3).astype(np.float32)
        image = np.clip(rgb * grade + 0.5, 0, 255).astype(np.uint8)
        inst, remap = _renumber(inst)
        twins = []
        for members in twin_ids.values():
            if len(members) == 2:
                (a, ya, xa), (b, yb, xb) = members
                a, b = remap.get(a), remap.get(b)
                if a is not None and b is not None:
                    twins.append((a, b, yb - ya, xb - xa))
        return Scene(image, lab, inst.astype(np.uint16), twins)

    def _paste(self, rgb, lab, inst, obj: _Object, counter: dict[int, int]) -> int | None:
        """Paint one sprite; returns the raw instance id it got (None: not a single thing)."""
        sp = obj.sprite
        h, w = sp.parts.shape
        ya, yb = max(obj.y0, 0), min(obj.y0 + h, self.H)
        xa, xb = max(obj.x0, 0), min(obj.x0 + w, self.W)
        if ya >= yb or xa >= xb:
            return None
        parts = sp.parts[ya - obj.y0 : yb - obj.y0, xa - obj.x0 : xb - obj.x0]
        mask = parts > 0
        if not mask.any():
            return None
        part_label = sp.part_label.astype(np.int32)
        part_inst = part_label.copy()
        thing_id = None
        things = [lid for lid in set(part_label[1:].tolist()) if lid in _THING_LABEL_IDS]
        if things and not sp.group:
            (lid,) = things  # one thing per sprite
            k = counter.get(lid, 0)
            counter[lid] = k + 1
            thing_id = lid * 1000 + k
            part_inst[part_label == lid] = thing_id
        region = (slice(ya, yb), slice(xa, xb))
        rgb[region][mask] = sp.rgb[ya - obj.y0 : yb - obj.y0, xa - obj.x0 : xb - obj.x0][mask]
        lab[region][mask] = part_label[parts[mask]]
        inst[region][mask] = part_inst[parts[mask]]
        return thing_id

    def _shadow(self, rgb, cx: float, cy: float, rx: float, ry: float) -> None:
        ya, yb = int(max(cy - ry, 0)), int(min(cy + ry + 1, self.H))
        xa, xb = int(max(cx - rx, 0)), int(min(cx + rx + 1, self.W))
        if ya >= yb or xa >= xb:
            return
        yy = (np.arange(ya, yb, dtype=np.float32)[:, None] - cy) / ry
        xx = (np.arange(xa, xb, dtype=np.float32)[None, :] - cx) / rx
        d = np.clip(1.0 - (xx * xx + yy * yy), 0.0, 1.0)
        rgb[ya:yb, xa:xb] *= (1.0 - 0.45 * np.sqrt(d))[..., None]

    def _ego_vehicle(self, rgb, lab, inst) -> None:
        """The camera car's bonnet along the bottom edge (labelId 1, void in training)."""
        H, W, r = self.H, self.W, self.rng
        e = H * r.uniform(0.04, 0.1)
        a = W * r.uniform(0.7, 1.0)
        yy = np.arange(H, dtype=np.float32)[:, None]
        xx = np.arange(W, dtype=np.float32)[None, :]
        top = H - e * np.sqrt(np.clip(1.0 - ((xx - W / 2) / a) ** 2, 0.0, 1.0))
        mask = yy >= top
        if not mask.any():
            return
        paint = _jitter(r, (35, 35, 40), 10)
        depth = np.clip((yy - top) / max(e, 1.0), 0, 1)
        colour = paint * (1.4 - 0.6 * depth)[..., None]
        rgb[mask] = np.broadcast_to(colour, rgb.shape)[mask]
        lab[mask] = _ID["ego vehicle"]
        inst[mask] = _ID["ego vehicle"]


def _renumber(inst: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber visible instances ``labelId * 1000 + k`` to consecutive k = 0, 1, ... per class
    (in painting order); instances hidden entirely by nearer objects leave no gap."""
    ids = np.unique(inst[inst >= 1000])
    if ids.size == 0:
        return inst, {}
    cls = ids // 1000
    first = np.searchsorted(cls, cls)  # index of each class's first id (ids are sorted)
    new = cls * 1000 + (np.arange(ids.size) - first)
    lut_in = inst >= 1000
    out = inst.copy()
    out[lut_in] = new[np.searchsorted(ids, inst[lut_in])]
    return out, dict(zip(ids.tolist(), new.tolist(), strict=True))
