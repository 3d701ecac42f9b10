"""Demosaickers: numpy bilinear, LibRaw's methods, the network path; all four phases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dev_scenes import write_chart_dng
from nnip.core.engine import Engine
from nnip.core.errors import ModelError
from nnip.develop.demosaic import (
    bayer_masks,
    bilinear_bayer,
    libraw_demosaic,
    nn_demosaic,
    pack_rggb,
    to_rggb_phase,
)
from nnip.develop.pipeline import normalise_mosaic
from nnip.raw.frame import BAYER_PATTERNS, read_raw

COLOUR = np.array([0.2, 0.5, 0.35], dtype=np.float32)


def mosaic_of(rgb: np.ndarray, pattern: str) -> np.ndarray:
    masks = bayer_masks(rgb.shape[:2], pattern)
    return np.sum(np.moveaxis(rgb, -1, 0) * masks, axis=0).astype(np.float32)


def smooth_image(height: int = 40, width: int = 52) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([0.3 + 0.2 * np.sin(x / 9), 0.5 + 0.2 * np.cos(y / 7),
                     0.4 + 0.1 * np.sin((x + y) / 11)], axis=-1).astype(np.float32)


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_masks_cover_each_pixel_once(pattern: str) -> None:
    masks = bayer_masks((5, 7), pattern)
    assert np.all(masks.sum(axis=0) == 1)
    y, x = np.mgrid[0:5, 0:7]
    green_parity = 0 if pattern[0] == "G" else 1  # greens lie on one checkerboard colour
    np.testing.assert_array_equal(masks[1], (y + x) % 2 == green_parity)
    assert masks["RGB".index(pattern[0]), 0, 0]


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bilinear_is_exact_on_flat_colour_and_keeps_measured_sites(pattern: str) -> None:
    flat = np.broadcast_to(COLOUR, (9, 11, 3))
    np.testing.assert_allclose(bilinear_bayer(mosaic_of(flat, pattern), pattern), flat, atol=1e-6)
    image = smooth_image()
    mosaic = mosaic_of(image, pattern)
    out = bilinear_bayer(mosaic, pattern)
    masks = bayer_masks(mosaic.shape, pattern)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c][masks[c]], mosaic[masks[c]])
    assert np.abs(out - image)[2:-2, 2:-2].max() < 0.02


def test_bilinear_wrong_pattern_is_visibly_wrong() -> None:
    flat = np.broadcast_to(COLOUR, (8, 8, 3))
    out = bilinear_bayer(mosaic_of(flat, "RGGB"), "BGGR")
    assert np.abs(out - flat).max() > 0.1


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
@pytest.mark.parametrize("shape", [(6, 8), (7, 9), (5, 6)])
def test_to_rggb_phase(pattern: str, shape) -> None:
    image = smooth_image(*shape)
    padded, (top, left, height, width) = to_rggb_phase(mosaic_of(image, pattern), pattern)
    assert padded.shape[0] % 2 == 0 and padded.shape[1] % 2 == 0
    assert (height, width) == shape
    np.testing.assert_array_equal(padded[top:top + height, left:left + width],
                                  mosaic_of(image, pattern))
    # Every site of the padded mosaic holds its RGGB colour (the padding reflects sites
    # of the same colour).
    full = np.pad(image, ((top, padded.shape[0] - height - top),
                          (left, padded.shape[1] - width - left), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(padded, mosaic_of(full, "RGGB"))


def test_pack_rggb_order() -> None:
    mosaic = np.arange(16, dtype=np.float32).reshape(4, 4)
    packed = pack_rggb(mosaic)
    assert packed.shape == (4, 2, 2)
    assert [packed[i, 0, 0] for i in range(4)] == [0, 1, 4, 5]  # R, G1, G2, B


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_network_demosaic_all_phases(pattern: str, demosaic_registry) -> None:
    spec = demosaic_registry.find("demosaic")
    engine = Engine("cpu", threads=1, registry=demosaic_registry)
    flat = np.broadcast_to(COLOUR, (11, 13, 3))  # odd sizes: padding on every side
    balance = (2.0, 1.0, 1.5)
    out = nn_demosaic(mosaic_of(flat, pattern), pattern, balance, engine, spec, tile=16)
    assert out.shape == (11, 13, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, flat, atol=1e-6)


def test_network_demosaic_clips_balanced_input_to_model_range(demosaic_registry) -> None:
    spec = demosaic_registry.find("demosaic")
    engine = Engine("cpu", threads=1, registry=demosaic_registry)
    flat = np.broadcast_to(np.array([0.8, 0.5, 0.2], np.float32), (8, 8, 3))
    out = nn_demosaic(mosaic_of(flat, "RGGB"), "RGGB", (2.0, 1.0, 1.0), engine, spec)
    # 0.8 * 2 = 1.6 is clipped to 1 for the model, so red comes back at 1 / 2.
    np.testing.assert_allclose(out[..., 0], 0.5, atol=1e-6)
    np.testing.assert_allclose(out[..., 1:], flat[..., 1:], atol=1e-6)


def test_network_with_wrong_layout_is_refused(tmp_path: Path) -> None:
    from dev_scenes import nearest_demosaic_net
    from onnx_builders import install

    registry = install(tmp_path / "m", {"demosaic-bad": nearest_demosaic_net()}, task="demosaic")
    engine = Engine("cpu", threads=1, registry=registry)
    with pytest.raises(ModelError, match="bayer_packed"):
        nn_demosaic(np.zeros((8, 8), np.float32), "RGGB", (1, 1, 1), engine,
                    registry.find("demosaic"))


@pytest.mark.parametrize("method", ["ahd", "dcb", "vng", "ppg", "bilinear"])
@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_libraw_methods_undo_their_white_balance(tmp_path: Path, method: str, pattern: str) -> None:
    flat = np.broadcast_to(np.array([0.3, 0.6, 0.45]), (48, 64, 3))
    frame = read_raw(write_chart_dng(tmp_path / "flat.dng", pattern, scene=flat))
    mosaic = normalise_mosaic(frame)
    out = libraw_demosaic(frame.path, mosaic, method, (2.25, 1.0, 1.42))
    assert out.shape == (48, 64, 3)
    reference = bilinear_bayer(mosaic, pattern)
    # Flat field: every method must agree with bilinear inside the border, whatever
    # multipliers LibRaw interpolated with (they are divided out again).
    np.testing.assert_allclose(out[4:-4, 4:-4], reference[4:-4, 4:-4], atol=2e-4)


def test_libraw_sees_the_pipelines_mosaic_not_the_file(tmp_path: Path) -> None:
    frame = read_raw(write_chart_dng(tmp_path / "chart.dng", "RGGB"))
    mosaic = np.full(frame.mosaic.shape, 0.25, dtype=np.float32)  # what a denoiser might give
    out = libraw_demosaic(frame.path, mosaic, "ahd", (2.0, 1.0, 1.5))
    np.testing.assert_allclose(out[2:-2, 2:-2], 0.25, atol=1e-4)
