#!/usr/bin/env bash
# Shared by tools/rerun_*_benchmarks.sh: run each benchmark command given as an argument
# (a word list, "benchmarks/NAME.py --flag ..."), from the repository root, each writing its
# section of benchmarks/RESULTS.md; logs go to ${LOGS:-/tmp}/bench_NAME.log.
cd "$(dirname "$0")/.." || exit 1
logs=${LOGS:-/tmp}
for cmd in "$@"; do
    name=$(basename "${cmd%% *}" .py)
    echo "=== $(date -u +%H:%M:%S) python $cmd --results benchmarks/RESULTS.md"
    # shellcheck disable=SC2086  # cmd is a word list on purpose
    python $cmd --results benchmarks/RESULTS.md > "$logs/bench_$name.log" 2>&1
    echo "rc=$? (log: $logs/bench_$name.log)"
done
echo "=== done $(date -u +%H:%M:%S)"
