"""Train the texture DDPM of the shipped hela bundle on CPU, resumably.

    .venv/bin/python scripts/train_hela_texture.py --iterations 10000 --hours 2.5

Crops come from frames 0-10 of sequence 02 with its ERR_SEG segmentation in
../shared/data (frames 11-13 are held out for the quality metrics). The
checkpoint lives in training/hela_texture/ (committed, so a later session
resumes); run again to continue. --export writes the EMA weights into
pretrained/hela as the bundle's texture part.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from bvdm_data.ctc import open_sequence
from bvdm_data.diffusion.crops import extract_cell_crops
from bvdm_data.diffusion import export_texture, train_texture
from bvdm_data.scene.model import SceneModel
from bvdm_data.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BVDM_SHARED_DATA", ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa"))
TRAIN_FRAMES = list(range(0, 11))
WORK = ROOT / "training" / "hela_texture"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=None, help="stop after this long (a checkpoint remains)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--export", action="store_true", help="write the EMA weights into pretrained/hela")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seq = open_sequence(DATA, "02", labels="ERR_SEG")
    crops = extract_cell_crops(seq, size=args.crop_size, frames=TRAIN_FRAMES)
    print(f"{len(crops)} crops of {args.crop_size}px from frames {TRAIN_FRAMES[0]}-{TRAIN_FRAMES[-1]}", flush=True)
    result = train_texture(crops, WORK, TrainConfig(iterations=args.iterations),
                           time_budget_s=None if args.hours is None else args.hours * 3600)
    print(f"step {result.step}, {result.seconds / 3600:.2f} h in all, last-100 loss "
          f"{sum(result.losses[-100:]) / max(1, len(result.losses[-100:])):.4f}", flush=True)
    if args.export:
        provenance = {"images": "Fluo-N2DL-HeLa/02", "labels": "Fluo-N2DL-HeLa/02_ERR_SEG",
                      "frames": f"{TRAIN_FRAMES[0]}-{TRAIN_FRAMES[-1]}"}
        export_texture(result.checkpoint, ROOT / "pretrained" / "hela", crops.statistics(),
                       provenance={**provenance, "crops": len(crops)})
        SceneModel.fit(seq, crops.intensity_range, TRAIN_FRAMES).save(ROOT / "pretrained" / "hela", provenance)
        print("wrote the texture and scene parts of pretrained/hela", flush=True)


if __name__ == "__main__":
    main()
