#!/usr/bin/env bash
# The device side of a training session on a lent GPU machine (checkpoints/README.md,
# "On a lent GPU"). Run from the repository root on that machine.
#
#   bash tools/gpu_train.sh launch DATA MINUTES "NAME|TASK ARGS..." ["NAME|TASK ARGS..." ...]
#       Copies the carried training folders under DATA and the repo's checkpoints/ to
#       /tmp/gpu (outside the checkout: the device tool re-syncs the checkout on every call
#       and removes ignored folders it did not carry), then starts each run detached
#       (setsid), writing /tmp/gpu/runs/NAME/ and /tmp/gpu/runs/NAME.out, e.g.
#         "demosaic|demosaic --config fast --resume"
#         "upscale-quality|upscale --config quality"
#       A checkpoints/NAME folder, if any, is the run's starting point (use --resume).
#   bash tools/gpu_train.sh status
#       The latest log lines of every run.
#   bash tools/gpu_train.sh collect OUT
#       Waits until every run has ended, then copies each run's files to OUT/NAME/.
#   bash tools/gpu_train.sh watch OUT
#       The same, but also copies them every 2 minutes while it trains (a call cut short by
#       the device budget still brings back its last checkpoints).
# Files, not tars: the device tool brings back no file over 16 MiB, and a run's last.pt and
# best.pt together exceed it (2026-11-27: two 18 MB tars left behind).
#
# Each run gets: --device cuda, 5 data workers, batch 32, a validation and checkpoint every
# 1.5 minutes; ARGS come after these, so a --set or --workers in ARGS wins. Three runs at once kept one
# H200 and its 16 cores busy at ~23-27 steps/s each.
set -euo pipefail
GPU=/tmp/gpu

launch() {
    local data=$1 minutes=$2
    shift 2
    mkdir -p "$GPU/runs" "$GPU/cache" "$GPU/data"
    cp -r "$data"/. "$GPU/data/"
    local folders=()
    for folder in "$GPU"/data/*/; do folders+=("${folder%/}"); done
    export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
    for spec in "$@"; do
        local name=${spec%%|*} args=${spec#*|}
        if [[ -d checkpoints/$name && ! -d $GPU/runs/$name ]]; then
            cp -r "checkpoints/$name" "$GPU/runs/$name"
        fi
        # shellcheck disable=SC2086  # ARGS is a word list on purpose
        setsid nohup python3 -m nnip.train --set batch=32 --set checkpoint_minutes=1.5 \
            --device cuda --threads 2 --workers 5 --cache "$GPU/cache" --minutes "$minutes" \
            $args --out "$GPU/runs/$name" --data "${folders[@]}" \
            > "$GPU/runs/$name.out" 2>&1 < /dev/null &
        echo "started $name: python3 -m nnip.train $args"
    done
}

status() {
    for log in "$GPU"/runs/*.out; do
        echo "== $log"
        grep -v "teachers ready" "$log" | tail -n 4
    done
}

collect() {
    local out=$1
    # "[n]nip" keeps this pattern from matching the shell running it.
    while pgrep -f "[n]nip.train" > /dev/null; do sleep 5; done
    for log in "$GPU"/runs/*.out; do
        local name
        name=$(basename "$log" .out)
        mkdir -p "$GPU/runs/$name"
        cat "$log" >> "$GPU/runs/$name/log.txt"  # after the history a resumed run brought
        copy_run "$name" "$out"
    done
    ls -la "$out"/*
}

copy_run() {  # NAME OUT: the run's files to OUT/NAME/, swapped in whole
    local name=$1 out=$2
    rm -rf "$out/tmp-$name" && cp -r "$GPU/runs/$name" "$out/tmp-$name"
    rm -rf "$out/$name" && mv "$out/tmp-$name" "$out/$name"
}

snapshot() {
    local out=$1 name
    for run in "$GPU"/runs/*/; do
        name=$(basename "$run")
        cp "$GPU/runs/$name.out" "$run/gpu.out" 2>/dev/null || true
        copy_run "$name" "$out"
    done
}

watch() {
    local out=$1 waited=0
    while pgrep -f "[n]nip.train" > /dev/null; do
        sleep 10
        waited=$((waited + 10))
        if (( waited % 120 == 0 )); then snapshot "$out"; status; fi
    done
    snapshot "$out"
    status
    ls -la "$out"/*
}

command=${1:-}
shift || true
case $command in
    launch) launch "$@" ;;
    status) status ;;
    collect) collect "$@" ;;
    watch) watch "$@" ;;
    *) sed -n '2,25p' "$0"; exit 2 ;;
esac
