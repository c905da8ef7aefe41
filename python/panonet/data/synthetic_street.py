"""The background of a synthetic street scene: road, sidewalks,
buildings with windows, vegetation and sky, as labelled regions."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from panonet.data.synthetic_draw import BUILDINGS, LABEL_ID, jitter, value_noise

__all__ = ["StreetPainter"]


class StreetPainter:
    """The background of a synthetic street scene: road, sidewalks,

    A mixin of :class:`panonet.data.synthetic_scene.Renderer`, whose camera, layout and random
    generator it uses.
    """

    def background(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) float32 and labelIds (H, W) uint8 of sky, buildings and ground."""
        H, W, r = self.H, self.W, self.rng
        canvas = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(canvas)
        labels = [LABEL_ID["sky"]]
        colours = [(0.0, 0.0, 0.0)]
        textures = [(0.0, 0.0)]  # (smooth-noise amplitude, leafy-noise amplitude)
        facades: list[tuple[int, str, float, float, float]] = []  # region, kind, X, floor, column

        def region(label: str, colour, tex=(0.08, 0.0)) -> int:
            labels.append(LABEL_ID[label])
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
                idx = region("vegetation", jitter(r, (70, 110, 45), 20), (0.2, 0.35))
                self._bumpy_top(draw, idx, xa, xb, yb, yt, p_end)
            else:
                idx = region("building", jitter(r, BUILDINGS[r.integers(len(BUILDINGS))]))
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

        walk_colour = jitter(r, (150, 145, 135), 15)
        curb_colour = np.clip(walk_colour + 25, 0, 255)
        (rl, rr), (fl, fr) = self.road, self.facade
        strip(fl - 50, fr + 50, "sidewalk", walk_colour)
        if self.verge[0]:
            strip(rl - self.verge[0], rl, "terrain", jitter(r, (115, 135, 65), 15), (0.15, 0.3))
        if self.verge[1]:
            strip(rr, rr + self.verge[1], "terrain", jitter(r, (115, 135, 65), 15), (0.15, 0.3))
        strip(rl - self.verge[0] - 0.25, rl - self.verge[0], "sidewalk", curb_colour)
        strip(rr + self.verge[1], rr + self.verge[1] + 0.25, "sidewalk", curb_colour)
        strip(rl, rr, "road", jitter(r, (80, 80, 85), 10), (0.06, 0.0))
        self._markings(draw, region, z_near)

        # Side facades: consecutive buildings (or hedges / tree lines) from near to the end.
        for xf in (fl, fr):
            z = self.f * abs(xf) / (W + 20) * 0.5  # a building boundary left of the image
            while z < z_end:
                length = r.uniform(8.0, 30.0)
                z1 = min(z + length, z_end)
                height = r.uniform(8.0, 28.0)
                if r.random() < 0.18:
                    idx = region("vegetation", jitter(r, (65, 105, 40), 20), (0.2, 0.35))
                    pts = [self.ground(xf, z), self.ground(xf, z1)]
                    zs = np.linspace(z1, z, 24)
                    tops = r.uniform(2.5, 6.0) + r.uniform(-0.6, 0.6, zs.size)
                    pts += [self.ground(xf, zz, tt) for zz, tt in zip(zs, tops, strict=True)]
                    draw.polygon(pts, fill=idx)
                else:
                    idx = region("building", jitter(r, BUILDINGS[r.integers(len(BUILDINGS))]))
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
        low = value_noise(r, H, W, max(8.0, W / 24))
        leafy = value_noise(r, H, W, max(2.0, W / 256))
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
        (rl, rr), white = self.road, jitter(r, (215, 215, 205), 10)
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
            tint = jitter(r, (60, 75, 95), 15)
            rgb[ys[glass], xs[glass]] = tint * (0.8 + 0.4 * v[glass, None])

    def _sky(self, rgb: np.ndarray, mask: np.ndarray, low: np.ndarray) -> None:
        r = self.rng
        if r.random() < 0.3:  # overcast
            top, bottom = jitter(r, (170, 175, 185), 15), jitter(r, (215, 215, 220), 10)
        else:
            top, bottom = jitter(r, (60, 120, 200), 20), jitter(r, (190, 210, 230), 15)
        t = np.clip(np.arange(self.H, dtype=np.float32) / max(self.y_h, 1.0), 0, 1)[:, None, None]
        sky = top * (1 - t) + bottom * t + 18.0 * np.maximum(low, 0)[..., None]
        rgb[mask] = np.broadcast_to(sky, rgb.shape)[mask]

    # --- objects -------------------------------------------------------------------------
