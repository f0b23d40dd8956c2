#!/usr/bin/env bash
# One base on the GPU, each adapter served under its own model name (CUDA only).
#   bash scripts/deploy/vllm_multi_lora.sh BASE_DIR TRIAGE_ADAPTER REPLY_ADAPTER
# Then: client.chat.completions.create(model="triage", ...) or model="reply".
set -euo pipefail
BASE=${1:?base model folder or hub id}
TRIAGE=${2:?triage adapter folder}
REPLY=${3:?reply adapter folder}
vllm serve "$BASE" --host 127.0.0.1 --port 8000 \
  --max-model-len 2048 \
  --enable-lora --max-lora-rank 64 --max-loras 2 \
  --lora-modules triage="$TRIAGE" reply="$REPLY"
