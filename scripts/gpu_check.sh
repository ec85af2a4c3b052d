#!/usr/bin/env bash
# The GPU check of stark_ros (README "Deploying on NVIDIA Jetson / GPUs"): the precision setting on a
# real GPU, crops on the device, the CUDA-vs-CPU box difference, and `bench runtime --providers cuda`
# at 1 / 8 / 32 targets for fp32 / tf32 / fp16, then one summary. Runs from the repository as it is
# (not installed): needs python3 with numpy, opencv and onnxruntime-gpu; no ROS, no torch (torch only
# for --extra-variants). About 2-4 minutes on an H200.
#
#   scripts/gpu_check.sh [--providers cuda|cpu] [--repo DIR] [--data DIR] [--ort DIR] [-- more gpu_check.py options]
#
#   --repo  the repository root (default: the one holding this script)
#   --data  a folder with the sequences otb_crossing and vot_bag (default: <repo>/.gpu/sot, else
#           ../shared/data/sot beside the repository)
#   --ort   a folder to put first on PYTHONPATH holding an unpacked onnxruntime-gpu (default:
#           /tmp/ortgpu when it exists); onnxruntime.preload_dlls() then finds CUDA and cuDNN
#   --providers cpu   a dry run on a machine without a GPU (the GPU checks are skipped, with the reason)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
data=""
ort_dir=""
providers="cuda"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repo) repo="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --ort) ort_dir="$2"; shift 2 ;;
    --providers) providers="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
repo="$(cd "$repo" && pwd)"
if [[ -z "$data" ]]; then
  if [[ -d "$repo/.gpu/sot" ]]; then data="$repo/.gpu/sot"; else data="$repo/../shared/data/sot"; fi
fi
if [[ -z "$ort_dir" && -d /tmp/ortgpu ]]; then ort_dir=/tmp/ortgpu; fi
python="${PYTHON:-python3}"
export PYTHONPATH="${ort_dir:+$ort_dir:}$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
cd "$repo"
echo "gpu_check: repo $repo, data $data, providers $providers, python $($python -c 'import sys; print(sys.executable)'), PYTHONPATH $PYTHONPATH"
exec "$python" "$here/gpu_check.py" --providers "$providers" --data "$data" --model "$repo/models/default" "${extra[@]}"
