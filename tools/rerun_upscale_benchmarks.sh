#!/usr/bin/env bash
# Rerun every benchmark whose figures depend on the installed upscale models, each writing
# its section of benchmarks/RESULTS.md (what shipping a new upscale-fast or upscale-quality
# takes, after its int8 and fp16 variants are remade; ~6 minutes on the 2-core machine:
# stop any training first, the speed figures need idle cores). int8_variants.py is not in
# the list: its section also holds hand-run rows; run it for the changed model by hand.
# Logs go to ${LOGS:-/tmp}/bench_NAME.log. Run from anywhere.
models=upscale-fast,upscale-fast-int8,upscale-quality,upscale-quality-int8
exec bash "$(dirname "$0")/rerun_benchmarks.sh" \
    "benchmarks/sr_quality.py --models $models" \
    "benchmarks/upscale_edges.py --models $models" \
    "benchmarks/upscale_defocus.py --models $models" \
    "benchmarks/upscale_fidelity.py --models $models" \
    "benchmarks/upscale_picture.py --models upscale-fast,upscale-quality" \
    "benchmarks/upscale_speed.py --models $models" \
    "benchmarks/fp16_variants.py --threads 1" \
    "benchmarks/models_report.py"
