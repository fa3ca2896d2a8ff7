#!/usr/bin/env bash
# Rebuild the shipped pretrained/hela bundle from the real data in ../shared/data.
# Stages are fitted one by one; each writes its part of the bundle and its report.
#   masks:   the 92-frame tracking result 01_RES (track ids + lineage)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BVDM_SHARED_DATA:-../shared/data/Fluo-N2DL-HeLa}   # the CTC dataset folder (holding 01_RES, 02, 02_ERR_SEG)
BVDM=${BVDM:-.venv/bin/bvdm-data}
#            outlines, sizes and density from 02_ERR_SEG frames 0-10 (the annotation the segmenter is scored on)
"$BVDM" fit-masks --labels "$DATA/01_RES" --shapes-from "$DATA/02_ERR_SEG" --shapes-frames 0:11 --out pretrained/hela --seed 0
#   flow:    pairs of 01_RES frames 0-79 (frames 80-91 held out for the Dice report), 2000 steps of batch 32
"$BVDM" fit-flow --labels "$DATA/01_RES" --frames 0:80 --out pretrained/hela --work training/hela_flow
#   texture: 02 frames 0-10 + ERR_SEG, 64-px crops, 10 000 steps of batch 32 at lr 1e-4 (resumable: run again
#            after a stop; long on CPU, --device cuda on a GPU), then the scene part from the same frames
"$BVDM" fit-texture --ctc "$DATA" --seq 02 --annotation ERR_SEG --frames 0:11 --out pretrained/hela \
    --work training/hela_texture --crop-size 64 --iterations 10000 --batch-size 32 --lr 1e-4
#   statistics: brightness law, edge profile, background, unlabelled objects of 02 frames 0-10 (no retraining)
"$BVDM" fit-statistics --bundle pretrained/hela --ctc "$DATA" --seq 02 --annotation ERR_SEG --frames 0:11
