"""The demosaic task: network, data, loss, a few training steps, and the exported contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from nnip.core.engine import Engine  # noqa: E402
from nnip.core.models import Registry  # noqa: E402
from nnip.develop.demosaic import nn_demosaic  # noqa: E402
from nnip.simulate.sensor import mosaic_bayer, pack_bayer, unpack_bayer  # noqa: E402
from nnip.train.cli import main  # noqa: E402
from nnip.train.data import PatchSampler, scaled_teachers  # noqa: E402
from nnip.train.export import onnx_gflop_per_mp, to_onnx  # noqa: E402
from nnip.train.raw_tasks import (  # noqa: E402
    DEMOSAIC_GFLOP_BUDGET,
    DemosaicBatches,
    DemosaicNet,
    colour_augment,
    malvar_demosaic_packed,
    malvar_error,
    malvar_packed_kernel,
    mosaic_packed,
    opponent_l1,
    psnr_rgb,
)
from nnip.train.tasks import get_task, load_config  # noqa: E402


def _run(model: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    """Model output (3, H, W) for the RGGB mosaic of an (H, W, 3) image."""
    with torch.no_grad():
        return model(torch.from_numpy(mosaic_packed(rgb))[None])[0].numpy()


def _smooth_colour(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.3 * np.sin(3 * xx + 1), 0.4 + 0.3 * yy * xx, 0.6 - 0.3 * yy], axis=-1)
    return (img + 0.05 * rng.random((size, size, 3))).astype(np.float32)


def test_mosaic_packed_is_the_rggb_packing():
    rng = np.random.default_rng(0)
    rgb = rng.random((6, 8, 3)).astype(np.float32)
    packed = mosaic_packed(rgb)
    assert packed.shape == (4, 3, 4) and packed.dtype == np.float32
    np.testing.assert_array_equal(packed[0], rgb[0::2, 0::2, 0])  # R
    np.testing.assert_array_equal(packed[1], rgb[0::2, 1::2, 1])  # G on red rows
    np.testing.assert_array_equal(packed[2], rgb[1::2, 0::2, 1])  # G on blue rows
    np.testing.assert_array_equal(packed[3], rgb[1::2, 1::2, 2])  # B
    np.testing.assert_array_equal(unpack_bayer(packed, "RGGB"), mosaic_bayer(rgb, "RGGB"))


def test_untrained_network_is_exact_on_a_grey_ramp():
    yy, xx = np.mgrid[0:40, 0:48]
    grey = (0.2 + 0.006 * xx + 0.004 * yy).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    out = _run(DemosaicNet(channels=8, blocks=2), rgb)
    np.testing.assert_allclose(out[:, 3:-3, 3:-3], rgb.transpose(2, 0, 1)[:, 3:-3, 3:-3], atol=1e-6)


def test_malvar_kernels_sum_to_one_and_keep_measured_values():
    weight = malvar_packed_kernel()
    assert weight.shape == (12, 4, 3, 3)
    np.testing.assert_allclose(weight.sum(axis=(1, 2, 3)), 1.0, atol=1e-6)
    # R at R sites (output 0), G at the two G sites (5, 6), B at B sites (11): identity.
    for out, plane in ((0, 0), (5, 1), (6, 2), (11, 3)):
        expected = np.zeros((4, 3, 3), dtype=np.float32)
        expected[plane, 1, 1] = 1.0
        np.testing.assert_array_equal(weight[out], expected)


def test_untrained_network_is_malvar_2004():
    colour_demosaicing = pytest.importorskip("colour_demosaicing")
    rgb = np.random.default_rng(1).random((32, 36, 3)).astype(np.float32)
    reference = colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004(
        mosaic_bayer(rgb, "RGGB").astype(np.float64), "RGGB")
    out = _run(DemosaicNet(channels=8, blocks=2), rgb).transpose(1, 2, 0)
    np.testing.assert_allclose(out[2:-2, 2:-2], reference[2:-2, 2:-2], atol=1e-5)


def test_numpy_malvar_is_the_untrained_network():
    rgb = np.random.default_rng(4).random((20, 28, 3)).astype(np.float32)
    ours = malvar_demosaic_packed(mosaic_packed(rgb))
    net = _run(DemosaicNet(channels=8, blocks=2), rgb)  # zero padding: compare the inside
    assert ours.shape == (3, 20, 28) and ours.dtype == np.float32
    np.testing.assert_allclose(ours[:, 2:-2, 2:-2], net[:, 2:-2, 2:-2], atol=1e-5)


def _stripes(size: int, period: float) -> np.ndarray:
    xx = np.mgrid[0:size, 0:size][1]
    stripe = 0.5 + 0.4 * np.sin(2 * np.pi * xx / period)
    return np.stack([stripe, 1 - stripe, 0.5 * np.ones_like(stripe)], axis=-1).astype(np.float32)


def test_malvar_error_ranks_fine_colour_stripes_over_smooth_colour():
    smooth = _smooth_colour(np.random.default_rng(5), 48)
    assert malvar_error(smooth) < 1e-3
    assert malvar_error(_stripes(48, 2.5)) > 100 * malvar_error(smooth)


def test_hard_mining_keeps_the_crops_malvar_gets_wrong():
    rng = np.random.default_rng(6)
    teachers = [(_smooth_colour(rng, 64) * 255).astype(np.uint8) for _ in range(3)]
    teachers.append((_stripes(64, 2.5) * 255).astype(np.uint8))
    config = load_config(get_task("demosaic"), "fast")
    config.update(batch=8, patch=24, pattern_fraction=0.0, colour_fraction=0.0)
    sampler = PatchSampler(teachers, flat_threshold=0.0)

    def mean_error(hard_fraction: float) -> float:
        config.update(hard_fraction=hard_fraction, hard_candidates=6)
        crops = [DemosaicBatches(sampler, config, seed=0).crop(np.random.default_rng(i))
                 for i in range(40)]
        return float(np.mean([malvar_error(c) for c in crops]))

    # A quarter of plain crops are stripes; nearly every mined one is (1 - 0.75^6 = 82 %).
    assert mean_error(1.0) > 2.5 * mean_error(0.0)


def test_teachers_at_two_scales_get_their_shares_of_the_crops(tmp_path):
    rng = np.random.default_rng(7)
    paths = []
    for i, side in enumerate((400, 240, 136)):
        path = tmp_path / f"t{i}.png"
        Image.fromarray((_smooth_colour(rng, side) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    config = {"patch": 64, "teacher_factors": [2, 4], "teacher_shares": [0.25, 0.75]}
    teachers, weights = scaled_teachers(config, paths, tmp_path / "cache", 64)[1:]
    # Factor 2: all three (200, 120, 68 >= 64); factor 4: 100 only (60 and 34 drop out).
    assert [t.shape[0] for t in teachers] == [200, 120, 68, 100]
    share = np.array(weights) * [t.shape[0] * t.shape[1] for t in teachers]
    np.testing.assert_allclose([share[:3].sum(), share[3:].sum()], [0.25, 0.75])
    assert scaled_teachers({}, paths, tmp_path / "cache", 64)[2] == [1 / 59024] * 3


def test_plain_network_computes_the_training_network():
    torch.manual_seed(0)
    net = DemosaicNet(channels=8, blocks=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(2, 4, 13, 17)
    with torch.no_grad():
        expected, got = net(x), net.plain()(x)
    assert got.shape == (2, 3, 26, 34)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_colour_augment_keeps_grey_and_range_and_moves_colours():
    rng = np.random.default_rng(2)
    grey = np.full((8, 8, 3), 0.37, dtype=np.float32)
    np.testing.assert_allclose(colour_augment(grey, rng), grey, atol=1e-5)
    img = _smooth_colour(rng, 32)
    changed = [colour_augment(img, rng) for _ in range(10)]
    assert all(c.shape == img.shape and c.dtype == np.float32 for c in changed)
    assert all(c.min() >= 0.0 and c.max() <= 1.0 for c in changed)
    assert np.mean([np.abs(c - img).mean() for c in changed]) > 0.02
    spread = lambda a: float(np.mean(a.max(axis=2) - a.min(axis=2)))  # noqa: E731
    assert np.mean([spread(c) for c in changed]) > spread(img)  # saturation is boosted


def test_batches_are_mosaics_of_their_targets():
    rng = np.random.default_rng(3)
    teachers = [(_smooth_colour(rng, 64) * 255).astype(np.uint8) for _ in range(3)]
    config = load_config(get_task("demosaic"), "fast")
    config.update(batch=6, patch=24, pattern_fraction=0.5)
    batches = DemosaicBatches(PatchSampler(teachers, flat_threshold=0.0), config, seed=0)
    mosaic, target = next(iter(batches))
    assert mosaic.shape == (6, 4, 12, 12) and target.shape == (6, 3, 24, 24)
    assert mosaic.dtype == torch.float32 and target.dtype == torch.float32
    assert float(target.min()) >= 0.0 and float(target.max()) <= 1.0
    for m, t in zip(mosaic.numpy(), target.numpy()):
        expected = pack_bayer(mosaic_bayer(t.transpose(1, 2, 0), "RGGB"), "RGGB")
        np.testing.assert_array_equal(m, expected)


def test_opponent_l1_weights_luma_over_chroma():
    loss = opponent_l1(luma_weight=2.0)
    target = torch.full((1, 3, 4, 4), 0.5)
    assert float(loss(target, target)) == 0.0
    grey_error = float(loss(target + 0.1, target))  # luma only
    colour_error = target.clone()
    colour_error[:, 0] += 0.1  # the same RGB L1 on one channel, mostly chroma
    assert grey_error == pytest.approx(0.1 * 2.0 / 4.0)
    shifted = float(loss(colour_error, target))
    y = 0.299 * 0.1
    assert shifted == pytest.approx((2.0 * y + y + (0.1 - y)) / 4.0)
    framed = torch.nn.functional.pad(target, (1, 1, 1, 1), value=9.0)
    zero_framed = torch.nn.functional.pad(target, (1, 1, 1, 1))
    assert float(opponent_l1(2.0, border=1)(framed, zero_framed)) == 0.0


def test_psnr_rgb_leaves_the_border_out_and_clips():
    target = np.full((3, 20, 20), 0.5)
    prediction = target + 0.1
    prediction[:, :2] = 5.0
    assert psnr_rgb(prediction, target, border=2) == pytest.approx(20.0)


@pytest.mark.parametrize("variant", ["fast", "quality", "wide"])
def test_configs_fit_the_cost_budget(variant):
    task = get_task("demosaic")
    config = load_config(task, variant)
    spec = task.export_spec(config)
    raw = to_onnx(task.build_model(config).plain(), spec)
    # The graph runs on the packed grid: 4 mosaic pixels per input pixel.
    assert 40.0 <= onnx_gflop_per_mp(raw) / 4 <= DEMOSAIC_GFLOP_BUDGET


def _write_photos(folder, count: int = 5) -> None:
    rng = np.random.default_rng(4)
    folder.mkdir()
    for index in range(count):
        img = _smooth_colour(rng, 96)
        img[10:40, 20:60] = rng.random(3)  # colour edges: detail for the sampler
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"p{index}.png")


def train_tiny_demosaic(tmp_path, monkeypatch, blocks: int, steps: int, name: str = "demosaic"):
    """A tiny demosaic run on synthetic photos, exported as ``name`` into a fresh
    models directory (NNIP_MODELS_DIR); returns (models dir, photos, run dir)."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "manifest.json").write_text('{"format_version": 1, "models": []}')
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    photos = tmp_path / "photos"
    _write_photos(photos)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "base": "fast", "channels": 8, "blocks": blocks, "patch": 32, "batch": 4, "val_crop": 48,
        "holdout_every": 3, "warmup_steps": 2, "checkpoint_minutes": 100, "lr": 1e-4,
    }))
    out = tmp_path / "run"
    assert main(["demosaic", "--config", str(config), "--data", str(photos), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--threads", "1", "--minutes", "2",
                 "--max-steps", str(steps), "--export", name]) == 0
    return models_dir, photos, out


