"""Bands and memory: the banded upscaler equals the whole-image computation, its fast
fidelity step equals the plain formulation, and memory stays bounded by the output."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nnip.core.engine import Engine
from nnip.core import imageio
from nnip.core.imageio import Image, ImageMeta
from nnip.core.models import ModelSpec
from nnups.fidelity import (
    FIDELITY_REACH,
    HALO_REACH,
    SHARPEN,
    SMOOTH_STEPS,
    area_downscale,
    classical_upscale,
    enforce_fidelity,
)
from nnups.upscale import default_band_rows, plan_bands, upscale_image
from tests.onnx_builders import conv_net, install


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, dict[str, ModelSpec]]:
    """2x models with a margin of several rows: plain (margin 3), aligned to 2 (margin 7),
    and a 1-channel one (run per colour channel)."""
    directory = tmp_path_factory.mktemp("models")
    nets = {
        "upscale-deep": conv_net(3, 3, layers=3, scale=2, seed=21),
        "upscale-aligned": conv_net(3, 3, layers=3, scale=2, space_to_depth=2, seed=22),
        "upscale-grey": conv_net(1, 1, layers=2, scale=2, seed=23),
    }
    registry = install(directory, nets)
    engine = Engine(device="cpu", threads=1, registry=registry)
    return engine, {name: registry.get(name) for name in nets}


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _image(rng: np.random.Generator, shape: tuple[int, ...], *, bit_depth: int = 8,
           alpha: bool = False) -> Image:
    # Smooth content, texture, and clipped black and white patches (the projection's cases).
    coarse = rng.random((-(-shape[0] // 4), -(-shape[1] // 4), shape[2]))
    base = classical_upscale(coarse, 4)[: shape[0], : shape[1]]
    pixels = np.clip(base + 0.15 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    pixels[: shape[0] // 4, : shape[1] // 3] = 1.0
    pixels[-shape[0] // 4 :, -shape[1] // 3 :] = 0.0
    meta = ImageMeta(format="png", bit_depth=bit_depth, mode="grey" if shape[2] == 1 else "rgb",
                     has_alpha=alpha)
    return Image(pixels, rng.random(shape[:2]).astype(np.float32) if alpha else None, meta)


# --------------------------------------------------------------------------- bands


@pytest.mark.parametrize("name", ["upscale-deep", "upscale-aligned"])
@pytest.mark.parametrize("rows", [1, 4, 7, 16])
def test_bands_equal_one_band(models, rng, name: str, rows: int) -> None:
    engine, specs = models
    image = _image(rng, (38, 44, 3))
    whole = upscale_image(image, engine, specs[name], band_rows=1000).pixels
    banded = upscale_image(image, engine, specs[name], band_rows=rows).pixels
    np.testing.assert_allclose(banded, whole, rtol=0, atol=1e-5)


@pytest.mark.parametrize("strength", [0.0, 0.4])
def test_bands_equal_one_band_when_blending_with_cubic(models, rng, strength: float) -> None:
    engine, specs = models
    image = _image(rng, (30, 36, 3))
    whole = upscale_image(image, engine, specs["upscale-deep"], strength=strength, band_rows=100)
    banded = upscale_image(image, engine, specs["upscale-deep"], strength=strength, band_rows=5)
    np.testing.assert_allclose(banded.pixels, whole.pixels, rtol=0, atol=1e-5)


def test_bands_equal_one_band_for_float_grey_and_alpha(models, rng) -> None:
    engine, specs = models
    cases = [
        (_image(rng, (26, 30, 3), bit_depth=32), specs["upscale-deep"]),
        (_image(rng, (26, 30, 1), alpha=True), specs["upscale-deep"]),
        (_image(rng, (26, 30, 3), alpha=True), specs["upscale-grey"]),
    ]
    cases[0][0].pixels[:6] *= 2.5  # float: values above 1 stay, nothing is clipped
    for image, spec in cases:
        whole = upscale_image(image, engine, spec, band_rows=100)
        banded = upscale_image(image, engine, spec, band_rows=3)
        np.testing.assert_allclose(banded.pixels, whole.pixels, rtol=0, atol=1e-5)
        if image.alpha is not None:
            np.testing.assert_array_equal(banded.alpha, whole.alpha)
            np.testing.assert_allclose(whole.alpha, np.clip(classical_upscale(image.alpha), 0, 1),
                                       atol=1e-6)
    assert whole_max(cases[0], engine) > 1.5


def whole_max(case: tuple[Image, ModelSpec], engine: Engine) -> float:
    return float(upscale_image(case[0], engine, case[1], band_rows=4).pixels.max())


def test_banded_result_equals_the_plain_whole_image_computation(models, rng) -> None:
    # Independent of the band code: the network on the whole image at once, the blend,
    # and the fidelity step written the plain way (np.pad, np.repeat, bisection).
    engine, specs = models
    spec = specs["upscale-deep"]
    image = _image(rng, (34, 40, 3))
    network = np.moveaxis(engine.run_whole(spec, [np.moveaxis(image.pixels, -1, 0)]), 0, -1)
    blended = 0.7 * network + 0.3 * classical_upscale(image.pixels)
    expected = _plain_fidelity(blended, image.pixels)
    banded = upscale_image(image, engine, spec, strength=0.7, band_rows=6).pixels
    np.testing.assert_allclose(banded, expected, rtol=0, atol=1e-5)
    assert np.abs(area_downscale(banded) - image.pixels).max() < 1e-5


def test_plan_bands_partition_rows_with_enough_context(models) -> None:
    _, specs = models
    for spec in specs.values():
        for height, rows in [(1, 64), (37, 8), (100, 7), (64, 64), (65, 64)]:
            bands = plan_bands(height, rows, spec)
            cores = [b.core for b in bands]
            assert cores[0][0] == 0 and cores[-1][1] == height
            assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
            assert all(0 < c1 - c0 <= max(rows, spec.align) for c0, c1 in cores)
            for band in bands:
                (c0, c1), (f0, f1) = band.core, band.fidelity
                (n0, n1), (d0, d1) = band.network, band.detail
                assert c0 % spec.align == 0 and n0 % spec.align == 0 and d0 % spec.align == 0
                assert f0 == max(c0 - FIDELITY_REACH, 0) and f1 == min(c1 + FIDELITY_REACH, height)
                # the network computes the fidelity rows, with the model's margin around them
                assert d0 <= f0 < d0 + spec.align and d1 == f1
                pad = -(-spec.margin // spec.align) * spec.align
                assert n0 == max(d0 - pad, 0) and n1 == min(d1 + pad, height)


def test_default_band_is_one_engine_tile_row(models) -> None:
    _, specs = models
    spec = specs["upscale-deep"]  # margin 3
    rows = default_band_rows(768, spec, 6000)
    # core + fidelity reach, with the margin's real context rows around: one tile.
    assert spec.align == 1 and rows + 2 * (FIDELITY_REACH + spec.margin) == 768
    assert default_band_rows(768, spec, 60000) < rows  # very wide images: fewer rows
    assert default_band_rows(16, spec, 100) == 64  # tiny tiles: no slivers


def test_progress_counts_every_tile_of_every_band_once(models, rng) -> None:
    engine, specs = models
    for spec in (specs["upscale-deep"], specs["upscale-grey"]):  # grey: 3 runs per band
        calls: list[tuple[int, int]] = []
        upscale_image(_image(rng, (40, 40, 3)), engine, spec, tile=16, band_rows=10,
                      progress=lambda d, t: calls.append((d, t)))
        total = calls[0][1]
        assert [d for d, _ in calls] == list(range(1, total + 1))
        assert {t for _, t in calls} == {total} and total > 4


# --------------------------------------------------------------------------- fidelity step


def _plain_fidelity(
    upscaled: np.ndarray, reference: np.ndarray, steps: int = SMOOTH_STEPS
) -> np.ndarray:
    """The fidelity step written plainly: whole arrays, float64 bisection, each block
    clamped to the min..max of the input in its (2 HALO_REACH + 1)^2 window."""
    target = np.clip(reference, 0, 1).astype(np.float32)
    out = np.array(upscaled, np.float32)
    for _ in range(steps):
        out = np.clip(out + _plain_bilinear(_plain_sharpen(target - area_downscale(out))), 0, 1)
    out += np.repeat(np.repeat(target - area_downscale(out), 2, 0), 2, 1)
    h, w, c = target.shape
    r = HALO_REACH
    padded = np.pad(target, [(r, r), (r, r), (0, 0)], mode="edge")
    windows = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(2 * r + 1)
                        for dx in range(2 * r + 1)])
    floor = windows.min(0).reshape(-1, 1).astype(np.float64)
    ceiling = windows.max(0).reshape(-1, 1).astype(np.float64)
    blocks = out.reshape(h, 2, w, 2, c).transpose(0, 2, 4, 1, 3).reshape(-1, 4).astype(np.float64)
    goal = target.reshape(-1, 1).astype(np.float64)
    low, high = floor - blocks.max(1, keepdims=True), ceiling - blocks.min(1, keepdims=True)
    for _ in range(40):
        mid = (low + high) / 2
        below = np.clip(blocks + mid, floor, ceiling).mean(1, keepdims=True) < goal
        low, high = np.where(below, mid, low), np.where(below, high, mid)
    solved = np.clip(blocks + (low + high) / 2, floor, ceiling).astype(np.float32)
    return solved.reshape(h, w, c, 2, 2).transpose(0, 3, 1, 4, 2).reshape(out.shape)


def _plain_sharpen(r: np.ndarray) -> np.ndarray:
    """[-w, 1 + 2 w, -w] along rows, then columns, edges repeated."""
    for axis in (0, 1):
        p = np.moveaxis(np.pad(np.moveaxis(r, axis, 0), [(1, 1)] + [(0, 0)] * (r.ndim - 1),
                               mode="edge"), 0, axis)
        take = lambda a, b: np.moveaxis(np.moveaxis(p, axis, 0)[a:b], 0, axis)  # noqa: E731
        r = (1 + 2 * SHARPEN) * take(1, -1) - SHARPEN * (take(0, -2) + take(2, None))
    return r.astype(np.float32)


def _plain_bilinear(r: np.ndarray) -> np.ndarray:
    """2x bilinear, half-pixel centres, edge repeated: taps 1/4, 3/4 per axis."""
    def axis0(x: np.ndarray) -> np.ndarray:
        p = np.pad(x, [(1, 1)] + [(0, 0)] * (x.ndim - 1), mode="edge")
        up = np.empty((2 * x.shape[0],) + x.shape[1:], np.float32)
        up[0::2] = 0.25 * p[:-2] + 0.75 * p[1:-1]
        up[1::2] = 0.75 * p[1:-1] + 0.25 * p[2:]
        return up
    return np.swapaxes(axis0(np.swapaxes(axis0(r), 0, 1)), 0, 1)


@pytest.mark.parametrize("shape", [(24, 32, 3), (5, 7, 1), (1, 1, 3)])
def test_fast_fidelity_step_equals_the_plain_one(rng, shape: tuple[int, ...]) -> None:
    reference = rng.random(shape).astype(np.float32)
    reference[0] = 0.0  # black row: blocks of mean 0
    reference[..., -1:, :] = 1.0  # white column: blocks of mean 1
    noise = rng.standard_normal((2 * shape[0], 2 * shape[1], shape[2]))
    wild = (classical_upscale(reference) + 0.4 * noise).astype(np.float32)
    got = enforce_fidelity(wild, reference)
    np.testing.assert_allclose(got, _plain_fidelity(wild, reference), rtol=0, atol=1e-5)
    assert got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(area_downscale(got), reference, atol=2e-6)


def test_fidelity_step_reaches_exactly_its_band_context(rng) -> None:
    # The band context rests on this: changing input row k moves output block rows
    # k - reach .. k + reach and no others (reach: the smooth rounds' and the halo clamp's).
    reference = rng.random((21, 9, 3)).astype(np.float32) * 0.6 + 0.2
    start = classical_upscale(reference)
    base = enforce_fidelity(start, reference)
    poked = reference.copy()
    poked[10] += 0.1
    moved = np.abs(enforce_fidelity(start, poked) - base).max(axis=(1, 2)).reshape(21, 2).max(1)
    reach = FIDELITY_REACH
    assert np.all(moved[10 - reach : 11 + reach] > 0)
    assert np.all(moved[: 10 - reach] == 0) and np.all(moved[11 + reach :] == 0)


# --------------------------------------------------------------------------- memory


def _traced_peak(run) -> int:
    """Peak bytes numpy (and Python) allocate during ``run()``, beyond what was live before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = run()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del result
    return peak


