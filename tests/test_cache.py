"""LMDB cache: round trip, SIGKILL and resume, torchrun shards, bad databases."""

from __future__ import annotations

import json
import os
import struct
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest
import torch

from bvdm_data import check_clip
from bvdm_data.cache import LMDBClips, decode_clip, encode_clip
from bvdm_data.cli import main
from bvdm_data.errors import BVDMDataError
from bvdm_data.stream import BVDMStream

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--frames", "3", "--size", "64", "64", "--t-s", "10", "--t-f", "2", "--density", "4e-4", "--seed", "5"]
STREAM = dict(clip_len=3, size=(64, 64), t_s=10, t_f=2, density=4e-4, seed=5)


def cache_cmd(bundle, out, clips, *extra):
    return ["cache", "--bundle", str(bundle), "--out", str(out), "--clips", str(clips), *FAST, *extra]


def test_round_trip_equals_the_stream(tmp_path, tiny_bundle):
    assert main(cache_cmd(tiny_bundle, tmp_path / "c.lmdb", 4, "--commit-every", "3")) == 0
    cached = LMDBClips(tmp_path / "c.lmdb")
    streamed = list(BVDMStream(str(tiny_bundle), num_clips=4, **STREAM))
    assert len(cached) == 4 and cached.meta["num_clips"] == 4
    for k in range(4):
        clip = cached[k]
        check_clip(clip)
        assert clip["meta"]["source"] == "lmdb" and clip["meta"]["cache_index"] == k
        assert torch.equal(clip["masks"], streamed[k]["masks"]) and torch.equal(clip["tracks"], streamed[k]["tracks"])
        assert (clip["video"] - streamed[k]["video"]).abs().max() <= 0.5 / 65535 + 1e-7


def test_encoding_round_trip_and_errors(real_clip):
    for compression in ("zlib", "raw"):
        back = decode_clip(encode_clip(real_clip, compression))
        assert torch.equal(back["masks"], real_clip["masks"]) and back["meta"] == real_clip["meta"]
    value = encode_clip(real_clip)
    with pytest.raises(BVDMDataError, match="checksum mismatch"):
        decode_clip(value[:-100])
    unchecked = encode_clip(real_clip, "raw")  # records written before checksums: the length still guards
    start = len(b"BVDMCLIP") + 4
    (length,) = struct.unpack("<I", unchecked[8:12])
    header = json.loads(unchecked[start:start + length])
    del header["crc32"]
    head = json.dumps(header).encode()
    old = b"BVDMCLIP" + struct.pack("<I", len(head)) + head + unchecked[start + length:]
    assert torch.equal(decode_clip(old)["masks"], real_clip["masks"])
    with pytest.raises(BVDMDataError, match="truncated record"):
        decode_clip(old[:-100])
    with pytest.raises(BVDMDataError, match="not a bvdm-data clip record"):
        decode_clip(b"hello")
    future = value.replace(b'"format_version": 1', b'"format_version": 9')
    with pytest.raises(BVDMDataError, match="record format version 9"):
        decode_clip(future)


def test_sigkill_leaves_whole_clips_and_resume_completes(tmp_path, tiny_bundle):
    # Every run is a fresh process with one environment: a clip's pixels are equal across runs only up to float
    # rounding when the CPU thread count (or another process-wide torch setting) differs, and the bit-for-bit
    # comparison below is about resuming, not about thread counts.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def cache_run(out, pipe=subprocess.PIPE):
        cmd = [sys.executable, "-m", "bvdm_data", *cache_cmd(tiny_bundle, out, 16, "--commit-every", "2")]
        return subprocess.Popen(cmd, stdout=pipe, stderr=pipe, env=env, cwd=ROOT, text=True)

    out = tmp_path / "k.lmdb"
    proc = cache_run(out, pipe=subprocess.DEVNULL)  # never read: a full pipe must not stall it
    deadline = time.time() + 120
    count = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if (out / "data.mdb").is_file():
            with lmdb.open(str(out), readonly=True, lock=False) as e:
                count = e.stat()["entries"] - 1
            if count >= 4:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = LMDBClips(out)
    assert 4 <= len(partial) < 16
    for i in range(len(partial)):
        check_clip(partial[i])
    kept = len(partial)
    partial.close()  # py-lmdb refuses a second open of one environment in a process
    reference = tmp_path / "ref.lmdb"  # uninterrupted, same transactions (= generation batches)
    said = {}
    for path in (out, reference):
        run = cache_run(path)
        said[path], err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
    assert f"wrote {16 - kept} clip(s)" in said[out] and f"({kept} were already there)" in said[out]
    full, ref = LMDBClips(out), LMDBClips(reference)
    assert full.indices == list(range(16))
    for i in (0, 7, 15):
        assert torch.equal(full[i]["masks"], ref[i]["masks"]) and torch.equal(full[i]["video"], ref[i]["video"])


