"""From one image's stage-1 probabilities to instances: per category, a threshold, a smallest area and whether touching
instances are split apart.

One fixed threshold for 46 categories is the wrong setting for most of them: a large garment wants a low threshold
(its probability fades towards its edges), a small part a high one or a minimum size (specks of false positives cost
as much as a missed object in the metric). ``kaggle_kit.imaterialist.tuning`` chooses the settings per category on
validation; this module applies them, identically in validation and in the submission.

Touching instances of one category (two shoes in contact) are one connected component after thresholding. `split`
separates them, in one of two ways; whether (and how) splitting helps a category is tuned, not assumed.
- "shape": the distance to the component's edge has one peak per convex lobe; the pixels within `SPLIT_CORE` of its
  deepest point seed the instances. A long thin object has one ridge and stays whole.
- "peaks": the probability map has one peak per instance even where the instances merge above the threshold (the
  model is less sure between two shoes); the pixels above halfway from the threshold to the component's maximum
  probability seed the instances: a watershed on the probability map, with two levels.
Either way every pixel of the component then goes to its nearest seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from kaggle_kit.errors import UsageError

__all__ = [
    "CategoryRule",
    "PostProcessing",
    "split_touching",
    "components",
    "kept_labels",
    "exclusive_categories",
    "SPLIT_CORE",
    "DEFAULT_RULE",
]

SPLITS = (None, "shape", "peaks")
SPLIT_CORE = 0.7  # seeds: pixels deeper than this share of their component's maximum depth


@dataclass(frozen=True)
class CategoryRule:
    """How one category's probability map becomes instances. `threshold`: probability above which a pixel belongs
    to the category; `min_area`: smallest instance kept, as a share of the model-size image; `split`: separate
    touching instances, None, "shape" or "peaks" (see the module's text); `max_instances`: keep only the largest
    ones (a person wears one pair of pants: the rest are fragments or another category's pixels), None keeps all."""

    threshold: float = 0.5
    min_area: float = 0.002
    split: str | None = None
    max_instances: int | None = None


DEFAULT_RULE = CategoryRule()


class PostProcessing:
    """The rules of every category (stage-1 channel order `category_ids`); categories without their own rule use
    `default`. `exclusive`: categories that do not share pixels (whole garments: their masks are what is visible;
    ``exclusive_categories`` finds them in train.csv): each pixel keeps the probability of the most likely of them
    only, so a top is not also predicted as a shirt and a jacket in the same place. Saved with the model as a dict
    (``as_dict``/``from_dict``) so a resumed run writes the same rows."""

    def __init__(
        self,
        category_ids: Sequence[int],
        default: CategoryRule = DEFAULT_RULE,
        rules: Mapping[int, CategoryRule] | None = None,
        exclusive: Sequence[int] = (),
    ):
        self.category_ids = [int(c) for c in category_ids]
        self.default = default
        self.rules = {int(c): r for c, r in (rules or {}).items() if r != default}
        self.exclusive = sorted(int(c) for c in exclusive)
        self._exclusive_channels = [i for i, c in enumerate(self.category_ids) if c in set(self.exclusive)]

    def rule(self, category: int) -> CategoryRule:
        """The rule that applies to `category`."""
        return self.rules.get(int(category), self.default)

    def instances(self, prob: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(category id, model-size boolean mask) of each instance in one image's (categories, H, W) probabilities."""
        prob = self.apply_exclusive(prob)
        for channel, category in enumerate(self.category_ids):
            rule = self.rule(category)
            binary = prob[channel] > rule.threshold
            if not binary.any():
                continue
            labels, sizes = components(binary, rule.split, prob[channel])
            for label in kept_labels(sizes, rule, binary.size):
                yield category, labels == label

    def apply_exclusive(self, prob: np.ndarray) -> np.ndarray:
        """`prob` with the exclusive categories' probabilities zeroed where another of them is more likely (a copy
        of those channels; `prob` itself is not changed)."""
        if len(self._exclusive_channels) < 2:
            return prob
        group = prob[self._exclusive_channels]
        winner = group.argmax(axis=0)
        out = prob.copy()
        out[self._exclusive_channels] = np.where(np.arange(len(group))[:, None, None] == winner, group, 0)
        return out

    def as_dict(self) -> dict:
        """JSON-ready: what ``from_dict`` reads back."""
        return {
            "category_ids": self.category_ids,
            "default": asdict(self.default),
            "rules": {str(c): asdict(r) for c, r in sorted(self.rules.items())},
            "exclusive": self.exclusive,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> PostProcessing:
        """The PostProcessing that `as_dict` wrote."""
        return cls(
            data["category_ids"],
            CategoryRule(**data["default"]),
            {int(c): CategoryRule(**r) for c, r in data.get("rules", {}).items()},
            data.get("exclusive", ()),
        )

    def signature(self) -> dict:
        """What identifies these rules when a submission resumes."""
        return self.as_dict()


def kept_labels(sizes: np.ndarray, rule: CategoryRule, n_pixels: int) -> np.ndarray:
    """The labels `rule` keeps, given the component `sizes` (from ``components``) in an image of `n_pixels`: at
    least `min_area`, and the `max_instances` largest of those."""
    kept = np.flatnonzero(sizes >= max(1.0, rule.min_area * n_pixels))
    if rule.max_instances is not None and len(kept) > rule.max_instances:
        kept = np.sort(kept[np.argsort(-sizes[kept], kind="stable")[: rule.max_instances]])
    return kept


def exclusive_categories(masks: Iterable[Mapping[int, np.ndarray]], max_overlap: float = 0.05) -> list[int]:
    """The largest set of categories that do not share pixels in the training images' `masks` (per image,
    category -> its boolean mask, all instances together, any size): categories are dropped, the most covered by
    the others first, until no two left overlap by more than `max_overlap` of the smaller one's pixels (summed
    over images).
    On iMaterialist data these are the whole garments; parts (a sleeve is also its top) drop out."""
    inter: dict[tuple[int, int], int] = {}
    area: dict[int, int] = {}
    for image in masks:
        sizes = {c: int(m.sum()) for c, m in image.items()}
        for c, n in sizes.items():
            area[c] = area.get(c, 0) + n
        cats = sorted(image)
        for i, a in enumerate(cats):
            for b in cats[i + 1 :]:
                inter[a, b] = inter.get((a, b), 0) + int((image[a] & image[b]).sum())
    overlap = {k: v / max(1, min(area[k[0]], area[k[1]])) for k, v in inter.items()}
    left = set(area)
    while True:
        bad = {k: v for k, v in overlap.items() if k[0] in left and k[1] in left and v > max_overlap}
        if not bad:
            return sorted(left)
        covered: dict[int, float] = {}  # share of a category's own pixels under the others: parts lose
        for a, b in bad:
            covered[a] = covered.get(a, 0.0) + inter[a, b] / max(1, area[a])
            covered[b] = covered.get(b, 0.0) + inter[a, b] / max(1, area[b])
        left.remove(max(sorted(covered), key=covered.get))


def components(binary: np.ndarray, split: str | None, prob: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label the connected components of a 2-D boolean array, touching instances split apart by `split` ("shape",
    or "peaks" of `prob`, the probabilities `binary` was thresholded from). Returns (labels, sizes): labels 1..n,
    background 0; sizes[k] is the pixel count of label k (sizes[0] = 0)."""
    if split not in SPLITS:
        raise UsageError(f"split={split!r}; expected one of {SPLITS}")
    labels, n = ndimage.label(binary)
    if split and n:
        labels = split_touching(labels, split, prob)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels, sizes


def split_touching(labels: np.ndarray, how: str, prob: np.ndarray | None = None) -> np.ndarray:
    """Relabel components (1..n in `labels`) so that touching instances become labels of their own: seeds by
    `how` ("shape": deepest parts; "peaks": most probable parts of `prob`), then each pixel to its nearest seed."""
    out = np.zeros_like(labels)
    next_label = 1
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = np.pad(labels[box] == index, 1)  # a border of background: depth is measured to the component's edge
        if how == "shape":
            depth = ndimage.distance_transform_edt(mask)
            seeds, n_seeds = ndimage.label(depth > SPLIT_CORE * depth.max())
        else:
            inside = np.where(mask, np.pad(prob[box], 1), 0.0)
            low = inside[mask].min()
            seeds, n_seeds = ndimage.label(inside > low + 0.5 * (inside.max() - low))
        if n_seeds > 1:  # each pixel goes to its nearest seed
            rows, cols = ndimage.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
            parts = np.where(mask, seeds[rows, cols], 0)[1:-1, 1:-1]
        else:
            parts = mask[1:-1, 1:-1].astype(labels.dtype)
        region = out[box]
        region[parts > 0] = parts[parts > 0] + (next_label - 1)
        next_label += max(n_seeds, 1)
    return out