def test_train_export_and_run_through_the_develop_stage(tmp_path, monkeypatch):
    models_dir, _photos, out = train_tiny_demosaic(tmp_path, monkeypatch, blocks=1, steps=4)
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 4

    registry = Registry(models_dir)
    spec = registry.find("demosaic")
    assert (spec.name, spec.task, spec.scale, spec.align) == ("demosaic", "demosaic", 2, 1)
    (inp,), (outp,) = spec.inputs, spec.outputs
    assert (inp.name, inp.channels, inp.layout, inp.transfer, inp.range) == (
        "mosaic", 4, "bayer_packed", "srgb", (0.0, 1.0))
    assert (outp.name, outp.channels, outp.layout, outp.transfer) == ("rgb", 3, "rgb", "srgb")
    assert spec.margin >= 3  # three 3x3 convs on the packed grid
    assert spec.metrics["onnx_parity_max_abs"] <= 1e-4

    engine = Engine("cpu", threads=1, registry=registry)
    packed = np.full((4, 10, 12), 0.5, dtype=np.float32)
    rgb = engine.run(spec, [packed])
    assert rgb.shape == (3, 20, 24) and np.all(np.isfinite(rgb))
    # Malvar-initialised and 4 small steps: a flat grey stays close to grey.
    np.testing.assert_allclose(rgb, 0.5, atol=0.05)
    # Every phase and odd sides through the develop stage.
    for pattern in ("RGGB", "GRBG", "GBRG", "BGGR"):
        mosaic = np.full((15, 21), 0.2, np.float32)
        developed = nn_demosaic(mosaic, pattern, (2.0, 1.0, 1.5), engine, spec)
        assert developed.shape == (15, 21, 3)
