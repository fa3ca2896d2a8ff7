"""A bundle: a fitted model set on disk.

A bundle is a folder with ``manifest.json`` and the files of its parts (mask
model, texture DDPM, flow model, scene statistics). The manifest records the
format version, the provenance and the sha256 of every file; loading checks
them all and names what is missing or altered. Nothing is unpickled: weights
load with ``torch.load(weights_only=True)``, arrays with
``numpy.load(allow_pickle=False)``, everything else is JSON.

Shipped bundles (``hela``) live in ``pretrained/`` and are found by name;
``BVDM_BUNDLE_PATH`` (folders separated by ``os.pathsep``) adds more places.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bvdm_data.atomic_io import atomic_file
from bvdm_data.errors import BundleError

BUNDLE_FORMAT = "bvdm-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _package_version() -> str:
    """The installed bvdm-data version, read from the package metadata (importing the package here would loop)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bvdm-data")
    except PackageNotFoundError:  # a source checkout on sys.path, not installed
        return "unknown"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_search_path() -> list[Path]:
    """Folders searched for bundles given by name, in order."""
    extra = [Path(p) for p in os.environ.get("BVDM_BUNDLE_PATH", "").split(os.pathsep) if p]
    package = Path(__file__).resolve().parent
    # Installed: the wheel maps pretrained/ to bvdm_data/pretrained. Source checkout: ../pretrained.
    return extra + [package / "pretrained", package.parent / "pretrained"]


def known_bundles() -> list[str]:
    """Names of the bundles found on the search path."""
    names = set()
    for folder in bundle_search_path():
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if (p / MANIFEST).is_file())
    return sorted(names)


def resolve_bundle(name_or_path: str | os.PathLike) -> Path:
    """The folder of a bundle given by path or by name (``"hela"``)."""
    candidate = Path(name_or_path)
    if (candidate / MANIFEST).is_file():
        return candidate
    if candidate.exists():
        raise BundleError(f"{candidate}: not a bundle (no {MANIFEST})")
    if os.sep not in str(name_or_path):
        for folder in bundle_search_path():
            if (folder / str(name_or_path) / MANIFEST).is_file():
                return folder / str(name_or_path)
    raise BundleError(f"unknown bundle {str(name_or_path)!r}; known bundles: {known_bundles() or 'none'}")


def _check_manifest_layout(root: Path, manifest: dict[str, Any]) -> None:
    """Refuse a manifest whose parts are not objects or whose files leave the bundle folder."""
    where = root / MANIFEST
    parts = manifest.get("parts", {})
    if not isinstance(parts, dict):
        raise BundleError(f"{where}: 'parts' must map part names to entries, got {type(parts).__name__}")
    inside = root.resolve()
    for part, entry in parts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("files", {}), dict):
            raise BundleError(f"{where}: part {part!r} must be an object with a 'files' map")
        for rel in entry.get("files", {}):
            target = (root / str(rel)).resolve()
            if Path(str(rel)).is_absolute() or (target != inside and inside not in target.parents):
                raise BundleError(f"{where}: part {part!r} names file {rel!r} outside the bundle folder")


