"""Sensor simulation: OLPF, pixel integration, Bayer CFA and packing, noise, quantisation."""

from __future__ import annotations

import numpy as np
import pytest

from nnip.simulate.sensor import (
    PATTERNS,
    SENSORS,
    NoiseModel,
    add_noise,
    bayer_flips,
    check_pattern,
    from_rggb,
    mosaic_bayer,
    noise_model_for_iso,
    normalize_raw,
    olpf,
    pack_bayer,
    pixel_integrate,
    quantize,
    random_noise_model,
    to_rggb,
    unpack_bayer,
)


def _channel_planes(h: int = 6, w: int = 8) -> np.ndarray:
    """An image whose R, G, B planes hold 10, 20, 30 everywhere."""
    return np.broadcast_to(np.array([10.0, 20.0, 30.0], np.float32), (h, w, 3)).copy()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_each_cfa_position_samples_its_channel(pattern):
    mosaic = mosaic_bayer(_channel_planes(), pattern)
    value = {"R": 10.0, "G": 20.0, "B": 30.0}
    for i, letter in enumerate(pattern):
        dy, dx = divmod(i, 2)
        assert np.all(mosaic[dy::2, dx::2] == value[letter]), (pattern, letter)
    odd = mosaic_bayer(_channel_planes(5, 7), pattern)  # odd sizes follow the same phase
    np.testing.assert_array_equal(odd, mosaic[:5, :7])


def test_pattern_is_validated_with_the_allowed_values():
    assert check_pattern("grbg") == "GRBG"
    with pytest.raises(ValueError, match="RGGB, BGGR, GRBG, GBRG"):
        mosaic_bayer(_channel_planes(), "RGBG")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pack_unpack_round_trip_and_plane_order(pattern):
    rng = np.random.default_rng(0)
    mosaic = rng.random((8, 12)).astype(np.float32)
    packed = pack_bayer(mosaic, pattern)
    assert packed.shape == (4, 4, 6)
    np.testing.assert_array_equal(unpack_bayer(packed, pattern), mosaic)
    planes = pack_bayer(mosaic_bayer(_channel_planes(8, 12), pattern), pattern)
    assert [float(p.mean()) for p in planes] == [10.0, 20.0, 20.0, 30.0]  # R, G1, G2, B
    # G1 lies on R's rows (and B's columns), G2 on B's rows (and R's columns)
    index = np.arange(8 * 12).reshape(8, 12)
    (row, col) = np.divmod(pack_bayer(index, pattern)[:, 0, 0], 12)
    assert row[1] == row[0] and row[2] == row[3]
    assert col[1] == col[3] and col[2] == col[0]
    with pytest.raises(ValueError, match="even"):
        pack_bayer(mosaic[:7], pattern)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_flips_bring_any_phase_to_rggb(pattern):
    rng = np.random.default_rng(1)
    rgb = rng.random((6, 8, 3)).astype(np.float32)
    mosaic = mosaic_bayer(rgb, pattern)
    np.testing.assert_array_equal(to_rggb(mosaic, pattern), mosaic_bayer(to_rggb(rgb, pattern), "RGGB"))
    np.testing.assert_array_equal(from_rggb(to_rggb(mosaic, pattern), pattern), mosaic)
    assert bayer_flips("RGGB") == (False, False) and bayer_flips("BGGR") == (True, True)


def test_olpf_splits_into_four_spots():
    rng = np.random.default_rng(2)
    img = rng.random((32, 40, 3)).astype(np.float32)
    np.testing.assert_array_equal(olpf(img, 0.0), img)
    # d = 2 px: the spots land on pixels, each a quarter of the energy at (+-1, +-1)
    out = olpf(img, 2.0)
    inner = (img[:-2, :-2] + img[:-2, 2:] + img[2:, :-2] + img[2:, 2:]) / 4
    np.testing.assert_allclose(out[1:-1, 1:-1], inner, atol=1e-5)
    # d = 1 px (matched to the pitch) removes the Nyquist frequency entirely
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (16, 8))
    np.testing.assert_allclose(olpf(stripes, 1.0)[4:-4, 4:-4], 0.5, atol=1e-5)
    assert olpf(img, 0.7).mean() == pytest.approx(img.mean(), rel=5e-3)  # DC gain 1 (borders aside)


