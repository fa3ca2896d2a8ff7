"""Damaged and hand-made caches get one clear error naming the file; caches grow; readers share environments."""

from __future__ import annotations

import json
import struct
import zlib

import lmdb
import pytest
import torch

from bvdm_data.cache import MAGIC, LMDBClips, decode_clip, encode_clip, write_cache
from bvdm_data.cli import main
from bvdm_data.errors import BVDMDataError


def make(path, clips, compression="zlib", count=3, meta=None):
    return write_cache(path, meta or {"num_clips": count, "kind": "test"}, range(count),
                       lambda idx: [{**clips, "meta": {"source": "test", "index": k}} for k in idx],
                       compression=compression, progress=False)


@pytest.fixture()
def small_clip(real_clip):
    return {k: (v[:2, ..., :48, :48] if k in ("video", "masks") else v) for k, v in real_clip.items()} | {
        "tracks": torch.zeros(0, 4, dtype=torch.int64), "masks": torch.zeros(2, 48, 48, dtype=torch.int32)}


def test_truncated_data_file_is_refused_before_mapping(tmp_path, small_clip):
    make(tmp_path / "c", small_clip, count=12)
    data = tmp_path / "c" / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(BVDMDataError, match="data.mdb: truncated"):
        LMDBClips(tmp_path / "c")


def test_raw_records_carry_a_checksum(small_clip):
    value = bytearray(encode_clip(small_clip, "raw"))
    value[-10] ^= 0xFF
    with pytest.raises(BVDMDataError, match="checksum mismatch"):
        decode_clip(bytes(value), "rec")


def test_decompression_is_capped_by_the_declared_shape(small_clip):
    good = encode_clip(small_clip)
    (length,) = struct.unpack("<I", good[len(MAGIC):len(MAGIC) + 4])
    header = json.loads(good[len(MAGIC) + 4:len(MAGIC) + 4 + length])
    bomb = zlib.compress(bytes(50_000_000), 9)
    header.pop("crc32")
    head = json.dumps(header).encode()
    with pytest.raises(BVDMDataError, match="inflates past"):
        decode_clip(MAGIC + struct.pack("<I", len(head)) + head + bomb, "rec")


def test_missing_header_keys_are_named(small_clip):
    head = json.dumps({"format_version": 1, "meta": {}}).encode()
    with pytest.raises(BVDMDataError, match="lacks \\['compression', 'arrays', 'arrays.video'"):
        decode_clip(MAGIC + struct.pack("<I", len(head)) + head, "rec")


def test_corrupt_pages_name_the_file(tmp_path, small_clip):
    make(tmp_path / "c", small_clip, count=12)
    data = tmp_path / "c" / "data.mdb"
    raw = bytearray(data.read_bytes())
    for offset in range(2 * 4096, len(raw), 4096):  # every page after the two meta pages: headers destroyed
        raw[offset:offset + 16] = b"\xff" * 16
    data.write_bytes(bytes(raw))
    with pytest.raises(BVDMDataError, match="data.mdb"):
        clips = LMDBClips(tmp_path / "c")
        [clips[i] for i in range(len(clips))]


def test_two_readers_of_one_cache_in_one_process(tmp_path, small_clip):
    make(tmp_path / "c", small_clip)
    a, b = LMDBClips(tmp_path / "c"), LMDBClips(tmp_path / "c")
    assert "3 clips in 1 shard(s)" in repr(a)
    assert torch.equal(a[0]["video"], b[1]["video"])
    a.close()
    assert torch.equal(b[2]["masks"], small_clip["masks"])


def test_a_cache_grows_and_names_only_the_settings_that_differ(tmp_path, small_clip):
    assert make(tmp_path / "c", small_clip, count=3) == 3
    assert make(tmp_path / "c", small_clip, count=5, meta={"num_clips": 5, "kind": "test"}) == 2
    assert len(LMDBClips(tmp_path / "c")) == 5 and LMDBClips(tmp_path / "c").meta["num_clips"] == 5
    with pytest.raises(BVDMDataError, match=r"other settings \(kind: 'test' -> 'other'\)"):
        make(tmp_path / "c", small_clip, count=5, meta={"num_clips": 5, "kind": "other"})


def test_cli_refuses_a_sharded_cache_without_torchrun(tmp_path, capsys):
    (tmp_path / "c" / "shard-000-of-002").mkdir(parents=True)
    assert main(["cache", "--out", str(tmp_path / "c"), "--clips", "2"]) != 0
    assert "sharded cache" in capsys.readouterr().err


def test_lmdb_is_real_lmdb(tmp_path, small_clip):
    make(tmp_path / "c", small_clip)
    with lmdb.open(str(tmp_path / "c"), readonly=True, lock=False) as env:
        assert env.stat()["entries"] == 4  # 3 clips and the meta record


def test_info_and_resume_on_a_truncated_cache_are_one_line(tmp_path, small_clip, capsys):
    make(tmp_path / "c", small_clip, count=12)
    data = tmp_path / "c" / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert main(["info", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err.strip()
    assert "truncated" in err and len(err.splitlines()) == 1
    with pytest.raises(BVDMDataError, match="truncated"):
        make(tmp_path / "c", small_clip, count=12)
