"""How bright nuclei look once each recording is normalised by its own percentiles, as every part reads frames.

    .venv/bin/python benchmarks/contrast.py [--data ../shared/data]

A user normalises each sequence by its own intensity percentiles (1, 99.9:
``CTCClips``, and the downstream protocol's test sequences). The counts a
nucleus shows then depend on what else the recording holds: a few very bright
mitotic figures raise the top percentile and dim every other nucleus. This
prints, per sequence (GOWT1 01 and 02 against their gold SEG; HeLa 02's
training and test frames against 02_ERR_SEG), the normalising range and the
labelled nuclei's mean light in its own 0..1 units, and the ratio of the
median nucleus to the first row's: the spread of gains between recordings
that ``--contrast`` randomises. Writes benchmarks/results/contrast_by_sequence_cpu.{json,txt}. Seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from bvdm_data.ctc.clips import intensity_range, to_unit
from bvdm_data.ctc.sequence import open_sequence
from bvdm_data.evaluate.realism import markdown

ROOT = Path(__file__).resolve().parents[1]
PERCENTILES = (1.0, 99.9)  # as CTCClips and RealSequence normalise a sequence


def nuclei_light(root: Path, seq: str, labels: str, frames: list[int] | None,
                 percentiles: tuple[float, float] = PERCENTILES) -> dict:
    """The sequence's range at ``percentiles`` (over ``frames``) and its labelled nuclei's mean light in it."""
    sequence = open_sequence(root, seq, labels=labels)
    annotation = sequence.seg if labels == "GT" else sequence.labels
    marked = [f for f in annotation.frames if frames is None or f in frames]
    band = intensity_range(sequence, percentiles, frames=frames)
    means, background = [], []
    for f in marked:
        image, lab = to_unit(sequence.images.read(f), band), annotation.read(f)
        ids = np.unique(lab[lab > 0])
        means.append(ndimage.mean(image, lab, ids))
        background.append(float(np.median(image[lab == 0])))
    cells = np.concatenate(means)
    q10, q50, q90 = (float(v) for v in np.quantile(cells, [0.1, 0.5, 0.9]))
    return {"range lo / hi (counts)": f"{band[0]:.0f} / {band[1]:.0f}", "frames": len(marked), "nuclei": len(cells),
            "nucleus q10": q10, "nucleus median": q50, "nucleus q90": q90,
            "background median": float(np.median(background))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the real data's folder")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "contrast_by_sequence_cpu.json"))
    args = parser.parse_args()
    data = Path(args.data)
    gowt1, hela = data / "Fluo-N2DH-GOWT1", data / "Fluo-N2DL-HeLa"
    cases = [("GOWT1 01 (gold SEG), the bundle's", gowt1, "01", "GT", None),
             ("GOWT1 02 (gold SEG), the test", gowt1, "02", "GT", None),
             ("HeLa 02 frames 0-10 (ERR_SEG), the bundle's", hela, "02", "ERR_SEG", list(range(0, 11))),
             ("HeLa 02 frames 11-13 (ERR_SEG), the test", hela, "02", "ERR_SEG", list(range(11, 14)))]
    rows = []
    for name, root, seq, labels, frames in cases:
        rows.append({"sequence": name, **nuclei_light(root, seq, labels, frames)})
    for row in rows:  # each dataset's test against its bundle's frames
        base = rows[0] if row["sequence"].startswith("GOWT1") else rows[2]
        row["median / bundle's"] = row["nucleus median"] / base["nucleus median"]
    # GOWT1 02 against 01 with other top percentiles: the gap is not an artefact of the 99.9th
    tops = []
    for top in (99.0, 99.99):
        light = [nuclei_light(gowt1, seq, "GT", None, (PERCENTILES[0], top)) for seq in ("01", "02")]
        tops.append({"top percentile": top, "01 range": light[0]["range lo / hi (counts)"],
                     "02 range": light[1]["range lo / hi (counts)"],
                     "02 median / 01 median": light[1]["nucleus median"] / light[0]["nucleus median"]})
    text = ("Labelled nuclei's mean light, each sequence normalised by its own 1st-99.9th percentiles (0..1)\n\n"
            + markdown(rows, list(rows[0])) + "\n\nGOWT1 with another top percentile\n\n" + markdown(tops, list(tops[0])))
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"percentiles": PERCENTILES, "rows": rows, "gowt1_other_top_percentiles": tops},
                              indent=2) + "\n")
    out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
