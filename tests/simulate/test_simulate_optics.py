"""Lens simulation: diffraction, field-varying blur by zones, lateral CA, vignetting."""

from __future__ import annotations

import time

import numpy as np
import pytest

from nnip.simulate.optics import (
    Field,
    LensParams,
    aberration_psf,
    airy_profile,
    airy_psf,
    apply_lens,
    diffraction_psfs,
    field_blur,
    lateral_ca,
    random_lens_params,
    vignetting,
)


def _moments(patch: np.ndarray) -> tuple[float, float, float, float]:
    """Centroid (y, x) and variances (y, x) of a non-negative 2-D response."""
    yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    w = patch / patch.sum()
    cy, cx = (w * yy).sum(), (w * xx).sum()
    return cy, cx, (w * (yy - cy) ** 2).sum(), (w * (xx - cx) ** 2).sum()


def test_airy_first_zero_at_1_22_lambda_n():
    n, lam = 8.0, 550.0
    r0 = 1.22 * lam * 1e-3 * n  # micrometres
    assert airy_profile(np.array([0.0]), n, lam)[0] == pytest.approx(1.0)
    assert airy_profile(np.array([r0]), n, lam)[0] < 1e-5
    assert airy_profile(np.array([0.8 * r0]), n, lam)[0] > 0.03
    # on a fine pixel grid the first dark ring of the sampled PSF is at the same radius
    pitch = 0.25
    psf = airy_psf(n, lam, pitch, size=61)
    profile = psf[30, 30:]
    ring = 10 + np.argmin(profile[10:30])
    assert abs(ring - r0 / pitch) <= 1.0


def test_every_psf_sums_to_one():
    kernels = [
        airy_psf(2.8, 465, 4.0),
        airy_psf(16, 610, 1.5),
        *diffraction_psfs(8.0, 4.3),
        aberration_psf(2.0, 1.0, 0.7, 1.5),
        aberration_psf(0.3, 0.15, 2.0),
        aberration_psf(0.0, 0.0, 0.0, 0.8),
    ]
    for k in kernels:
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert k.min() >= 0
        assert k.sum() == pytest.approx(1.0, abs=1e-12)
    delta = aberration_psf(0.0, 0.0, 0.0, 0.0, size=5)
    assert delta[2, 2] == 1.0 and delta.sum() == 1.0


def test_diffraction_is_wider_for_red_and_small_apertures():
    def width(k):
        return _moments(k)[2]

    r, g, b = diffraction_psfs(11.0, 2.0)
    assert width(r) > width(g) > width(b)
    assert width(airy_psf(16, 540, 2.0)) > width(airy_psf(4, 540, 2.0))


def _widths_along_diagonal(out: np.ndarray, points: list[int], half: int) -> np.ndarray:
    """Total variance (vy + vx) of the responses to impulses at (p, p)."""
    widths = []
    for p in points:
        _, _, vy, vx = _moments(out[p - half : p + half + 1, p - half : p + half + 1])
        widths.append(vy + vx)
    return np.array(widths)


def test_field_blur_grows_towards_corners_smoothly_and_radially():
    size, half = 257, 8
    params = LensParams(fnumber=2.0, pixel_pitch_um=6.0, aberration_px=3.0)
    # impulses along the diagonal from the centre (128) to the corner, every 16 px
    points = list(range(128, size - half - 1, 16))
    img = np.zeros((size, size, 3), np.float32)
    for p in points:
        img[p, p] = 1.0
    diagonal = _widths_along_diagonal(apply_lens(img, params)[..., 1], points, half)
    assert diagonal[-1] > 4 * diagonal[0]  # much wider at the corner
    assert np.all(np.diff(diagonal) > -1e-3)  # never narrower further out
    # elongated along the radius: at the right edge horizontally, at the bottom vertically
    img = np.zeros((size, size, 3), np.float32)
    img[128, 240] = img[240, 128] = 1.0
    out = apply_lens(img, params)[..., 1]
    _, _, vy, vx = _moments(out[128 - half : 128 + half + 1, 240 - half : 240 + half + 1])
    assert vx > 1.5 * vy
    _, _, vy, vx = _moments(out[240 - half : 240 + half + 1, 128 - half : 128 + half + 1])
    assert vy > 1.5 * vx


def test_field_blur_has_no_seams_on_flat_and_smooth_images():
    h, w = 150, 210
    flat = np.full((h, w, 3), 0.37, np.float32)
    params = LensParams(fnumber=4.0, pixel_pitch_um=4.0, aberration_px=2.5, defocus_px=1.0)
    np.testing.assert_allclose(apply_lens(flat, params), 0.37, atol=1e-5)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.repeat((0.2 + 0.5 * xx / w + 0.2 * yy / h)[..., None], 3, axis=2).astype(np.float32)
    out = apply_lens(ramp, params)
    # a linear ramp is unchanged by any symmetric blur away from the (reflected) borders
    np.testing.assert_allclose(out[20:-20, 20:-20], ramp[20:-20, 20:-20], atol=1e-4)