def test_pixel_integrate_is_a_block_mean():
    img = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    out = pixel_integrate(img, 2)
    assert out.shape == (2, 3)
    assert out[0, 0] == pytest.approx((0 + 1 + 6 + 7) / 4)
    with pytest.raises(ValueError, match="multiple"):
        pixel_integrate(img[:3], 2)


@pytest.mark.parametrize("method", ["poisson", "gaussian"])
@pytest.mark.parametrize("iso,sensor", [(100, "canon-5d3"), (3200, "sony-a7rm2"), (25600, "nikon-d800")])
def test_noise_variance_matches_the_model_over_a_ramp(method, iso, sensor):
    model = noise_model_for_iso(iso, sensor)
    rng = np.random.default_rng(iso)
    levels = np.linspace(0.0, 1.0, 11)
    clean = np.repeat(levels[:, None], 200_000, axis=1)
    noisy = add_noise(clean, model, rng, method=method)
    assert noisy.dtype == np.float32
    np.testing.assert_allclose(noisy.mean(axis=1), levels, atol=4 * np.sqrt(model.variance(1.0) / 200_000))
    np.testing.assert_allclose(noisy.var(axis=1), model.variance(levels), rtol=0.03)


def test_noise_models_follow_the_photon_transfer_figures():
    for name, sensor in SENSORS.items():
        a100, a400 = noise_model_for_iso(100, name).a, noise_model_for_iso(400, name).a
        assert a400 == pytest.approx(4 * a100), name  # shot noise: gain doubles per stop
        assert 1 / a100 == pytest.approx(sensor.full_well_e), name  # one electron = a
        assert sensor.source
    # the Sony A7R II model reproduces Claff's modelled read noise (DN, 14-bit)
    sony = SENSORS["sony-a7rm2"]
    for iso, dn in ((100, 1.555), (640, 2.399), (3200, 10.474)):
        read_dn = np.sqrt(noise_model_for_iso(iso, "sony-a7rm2").b) * sony.white_span_dn
        assert read_dn == pytest.approx(dn, rel=0.01)
    # Canon: read noise in electrons falls with ISO (ISO-variant sensor)
    canon = SENSORS["canon-5d3"]
    e_per_unit = {iso: 1 / noise_model_for_iso(iso, "canon-5d3").a for iso in (100, 1600)}
    read_e = {iso: np.sqrt(noise_model_for_iso(iso, "canon-5d3").b) * e for iso, e in e_per_unit.items()}
    assert read_e[100] > 20 and read_e[1600] < 4
    assert canon.full_well_e == pytest.approx(67684, rel=1e-6)
    with pytest.raises(ValueError, match="known"):
        noise_model_for_iso(100, "no-such-camera")
    with pytest.raises(ValueError, match="ISO"):
        noise_model_for_iso(10, "canon-5d3")


def test_random_noise_model_is_seeded():
    a = random_noise_model(np.random.default_rng(4))
    assert a == random_noise_model(np.random.default_rng(4))
    assert 100 <= a[1] <= 25600 and a[2] in SENSORS


def test_quantize_offsets_clips_and_inverts():
    x = np.array([-0.1, 0.0, 0.5, 1.0, 1.7])
    raw = quantize(x, 14, 512, 16383)
    assert raw.dtype == np.uint16
    assert raw.tolist() == [0, 512, 8448, 16383, 16383]  # 512 - 1587 clips at 0
    back = normalize_raw(raw, 512, 16383)
    np.testing.assert_allclose(back[1:4], x[1:4], atol=0.5 / 15871)
    assert back[4] == 1.0  # blown highlight
    assert normalize_raw(quantize(np.array([-0.01]), 14, 512, 16383), 512, 16383)[0] < 0  # kept
    with pytest.raises(ValueError, match="4095"):
        quantize(x, 12, 128, 16383)
    with pytest.raises(ValueError, match="bits"):
        quantize(x, 13, 0, 100)


def test_noise_model_quantisation_term():
    model = NoiseModel(1e-4, 1e-7).with_quantization(512, 16383)
    assert model.b == pytest.approx(1e-7 + 1 / (12 * 15871**2))
    np.testing.assert_allclose(model.std(np.array([0.0, -1.0])), np.sqrt(model.b))
