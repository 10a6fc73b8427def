"""The "realistic" synthetic profile: photos shaped like the real iMaterialist-2019 data, not like our first generator.

The real train.csv has about 7 objects per image (~333k over ~45k images), mostly small garment parts: sleeves,
shoes, necklines and pockets outnumber every garment, and most objects cover around 1% of the photo or less. Photos
come in many sizes. So each picture here is one or two people on a cluttered background, dressed from the real
data's most common categories, with what makes the real task hard:

- several small parts per garment (two sleeves, a neckline, pockets, lapels, a zipper), each an object of its own
  that overlaps its garment, as in the competition's masks;
- touching instances of one category (two shoes side by side, often in contact; two lapels);
- occlusion: a jacket hides most of the top under it, a bag or belt hides what is behind; masks are what is visible;
- skin, hair and clutter that are no category; people at varying scale and position; photo long sides drawn
  log-uniformly between `min_size` and `max_size` pixels, portrait and landscape.

Attributes stay learnable from colour and texture (as in the easy profile), on the garments that carry them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["draw_realistic", "photo_size"]

SHIRT, TOP, JACKET, PANTS, SHORTS, SKIRT, DRESS = 0, 1, 4, 6, 7, 8, 10
GLASSES, HAT, BELT, SHOE, BAG = 13, 14, 19, 23, 24
LAPEL, SLEEVE, POCKET, NECKLINE, ZIPPER = 29, 31, 32, 33, 35
COLLAR = 28
STRIPED, DOTTED = 3, 4  # attribute ids, as in the easy profile
SKIN = [(233, 190, 160), (200, 150, 110), (150, 100, 70), (100, 65, 45)]


def photo_size(rng: np.random.Generator, min_size: int, max_size: int) -> tuple[int, int]:
    """(height, width): the long side log-uniform in [min_size, max_size], mostly portrait like fashion photos."""
    long_side = int(round(np.exp(rng.uniform(np.log(min_size), np.log(max_size)))))
    short_side = max(min(min_size, long_side), int(long_side * rng.uniform(0.6, 0.85)))
    return (long_side, short_side) if rng.random() < 0.8 else (short_side, long_side)


def draw_realistic(rng: np.random.Generator, height: int, width: int, colours: dict):
    """One photo and its objects: (uint8 image, [(visible boolean mask, ClassId string), ...])."""
    image = _background(rng, height, width)
    n_people = 2 if rng.random() < 0.15 and width > height * 0.9 else 1
    objects = []
    for k in range(n_people):
        scale = rng.uniform(0.7, 0.97)
        ph = height * scale
        pw = ph * 0.42
        slot = width / n_people
        cx = slot * (k + 0.5) + rng.uniform(-0.2, 0.2) * max(0.0, slot - pw)
        top = rng.uniform(0.0, 1.0 - scale) * height
        objects += _person(rng, image, (cx - pw / 2, top, pw, ph), colours)
    return image, objects


def _background(rng, height, width):
    """A smooth gradient, a little noise, and a few unlabelled blocks of clutter."""
    base = rng.integers(60, 230, 3).astype(np.float32)
    tilt = rng.uniform(-40, 40, 3).astype(np.float32)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = base + tilt * ramp + rng.normal(0, 6, (height, 1, 3)).astype(np.float32)
    image = np.broadcast_to(image, (height, width, 3)).copy()
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(0, 5))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        x1, y1 = x0 + rng.uniform(0.05, 0.3) * width, y0 + rng.uniform(0.05, 0.3) * height
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return np.asarray(picture).copy()


class _Canvas:
    """Draws polygons and ellipses given in the person's unit box (u across, v down) as masks at photo size."""

    def __init__(self, rng, shape, box):
        self.rng, self.shape = rng, shape
        self.x0, self.y0, self.w, self.h = box

    def _xy(self, points, jitter):
        out = []
        for u, v in points:
            u, v = u + self.rng.uniform(-jitter, jitter), v + self.rng.uniform(-jitter, jitter)
            out.append((self.x0 + u * self.w, self.y0 + v * self.h))
        return out

    def polygon(self, points, jitter=0.01) -> np.ndarray:
        canvas = Image.new("1", self.shape[::-1], 0)
        ImageDraw.Draw(canvas).polygon(self._xy(points, jitter), fill=1)
        return np.array(canvas, dtype=bool)

    def ellipse(self, cu, cv, ru, rv) -> np.ndarray:
        (x0, y0), (x1, y1) = self._xy([(cu - ru, cv - rv), (cu + ru, cv + rv)], 0.0)
        canvas = Image.new("1", self.shape[::-1], 0)
        ImageDraw.Draw(canvas).ellipse([x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)], fill=1)
        return np.array(canvas, dtype=bool)


