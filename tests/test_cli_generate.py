"""generate -> validate round trip, preview pictures, clear errors."""

from __future__ import annotations

from PIL import Image

from bvdm_data.cli import main
from bvdm_data.ctc import open_sequence

FAST = ["--frames", "3", "--size", "64", "64", "--t-s", "10", "--t-f", "2", "--density", "4e-4"]


def test_generate_writes_valid_ctc_sequences(tmp_path, tiny_bundle, capsys):
    out = tmp_path / "synth"
    assert main(["generate", "--bundle", str(tiny_bundle), "--out", str(out), "--clips", "2", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01", "01_GT", "02", "02_GT"]
    assert len(open_sequence(out, "02").labels.frames) == 3
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    assert main(["generate", "--bundle", str(tiny_bundle), "--out", str(out), "--clips", "1", *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_preview_writes_a_gif_and_a_lineage_plot(tmp_path, tiny_bundle):
    gif = tmp_path / "p.gif"
    assert main(["preview", "--bundle", str(tiny_bundle), "--out", str(gif), *FAST]) == 0
    with Image.open(gif) as img:
        assert img.n_frames == 3 and img.size == (128, 128)
    with Image.open(tmp_path / "p_lineage.png") as png:
        assert png.format == "PNG"


def test_generation_errors_are_one_line(tmp_path, tiny_bundle, capsys):
    assert main(["generate", "--bundle", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown bundle 'nope'" in capsys.readouterr().err
    assert main(["preview", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "x.gif"),
                 *FAST[:-2], "--t-f", "50"]) == 2
    assert "t_f must lie" in capsys.readouterr().err
