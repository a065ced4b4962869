#!/usr/bin/env bash
# The GPU check of docs/benchmarks.md, as one script for a short lease on an H100/H200.
# Wheels the machine lacks travel in .whl (trl, datasets, dill, multiprocess, transformers).
#   bash benchmarks/gpu_check.sh OUT_FOLDER
set -u
out=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 SELFCORRECT_CACHE=/tmp/selfcorrect-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, accelerate; print(torch.__version__, transformers.__version__, accelerate.__version__)" | tee -a "$out/gpu.txt"
stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log, go on if it fails
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  echo "== $name: exit $? after $((SECONDS - start))s"
  grep -v -E "it/s\]|s/it\]|Warning|warn" "$out/$name.log" | tail -n 14
}
stage generation 150 python3 benchmarks/generation.py --hidden 768 --layers 12 --vocab 32000 --batch 256 --new-tokens 128
stage trl 170 python3 benchmarks/trl_comparison.py --model random --hidden 768 --layers 12 --problems 64 --samples 4 \
  --max-new-tokens 128 --steps 4 --warmup 1 --rounds 1 --threads 8 --json "$out/trl.json"
stage demo 260 python3 -m selfcorrect demo --config configs/demo-gpu.yaml --workers 1 --no-progress --out /tmp/demo-gpu
cp /tmp/demo-gpu/report.md "$out/demo-report.md" 2>/dev/null
for f in /tmp/demo-gpu/runs/*/metrics.jsonl; do [ -f "$f" ] && cp "$f" "$out/demo-$(basename "$(dirname "$f")").jsonl"; done
true
