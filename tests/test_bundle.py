"""Bundles: manifest, hashes, versions, lookup by name, no pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bvdm_data.bundle import Bundle, BundleWriter, known_bundles
from bvdm_data.cli import main
from bvdm_data.errors import BundleError


@pytest.fixture()
def bundle_dir(tmp_path):
    root = tmp_path / "demo"
    writer = BundleWriter(root, name="demo")
    writer.write_part("masks", version=1, json_files={"stats.json": {"area": [1.0, 2.0]}},
                      array_files={"shapes.npz": {"mean": np.arange(4.0)}}, config={"points": 4})
    writer.write_part("texture", version=2, state_dicts={"ema.pt": {"w": torch.ones(3)}})
    return root


def test_round_trip(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    assert bundle.name == "demo" and bundle.parts == ["masks", "texture"]
    assert bundle.read_json("masks", "stats.json") == {"area": [1.0, 2.0]}
    assert np.array_equal(bundle.read_arrays("masks", "shapes.npz")["mean"], np.arange(4.0))
    assert torch.equal(bundle.read_state_dict("texture", "ema.pt")["w"], torch.ones(3))
    assert bundle.part("masks")["config"] == {"points": 4}
    assert "bvdm_data_version" in bundle.part("masks")["provenance"]


def test_rewriting_a_part_keeps_the_others(bundle_dir):
    BundleWriter(bundle_dir).write_part("masks", version=1, json_files={"stats.json": {"area": []}})
    bundle = Bundle.load(bundle_dir)
    assert bundle.parts == ["masks", "texture"] and bundle.read_json("masks", "stats.json") == {"area": []}


def test_corrupt_file_is_named(bundle_dir):
    (bundle_dir / "masks" / "stats.json").write_text('{"area": [9]}')
    with pytest.raises(BundleError, match="stats.json of part 'masks' is corrupt"):
        Bundle.load(bundle_dir)


def test_missing_file_is_named(bundle_dir):
    (bundle_dir / "texture" / "ema.pt").unlink()
    with pytest.raises(BundleError, match="part 'texture' is missing file texture/ema.pt"):
        Bundle.load(bundle_dir)


def test_versions_are_checked(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 99.*reads version 1"):
        Bundle.load(bundle_dir)


def test_part_version_and_missing_part(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    with pytest.raises(BundleError, match="part 'texture' is version 2.*reads version 1"):
        bundle.part("texture", version=1)
    with pytest.raises(BundleError, match="has no part 'flow'.*masks"):
        bundle.part("flow")


def test_lookup_by_name(bundle_dir, monkeypatch):
    monkeypatch.setenv("BVDM_BUNDLE_PATH", str(bundle_dir.parent))
    assert "demo" in known_bundles()
    assert Bundle.load("demo").root == bundle_dir
    with pytest.raises(BundleError, match="unknown bundle 'nope'; known bundles:.*demo"):
        Bundle.load("nope")


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        Bundle.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        Bundle.load(tmp_path)


class Payload:
    """Not a tensor: unpickling it would run arbitrary code paths."""


def test_weights_never_unpickle_objects(bundle_dir):
    torch.save({"w": Payload()}, bundle_dir / "texture" / "ema.pt")
    bundle = Bundle.load(bundle_dir, verify=False)
    with pytest.raises(BundleError, match="ema.pt: holds Python objects besides tensors; refused") as info:
        bundle.read_state_dict("texture", "ema.pt")
    assert "\n" not in str(info.value) and "weights_only=False" not in str(info.value)


def test_cli_info_on_a_bundle(bundle_dir, capsys):
    assert main(["info", str(bundle_dir)]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("bundle demo") and "parts masks, texture" in summary and "--json" in summary
    assert main(["info", str(bundle_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bundle"] == "demo" and set(info["parts"]) == {"masks", "texture"}


def _edit_manifest(root, change):
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_parts_that_are_not_objects_are_refused(bundle_dir):
    _edit_manifest(bundle_dir, lambda m: m.__setitem__("parts", [1, 2]))
    with pytest.raises(BundleError, match="manifest.json: 'parts' must map part names"):
        Bundle.load(bundle_dir)


def test_files_outside_the_bundle_are_refused(bundle_dir):
    _edit_manifest(bundle_dir, lambda m: m["parts"]["masks"]["files"].__setitem__("../../etc/hostname", "0" * 64))
    with pytest.raises(BundleError, match="names file '../../etc/hostname' outside the bundle folder"):
        Bundle.load(bundle_dir, verify=False)


def test_object_arrays_are_refused_naming_the_file(bundle_dir):
    np.savez(bundle_dir / "masks" / "shapes.npz", mean=np.array([{"a": 1}], dtype=object))
    bundle = Bundle.load(bundle_dir, verify=False)
    with pytest.raises(BundleError, match="shapes.npz: holds an array that only pickle could read"):
        bundle.read_arrays("masks", "shapes.npz")
