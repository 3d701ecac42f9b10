"""End to end on generated images: train a tiny upscaler a few steps, resume, export, load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from nnip.core.models import Registry  # noqa: E402
from nnip.train.cli import main  # noqa: E402


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour gradients plus random edges and stripes: detail for the sampler."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([yy, xx, 1 - yy * xx], axis=-1)
    for _ in range(8):
        y, x = rng.integers(0, height), rng.integers(0, width)
        img[y : y + rng.integers(4, 40), x : x + rng.integers(4, 40)] = rng.random(3)
    freq = rng.uniform(0.2, 0.8)
    img += 0.15 * np.sin(freq * (xx + yy) * width)[..., None]
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(_photo(rng, 160, 192)).save(folder / f"img{index}.png")
    return folder


def test_train_resume_export_and_load(tmp_path, images, monkeypatch):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "manifest.json").write_text('{"format_version": 1, "models": []}')
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    config = _tiny_config(tmp_path)
    out = tmp_path / "run"
    common = ["upscale", "--config", str(config), "--data", str(images), "--out", str(out),
              "--cache", str(tmp_path / "cache"), "--threads", "1", "--minutes", "2"]

    assert main(common + ["--max-steps", "6"]) == 0
    first = torch.load(out / "last.pt", weights_only=False)
    assert first["step"] == 6 and first["config"]["channels"] == 8
    assert (out / "best.pt").is_file()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 6  # teachers cached once

    assert main(common + ["--resume", "--max-steps", "9", "--export", "upscale-tiny"]) == 0
    resumed = torch.load(out / "last.pt", weights_only=False)
    assert resumed["step"] == 9
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [6, 9]
    assert all(np.isfinite(r["val_psnr_db"]) and r["val_psnr_db"] > 10 for r in records)

    registry = Registry(models_dir)
    spec = registry.find("upscale", "tiny")
    registry.load(spec)  # sha256 checked
    assert spec.scale == 2 and spec.margin == 3 and spec.inputs[0].transfer == "srgb"
    assert "--resume" in spec.provenance["command"] and str(images) in spec.provenance["data"][0]
    assert spec.metrics["val_psnr_db"] == pytest.approx(max(r["val_psnr_db"] for r in records), abs=1e-3)

    import onnxruntime as ort

    session = ort.InferenceSession(str(spec.path), providers=["CPUExecutionProvider"])
    lr = np.random.default_rng(1).random((1, 3, 20, 24), dtype=np.float32)
    assert session.run(None, {"image": lr})[0].shape == (1, 3, 40, 48)


def _tiny_config(tmp_path, **extra):
    """A config file for a tiny upscaler (8 channels, 1 block) on 16 px patches."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({
        "base": "fast", "channels": 8, "blocks": 1, "patch": 16, "batch": 4,
        "val_crop": 48, "holdout_every": 3, "warmup_steps": 2, "checkpoint_minutes": 100, **extra,
    }))
    return config


def _common(tmp_path, images):
    """The arguments every run of these tests shares (no --config, no --out)."""
    return ["upscale", "--data", str(images), "--cache", str(tmp_path / "cache"),
            "--threads", "1", "--minutes", "2"]


def test_init_starts_a_new_run_from_another_runs_weights(tmp_path, images):
    config = _tiny_config(tmp_path)
    common = _common(tmp_path, images)
    source = tmp_path / "source"
    assert main(common + ["--config", str(config), "--out", str(source), "--max-steps", "5"]) == 0
    parent = torch.load(source / "last.pt", weights_only=False)

    # The given config ("fast", 32+ channels) loses to the init's network; --set still wins.
    tuned = tmp_path / "tuned"
    args = common + ["--config", "fast", "--init", str(source / "last.pt"), "--resume",
                     "--set", "lr=1e-5", "--out", str(tuned)]
    assert main(args + ["--max-steps", "0"]) == 0
    child = torch.load(tuned / "last.pt", weights_only=False)
    assert child["step"] == 0 and child["config"]["channels"] == 8 and child["config"]["lr"] == 1e-5
    assert child["provenance"]["init"] == str(source / "last.pt")
    for name, weight in parent["model"].items():
        assert torch.equal(weight, child["model"][name]), name

    # A run that has its own last.pt resumes it; --init is then ignored.
    assert main(args + ["--max-steps", "3"]) == 0
    assert torch.load(tuned / "last.pt", weights_only=False)["step"] == 3


