#!/usr/bin/env bash
# Rebuild the shipped pretrained/hela bundle from the real data in ../shared/data.
# Stages are fitted one by one; each writes its part of the bundle and its report.
#   masks:   the 92-frame tracking result 01_RES (track ids + lineage)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BVDM_SHARED_DATA:-../shared/data/Fluo-N2DL-HeLa}
BVDM=${BVDM:-.venv/bin/bvdm-data}
"$BVDM" fit-masks --labels "$DATA/01_RES" --out pretrained/hela --seed 0
