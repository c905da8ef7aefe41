"""The things of a synthetic street scene: vehicles, persons,
two-wheelers with riders, poles and trees, each drawn as a sprite."""

from __future__ import annotations

import numpy as np
from PIL import Image

from panonet.data.synthetic_draw import (
    BUS_PAINT,
    CAR_PAINT,
    CLOTHS,
    HAIRS,
    LABEL_ID,
    SKINS,
    TROUSERS,
    TRUCK_PAINT,
    Pen,
    Sprite,
    colourise,
    jitter,
)

__all__ = ["ThingPainter"]


class ThingPainter:
    """The things of a synthetic street scene: vehicles, persons,

    A mixin of :class:`panonet.data.synthetic_scene.Renderer`, whose camera, layout and random
    generator it uses.
    """

    def _thing(self, pen: Pen, colours, label: str, rng, group: bool, **look) -> Sprite:
        parts = pen.parts()
        table = np.zeros(len(colours), np.uint8)
        table[1:] = LABEL_ID[label]
        rgb = colourise(parts, np.asarray(colours, np.float32), rng, **look)
        return Sprite(parts, rgb, table, group)

    def vehicle(self, kind: str, view: str, z: float, *, group: bool = False) -> Sprite:
        r = self.rng
        height_m = {"car": r.uniform(1.4, 1.6), "truck": r.uniform(3.0, 3.6), "bus": 3.1}[kind]
        h = max(2, self.sprite_height(height_m, z))
        paint = {"car": CAR_PAINT, "truck": TRUCK_PAINT, "bus": BUS_PAINT}[kind]
        body = jitter(r, paint[r.integers(len(paint))], 8)
        glass = jitter(r, (45, 55, 70), 10)
        tyre, dark = (25, 25, 25), body * 0.45
        light = (200, 30, 30) if view == "rear" else (230, 230, 200)
        colours = [(0, 0, 0), body, glass, tyre, light, dark]
        BODY, GLASS, TYRE, LIGHT, DARK = 1, 2, 3, 4, 5
        if view == "rear":
            aspect = {"car": 1.2, "truck": 0.8, "bus": 0.82}[kind]
            pen, a = Pen(h, aspect), aspect
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
            pen, a = Pen(h, aspect), aspect
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

    def person(self, h: int, *, group: bool = False) -> Sprite:
        r = self.rng
        h = max(3, h)
        pen = Pen(h, 0.42)
        cx, s = 0.21, r.uniform(0.0, 0.09)  # centre, stride
        swing = r.uniform(-0.04, 0.04)
        skin = jitter(r, SKINS[r.integers(len(SKINS))], 8)
        colours = [
            (0, 0, 0), skin, jitter(r, HAIRS[r.integers(len(HAIRS))], 8),
            jitter(r, CLOTHS[r.integers(len(CLOTHS))], 15),
            jitter(r, TROUSERS[r.integers(len(TROUSERS))], 10), (30, 28, 25),
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

    def two_wheeler(self, kind: str, z: float, *, facing: int, group: bool = False) -> Sprite:
        r = self.rng
        height_m = 1.05 if kind == "bicycle" else 1.15
        h = max(3, self.sprite_height(height_m, z))
        frame = jitter(r, CLOTHS[r.integers(len(CLOTHS))], 20)
        colours = [(0, 0, 0), frame, (28, 28, 28), (150, 150, 155), (20, 20, 22)]
        FRAME, TYRE, METAL, SEAT = 1, 2, 3, 4
        if kind == "bicycle":
            pen = Pen(h, 1.75)
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
            pen = Pen(h, 1.9)
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

    def rider(self, h: int, *, facing: int) -> Sprite:
        r = self.rng
        h = max(3, h)
        pen = Pen(h, 0.5)
        skin = jitter(r, SKINS[r.integers(len(SKINS))], 8)
        colours = [
            (0, 0, 0), skin, jitter(r, CLOTHS[r.integers(len(CLOTHS))], 15),
            jitter(r, TROUSERS[r.integers(len(TROUSERS))], 10),
            jitter(r, (40, 40, 45) if r.random() < 0.5 else (220, 220, 225), 10),
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

    def pole(self, z: float) -> Sprite:
        r = self.rng
        height_m = r.uniform(3.5, 6.5)
        h = max(3, self.sprite_height(height_m, z))
        aspect = 0.7 / height_m  # sprite wide enough for a sign
        pen = Pen(h, aspect)
        cx = aspect / 2
        pw = max(0.5 / h, 0.09 / height_m)  # pole half-width, at least half a pixel
        kind = r.choice(["sign", "light", "plain"])
        colours = [(0, 0, 0), jitter(r, (110, 110, 115), 15), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
        labels = [0, LABEL_ID["pole"], 0, 0, 0]
        pen.rect(cx - pw, 0.0, cx + pw, 1.0, 1)
        if kind == "sign":
            face = [(200, 30, 30), (30, 70, 170), (235, 235, 235), (225, 190, 30)][r.integers(4)]
            colours[2], colours[3] = jitter(r, face, 10), (240, 240, 240)
            labels[2] = labels[3] = LABEL_ID["traffic sign"]
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
            labels[2] = labels[3] = LABEL_ID["traffic light"]
            bw, bh = 0.16 / height_m, 0.85 / height_m
            pen.rect(cx - bw, 0.0, cx + bw, bh, 2)
            lamp = r.integers(3)
            pen.ellipse(cx, (0.17 + 0.27 * lamp) * bh + 0.03 * bh, bw * 0.6, bw * 0.6, 3)
        parts = pen.parts()
        rgb = colourise(parts, np.asarray(colours, np.float32), r, rounding=0.3)
        return Sprite(parts, rgb, np.asarray(labels, np.uint8))

    def tree(self, z: float) -> Sprite:
        r = self.rng
        height_m = r.uniform(4.0, 9.0)
        h = max(3, self.sprite_height(height_m, z))
        aspect = r.uniform(0.45, 0.8)
        pen = Pen(h, aspect)
        cx = aspect / 2
        trunk = r.uniform(0.015, 0.03)
        pen.rect(cx - trunk, 0.4, cx + trunk, 1.0, 1)
        for _ in range(r.integers(5, 10)):
            rx = r.uniform(0.12, 0.22)
            pen.ellipse(cx + r.uniform(-0.6, 0.6) * (cx - rx), r.uniform(0.15, 0.45),
                        rx, rx * r.uniform(0.8, 1.1), 2 + r.integers(2))  # fmt: skip
        green = jitter(r, (65, 110, 40), 20)
        colours = [(0, 0, 0), jitter(r, (85, 65, 45), 10), green, green * 0.75]
        parts = pen.parts()
        rgb = colourise(parts, np.asarray(colours, np.float32), r, texture=0.35, grain=8.0)
        return Sprite(parts, rgb, np.full(4, LABEL_ID["vegetation"], np.uint8))

    # --- painting ------------------------------------------------------------------------
