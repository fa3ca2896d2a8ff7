"""Pre-generated clips in LMDB: a resumable writer and the ``LMDBClips`` reader.

A clip is stored under its stream index (``clip/000000000042``) as a
versioned binary record: a magic, a JSON header (format version, array
shapes and dtypes, encoding, meta) and the raw arrays, zlib-compressed by
default. No pickle. A ``__meta__`` record holds the format version, the
bundle's manifest hash and the generation parameters; writing commits every
``commit_every`` clips in one transaction, so a killed writer leaves only
whole clips, and running the same command again resumes with the missing
indices. The map grows by doubling when it is full.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import torch
from torch.utils.data import Dataset

from bvdm_data.clip import Clip, check_clip
from bvdm_data.errors import BVDMDataError

CACHE_FORMAT_VERSION = 1
MAGIC = b"BVDMCLIP"
META_KEY = b"__meta__"
INITIAL_MAP_SIZE = 1 << 30
ENCODINGS = ("zlib", "raw")
HEADER_KEYS = ("compression", "meta", "arrays")
ARRAY_NAMES = ("video", "masks", "tracks")
GROWABLE = ("num_clips",)  # meta keys that may change between runs on one cache


def clip_key(index: int) -> bytes:
    return f"clip/{index:012d}".encode()


def encode_clip(clip: Clip, compression: str = "zlib") -> bytes:
    """A clip as bytes: magic, header length, JSON header, then the arrays (video as uint16 0..65535)."""
    if compression not in ENCODINGS:
        raise BVDMDataError(f"compression must be one of {ENCODINGS}, got {compression!r}")
    video = np.round(clip["video"].detach().cpu().numpy().clip(0, 1) * 65535).astype("<u2")
    arrays = {"video": video, "masks": clip["masks"].cpu().numpy().astype("<i4"),
              "tracks": clip["tracks"].cpu().numpy().astype("<i8")}
    payload = b"".join(a.tobytes() for a in arrays.values())
    if compression == "zlib":
        payload = zlib.compress(payload, 1)
    # crc32 of the stored payload: raw records have no other check, and a flipped byte would pass as pixels.
    header = {"format_version": CACHE_FORMAT_VERSION, "compression": compression, "meta": dict(clip["meta"]),
              "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
              "crc32": zlib.crc32(payload)}
    head = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + payload


def decode_clip(value: bytes, where: str = "record") -> Clip:
    """Inverse of :func:`encode_clip`; a record of another format or a truncated one gets a clear error."""
    if not value.startswith(MAGIC) or len(value) < len(MAGIC) + 4:
        raise BVDMDataError(f"{where}: not a bvdm-data clip record")
    (length,) = struct.unpack("<I", value[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(value[start:start + length])
    except ValueError as err:
        raise BVDMDataError(f"{where}: corrupt record header ({err})") from err
    if not isinstance(header, dict):
        raise BVDMDataError(f"{where}: corrupt record header (not a JSON object)")
    version = header.get("format_version")
    if version != CACHE_FORMAT_VERSION:
        raise BVDMDataError(f"{where}: record format version {version}, this bvdm-data reads {CACHE_FORMAT_VERSION}")
    missing = [k for k in HEADER_KEYS if k not in header]
    missing += [f"arrays.{k}" for k in ARRAY_NAMES if k not in header.get("arrays", {})]
    if missing:
        raise BVDMDataError(f"{where}: record header lacks {missing}")
    try:
        specs = {k: (np.dtype(header["arrays"][k]["dtype"]), [int(n) for n in header["arrays"][k]["shape"]])
                 for k in ARRAY_NAMES}
    except (KeyError, TypeError, ValueError) as err:
        raise BVDMDataError(f"{where}: corrupt array description in the record header ({err})") from err
    expected = sum(int(np.prod(shape)) * dtype.itemsize for dtype, shape in specs.values())
    payload = value[start + length:]
    if "crc32" in header and zlib.crc32(payload) != header["crc32"]:
        raise BVDMDataError(f"{where}: checksum mismatch: the record is corrupt")
    if header["compression"] == "zlib":
        # Never inflate past what the header declares (a small corrupt record must not become gigabytes).
        inflater = zlib.decompressobj()
        try:
            payload = inflater.decompress(payload, expected)
        except zlib.error as err:
            raise BVDMDataError(f"{where}: truncated or corrupt record ({err})") from err
        if inflater.unconsumed_tail:
            raise BVDMDataError(f"{where}: record inflates past the {expected} bytes its header declares")
    elif header["compression"] != "raw":
        raise BVDMDataError(f"{where}: unknown record encoding {header['compression']!r}")
    if len(payload) != expected:
        raise BVDMDataError(f"{where}: truncated record ({len(payload)} bytes, its arrays need {expected})")
    arrays, offset = {}, 0
    for name, (dtype, shape) in specs.items():
        count = int(np.prod(shape))
        arrays[name] = np.frombuffer(payload, dtype, count, offset).reshape(shape)
        offset += count * dtype.itemsize
    return {"video": torch.from_numpy(arrays["video"].astype(np.float32) / 65535.0),
            "masks": torch.from_numpy(arrays["masks"].astype(np.int32)),
            "tracks": torch.from_numpy(arrays["tracks"].astype(np.int64)), "meta": header["meta"]}


LMDB_MAGIC = 0xBEEFC0DE


def check_lmdb_file(folder: Path) -> None:
    """Refuse a ``data.mdb`` shorter than its own newest meta page says (mapping it would die of SIGBUS).

    LMDB keeps two meta pages at the start of the file; the one with the
    larger transaction id records the last page in use and, in the free
    list's descriptor, the page size.
    """
    data = folder / "data.mdb"
    size = data.stat().st_size
    with open(data, "rb") as handle:
        head = handle.read(16 + 152)
        if len(head) < 16 + 152 or struct.unpack_from("<I", head, 16)[0] != LMDB_MAGIC:
            raise BVDMDataError(f"{data}: not an LMDB file, or truncated ({size} bytes)")
        page = struct.unpack_from("<I", head, 40)[0]
        handle.seek(page)
        second = handle.read(16 + 152)
    metas = [struct.unpack_from("<QQ", head, 136)]
    if len(second) == 16 + 152 and struct.unpack_from("<I", second, 16)[0] == LMDB_MAGIC:
        metas.append(struct.unpack_from("<QQ", second, 136))
    last_page, _ = max(metas, key=lambda m: m[1])
    needed = (last_page + 1) * page
    if size < needed:
        raise BVDMDataError(f"{data}: truncated: {size} bytes, but its last committed page ends at byte {needed}; "
                            "the cache was cut short (copy it again, or regenerate it)")


_SHARED_ENVS: dict[tuple[int, str], list] = {}


def _open_shared(path: Path) -> lmdb.Environment:
    """One read-only environment per file and process, shared by every reader (LMDB allows one per process)."""
    key = (os.getpid(), str(path.resolve()))
    entry = _SHARED_ENVS.get(key)
    if entry is None:
        check_lmdb_file(path)
        try:
            env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True, max_dbs=0)
        except lmdb.Error as err:
            raise BVDMDataError(f"{path}: cannot open the LMDB cache ({err})") from err
        entry = _SHARED_ENVS[key] = [env, 0]
    entry[1] += 1
    return entry[0]


def _release_shared(path: Path) -> None:
    key = (os.getpid(), str(path.resolve()))
    entry = _SHARED_ENVS.get(key)
    if entry is not None:
        entry[1] -= 1
        if entry[1] <= 0:
            entry[0].close()
            del _SHARED_ENVS[key]


def bundle_hash(bundle_root: str | os.PathLike) -> str:
    return hashlib.sha256((Path(bundle_root) / "manifest.json").read_bytes()).hexdigest()


def _open_writer(path: Path) -> lmdb.Environment:
    if (path / "data.mdb").is_file():
        check_lmdb_file(path)  # resuming a cut-short file would die of SIGBUS
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=INITIAL_MAP_SIZE, subdir=True, max_dbs=0)
    if env.info()["map_size"] < INITIAL_MAP_SIZE:
        env.set_mapsize(INITIAL_MAP_SIZE)
    return env


def _put_all(env: lmdb.Environment, items: list[tuple[bytes, bytes]]) -> None:
    """Commit ``items`` in one transaction, doubling the map until they fit."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def committed_indices(env: lmdb.Environment) -> set[int]:
    with env.begin() as txn:
        return {int(k[5:]) for k in txn.cursor().iternext(keys=True, values=False) if k.startswith(b"clip/")}


