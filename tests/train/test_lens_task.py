"""The lens training task: pairs, network, budget; a tiny run exports a model the stage runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from nnip.core.engine import Engine  # noqa: E402
from nnip.core.models import Registry  # noqa: E402
from nnip.develop.lens import CLIP_LEVEL, check_lens_model, deblur  # noqa: E402
from nnip.develop.optics import BLIND_AIRY_PX, OpticsMap, airy_radius_px  # noqa: E402
from nnip.simulate.optics import Field, LensParams  # noqa: E402
from nnip.train.cli import main  # noqa: E402
from nnip.train.export import onnx_gflop_per_mp, to_onnx  # noqa: E402
from nnip.train.lens_task import (  # noqa: E402
    LensBatches,
    LensNet,
    encoded_l1,
    malvar_demosaic,
    random_field,
    simulate_lens_pair,
)
from nnip.train.tasks import get_task, load_config  # noqa: E402


def _edges(size: int = 96) -> np.ndarray:
    """Black and white squares of 8 px: hard edges everywhere (sRGB)."""
    yy, xx = np.mgrid[0:size, 0:size]
    board = ((yy // 8 + xx // 8) % 2).astype(np.float32) * 0.8 + 0.1
    return np.repeat(board[..., None], 3, axis=2)


def _detail(chw: np.ndarray) -> float:
    return float(np.abs(np.diff(chw, axis=2)).mean())


def test_pair_is_blurred_input_sharp_target_and_true_optics() -> None:
    rng = np.random.default_rng(0)
    lens = LensParams(fnumber=22.0, pixel_pitch_um=3.0, aberration_px=1.0)
    field = Field(-400.0, -600.0, 1000.0)  # the crop lies towards a corner
    image, optics, target = simulate_lens_pair(_edges(), rng, lens=lens, field=field, iso=100,
                                               context=16, exposure=1.0)
    assert image.shape == target.shape == (3, 64, 64) and optics.shape == (4, 64, 64)
    assert target.min() >= 0 and target.max() <= 1
    assert _detail(image) < 0.8 * _detail(target)  # f/22 on 3 um pixels blurs the edges
    assert np.all(optics[0] == np.float32(airy_radius_px(22.0, 3.0)))
    # the crop's own corner (row 0, col 0) is 16 px of context further from the centre
    assert optics[1, 0, 0] == pytest.approx(np.hypot(416.0, 616.0) / 1000.0, rel=1e-5)
    _, blind, _ = simulate_lens_pair(_edges(), rng, lens=lens, field=field, iso=100, blind=True)
    assert np.all(blind[0] == BLIND_AIRY_PX)


def test_malvar_demosaic_is_exact_on_flat_colour() -> None:
    mosaic = np.tile(np.array([[0.4, 0.5], [0.5, 0.2]], dtype=np.float32), (8, 8))
    rgb = malvar_demosaic(mosaic, (2.0, 1.0, 1.5))
    np.testing.assert_allclose(rgb[4:-4, 4:-4], np.broadcast_to([0.4, 0.5, 0.2], (8, 8, 3)),
                               atol=1e-6)


def test_random_field_spans_the_frame() -> None:
    rng = np.random.default_rng(1)
    rhos = []
    for _ in range(200):
        field = random_field(rng, 64, (400.0, 4000.0))
        rhos.append(float(field.rho(31.5, 31.5)))
    assert min(rhos) < 0.2 and max(rhos) > 0.9 and max(rhos) <= 1.0 + 1e-9


def test_network_starts_as_identity_folds_exactly_and_passes_clipped() -> None:
    torch.manual_seed(0)
    net = LensNet((8, 12), (1, 1))
    image = torch.rand(2, 3, 37, 53) * 0.9  # odd sizes: inner levels are cropped
    image[:, 1, :5, :5] = 1.0  # clipped green
    optics = torch.rand(2, 4, 37, 53)
    assert torch.equal(net(image, optics), image)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = net(image, optics)
    assert not torch.equal(out, image)
    assert torch.equal(out[:, 1, :5, :5], image[:, 1, :5, :5])
    torch.testing.assert_close(net.plain()(image, optics), out, atol=1e-5, rtol=1e-5)


def test_encoded_l1_border() -> None:
    prediction, target = torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6)
    prediction[..., 0, :] = 1.0  # only the first row is wrong
    assert encoded_l1()(prediction, target).item() == pytest.approx(1 / 6)
    assert encoded_l1(border=1)(prediction, target).item() == 0.0


def test_batches_and_cost_budget() -> None:
    task = get_task("lens")
    config = load_config(task, "fast")
    data = LensBatches(None, {**config, "batch": 2, "patch": 32, "context": 8}, seed=3)
    (image, optics), target = next(iter(data))
    assert image.shape == target.shape == (2, 3, 32, 32) and optics.shape == (2, 4, 32, 32)
    spec = task.export_spec(config)
    assert [t.layout for t in spec.inputs] == ["rgb", "optics"] and spec.align == 4
    gflop = onnx_gflop_per_mp(to_onnx(task.build_model(config).plain(), spec))
    assert gflop <= 100  # so denoise + demosaic + lens on 24 MP stays within 60 s


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(4):
        tiles = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
        Image.fromarray(np.kron(tiles, np.ones((14, 14, 1), np.uint8))).save(folder / f"{index}.png")
    return folder


def test_train_export_and_run_through_the_stage(tmp_path, images, monkeypatch) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "manifest.json").write_text('{"format_version": 1, "models": []}')
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "base": "fast", "widths": [8, 8], "blocks": [1, 1], "patch": 24, "context": 8,
        "batch": 2, "val_crop": 32, "holdout_every": 2, "warmup_steps": 1,
        "checkpoint_minutes": 100, "loss_border": 2,
    }))
    out = tmp_path / "run"
    assert main(["lens", "--config", str(config), "--data", str(images), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--threads", "1", "--minutes", "2",
                 "--max-steps", "3", "--export", "lens-tiny"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3 and np.isfinite(records[-1]["val_psnr_db"])

    registry = Registry(models_dir)
    spec = registry.find("lens", "tiny")
    assert check_lens_model(spec) == (0, 1) and spec.align == 4 and spec.margin > 0
    engine = Engine("cpu", threads=1, registry=registry)
    rgb = np.random.default_rng(1).uniform(0.0, 0.9, size=(50, 70, 3)).astype(np.float32)
    rgb[10:14, 10:14] = 1.0
    optics = OpticsMap(height=50, width=70, fnumber=11.0, pixel_pitch_um=4.0)
    corrected = deblur(rgb, optics, engine, spec, tile=48)
    assert corrected.shape == rgb.shape and np.isfinite(corrected).all()
    assert np.all(corrected[rgb >= CLIP_LEVEL] == 1.0)
    whole = deblur(rgb, optics, engine, spec, tile=4096)
    np.testing.assert_allclose(corrected, whole, atol=1e-5)  # tiles join seamlessly
