#!/usr/bin/env bash
# Notebook 04's recipe in several processes with DistributedDataParallel: gloo on a CPU, NCCL on GPUs.
#   bash scripts/deploy/train_ddp.sh TRAIN.jsonl OUT [NPROC] [more scripts/train_sft.py arguments]
#   bash scripts/deploy/train_ddp.sh data/train.jsonl runs/ddp 2 --set batch=4   # global batch 2 x 4 = the recipe's 8
# Each process takes --set batch rows a step, so divide the recipe's batch by NPROC to train the same global batch.
# On a CPU each process gets cores / NPROC threads. Rank 0 saves the adapter and prints the JSON summary.
set -euo pipefail
TRAIN=${1:?usage: train_ddp.sh TRAIN.jsonl OUT [NPROC] [train_sft.py arguments]}
OUT=${2:?usage: train_ddp.sh TRAIN.jsonl OUT [NPROC] [train_sft.py arguments]}
NPROC=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
PY=${PYTHON:-python}
THREADS=$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS} WORKBOOK_THREADS=${WORKBOOK_THREADS:-$THREADS}
exec "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" "$(dirname "$0")/../train_sft.py" --train "$TRAIN" --out "$OUT" "$@"
