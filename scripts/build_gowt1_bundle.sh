#!/usr/bin/env bash
# Rebuild the shipped pretrained/gowt1 bundle from the real data in ../shared/data (Fluo-N2DH-GOWT1 sequence 01;
# sequence 02 is kept for testing). Stages are fitted one by one; each writes its part of the bundle and its report.
# Resumable: the two trainings keep checkpoints under training/; run the script again after a stop.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BVDM_SHARED_DATA_GOWT1:-../shared/data/Fluo-N2DH-GOWT1}   # the CTC dataset folder (01, 01_GT, 02, 02_GT)
BVDM=${BVDM:-.venv/bin/bvdm-data}
DEVICE=${DEVICE:-cpu}
#   masks:   lineage, cycle and motion from the 92 TRA frames of 01 (markers: 58 % of a nucleus); outlines, sizes
#            from the 30 gold SEG frames (5 of ~25 cells outlined per frame, so the density stays the tracks')
"$BVDM" fit-masks --labels "$DATA/01_GT/TRA" --shapes-from "$DATA/01_GT/SEG" --out pretrained/gowt1 --seed 0
#   flow:    pairs of TRA frames 0-79 (80-91 held out for the Dice report), crops of 112 px (the cells' size)
"$BVDM" fit-flow --labels "$DATA/01_GT/TRA" --frames 0:80 --out pretrained/gowt1 --work training/gowt1_flow \
    --crop-size 112 --device "$DEVICE"
#   texture: 112-px crops centred on every marked cell of 01 (1 933), 6 000 steps of batch 16 at lr 1e-4;
#            brightness law, edge profile and scene from the gold SEG outlines (cells without one are masked by
#            their grown markers); label law from the same outlines; the background, on the camera's floor, is
#            measured as photons
"$BVDM" fit-texture --ctc "$DATA" --seq 01 --annotation GT --outlines "$DATA/01_GT/SEG" --out pretrained/gowt1 \
    --work training/gowt1_texture --crop-size 112 --iterations 6000 --batch-size 16 --lr 1e-4 --device "$DEVICE"
