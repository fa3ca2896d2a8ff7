#!/usr/bin/env bash
# One device call for issue 13 (GPU-resident generation), about 7 minutes on an H200 (PARTS picks some of the four):
#   1. benchmarks/denoiser_variants.py: the U-Net alone, eager fp32 / bf16 autocast / bf16 weights / channels-last /
#      compiled, evaluations/s and error vs fp32 (the network is memory-bound: which variant moves fewest bytes);
#   2. benchmarks/gpu_generation.py at 64 clips: eager vs compiled, DDIM /4 and DDPM (bf16), a profile of one
#      compiled paint, and the starvation table for trainers of widths 32 and 128 fed by a compiled stream;
#   3. benchmarks/formation_cost.py: each clip's drawn image formation (the default), 64 clips on the device vs
#      clip by clip on one CPU thread;
#   4. benchmarks/cuda_check.py: the CUDA path agrees with the CPU (masks and tracks identical).
# Carry: .whl (kornia, kornia_rs, lmdb wheels for the device's Python 3.12; the device has torch, scipy, tifffile, tqdm).
# Writes $OUT/{denoiser_variants,gpu_generation,formation_cost,cuda_check}.txt, the two JSON files and the profile table.
#   DEVICE=cpu SMALL=1 OUT=/tmp/out scripts/device_generation.sh   # tiny sizes, to test it here
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}
source scripts/device_setup.sh
export PYTHONUNBUFFERED=1
T0=$(date +%s)
log() { tr '\r' '\n' | grep -v "it/s\|clip/s\|s/it\|s/clip\|warnings.warn\|UserWarning" || true; }
if [ -n "${SMALL:-}" ]; then
    VARIANTS="--batch 8 --repeats 2"
    GEN="--clips 2 --frames 2 --size 128 --t-s 8 --t-f 2 --train-steps 2 --stream-batch 2 --trainer-widths 8 16"
    FORMATION="--clips 2 --frames 2 --size 64"
else
    VARIANTS="--batch 2048 --repeats 10"
    GEN="--clips 64 --budget-s 170 --trainer-widths 32 128"
    FORMATION="--clips 64"
fi
PARTS=${PARTS:-variants generation formation check}
want() { [[ " $PARTS " == *" $1 "* ]]; }
if want variants; then
    timeout "${VARIANTS_S:-120}" $PY benchmarks/denoiser_variants.py --device "$DEVICE" --compile $VARIANTS \
        --out "$OUT/denoiser_variants_$DEVICE.json" 2>&1 | log > "$OUT/denoiser_variants.txt"
    echo "variants done after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/denoiser_variants.txt"
fi
if want generation; then
    timeout "${GEN_S:-300}" $PY benchmarks/gpu_generation.py --device "$DEVICE" --precisions bf16 --skip-frame \
        --compile --profile $GEN --out "$OUT/gpu_generation_$DEVICE.json" 2>&1 | log > "$OUT/gpu_generation.txt"
    echo "generation done after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/gpu_generation.txt"
fi
if want formation; then
    timeout "${FORMATION_S:-60}" $PY benchmarks/formation_cost.py --device "$DEVICE" $FORMATION 2>&1 | log \
        > "$OUT/formation_cost.txt"
    echo "formation done after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/formation_cost.txt"
fi
if [ "$DEVICE" = cuda ] && want check; then
    timeout "${CHECK_S:-70}" $PY benchmarks/cuda_check.py 2>&1 | log > "$OUT/cuda_check.txt"
    echo "cuda_check done after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/cuda_check.txt"
fi
grep -h "^|" "$OUT"/*.txt
grep -h "ratio\|done after" "$OUT"/*.txt
cat "$OUT/cuda_check.txt" 2>/dev/null | tail -n 12
