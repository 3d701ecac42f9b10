"""Synthetic hard patterns: contract, determinism, and that they are as hard as claimed."""

from __future__ import annotations

import numpy as np
import pytest

from nnip.simulate.color import srgb_to_linear
from nnip.simulate.patterns import KINDS, random_pattern


@pytest.mark.parametrize("kind", KINDS)
def test_pattern_contract_and_seed(kind):
    a = random_pattern(kind, 64, np.random.default_rng(11))
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and a.min() >= 0
    if kind != "lights":
        assert a.max() <= 1.0
    np.testing.assert_array_equal(a, random_pattern(kind, 64, np.random.default_rng(11)))
    assert not np.array_equal(a, random_pattern(kind, 64, np.random.default_rng(12)))
    assert a.std() > 0.005  # never a blank patch


def test_lights_are_brighter_than_white():
    peaks = [srgb_to_linear(random_pattern("lights", 96, np.random.default_rng(s))).max() for s in range(3)]
    assert min(peaks) > 1.5


def _dominant_frequency(img: np.ndarray) -> float:
    """Radial frequency (cycles/px) of the strongest non-DC Fourier component of the luma."""
    luma = img.mean(axis=2) - img.mean()
    spectrum = np.abs(np.fft.fft2(luma))
    fy, fx = np.meshgrid(np.fft.fftfreq(img.shape[0]), np.fft.fftfreq(img.shape[1]), indexing="ij")
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    return float(np.hypot(fy[peak], fx[peak]))


def test_stripes_sit_near_nyquist():
    freqs = [_dominant_frequency(random_pattern("stripes", 128, np.random.default_rng(s))) for s in range(6)]
    assert min(freqs) > 0.2 and max(freqs) <= 0.5


def test_hard_edges_are_antialiased():
    img = random_pattern("color_edges", 128, np.random.default_rng(2))
    # area-integrated edges leave intermediate values between the flat regions' colours
    unique_per_channel = len(np.unique(np.round(img[..., 0], 4)))
    assert unique_per_channel > 30


def test_unknown_kind_and_random_kind():
    with pytest.raises(ValueError, match="stripes"):
        random_pattern("plaid", 32, np.random.default_rng(0))
    img = random_pattern(None, 32, np.random.default_rng(0))
    assert img.shape == (32, 32, 3)
