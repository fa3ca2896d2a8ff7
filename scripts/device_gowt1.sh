#!/usr/bin/env bash
# One device call for issue 16 item 5: a longer gowt1 texture on the GPU, its realism against the flat baseline
# on the held-out video (02), and, with DOWNSTREAM=1, the train-on-01 / test-on-02 arms with it.
#
# Carry: .whl (kornia, kornia_rs, lmdb, py-ctcmetrics wheels for the device's Python) and
# .devdata/Fluo-N2DH-GOWT1 (01, 01_GT, 02_GT and 02, copied from ../shared/data; of 02 only its 20 gold-SEG frames are read). The shipped pretrained/gowt1
# (masks, flow, scene) is the starting point; only its texture is trained again, from scratch or, with INIT=1,
# fine-tuned from the shipped texture (fit-texture --init-from). A run stopped by HOURS is exported at the step it
# reached (the same command again with --iterations = that step). LR defaults to 2e-4 (1e-4 with INIT); CHANNELS sets
# the U-Net's width when training from scratch (a 2026-11-26 fine-tune of the shipped 16 changed nothing). Writes under $OUT:
# the new texture and manifest in $OUT/gowt1_texture.tgz (unpack into pretrained/gowt1 if it beats the shipped one).
# Only the gold-SEG frames of 02 are read (realism), so .devdata may hold just those frames of 02.
#   DEVICE=cpu SMALL=1 OUT=/tmp/out scripts/device_gowt1.sh    # the same steps at tiny sizes, to test it here
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.devdata/Fluo-N2DH-GOWT1}
source scripts/device_setup.sh
BVDM="$PY -m bvdm_data"
BF16=$([ "$DEVICE" = cuda ] && echo --bf16 || true)
# GPU: the small U-Net is bound by per-step overhead, so a wide batch costs little more than the CPU's 16:
# 5 000 x 128 is 6.7x the shipped texture's 6 000 x 16 crops seen. --hours caps it whatever the card does.
if [ -n "${SMALL:-}" ]; then TEX=${TEX:-3} BATCH=4 HOURS=${HOURS:-0.05} CELLS=6 RESAMPLES=5 STEPS=10 SEEDS="0" CLIPS=2 ARMS="b c"
else TEX=${TEX:-5000} BATCH=${BATCH:-128} HOURS=${HOURS:-0.12} CELLS=120 RESAMPLES=200 STEPS=1500 SEEDS="0 1 2" \
    CLIPS=64 ARMS="a b c d"; fi
BUNDLE=${BUNDLE:-/tmp/gowt1}
LR=${LR:-$([ -n "${INIT:-}" ] && echo 1e-4 || echo 2e-4)}
rm -rf "$BUNDLE" /tmp/gowt1_texture "$OUT/fit_texture.txt" && cp -r pretrained/gowt1 "$BUNDLE"
log() { tr '\r' '\n' | grep -v "it/s\|clip/s\|s/it" || true; }
T0=$(date +%s)  # not in $OUT: only 8 files come back
fit() {
    $BVDM fit-texture --ctc "$DATA" --seq 01 --annotation GT --outlines "$DATA/01_GT/SEG" --out "$BUNDLE" \
        --work /tmp/gowt1_texture --crop-size 112 --batch-size "$BATCH" --lr "$LR" --device "$DEVICE" $BF16 \
        --channels "${CHANNELS:-16}" ${INIT:+--init-from pretrained/gowt1} "$@" 2>&1 | log >> "$OUT/fit_texture.txt"
}
fit --iterations "$TEX" --hours "$HOURS"
if grep -q "stopped by --hours" "$OUT/fit_texture.txt"; then  # export what the time allowed: resume at that step
    fit --iterations "$(grep -o "^step [0-9]*" "$OUT/fit_texture.txt" | tail -1 | cut -d' ' -f2)"
fi
tar czf "$OUT/gowt1_texture.tgz" -C "$BUNDLE" texture manifest.json
# realism on the other video's gold-outlined nuclei, with bootstrap ranges and the paired share that beats flat
$PY benchmarks/texture.py --dataset gowt1 --bundle "$BUNDLE" --data "$DATA" --cells "$CELLS" --t-s 200 --skip-speed \
    --device "$DEVICE" --threads 8 --resamples "$RESAMPLES" --out "$OUT/texture_gowt1.json" 2>&1 | log > "$OUT/texture_gowt1.txt"
if [ -n "${DOWNSTREAM:-}" ]; then
    $PY benchmarks/downstream.py --dataset gowt1 --data "$DATA" --bundle "$BUNDLE" --steps "$STEPS" --arms $ARMS \
        --seeds $SEEDS --workers 3 --clips "$CLIPS" --sampler ddim --stride 4 --gen-batch 32 --device "$DEVICE" \
        --threads 4 --no-statistics --out "$OUT/downstream_gowt1.json" 2>&1 | log > "$OUT/downstream_gowt1.txt"
fi
echo "seconds: $(( $(date +%s) - T0 ))" >> "$OUT/texture_gowt1.txt"
tail -n 25 "$OUT"/*.txt
