"""The denoise training task: pairs, network, loss; a tiny run exports a model the engine runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from nnip.core.engine import Engine  # noqa: E402
from nnip.core.models import Registry  # noqa: E402
from nnip.develop.denoise import denoise_mosaic, sigma_map  # noqa: E402
from nnip.develop.noise import NoiseParams  # noqa: E402
from nnip.train.cli import main  # noqa: E402
from nnip.train.denoise_task import (  # noqa: E402
    DenoiseBatches,
    DenoiseNet,
    noise_l1,
    psnr_mosaic,
    simulate_pair,
)
from nnip.train.export import onnx_gflop_per_mp, to_onnx  # noqa: E402
from nnip.train.tasks import get_task, load_config  # noqa: E402


def test_simulated_pair_is_calibrated() -> None:
    rng = np.random.default_rng(0)
    grey = np.full((128, 128, 3), 0.5, dtype=np.float32)
    mosaic, sigma, clean = simulate_pair(grey, rng, iso=6400, shadow_fraction=0.0)
    assert mosaic.shape == sigma.shape == clean.shape == (4, 64, 64)
    assert clean.min() >= 0 and clean.max() <= 1
    # The map states the noise the simulation put in (flat scene: one level per channel).
    ratio = (mosaic - clean).std(axis=(1, 2)) / sigma.mean(axis=(1, 2))
    np.testing.assert_allclose(ratio, 1.0, atol=0.12)


def test_batches_carry_clean_and_sigma_in_the_target() -> None:
    config = load_config(get_task("denoise"), "fast")
    data = DenoiseBatches(None, {**config, "batch": 3, "patch": 16}, seed=1)
    (mosaic, sigma), target = next(iter(data))
    assert mosaic.shape == sigma.shape == (3, 4, 16, 16) and target.shape == (3, 8, 16, 16)
    assert torch.equal(target[:, 4:], sigma) and bool((sigma > 0).all())
    assert target[:, :4].min() >= 0 and target[:, :4].max() <= 1  # the clean mosaic


def test_network_starts_as_identity_and_folds_exactly() -> None:
    torch.manual_seed(0)
    net = DenoiseNet((8, 12, 16), (1, 1, 1))
    x = torch.rand(2, 4, 37, 53)  # odd sizes: the U-Net crops its upsampled levels
    s = torch.rand(2, 4, 37, 53) * 0.05 + 0.01
    assert torch.equal(net(x, s), x)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    y = net(x, s)
    assert not torch.equal(y, x)
    torch.testing.assert_close(net.plain()(x, s), y, atol=1e-5, rtol=1e-5)


def test_noise_l1_is_in_noise_units() -> None:
    prediction = torch.zeros(1, 4, 6, 6)
    clean = torch.full((1, 4, 6, 6), 0.02)
    sigma = torch.full((1, 4, 6, 6), 0.01)
    assert noise_l1()(prediction, torch.cat([clean, sigma], 1)).item() == pytest.approx(2.0)
    sigma[..., 1:-1, 1:-1] = 0.02  # only the border is off by 2 sigma
    assert noise_l1(border=1)(prediction, torch.cat([clean, sigma], 1)).item() == pytest.approx(1.0)


def test_psnr_mosaic() -> None:
    clean = np.full((4, 16, 16), 0.18, dtype=np.float32)
    assert psnr_mosaic(clean, clean) == pytest.approx(120.0)
    assert psnr_mosaic(clean + 0.01, np.concatenate([clean, clean])) < 60


def test_fast_variant_is_within_the_cost_budget() -> None:
    task = get_task("denoise")
    config = load_config(task, "fast")
    spec = task.export_spec(config)
    model = task.build_model(config).plain()
    gflop = onnx_gflop_per_mp(to_onnx(model, spec))
    assert gflop <= 600  # per packed megapixel = 150 per mosaic megapixel
    assert spec.align == 4 and [t.layout for t in spec.inputs] == ["bayer_packed", "noise_sigma"]


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(5):
        tiles = (rng.random((12, 14, 3)) * 255).astype(np.uint8)
        photo = np.kron(tiles, np.ones((12, 12, 1), np.uint8))
        Image.fromarray(photo).save(folder / f"{index}.png")
    return folder


def test_train_export_and_run_through_the_engine(tmp_path, images, monkeypatch) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "manifest.json").write_text('{"format_version": 1, "models": []}')
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "base": "fast", "widths": [8, 8, 12], "blocks": [1, 1, 1], "patch": 16, "batch": 4,
        "val_crop": 64, "holdout_every": 3, "warmup_steps": 1, "checkpoint_minutes": 100,
        "loss_border": 2,
    }))
    out = tmp_path / "run"
    assert main(["denoise", "--config", str(config), "--data", str(images), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--threads", "1", "--minutes", "2",
                 "--max-steps", "4", "--export", "denoise-tiny"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 4 and np.isfinite(records[-1]["val_psnr_db"])

    registry = Registry(models_dir)
    spec = registry.find("denoise", "tiny")
    registry.load(spec)  # sha256
    assert spec.task == "denoise" and spec.align == 4 and spec.scale == 1 and spec.margin > 0
    assert [(t.name, t.layout, t.channels) for t in spec.inputs] == [
        ("mosaic", "bayer_packed", 4), ("noise_sigma", "noise_sigma", 4)]
    assert spec.outputs[0].layout == "bayer_packed" and spec.outputs[0].channels == 4

    engine = Engine("cpu", threads=1, registry=registry)
    rng = np.random.default_rng(2)
    mosaic = (0.2 + rng.normal(0, 0.02, (90, 70))).astype(np.float32)
    params = NoiseParams(1e-3, 1e-4, "estimated")
    out_mosaic = denoise_mosaic(mosaic, "GRBG", params, engine, spec)
    assert out_mosaic.shape == mosaic.shape and np.isfinite(out_mosaic).all()
    # Tiled inference (align 4 on the packed grid) equals the whole-image run.
    packed = mosaic[:88, :68].reshape(44, 2, 34, 2).transpose(1, 3, 0, 2).reshape(4, 44, 34)
    inputs = [packed, sigma_map(packed, params)]
    whole = engine.run_whole(spec, inputs)
    np.testing.assert_allclose(engine.run(spec, inputs, tile=spec.margin * 2 + 8), whole,
                               atol=1e-5)
