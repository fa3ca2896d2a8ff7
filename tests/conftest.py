"""Shared fixtures: small real data from tests/data and clips built from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from bvdm_data.clip import relabel_tracks
from bvdm_data.ctc.tracks import read_track_file

torch.set_num_threads(int(os.environ.get("BVDM_TEST_THREADS", "2")))

DATA = Path(__file__).parent / "data"
HELA = DATA / "Fluo-N2DL-HeLa"


@pytest.fixture(scope="session")
def hela_root() -> Path:
    return HELA


@pytest.fixture(scope="session")
def res_video() -> tuple[np.ndarray, np.ndarray]:
    """The 92-frame real tracking result (labels = track ids) and its lineage."""
    folder = HELA / "01_RES"
    masks = np.stack([tifffile.imread(folder / f"mask{t:03d}.tif") for t in range(92)])
    return masks, read_track_file(folder / "res_track.txt")


def clip_from_labels(masks: np.ndarray, tracks: np.ndarray, seed: int = 0) -> dict:
    """A contract clip whose video is a noisy rendering of the labels."""
    parents = {int(l): int(p) for l, _, _, p in tracks}
    new_masks, new_tracks = relabel_tracks(masks, parents)
    rng = np.random.default_rng(seed)
    video = 0.1 + 0.6 * (new_masks > 0) + 0.05 * rng.standard_normal(new_masks.shape)
    return {
        "video": torch.from_numpy(np.clip(video, 0, 1).astype(np.float32)[:, None]),
        "masks": torch.from_numpy(new_masks),
        "tracks": torch.from_numpy(new_tracks),
        "meta": {"source": "test", "seed": seed},
    }


@pytest.fixture()
def real_clip(res_video) -> dict:
    """Frames 35..44 of the real result, cropped to 128x160: has divisions and border cells."""
    masks, tracks = res_video
    return clip_from_labels(masks[35:45, 480:608, 80:240], tracks)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, res_video) -> Path:
    """A complete bundle with tiny networks trained for a few steps: fast, real code paths, bad textures."""
    from bvdm_data.ctc import open_sequence
    from bvdm_data.diffusion import UNetConfig, export_texture, extract_cell_crops, train_texture
    from bvdm_data.flow import FlowConfig, export_flow, extract_flow_pairs, train_flow
    from bvdm_data.masks import fit_mask_model
    from bvdm_data.scene.model import SceneModel
    from bvdm_data.synth.annotation import fit_label_law
    from bvdm_data.training import TrainConfig

    root = tmp_path_factory.mktemp("bundles") / "tiny"
    masks, tracks = res_video
    fit_mask_model(masks[:30], tracks).save(root)
    seq = open_sequence(HELA, "02", labels="ERR_SEG")
    crops = extract_cell_crops(seq, size=32)
    work = root.parent / "work"
    tex = train_texture(crops, work / "texture", TrainConfig(iterations=3, batch_size=4),
                        unet=UNetConfig(channels=4, multipliers=(1, 2), time_dim=16), progress=False)
    law = fit_label_law(crops.images[:, 0].double().numpy(), crops.masks.numpy(), crops.empty.numpy())
    export_texture(tex.checkpoint, root, {**crops.statistics(), "label_law": law})
    pairs = extract_flow_pairs(masks[:10], tracks, size=32)
    flow = train_flow(pairs, work / "flow", TrainConfig(iterations=3, batch_size=4), flow=FlowConfig(channels=(4, 4)),
                      progress=False)
    export_flow(flow.checkpoint, root)
    SceneModel.fit(seq, crops.intensity_range).save(root)
    return root
