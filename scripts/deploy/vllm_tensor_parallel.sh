#!/usr/bin/env bash
# A merged model too big for one GPU, split across N GPUs of one machine with tensor parallelism (CUDA only).
#   bash scripts/deploy/vllm_tensor_parallel.sh MERGED_DIR 4
# Tensor parallelism splits each layer's matrices across GPUs; it needs fast links (NVLink) between them.
set -euo pipefail
MERGED=${1:?merged model folder}
GPUS=${2:-2}
vllm serve "$MERGED" --host 127.0.0.1 --port 8000 \
  --tensor-parallel-size "$GPUS" \
  --max-model-len 4096 \
  --gpu-memory-utilization 0.90
