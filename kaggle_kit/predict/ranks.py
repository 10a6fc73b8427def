"""`stream_predict` on N processes (one per GPU, started by torchrun or accelerate launch): same call, same bytes.

When torch.distributed is initialised with more than one process, each chunk is split across the ranks by index
(rank r predicts the chunk's items r, r + N, r + 2N, ...), the predictions travel to rank 0 with their place in the
chunk, and rank 0 puts them back in order, writes them through the sink and commits the manifest, exactly as one
process would. The other ranks write nothing and hold no more than their share of a chunk. Every decision (where to
start, how big the next chunk is, whether to stop for time) is rank 0's, broadcast, so every rank enters the same
collectives in the same order. Nothing here runs in a single process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kaggle_kit.errors import KaggleKitError

__all__ = ["Ranks", "RanksDisagreeError"]


class RanksDisagreeError(KaggleKitError):
    """The processes of a multi-process launch were given different arguments; ``value``: the ranks that differ."""


@dataclass(frozen=True)
class Ranks:
    """This process's `rank` among `world` processes of an initialised torch.distributed group."""

    rank: int
    world: int

    @classmethod
    def current(cls) -> Ranks | None:
        """The ranks of the running process group, or None for one process (or none initialised)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def main(self) -> bool:
        """True on rank 0, the only writer."""
        return self.rank == 0

    def share(self, index: np.ndarray) -> np.ndarray:
        """This rank's items of a chunk's `index`: every `world`-th, from its rank."""
        return index[self.rank :: self.world]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_chunk(self, n: int, preds: np.ndarray | None, ok: np.ndarray | None,
                     skipped: dict[int, str]) -> tuple[np.ndarray, np.ndarray, dict[int, str]] | None:  # fmt: skip
        """On rank 0: the chunk's `n` predictions in chunk order, its ok mask and unreadable items (positions in the
        chunk), from every rank's share; None on the other ranks."""
        import torch.distributed as dist

        parts: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object((preds, ok, skipped), parts, dst=0)
        if parts is None:
            return None
        shares = [p for p, _o, _s in parts if p is not None and len(p)]
        readable = [p for p, o, _s in parts if p is not None and len(p) and o.any()]
        first = (readable or shares)[0]
        out = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        ok_all = np.ones(n, dtype=bool)
        skipped_all: dict[int, str] = {}
        for r, (p, o, s) in enumerate(parts):
            if p is None or not len(p):
                continue
            if p.shape[1:] == first.shape[1:]:
                out[r :: self.world] = p
            else:  # a share of unreadable items only: its placeholders had no prediction to take a shape from
                out[r :: self.world] = np.nan if np.issubdtype(out.dtype, np.floating) else 0
            ok_all[r :: self.world] = o
            skipped_all.update({r + k * self.world: why for k, why in s.items()})
        return out, ok_all, skipped_all

    def agree(self, value: Any, what: str) -> None:
        """Check that every rank holds rank 0's `value` (e.g. the items' count and digest); on a difference every
        rank raises the same one-line `RanksDisagreeError`, before anything is written (all enter one collective)."""
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            raise RanksDisagreeError(f"rank {differ[0]} was given other {what} than rank 0: every rank must make the "
                                     "same stream_predict call (the same items, in the same order); nothing was "
                                     "written", differ)  # fmt: skip

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value`, in rank order, on rank 0; None on the other ranks."""
        import torch.distributed as dist

        values: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object(value, values, dst=0)
        return values

    def barrier(self) -> None:
        """Wait until every rank is here."""
        import torch.distributed as dist

        dist.barrier()
