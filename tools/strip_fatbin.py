"""Zero the CUDA cubins of every architecture but the kept ones inside a shared library.

Why: onnxruntime-gpu's CUDA provider (284 MB) holds cubins for sm_75 to sm_120; the lent
GPU machines are sm_90 (H100, H200) and a call carries 64 MiB. Zeroing the other cubins'
payloads, sizes and headers unchanged (every offset in the file stays valid, and the CUDA
runtime picks the sm_90 entry by its header), lets xz shrink the file to ~52 MB. The
result runs only on the kept architectures. Fatbin layout: a 16-byte header (magic
0xBA55ED50, version 1, header size, payload size), then entries, each a header (kind,
header size, payload size, ..., arch at byte 28) and its payload.

    python tools/strip_fatbin.py libonnxruntime_providers_cuda.so out.so --keep 90
"""

from __future__ import annotations

import argparse
import collections
import struct
import sys

MAGIC = struct.pack("<I", 0xBA55ED50)
KIND_PTX = 1


def strip(data: bytearray, keep: set[int]) -> collections.Counter:
    """Zero, in place, the payload of each non-PTX entry whose arch is not in ``keep``."""
    zeroed: collections.Counter = collections.Counter()
    pos = data.find(MAGIC)
    while pos >= 0:
        version, header, size = struct.unpack_from("<HHQ", data, pos + 4)
        if version != 1 or header != 16 or pos + header + size > len(data):
            pos = data.find(MAGIC, pos + 4)
            continue
        entry, end = pos + header, pos + header + size
        while entry < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            if kind != KIND_PTX and arch not in keep:  # PTX is kept: it may be all a kernel has
                start = entry + entry_header
                data[start:start + payload] = bytes(payload)
                zeroed[arch] += payload
            entry += entry_header + payload
        pos = data.find(MAGIC, end)
    return zeroed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--keep", type=int, action="append", required=True, metavar="SM",
                        help="architecture to keep, e.g. 90 (repeatable)")
    args = parser.parse_args(argv)
    with open(args.source, "rb") as f:
        data = bytearray(f.read())
    zeroed = strip(data, set(args.keep))
    with open(args.target, "wb") as f:
        f.write(data)
    print(", ".join(f"sm_{a}: {n / 1e6:.1f} MB zeroed" for a, n in sorted(zeroed.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
