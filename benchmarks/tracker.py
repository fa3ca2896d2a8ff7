"""The downstream protocol's tracker alone: TRA given a perfect segmentation.

    .venv/bin/python benchmarks/tracker.py [--labels ../shared/data/Fluo-N2DL-HeLa/01_RES]

`benchmarks/downstream.py` cannot report TRA on real data: no real HeLa
frames here come with lineage ground truth (01_RES has lineage but no
images). This measures the other half of the tracking score: the 01_RES
label video is cut into windows, its lineage is thrown away (every frame
relabelled 1..n), `track_by_overlap` links the frames again, and
py-ctcmetrics scores the result against the window's own lineage. It is
the TRA the protocol's tracker would reach with a perfect segmenter, and a
floor is printed beside it: the same frames left unlinked. Frames 80-91
are the ones the shipped flow model never saw. Writes
benchmarks/results/tracker.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch

from bvdm_data.clip import relabel_per_frame, relabel_tracks
from bvdm_data.ctc import read_track_file, write_ctc_result, write_ctc_sequence
from bvdm_data.evaluate import evaluate_ctc
from bvdm_data.evaluate.downstream import track_by_overlap
from bvdm_data.evaluate.realism import markdown

ROOT = Path(__file__).resolve().parents[1]


def score(masks: np.ndarray, parents: dict[int, int]) -> dict[str, float]:
    """TRA of the tracker and of no linking on one window of the label video."""
    truth, lineage = relabel_tracks(masks, parents)
    per_frame, unlinked = relabel_per_frame(truth)
    linked, tracks = track_by_overlap(per_frame)
    clip = {"video": torch.zeros(truth.shape[0], 1, *truth.shape[1:]), "masks": torch.from_numpy(truth),
            "tracks": torch.from_numpy(lineage), "meta": {"source": "01_RES"}}
    with tempfile.TemporaryDirectory() as tmp:
        write_ctc_sequence(clip, tmp, "01")
        write_ctc_result(linked, tracks, Path(tmp) / "01_RES")
        tra = evaluate_ctc(Path(tmp) / "01_RES", Path(tmp) / "01_GT", ["TRA"])["TRA"]
        write_ctc_result(per_frame, unlinked, Path(tmp) / "01_RES", overwrite=True)
        floor = evaluate_ctc(Path(tmp) / "01_RES", Path(tmp) / "01_GT", ["TRA"])["TRA"]
    return {"TRA": tra, "TRA_unlinked": floor, "child_tracks_true": int((lineage[:, 3] > 0).sum()),
            "child_tracks_found": int((tracks[:, 3] > 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default=str(ROOT.parent / "shared" / "data" / "Fluo-N2DL-HeLa" / "01_RES"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tracker.json"))
    args = parser.parse_args()
    folder = Path(args.labels)
    files = sorted(folder.glob("mask*.tif"))
    masks = np.stack([tifffile.imread(f) for f in files])
    parents = {int(label): int(parent) for label, _, _, parent in read_track_file(folder / "res_track.txt")}
    windows = {"frames 80-91 (held out from the flow fit)": (80, 92), f"all {len(masks)} frames": (0, len(masks))}
    rows = [{"window": name, **score(masks[a:b], parents)} for name, (a, b) in windows.items()]
    print(markdown(rows, ["window", "TRA", "TRA_unlinked", "child_tracks_true", "child_tracks_found"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"labels": str(folder.name), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
