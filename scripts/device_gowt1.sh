#!/usr/bin/env bash
# One device call that finishes the gowt1 bundle on a GPU and scores it downstream (issue 16, items 5-6).
#
# Carry: .whl (kornia, kornia_rs, lmdb, py-ctcmetrics wheels for the device's Python) and
# .devdata/Fluo-N2DH-GOWT1 (01, 01_GT, 02, 02_GT copied from ../shared/data: 48 MB); pretrained/gowt1 (the masks
# part, fitted on the CPU) travels as an untracked file. Writes everything under $OUT.
#   DEVICE=cpu SMALL=1 OUT=/tmp/out scripts/device_gowt1.sh    # the same steps at tiny sizes, to test it here
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.devdata/Fluo-N2DH-GOWT1}
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >/dev/null 2>&1 || true
    export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PY:-python3}
BVDM="$PY -m bvdm_data"
if [ -n "${SMALL:-}" ]; then TEX=4 FLOW=4 STEPS=20 SEEDS="0" CLIPS=4 ARMS="a b"
else TEX=6000 FLOW=2000 STEPS=1500 SEEDS="0 1 2" CLIPS=64 ARMS="a a1 b c d d1"; fi
test -f pretrained/gowt1/masks/model.npz || { echo "pretrained/gowt1 has no masks part: run fit-masks first"; exit 2; }
BUNDLE=${BUNDLE:-/tmp/gowt1}  # trained here, from the shipped masks part; pretrained/ is left as it is
rm -rf "$BUNDLE" /tmp/gowt1_flow /tmp/gowt1_texture && mkdir -p "$BUNDLE" && cp -r pretrained/gowt1/masks pretrained/gowt1/manifest.json "$BUNDLE/"
log() { tr '\r' '\n' | grep -v "it/s" || true; }
# flow and texture, as scripts/build_gowt1_bundle.sh does on the CPU (checkpoints in /tmp: nothing to resume there)
$BVDM fit-flow --labels "$DATA/01_GT/TRA" --frames 0:80 --out "$BUNDLE" --work /tmp/gowt1_flow \
    --crop-size 112 --iterations "$FLOW" --device "$DEVICE" 2>&1 | log > "$OUT/fit_flow.txt"
$BVDM fit-texture --ctc "$DATA" --seq 01 --annotation GT --outlines "$DATA/01_GT/SEG" --out "$BUNDLE" \
    --work /tmp/gowt1_texture --crop-size 112 --iterations "$TEX" --batch-size 16 --lr 1e-4 --device "$DEVICE" \
    2>&1 | log > "$OUT/fit_texture.txt"
cp -r "$BUNDLE" "$OUT/gowt1"
# train on 01 / test on 02: every arm, SEG on 02's gold SEG frames, DET and TRA on its gold TRA
$PY benchmarks/downstream.py --dataset gowt1 --data "$DATA" --bundle "$BUNDLE" --steps "$STEPS" \
    --arms $ARMS --seeds $SEEDS --workers 3 --clips "$CLIPS" --sampler ddim --stride 4 --gen-batch 32 --device "$DEVICE" \
    --threads 4 --out "$OUT/downstream_gowt1.json" 2>&1 | log > "$OUT/downstream_gowt1.txt"
tail -n 20 "$OUT"/*.txt
