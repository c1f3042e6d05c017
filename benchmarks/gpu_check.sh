#!/usr/bin/env bash
# Every GPU check in one run (< 8 minutes on one H100/H200), one JSON file: see gpu_check.py.
#   bash benchmarks/gpu_check.sh [OUT.json]
# Exit 0: all ran; 1: no CUDA (CPU parts ran, CUDA parts skipped with one line each); 2: a part failed.
set -u
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
