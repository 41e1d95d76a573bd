"""Shapes: a built-in image dataset drawn by code, so there is nothing to download.

Each 28x28 image holds one white shape (square, disc, triangle or cross) on
black, at a random position, size and rotation. It has the same interface as
:class:`~tinyae.data.MNIST` (``.data`` float32 (N, 1, 28, 28) in [0, 1],
``.targets`` int64, ``.classes``), so every model and the training CLI work on
it offline.

How a shape is drawn, for all images at once (no Python loop over images):

1. every pixel centre ``p`` is mapped into the shape's own frame,
   ``u = R(-angle) (p - centre) / radius``, where the shape fits the unit circle;
2. a *signed distance* ``d(u)`` is computed: negative inside the shape,
   positive outside, in units of ``radius``;
3. ``d * radius`` is the distance in pixels, and the pixel's brightness is
   ``clip(0.5 - d * radius, 0, 1)``: 1 well inside, 0 well outside, and a linear
   ramp one pixel wide across the edge. That ramp approximates the fraction
   of the pixel the shape covers, which is what anti-aliasing means.

Deterministic: the same ``(n, train, seed, classes)`` gives the same bytes.
The train and test splits draw from different random streams.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SHAPE_CLASSES", "Shapes", "render_shapes"]

SIZE = 28
MIN_RADIUS, MAX_RADIUS = 6.0, 12.0  # circumradius in pixels
CROSS_HALF_WIDTH = 0.3  # half thickness of the cross's bars, in radius units


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    half = np.sqrt(0.5)  # a square inscribed in the unit circle
    return np.maximum(np.abs(u), np.abs(v)) - half


def _disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sqrt(u * u + v * v) - 0.8  # a bit smaller, so its area is close to the square's


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral triangle inscribed in the unit circle: inside all three edges,
    # each edge at distance 1/2 from the centre. The max of the three signed
    # edge distances is exact near the edges (all the anti-aliasing needs).
    d = None
    for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        # normal of the edge opposite the vertex at `angle`
        edge = -(u * np.cos(angle) + v * np.sin(angle)) - 0.5
        d = edge if d is None else np.maximum(d, edge)
    return d


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # A plus sign: the union (min) of a horizontal and a vertical bar.
    arm = np.sqrt(1.0 - CROSS_HALF_WIDTH**2)  # the bar's corners touch the unit circle
    horizontal = np.maximum(np.abs(u) - arm, np.abs(v) - CROSS_HALF_WIDTH)
    vertical = np.maximum(np.abs(u) - CROSS_HALF_WIDTH, np.abs(v) - arm)
    return np.minimum(horizontal, vertical)


#: shape name -> signed distance function in the unit-circle frame
SHAPE_CLASSES = {"square": _square, "disc": _disc, "triangle": _triangle, "cross": _cross}


def render_shapes(
    kind: str, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, angle: np.ndarray
) -> np.ndarray:
    """Anti-aliased images (n, 28, 28) float32 of shape ``kind``, one per parameter set."""
    sdf = SHAPE_CLASSES[kind]
    grid = np.arange(SIZE, dtype=np.float32)
    # Broadcast (n, 1, 1) parameters against the (1, H, 1) rows and (1, 1, W) columns.
    cx, cy, radius, angle = (np.asarray(a, np.float32)[:, None, None] for a in (cx, cy, radius, angle))
    dx = grid[None, None, :] - cx
    dy = grid[None, :, None] - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / radius  # rotate by -angle, then scale to the unit circle
    v = (-sin * dx + cos * dy) / radius
    distance_px = sdf(u, v) * radius
    return np.clip(0.5 - distance_px, 0.0, 1.0).astype(np.float32)


class Shapes:
    """A synthetic, deterministic, balanced dataset of 28x28 shape images.

    ``n`` images (default 12,000 for train, 2,000 for test); the labels cycle
    through ``classes`` before shuffling, so each class has exactly ``n / k``
    images when ``n`` is a multiple of the number of classes ``k`` (otherwise
    the counts differ by at most one).
    """

    def __init__(
        self,
        n: int | None = None,
        train: bool = True,
        seed: int = 0,
        classes: Sequence[str] = ("square", "disc", "triangle", "cross"),
    ) -> None:
        if n is None:
            n = 12_000 if train else 2_000
        if n < 0:
            raise ValueError(f"Shapes: n must be >= 0, got {n}")
        unknown = [c for c in classes if c not in SHAPE_CLASSES]
        if unknown or not classes:
            raise ValueError(
                f"Shapes: classes must be a non-empty subset of {list(SHAPE_CLASSES)}, got {list(classes)}"
            )
        self.classes = list(classes)
        self.train = train
        self.seed = seed
        # Two independent streams from one seed: [seed, 0] for train, [seed, 1] for test.
        rng = np.random.default_rng([seed, 0 if train else 1])

        targets = rng.permutation(np.arange(n) % len(self.classes)).astype(np.int64)
        angle = rng.uniform(0.0, 2 * np.pi, n)
        radius = rng.uniform(MIN_RADIUS, MAX_RADIUS, n)
        # Keep the shape's circumcircle a pixel away from the border pixels' centres,
        # so the outermost rows and columns stay black.
        low = radius + 1.0
        high = (SIZE - 1) - radius - 1.0
        cx = low + (high - low) * rng.random(n)
        cy = low + (high - low) * rng.random(n)

        images = np.zeros((n, SIZE, SIZE), dtype=np.float32)
        for label, kind in enumerate(self.classes):  # a loop over classes, not images
            idx = np.flatnonzero(targets == label)
            images[idx] = render_shapes(kind, cx[idx], cy[idx], radius[idx], angle[idx])
        self.data: np.ndarray = images[:, None, :, :]
        self.targets: np.ndarray = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.data[index], self.targets[index]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"Shapes(split={split!r}, n={len(self)}, classes={self.classes}, seed={self.seed})"
