#!/usr/bin/env bash
# Rerun every benchmark whose figures depend on the installed demosaic model, each writing
# its section of benchmarks/RESULTS.md (what shipping a new demosaic version takes; ~35
# minutes on the 2-core machine, 18 of them denoise_quality's CBM3D: stop any training
# first, the speed figures need idle cores).
# Logs go to ${LOGS:-/tmp}/bench_NAME.log. Run from anywhere.
exec bash "$(dirname "$0")/rerun_benchmarks.sh" \
    "benchmarks/demosaic_quality.py --threads 2" \
    "benchmarks/demosaic_falsecolor.py --threads 2" \
    "benchmarks/develop_speed.py" \
    "benchmarks/develop_end_to_end.py" \
    "benchmarks/develop_combined.py --images 2" \
    "benchmarks/lens_quality.py --images 2" \
    "benchmarks/develop_real_files.py" \
    "benchmarks/denoise_quality.py --images 0 --crop 192" \
    "benchmarks/models_report.py"
