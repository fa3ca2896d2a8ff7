#!/usr/bin/env bash
# Rebuild the shipped pretrained/hela bundle from the real data in ../shared/data.
# Stages are fitted one by one; each writes its part of the bundle and its report.
# FRAMES, OUT and WORK make other bundles the same way, e.g. the scarce-label one of benchmarks/RESULTS.md §1,
# fitted on the one annotated frame its arm trains on:
#   FRAMES=0:1 OUT=runs/hela_frame0 WORK=training/hela_frame0 scripts/build_hela_bundle.sh
#   masks:   the 92-frame tracking result 01_RES (track ids + lineage)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BVDM_SHARED_DATA:-../shared/data/Fluo-N2DL-HeLa}   # the CTC dataset folder (holding 01_RES, 02, 02_ERR_SEG)
BVDM=${BVDM:-.venv/bin/bvdm-data}
FRAMES=${FRAMES:-0:11}         # annotated frames of 02 that shapes, texture and statistics come from
OUT=${OUT:-pretrained/hela}
WORK=${WORK:-training/hela}    # checkpoints: WORK_flow, WORK_texture
#            outlines, sizes and density from 02_ERR_SEG frames FRAMES (0-10) (the annotation the segmenter is scored on);
#            spacing set by hand to 0.7 (fitted: 0.85): more touching cells than the data show, which with pressed
#            pairs (the painting default) taught a segmenter to part real pressed nuclei (benchmarks/RESULTS.md §1)
"$BVDM" fit-masks --labels "$DATA/01_RES" --shapes-from "$DATA/02_ERR_SEG" --shapes-frames "$FRAMES" --out "$OUT" \
    --seed 0 --min-separation 0.7
#   flow:    pairs of 01_RES frames 0-79 (frames 80-91 held out for the Dice report), 2000 steps of batch 32
"$BVDM" fit-flow --labels "$DATA/01_RES" --frames 0:80 --out "$OUT" --work "${WORK}_flow"
#   texture: 02 frames FRAMES + ERR_SEG, 64-px crops, 10 000 steps of batch 32 at lr 1e-4 (resumable: run again
#            after a stop; long on CPU, --device cuda on a GPU), then the scene part from the same frames
"$BVDM" fit-texture --ctc "$DATA" --seq 02 --annotation ERR_SEG --frames "$FRAMES" --out "$OUT" \
    --work "${WORK}_texture" --crop-size 64 --iterations 10000 --batch-size 32 --lr 1e-4
#   statistics: brightness law, edge profile, background, unlabelled objects of 02 frames FRAMES (no retraining)
"$BVDM" fit-statistics --bundle "$OUT" --ctc "$DATA" --seq 02 --annotation ERR_SEG --frames "$FRAMES"
