#!/usr/bin/env bash
# Score a training checkpoint of an upscale model on Set5/Set14 without touching the
# installed onnx_models/: export it into a scratch copy of the models folder (as version 99),
# then run benchmarks/sr_quality.py on it with one thread (so it can run beside training).
# Usage: tools/score_checkpoint.sh RUN_DIR_OR_PT [last|best] [upscale-fast|upscale-quality]
# Prints the two Set5/Set14 rows (network alone, and network + fidelity step).
set -euo pipefail
run=$1; which=${2:-last}; name=${3:-upscale-fast}
root="$(cd "$(dirname "$0")/.." && pwd)"
python=${PYTHON:-$root/.venv/bin/python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$root/onnx_models" "$scratch/models"
cd "$root"
"$python" -m nnip.train.export "$run" --checkpoint "$which" --name "$name" --version 99 \
    --models-dir "$scratch/models" > /dev/null
"$python" benchmarks/sr_quality.py --models "$name" --models-dir "$scratch/models" --threads 1 \
    | grep "^| \*\*$name"
