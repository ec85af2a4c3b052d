#!/usr/bin/env bash
# Multi-process training with torchrun + DDP (NCCL on GPUs, gloo on CPU):
#   training/dist_train.sh CONFIG GPUS [--cfg-options key=value ...]
# GPUS processes on this machine; batch_size in the config is per process. PORT picks the
# rendezvous port (default 29500), PYTHON the interpreter (default: python3 on PATH).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [--cfg-options key=value ...]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: GPUS must be a positive number of processes, got '$GPUS'" >&2
  exit 2
fi
PORT=${PORT:-29500}
PYTHON=${PYTHON:-python3}
exec "$PYTHON" -m torch.distributed.run --nnodes=1 --nproc_per_node="$GPUS" --master_port="$PORT" \
  "$(dirname "$0")/train.py" "$CONFIG" "$@"
