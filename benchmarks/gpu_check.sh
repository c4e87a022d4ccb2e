#!/usr/bin/env bash
# The GPU check for sessions lent a CUDA machine (see benchmarks/README.md).
# Runs from the repository root without installing anything: the device image already has
# torch, numpy, sentencepiece, pluggy, pyyaml and tqdm; golfplan runs from the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export GOLFPLAN_CACHE="${GOLFPLAN_CACHE:-/tmp/golfplan-cache}"
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
t0=$(date +%s)
python3 -m golfplan data build --vocab-size 1024 | tail -n 12
echo "data build: $(( $(date +%s) - t0 ))s"
# The frontier's pipeline needs its CaseOps data at vocab 8192 (built from the embedded text on first use).
python3 -m golfplan data build --caseops --vocab-size 8192 | tail -n 3
echo "data build (caseops 8192): $(( $(date +%s) - t0 ))s"
# Side by side: the baseline and tidal+parallel+gqa for SECONDS_PER_RUN each; then studies/frontier.yaml's
# whole pipeline (training FRONTIER_SECONDS, calibration, ZPAQ export, TTT evaluation on a slice).
# All of it fits 8 minutes on one H100 at the defaults (run it with a 600 s limit).
python3 benchmarks/gpu_check.py --seconds "${SECONDS_PER_RUN:-45}" --out "$OUT" ${VARIANTS:+--variants "$VARIANTS"} \
  --frontier "${FRONTIER_SECONDS:-60}" --val-tokens "${FRONTIER_VAL_TOKENS:-262144}"
