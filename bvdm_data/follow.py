"""Train on a cache while another process is still filling it.

A GPU trainer eats clips several times faster than one GPU paints them
(``benchmarks/RESULTS.md`` §4), so on the fly it starves. ``bvdm-data
cache`` in one process and :class:`FollowedCache` in the trainer's
``DataLoader`` decouple the two: the trainer runs at its own speed on the
clips committed so far, drawn at random, and sees new ones as they land.
LMDB lets one writer and many readers share a file safely when the readers
take the lock table (``lock=True``); :class:`~bvdm_data.cache.LMDBClips`
opens without it and is for finished caches only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from bvdm_data.cache import SHARDS, LMDBClips, committed_indices, read_clip
from bvdm_data.errors import BVDMDataError


class FollowedCache(IterableDataset):
    """An endless stream of clips drawn at random from an LMDB cache that may still be growing.

    Every ``refresh_s`` seconds the list of committed clips is read again, so
    clips written since join the draw. The first clip waits until the cache
    exists, has its metadata and holds ``min_clips`` (at most ``timeout_s`` seconds, else an error naming
    what is there). Draws are with replacement from a generator keyed by
    ``seed`` and the ``DataLoader`` worker's id, so workers differ; which
    clips a draw can reach depends on when they were written, so a run that
    follows a growing cache is not repeatable clip for clip (a finished cache
    is: the same seed gives the same sequence). Each item's ``meta`` gives its
    ``cache_index``.

    Example:
        >>> # one process: bvdm-data cache --out synth.lmdb --clips 100000 --device cuda
        >>> loader = DataLoader(FollowedCache("synth.lmdb", min_clips=64), batch_size=2,  # doctest: +SKIP
        ...                     num_workers=2, collate_fn=list)
    """

    def __init__(self, path: str | os.PathLike, seed: int = 0, refresh_s: float = 2.0, min_clips: int = 1,
                 timeout_s: float = 600.0, transform: Callable[[dict], Any] | None = None) -> None:
        if min_clips < 1:
            raise BVDMDataError(f"min_clips must be at least 1, got {min_clips}")
        if refresh_s < 0 or timeout_s < 0:
            raise BVDMDataError(f"refresh_s and timeout_s must be >= 0, got {refresh_s} and {timeout_s}")
        self.path = Path(path)
        self.seed, self.refresh_s, self.min_clips, self.timeout_s = int(seed), float(refresh_s), int(min_clips), \
            float(timeout_s)
        self.transform = transform

    def __repr__(self) -> str:
        return (f"FollowedCache({str(self.path)!r}, seed={self.seed}, refresh_s={self.refresh_s}, "
                f"min_clips={self.min_clips})")

    def _open(self, deadline: float) -> lmdb.Environment:
        if (self.path / SHARDS).is_file():
            raise BVDMDataError(f"{self.path}: a sharded cache; follow one shard folder each, or read the finished "
                                "cache with LMDBClips")
        while not (self.path / "data.mdb").is_file():
            if time.monotonic() > deadline:
                raise BVDMDataError(f"{self.path}: no cache appeared within {self.timeout_s:g} s")
            time.sleep(min(0.5, self.refresh_s or 0.5))
        try:  # the lock table is what makes reading beside a live writer safe
            env = lmdb.open(str(self.path), readonly=True, lock=True, readahead=False, subdir=True, max_dbs=0)
        except lmdb.Error as err:
            raise BVDMDataError(f"{self.path}: cannot open the LMDB cache to follow it ({err})") from err
        while True:  # a writer creates the file a moment before it commits the cache's metadata
            try:
                LMDBClips._read_meta(env, self.path)  # a bvdm-data cache of this format, or a clear error
                return env
            except BVDMDataError:
                if time.monotonic() > deadline:
                    env.close()
                    raise
                time.sleep(min(0.5, self.refresh_s or 0.5))

    @staticmethod
    def _adopting_resize(env: lmdb.Environment, read: Callable[[], Any]) -> Any:
        """``read()``; if the writer grew the map meanwhile, adopt its size and read again."""
        try:
            return read()
        except (lmdb.MapResizedError, BVDMDataError) as err:
            if not isinstance(err, lmdb.MapResizedError) and not isinstance(err.__cause__, lmdb.MapResizedError):
                raise
            env.set_mapsize(0)
            return read()

    def _committed(self, env: lmdb.Environment) -> list[int]:
        return self._adopting_resize(env, lambda: sorted(committed_indices(env)))

    def __iter__(self) -> Iterator[Any]:
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, worker.id if worker is not None else 0])
        deadline = time.monotonic() + self.timeout_s
        env = self._open(deadline)
        try:
            indices = self._committed(env)
            while len(indices) < self.min_clips:
                if time.monotonic() > deadline:
                    raise BVDMDataError(f"{self.path}: {len(indices)} clips after {self.timeout_s:g} s, "
                                        f"min_clips={self.min_clips}; is a writer filling it?")
                time.sleep(min(0.5, self.refresh_s or 0.5))
                indices = self._committed(env)
            checked = time.monotonic()
            while True:
                if time.monotonic() - checked >= self.refresh_s:
                    indices, checked = self._committed(env), time.monotonic()
                index = indices[int(rng.integers(len(indices)))]
                clip = self._adopting_resize(env, lambda: read_clip(env, index, self.path))
                yield self.transform(clip) if self.transform is not None else clip
        finally:
            env.close()


__all__ = ["FollowedCache"]
