#!/usr/bin/env bash
# The GPU check, prepared for a machine with an NVIDIA GPU (no network needed; torch, onnx and onnxruntime
# preinstalled, this project copied in): the GPU- and TensorRT-marked tests, then the GPU bench (PyTorch eager
# FP32/FP16, torch.compile with CUDA graphs, ONNX Runtime's CUDA provider and TensorRT where present), in under
# 8 minutes. Tables (.md), JSON and logs go to RESULTS_DIR.
#
#   bash benchmarks/gpu_check.sh RESULTS_DIR
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3); GPU_CHECK_BUDGET_S (default 450);
# GPU_CHECK_DRY_RUN=1 prints the steps instead of running them (GPU_CHECK_ASSUME_GPU=1 skips the GPU probe;
# both exist so that the CPU-side logic can be tested without a GPU).
set -uo pipefail

usage() { echo "usage: bash benchmarks/gpu_check.sh RESULTS_DIR" >&2; }
if [[ $# -ne 1 ]]; then usage; exit 2; fi
case "$1" in
  -h | --help) usage; exit 0 ;;
  -*) echo "error: unknown option $1; the only argument is the results folder." >&2; exit 2 ;;
esac

OUT=$1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
BUDGET=${GPU_CHECK_BUDGET_S:-450}
if ! [[ $BUDGET =~ ^[0-9]+$ ]] || ((BUDGET < 60)); then
  echo "error: GPU_CHECK_BUDGET_S must be a whole number of seconds, at least 60 (got '$BUDGET')." >&2
  exit 2
fi
if [[ -e "$OUT" && ! -d "$OUT" ]]; then
  echo "error: $OUT exists and is not a folder." >&2
  exit 1
fi

# The probe runs torch in a child process: a machine without a GPU gets one sentence and exit 1, nothing else.
if [[ "${GPU_CHECK_ASSUME_GPU:-0}" != 1 ]]; then
  if ! GPU_NAME=$("$PYTHON" -c 'import torch, sys
sys.exit(1) if not torch.cuda.is_available() else print(torch.cuda.get_device_name(0))' 2>/dev/null); then
    echo "error: no CUDA GPU is visible to torch here ($PYTHON), so the GPU check cannot run; run it on a machine with an NVIDIA GPU." >&2
    exit 1
  fi
else
  GPU_NAME="(assumed)"
fi

mkdir -p "$OUT" || { echo "error: cannot create the results folder $OUT." >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO" || exit 1
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }

# run NAME LIMIT_S CMD...: a step under its own time limit, output teed to OUT/NAME.log, status recorded.
STATUS=0
run() {
  local name=$1 limit=$2
  shift 2
  local remaining
  remaining=$(left)
  ((limit > remaining)) && limit=$remaining
  if ((limit < 20)); then
    echo "step $name: skipped, the ${BUDGET}s budget is spent" | tee -a "$OUT/steps.txt"
    STATUS=1
    return
  fi
  if [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
    echo "step $name (limit ${limit}s): $*" | tee -a "$OUT/steps.txt"
    return
  fi
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "step $name: exit $rc after $((SECONDS - t0))s (limit ${limit}s)" | tee -a "$OUT/steps.txt"
  ((rc != 0)) && STATUS=1
  tail -n 40 "$OUT/$name.log"
}

: >"$OUT/steps.txt"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "gpu: $GPU_NAME"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null || true
  "$PYTHON" -c 'from alexnet_deploy.core.manifest import library_versions as v; print(v())' 2>/dev/null || true
} >"$OUT/environment.txt"

if [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]] || "$PYTHON" -c 'import pytest' 2>/dev/null; then
  # A test module whose imports are missing here (typer, say) must not stop the GPU tests from running.
  run tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider --continue-on-collection-errors -m "gpu or tensorrt" tests
else
  echo "step tests: skipped, pytest is not installed for $PYTHON" | tee -a "$OUT/steps.txt"
  STATUS=1
fi
run bench "$(left)" "$PYTHON" benchmarks/gpu_bench.py --out "$OUT" --work "$OUT/artifacts"

# Plans and ONNX files are large and rebuilt in minutes: keep the figures, not the artifacts.
[[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]] || rm -rf "$OUT/artifacts"
echo "gpu_check: done in $((SECONDS - START))s; results in $OUT (status $STATUS)"
exit "$STATUS"
