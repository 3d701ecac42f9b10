"""Fuzz the readers: RAW (LibRaw), JPEG / PNG / TIFF and the metadata code, >= 100,000 cases.

Every case is a small valid seed file that this script makes itself, mutated: bit flips,
interesting byte values, truncation, inserted / deleted / duplicated bytes, splices of two
seeds, corrupted TIFF directory entries, absurd header dimensions (a TIFF, DNG or PNG whose
header says 100000 x 100000, a JPEG of 65535 x 65535) and zero-size images. Targets:

* ``raw``:      :func:`nnip.raw.frame.read_raw` on mutated DNGs (mosaic and linear);
* ``jpeg``, ``png``, ``tiff``: :func:`nnip.core.imageio.read_image`, and for what decodes,
  :func:`~nnip.core.imageio.write_image` back to the same format (the metadata writers on
  fuzzed EXIF / ICC / XMP);
* ``metadata``: the functions of :mod:`nnip.core.metadata` on mutated EXIF blocks, XMP
  packets and TIFF files (``exif_from_tiff``).

A crash is any exception that is not an :class:`~nnip.core.errors.NnipError` (for
metadata, documented never to raise: any exception), a case running longer than
``--timeout`` seconds (10), or a worker process killed by a signal (a LibRaw segfault).
Cases run in a pool of worker processes, one case in flight per worker, so a segfault or a
hang costs one worker (restarted) and is counted, never fatal. Workers run with a 3 GiB
address-space limit (``MemoryError`` is then a crash too: a reader that allocates
gigabytes for a file of a few hundred bytes is a bug) and without core dumps.

Cases are numbered; case ``i`` is a pure function of ``(--seed, i)`` and the seed files,
so every crash is reproduced with ``--replay I``. The inputs of crashing cases are saved in
``benchmarks/_work/fuzz/crashes/``.

Optional extra RAW seeds (``--extra-raw DIR``, e.g. ``../shared/data/raw/truncated``) add
other camera formats (CR3, CR2, NEF, RAF, ...); files over 600 kB are skipped.

    nice -n 19 python benchmarks/fuzz_readers.py --iterations 100000 \\
        --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = [
    "TARGETS",
    "Seed",
    "make_seeds",
    "load_seeds",
    "MUTATORS",
    "make_case",
    "run_case",
    "Outcome",
    "Campaign",
    "main",
]

TARGETS = ("raw", "jpeg", "png", "tiff", "metadata")
#: Share of the cases each target gets (RAW decoding is the slowest and the riskiest).
WEIGHTS = {"raw": 3, "jpeg": 2, "png": 2, "tiff": 2, "metadata": 2}
WORK = Path(__file__).resolve().parent / "_work" / "fuzz"
MEMORY_LIMIT = 3 * 2**30
MAX_EXTRA_BYTES = 600_000
_ABSURD = (100_000, 65_535, 30_000, 2**31 - 1, 2**32 - 1, 1, 0)


# --------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class Seed:
    """One valid file to mutate: its target, name, bytes and usual extension."""

    target: str
    name: str
    data: bytes
    ext: str


def _rgb(height: int, width: int, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
    noise = rng.normal(0, 0.05, (height, width, 3))
    return np.clip(base * [1.0, 0.7, 0.4] + noise, 0, 1).astype(np.float32)


def _exif_block(orientation: int = 6) -> bytes:
    from PIL import Image as PILImage
    from PIL.TiffImagePlugin import IFDRational as R

    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "FuzzCam"
    exif[0x0110] = "Model \u00e9 1"
    exif[0x0131] = "seed maker"
    exif[0x0132] = "2024:01:02 03:04:05"
    exif[0x8769] = {
        0x829A: R(1, 250), 0x829D: R(28, 10), 0x8827: 400, 0x9003: "2024:01:02 03:04:05",
        0x920A: R(50, 1), 0xA434: "Lens 50mm", 0xA002: 48, 0xA003: 32, 0x927C: b"MAKERNOTE" * 8,
    }
    exif[0x8825] = {0x0001: "N", 0x0002: (R(52, 1), R(31, 1), R(0, 1)), 0x0005: b"\x00"}
    return exif.tobytes()


def _xmp_packet() -> bytes:
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        b'tiff:Orientation="6" exif:PixelXDimension="48" exif:PixelYDimension="32">'
        b"<tiff:ImageWidth>48</tiff:ImageWidth><tiff:ImageLength>32</tiff:ImageLength>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
    )


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _image_seeds(tmp: Path) -> list[Seed]:
    """JPEG, PNG and TIFF seeds written by our own writer (metadata included) and by Pillow."""
    import numpy as np
    import tifffile
    from PIL import Image as PILImage

    from nnip.core.imageio import Image, ImageMeta, write_image

    pixels = _rgb(32, 48, 1)
    alpha = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    meta = ImageMeta(format="png", bit_depth=8, mode="rgb", exif=_exif_block(), icc=_srgb_icc(),
                     xmp=_xmp_packet(), dpi=(300.0, 300.0))
    variants = [
        ("jpeg", "jpeg-exif", dict(format="jpeg", quality=90), None, pixels),
        ("jpeg", "jpeg-grey", dict(format="jpeg", quality=60), None, pixels[:, :, :1]),
        ("png", "png-rgba16", dict(format="png", bits=16), alpha, pixels),
        ("png", "png-grey8", dict(format="png", bits=8), None, pixels[:, :, :1]),
        ("tiff", "tiff-rgb8-deflate", dict(format="tiff", bits=8), None, pixels),
        ("tiff", "tiff-rgba16-lzw", dict(format="tiff", bits=16, compression="lzw"), alpha, pixels),
        ("tiff", "tiff-float-none", dict(format="tiff", bits=32, compression="none"), None, pixels),
    ]
    seeds = []
    for target, name, options, alpha_plane, colour in variants:
        path = tmp / f"{name}.{target}"
        write_image(path, Image(np.ascontiguousarray(colour), alpha_plane, meta), **options)
        seeds.append(Seed(target, name, path.read_bytes(), _OUTPUT_EXTENSIONS[target]))
    # Formats our writer does not make: progressive and CMYK JPEG, palette PNG, tiled,
    # big-endian and planar TIFF.
    as8 = (pixels * 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(as8).save(buffer, "JPEG", progressive=True, quality=80, exif=_exif_block(3))
    seeds.append(Seed("jpeg", "jpeg-progressive", buffer.getvalue(), ".jpg"))
    buffer = io.BytesIO()
    PILImage.fromarray(as8).convert("CMYK").save(buffer, "JPEG", quality=85)
    seeds.append(Seed("jpeg", "jpeg-cmyk", buffer.getvalue(), ".jpg"))
    buffer = io.BytesIO()
    PILImage.fromarray(as8).convert("P").save(buffer, "PNG")
    seeds.append(Seed("png", "png-palette", buffer.getvalue(), ".png"))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, (pixels * 65535).astype(np.uint16), byteorder=">", tile=(16, 16),
                     photometric="rgb", compression="zlib", predictor=True)
    seeds.append(Seed("tiff", "tiff-tiled-bigendian", buffer.getvalue(), ".tif"))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.moveaxis(as8, -1, 0), photometric="rgb", planarconfig="separate",
                     rowsperstrip=8)
    seeds.append(Seed("tiff", "tiff-planar-strips", buffer.getvalue(), ".tif"))
    return seeds


def _raw_seeds(tmp: Path) -> list[Seed]:
    """DNGs from the project's writer: four Bayer phases, per-position black, a linear DNG."""
    import datetime as dt

    import numpy as np

    from nnip.raw.dng import write_dng, write_linear_dng

    matrix = np.array([[6722, -635, -963], [-4287, 12460, 2028], [-908, 2162, 5668]]) / 1e4
    when = dt.datetime(2024, 1, 2, 3, 4, 5)  # fixed: the seed bytes must not change
    rng = np.random.default_rng(7)
    seeds = []
    for index, pattern in enumerate(("RGGB", "GRBG", "BGGR", "GBRG")):
        mosaic = rng.integers(600, 15000, (32, 48)).astype(np.uint16)
        path = tmp / f"dng-{pattern}.dng"
        black = 512 if index % 2 == 0 else (510, 512, 514, 516)
        write_dng(path, mosaic, pattern=pattern, black_level=black, white_level=16383,
                  color_matrix1=matrix, as_shot_neutral=(0.5, 1.0, 0.7), datetime=when,
                  noise_profile=(1e-4, 1e-6), iso=800, fnumber=2.8, focal_length=50,
                  exposure_time=0.01, lens_model="Fuzz 50", orientation=1 + 5 * (index % 2))
        seeds.append(Seed("raw", path.stem, path.read_bytes(), ".dng"))
    linear = rng.integers(0, 60000, (32, 48, 3)).astype(np.uint16)
    path = tmp / "dng-linear.dng"
    write_linear_dng(path, linear, white_level=65535, color_matrix1=matrix,
                     as_shot_neutral=(0.5, 1.0, 0.7), datetime=when)
    seeds.append(Seed("raw", "dng-linear", path.read_bytes(), ".dng"))
    return seeds