class Bundle:
    """A loaded, verified bundle.

    Example:
        >>> bundle = Bundle.load("hela")
        >>> "masks" in bundle.parts
        True
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def load(cls, name_or_path: str | os.PathLike, verify: bool = True) -> Bundle:
        """Open a bundle; with ``verify`` check the format version and every file's sha256."""
        root = resolve_bundle(name_or_path)
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError) as err:
            raise BundleError(f"{root / MANIFEST}: unreadable manifest ({err})") from err
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{root / MANIFEST}: not a bvdm-data bundle manifest")
        version = manifest.get("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise BundleError(
                f"{root}: bundle format version {version}, this bvdm-data reads version {BUNDLE_FORMAT_VERSION}"
            )
        _check_manifest_layout(root, manifest)
        bundle = cls(root, manifest)
        if verify:
            bundle.verify()
        return bundle

    def __repr__(self) -> str:
        return f"Bundle({self.name!r} at {str(self.root)!r}, parts {self.parts})"

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    @property
    def parts(self) -> list[str]:
        return sorted(self.manifest.get("parts", {}))

    def verify(self) -> None:
        """Check that every file of every part exists and has its recorded sha256."""
        for part, entry in self.manifest.get("parts", {}).items():
            for rel, digest in entry.get("files", {}).items():
                path = self.root / rel
                if not path.is_file():
                    raise BundleError(f"{self.root}: part '{part}' is missing file {rel}")
                if sha256_of(path) != digest:
                    raise BundleError(f"{self.root}: file {rel} of part '{part}' is corrupt (sha256 mismatch)")

    def part(self, part: str, version: int | None = None) -> dict[str, Any]:
        """The manifest entry of a part; names the known parts when it is absent.

        With ``version``, a part written in another version of its format is refused.
        """
        parts = self.manifest.get("parts", {})
        if part not in parts:
            raise BundleError(f"{self.root}: has no part '{part}' (it has {sorted(parts) or 'no parts'})")
        found = parts[part].get("version")
        if version is not None and found != version:
            raise BundleError(f"{self.root}: part '{part}' is version {found}, this bvdm-data reads version {version}")
        return parts[part]

    def _file(self, part: str, filename: str) -> Path:
        entry = self.part(part)
        rel = f"{part}/{filename}"
        if rel not in entry.get("files", {}):
            raise BundleError(f"{self.root}: part '{part}' has no file {filename}")
        return self.root / rel

    def read_json(self, part: str, filename: str) -> Any:
        path = self._file(part, filename)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise BundleError(f"{path}: unreadable JSON ({err})") from err

    def read_arrays(self, part: str, filename: str) -> dict[str, np.ndarray]:
        path = self._file(part, filename)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except ValueError as err:  # object arrays need pickle, which is never allowed
            raise BundleError(f"{path}: holds an array that only pickle could read; bundles store plain "
                              "numeric arrays") from err
        except (OSError, EOFError) as err:
            raise BundleError(f"{path}: unreadable array file ({err})") from err

    def read_state_dict(self, part: str, filename: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Load weights without unpickling arbitrary objects (``weights_only=True``)."""
        path = self._file(part, filename)
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # weights_only refuses objects with UnpicklingError; a cut zip is a RuntimeError
            if type(err).__name__ != "UnpicklingError":
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise BundleError(f"{path}: not a plain weights file ({type(err).__name__}: {first})") from err
            raise BundleError(f"{path}: holds Python objects besides tensors; refused (bundles carry plain "
                              "weights only)") from err


class BundleWriter:
    """Builds or updates a bundle, one part at a time; the manifest is written last.

    Writing a part replaces that part's files and leaves the other parts as
    they are, so stages can be fitted separately (``fit-masks``, ``fit-texture`` ...).

    Example:
        >>> import tempfile, numpy as np
        >>> root = tempfile.mkdtemp()
        >>> w = BundleWriter(root, name="demo")
        >>> w.write_part("masks", version=1, json_files={"stats.json": {"a": 1}},
        ...              array_files={"shapes.npz": {"mean": np.zeros(3)}})
        >>> Bundle.load(root).read_json("masks", "stats.json")
        {'a': 1}
    """

    def __init__(self, root: str | os.PathLike, name: str | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        if path.is_file():
            self.manifest = Bundle.load(self.root, verify=False).manifest
        else:
            self.manifest = {
                "format": BUNDLE_FORMAT,
                "format_version": BUNDLE_FORMAT_VERSION,
                "name": name or self.root.name,
                "parts": {},
            }
        if name:
            self.manifest["name"] = name

    def write_part(
        self,
        part: str,
        version: int,
        json_files: Mapping[str, Any] | None = None,
        array_files: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        state_dicts: Mapping[str, Mapping[str, Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the files of one part and record them in the manifest."""
        folder = self.root / part
        folder.mkdir(exist_ok=True)
        files: dict[str, str] = {}
        for filename, obj in (json_files or {}).items():
            with atomic_file(folder / filename) as tmp:
                tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
            files[f"{part}/{filename}"] = sha256_of(folder / filename)
        for filename, arrays in (array_files or {}).items():
            with atomic_file(folder / filename) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})
            files[f"{part}/{filename}"] = sha256_of(folder / filename)
        for filename, state in (state_dicts or {}).items():
            with atomic_file(folder / filename) as tmp:
                torch.save(dict(state), tmp)
            files[f"{part}/{filename}"] = sha256_of(folder / filename)
        self.manifest["parts"][part] = {
            "version": int(version),
            "files": files,
            "config": dict(config or {}),
            "provenance": {
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "bvdm_data_version": _package_version(),
                **dict(provenance or {}),
            },
        }
        self._write_manifest()

    def update_json(self, part: str, filename: str, obj: Any, provenance: Mapping[str, Any] | None = None) -> None:
        """Rewrite one JSON file of an existing part (e.g. re-measured statistics), keeping its other files."""
        entry = self.manifest["parts"].get(part)
        if entry is None or f"{part}/{filename}" not in entry["files"]:
            raise BundleError(f"{self.root}: part '{part}' has no file {filename} to update")
        path = self.root / part / filename
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        entry["files"][f"{part}/{filename}"] = sha256_of(path)
        entry["provenance"] = {**entry["provenance"], **dict(provenance or {}),
                               "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        self._write_manifest()

    def _write_manifest(self) -> None:
        with atomic_file(self.root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