def _person(rng, image, box, colours):
    """Paint one dressed person onto `image` (back to front) and return the visible objects."""
    c = _Canvas(rng, image.shape[:2], box)
    skin = np.array(SKIN[int(rng.integers(len(SKIN)))], dtype=np.float32)
    layers = []  # (mask, category, attributes, parts) painted in this order; later layers hide earlier ones

    def paint(mask, rgb, texture=-1):
        _paint(image, mask, rgb, texture, rng)

    # skin: head, neck, arms, legs (no category, but they are what garments must be told apart from)
    for mask in (c.ellipse(0.5, 0.075, 0.1, 0.07), c.polygon([(0.45, 0.12), (0.55, 0.12), (0.55, 0.17), (0.45, 0.17)]),
                 c.polygon([(0.2, 0.17), (0.28, 0.17), (0.2, 0.56), (0.12, 0.55)]),
                 c.polygon([(0.8, 0.17), (0.72, 0.17), (0.8, 0.56), (0.88, 0.55)]),
                 c.polygon([(0.33, 0.5), (0.48, 0.5), (0.46, 0.94), (0.35, 0.94)]),
                 c.polygon([(0.52, 0.5), (0.67, 0.5), (0.65, 0.94), (0.54, 0.94)])):  # fmt: skip
        paint(mask, skin)
    paint(c.ellipse(0.5, 0.04, 0.1, 0.045), rng.integers(10, 120, 3))  # hair

    outfit = rng.choice(["top+pants", "top+skirt", "top+shorts", "dress"], p=[0.45, 0.15, 0.1, 0.3])
    if outfit != "dress":
        lower = {"top+pants": PANTS, "top+skirt": SKIRT, "top+shorts": SHORTS}[str(outfit)]
        layers.append(_bottom(rng, c, lower))
    layers.append(_upper(rng, c, DRESS if outfit == "dress" else (SHIRT if rng.random() < 0.3 else TOP)))
    if outfit != "dress" and rng.random() < 0.3:
        layers.append(_jacket(rng, c))
    if rng.random() < 0.2 and outfit != "dress":
        layers.append((c.polygon([(0.3, 0.48), (0.7, 0.48), (0.7, 0.51), (0.3, 0.51)], 0.003), BELT, None, []))
    if rng.random() < 0.85:
        layers += _shoes(rng, c)
    if rng.random() < 0.3:
        side = rng.choice([-1, 1])
        u = 0.5 + side * rng.uniform(0.28, 0.42)
        layers.append((c.polygon([(u - 0.12, 0.42), (u + 0.12, 0.42), (u + 0.13, 0.62), (u - 0.13, 0.62)]), BAG,
                       None, []))  # fmt: skip
    if rng.random() < 0.15:
        layers.append((c.polygon([(0.4, 0.065), (0.6, 0.065), (0.6, 0.085), (0.4, 0.085)], 0.004), GLASSES, None, []))
    if rng.random() < 0.1:
        layers.append((c.ellipse(0.5, 0.02, 0.14, 0.035), HAT, None, []))

    for mask, _category, attrs, parts in layers:
        if attrs is not None:
            colour = int(attrs[0])
            rgb = np.asarray(colours[colour], dtype=np.float32) + rng.uniform(-25, 25, 3)
            paint(mask, rgb, attrs[1] if len(attrs) > 1 else -1)
        else:
            paint(mask, rng.integers(0, 256, 3))
        for part_mask, part in parts:  # parts are drawn on their garment so they can be seen
            if part in (NECKLINE, COLLAR):
                paint(part_mask & mask, (235, 228, 210))
            elif part in (POCKET, LAPEL, ZIPPER):
                image[part_mask & mask] = (image[part_mask & mask] * 0.6).astype(np.uint8)
            elif part == SLEEVE:  # a seam at the shoulder: a sleeve is the same cloth
                edge = part_mask & ~_shrink(part_mask)
                image[edge & mask] = (image[edge & mask] * 0.75).astype(np.uint8)

    # visible masks: each layer minus everything drawn after it; parts are cut by what hides their garment
    objects = []
    hidden = np.zeros(image.shape[:2], dtype=bool)
    for mask, category, attrs, parts in reversed(layers):
        visible = mask & ~hidden
        class_id = "_".join(map(str, [category, *sorted(attrs)])) if attrs is not None else str(category)
        if visible.sum() >= 4:
            objects.append((visible, class_id))
        for part_mask, part in parts:
            if (part_visible := part_mask & visible).sum() >= 4:
                objects.append((part_visible, str(part)))
        hidden |= mask
    return objects