def _metadata_seeds(tiff_seeds: Sequence[Seed]) -> list[Seed]:
    seeds = [
        Seed("metadata", "exif-full", _exif_block(6), ".exif"),
        Seed("metadata", "exif-bare", b"Exif\x00\x00" + _exif_block(8)[6:60], ".exif"),
        Seed("metadata", "xmp", _xmp_packet(), ".xmp"),
    ]
    seeds += [Seed("metadata", f"tiff:{s.name}", s.data, ".tif") for s in tiff_seeds[:2]]
    return seeds


def make_seeds(directory: Path, extra_raw: Sequence[Path] = ()) -> list[Seed]:
    """Build every seed and store them in ``directory`` (``index.json`` + one file each)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        images = _image_seeds(Path(tmp))
        seeds = images + _raw_seeds(Path(tmp))
    seeds += _metadata_seeds([s for s in images if s.target == "tiff"])
    for folder in extra_raw:
        for path in sorted(Path(folder).iterdir()):
            if path.is_file() and 0 < path.stat().st_size <= MAX_EXTRA_BYTES:
                seeds.append(Seed("raw", f"extra:{path.name}", path.read_bytes(), path.suffix))
    index = []
    for number, seed in enumerate(seeds):
        (directory / f"{number:03d}.bin").write_bytes(seed.data)
        index.append({"target": seed.target, "name": seed.name, "ext": seed.ext,
                      "file": f"{number:03d}.bin"})
    (directory / "index.json").write_text(json.dumps(index, indent=1))
    return seeds


def load_seeds(directory: Path) -> list[Seed]:
    index = json.loads((directory / "index.json").read_text())
    return [Seed(e["target"], e["name"], (directory / e["file"]).read_bytes(), e["ext"])
            for e in index]


# --------------------------------------------------------------------------- mutators

Mutator = Callable[[bytes, random.Random, Sequence[Seed]], bytes]


def _flip_bits(data: bytes, rng: random.Random, _: Sequence[Seed]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8, 32))):
        position = rng.randrange(len(out))
        out[position] ^= 1 << rng.randrange(8)
    return bytes(out)


def _interesting_bytes(data: bytes, rng: random.Random, _: Sequence[Seed]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        width = rng.choice((1, 2, 4))
        position = rng.randrange(max(1, len(out) - width))
        value = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
                            0x80000000, 0xFFFFFFFF, rng.getrandbits(32)))
        packed = (value & (2 ** (8 * width) - 1)).to_bytes(width, rng.choice(("little", "big")))
        out[position:position + width] = packed
    return bytes(out[: len(data)])


def _truncate(data: bytes, rng: random.Random, _: Sequence[Seed]) -> bytes:
    if rng.random() < 0.5:
        return data[: rng.randrange(len(data))]
    return data[: max(0, len(data) - rng.randint(1, 64))]


def _insert(data: bytes, rng: random.Random, _: Sequence[Seed]) -> bytes:
    position = rng.randrange(len(data) + 1)
    blob = rng.randbytes(rng.choice((1, 2, 4, 16, 64, 512)))
    return data[:position] + blob + data[position:]


def _delete(data: bytes, rng: random.Random, _: Sequence[Seed]) -> bytes:
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, 256):]


def _duplicate(data: bytes, rng: random.Random, _: Sequence[Seed]) -> bytes:
    start = rng.randrange(len(data))
    piece = data[start:start + rng.randint(1, 256)]
    position = rng.randrange(len(data) + 1)
    return data[:position] + piece * rng.randint(1, 8) + data[position:]


def _splice(data: bytes, rng: random.Random, others: Sequence[Seed]) -> bytes:
    other = rng.choice(others).data
    cut = rng.randrange(len(data))
    return data[:cut] + other[rng.randrange(len(other)):]


def _tiff_entries(data: bytes) -> tuple[str, list[int]]:
    """Byte order and the file offsets of the entries of every IFD reachable from IFD0."""
    if data[:4] not in (b"II*\x00", b"MM\x00*") or len(data) < 8:
        return "", []
    order = "<" if data[:2] == b"II" else ">"
    entries: list[int] = []
    queue = [struct.unpack(order + "I", data[4:8])[0]]
    seen: set[int] = set()
    while queue and len(seen) < 16:
        offset = queue.pop()
        if offset in seen or offset + 2 > len(data):
            continue
        seen.add(offset)
        (count,) = struct.unpack(order + "H", data[offset:offset + 2])
        for k in range(min(count, 512)):
            entry = offset + 2 + 12 * k
            if entry + 12 > len(data):
                break
            entries.append(entry)
            tag, kind, number, value = struct.unpack(order + "HHII", data[entry:entry + 12])
            if tag in (330, 34665, 34853) and kind in (4, 13) and number == 1:
                queue.append(value)  # SubIFDs, Exif, GPS
        end = offset + 2 + 12 * count
        if end + 4 <= len(data):
            queue.append(struct.unpack(order + "I", data[end:end + 4])[0])
    return order, entries


def _tiff_entry(data: bytes, rng: random.Random, others: Sequence[Seed]) -> bytes:
    """Corrupt one directory entry: its type, count or value / offset."""
    order, entries = _tiff_entries(data)
    if not entries:
        return _flip_bits(data, rng, others)
    entry = rng.choice(entries)
    out = bytearray(data)
    field_at, width = rng.choice(((2, 2), (4, 4), (8, 4)))
    value = rng.choice((0, 1, 2, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(data), len(data) - 1,
                        rng.getrandbits(16), rng.getrandbits(32)))
    out[entry + field_at:entry + field_at + width] = (value & (2 ** (8 * width) - 1)).to_bytes(
        width, "little" if order == "<" else "big")
    return bytes(out)


def _tiff_dimensions(data: bytes, rng: random.Random, others: Sequence[Seed], absurd: bool) -> bytes:
    order, entries = _tiff_entries(data)
    targets = [e for e in entries
               if struct.unpack(order + "H", data[e:e + 2])[0] in (256, 257)]
    if not targets:
        return _flip_bits(data, rng, others)
    out = bytearray(data)
    for entry in targets:
        if absurd:
            value = rng.choice(_ABSURD[:-1]) if rng.random() < 0.8 else 100_000
        else:
            value = 0
        if not absurd and rng.random() < 0.5 and struct.unpack(order + "H", data[entry:entry + 2])[0] == 256:
            continue  # zero height only, sometimes
        # as LONG, so values over 65535 fit
        out[entry + 2:entry + 12] = struct.pack(order + "HII", 4, 1, value)
    return bytes(out)


def _png_dimensions(data: bytes, rng: random.Random, others: Sequence[Seed], absurd: bool) -> bytes:
    if len(data) < 33 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return _flip_bits(data, rng, others)
    width, height = struct.unpack(">II", data[16:24])
    if absurd:
        width, height = rng.choice(((100_000, 100_000), (30_000, 30_000), (2**31 - 1, 1),
                                    (width, 2**31 - 1), (1, 1)))
    else:
        width, height = rng.choice(((0, height), (width, 0), (0, 0)))
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    # a correct CRC, so the reader's dimension checks (not its CRC check) are what is tested
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def _jpeg_dimensions(data: bytes, rng: random.Random, others: Sequence[Seed], absurd: bool) -> bytes:
    position = 2
    while position + 9 < len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            if absurd:
                size = rng.choice(((65535, 65535), (30000, 30000), (65535, 1), (1, 65535)))
            else:
                size = rng.choice(((0, 32), (48, 0), (0, 0)))
            out = bytearray(data)
            out[position + 5:position + 9] = struct.pack(">HH", *size)
            return bytes(out)
        position += 2 + length
    return _flip_bits(data, rng, others)


def _absurd_dimensions(data: bytes, rng: random.Random, others: Sequence[Seed]) -> bytes:
    return _set_dimensions(data, rng, others, absurd=True)


def _zero_dimensions(data: bytes, rng: random.Random, others: Sequence[Seed]) -> bytes:
    return _set_dimensions(data, rng, others, absurd=False)


def _set_dimensions(data: bytes, rng: random.Random, others: Sequence[Seed], absurd: bool) -> bytes:
    if data.startswith(b"\x89PNG"):
        return _png_dimensions(data, rng, others, absurd)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_dimensions(data, rng, others, absurd)
    return _tiff_dimensions(data, rng, others, absurd)


def fix_png_crcs(data: bytes) -> bytes:
    """``data`` with every whole PNG chunk's CRC recomputed, so damage reaches the decoder.

    Without it nearly every mutation of a PNG only tests the CRC check.
    """
    out = bytearray(data)
    position = 8
    while position + 12 <= len(out):
        (length,) = struct.unpack(">I", out[position:position + 4])
        end = position + 12 + length
        if end > len(out):
            break
        out[end - 4:end] = struct.pack(">I", zlib.crc32(bytes(out[position + 4:end - 4])))
        position = end
    return bytes(out)


def _empty(data: bytes, rng: random.Random, _: Sequence[Seed]) -> bytes:
    return b"" if rng.random() < 0.5 else data[:rng.randint(1, 16)]


#: name -> (mutator, weight)
MUTATORS: dict[str, tuple[Mutator, int]] = {
    "bitflip": (_flip_bits, 6),
    "bytes": (_interesting_bytes, 4),
    "truncate": (_truncate, 4),
    "insert": (_insert, 2),
    "delete": (_delete, 2),
    "duplicate": (_duplicate, 1),
    "splice": (_splice, 1),
    "tiff-entry": (_tiff_entry, 4),
    "absurd-size": (_absurd_dimensions, 2),
    "zero-size": (_zero_dimensions, 1),
    "empty": (_empty, 1),
}

_OUTPUT_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif"}
_WRONG_EXTENSIONS = (".jpg", ".png", ".tif", ".CR3", ".NEF", ".dng", ".txt", "")


@dataclass(frozen=True)
class Case:
    """Case ``index``: the target, the seed it came from, the mutations, the bytes, the extension."""

    index: int
    target: str
    seed: str
    mutations: tuple[str, ...]
    data: bytes
    ext: str


def _target_of(index: int, targets: Sequence[str]) -> str:
    cycle = [t for t in targets for _ in range(WEIGHTS[t])]
    return cycle[index % len(cycle)]


def make_case(index: int, master: int, seeds: Sequence[Seed],
              targets: Sequence[str] = TARGETS) -> Case:
    """Case ``index`` of the campaign ``master``: a pure function of its arguments."""
    rng = random.Random(master * 1_000_003 + index)
    target = _target_of(index, targets)
    pool = [s for s in seeds if s.target == target]
    seed = rng.choice(pool)
    data = seed.data
    names, weights = zip(*((n, w) for n, (_, w) in MUTATORS.items()))
    applied = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        name = rng.choices(names, weights)[0]
        if data:
            data = MUTATORS[name][0](data, rng, pool)
            applied.append(name)
    if target == "png" and rng.random() < 0.6:
        data = fix_png_crcs(data)
        applied.append("png-crc-fixed")
    ext = seed.ext if rng.random() < 0.9 else rng.choice(_WRONG_EXTENSIONS)
    return Case(index, target, seed.name, tuple(applied), data, ext)


# --------------------------------------------------------------------------- one case


@dataclass(frozen=True)
class Outcome:
    """What one case did: ``ok``, ``error`` (an NnipError: fine), or ``crash``."""

    index: int
    status: str
    kind: str = ""
    message: str = ""

    def to_json(self) -> str:
        return json.dumps({"i": self.index, "s": self.status, "k": self.kind, "m": self.message})

    @classmethod
    def from_json(cls, text: str) -> "Outcome":
        data = json.loads(text)
        return cls(data["i"], data["s"], data["k"], data["m"])


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" at {Path(last.filename).name}:{last.lineno}"


def _check_message(message: str) -> str | None:
    """Why an NnipError message breaks the contract (one line, no path), or None."""
    if "\n" in message:
        return "message has several lines"
    if not message.strip():
        return "empty message"
    return None


def _read_image_and_write_back(path: Path, out_dir: Path) -> None:
    from nnip.core.errors import NnipError
    from nnip.core.imageio import read_image, write_image

    image = read_image(path)
    assert image.pixels.dtype.name == "float32" and image.pixels.ndim == 3
    if image.width * image.height <= 1 << 20:
        out = out_dir / f"out{_OUTPUT_EXTENSIONS[image.meta.format]}"
        try:
            write_image(out, image)
        except NnipError:
            pass  # e.g. a JPEG cannot hold the alpha of a fuzzed TIFF: a user's problem
        finally:
            out.unlink(missing_ok=True)


def _metadata_calls(data: bytes, name: str) -> None:
    from nnip.core import metadata

    if name.startswith("tiff:"):
        order = "<" if data[:2] == b"II" else ">"
        offset = struct.unpack(order + "I", data[4:8])[0] if len(data) >= 8 else 0
        exif = metadata.exif_from_tiff(io.BytesIO(data), offset, order)
    elif name == "xmp":
        metadata.update_xmp(data, width=96, height=64)
        return
    else:
        exif = data
    orientation = metadata.read_orientation(exif)
    assert 1 <= orientation <= 8, orientation
    metadata.camera_info(exif)
    updated = metadata.update_exif(exif, width=96, height=64, software="fuzz")
    if updated is not None:
        metadata.load_exif(updated)
        metadata.fit_exif(updated, 200)
    metadata.tiff_ifd0_tags(exif)


def run_case(case: Case, scratch: Path) -> Outcome:
    """Run one case in this process; classify what happened."""
    from nnip.core.errors import NnipError

    path = scratch / f"case{case.ext}"
    try:
        if case.target == "metadata":
            _metadata_calls(case.data, case.seed)
            return Outcome(case.index, "ok")
        path.write_bytes(case.data)
        if case.target == "raw":
            from nnip.raw.frame import read_raw

            frame = read_raw(path)
            assert frame.mosaic.size > 0
        else:
            _read_image_and_write_back(path, scratch)
    except NnipError as exc:
        problem = None if case.target == "metadata" else _check_message(str(exc))
        if problem is None:
            return Outcome(case.index, "error", type(exc).__name__, str(exc)[:200])
        return Outcome(case.index, "crash", type(exc).__name__, f"{problem}: {str(exc)[:200]!r}")
    except Exception as exc:  # noqa: BLE001 - every other exception is what we look for
        return Outcome(case.index, "crash", type(exc).__name__,
                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''}{_where(exc)}")
    finally:
        path.unlink(missing_ok=True)
    return Outcome(case.index, "ok")


# --------------------------------------------------------------------------- worker


def _limit_resources(memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, hard))


def worker_main(seeds_dir: Path, master: int, memory: int, targets: Sequence[str]) -> None:
    """Read case numbers on stdin, run each, answer one JSON line per case on stdout."""
    # The protocol keeps the real stdout; anything a library prints goes to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    _limit_resources(memory)
    seeds = load_seeds(seeds_dir)
    import nnip.core.imageio  # noqa: F401 - import before the first case, not inside it
    import nnip.raw.frame  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="nnip-fuzz-") as scratch:
        for line in sys.stdin:
            case = make_case(int(line), master, seeds, targets)
            channel.write(run_case(case, Path(scratch)).to_json() + "\n")


# --------------------------------------------------------------------------- campaign


@dataclass
class _Worker:
    process: subprocess.Popen
    case: int | None = None
    started: float = 0.0
    buffer: bytes = b""


@dataclass
class Campaign:
    """Counts of one run: per target, per outcome, and the crashes found."""

    iterations: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)  # (target, status)
    errors: Counter = field(default_factory=Counter)  # (target, NnipError class)
    mutations: Counter = field(default_factory=Counter)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    seconds: float = 0.0

    def add(self, case: Case, outcome: Outcome) -> None:
        self.iterations[case.target] += 1
        self.outcomes[(case.target, outcome.status)] += 1
        if outcome.status == "error":
            self.errors[(case.target, outcome.kind)] += 1
        for name in case.mutations:
            self.mutations[name] += 1
        if outcome.status == "crash":
            self.crashes.append({"case": case.index, "target": case.target, "seed": case.seed,
                                 "mutations": list(case.mutations), "kind": outcome.kind,
                                 "message": outcome.message, "ext": case.ext})


def _spawn(seeds_dir: Path, args: argparse.Namespace, log: Path) -> _Worker:
    command = [sys.executable, "-X", "faulthandler", str(Path(__file__).resolve()), "--worker",
               "--seeds-dir", str(seeds_dir), "--seed", str(args.seed), "--memory",
               str(args.memory), "--targets", ",".join(args.targets)]
    with open(log, "ab") as err:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=err, bufsize=0)
    os.set_blocking(process.stdout.fileno(), False)
    return _Worker(process)


def _dead_outcome(worker: _Worker, timeout: float, closed: bool = False) -> Outcome:
    if closed:  # its output closed: it is dying; wait for the status that says how
        try:
            worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    code = worker.process.poll()
    if code is None:
        return Outcome(worker.case, "crash", "Hang", f"no answer after {timeout:g} s")
    if code < 0:
        name = signal.Signals(-code).name
        return Outcome(worker.case, "crash", name, f"worker killed by {name}")
    return Outcome(worker.case, "crash", "WorkerExit", f"worker exited with status {code}")


def _save_crash(case: Case, crashes_dir: Path) -> None:
    crashes_dir.mkdir(parents=True, exist_ok=True)
    (crashes_dir / f"case{case.index:07d}-{case.target}{case.ext or '.bin'}").write_bytes(case.data)


def run_campaign(args: argparse.Namespace, seeds: Sequence[Seed], seeds_dir: Path) -> Campaign:
    """Run cases ``args.start .. args.start + args.iterations`` over ``args.workers`` workers."""
    campaign = Campaign()
    log = WORK / "workers.log"
    selector = selectors.DefaultSelector()
    workers: list[_Worker] = []
    pending = iter(range(args.start, args.start + args.iterations))
    done = reported = 0
    start = time.perf_counter()

    def feed(worker: _Worker) -> None:
        index = next(pending, None)
        worker.case = index
        if index is not None:
            worker.started = time.monotonic()
            worker.process.stdin.write(f"{index}\n".encode())
            worker.process.stdin.flush()

    def replace(worker: _Worker) -> _Worker:
        selector.unregister(worker.process.stdout)
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait()
        campaign.restarts += 1
        fresh = _spawn(seeds_dir, args, log)
        selector.register(fresh.process.stdout, selectors.EVENT_READ, fresh)
        workers[workers.index(worker)] = fresh
        return fresh

    for _ in range(args.workers):
        worker = _spawn(seeds_dir, args, log)
        selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
        workers.append(worker)
        feed(worker)
    try:
        while any(w.case is not None for w in workers):
            for key, _ in selector.select(timeout=1.0):
                worker: _Worker = key.data
                chunk = worker.process.stdout.read()
                if chunk:
                    worker.buffer += chunk
                while b"\n" in worker.buffer:
                    line, worker.buffer = worker.buffer.split(b"\n", 1)
                    outcome = Outcome.from_json(line.decode())
                    done += _record(campaign, outcome, seeds, args)
                    feed(worker)
                if chunk == b"" and worker.case is not None:  # EOF: the worker died
                    done += _record(campaign, _dead_outcome(worker, args.timeout, closed=True),
                                    seeds, args)
                    feed(replace(worker))
            for worker in list(workers):
                if worker.case is not None and time.monotonic() - worker.started > args.timeout:
                    done += _record(campaign, _dead_outcome(worker, args.timeout), seeds, args)
                    feed(replace(worker))
            if args.progress and done >= reported + args.progress:
                reported = done - done % args.progress
                _progress(campaign, done, args, start)
    finally:
        for worker in workers:
            worker.process.stdin.close()
            worker.process.wait(timeout=30)
        campaign.seconds = time.perf_counter() - start
    return campaign


def _record(campaign: Campaign, outcome: Outcome, seeds: Sequence[Seed], args: argparse.Namespace) -> int:
    case = make_case(outcome.index, args.seed, seeds, args.targets)
    campaign.add(case, outcome)
    if outcome.status == "crash":
        _save_crash(case, WORK / "crashes")
        print(f"CRASH case {case.index} ({case.target}, {case.seed}, "
              f"{'+'.join(case.mutations)}): {outcome.kind}: {outcome.message}", flush=True)
    return 1


def _progress(campaign: Campaign, done: int, args: argparse.Namespace, start: float) -> None:
    rate = done / max(time.perf_counter() - start, 1e-9)
    crashes = len(campaign.crashes)
    print(f"{done}/{args.iterations} cases, {rate:.0f}/s, {crashes} crash(es), "
          f"{campaign.restarts} worker restart(s)", flush=True)


# --------------------------------------------------------------------------- report


def report(campaign: Campaign, seeds: Sequence[Seed], args: argparse.Namespace) -> str:
    """The Markdown body: per target iterations and outcomes, crashes, mutators, seeds."""
    from common import markdown_table

    rows = []
    for target in TARGETS:
        n = campaign.iterations[target]
        kinds = ", ".join(f"{k} {c}" for (t, k), c in campaign.errors.most_common() if t == target)
        rows.append((target, n, campaign.outcomes[(target, "ok")],
                     campaign.outcomes[(target, "error")], campaign.outcomes[(target, "crash")],
                     kinds or "-"))
    total = sum(campaign.iterations.values())
    crashes = len(campaign.crashes)
    rows.append(("**all**", total, sum(campaign.outcomes[(t, "ok")] for t in TARGETS),
                 sum(campaign.outcomes[(t, "error")] for t in TARGETS), crashes, ""))
    lines = [
        f"{total} cases (campaign seed {args.seed}, cases {args.start}..{args.start + total - 1}) "
        f"in {campaign.seconds / 60:.1f} min on {args.workers} worker process(es) "
        f"({total / max(campaign.seconds, 1e-9):.0f} cases/s), {campaign.restarts} worker "
        f"restart(s). Seeds: {len(seeds)} files made by the script "
        f"({', '.join(sorted({s.name for s in seeds if not s.name.startswith('extra:')}))})"
        + (f" plus {sum(s.name.startswith('extra:') for s in seeds)} extra RAW files from "
           f"{', '.join(map(str, args.extra_raw))}" if args.extra_raw else "") + ".",
        "",
        markdown_table(("target", "cases", "decoded", "NnipError (fine)", "crashes",
                        "NnipError classes"), rows),
        "",
        "Mutations applied: " + ", ".join(f"{k} {v}" for k, v in campaign.mutations.most_common())
        + ".",
        "",
    ]
    if crashes:
        signatures = Counter((c["target"], c["kind"], c["message"][:120]) for c in campaign.crashes)
        lines += [f"**{crashes} crash(es)**, {len(signatures)} distinct (inputs in "
                  f"`benchmarks/_work/fuzz/crashes/`, replay with `--replay CASE`):", ""]
        lines.append(markdown_table(("target", "kind", "message", "count"),
                                    [(t, k, m.replace("|", "/"), c) for (t, k, m), c in signatures.most_common(20)]))
    else:
        lines.append(f"**Verdict: PASS** - zero crashes in {total} cases (bar: zero crashes "
                     f"over >= 100,000 fuzz iterations).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--start", type=int, default=0, help="first case number")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a case is a hang")
    parser.add_argument("--memory", type=int, default=MEMORY_LIMIT, help="worker address-space limit, bytes")
    parser.add_argument("--extra-raw", type=Path, action="append", default=[],
                        help="a folder of extra RAW seed files (repeatable)")
    parser.add_argument("--targets", type=lambda text: tuple(text.split(",")), default=TARGETS,
                        help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--progress", type=int, default=5000, help="print a line every N cases")
    parser.add_argument("--replay", type=int, default=None, metavar="CASE",
                        help="run one case in this process (with a traceback) and exit")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seeds-dir", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _replay(args: argparse.Namespace, seeds: Sequence[Seed]) -> None:
    case = make_case(args.replay, args.seed, seeds, args.targets)
    print(f"case {case.index}: {case.target}, seed {case.seed}, mutations {case.mutations}, "
          f"{len(case.data)} bytes, extension {case.ext!r}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"case{case.ext}"
        path.write_bytes(case.data)
        print(f"input written to {path}; running", flush=True)
        print(run_case(case, Path(scratch)))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        raise SystemExit(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(TARGETS)}")
    if args.worker:
        worker_main(args.seeds_dir, args.seed, args.memory, args.targets)
        return 0
    seeds_dir = WORK / "seeds"
    seeds = make_seeds(seeds_dir, args.extra_raw)
    if args.replay is not None:
        _replay(args, seeds)
        return 0
    print(f"{len(seeds)} seeds in {seeds_dir}; {args.iterations} cases on {args.workers} workers",
          flush=True)
    campaign = run_campaign(args, seeds, seeds_dir)
    from common import Section, publish

    section = Section(name="fuzz_readers",
                      title="Fuzzing the RAW, JPEG, PNG, TIFF readers and the metadata code",
                      body=report(campaign, seeds, args))
    publish(section, args.results)
    (WORK / "campaign.json").write_text(json.dumps(
        {"iterations": dict(campaign.iterations), "crashes": campaign.crashes,
         "seconds": campaign.seconds, "restarts": campaign.restarts}, indent=1))
    return 1 if campaign.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
