#!/usr/bin/env bash
# Notebook 04's training script on several GPUs with FSDP. Needs CUDA GPUs, accelerate, and the course installed.
#   bash scripts/deploy/train_fsdp.sh runs/<course>/02_data_curation/curated_train.jsonl runs/fsdp-adapter
# LoRA with FSDP needs a 16-bit base: 4-bit QLoRA under FSDP is a separate recipe, so load_in_4bit is off here.
set -euo pipefail
TRAIN=${1:?curated train JSONL}
OUT=${2:?output folder}
accelerate launch --config_file "$(dirname "$0")/accelerate_fsdp.yaml" \
  scripts/train_sft.py --train "$TRAIN" --out "$OUT" --set load_in_4bit=false --merge
