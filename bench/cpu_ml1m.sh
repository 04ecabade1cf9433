#!/usr/bin/env bash
# ML-1M on this 2-core CPU at reduced size: SASRec and our model (next-entries fine-tune, then the
# ranker) at the same size and epochs, then ONE evaluate run -> bench/results/ml-1m-cpu.json.
#
#   bash bench/cpu_ml1m.sh          # about 25 minutes on 2 cores (the two transformers in parallel)
#   MAX_LEN=200 SASREC_EPOCHS=34 OURS_EPOCHS=34 RUNS=runs/ml1m-e200 OUT=bench/results/ml-1m-cpu200-entry-svd.json \
#     bash bench/cpu_ml1m.sh        # full-length histories, equal epochs (~1.5 h side by side)
#
# BUCKET=k (default 0: plain random batches) sorts each run of k batches by history length
# (train.bucket_batches): less padding, faster epochs at max_len 200, but a bucketed SASRec trained
# worse (BENCHMARKS.md "ML-1M next item", tried and dropped), so both train on plain batches.
#
# Both transformers: max_len 50 by default (the full-size runs use 200: bench/gpu_ml1m.sh), d=64,
# 2 layers, 25 epochs, no pretraining; ours without score/status inputs and answering from the
# newest entry's own state (model.readout = "entry": no query tokens, a step costs what SASRec's
# does) from a PureSVD item start (model.item_init = "svd"; BENCHMARKS.md "ML-1M next item").
# Needs data/ml-1m.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/ml1m-cpu}
OUT=${OUT:-bench/results/ml-1m-cpu.json}
SIZE=(--set model.max_len="${MAX_LEN:-50}" --set out_dir="$RUNS" --set train.bucket_batches="${BUCKET:-0}")
export OMP_NUM_THREADS=1  # two jobs on two cores must not spin against each other
mkdir -p "$RUNS"

$PY -m training sasrec --config training/configs/ml-1m-sasrec.toml --set name=sasrec "${SIZE[@]}" \
  --set train.epochs="${SASREC_EPOCHS:-25}" \
  > "$RUNS-sasrec.log" 2>&1 &
$PY -m training finetune --config training/configs/ml-1m-finetune.toml --set name=ours \
  --set finetune.init_from= --set model.readout=entry --set model.item_init=svd --set model.side_inputs=false \
  "${SIZE[@]}" --set train.epochs="${OURS_EPOCHS:-25}" > "$RUNS-ours.log" 2>&1
wait
export OMP_NUM_THREADS=2
$PY -m training ranker --config training/configs/ml-1m-ranker.toml --set name=ranker \
  --set out_dir="$RUNS" --set ranker.finetuned="$RUNS/ours/ckpt.pt" > "$RUNS-ranker.log" 2>&1
$PY -m training evaluate --data data/ml-1m --protocol loo \
  --models "popularity,ease,markov,sasrec:$RUNS/sasrec/ckpt.pt,ours:$RUNS/ours/ckpt.pt,ours:ft=$RUNS/ours/ckpt.pt+ranker=$RUNS/ranker/ckpt.pt" \
  --out "$OUT"
