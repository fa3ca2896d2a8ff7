"""generate -> validate round trip, preview pictures, clear errors."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bvdm_data.cli import main
from bvdm_data.ctc import open_sequence
from bvdm_data.masks.model import MaskModel

FAST = ["--frames", "3", "--size", "64", "64", "--t-s", "10", "--t-f", "2", "--density", "4e-4"]


def test_generate_writes_valid_ctc_sequences(tmp_path, tiny_bundle, capsys):
    out = tmp_path / "synth"
    assert main(["generate", "--bundle", str(tiny_bundle), "--out", str(out), "--clips", "2", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01", "01_GT", "02", "02_GT"]
    assert len(open_sequence(out, "02").labels.frames) == 3
    # Frames are written in the units and band of the data the bundle was fitted on (HeLa: uint16, ~33000..37000).
    from bvdm_data.diffusion.texture import image_units

    (lo, hi), dtype = image_units(str(tiny_bundle))
    frame = open_sequence(out, "01").images.read(0)
    assert frame.dtype == np.dtype(dtype) == np.uint16 and lo - 1 <= frame.min() and frame.max() <= hi + 1
    assert "in the fitted data's band" in capsys.readouterr().out
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


def test_fit_all_stages_then_generate(tmp_path, res_video, hela_root, capsys):
    """`fit` on a CTC sequence with GT lineage gives a bundle that generates valid data."""
    import shutil

    from bvdm_data.clip import relabel_tracks
    from bvdm_data.ctc import write_ctc_result

    # Real images (02, 4 frames) with a lineage GT cut from the 01 tracking result: the labels do not
    # match the images, but every stage runs on real data of the right format.
    root = tmp_path / "ds"
    shutil.copytree(hela_root / "02", root / "02")
    masks, tracks = res_video
    window, rows = relabel_tracks(masks[85:89, 200:456, 400:656], {int(l): int(p) for l, _, _, p in tracks})
    write_ctc_result(window, rows, root / "02_GT" / "TRA")
    (root / "02_GT" / "TRA" / "res_track.txt").rename(root / "02_GT" / "TRA" / "man_track.txt")
    for t in range(4):
        (root / "02_GT" / "TRA" / f"mask{t:03d}.tif").rename(root / "02_GT" / "TRA" / f"man_track{t:03d}.tif")
    out = tmp_path / "bundle"
    args = ["fit", "--ctc", str(root), "--seq", "02", "--out", str(out), "--texture-iterations", "2",
            "--flow-iterations", "2", "--min-separation", "0.75"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "wrote the masks part" in text and "wrote the flow part" in text and "texture and scene parts" in text
    assert "spacing set by hand" in text and MaskModel.load(str(out)).min_separation == 0.75  # reaches fit-masks
    assert "crops of 64 px for texture and flow (from the cells size)" in text
    assert main(["info", str(out), "--json"]) == 0
    assert set(__import__("json").loads(capsys.readouterr().out)["parts"]) == {"masks", "flow", "texture", "scene"}