def test_banded_upscale_keeps_temporaries_small_beside_the_output(models, rng) -> None:
    engine, specs = models
    spec = specs["upscale-deep"]
    image = _image(rng, (512, 128, 3))
    output_bytes = 4 * image.pixels.nbytes
    banded = _traced_peak(lambda: upscale_image(image, engine, spec, band_rows=8))
    whole = _traced_peak(lambda: upscale_image(image, engine, spec, band_rows=512))
    # The output itself plus one band's temporaries (8 of 512 rows, plus context)...
    assert banded < 1.5 * output_bytes
    # ...where one band over the whole image holds several output-sized arrays at once.
    assert whole > 3 * output_bytes


def test_integer_conversion_for_writing_makes_no_float_copy(rng, monkeypatch) -> None:
    monkeypatch.setattr(imageio, "_QUANTISE_CHUNK", 4096)  # values per step: 16 KB of float32
    pixels = rng.random((256, 128, 3)).astype(np.float32)
    pixels[0, :3] = np.array([np.nan, -1.0, 2.0])[:, None]
    image = Image(pixels, None, ImageMeta(format="png", bit_depth=16, mode="rgb"))
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        samples_bytes = pixels.size * np.dtype(dtype).itemsize
        peak = _traced_peak(lambda: imageio._to_samples(image, bits, drop_alpha=False))
        assert peak < samples_bytes + pixels.nbytes // 8  # the samples and small chunks
        samples = imageio._to_samples(image, bits, drop_alpha=False)
        top = 255.0 if bits == 8 else 65535.0
        expected = np.rint(np.clip(np.nan_to_num(pixels, nan=0.0), 0, 1) * np.float32(top))
        np.testing.assert_array_equal(samples, expected.astype(dtype))
        assert samples.dtype == dtype and list(samples[0, :3, 0]) == [0, 0, int(top)]