def test_resume_with_other_parameters_is_refused(tmp_path, tiny_bundle, capsys):
    assert main(cache_cmd(tiny_bundle, tmp_path / "p.lmdb", 1)) == 0
    assert main([*cache_cmd(tiny_bundle, tmp_path / "p.lmdb", 1)[:-2], "--seed", "6"]) == 2
    assert "other settings (seed: 5 -> 6)" in capsys.readouterr().err
    # settings added later are recorded only when non-zero: a cache made before them (painted as with 0) resumes
    # with 0 and is refused with the new default
    assert LMDBClips(tmp_path / "p.lmdb").meta["pressed"] == 1.0
    old = tmp_path / "old.lmdb"  # painted as before pressed pairs and drawn image formations
    assert main([*cache_cmd(tiny_bundle, old, 1), "--pressed", "0", "--formation", "none"]) == 0
    assert "pressed" not in LMDBClips(old).meta
    assert main([*cache_cmd(tiny_bundle, old, 1), "--pressed", "0.5", "--formation", "none"]) == 2
    assert "other settings (pressed: None -> 0.5)" in capsys.readouterr().err
    # the stride a cache records is the one taken: DDIM's default 4, DDPM's 1, so that resuming with the other
    # sampler is refused by name
    assert (LMDBClips(old).meta["sampler"], LMDBClips(old).meta["stride"]) == ("ddim", 4)
    assert main([*cache_cmd(tiny_bundle, old, 1), "--pressed", "0", "--formation", "none", "--sampler", "ddpm"]) == 2
    assert "sampler: 'ddim' -> 'ddpm', stride: 4 -> 1" in capsys.readouterr().err
    # a contrast range is recorded (caches made before it have none and resume without one); the clips say their gain
    varied = tmp_path / "contrast.lmdb"
    assert main([*cache_cmd(tiny_bundle, varied, 1), "--contrast", "0.5", "2"]) == 0
    assert LMDBClips(varied).meta["contrast"] == [0.5, 2.0] and "contrast" not in LMDBClips(old).meta
    assert 0.5 <= LMDBClips(varied)[0]["meta"]["synth_gain"] <= 2.0
    assert main(cache_cmd(tiny_bundle, varied, 1)) == 2
    assert "other settings (contrast: [0.5, 2.0] -> None)" in capsys.readouterr().err
    assert main([*cache_cmd(tiny_bundle, varied, 1), "--contrast", "2", "0.5"]) == 2
    assert "contrast must be a range of gains with 0 < lo <= hi, got (2.0, 0.5)" in capsys.readouterr().err
    # so is a magnification range, the same way
    zoomed = tmp_path / "magnification.lmdb"
    assert main([*cache_cmd(tiny_bundle, zoomed, 1), "--magnification", "0.8", "1.25"]) == 0
    assert LMDBClips(zoomed).meta["magnification"] == [0.8, 1.25] and "magnification" not in LMDBClips(old).meta
    assert 0.8 <= LMDBClips(zoomed)[0]["meta"]["synth_magnification"] <= 1.25
    assert main(cache_cmd(tiny_bundle, zoomed, 1)) == 2
    assert "other settings (magnification: [0.8, 1.25] -> None)" in capsys.readouterr().err
    # so is the image formation drawn (by default all three changes): the ranges, and each clip's meta says them
    formed = tmp_path / "formation.lmdb"
    assert main(cache_cmd(tiny_bundle, formed, 1)) == 0
    assert LMDBClips(formed).meta["formation"] == {"contrast": [0.5, 2.0], "blur": [0.3, 2.0], "noise": [1.0, 4.0],
                                                   "p": 0.5} and "formation" not in LMDBClips(old).meta
    assert LMDBClips(formed)[0]["meta"]["synth_formation_blur_hi"] == 2.0
    assert main([*cache_cmd(tiny_bundle, formed, 1), "--formation", "none"]) == 2
    assert "other settings (formation: {" in capsys.readouterr().err
    # an old cache (no formation drawn) resumes only with none
    assert main([*cache_cmd(tiny_bundle, old, 1), "--pressed", "0"]) == 2
    assert "-> {'blur': [0.3, 2.0], 'contrast': [0.5, 2.0]," in capsys.readouterr().err
    # naming changes draws those alone, and the cache holds which
    assert main([*cache_cmd(tiny_bundle, formed, 1), "--formation", "blur", "noise"]) == 2
    assert "-> {'blur': [0.3, 2.0], 'contrast': None," in capsys.readouterr().err
    partial = tmp_path / "blur_noise.lmdb"
    assert main([*cache_cmd(tiny_bundle, partial, 1), "--formation", "noise", "blur"]) == 0
    assert LMDBClips(partial).meta["formation"]["contrast"] is None
    assert "synth_formation_contrast_lo" not in LMDBClips(partial)[0]["meta"]
    assert main([*cache_cmd(tiny_bundle, partial, 1), "--formation", "none", "blur"]) == 2
    assert "--formation none draws nothing; it cannot go with blur" in capsys.readouterr().err
    # the camera noise is keyed and the meta says so: a cache whose drawn noise came from a CPU generator (written
    # before, its meta without the entry) is not resumed with other noise
    assert LMDBClips(formed).meta["formation_noise"] == "keyed" and "formation_noise" not in LMDBClips(old).meta
    from bvdm_data.cache import META_KEY
    with lmdb.open(str(partial), subdir=True) as env, env.begin(write=True) as txn:
        earlier = {k: v for k, v in json.loads(txn.get(META_KEY)).items() if k != "formation_noise"}
        txn.put(META_KEY, json.dumps(earlier, sort_keys=True).encode())
    assert main([*cache_cmd(tiny_bundle, partial, 1), "--formation", "noise", "blur"]) == 2
    assert "formation_noise: None -> 'keyed'" in capsys.readouterr().err


