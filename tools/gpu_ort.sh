#!/usr/bin/env bash
# onnxruntime-gpu on the lent GPU machine, whose image has onnxruntime's CPU build only and
# whose calls carry 64 MiB (checkpoints/README.md "On a lent GPU"). Made here by
# `bash tools/gpu_ort.sh pack DIR_A DIR_B` from the onnxruntime-gpu wheel (CUDA 13, like
# the machine's torch): DIR_A/site.tar.xz (the Python package without its CUDA provider,
# plus rawpy, lensfunpy and imagecodecs for Python 3.12: the machine lacks them) and
# DIR_B/cuda90.so.xz (the CUDA provider library with every cubin but sm_90's zeroed, so it
# compresses from 284 to 52 MB; H100 and H200 are sm_90). Each travels in its own call;
# on the machine, `bash tools/gpu_ort.sh unpack DIR` unpacks a carried folder into
# /tmp/gpu-ort (kept while the machine stays warm), and `source tools/gpu_ort.sh env`
# sets PYTHONPATH and LD_LIBRARY_PATH (the image's CUDA 13 and cuDNN 9 libraries).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "${1:-}" in
pack)
    set -euo pipefail
    a=$2 b=$3 tmp=$(mktemp -d)
    mkdir -p "$a" "$b"
    pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$tmp/whl" \
        onnxruntime-gpu==1.31.1 rawpy==0.28.0 lensfunpy==1.18.0 imagecodecs==2024.12.30
    pip install -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --target "$tmp/site" "$tmp"/whl/*.whl
    capi=$tmp/site/onnxruntime/capi
    python "$here/tools/strip_fatbin.py" "$capi/libonnxruntime_providers_cuda.so" "$tmp/cuda90.so" --keep 90
    xz -9e -T2 -c "$tmp/cuda90.so" > "$b/cuda90.so.xz"
    # The Python module links onnxruntime statically: libonnxruntime.so is for C users.
    rm -rf "$capi/libonnxruntime_providers_cuda.so" "$capi"/libonnxruntime.so.* "$tmp/site/bin"
    # imagecodecs: only the codecs nnip and tifffile use here (the rest is 100 MB).
    keep=" _imcd _shared _jpeg8 _png _zlib _deflate _lzw _zstd _lz4 _bz2 _lzma _webp _jpeg2k _tiff _cms _apng _spng "
    for f in "$tmp"/site/imagecodecs/_*.so; do
        b=$(basename "$f"); b=${b%%.cpython*}
        [[ $keep == *" $b "* ]] || rm "$f"
    done
    needed=$(for f in "$tmp"/site/imagecodecs/_*.so; do readelf -d "$f" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'; done | sort -u)
    for f in "$tmp"/site/imagecodecs.libs/*; do
        grep -qxF "$(basename "$f")" <<< "$needed" || rm "$f"
    done
    tar -C "$tmp" -cf - site | xz -9 -T2 > "$a/site.tar.xz"
    rm -rf "$tmp"
    ls -la "$a" "$b"
    ;;
unpack)
    set -euo pipefail
    mkdir -p /tmp/gpu-ort
    python3 - "$2" <<'PY'
import lzma, shutil, sys, tarfile
from pathlib import Path
src, dst = Path(sys.argv[1]), Path("/tmp/gpu-ort")
if (src / "site.tar.xz").exists():
    with tarfile.open(src / "site.tar.xz") as tar:
        tar.extractall(dst, filter="data")
if (src / "cuda90.so.xz").exists():
    shutil.copy2(src / "cuda90.so.xz", dst / "cuda90.so.xz")
target = dst / "site/onnxruntime/capi/libonnxruntime_providers_cuda.so"
if (dst / "cuda90.so.xz").exists() and (dst / "site").exists() and not target.exists():
    with lzma.open(dst / "cuda90.so.xz") as f, open(target, "wb") as g:
        shutil.copyfileobj(f, g)
    print("CUDA provider in place")
PY
    ;;
env)
    libs=$(find /usr/local/cuda*/ /opt /usr/lib/x86_64-linux-gnu -name 'lib*.so.*' \( -name 'libcublas*.so.13*' \
        -o -name 'libcudnn.so.9*' -o -name 'libcudart.so.13*' -o -name 'libcurand.so.10*' \
        -o -name 'libcufft.so.12*' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)
    export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PYTHONPATH=/tmp/gpu-ort/site:$here${PYTHONPATH:+:$PYTHONPATH}
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ;;
*)
    echo "usage: $0 pack DIR_A DIR_B | unpack DIR | env (sourced)" >&2
    exit 2
    ;;
esac
