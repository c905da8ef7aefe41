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
  by side at the same depth, sometimes touching (optionally rows of them, ``twin_row``).
  Appearance alone cannot separate them, only position can (PanoNet Fig. 5: the reason for the
  coordinate channels);
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from panonet._atomic import write_atomic
from panonet.data.labels import LABEL_TO_TRAIN, PALETTE
from panonet.data.synthetic_scene import Renderer, Scene
from panonet.data.transforms import check_size

__all__ = [
    "DEFAULT_CITIES",
    "MANIFEST",
    "Scene",
    "SynthSummary",
    "generate",
    "render",
    "scene_of",
]

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
    twin_row: int | None = None,
    twin_groups: int | None = None,
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
        twin_row: twins in rows of 2 to ``twin_row`` identical copies (see :func:`render`);
            None: pairs. Recorded in the manifest when set.
        twin_groups: 1 to ``twin_groups`` groups of twins per image (see :func:`render`);
            None: 1 or 2. Recorded in the manifest when set.

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
    _check_twins(twin_row, twin_groups)
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
    for key, value in (("twin_row", twin_row), ("twin_groups", twin_groups)):
        if value is not None:
            manifest[key] = int(value)
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
                        (H, W),
                        _image_seed(seed, split, i),
                        max_thing_depth=max_thing_depth,
                        twin_row=twin_row,
                        twin_groups=twin_groups,
                    )
                    _write_scene(scene, paths)
                    written += 1
                bar.set_postfix(split=split, written=written, skipped=skipped, refresh=False)
                bar.update(1)
    finally:
        bar.close()
    return SynthSummary(out, written, skipped, time.perf_counter() - start)


def scene_of(image_file: str | os.PathLike) -> Scene:
    """The scene behind one image that :func:`generate` wrote, rendered again in memory (e.g.
    for its :attr:`Scene.twins`, which the files do not record).

    Args:
        image_file: ``<root>/leftImg8bit/<split>/<city>/<city>_<seq>_000019_leftImg8bit.png``
            of a dataset written by :func:`generate` (its manifest is read from ``<root>``).

    Raises:
        ValueError: the file is not named as :func:`generate` names images, or ``<root>`` has
            no manifest of this generator's version, or the city is not one of the split's.
    """
    path = Path(image_file)
    m = re.fullmatch(rf"([A-Za-z0-9-]+)_(\d{{6}})_{_FRAME:06d}_leftImg8bit\.png", path.name)
    if m is None or len(path.parents) < 4 or path.parents[2].name != "leftImg8bit":
        raise ValueError(
            "scene_of: expected <root>/leftImg8bit/<split>/<city>/<city>_<seq>_"
            f"{_FRAME:06d}_leftImg8bit.png, got {str(path)!r}"
        )
    city, seq = m.group(1), int(m.group(2))
    split, root = path.parents[1].name, path.parents[3]
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"scene_of: {root} has no readable {MANIFEST} ({e})") from e
    if manifest.get("version") != GENERATOR_VERSION:
        raise ValueError(
            f"scene_of: {root} was written by generator version {manifest.get('version')!r}, "
            f"this is version {GENERATOR_VERSION}: its scenes cannot be rendered again"
        )
    towns = manifest["cities"].get(split, [])
    if city not in towns:
        raise ValueError(f"scene_of: city {city!r} is not one of the {split} cities {towns}")
    index = seq * len(towns) + towns.index(city)
    return render(
        tuple(manifest["size"]),
        _image_seed(int(manifest["seed"]), split, index),
        max_thing_depth=manifest.get("max_thing_depth"),
        twin_row=manifest.get("twin_row"),
        twin_groups=manifest.get("twin_groups"),
    )


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
    twin_row: int | None = None,
    twin_groups: int | None = None,
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
        twin_row: each group of twins is a row of 2 to ``twin_row`` copies of one sprite at
            one depth (e.g. identical parked cars along a kerb), evenly spaced, often touching:
            more instances that only their position tells apart. None: pairs, exactly the
            scene rendered before this option existed.
        twin_groups: 1 to ``twin_groups`` groups of twins per scene (each group placed where
            it fits in view, so groups may overlap). None: 1 or 2, as before the option.

    Returns:
        :class:`Scene` with the RGB image and its labelIds / instanceIds maps.
    """
    H, W = check_size(size, "render", minimum=MIN_SIZE)
    far = _check_max_depth(max_thing_depth)
    _check_twins(twin_row, twin_groups)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return Renderer(H, W, rng, far=far, twin_row=twin_row, twin_groups=twin_groups).run()


def _check_max_depth(value: float | None) -> float:
    """``max_thing_depth`` as the renderer's cap in metres (inf for None)."""
    if value is None:
        return float("inf")
    if isinstance(value, bool) or not np.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"expected max_thing_depth > 0 metres or None, got {value!r}")
    return float(value)


def _check_twins(twin_row: int | None, twin_groups: int | None) -> None:
    for name, value, least in (("twin_row", twin_row, 2), ("twin_groups", twin_groups, 1)):
        ok = value is None or (
            not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= least
        )
        if not ok:
            raise ValueError(f"expected {name} as an integer >= {least} or None, got {value!r}")
