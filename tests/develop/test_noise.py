"""Where (a, b) come from: the DNG NoiseProfile, the image itself, the optical black, the ISO."""

from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from dev_scenes import needs_shared
from nnip.develop.noise import (
    NoiseParams,
    check_noise_profile,
    estimate_noise,
    iso_prior,
    margin_variance,
    noise_params,
    optical_black_variance,
)
from nnip.raw.frame import RawFrame, read_raw
from nnip.simulate.color import linear_to_srgb, srgb_to_linear
from nnip.simulate.pairs import raw_pair, simulate_dng
from nnip.simulate.patterns import KINDS, random_pattern

SIZE = 1024  # mosaic side of the estimator's test scenes


def flat_scene(rng: np.random.Generator, size: int = SIZE, cell: int = 64) -> np.ndarray:
    """Uniform colour patches at levels spread over 10 stops, a quarter of them black."""
    n = size // cell
    levels = 2.0 ** rng.uniform(-10, 0, size=(n, n))
    levels[rng.random((n, n)) < 0.25] = 0.0
    colours = rng.uniform(0.3, 1.0, size=(n, n, 3)) * levels[..., None]
    linear = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    return linear_to_srgb(linear).astype(np.float32)


def textured_scene(rng: np.random.Generator, size: int = SIZE, cell: int = 128) -> np.ndarray:
    """Every cell a hard synthetic pattern (stripes, zone plates, text, fabric, skin with
    pores, ...) at its own exposure over 9 stops: no cell is flat."""
    n = size // cell
    rows = []
    for i in range(n):
        row = []
        for j in range(n):
            patch = np.clip(random_pattern(KINDS[(i * n + j) % len(KINDS)], cell, rng), 0, 1)
            row.append(linear_to_srgb(srgb_to_linear(patch) * 2.0 ** rng.uniform(-9, 0)))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0).astype(np.float32)


CASES = [(100, "sony-a7rm2"), (800, "canon-5d3"), (3200, "nikon-d800"),
         (12800, "sony-a7rm2"), (25600, "canon-5d3")]


@pytest.mark.parametrize("scene", [flat_scene, textured_scene])
@pytest.mark.parametrize("iso, sensor", CASES)
def test_estimate_within_15_percent(scene, iso, sensor) -> None:
    rng = np.random.default_rng(iso)
    record = raw_pair(scene(rng), rng, iso=iso, sensor=sensor, exposure=1.0, olpf_px=0.5)
    fit = estimate_noise(record["mosaic"])
    assert fit is not None
    assert fit.a == pytest.approx(record["noise_a"], rel=0.15)
    assert fit.b == pytest.approx(record["noise_b"], rel=0.15)


def test_textured_scene_is_textured_and_still_measured() -> None:
    """The textured scene really is textured: all blocks' Haar variance is far above the noise."""
    rng = np.random.default_rng(3200)
    record = raw_pair(textured_scene(rng), rng, iso=3200, sensor="nikon-d800", exposure=1.0)
    fit = estimate_noise(record["mosaic"])
    planes = [record["mosaic"][dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)]
    haar = [(p[0::2, 0::2] - p[0::2, 1::2] - p[1::2, 0::2] + p[1::2, 1::2]) / 2 for p in planes]
    mean_level = float(record["mosaic"].mean())
    noise_variance = record["noise_a"] * mean_level + record["noise_b"]
    assert np.mean([np.mean(h**2) for h in haar]) > 3 * noise_variance
    assert fit is not None and fit.a == pytest.approx(record["noise_a"], rel=0.15)


def test_black_variance_fixes_b() -> None:
    rng = np.random.default_rng(7)
    record = raw_pair(flat_scene(rng), rng, iso=1600, sensor="canon-5d3", exposure=1.0)
    fit = estimate_noise(record["mosaic"], black_variance=2.5 * record["noise_b"])
    assert fit.b == 2.5 * record["noise_b"] and fit.b_from == "optical-black"
    assert fit.a == pytest.approx(record["noise_a"], rel=0.15)


def test_no_estimate_without_flat_blocks_or_levels() -> None:
    rng = np.random.default_rng(0)
    assert estimate_noise(np.zeros((256, 256), np.float32)) is None  # nothing to measure
    one_level = 0.2 + rng.normal(0, 0.01, (512, 512)).astype(np.float32)
    assert estimate_noise(one_level) is None  # a and b cannot be told apart


# --------------------------------------------------------------------------- NoiseProfile


@pytest.mark.parametrize("profile, reason", [
    ((2e-4, 1e-7), None),
    ((-2e-4, 1e-7), "a is negative"),
    ((2e-4, -1e-7), "b is negative"),
    ((math.nan, 1e-7), "a is NaN"),
    ((2e-4, math.inf), "b is infinite"),
    ((0.0, 1e-7), "a is 0"),
    ((0.5, 1e-7), "outside the range of real sensors"),
    ((1e-12, 1e-7), "outside the range of real sensors"),
    ((2e-4, 0.2), "larger than any real sensor"),
])
def test_check_noise_profile(profile, reason) -> None:
    found = check_noise_profile(profile)
    assert (found is None) if reason is None else (reason in found)


def _noisy_dng(tmp_path: Path, iso: float = 3200.0) -> tuple[Path, dict]:
    rng = np.random.default_rng(5)
    path = tmp_path / "noisy.dng"
    record = simulate_dng(flat_scene(rng, size=512, cell=32), path, iso=iso, sensor="nikon-d800",
                          optics=False, seed=5)
    return path, record


