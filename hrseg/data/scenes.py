"""Learnable synthetic scenes: label maps built from plausible shapes, images rendered from a
per-class appearance (colour + texture) with mild illumination changes and noise.

``Canvas`` draws shapes into a label map and records every drawn layer (value, mask) in order,
so a Detail-style JSON can store one annotation per layer (later layers overwrite earlier ones,
like detail-api's ``getMask``). ``render`` turns a label map of raw values into an RGB image.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

TEXTURES = ("flat", "hstripes", "vstripes", "checker", "diagonal", "dots")


@dataclass(frozen=True)
class Appearance:
    colour: tuple[float, float, float]  # RGB, 0..255
    texture: str
    period: int
    amplitude: float


def make_appearances(values: Sequence[int], rng: np.random.Generator, *, same: Sequence[tuple[int, int]] = ()) -> dict[int, Appearance]:
    """A distinct appearance per raw value: hues spread by the golden ratio, alternating
    saturation/brightness levels, and a texture that differs between neighbouring hues.
    ``same`` lists value pairs that share an appearance (e.g. LIP left/right arms)."""
    order = [int(v) for v in rng.permutation(np.asarray(values))]
    looks: dict[int, Appearance] = {}
    for i, value in enumerate(order):
        hue = (i * 0.6180339887 + rng.uniform(-0.02, 0.02)) % 1.0
        sat = (0.9, 0.55, 0.75)[i % 3]
        val = (0.92, 0.62, 0.78, 0.45)[(i // 3) % 4]
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        looks[value] = Appearance(
            colour=(255 * r, 255 * g, 255 * b),
            texture=TEXTURES[(i * 5 + i // len(TEXTURES)) % len(TEXTURES)],
            period=int(rng.integers(4, 10)),
            amplitude=float(rng.uniform(0.15, 0.3)),
        )
    for a, b in same:
        looks[b] = looks[a]
    return looks


def _pattern(look: Appearance, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    p = look.period
    two_pi = 2.0 * math.pi / p
    if look.texture == "flat":
        return np.zeros(ys.shape, np.float32)
    if look.texture == "hstripes":
        return np.sign(np.sin(two_pi * ys + 0.5))
    if look.texture == "vstripes":
        return np.sign(np.sin(two_pi * xs + 0.5))
    if look.texture == "checker":
        return np.sign(np.sin(two_pi * xs + 0.5) * np.sin(two_pi * ys + 0.5))
    if look.texture == "diagonal":
        return np.sign(np.sin(two_pi * (xs + ys) + 0.5))
    centre = (p - 1) / 2.0
    return np.where((xs % p - centre) ** 2 + (ys % p - centre) ** 2 < (p / 3.0) ** 2, 1.0, -1.0)


def render(label: np.ndarray, looks: dict[int, Appearance], rng: np.random.Generator, *, noise: float = 4.0) -> np.ndarray:
    """RGB uint8 image for a label map of raw values (every value needs an appearance)."""
    height, width = label.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for value in np.unique(label):
        look = looks[int(value)]
        where = label == value
        shade = 1.0 + look.amplitude * _pattern(look, ys[where], xs[where])
        image[where] = np.asarray(look.colour, np.float32)[None, :] * shade[:, None]
    # a gentle linear illumination ramp in a random direction, then sensor noise
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * (xs / max(width - 1, 1) - 0.5) + math.sin(angle) * (ys / max(height - 1, 1) - 0.5))
    image *= (1.0 + rng.uniform(0.05, 0.15) * ramp)[..., None]
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class Canvas:
    """A label map plus the ordered list of drawn layers."""

    def __init__(self, height: int, width: int, fill: int = 0) -> None:
        self.height, self.width = height, width
        self.label = np.full((height, width), fill, np.int32)
        self.layers: list[tuple[int, np.ndarray]] = []

    def _blank(self) -> np.ndarray:
        return np.zeros((self.height, self.width), np.uint8)

    def add(self, value: int, mask: np.ndarray) -> None:
        mask = mask.astype(bool)
        if mask.any():
            self.label[mask] = value
            self.layers.append((int(value), mask))

    def polygon(self, value: int, points: Sequence[tuple[float, float]]) -> None:
        mask = self._blank()
        cv2.fillPoly(mask, [np.round(np.asarray(points)).astype(np.int32)], 1, lineType=cv2.LINE_8)
        self.add(value, mask)

    def rect(self, value: int, x0: float, y0: float, x1: float, y1: float) -> None:
        self.polygon(value, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def ellipse(self, value: int, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> None:
        mask = self._blank()
        cv2.ellipse(mask, (round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay))), angle, 0, 360, 1, -1, lineType=cv2.LINE_8)
        self.add(value, mask)

    def band(self, value: int, top: np.ndarray | float, bottom: np.ndarray | float) -> None:
        """Rows between two boundaries (per-column arrays or constants)."""
        ys = np.arange(self.height)[:, None]
        top = np.broadcast_to(np.asarray(top, np.float32), (self.width,))
        bottom = np.broadcast_to(np.asarray(bottom, np.float32), (self.width,))
        self.add(value, (ys >= top[None, :]) & (ys < bottom[None, :]))

    def wave(self, rng: np.random.Generator, level: float, amplitude: float) -> np.ndarray:
        """A smooth random boundary around row ``level`` (per column)."""
        xs = np.arange(self.width, dtype=np.float32)
        period = rng.uniform(0.4, 1.2) * self.width
        return level + amplitude * np.sin(2 * math.pi * xs / period + rng.uniform(0, 2 * math.pi))

    def blob(self, value: int, rng: np.random.Generator, cx: float, cy: float, size: float) -> None:
        """A random plausible object shape around (cx, cy) of about ``size`` pixels."""
        kind = int(rng.integers(0, 5))
        if kind == 0:
            self.ellipse(value, cx, cy, size * rng.uniform(0.4, 0.7), size * rng.uniform(0.3, 0.6), rng.uniform(0, 180))
        elif kind == 1:
            w, h = size * rng.uniform(0.4, 0.9), size * rng.uniform(0.4, 0.9)
            box = cv2.boxPoints(((cx, cy), (w, h), rng.uniform(-30, 30)))
            self.polygon(value, box)
        elif kind == 2:
            angles = np.sort(rng.uniform(0, 2 * math.pi, 7))
            radii = size * rng.uniform(0.3, 0.6, 7)
            self.polygon(value, np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1))
        elif kind == 3:
            self.polygon(value, [(cx, cy - size / 2), (cx + size / 2, cy + size / 2.5), (cx - size / 2, cy + size / 2.5)])
        else:  # a few parallel bars
            bar, gap = max(2.0, size / 8), max(2.0, size / 6)
            for k in range(3):
                x = cx - size / 2 + k * (bar + gap)
                self.rect(value, x, cy - size / 2, x + bar, cy + size / 2)