def write_cache(path: str | os.PathLike, meta: dict[str, Any], indices: Iterable[int],
                generate: Callable[[list[int]], list[Clip]], commit_every: int = 16, compression: str = "zlib",
                progress: bool = True) -> int:
    """Generate and store the clips ``indices`` that are not stored yet; returns how many were written.

    ``meta`` (format, bundle hash, generation parameters) is written first;
    an existing cache with other parameters is refused, so a resume never
    mixes two configurations. ``generate`` maps a list of indices to clips.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    env = _open_writer(path)
    try:
        with env.begin() as txn:
            stored = txn.get(META_KEY)
        meta = json.loads(json.dumps({**meta, "format_version": CACHE_FORMAT_VERSION}, sort_keys=True))
        if stored is not None:
            stored = json.loads(stored)
            differ = sorted(k for k in set(stored) | set(meta) if k not in GROWABLE and stored.get(k) != meta.get(k))
            if differ:
                changes = ", ".join(f"{k}: {stored.get(k)!r} -> {meta.get(k)!r}" for k in differ)
                raise BVDMDataError(f"{path}: holds clips made with other settings ({changes}); ask for the "
                                     "settings it was made with, or use another path")
            # Only the clip count may change: asking for more clips grows the cache, the clips made stay.
            meta = {**stored, **{k: max(stored.get(k) or 0, meta.get(k) or 0) for k in GROWABLE if k in meta}}
        if stored != meta:
            _put_all(env, [(META_KEY, json.dumps(meta, sort_keys=True).encode())])
        done = committed_indices(env)
        todo = [k for k in indices if k not in done]
        bar = tqdm(total=len(todo), desc=f"cache {path.name}", unit="clip", disable=not progress)
        written = 0
        for start in range(0, len(todo), commit_every):
            chunk = todo[start:start + commit_every]
            clips = generate(chunk)
            items = []
            for k, clip in zip(chunk, clips):
                check_clip(clip)
                items.append((clip_key(k), encode_clip(clip, compression)))
            _put_all(env, items)
            written += len(items)
            bar.update(len(items))
        bar.close()
        return written
    finally:
        env.close()


SHARDS = "shards.json"


def shard_path(path: str | os.PathLike, rank: int, world: int) -> Path:
    return Path(path) / f"shard-{rank:03d}-of-{world:03d}"


def write_shard_manifest(path: str | os.PathLike, world: int) -> None:
    """Tie the shards of a distributed cache together (written once, by rank 0, after all ranks finish)."""
    from bvdm_data.atomic_io import atomic_file

    names = [shard_path(path, r, world).name for r in range(world)]
    with atomic_file(Path(path) / SHARDS) as tmp:
        tmp.write_text(json.dumps({"format_version": CACHE_FORMAT_VERSION, "shards": names}, indent=2) + "\n")


class LMDBClips(Dataset):
    """Clips stored by :func:`write_cache`, as a map-style ``Dataset``.

    ``path`` is one cache, or the folder of a distributed cache (its
    ``shards.json`` names the shards, read as one). Environments open lazily
    in each process (never shared across a fork), read-only, without locks or
    readahead. Item ``i`` is the ``i``-th stored clip in index order; its
    ``meta`` gives the stream index (``cache_index``) and ``source="lmdb"``.

    Example:
        >>> clips = LMDBClips("synth.lmdb")  # doctest: +SKIP
        >>> len(clips), clips[0]["video"].shape  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, transform: Callable[[Clip], Any] | None = None) -> None:
        self.path = Path(path)
        self.transform = transform
        if (self.path / SHARDS).is_file():
            try:
                names = json.loads((self.path / SHARDS).read_text())["shards"]
            except (ValueError, KeyError) as err:
                raise BVDMDataError(f"{self.path / SHARDS}: corrupt shard manifest ({err})") from err
            self.shards = [self.path / n for n in names]
        elif (self.path / "data.mdb").is_file():
            self.shards = [self.path]
        elif not self.path.exists():
            raise BVDMDataError(f"{self.path}: no such cache")
        else:
            raise BVDMDataError(f"{self.path}: no LMDB cache here (no data.mdb or {SHARDS})")
        where: dict[int, int] = {}
        metas = []
        for s, shard in enumerate(self.shards):
            if not (shard / "data.mdb").is_file():
                raise BVDMDataError(f"{shard}: shard named in {SHARDS} is missing")
            env = _open_shared(shard)
            try:
                metas.append(self._read_meta(env, shard))
                for index in committed_indices(env):
                    where[index] = s
            except lmdb.Error as err:
                raise BVDMDataError(f"{shard / 'data.mdb'}: corrupt LMDB file ({type(err).__name__}: {err})") from err
            finally:
                _release_shared(shard)
        if any(m != metas[0] for m in metas[1:]):
            raise BVDMDataError(f"{self.path}: shards were made with different parameters")
        self.meta = metas[0]
        self.indices = sorted(where)
        self._shard_of = where
        self._envs: dict[int, lmdb.Environment] = {}
        self._pid = -1

    @staticmethod
    def _read_meta(env: lmdb.Environment, path: Path) -> dict[str, Any]:
        with env.begin() as txn:
            raw = txn.get(META_KEY)
        if raw is None:
            raise BVDMDataError(f"{path}: an LMDB database, but not a bvdm-data cache (no {META_KEY.decode()} record)")
        try:
            meta = json.loads(raw)
        except ValueError as err:
            raise BVDMDataError(f"{path}: corrupt cache metadata ({err})") from err
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise BVDMDataError(f"{path}: cache format version {meta.get('format_version')}, "
                                f"this bvdm-data reads {CACHE_FORMAT_VERSION}")
        return meta

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_envs": {}, "_pid": -1}

    def __repr__(self) -> str:
        return (f"LMDBClips({str(self.path)!r}: {len(self)} clips in {len(self.shards)} shard(s), "
                f"bundle={self.meta.get('bundle')!r}, frames={self.meta.get('frames')}, size={self.meta.get('size')})")

    def close(self) -> None:
        """Let go of the environments this reader opened (they reopen on the next read)."""
        if self._pid == os.getpid():
            for s in self._envs:
                _release_shared(self.shards[s])
        self._envs = {}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range for {len(self)} cached clips")
        if self._pid != os.getpid():
            self._envs, self._pid = {}, os.getpid()
        index = self.indices[i]
        s = self._shard_of[index]
        if s not in self._envs:
            self._envs[s] = _open_shared(self.shards[s])
        clip = read_clip(self._envs[s], index, self.shards[s])
        return self.transform(clip) if self.transform is not None else clip


def read_clip(env: lmdb.Environment, index: int, where: Path) -> Clip:
    """Clip ``index`` of the cache open in ``env``, its ``meta`` marked ``source="lmdb"`` with its ``cache_index``."""
    try:
        with env.begin() as txn:
            value = txn.get(clip_key(index))
            value = None if value is None else bytes(value)
    except lmdb.Error as err:
        raise BVDMDataError(f"{where / 'data.mdb'}: corrupt LMDB file ({type(err).__name__}: {err})") from err
    if value is None:
        raise BVDMDataError(f"{where}: clip {index} is listed but missing")
    clip = decode_clip(value, f"{where} clip {index}")
    clip["meta"] = {**clip["meta"], "origin": clip["meta"].get("source", ""), "source": "lmdb", "cache_index": index}
    return clip
