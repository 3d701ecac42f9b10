"""The upscaler core: fidelity guarantee with a real (random-weight) ONNX 2x model,
strength blend, alpha / grey / 16-bit / float paths, and the resampling helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from nnip.core.engine import Engine
from nnip.core.imageio import Image, ImageMeta, read_image, write_image
from nnip.core.models import ModelSpec
from nnups.fidelity import area_downscale, classical_upscale, enforce_fidelity, smooth_upsample
from nnups.upscale import upscale_image
from tests.onnx_builders import conv_net, install


def _tensor(name: str) -> dict:
    return {"name": name, "channels": 3, "layout": "rgb", "range": [0, 1], "transfer": "srgb"}


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(2024)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, ModelSpec, ModelSpec]:
    """An engine and two 2x models (3x3 conv -> DepthToSpace, different random weights)."""
    directory = tmp_path_factory.mktemp("models")
    nets = {name: conv_net(3, 3, layers=1, scale=2, seed=seed)
            for name, seed in (("upscale-a", 11), ("upscale-b", 12))}
    overrides = {name: {"inputs": [_tensor("image")], "outputs": [_tensor("output")]} for name in nets}
    registry = install(directory, nets, overrides=overrides)
    engine = Engine(device="cpu", threads=1, registry=registry)
    return engine, registry.get("upscale-a"), registry.get("upscale-b")


def _image(rng: np.random.Generator, shape: tuple[int, ...], *, bit_depth: int = 8,
           alpha: bool = False) -> Image:
    # Smooth-ish content (a photo is not white noise) plus some texture.
    base = classical_upscale(rng.random((shape[0] // 4, shape[1] // 4, shape[2])), 4)
    pixels = np.clip(base + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    meta = ImageMeta(format="png", bit_depth=bit_depth, mode="grey" if shape[2] == 1 else "rgb",
                     has_alpha=alpha)
    a = rng.random(shape[:2]).astype(np.float32) if alpha else None
    return Image(pixels=pixels, alpha=a, meta=meta)


def _block_error(out: np.ndarray, reference: np.ndarray, block: int) -> float:
    """Largest difference of ``block x block`` means of area_downscale(out) and reference."""
    return float(np.abs(area_downscale(out, 2 * block) - area_downscale(reference, block)).max())


# --------------------------------------------------------------------------- fidelity


def test_raw_network_output_is_far_from_faithful(models, rng) -> None:
    # The premise of the next test: without the fidelity step the model is useless.
    engine, spec, _ = models
    image = _image(rng, (24, 32, 3))
    raw = np.moveaxis(engine.run(spec, [np.moveaxis(image.pixels, -1, 0)]), 0, -1)
    assert _block_error(raw, image.pixels, 8) > 0.05


def test_upscaled_block_means_reproduce_the_input(models, rng) -> None:
    engine, spec, _ = models
    image = _image(rng, (24, 32, 3))
    out = upscale_image(image, engine, spec)
    assert out.pixels.shape == (48, 64, 3) and out.pixels.dtype == np.float32
    assert _block_error(out.pixels, image.pixels, 8) <= 0.5 / 255
    # Stronger than asked: every 2x2 block mean equals its input pixel.
    assert _block_error(out.pixels, image.pixels, 1) < 1e-5
    assert out.pixels.min() >= 0.0 and out.pixels.max() <= 1.0


def test_fidelity_survives_16_bit_round_trip(models, rng, tmp_path: Path) -> None:
    engine, spec, _ = models
    image = _image(rng, (16, 24, 3), bit_depth=16)
    out = upscale_image(image, engine, spec)
    assert out.meta.bit_depth == 16
    write_image(tmp_path / "out.png", out)
    back = read_image(tmp_path / "out.png")
    assert back.meta.bit_depth == 16
    assert _block_error(back.pixels, image.pixels, 1) < 1.0 / 65535


def test_float_image_is_not_clipped_and_stays_faithful(models, rng) -> None:
    engine, spec, _ = models
    image = _image(rng, (16, 16, 3), bit_depth=32)
    image.pixels[:8] *= 3.0  # highlights above 1, as a float TIFF may hold
    out = upscale_image(image, engine, spec)
    assert out.pixels.max() > 1.5
    assert _block_error(out.pixels, image.pixels, 1) < 1e-5


def test_grey_stays_grey_and_faithful(models, rng) -> None:
    engine, spec, _ = models
    image = _image(rng, (16, 24, 1))
    out = upscale_image(image, engine, spec)
    assert out.pixels.shape == (32, 48, 1) and out.meta.mode == "grey"
    assert _block_error(out.pixels, image.pixels, 1) < 1e-5


def test_alpha_is_a_clipped_cubic_upscale_independent_of_colour(models, rng) -> None:
    engine, spec, _ = models
    image = _image(rng, (16, 24, 3), alpha=True)
    out = upscale_image(image, engine, spec)
    expected = np.clip(classical_upscale(image.alpha), 0, 1)
    np.testing.assert_allclose(out.alpha, expected, atol=1e-6)
    assert out.alpha.shape == (32, 48) and 0.0 <= out.alpha.min() and out.alpha.max() <= 1.0
    other = upscale_image(Image(image.pixels * 0.5, image.alpha, image.meta), engine, spec)
    np.testing.assert_array_equal(other.alpha, out.alpha)


def test_strength_zero_ignores_the_network_and_one_uses_it(models, rng) -> None:
    engine, spec_a, spec_b = models
    image = _image(rng, (16, 24, 3))
    zero_a = upscale_image(image, engine, spec_a, strength=0.0).pixels
    zero_b = upscale_image(image, engine, spec_b, strength=0.0).pixels
    np.testing.assert_array_equal(zero_a, zero_b)
    np.testing.assert_allclose(zero_a, enforce_fidelity(classical_upscale(image.pixels), image.pixels),
                               atol=1e-6)
    one_a = upscale_image(image, engine, spec_a, strength=1.0).pixels
    one_b = upscale_image(image, engine, spec_b, strength=1.0).pixels
    assert np.abs(one_a - one_b).max() > 0.05
    half = upscale_image(image, engine, spec_a, strength=0.5).pixels
    assert 0.0 < np.abs(half - zero_a).mean() < np.abs(one_a - zero_a).mean()
    assert _block_error(half, image.pixels, 1) < 1e-5


def test_strength_outside_0_1_is_refused(models, rng) -> None:
    engine, spec, _ = models
    with pytest.raises(ValueError, match="strength"):
        upscale_image(_image(rng, (8, 8, 3)), engine, spec, strength=1.5)


def test_tile_and_progress_reach_the_engine(models, rng) -> None:
    engine, spec, _ = models
    image = _image(rng, (40, 40, 3))
    calls: list[tuple[int, int]] = []
    tiled = upscale_image(image, engine, spec, tile=16, progress=lambda d, t: calls.append((d, t)))
    whole = upscale_image(image, engine, spec)
    assert len(calls) > 1 and calls[-1][0] == calls[-1][1]
    np.testing.assert_allclose(tiled.pixels, whole.pixels, atol=1e-5)


def test_metadata_is_kept(models, rng) -> None:
    engine, spec, _ = models
    image = _image(rng, (8, 8, 3))
    image.meta = ImageMeta(format="jpeg", bit_depth=8, mode="rgb", exif=b"Exif\x00\x00x",
                           icc=b"icc", orientation=6, dpi=(300.0, 300.0), notices=("read notice",))
    out = upscale_image(image, engine, spec)
    assert (out.meta.format, out.meta.exif, out.meta.icc, out.meta.orientation, out.meta.dpi) == (
        "jpeg", b"Exif\x00\x00x", b"icc", 6, (300.0, 300.0))
    assert out.meta.notices == ()  # read notices are printed once, for the input


# --------------------------------------------------------------------------- helpers


def test_enforce_fidelity_projects_clipped_blocks_exactly() -> None:
    reference = np.array([[[0.98]], [[0.02]]], dtype=np.float32)  # (2, 1, 1)
    wild = np.array([[2.0, -1.0], [0.9, 0.1], [-3.0, 0.5], [0.0, 1.0]], dtype=np.float32)[:, :, None]
    out = enforce_fidelity(wild, reference, 2)
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(area_downscale(out), reference, atol=1e-6)


def test_halo_clamp_removes_ringing_at_an_edge_and_keeps_fidelity() -> None:
    # A step 0.2 -> 0.8 upscaled with a ringing (over-sharpened) start: the clamp keeps
    # every block within the input's local min..max, so nothing rings past either level.
    reference = np.full((12, 12, 1), 0.2, np.float32)
    reference[:, 6:] = 0.8
    reference[:, 5] = 0.5  # a partly covered column
    cubic = classical_upscale(reference)
    ringing = cubic + 1.5 * (cubic - smooth_upsample(area_downscale(cubic)))
    assert ringing.max() > 0.85 and ringing.min() < 0.15
    clamped = enforce_fidelity(ringing, reference, 2)
    assert clamped.min() >= 0.2 - 1e-6 and clamped.max() <= 0.8 + 1e-6
    np.testing.assert_allclose(area_downscale(clamped), reference, atol=1e-6)
    unclamped = enforce_fidelity(ringing, reference, 2, halo_reach=0)
    assert unclamped.max() > 0.82  # the clamp, not the rest of the step, removed the halo
    np.testing.assert_allclose(area_downscale(unclamped), reference, atol=1e-6)


def test_enforce_fidelity_without_exact_step_leaves_a_residual(rng) -> None:
    reference = rng.random((16, 16, 3)).astype(np.float32)
    start = np.zeros((32, 32, 3), np.float32)
    smooth = enforce_fidelity(start, reference, 2, exact=False)
    exact = enforce_fidelity(start, reference, 2)
    assert _block_error(smooth, reference, 1) > 1e-3
    assert _block_error(exact, reference, 1) < 1e-5


def test_classical_upscale_is_keys_cubic_like_pillow(rng) -> None:
    x = rng.random((20, 30)).astype(np.float32)
    pillow = np.asarray(PILImage.fromarray(x, "F").resize((60, 40), PILImage.Resampling.BICUBIC))
    ours = classical_upscale(x)
    # Pillow clamps at the border where we reflect; the interior is the same filter.
    np.testing.assert_allclose(ours[3:-3, 3:-3], pillow[3:-3, 3:-3], atol=1e-5)
    assert classical_upscale(rng.random((5, 7, 3)), 3).shape == (15, 21, 3)


def test_constant_stays_constant_through_every_resampler() -> None:
    flat = np.full((6, 5, 3), 0.3, np.float32)
    for up in (classical_upscale(flat), smooth_upsample(flat)):
        np.testing.assert_allclose(up, 0.3, atol=1e-6)
    np.testing.assert_allclose(area_downscale(np.full((6, 4), 0.7)), 0.7, atol=1e-6)


def test_smooth_upsample_area_downscale_is_the_1_8_3_4_1_8_blur() -> None:
    delta = np.zeros((9, 9), np.float32)
    delta[4, 4] = 1.0
    blurred = area_downscale(smooth_upsample(delta))
    kernel = np.array([1 / 8, 3 / 4, 1 / 8])
    np.testing.assert_allclose(blurred[3:6, 3:6], np.outer(kernel, kernel), atol=1e-6)


def test_area_downscale_means_blocks_and_refuses_odd_sizes() -> None:
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(area_downscale(x), [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="multiple of 2"):
        area_downscale(np.zeros((5, 4)))


@pytest.mark.parametrize("reach", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("shape", [(3, 41, 57), (1, 2, 9), (2, 1, 1)])
def test_window_bounds_equal_scipy_min_max_filters(reach: int, shape: tuple[int, int, int]) -> None:
    # The halo clamp's bounds use a doubling min/max (faster); scipy's filters are the reference.
    from scipy.ndimage import maximum_filter, minimum_filter

    from nnups.fidelity import _window_extreme

    values = np.random.default_rng(reach).random(shape, dtype=np.float32)
    size = (1, 2 * reach + 1, 2 * reach + 1)
    low = _window_extreme(_window_extreme(values, reach, 1, np.minimum), reach, 2, np.minimum)
    high = _window_extreme(_window_extreme(values, reach, 1, np.maximum), reach, 2, np.maximum)
    assert np.array_equal(low, minimum_filter(values, size=size, mode="nearest"))
    assert np.array_equal(high, maximum_filter(values, size=size, mode="nearest"))
