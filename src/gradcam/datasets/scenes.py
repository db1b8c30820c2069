"""A seeded generator of synthetic scenes with exact ground truth.

Each scene is a small RGB image in [0, 1] holding one or more objects; an object is a shape
(circle, square, triangle, cross, diamond) in a colour (red, green, blue, yellow, magenta, cyan),
optionally striped, placed at a random position and size on a cluttered, noisy grey background.
Every object's pixel mask and bounding box are known exactly, so localisation and pointing can be
measured without annotation noise. Used by the synthetic benchmark and the
vision-and-language benchmark.

Same seed, same arguments -> bit-identical scenes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond")
COLOURS = {
    "red": (0.90, 0.12, 0.10),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.12, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.15, 0.85),
    "cyan": (0.10, 0.85, 0.90),
}
COLOUR_NAMES: Tuple[str, ...] = tuple(COLOURS)


@dataclass
class SceneObject:
    """One object: its shape and colour names, box (x0, y0, x1, y1; x1/y1 exclusive) and bool mask (H, W)."""

    shape: str
    colour: str
    box: Tuple[int, int, int, int]
    mask: torch.Tensor

    @property
    def center(self) -> Tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2)


@dataclass
class Scene:
    """An image (3, H, W) in [0, 1] and its objects, left to right by their centre."""

    image: torch.Tensor
    objects: List[SceneObject]


def shape_mask(shape: str, size: int, cy: float, cx: float, r: float) -> torch.Tensor:
    """Bool mask (size, size) of ``shape`` centred at (cy, cx) with half-extent r (pixels)."""
    ys = torch.arange(size, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(size, dtype=torch.float32).view(1, -1) + 0.5
    dy, dx = ys - cy, xs - cx
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        return (dy.abs() <= r * 0.85) & (dx.abs() <= r * 0.85)
    if shape == "triangle":
        return (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2)
    if shape == "cross":
        t = r / 3
        return ((dy.abs() <= t) & (dx.abs() <= r)) | ((dx.abs() <= t) & (dy.abs() <= r))
    if shape == "diamond":
        return dy.abs() + dx.abs() <= r
    raise ValueError(f"Unknown shape {shape!r}; choose from {', '.join(SHAPES)}.")


def _background(rng: random.Random, gen: torch.Generator, size: int, clutter: bool) -> torch.Tensor:
    base = 0.35 + 0.3 * rng.random()
    img = torch.full((3, size, size), base) + 0.06 * torch.randn(3, size, size, generator=gen)
    if clutter:
        # Grey distractor strokes and blobs: texture without the colours or shapes of objects.
        for _ in range(rng.randint(3, 7)):
            g = base + rng.uniform(-0.25, 0.25)
            if rng.random() < 0.5:
                y, x = rng.randrange(size), rng.randrange(size)
                length, horiz = rng.randint(size // 6, size // 2), rng.random() < 0.5
                if horiz:
                    img[:, y : y + 1, x : x + length] = g
                else:
                    img[:, y : y + length, x : x + 1] = g
            else:
                cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.5, size / 12)
                img[:, shape_mask("circle", size, cy, cx, r)] = g
    return img


def make_scene(
    rng: random.Random,
    size: int = 64,
    n_objects: int = 1,
    shapes: Sequence[str] = SHAPES,
    colours: Sequence[str] = COLOUR_NAMES,
    *,
    objects: Optional[Sequence[Tuple[str, str]]] = None,
    min_radius: Optional[float] = None,
    max_radius: Optional[float] = None,
    striped: float = 0.3,
    clutter: bool = True,
    distinct_shapes: bool = True,
) -> Scene:
    """Draw one scene with ``rng``.

    ``objects`` fixes the (shape, colour) of each object; otherwise they are drawn from ``shapes`` and
    ``colours`` (distinct shapes in one scene when ``distinct_shapes``). Objects do not overlap (their
    boxes are at least 2 px apart). ``striped`` is the chance that an object is drawn with stripes.
    """
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    min_r = min_radius if min_radius is not None else size / 10
    max_r = max_radius if max_radius is not None else size / (4.5 if n_objects == 1 else 6)
    if objects is None:
        pool = list(shapes)
        picked = []
        for _ in range(n_objects):
            s = rng.choice(pool)
            if distinct_shapes and len(pool) > 1:
                pool.remove(s)
            picked.append((s, rng.choice(list(colours))))
        objects = picked
    img = _background(rng, gen, size, clutter)
    placed: List[SceneObject] = []
    for shape, colour in objects:
        for _attempt in range(200):
            r = rng.uniform(min_r, max_r)
            cy, cx = rng.uniform(r + 1, size - r - 1), rng.uniform(r + 1, size - r - 1)
            box = (int(cx - r), int(cy - r), int(cx + r) + 1, int(cy + r) + 1)
            if all(_apart(box, o.box) for o in placed):
                break
        else:
            raise ValueError(
                f"Could not place {len(objects)} objects of radius >= {min_r} in a {size}px scene."
            )
        mask = shape_mask(shape, size, cy, cx, r)
        ys, xs = mask.nonzero(as_tuple=True)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        rgb = torch.tensor(COLOURS[colour]).view(3, 1, 1)
        fill = rgb * (0.85 + 0.15 * torch.rand(1, size, size, generator=gen))
        if rng.random() < striped:
            period = rng.randint(3, 6)
            coords = torch.arange(size).view(-1, 1) + (
                torch.arange(size).view(1, -1) if rng.random() < 0.5 else 0
            )
            fill = torch.where(((coords // period) % 2 == 0).unsqueeze(0), fill, fill * 0.6)
        img = torch.where(mask.unsqueeze(0), fill, img)
        placed.append(SceneObject(shape, colour, box, mask))
    placed.sort(key=lambda o: o.center[1])
    return Scene(img.clamp(0, 1), placed)


def _apart(a, b, gap: int = 2) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def make_scenes(n: int, seed: int, **kw) -> List[Scene]:
    """``n`` scenes from ``seed`` (keyword arguments as :func:`make_scene`)."""
    rng = random.Random(seed)
    return [make_scene(rng, **kw) for _ in range(n)]


def stack(scenes: Sequence[Scene]) -> torch.Tensor:
    """The images of ``scenes`` as one (N, 3, H, W) batch."""
    return torch.stack([s.image for s in scenes])
