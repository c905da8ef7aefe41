"""One synthetic street scene: the camera and street layout, the placement of things, and the
painting of everything far to near (see :mod:`panonet.data.synthetic` for the scene model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from panonet.data.synthetic_draw import LABEL_ID, THING_LABEL_IDS, SceneObject, Sprite, jitter
from panonet.data.synthetic_street import StreetPainter
from panonet.data.synthetic_things import ThingPainter

__all__ = ["Renderer", "Scene", "renumber"]


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        label_ids: (H, W) uint8 Cityscapes labelIds.
        instance_ids: (H, W) uint16 Cityscapes instanceIds (``labelId * 1000 + k`` for
            individual things, ``labelId`` elsewhere).
        twins: ``(id_a, id_b, dy, dx)`` per pair of identical-looking neighbours that are both
            visible (a twin pair; in a row of twins, each two consecutive visible copies):
            pixel (y, x) of ``id_a``'s sprite corresponds to (y + dy, x + dx) of ``id_b``'s.
    """

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    twins: list[tuple[int, int, int, int]] = field(default_factory=list)


class Renderer(StreetPainter, ThingPainter):
    """Builds one scene: camera and street layout, background regions, objects, then paints."""

    def __init__(
        self,
        H: int,
        W: int,
        rng: np.random.Generator,
        *,
        far: float = float("inf"),
        twin_row: int | None = None,
        twin_groups: int | None = None,
    ) -> None:
        self.H, self.W, self.rng = H, W, rng
        # Cap on the depth of instances (render's max_thing_depth).
        self.far = far
        # Most copies in a row of twins (render's twin_row); None: pairs.
        self.twin_row = twin_row
        # Most groups of twins per scene (render's twin_groups); None: 2.
        self.twin_groups = 2 if twin_groups is None else twin_groups
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
        self.objects: list[SceneObject] = []
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

    def place(
        self,
        sprite: Sprite,
        x_m: float,
        z: float,
        bottom_m: float = 0.0,
        *,
        anchor: str = "centre",
        order: int = 0,
        shadow: bool = True,
        twin_key: int | None = None,
    ) -> SceneObject | None:
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
        obj = SceneObject(z, order, sprite, x0, y0, sh, twin_key)
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

        # Twins: the same sprite twice (or a row of it) at one depth, side by side, often touching.
        for _ in range(r.integers(1, self.twin_groups + 1)):
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
        """Copies of one sprite at one depth, side by side (touching when gap = 0), placed
        where all are in view: instances the embedding can only tell apart by position. Two
        copies, or 2 to ``twin_row`` when set (a row of identical parked cars along a kerb)."""
        r = self.rng
        kind = r.choice(["car", "car", "person", "person", "bicycle", "truck"])
        key = self._twin_keys
        self._twin_keys += 1
        # Drawn only when set, so the default scenes stay what they were.
        copies = 2 if self.twin_row is None else int(r.integers(2, self.twin_row + 1))
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
        row = copies * width + (copies - 1) * gap
        # Lateral range in view at this depth, and where this kind of object belongs.
        view = ((0 - self.x_v) / p, (self.W - self.x_v) / p)
        if kind in ("person", "bicycle"):
            home = walk[r.integers(2)]
        else:
            lane = r.choice(lane_x)
            home = (lane - width, lane + width + gap)
        lo, hi = max(home[0], view[0]), min(home[1], view[1]) - row
        if lo > hi:  # its usual place is out of view at this depth: anywhere in view
            lo, hi = view[0], max(view[0], view[1] - row)
        left = r.uniform(lo, hi)
        # Same depth, same sprite: identical pixels, only the position differs.
        for k in range(copies):
            self.place(sprite, left + width * (k + 0.5) + k * gap, z, twin_key=key)

    # --- sprites -------------------------------------------------------------------------

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
        inst, remap = renumber(inst)
        twins = []
        for members in twin_ids.values():
            # Copies of a key are painted left to right (equal depth and order): neighbours.
            for (a, ya, xa), (b, yb, xb) in pairwise(members):
                a, b = remap.get(a), remap.get(b)
                if a is not None and b is not None:
                    twins.append((a, b, yb - ya, xb - xa))
        return Scene(image, lab, inst.astype(np.uint16), twins)

    def _paste(self, rgb, lab, inst, obj: SceneObject, counter: dict[int, int]) -> int | None:
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
        things = [lid for lid in set(part_label[1:].tolist()) if lid in THING_LABEL_IDS]
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
        paint = jitter(r, (35, 35, 40), 10)
        depth = np.clip((yy - top) / max(e, 1.0), 0, 1)
        colour = paint * (1.4 - 0.6 * depth)[..., None]
        rgb[mask] = np.broadcast_to(colour, rgb.shape)[mask]
        lab[mask] = LABEL_ID["ego vehicle"]
        inst[mask] = LABEL_ID["ego vehicle"]


def renumber(inst: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
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
