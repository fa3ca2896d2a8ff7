"""The package installs whole: every subpackage is listed, shipped bundles travel with it."""

from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bvdm_data").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


@pytest.mark.slow
def test_wheel_install_carries_package_and_bundles(tmp_path):
    target = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--target", str(target), str(ROOT)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (target / "bvdm_data" / "ctc" / "validate.py").is_file()
    assert (target / "bvdm_data" / "pretrained" / "__init__.py").is_file()
    shipped = sorted(p.name for p in (ROOT / "pretrained").iterdir() if (p / "manifest.json").is_file())
    for name in shipped:
        assert (target / "bvdm_data" / "pretrained" / name / "manifest.json").is_file(), name
