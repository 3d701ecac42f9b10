"""JPEG strips: encoded one by one, joined by restart markers, the file decodes to what the
whole-image encoding decodes to, metadata included; write_image_bands uses them for large
JPEGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms

from nnip.core import imageio
from nnip.core import jpeg_strips
from nnip.core.imageio import Image, ImageBand, ImageMeta, read_image, write_image, write_image_bands
from nnip.core.jpeg_strips import StripJpeg, strip_rows

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _picture(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Smooth gradients with noise and a few edges: every MCU has something to encode."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * (k + 1) + y * (3 - k)) % 256 for k in range(c)], axis=-1)
    return np.clip(base + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)


def _whole(samples: np.ndarray, options: dict) -> np.ndarray:
    buffer = io.BytesIO()
    picture = PILImage.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)
    picture.save(buffer, "JPEG", optimize=False, **options)
    return np.asarray(PILImage.open(buffer))


@pytest.mark.parametrize(("shape", "options"), [
    ((600, 203, 3), {"quality": 95, "subsampling": 0}),  # 4:4:4, MCU 8: 3 strips of 256 rows
    ((1100, 130, 3), {"quality": 80, "subsampling": 2}),  # 4:2:0, MCU 16: strips of 512 rows
    ((530, 77, 1), {"quality": 90, "subsampling": 0}),  # grey
])
def test_strips_decode_to_the_whole_image_encoding(tmp_path: Path, shape, options) -> None:
    samples = _picture(shape)
    path = tmp_path / "strips.jpg"
    with StripJpeg(samples, options) as jpeg:
        for stop in range(50, shape[0] + 50, 50):  # rows arrive in bands of 50
            jpeg.rows_done(min(stop, shape[0]))
        jpeg.write(path)
    data = path.read_bytes()
    strips = -(-shape[0] // strip_rows(shape[1], shape[2], options["subsampling"]))
    assert strips >= 3
    assert sum(data.count(bytes((0xFF, 0xD0 + n))) for n in range(8)) == strips - 1
    assert b"\xff\xdd\x00\x04" in data  # the restart interval
    with PILImage.open(path) as decoded:
        assert decoded.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(decoded), _whole(samples, options))


def test_header_carries_the_metadata(tmp_path: Path) -> None:
    samples = _picture((520, 64, 3), seed=1)
    path = tmp_path / "meta.jpg"
    with StripJpeg(samples, {"quality": 95, "subsampling": 0, "icc_profile": SRGB_ICC,
                             "dpi": (300, 300)}) as jpeg:
        jpeg.write(path)
    with PILImage.open(path) as decoded:
        assert decoded.info["icc_profile"] == SRGB_ICC
        assert tuple(round(v) for v in decoded.info["dpi"]) == (300, 300)


def test_strips_fall_back_to_pillow_when_the_tables_differ(tmp_path: Path, monkeypatch) -> None:
    samples = _picture((600, 90, 3), seed=2)
    options = {"quality": 95, "subsampling": 0}
    # Another encoder's tables (here: other quantisation) must not be spliced in.
    encode = StripJpeg._encode

    def other_tables(self: StripJpeg, index: int, start: int, stop: int) -> bytes:
        return encode(self, index, start, stop) if index == 0 else _other_quality(self._rows_of(start, stop))

    monkeypatch.setattr(StripJpeg, "_encode", other_tables)
    path = tmp_path / "fallback.jpg"
    with StripJpeg(samples, options) as jpeg:
        jpeg.write(path)
    with PILImage.open(path) as decoded:
        assert np.array_equal(np.asarray(decoded), _whole(samples, options))


def _other_quality(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def test_only_baseline_strips_are_joined() -> None:
    buffer = io.BytesIO()
    PILImage.fromarray(_picture((16, 16, 3))).save(buffer, "JPEG", progressive=True)
    with pytest.raises(ValueError, match="baseline"):
        jpeg_strips._tables(buffer.getvalue())


def test_write_image_bands_streams_large_jpegs_through_strips(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(imageio, "_JPEG_OPTIMIZE_PIXELS", 1000)  # this image counts as large
    used: list[int] = []
    rows_done = StripJpeg.rows_done

    def spy(self: StripJpeg, rows: int) -> None:
        used.append(rows)
        rows_done(self, rows)

    monkeypatch.setattr(StripJpeg, "rows_done", spy)
    pixels = _picture((600, 120, 3), seed=3).astype(np.float32) / 255
    meta = ImageMeta(format="png", bit_depth=8, mode="rgb", icc=SRGB_ICC)
    whole, banded = tmp_path / "whole.jpg", tmp_path / "banded.jpg"
    write_image(whole, Image(pixels=pixels, alpha=None, meta=meta), format="jpeg")
    bands = [ImageBand(r, pixels[r : r + 70], None) for r in range(0, 600, 70)]
    write_image_bands(banded, bands, meta=meta, shape=pixels.shape, alpha=False, format="jpeg")
    assert used[:2] == [70, 140] and used[-1] == 600
    a, b = read_image(whole), read_image(banded)
    assert np.array_equal(a.pixels, b.pixels) and b.meta.icc == SRGB_ICC