def test_torchrun_shards_equal_a_single_process_cache(tmp_path, tiny_bundle):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun ships with torch"
    out = tmp_path / "dist"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "bvdm_data",
                          *cache_cmd(tiny_bundle, out, 5)], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((out / "shards.json").read_text())["shards"] == ["shard-000-of-002", "shard-001-of-002"]
    sharded = LMDBClips(out)
    assert main(cache_cmd(tiny_bundle, tmp_path / "single.lmdb", 5)) == 0
    single = LMDBClips(tmp_path / "single.lmdb")
    assert sharded.indices == single.indices == list(range(5))
    for i in range(5):
        assert torch.equal(sharded[i]["masks"], single[i]["masks"])
        assert torch.equal(sharded[i]["tracks"], single[i]["tracks"])
        # Pixels agree up to float rounding: the torchrun workers use one thread, this process
        # another count, and convolution sums in a thread-dependent order.
        assert (sharded[i]["video"] - single[i]["video"]).abs().max() < 1e-3


def test_bad_databases_are_named(tmp_path):
    with pytest.raises(BVDMDataError, match="no such cache"):
        LMDBClips(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BVDMDataError, match="no LMDB cache here"):
        LMDBClips(tmp_path / "empty")
    with lmdb.open(str(tmp_path / "foreign")) as env, env.begin(write=True) as txn:
        txn.put(b"key", b"value")
    with pytest.raises(BVDMDataError, match="not a bvdm-data cache"):
        LMDBClips(tmp_path / "foreign")
    with lmdb.open(str(tmp_path / "future")) as env, env.begin(write=True) as txn:
        txn.put(b"__meta__", json.dumps({"format_version": 7}).encode())
    with pytest.raises(BVDMDataError, match="cache format version 7"):
        LMDBClips(tmp_path / "future")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "data.mdb").write_bytes(b"\0" * 100)
    with pytest.raises(BVDMDataError, match="data.mdb: not an LMDB file, or truncated"):
        LMDBClips(tmp_path / "corrupt")


def test_info_on_a_cache(tmp_path, tiny_bundle, capsys):
    assert main(cache_cmd(tiny_bundle, tmp_path / "i.lmdb", 2)) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "i.lmdb")]) == 0
    assert "2 clips in 1 shard(s)" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "i.lmdb"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clips"] == 2 and info["shards"] == 1 and info["t_s"] == 10
