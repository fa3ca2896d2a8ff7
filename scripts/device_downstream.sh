#!/usr/bin/env bash
# One device call for issues 12 and 16: the downstream tables with three seeds on a GPU, with the measured laws
# that are still off by default switched on one at a time (benchmarks/downstream.py --glow-ablation,
# --unlabelled-ablation), for the shipped bundles:
#   hela:  arms a a1 b c d d1 + glow (bg dg d1g)         test: HeLa 02 frames 11-13 (ERR_SEG)
#   gowt1: arms a a1 b c d d1 + unlabelled (bu du d1u)   test: all of GOWT1 02 (gold SEG, TRA)
# Carry: .whl (kornia, kornia_rs, lmdb, py-ctcmetrics wheels for the device's Python), .devdata/Fluo-N2DL-HeLa
# (02, 02_ERR_SEG) and .devdata/Fluo-N2DH-GOWT1 (01, 01_GT, 02, 02_GT), copied from ../shared/data.
# Writes $OUT/downstream_{hela,gowt1}.{json,png,txt} and the per-(arm, seed) parts as downstream_*_parts.tgz
# (also when LIMIT_S seconds stop a dataset's run: every finished arm and seed is then in the archive).
#   DEVICE=cpu SMALL=1 OUT=/tmp/out DEVDATA=../shared/data scripts/device_downstream.sh   # tiny sizes, to test it
# DATASETS="hela" (or "gowt1") runs one of the two.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}
DEVDATA=${DEVDATA:-.devdata}
source scripts/device_setup.sh
HELA_ARMS=${HELA_ARMS:-a a1 b c d d1 bg dg d1g}
GOWT1_ARMS=${GOWT1_ARMS:-a a1 b c d d1 bu du d1u}
if [ -n "${SMALL:-}" ]; then COMMON="--steps 10 --seeds 0 --workers 1 --clips 2 --size 128 --crop 64 --threads 2"
    HELA_ARMS="b bg"; GOWT1_ARMS="bu"  # scoring GOWT1 02 (92 frames of 1024^2) takes minutes per arm on a CPU
else COMMON="--steps 1500 --seeds 0 1 2 --workers 3 --clips 64 --threads 4"; fi
log() { tr '\r' '\n' | grep -v "it/s\|clip/s\|s/it" || true; }
T0=$(date +%s)  # not in $OUT: only 8 files come back
for job in "hela --glow-ablation --arms $HELA_ARMS" "gowt1 --unlabelled-ablation --no-statistics --arms $GOWT1_ARMS"; do
    [[ " ${DATASETS:-hela gowt1} " == *" ${job%% *} "* ]] || continue
    set -- $job
    dataset=$1; shift
    data=$DEVDATA/$([ "$dataset" = hela ] && echo Fluo-N2DL-HeLa || echo Fluo-N2DH-GOWT1)
    parts=runs/downstream_parts/downstream_$dataset
    timeout "${LIMIT_S:-0}" $PY benchmarks/downstream.py --dataset "$dataset" --data "$data" "$@" $COMMON --sampler ddim --stride 4 \
        --gen-batch 32 --device "$DEVICE" --out "$OUT/downstream_$dataset.json" 2>&1 | log > "$OUT/downstream_$dataset.txt" \
        || echo "$dataset stopped (exit $?; LIMIT_S=${LIMIT_S:-none})" | tee -a "$OUT/downstream_$dataset.txt"
    echo "$dataset done after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/downstream_$dataset.txt"
    tar czf "$OUT/downstream_${dataset}_parts.tgz" --exclude "*.ckpt" "$parts" || true
done
tail -n 30 "$OUT"/*.txt
