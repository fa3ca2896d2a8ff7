"""``MixedStream``: real and synthetic clips in one loader, in a fixed, seeded proportion."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from bvdm_data.arguments import as_int
from bvdm_data.clip import Clip
from bvdm_data.stream import shard


class MixedStream(IterableDataset):
    """Draw each clip from ``real`` with probability ``p_real``, else from ``synthetic``.

    ``p_real=0.5`` (default): half of the clips real, the share every mixed
    number of benchmarks/RESULTS.md was measured with; a quarter or three
    quarters synthetic scored no better on HeLa or GOWT1 (RESULTS.md §1, "How
    much of each batch synthetic"). The share stays the same over training:
    synthetic clips first and real ones last gave up GOWT1's gain (RESULTS.md
    §1, "Synthetic crops first, real ones last").

    Either source may be map-style (``CTCClips``, ``LMDBClips``: an item is
    drawn at random) or iterable (``BVDMStream``: its clips are taken in
    order). Draw ``k`` of epoch ``e`` is decided by ``(seed, e, k)``; draws are
    dealt out over DataLoader workers and distributed ranks like
    ``BVDMStream``'s clips, and an iterable source shards itself the same way,
    so no two workers take the same synthetic clip. ``meta["source"]`` keeps
    the clip's own source (``ctc``, ``lmdb``, ``bvdm``) and
    ``meta["mixed_from"]`` says ``real`` or ``synthetic``. ``transform`` is
    called on each clip before it is yielded, like ``CTCClips``'s.

    Example:
        >>> mixed = MixedStream(real=CTCClips(...), synthetic=LMDBClips("synth.lmdb"))  # doctest: +SKIP
    """

    def __init__(self, real: Dataset | IterableDataset, synthetic: Dataset | IterableDataset, p_real: float = 0.5,
                 seed: int = 0, num_clips: int | None = None, transform: Callable[[Clip], Any] | None = None) -> None:
        super().__init__()
        if not 0.0 <= p_real <= 1.0:
            raise ValueError(f"p_real must lie in [0, 1], got {p_real}")
        if num_clips is not None and num_clips < 0:
            raise ValueError(f"num_clips must be non-negative or None, got {num_clips}")
        for name, source in (("real", real), ("synthetic", synthetic)):
            if not isinstance(source, IterableDataset) and not (hasattr(source, "__len__")
                                                                and hasattr(source, "__getitem__")):
                raise ValueError(f"the {name} source must be a dataset (map-style, e.g. CTCClips, LMDBClips, a "
                                 f"list of clips; or iterable, e.g. BVDMStream), got {type(source).__name__}")
            if not isinstance(source, IterableDataset) and len(source) == 0:  # type: ignore[arg-type]
                raise ValueError(f"the {name} source is empty")
        self.sources = {"real": real, "synthetic": synthetic}
        self.p_real, self.seed, self.num_clips = float(p_real), as_int("seed", seed, 0), num_clips
        self.transform = transform
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # reaches persistent workers

    def __repr__(self) -> str:
        names = {k: type(v).__name__ for k, v in self.sources.items()}
        return (f"MixedStream(real={names['real']}, synthetic={names['synthetic']}, p_real={self.p_real}, "
                f"seed={self.seed}, num_clips={self.num_clips})")

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """New draws, and new epochs for the sources that have one (persistent DataLoader workers included)."""
        self._epoch.fill_(as_int("epoch", epoch, 0))
        for source in self.sources.values():
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)

    def __len__(self) -> int:
        if self.num_clips is None:
            raise TypeError("an endless MixedStream has no length; pass num_clips")
        position, count = shard()
        return len(range(position, self.num_clips, count))

    def __iter__(self) -> Iterator[Clip]:
        position, count = shard()
        draws = range(position, self.num_clips, count) if self.num_clips is not None else itertools.count(position, count)
        streams: dict[str, Iterator[Any]] = {}
        epoch = self.epoch
        for k in draws:
            rng = np.random.default_rng([self.seed, epoch, k])
            name = "real" if rng.random() < self.p_real else "synthetic"
            source = self.sources[name]
            if isinstance(source, IterableDataset):
                clip = next(streams.setdefault(name, iter(source)), None)
                if clip is None:  # a finite iterable source is used up
                    return
            else:
                clip = source[int(rng.integers(len(source)))]  # type: ignore[arg-type]
            clip = {**clip, "meta": {**clip["meta"], "mixed_from": name, "mix_index": k}}
            yield self.transform(clip) if self.transform is not None else clip