def test_zone_approximation_converges_to_the_continuous_field():
    # Blending 5x5 node PSFs must already be close to a much finer zone grid: the blur
    # varies smoothly between nodes instead of jumping at zone borders.
    rng = np.random.default_rng(3)
    img = rng.random((192, 192, 3)).astype(np.float32)
    params = LensParams(fnumber=2.8, pixel_pitch_um=5.0, aberration_px=3.0)
    fine = apply_lens(img, params, zones=13)
    blur_effect = np.abs(fine - img).mean()  # white noise: the hardest case for the blend
    error = {z: np.abs(apply_lens(img, params, zones=z) - fine).mean() / blur_effect for z in (3, 5)}
    assert error[5] < 0.15
    assert error[5] < 0.6 * error[3]


def test_blending_between_nodes_is_bilinear_in_the_psf():
    # Two nodes per axis (the corners): each pixel's PSF is the bilinear mix of the four.
    size = 65
    psfs = np.zeros((2, 2, 5, 5))
    psfs[0, 0, 2, 2] = 1.0  # identity
    psfs[0, 1, 2, :] = 0.2  # horizontal box
    psfs[1, 0, :, 2] = 0.2  # vertical box
    psfs[1, 1] = 1 / 25  # square box
    img = np.zeros((size, size, 1), np.float32)
    img[32, 32] = 1.0
    out = field_blur(img, psfs)[..., 0]
    # output pixel (y, x) mixes the node PSFs with its own bilinear weights (nodes at 0, 64)
    t = np.arange(30, 35) / 64.0
    wy, wx = np.stack([1 - t, t]), np.stack([1 - t, t])
    expected = np.einsum("iy,jx,ijyx->yx", wy, wx, psfs)
    np.testing.assert_allclose(out[30:35, 30:35], expected, atol=1e-6)
    assert abs(expected[2, 2] - psfs.mean(axis=(0, 1))[2, 2]) < 1e-12  # the centre: plain mean


def test_lateral_ca_moves_red_and_blue_radially():
    h, w = 101, 301
    img = np.zeros((h, w, 3), np.float32)
    img[50, 250] = 1.0  # 100 px right of the centre (150)
    out = lateral_ca(img, 1.01, 0.99)
    for c, expected in ((0, 251.0), (1, 250.0), (2, 249.0)):
        cy, cx, _, _ = _moments(np.clip(out[45:56, 240:261, c], 0, None))
        assert cx + 240 == pytest.approx(expected, abs=0.05)
        assert cy + 45 == pytest.approx(50.0, abs=0.05)


def test_vignetting_profile():
    h, w = 41, 61
    img = np.ones((h, w, 3), np.float32)
    field = Field.of_image(h, w)
    out = vignetting(img, 1.0, field)
    assert out[20, 30, 0] == pytest.approx(1.0)
    rho = float(field.rho(0, 0))
    k = 2**0.5 - 1
    assert out[0, 0, 1] == pytest.approx((1 + k * rho**2) ** -2, rel=1e-5)
    assert out[0, 0, 1] > 0.5  # at the exact frame corner (rho = 1) it would be 0.5
    np.testing.assert_array_equal(vignetting(img, 0.0), img)


def test_crop_field_matches_the_frame():
    frame = Field.of_image(100, 200)
    crop = Field.of_crop(100, 200, top=10, left=150)
    assert crop.rho(0, 0) == pytest.approx(frame.rho(10, 150))
    assert crop.r_corner == frame.r_corner


def test_apply_lens_is_fast_and_needs_rng_only_for_decentring():
    rng = np.random.default_rng(0)
    img = rng.random((512, 512, 3), dtype=np.float32)
    params = LensParams(fnumber=8, pixel_pitch_um=4, aberration_px=2.5, defocus_px=1.0,
                        ca_red_px=1.0, ca_blue_px=-1.0, vignetting_ev=1.0)
    start = time.perf_counter()
    out = apply_lens(img, params)
    assert time.perf_counter() - start < 1.0
    assert out.shape == img.shape and out.dtype == np.float32
    with pytest.raises(ValueError, match="rng"):
        apply_lens(img[:64, :64], LensParams(decenter_px=5.0))
    a = apply_lens(img[:64, :64], LensParams(aberration_px=2, decenter_px=20.0), np.random.default_rng(1))
    b = apply_lens(img[:64, :64], LensParams(aberration_px=2, decenter_px=20.0), np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)


def test_random_lens_params_are_valid_and_seeded():
    a = random_lens_params(np.random.default_rng(5))
    assert a == random_lens_params(np.random.default_rng(5))
    assert 1.4 <= a.fnumber <= 16 and 3 <= a.pixel_pitch_um <= 6
    with pytest.raises(ValueError):
        LensParams(aberration_px=-1)