def _attrs(rng):
    texture = int(rng.choice([-1, STRIPED, DOTTED]))
    return [int(rng.integers(0, 3))] + ([texture] if texture >= 0 else [])


def _bottom(rng, c, kind):
    parts = []
    if kind == SKIRT:
        length = rng.uniform(0.68, 0.85)
        mask = c.polygon([(0.31, 0.47), (0.69, 0.47), (0.8, length), (0.2, length)])
    else:
        end = 0.93 if kind == PANTS else rng.uniform(0.6, 0.68)
        mask = c.polygon([(0.31, 0.47), (0.69, 0.47), (0.7, 0.56), (0.3, 0.56)])
        mask |= c.polygon([(0.31, 0.5), (0.495, 0.5), (0.47, end), (0.33, end)])
        mask |= c.polygon([(0.505, 0.5), (0.69, 0.5), (0.67, end), (0.53, end)])
        if rng.random() < 0.6:  # front pockets, one each side
            parts += [(c.polygon([(0.32, 0.5), (0.4, 0.5), (0.33, 0.57)], 0.005), POCKET),
                      (c.polygon([(0.68, 0.5), (0.6, 0.5), (0.67, 0.57)], 0.005), POCKET)]  # fmt: skip
    return mask, kind, _attrs(rng), parts


def _upper(rng, c, kind):
    long_sleeves = rng.random() < 0.5
    end = 0.52 if long_sleeves else rng.uniform(0.26, 0.33)
    bottom = rng.uniform(0.72, 0.88) if kind == DRESS else rng.uniform(0.47, 0.55)
    body = c.polygon([(0.28, 0.15), (0.72, 0.15), (0.7, 0.45), (0.72, bottom), (0.28, bottom), (0.3, 0.45)])
    if kind == DRESS:
        body |= c.polygon([(0.3, 0.45), (0.7, 0.45), (0.8, bottom), (0.2, bottom)])
    sleeves = [c.polygon([(0.28, 0.15), (0.3, 0.24), (0.22, end), (0.11, end - 0.02)]),
               c.polygon([(0.72, 0.15), (0.7, 0.24), (0.78, end), (0.89, end - 0.02)])]  # fmt: skip
    mask = body | sleeves[0] | sleeves[1]
    parts = [(s & ~body, SLEEVE) for s in sleeves] if rng.random() < 0.93 else []  # sleeveless, sometimes
    if not parts:
        mask = body
    depth = rng.uniform(0.03, 0.07)
    parts.append((c.polygon([(0.42, 0.15), (0.58, 0.15), (0.5, 0.15 + depth)], 0.005), NECKLINE))
    if kind == SHIRT and rng.random() < 0.6:
        parts.append((c.polygon([(0.4, 0.14), (0.6, 0.14), (0.56, 0.17), (0.44, 0.17)], 0.004), COLLAR))
    if kind != DRESS and rng.random() < 0.3:
        parts.append((c.polygon([(0.56, 0.24), (0.64, 0.24), (0.64, 0.31), (0.56, 0.31)], 0.006), POCKET))
    return mask, kind, _attrs(rng), parts