def test_runs_saved_before_the_slopes_knob_keep_per_channel_slopes(tmp_path, images):
    config = _tiny_config(tmp_path, slopes="channel")
    common = _common(tmp_path, images)
    old = tmp_path / "old"
    assert main(common + ["--config", str(config), "--out", str(old), "--max-steps", "2"]) == 0
    saved = torch.load(old / "last.pt", weights_only=False)
    del saved["config"]["slopes"]  # as saved before the knob existed
    torch.save(saved, old / "last.pt")

    # Resumed under today's default ("layer"), the run keeps the network it was trained as.
    assert main(common + ["--config", "fast", "--out", str(old), "--resume", "--max-steps", "3"]) == 0
    resumed = torch.load(old / "last.pt", weights_only=False)
    assert resumed["config"]["slopes"] == "channel"
    assert resumed["model"]["acts.0.weight"].numel() == 8

    # A fine-tune may switch: one slope per layer, started at the channels' mean.
    tuned = tmp_path / "tuned"
    assert main(common + ["--init", str(old / "last.pt"), "--resume", "--set", 'slopes="layer"',
                          "--out", str(tuned), "--max-steps", "0"]) == 0
    child = torch.load(tuned / "last.pt", weights_only=False)
    assert child["model"]["acts.0.weight"].numel() == 1
    assert child["model"]["acts.0.weight"].item() == pytest.approx(
        resumed["model"]["acts.0.weight"].mean().item(), abs=1e-6)


def test_unknown_task_and_missing_data_exit_2(tmp_path, capsys):
    assert main(["sharpen", "--out", str(tmp_path)]) == 2
    assert "no trainable task 'sharpen'" in capsys.readouterr().err
    assert main(["upscale", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_weight_average_is_what_checkpoints_publish_and_a_resume_continues(tmp_path, images):
    config = _tiny_config(tmp_path, loss="l2", ema_decay=0.5, lr=1e-2)
    common = _common(tmp_path, images) + ["--config", str(config)]
    out = tmp_path / "ema"
    assert main(common + ["--out", str(out), "--max-steps", "4"]) == 0
    first = torch.load(out / "last.pt", weights_only=False)
    # "model" (validated, exported) is the average; the optimised weights travel beside it.
    assert set(first["train_model"]) == set(first["model"])
    assert any(not torch.equal(first["model"][k], first["train_model"][k]) for k in first["model"])

    # A resume restores both: with no step to take, it saves the same pair again.
    assert main(common + ["--out", str(out), "--resume", "--max-steps", "4"]) == 0
    again = torch.load(out / "last.pt", weights_only=False)
    for kind in ("model", "train_model"):
        assert all(torch.equal(first[kind][k], again[kind][k]) for k in first[kind]), kind

    assert main(common + ["--out", str(out), "--resume", "--max-steps", "5"]) == 0
    second = torch.load(out / "last.pt", weights_only=False)
    # One more step: average <- 0.5 average + 0.5 new weights, from the saved pair.
    name = "layers.0.conv3.weight"
    expected = 0.5 * first["model"][name] + 0.5 * second["train_model"][name]
    assert torch.allclose(second["model"][name], expected, atol=1e-6)


def test_unknown_loss_is_refused():
    from nnip.train.tasks import pixel_loss

    assert isinstance(pixel_loss({"loss": "l2"}), torch.nn.MSELoss)
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        pixel_loss({"loss": "l3"})