def test_noise_profile_is_parsed_and_used(tmp_path) -> None:
    path, record = _noisy_dng(tmp_path)
    frame = read_raw(path)
    params, notices = noise_params(frame)
    assert params.source == "dng-noiseprofile" and notices == ()
    assert (params.a, params.b) == pytest.approx((record["noise_a"], record["noise_b"]), rel=1e-12)


@pytest.mark.parametrize("bad, reason", [(-1.0, "a is negative"), (math.nan, "a is NaN")])
def test_bad_noise_profile_in_a_file_is_ignored_with_a_notice(tmp_path, bad, reason) -> None:
    path, record = _noisy_dng(tmp_path)
    data = path.read_bytes()
    stored = struct.pack("<d", record["noise_a"])
    assert data.count(stored) == 1  # the tag's first double
    path.write_bytes(data.replace(stored, struct.pack("<d", bad)))
    frame = read_raw(path)
    params, notices = noise_params(frame)
    assert params.source == "estimated"
    assert notices == (f"DNG NoiseProfile ignored ({reason}): noise estimated from the image",)
    assert params.a == pytest.approx(record["noise_a"], rel=0.15)


# --------------------------------------------------------------------------- fallbacks


def _frame(mosaic: np.ndarray, **changes) -> RawFrame:
    raw = np.clip(np.rint(512 + mosaic * (16383 - 512)), 0, 16383).astype(np.uint16)
    frame = RawFrame(mosaic=raw, pattern="RGGB", cfa_indices=np.array([[0, 1], [3, 2]], np.uint8),
                     color_desc="RGBG", black_level_per_channel=(512.0,) * 4,
                     white_level=16383.0, camera_whitebalance=None, daylight_whitebalance=None,
                     cam_from_xyz=None, is_bayer=True, iso=800.0)
    return dataclasses.replace(frame, **changes)


def test_iso_prior_when_the_image_cannot_be_measured() -> None:
    frame = _frame(np.full((256, 256), 0.3, np.float32))
    params, notices = noise_params(frame)
    assert params == iso_prior(800.0, 512.0, 16383.0) and notices == ()
    assert params.source == "iso-prior"
    params, notices = noise_params(dataclasses.replace(frame, iso=None))
    assert params == iso_prior(400.0, 512.0, 16383.0)
    assert notices == ("noise level: no flat areas to measure and no ISO in the file, "
                       "ISO 400 assumed",)


def test_iso_prior_grows_with_iso_and_adds_quantisation() -> None:
    low, high = iso_prior(100), iso_prior(6400)
    assert high.a > 30 * low.a and high.b > low.b
    assert iso_prior(100, 0, 4095).b - low.b == pytest.approx(1 / (12 * 4095**2))


def test_bad_profile_falls_through_to_the_estimate_in_memory() -> None:
    rng = np.random.default_rng(11)
    record = raw_pair(flat_scene(rng, size=512, cell=32), rng, iso=6400, sensor="sony-a7rm2",
                      exposure=1.0)
    frame = _frame(record["mosaic"], noise_profile=(record["noise_a"], -1.0))
    params, notices = noise_params(frame, record["mosaic"])
    assert params.source == "estimated" and "b is negative" in notices[0]
    assert params.a == pytest.approx(record["noise_a"], rel=0.15)


def test_noise_params_object() -> None:
    params = NoiseParams(1e-4, 1e-8, "estimated")
    expected = [1e-4, 1e-4, math.sqrt(1e-4 + 1e-8)]
    assert params.std(np.array([-1.0, 0.0, 1.0])) == pytest.approx(expected)
    assert "estimated from the image" in params.describe()
    with pytest.raises(ValueError):
        NoiseParams(-1.0, 0.0, "estimated")
    with pytest.raises(ValueError):
        NoiseParams(1.0, 0.0, "guessed")


# --------------------------------------------------------------------------- optical black


def test_margin_variance_of_a_masked_border() -> None:
    rng = np.random.default_rng(2)
    raw = np.full((200, 300), 2000.0)
    raw[:, :40] = 512 + rng.normal(0, 3.0, (200, 40))  # optical black, sigma 3 DN
    variance = margin_variance(np.rint(raw).astype(np.uint16), 0, 40, 200, 260, 512, 16383)
    assert variance == pytest.approx((3.0**2 + 1 / 12) / (16383 - 512) ** 2, rel=0.1)
    # A margin that is not at the black level is not optical black.
    lit = np.full((200, 300), 3000, np.uint16)
    assert margin_variance(lit, 0, 40, 200, 260, 512, 16383) is None
    # Too small a margin tells nothing.
    assert margin_variance(np.rint(raw).astype(np.uint16), 0, 40, 200, 260, 512, 16383,
                           min_pixels=10**6) is None


def test_real_canon_crw_optical_black_and_estimate() -> None:
    frame = read_raw(needs_shared("real", "Canon_EOS_D30.CRW"))
    black = optical_black_variance(frame)
    assert black is not None and 0 < black < 1e-5  # a few DN of read noise on 12 bits
    params, notices = noise_params(frame)
    assert params.source == "estimated" and notices == ()
    assert params.b == pytest.approx(black) and 1e-6 < params.a < 1e-3
