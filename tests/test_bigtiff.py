"""Large outputs: the streamed tiled BigTIFF writer, the size threshold, ``--tiled-tiff``.

The streamed writer must give the pixels and metadata of the whole-image TIFF writer (only
the file structure differs), hold about one tile row, and leave no partial file when the
bands stop coming. Sizes are tiny: the threshold is monkeypatched, tiles are 16 pixels.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image as PILImage

import nnups.upscale as upscale_module
from nnip.core import imageio
from nnip.core.batch import atomic_write
from nnip.core.engine import Engine
from nnip.core.errors import OutputError
from nnip.core.imageio import Image, ImageBand, ImageMeta, read_image, write_image, write_tiled_tiff
from nnups.cli import cli
from nnups.upscale import iter_upscaled_bands, upscale_image, write_upscaled
from onnx_builders import conv_net, install

ICC_TAG, XMP_TAG = 34675, 700
#: Tags that describe the file's layout, not the image: they differ between strips and tiles.
LAYOUT_TAGS = {"StripOffsets", "StripByteCounts", "RowsPerStrip", "TileWidth", "TileLength",
               "TileOffsets", "TileByteCounts"}


def _tensor(name: str) -> dict:
    return {"name": name, "channels": 3, "layout": "rgb", "range": [0, 1], "transfer": "srgb"}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    tensors = {"inputs": [_tensor("image")], "outputs": [_tensor("output")]}
    install(directory, {"upscale-fast": conv_net(3, 3, layers=1, scale=2, seed=1)},
            overrides={"upscale-fast": tensors})
    return directory


@pytest.fixture()
def runner(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    return CliRunner()


def _exif() -> bytes:
    exif = PILImage.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "EOS R5", "2024:01:02 03:04:05"
    exif[0x8769] = {0x829A: 0.01, 0x829D: 2.8, 0x8827: 400, 0x9003: "2024:01:02 03:04:05"}
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    return exif.tobytes()


ICC = b"\x00\x00\x01\x00fake profile bytes, carried as they are" + bytes(200)
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
       b'tiff:Orientation="6" exif:PixelXDimension="9"/></rdf:RDF></x:xmpmeta>')


def _image(shape: tuple[int, int, int], *, alpha: bool, bits: int, seed: int = 0) -> Image:
    rng = np.random.default_rng(seed)
    pixels = rng.random(shape).astype(np.float32)
    pixels[0, :3] = np.array([-0.5, 1.5, np.nan])[:, None]  # clipped, and NaN -> 0
    meta = ImageMeta(format="tiff", bit_depth=bits, mode="rgb" if shape[2] == 3 else "grey",
                     has_alpha=alpha, exif=_exif(), icc=ICC, xmp=XMP, orientation=6,
                     dpi=(300.0, 240.0))
    return Image(pixels, rng.random(shape[:2]).astype(np.float32) if alpha else None, meta)


def _bands(image: Image, heights: list[int]) -> Iterator[ImageBand]:
    """The image in bands of the given heights (repeated), each a fresh copy."""
    row, index = 0, 0
    while row < image.height:
        stop = min(row + heights[index % len(heights)], image.height)
        alpha = None if image.alpha is None else image.alpha[row:stop].copy()
        yield ImageBand(row, image.pixels[row:stop].copy(), alpha)
        row, index = stop, index + 1


def _tags(path: Path) -> dict[str, object]:
    with tifffile.TiffFile(path) as tif:
        return {tag.name: tag.value for tag in tif.pages.first.tags.values()
                if tag.name not in LAYOUT_TAGS}


def _structure(path: Path) -> tuple[bool, bool]:
    with tifffile.TiffFile(path) as tif:
        return bool(tif.is_bigtiff), bool(tif.pages.first.is_tiled)


# --------------------------------------------------------------------------- the writer


@pytest.mark.parametrize("bits", [8, 16, 32])
@pytest.mark.parametrize("channels, alpha", [(3, False), (1, False), (3, True), (1, True)])
def test_streamed_tiff_equals_the_whole_image_tiff(tmp_path: Path, bits: int, channels: int,
                                                   alpha: bool) -> None:
    # 37 x 45: neither a multiple of the 16-pixel tile nor of the band heights.
    image = _image((37, 45, channels), alpha=alpha, bits=bits)
    whole, streamed = tmp_path / "whole.tif", tmp_path / "streamed.tif"
    write_image(whole, image)
    write_tiled_tiff(streamed, _bands(image, [7, 13, 1]), shape=(37, 45, channels), alpha=alpha,
                     meta=image.meta, tile=16)
    assert _structure(whole) == (False, False) and _structure(streamed) == (True, True)
    np.testing.assert_array_equal(tifffile.imread(streamed), tifffile.imread(whole))
    assert tifffile.imread(streamed).dtype == {8: np.uint8, 16: np.uint16, 32: np.float32}[bits]
    # Every tag but the layout ones is the same: EXIF (IFD0 fields and the Exif and GPS
    # sub-IFDs), ICC, XMP (orientation reset), resolution, extra samples, predictor...
    tags = _tags(streamed)
    assert tags == _tags(whole)
    assert tags["ExifTag"]["ExposureTime"] == 0.01 and tags["ExifTag"]["ISOSpeedRatings"] == 400
    assert tags["GPSTag"]["GPSLatitudeRef"] == "N"
    assert (tags["Make"], tags["Model"], tags["Orientation"]) == ("Canon", "EOS R5", 1)
    assert tags["InterColorProfile"] == ICC and b'tiff:Orientation="1"' in tags["XMP"]
    assert b'exif:PixelXDimension="45"' in tags["XMP"]
    back = read_image(streamed)
    np.testing.assert_array_equal(back.pixels, read_image(whole).pixels)
    assert back.meta.dpi == (300.0, 240.0) and back.meta.icc == ICC
    assert (back.alpha is not None) == alpha


def test_streamed_tiff_takes_bands_of_any_height_and_tile_size(tmp_path: Path) -> None:
    image = _image((70, 33, 3), alpha=False, bits=8, seed=3)
    expected = tmp_path / "whole.tif"
    write_image(expected, image)
    for heights, tile in (([70], 16), ([1], 32), ([16], 16), ([17, 3], 48)):
        out = tmp_path / f"{tile}_{heights[0]}.tif"
        write_tiled_tiff(out, _bands(image, heights), shape=(70, 33, 3), alpha=False,
                         meta=image.meta, tile=tile)
        np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(expected))


def test_bands_that_do_not_fit_the_shape_are_refused(tmp_path: Path) -> None:
    image = _image((20, 10, 3), alpha=False, bits=8)
    meta, shape = image.meta, (20, 10, 3)
    gap = [b for b in _bands(image, [5]) if b.row != 5]
    short = list(_bands(image, [5]))[:-1]
    for bands, message in ((gap, "row 5 of 20 is next"), (short, "15 rows of the 20")):
        with pytest.raises(ValueError, match=message):
            write_tiled_tiff(tmp_path / "x.tif", bands, shape=shape, alpha=False, meta=meta,
                             tile=16)
    with pytest.raises(ValueError, match="alpha"):
        write_tiled_tiff(tmp_path / "x.tif", _bands(image, [5]), shape=shape, alpha=True,
                         meta=meta, tile=16)


def test_writer_holds_about_one_tile_row_never_the_image(tmp_path: Path) -> None:
    height, width = 4096, 1024  # 32 tiles a row: tifffile compresses about a row at a time
    meta = ImageMeta(format="tiff", bit_depth=8, mode="rgb")
    band = np.random.default_rng(0).random((32, width, 3)).astype(np.float32)

    def bands(rows: int) -> Iterator[ImageBand]:  # made on the fly, like the upscaler's
        for row in range(0, rows, 32):
            yield ImageBand(row, band.copy(), None)

    def write(rows: int) -> None:
        write_tiled_tiff(tmp_path / "big.tif", bands(rows), shape=(rows, width, 3), alpha=False,
                         meta=meta, tile=32)

    write(64)  # codecs imported before measuring
    tracemalloc.start()
    try:
        write(height)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    whole_samples = height * width * 3  # 12 MB at 8 bits; the float image is 50 MB
    # A band (0.4 MB of float), a tile row or two (0.1 MB each), tiles being compressed.
    assert peak < whole_samples / 4
    assert tifffile.imread(tmp_path / "big.tif").shape == (height, width, 3)


def test_failure_mid_stream_leaves_no_file(tmp_path: Path) -> None:
    image = _image((40, 20, 3), alpha=False, bits=16)

    def failing() -> Iterator[ImageBand]:
        bands = _bands(image, [16])
        yield next(bands)
        yield next(bands)
        raise OutputError("disk on fire")

    final = tmp_path / "out.tif"
    with pytest.raises(OutputError, match="disk on fire"):
        atomic_write(final, lambda tmp: write_tiled_tiff(
            tmp, failing(), shape=(40, 20, 3), alpha=False, meta=image.meta, tile=16))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the threshold


def test_plan_streams_large_tiff_and_refuses_large_jpeg_png(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    meta = ImageMeta(format="png", bit_depth=16, mode="rgb")
    plan = imageio.plan_output("x.tif", meta, shape=(100, 100, 3), alpha=True)
    assert (plan.format, plan.bits, plan.streamed) == ("tiff", 16, False)
    assert imageio.plan_output("x.tif", meta, shape=(100, 100, 3), alpha=True, tiled=True).streamed
    # 100 x 100 x 4 samples x 2 bytes = 80000 bytes
    monkeypatch.setattr(imageio, "LARGE_OUTPUT_BYTES", 80_000)
    assert not imageio.plan_output("x.tif", meta, shape=(100, 100, 3), alpha=True).streamed
    monkeypatch.setattr(imageio, "LARGE_OUTPUT_BYTES", 79_999)
    assert imageio.plan_output("x.tif", meta, shape=(100, 100, 3), alpha=True).streamed
    with pytest.raises(OutputError, match=r"100x100 output .* too large for PNG.*--format tiff"):
        imageio.plan_output("x.png", meta, shape=(100, 100, 3), alpha=True)
    # JPEG stores no alpha and 8 bits: 30000 bytes, under the limit.
    assert not imageio.plan_output("x.jpg", meta, shape=(100, 100, 3), alpha=True).streamed
    with pytest.raises(OutputError, match="a tiled output is a TIFF, not a JPEG"):
        imageio.plan_output("x.jpg", meta, shape=(10, 10, 3), alpha=False, tiled=True)


def test_upscale_bands_paste_into_the_whole_result(models_dir: Path) -> None:
    from nnip.core.models import Registry

    registry = Registry(models_dir)
    engine, spec = Engine(device="cpu", threads=1, registry=registry), registry.get("upscale-fast")
    image = _image((150, 21, 3), alpha=True, bits=8)
    image.pixels[0, :3] = 0.5  # no NaN into the network
    whole = upscale_image(image, engine, spec, band_rows=64)
    rows = 0
    for band in iter_upscaled_bands(image, engine, spec, band_rows=64):
        assert band.row == rows and band.pixels.dtype == np.float32
        stop = rows + band.pixels.shape[0]
        np.testing.assert_array_equal(band.pixels, whole.pixels[rows:stop])
        np.testing.assert_array_equal(band.alpha, whole.alpha[rows:stop])
        rows = stop
    assert rows == 300
    with pytest.raises(ValueError, match="strength"):  # checked when called, not when iterated
        iter_upscaled_bands(image, engine, spec, strength=2.0)


def test_write_upscaled_streams_the_same_pixels(models_dir: Path, tmp_path: Path) -> None:
    from nnip.core.models import Registry

    registry = Registry(models_dir)
    engine, spec = Engine(device="cpu", threads=1, registry=registry), registry.get("upscale-fast")
    image = _image((150, 21, 1), alpha=True, bits=16)
    image.pixels[0, :3] = 0.5
    plain = write_upscaled(tmp_path / "plain.tif", image, engine, spec, tile=64)
    tiled = write_upscaled(tmp_path / "tiled.tif", image, engine, spec, tile=64, tiled=True)
    assert (plain.streamed, tiled.streamed) == (False, True)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiled.tif"),
                                  tifffile.imread(tmp_path / "plain.tif"))
    assert _tags(tmp_path / "tiled.tif") == _tags(tmp_path / "plain.tif")


# --------------------------------------------------------------------------- the command


def _photo(path: Path, size: tuple[int, int] = (24, 16), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    channels = len(mode)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    PILImage.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode).save(path)
    return path


def test_tiled_tiff_option_gives_the_normal_pixels_as_a_tiled_bigtiff(
    runner: CliRunner, tmp_path: Path
) -> None:
    src = _photo(tmp_path / "a.png", mode="RGBA")
    for option, folder in (("--tiled-tiff", "tiled"), ("--format=tiff", "plain")):
        result = runner.invoke(cli, ["upscale", str(src), option, "-o", str(tmp_path / folder)])
        assert result.exit_code == 0, result.output
    tiled, plain = tmp_path / "tiled" / "a_x2.tif", tmp_path / "plain" / "a_x2.tif"
    assert _structure(tiled) == (True, True) and _structure(plain) == (False, False)
    np.testing.assert_array_equal(tifffile.imread(tiled), tifffile.imread(plain))
    assert tifffile.imread(tiled).shape == (32, 48, 4)


def test_tiled_tiff_with_jpeg_or_png_format_is_a_usage_error(
    runner: CliRunner, tmp_path: Path
) -> None:
    src = _photo(tmp_path / "a.png")
    result = runner.invoke(cli, ["upscale", str(src), "--tiled-tiff", "--format", "png"])
    assert result.exit_code == 2 and "--tiled-tiff" in result.stderr
    assert "a tiled output is a TIFF, not PNG" in result.stderr
    result = runner.invoke(cli, ["upscale", "--help"])
    assert f"over {imageio.LARGE_OUTPUT_BYTES >> 30} GiB" in " ".join(result.stdout.split())


def test_large_output_is_streamed_as_tiff_and_refused_as_png(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imageio, "LARGE_OUTPUT_BYTES", 1000)  # a 48 x 32 output passes it
    src = _photo(tmp_path / "a.png")
    result = runner.invoke(cli, ["upscale", str(src), "--format", "tiff"])
    assert result.exit_code == 0, result.output
    assert _structure(tmp_path / "a_x2.tif") == (True, True)
    result = runner.invoke(cli, ["upscale", str(src)])  # PNG out, as the input
    assert result.exit_code == 1
    assert result.stderr == (f"{src}: a 48x32 output (0 MiB uncompressed) is too large for PNG, "
                             "which is encoded whole in memory; write TIFF (--format tiff), "
                             "which is streamed to disk\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.tif"]


def test_ctrl_c_mid_stream_leaves_no_partial_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = upscale_module.iter_upscaled_bands

    def interrupted(*args, **kwargs) -> Iterator[ImageBand]:
        bands = real(*args, **kwargs)

        def stream() -> Iterator[ImageBand]:
            yield next(bands)
            raise KeyboardInterrupt  # Ctrl-C after the first band was written

        return stream()

    monkeypatch.setattr(upscale_module, "iter_upscaled_bands", interrupted)
    src = _photo(tmp_path / "a.png", size=(20, 150))
    result = runner.invoke(cli, ["upscale", str(src), "--tiled-tiff", "--tile", "64"])
    assert result.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
