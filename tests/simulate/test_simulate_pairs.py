"""Teacher loading, upscaling pairs and simulated RAW pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnip.simulate.color import camera_matrices, linear_to_srgb, srgb_to_linear
from nnip.simulate.optics import LensParams
from nnip.simulate.pairs import load_teacher, raw_pair, upscale_pair
from nnip.simulate.sensor import PATTERNS, noise_model_for_iso, pack_bayer, pixel_integrate

_PLAIN = dict(jpeg_prob=0.0, noise_prob=0.0, sharpen_prob=0.0)


def _photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth colourful test image in [0.05, 0.95], sRGB-encoded."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(6 * xx + 1), np.cos(5 * yy), np.sin(4 * (xx + yy))], axis=-1)
    return (0.5 + 0.45 * base * rng.uniform(0.5, 1.0, 3)).astype(np.float32)


def test_load_teacher_area_downscales_in_linear_light(tmp_path: Path):
    img = (np.random.default_rng(1).random((21, 30, 3)) * 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(img).save(path)
    rng = np.random.default_rng(5)
    dy, dx = np.random.default_rng(5).integers(0, 2, size=2)  # the phase load_teacher draws
    teacher = load_teacher(path, rng)
    src = img[dy:, dx:].astype(np.float32) / 255
    src = src[: src.shape[0] // 2 * 2, : src.shape[1] // 2 * 2]
    expected = linear_to_srgb(pixel_integrate(srgb_to_linear(src), 2))
    assert teacher.shape == expected.shape and teacher.dtype == np.float32
    np.testing.assert_allclose(teacher, expected, atol=1e-6)


def test_upscale_pair_shapes_and_determinism():
    hr_in = _photo(49, 66)  # odd height: cropped to even
    a = upscale_pair(hr_in, np.random.default_rng(3))
    b = upscale_pair(hr_in, np.random.default_rng(3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    lr, hr = a
    assert lr.shape == (24, 33, 3) and hr.shape == (48, 66, 3)
    assert lr.dtype == hr.dtype == np.float32
    assert 0 <= lr.min() and lr.max() <= 1 and 0 <= hr.min() and hr.max() <= 1


def test_bicubic_path_is_the_protocol_imresize():
    from nnip.simulate.resize import imresize

    hr_in = _photo()
    lr, hr = upscale_pair(hr_in, np.random.default_rng(0), bicubic_fraction=1.0, **_PLAIN)
    np.testing.assert_array_equal(hr, hr_in)
    np.testing.assert_allclose(lr, np.clip(imresize(hr_in, 0.5), 0, 1), atol=1e-6)


def test_sensor_path_integrates_pixels_in_linear_light():
    hr_in = _photo()
    lr, hr = upscale_pair(hr_in, np.random.default_rng(0), bicubic_fraction=0.0, olpf_range=(0.0, 0.0),
                          **_PLAIN)
    expected = linear_to_srgb(pixel_integrate(srgb_to_linear(hr_in), 2))
    np.testing.assert_allclose(lr, expected, atol=1e-6)


def test_noise_is_in_the_target_and_reaches_lr_through_the_degradation():
    hr_in = _photo(64, 64)
    lr, hr = upscale_pair(hr_in, np.random.default_rng(2), bicubic_fraction=0.0, olpf_range=(0.0, 0.0),
                          jpeg_prob=0.0, sharpen_prob=0.0, noise_prob=1.0)
    assert np.abs(hr - hr_in).std() > 0.002  # the target keeps the noise ...
    expected = linear_to_srgb(pixel_integrate(srgb_to_linear(hr), 2))
    np.testing.assert_allclose(lr, expected, atol=1e-6)  # ... and LR is that target, downscaled


def test_jpeg_touches_lr_only():
    hr_in = _photo(64, 64)
    lr, hr = upscale_pair(hr_in, np.random.default_rng(4), bicubic_fraction=0.0, olpf_range=(0.0, 0.0),
                          jpeg_prob=1.0, noise_prob=0.0, sharpen_prob=0.0)
    np.testing.assert_array_equal(hr, hr_in)
    clean_lr = linear_to_srgb(pixel_integrate(srgb_to_linear(hr_in), 2))
    err = np.abs(lr - clean_lr)
    assert 0 < err.mean() < 0.02
    assert np.allclose(lr * 255, np.round(lr * 255), atol=1e-4)  # 8-bit JPEG values


def test_raw_pair_record_and_determinism():
    clean = _photo(32, 40)
    a = raw_pair(clean, np.random.default_rng(9))
    b = raw_pair(clean, np.random.default_rng(9))
    np.testing.assert_array_equal(a["raw"], b["raw"])
    assert a["raw"].dtype == np.uint16 and a["raw"].shape == (32, 40)
    assert a["mosaic"].dtype == np.float32 and a["packed"].shape == (4, 16, 20)
    np.testing.assert_array_equal(a["packed"], pack_bayer(a["mosaic"], a["pattern"]))
    assert a["target"].shape == a["sharp"].shape == (32, 40, 3)
    assert 0 <= a["target"].min() and a["target"].max() <= 1
    np.testing.assert_allclose(a["wb_gains"] * a["as_shot_neutral"], 1.0)
    assert a["wb_gains"][1] == pytest.approx(1.0)
    assert 100 <= a["iso"] <= 25600
    assert a["noise_b"] == a["noise"].b and a["noise_a"] > 0


@pytest.mark.parametrize("pattern", PATTERNS)
def test_raw_pair_mosaic_statistics_match_target_and_noise(pattern):
    flat = np.full((128, 128, 3), 0.6, np.float32)
    m = camera_matrices()["Canon EOS R"]
    rec = raw_pair(flat, np.random.default_rng(1), pattern=pattern, iso=1600, sensor="canon-5d3",
                   cam_from_xyz=m, exposure=0.5, olpf_px=0.0)
    target = rec["target"][0, 0]  # clean camera RGB at the sensor (flat)
    planes = pack_bayer(rec["mosaic"], pattern)  # R, G1, G2, B
    for plane, channel in zip(planes, (0, 1, 1, 2)):
        assert plane.mean() == pytest.approx(target[channel], abs=3e-3)
        assert plane.var() == pytest.approx(rec["noise"].variance(target[channel]), rel=0.1)
    assert rec["noise"].a == pytest.approx(noise_model_for_iso(1600, "canon-5d3").a)


def test_raw_pair_clips_highlights_and_applies_the_lens():
    clean = np.full((64, 64, 3), 0.2, np.float32)
    clean[28:36, 28:36] = 3.0  # a light source (extended sRGB)
    rec = raw_pair(clean, np.random.default_rng(2), iso=100, sensor="sony-a7rm2", exposure=1.0, olpf_px=0.0,
                   lens=LensParams(fnumber=16, pixel_pitch_um=2.0))
    assert rec["raw"].max() == rec["white_level"]  # blown
    assert rec["sharp"][32, 32].min() == 1.0
    # diffraction spreads the light source beyond its edge in the sensor target, not in `sharp`
    assert rec["target"][32, 25, 1] > rec["sharp"][32, 25, 1] + 0.01


def test_noise_free_capture_is_only_quantised(tmp_path) -> None:
    """simulate_dng(noise=False): the mosaic equals the clean target to quantisation."""
    from nnip.simulate.pairs import simulate_dng

    clean = np.random.default_rng(3).uniform(0.1, 0.9, (64, 64, 3)).astype(np.float32)
    record = simulate_dng(clean, tmp_path / "x.dng", noise=False, optics=False, bits=14)
    from nnip.simulate.sensor import mosaic_bayer

    target = mosaic_bayer(record["target"], record["pattern"])
    step = 1.0 / (record["white_level"] - record["black_level"])
    assert np.abs(record["mosaic"] - target).max() <= step
    noisy = simulate_dng(clean, tmp_path / "y.dng", noise=True, optics=False, iso=3200)
    assert np.abs(noisy["mosaic"] - target).max() > 10 * step


def test_a_noise_free_dng_reports_only_its_quantisation_noise(tmp_path) -> None:
    # Its NoiseProfile must not claim the sensor's noise: `--denoise auto` would smooth it.
    from nnip.develop.noise import noise_params
    from nnip.raw.frame import read_raw
    from nnip.simulate.pairs import simulate_dng

    clean = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    noisy = simulate_dng(clean, tmp_path / "noisy.dng", iso=50.0, sensor="sony-a7rm2", optics=False)
    quiet = simulate_dng(clean, tmp_path / "quiet.dng", iso=50.0, sensor="sony-a7rm2", optics=False,
                         noise=False)
    frame = read_raw(quiet["path"])
    a, b = frame.noise_profile
    step = 1.0 / (quiet["white_level"] - quiet["black_level"])
    assert a == pytest.approx(1e-7) and b == pytest.approx(step * step / 12)
    assert read_raw(noisy["path"]).noise_profile == pytest.approx((noisy["noise_a"], noisy["noise_b"]))
    params, notices = noise_params(frame)
    assert params.source == "dng-noiseprofile" and not notices
