"""A large JPEG encoded strip by strip while the image is still being made.

Why: ``nnups upscale`` makes its output band by band, and encoding a 96 MP JPEG after the
last band kept one core busy for ~2.4 s while the other idled. Here each horizontal strip
is encoded as soon as its rows exist, on a worker thread, while the network works on the
next band. The strips after the first go through imagecodecs' libjpeg-turbo encoder, which
releases the GIL: beside it, 0.41 s of numpy work still took 0.41 s; beside Pillow's
encoder (which holds the GIL for part of its work) it took 0.61 s (2026-11-26, this CPU).

How strips make one baseline JPEG: every strip but the last is a whole number of MCU rows,
encoded alone with the same quality and subsampling and without Huffman optimisation, so
all strips share the same (standard) tables. A fresh encoder starts with its DC predictors
at 0 and ends its scan padded to a byte: exactly the state a decoder expects after a
restart marker (ITU-T T.81, F.1.1.5 and F.2.1.3). The file is the first strip's header
(written by Pillow, with the EXIF, ICC, XMP and resolution it writes for whole images) with
the frame height set to the image's, a DRI segment whose restart interval is one strip's
MCU count, then the strips' scans separated by RST0 .. RST7 in turn. Decoded, it equals the
whole-image encoding with the same settings pixel for pixel (tests/core/test_jpeg_strips.py);
the markers add a few bytes per strip.

If the two encoders' tables ever differ (another libjpeg build), the strips are encoded by
Pillow instead: slower, the same file.
"""

from __future__ import annotations

import io
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["StripJpeg", "strip_rows"]

#: MCU rows per strip at most: strips of ~256 image rows (4:4:4), so encoding starts soon
#: after the first band and the last strip leaves little to do at the end.
MAX_MCU_ROWS = 32
#: A restart interval is a 16-bit MCU count.
_MAX_INTERVAL = 0xFFFF
_SOI, _EOI, _SOF0, _DHT, _DQT, _DRI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xC0, 0xC4, 0xDB, 0xDD, 0xDA


def _mcu_edge(channels: int, subsampling: int) -> int:
    """MCU edge in pixels: 8, or 16 for colour with Pillow's subsampling 2 (4:2:0)."""
    return 16 if channels > 1 and subsampling == 2 else 8


