"""FollowedCache: training on a cache while another process fills it."""

from __future__ import annotations

import subprocess
import sys
import time
from itertools import islice

import lmdb
import pytest
import torch

from bvdm_data import FollowedCache, check_clip
from bvdm_data.errors import BVDMDataError

WRITER = """
import sys, time, torch
from bvdm_data.cache import write_cache

def clip(k):
    masks = torch.zeros(2, 16, 16, dtype=torch.int32)
    masks[:, 2:6, 2 + k:6 + k] = 1
    return {"video": masks[:, None].float() * 0.5, "masks": masks, "tracks": torch.tensor([[1, 0, 1, 0]]),
            "meta": {"source": "test", "k": k}}

def slow(indices):
    time.sleep(float(sys.argv[3]))
    return [clip(k) for k in indices]

write_cache(sys.argv[1], {"bundle": "test"}, range(int(sys.argv[2])), slow, commit_every=1, progress=False)
"""


def _writer(path, clips: int, pause_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(clips), str(pause_s)])


def test_a_reader_follows_a_cache_while_another_process_fills_it(tmp_path):
    path = tmp_path / "live.lmdb"
    writer = _writer(path, 6, 0.4)
    try:
        seen, alive_at_first = [], None
        for clip in FollowedCache(path, refresh_s=0.05, timeout_s=60):
            check_clip(clip)
            if alive_at_first is None:
                alive_at_first = writer.poll() is None
            seen.append(clip["meta"]["cache_index"])
            if 5 in seen:
                break
            time.sleep(0.01)
        assert alive_at_first, "the first clip should be read while the writer still writes"
        assert seen[0] < 5 and seen[-1] == 5  # began on the first clips, ended seeing the last one
        assert clip["meta"]["source"] == "lmdb" and clip["meta"]["origin"] == "test"
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0


def test_a_finished_cache_gives_the_same_draws_for_the_same_seed(tmp_path):
    path = tmp_path / "done.lmdb"
    assert _writer(path, 5, 0.0).wait(timeout=60) == 0
    draws = {seed: [c["meta"]["cache_index"] for c in islice(FollowedCache(path, seed=seed), 30)] for seed in (0, 0, 1)}
    first = [c["meta"]["cache_index"] for c in islice(FollowedCache(path, seed=0), 30)]
    assert first == draws[0] and draws[1] != draws[0] and set(first) == set(range(5))
    loader = torch.utils.data.DataLoader(FollowedCache(path, min_clips=5), batch_size=4, num_workers=0,
                                         collate_fn=list)
    assert len(next(iter(loader))) == 4


def test_followed_cache_says_what_is_missing(tmp_path):
    with pytest.raises(BVDMDataError, match="min_clips must be at least 1"):
        FollowedCache(tmp_path / "x", min_clips=0)
    with pytest.raises(BVDMDataError, match=r"no cache appeared within 0.2 s"):
        next(iter(FollowedCache(tmp_path / "never", timeout_s=0.2)))
    path = tmp_path / "small.lmdb"
    assert _writer(path, 2, 0.0).wait(timeout=60) == 0
    with pytest.raises(BVDMDataError, match=r"2 clips after 0.3 s, min_clips=3; is a writer filling it\?"):
        next(iter(FollowedCache(path, min_clips=3, timeout_s=0.3)))
    (tmp_path / "sharded").mkdir()
    (tmp_path / "sharded" / "shards.json").write_text("{}")
    with pytest.raises(BVDMDataError, match="a sharded cache; follow one shard folder each"):
        next(iter(FollowedCache(tmp_path / "sharded")))
    other = tmp_path / "other.lmdb"
    env = lmdb.open(str(other), subdir=True)
    with env.begin(write=True) as txn:
        txn.put(b"a", b"b")
    env.close()
    with pytest.raises(BVDMDataError, match="not a bvdm-data cache"):  # after waiting for a writer's metadata
        next(iter(FollowedCache(other, timeout_s=0.3)))
