#!/usr/bin/env bash
# ML-1M on one GPU: SASRec and our model (pretrain + fine-tune + ranker) in bf16, then ONE evaluate
# run with popularity, ease, markov, sasrec and ours (with and without the ranker) ->
# bench/results/ml-1m.json, then throughput and MFU.
#
#   bench/gpu_ml1m.sh            # GPU, ~8 min wall (each training run is capped by time_limit_s)
#   bench/gpu_ml1m.sh --smoke    # CPU, a few steps each: checks the whole path end to end
#
# Needs data/ml-1m (built by `python -m training build`); no duckdb/onnxruntime, no network.
# Logs, metrics.jsonl and PNG plots go under $OUT when set (else runs/gpu-ml1m).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
DATA=${DATA:-data/ml-1m}
OUT_DIR=${OUT:-runs/gpu-ml1m}
RUNS="$OUT_DIR/runs"
mkdir -p "$RUNS"

if [[ "${1:-}" == "--smoke" ]]; then
  DEVICE=cpu
  RESULTS="$OUT_DIR/ml-1m-smoke.json"
  COMMON=(--set train.epochs=2 --set train.steps_per_epoch=3 --set train.val_users=50
          --set train.batch_size=16 --set model.max_len=50)
  EVAL_EXTRA=(--max-users 200 --no-tune)
  LIMITS=(0 0 0 0)
else
  DEVICE=cuda
  RESULTS=bench/results/ml-1m.json
  COMMON=()
  EVAL_EXTRA=()
  LIMITS=(130 55 140 30)  # seconds of training: sasrec, pretrain, finetune, ranker
fi

step() { echo "=== [$(date +%T)] $*" | tee -a "$OUT_DIR/progress.log"; }
run() { "$PY" -m training "$@" 2>&1 | tr '\r' '\n' | grep --line-buffered -v 'it/s]\|s/it]' | tee -a "$OUT_DIR/train.log"; }

"$PY" - <<'PY'
import sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.cuda.is_available()}",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

step "sasrec"
run sasrec --config training/configs/ml-1m-sasrec.toml --device "$DEVICE" \
  --set data.path="$DATA" --set out_dir="$RUNS" --set train.time_limit_s="${LIMITS[0]}" "${COMMON[@]}"
step "pretrain"
run pretrain --config training/configs/ml-1m-pretrain.toml --device "$DEVICE" \
  --set data.path="$DATA" --set out_dir="$RUNS" --set train.time_limit_s="${LIMITS[1]}" "${COMMON[@]}"
step "finetune"
run finetune --config training/configs/ml-1m-finetune.toml --device "$DEVICE" \
  --set data.path="$DATA" --set out_dir="$RUNS" --set train.time_limit_s="${LIMITS[2]}" \
  --set finetune.init_from="$RUNS/ml-1m-pretrain/ckpt.pt" "${COMMON[@]}"

step "ranker"
run ranker --config training/configs/ml-1m-ranker.toml --device "$DEVICE" \
  --set data.path="$DATA" --set out_dir="$RUNS" --set train.time_limit_s="${LIMITS[3]}" \
  --set ranker.finetuned="$RUNS/ml-1m-finetune/ckpt.pt" \
  $([[ "${1:-}" == "--smoke" ]] && echo "--set train.epochs=1 --set train.val_users=50")

FT="$RUNS/ml-1m-finetune/ckpt.pt"
step "evaluate"
"$PY" -m training evaluate --data "$DATA" --protocol loo \
  --models "popularity,ease,markov,sasrec:$RUNS/ml-1m-sasrec/ckpt.pt,ours:$FT,ours:ft=$FT+ranker=$RUNS/ml-1m-ranker/ckpt.pt" \
  --out "$RESULTS" "${EVAL_EXTRA[@]}" 2>&1 | tr '\r' '\n' | grep -v 'batch/s]\|s/batch]' | tee -a "$OUT_DIR/evaluate.log"

step "throughput"
PEAK=989  # H200 dense bf16 TFLOP/s
"$PY" bench/bench_train.py report "$RUNS" --peak-tflops "$PEAK" --out "$OUT_DIR/throughput.json"
step "done: $RESULTS, $OUT_DIR"