def strip_rows(width: int, channels: int, subsampling: int) -> int:
    """Image rows per strip: whole MCU rows, at most :data:`MAX_MCU_ROWS`, and few enough
    MCUs for a 16-bit restart interval."""
    edge = _mcu_edge(channels, subsampling)
    per_row = -(-width // edge)
    return edge * max(1, min(MAX_MCU_ROWS, _MAX_INTERVAL // per_row))


class StripJpeg:
    """Encodes the rows of ``samples`` strip by strip as the caller finishes them.

    Parameters
    ----------
    samples : np.ndarray
        uint8 (H, W, C), C 1 or 3; filled by the caller top to bottom.
    options : mapping
        Pillow JPEG save options: ``quality`` and ``subsampling`` (0: 4:4:4, 2: 4:2:0)
        and any metadata (``exif``, ``icc_profile``, ``xmp``, ``dpi``), which go into the
        header. ``optimize`` is ignored (shared tables need the standard ones).

    Use as a context manager (the worker thread is stopped on leaving): call
    :meth:`rows_done` as rows become final, then :meth:`write`.
    """

    def __init__(self, samples: np.ndarray, options: Mapping[str, Any]) -> None:
        if samples.dtype != np.uint8 or samples.ndim != 3 or samples.shape[2] not in (1, 3):
            raise ValueError(f"need uint8 (H, W, 1 or 3) samples, got {samples.dtype} {samples.shape}")
        self._samples = samples
        self._options = {k: v for k, v in options.items() if k != "optimize"}
        height, width, channels = samples.shape
        subsampling = int(self._options.get("subsampling", 0))
        self._rows = strip_rows(width, channels, subsampling)
        edge = _mcu_edge(channels, subsampling)
        self._interval = (self._rows // edge) * -(-width // edge)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnip-jpeg")
        self._strips: list[Future[bytes]] = []
        self._submitted = 0  # rows handed to the worker

    def __enter__(self) -> StripJpeg:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def rows_done(self, rows: int) -> None:
        """Rows ``[0, rows)`` of ``samples`` are final: encode every strip they complete."""
        height = self._samples.shape[0]
        while self._submitted < height and (self._submitted + self._rows <= rows or rows >= height):
            start, stop = self._submitted, min(self._submitted + self._rows, height)
            self._strips.append(self._pool.submit(self._encode, len(self._strips), start, stop))
            self._submitted = stop

    def write(self, path: str | Path) -> None:
        """Finish the remaining strips and write the JPEG file ``path``."""
        self.rows_done(self._samples.shape[0])
        parts = [strip.result() for strip in self._strips]
        header, scans = _split(parts[0])
        if len(parts) > 1 and _tables(parts[1]) != _tables(parts[0]):
            parts[1:] = [self._pillow(k, *self._span(k), metadata=False) for k in range(1, len(parts))]
        with open(path, "wb") as out:
            out.write(_header(header, self._samples.shape[0], self._interval if len(parts) > 1 else 0))
            for k, part in enumerate(parts):
                out.write(scans if k == 0 else _split(part)[1])
                if k + 1 < len(parts):
                    out.write(bytes((0xFF, 0xD0 + k % 8)))  # RSTn, n counting 0..7 in turn
            out.write(_EOI)

    # ------------------------------------------------------------------ strips

    def _span(self, index: int) -> tuple[int, int]:
        start = index * self._rows
        return start, min(start + self._rows, self._samples.shape[0])

    def _encode(self, index: int, start: int, stop: int) -> bytes:
        if index == 0:  # the header's source: Pillow writes the metadata
            return self._pillow(index, start, stop, metadata=True)
        import imagecodecs  # noqa: PLC0415  (a tifffile companion, imported when used)

        pixels = self._rows_of(start, stop)
        subsampling = "420" if self._options.get("subsampling", 0) == 2 else "444"
        return bytes(imagecodecs.jpeg8_encode(pixels, level=int(self._options["quality"]),
                                              subsampling=subsampling))

    def _pillow(self, index: int, start: int, stop: int, *, metadata: bool) -> bytes:
        from PIL import Image as PILImage  # noqa: PLC0415

        options = self._options if metadata else {
            k: self._options[k] for k in ("quality", "subsampling") if k in self._options}
        buffer = io.BytesIO()
        PILImage.fromarray(self._rows_of(start, stop)).save(buffer, "JPEG", optimize=False, **options)
        return buffer.getvalue()

    def _rows_of(self, start: int, stop: int) -> np.ndarray:
        rows = self._samples[start:stop]
        return np.ascontiguousarray(rows[:, :, 0] if rows.shape[2] == 1 else rows)


# ---------------------------------------------------------------------- JPEG syntax


def _segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """The marker segments before the scan, as (marker, start, end), and where the scan
    data starts (just after the SOS segment)."""
    if data[:2] != _SOI:
        raise ValueError("not a JPEG stream")
    segments, pos = [], 2
    while True:
        if data[pos] != 0xFF:
            raise ValueError(f"no marker at byte {pos}")
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segments.append((marker, pos, pos + 2 + length))
        pos += 2 + length
        if marker == _SOS:
            return segments, pos


def _split(data: bytes) -> tuple[bytes, bytes]:
    """(header up to and including SOS, the scan's entropy-coded data without EOI)."""
    if data[-2:] != _EOI:
        raise ValueError("JPEG stream does not end with EOI")
    _, scan = _segments(data)
    return data[:scan], data[scan:-2]


def _tables(data: bytes) -> tuple[bytes, ...]:
    """What every strip must share: quantisation and Huffman tables, the frame's
    components (the frame segment without its height) and the scan header."""
    segments, _ = _segments(data)
    shared = []
    for marker, start, end in segments:
        if marker in (_DQT, _DHT, _SOS):
            shared.append(data[start:end])
        elif marker == _SOF0:
            shared.append(data[start : start + 5] + data[start + 7 : end])
        elif 0xC1 <= marker <= 0xCF and marker not in (_DHT, 0xC8, 0xCC):
            raise ValueError("only baseline JPEG strips can be joined")
    return tuple(shared)


def _header(header: bytes, height: int, interval: int) -> bytes:
    """``header`` with the frame height set to ``height`` and, for ``interval`` > 0, a DRI
    segment before the scan header."""
    segments, _ = _segments(header)
    out = bytearray(header)
    sof = next(start for marker, start, _ in segments if marker == _SOF0)
    out[sof + 5 : sof + 7] = struct.pack(">H", height)
    if interval:
        sos = next(start for marker, start, _ in segments if marker == _SOS)
        out[sos:sos] = struct.pack(">BBHH", 0xFF, _DRI, 4, interval)
    return bytes(out)
