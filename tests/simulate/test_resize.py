"""MATLAB-compatible imresize and the SR protocol's Y channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnip.simulate.resize import cubic, imresize, resize_weights, rgb_to_y

BENCH = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "bench"


def test_cubic_kernel_values():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(cubic(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0])
    np.testing.assert_allclose(cubic(-x), cubic(x))


@pytest.mark.parametrize("n_in,n_out,scale", [(10, 5, 0.5), (7, 14, 2.0), (9, 3, 1 / 3)])
def test_weights_rows_sum_to_one(n_in, n_out, scale):
    weights = resize_weights(n_in, n_out, scale)
    assert weights.shape == (n_out, n_in)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)


def test_halving_weights_match_matlab_antialiased_kernel():
    # Output sample 3 (1-based) of a halving sits at input position 5.5: taps 2..9 with
    # weights 0.5 * cubic(0.5 * d) for d = 3.5, 2.5, ..., -3.5 (normalised).
    weights = resize_weights(16, 8, 0.5)
    d = 5.5 - np.arange(2, 10)
    expected = 0.5 * cubic(0.5 * d)
    expected /= expected.sum()
    np.testing.assert_allclose(weights[2, 1:9], expected, atol=1e-12)


def test_symmetric_border_folds_taps_onto_edge_samples():
    # Output 1 of a halving sits at 1.5 and reads input positions -2..5 (1-based);
    # MATLAB's mirror repeats the edge sample: 0 -> 1, -1 -> 2, -2 -> 3.
    weights = resize_weights(16, 8, 0.5)
    positions = np.arange(-2, 6)
    taps = 0.5 * cubic(0.5 * (1.5 - positions))
    taps /= taps.sum()
    tap = dict(zip(positions.tolist(), taps))
    np.testing.assert_allclose(weights[0, 0], tap[1] + tap[0], atol=1e-12)
    np.testing.assert_allclose(weights[0, 1], tap[2] + tap[-1], atol=1e-12)
    np.testing.assert_allclose(weights[0, 2], tap[3] + tap[-2], atol=1e-12)
    np.testing.assert_allclose(weights[0, 4], tap[5], atol=1e-12)  # 0-based column 4
    assert np.all(weights[0, 5:] == 0)


def test_output_shape_is_ceil_and_channels_kept():
    img = np.random.default_rng(0).random((15, 9, 3)).astype(np.float32)
    assert imresize(img, 0.5).shape == (8, 5, 3)
    assert imresize(img, 2).shape == (30, 18, 3)
    assert imresize(img[..., 0], 0.5).shape == (8, 5)
    assert imresize(img, 0.5).dtype == np.float32


def test_constant_image_stays_constant():
    img = np.full((12, 10, 3), 0.3)
    np.testing.assert_allclose(imresize(img, 0.5), 0.3, atol=1e-12)
    np.testing.assert_allclose(imresize(img, 2), 0.3, atol=1e-12)


def test_ramp_is_reproduced_inside():
    # The (antialiased) Keys cubic reproduces linear functions away from the border.
    ramp = np.tile(np.arange(32, dtype=np.float64), (6, 1))
    half = imresize(ramp, 0.5)
    np.testing.assert_allclose(half[:, 3:-3], (2 * np.arange(16) + 0.5)[3:-3][None].repeat(3, 0))
    double = imresize(ramp, 2)
    np.testing.assert_allclose(double[:, 4:-4], (np.arange(64) / 2 - 0.25)[4:-4][None].repeat(12, 0))


def test_uint8_is_rounded_and_clipped_like_matlab():
    img = np.zeros((8, 8), dtype=np.uint8)
    img[:, 4:] = 255
    out = imresize(img, 2)
    assert out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255  # cubic overshoot is clipped
    float_out = imresize(img.astype(np.float64), 2)
    assert float_out.min() < 0 and float_out.max() > 255
    np.testing.assert_array_equal(out, np.clip(np.round(float_out), 0, 255))


def test_rgb_to_y_range_and_grey():
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235 / 255)
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16 / 255)
    grey = np.random.default_rng(1).random((4, 5))
    np.testing.assert_allclose(rgb_to_y(grey), rgb_to_y(np.stack([grey] * 3, -1)))


def _bicubic_psnr(folder: Path) -> float:
    scores = []
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            hr = np.asarray(image.convert("RGB") if image.mode != "L" else image)
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        sr = imresize(imresize(hr, 0.5), 2)
        y_hr, y_sr = rgb_to_y(hr / 255.0)[2:-2, 2:-2], rgb_to_y(sr / 255.0)[2:-2, 2:-2]
        scores.append(10 * np.log10(1.0 / np.mean((y_hr - y_sr) ** 2)))
    return float(np.mean(scores))


@pytest.mark.parametrize("name,expected", [("Set5", 33.68), ("Set14", 30.33)])
def test_bicubic_reproduces_the_protocol_figures(name, expected):
    folder = BENCH / name
    if not folder.is_dir():
        pytest.skip(f"benchmark images not found at {folder}")
    assert _bicubic_psnr(folder) == pytest.approx(expected, abs=0.02)