def _jacket(rng, c):
    """An open jacket over the top: two panels and long sleeves, lapels and maybe a zipper and pockets."""
    gap = rng.uniform(0.03, 0.1)
    left = c.polygon([(0.26, 0.14), (0.5 - gap, 0.14), (0.5 - gap, 0.58), (0.26, 0.58)])
    right = c.polygon([(0.5 + gap, 0.14), (0.74, 0.14), (0.74, 0.58), (0.5 + gap, 0.58)])
    sleeves = [c.polygon([(0.26, 0.14), (0.3, 0.24), (0.22, 0.54), (0.1, 0.52)]),
               c.polygon([(0.74, 0.14), (0.7, 0.24), (0.78, 0.54), (0.9, 0.52)])]  # fmt: skip
    body = left | right
    mask = body | sleeves[0] | sleeves[1]
    parts = [(s & ~body, SLEEVE) for s in sleeves]
    parts += [(c.polygon([(0.5 - gap, 0.14), (0.5 - gap - 0.08, 0.14), (0.5 - gap, 0.3)], 0.004), LAPEL),
              (c.polygon([(0.5 + gap, 0.14), (0.5 + gap + 0.08, 0.14), (0.5 + gap, 0.3)], 0.004), LAPEL)]  # fmt: skip
    if rng.random() < 0.5:
        parts.append((c.polygon([(0.5 + gap, 0.3), (0.5 + gap + 0.012, 0.3), (0.5 + gap + 0.012, 0.58),
                                 (0.5 + gap, 0.58)], 0.002), ZIPPER))  # fmt: skip
    if rng.random() < 0.5:
        parts += [(c.polygon([(0.29, 0.44), (0.4, 0.44), (0.4, 0.52), (0.29, 0.52)], 0.005), POCKET),
                  (c.polygon([(0.6, 0.44), (0.71, 0.44), (0.71, 0.52), (0.6, 0.52)], 0.005), POCKET)]  # fmt: skip
    return mask, JACKET, _attrs(rng), parts


def _shoes(rng, c):
    """Two shoes near the feet; half the time touching, the front one hiding part of the other."""
    touching = rng.random() < 0.5
    half_gap = rng.uniform(0.06, 0.075) if touching else rng.uniform(0.1, 0.16)
    ru, rv = rng.uniform(0.07, 0.1), rng.uniform(0.022, 0.035)
    v = rng.uniform(0.93, 0.97)
    return [(c.ellipse(0.5 - half_gap, v, ru, rv), SHOE, None, []),
            (c.ellipse(0.5 + half_gap, v + rng.uniform(0, 0.01), ru, rv), SHOE, None, [])]  # fmt: skip


def _shrink(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def _paint(image, mask, rgb, texture, rng):
    if not mask.any():
        return
    colour = np.clip(np.asarray(rgb, dtype=np.float32), 0, 255)
    ys, xs = np.nonzero(mask)
    shade = np.ones(len(ys), dtype=np.float32)
    period = max(4, image.shape[0] // 60)
    if texture == STRIPED:
        shade = np.where((ys // period) % 2 == 0, 1.0, 0.55)
    elif texture == DOTTED:
        shade = np.where(((ys % (2 * period)) - period) ** 2 + ((xs % (2 * period)) - period) ** 2 <= period**2 / 2,
                         0.45, 1.0)  # fmt: skip
    shade = shade * rng.uniform(0.9, 1.05)
    image[ys, xs] = np.clip(colour[None, :] * shade[:, None], 0, 255).astype(np.uint8)
