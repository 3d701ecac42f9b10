"""Model registry: manifest parsing, lookup, sha256 verification, models-dir resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnip.core.errors import ModelError, ModelIntegrityError, ModelNotFoundError
from nnip.core.models import ModelSpec, Registry, default_models_dir, sha256_of


def _entry(name: str, task: str, file: str, sha: str) -> dict:
    return {
        "name": name,
        "task": task,
        "version": "1",
        "file": file,
        "sha256": sha,
        "inputs": [{"name": "image", "channels": 3, "layout": "rgb", "transfer": "srgb"}],
        "outputs": [{"name": "output", "channels": 3, "layout": "rgb", "transfer": "srgb"}],
        "scale": 2,
        "margin": 5,
        "gflop_per_mp": 12.5,
        "metrics": {"val_psnr_db": 30.0},
    }


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    blob = tmp_path / "a.onnx"
    blob.write_bytes(b"not really onnx, but hashed all the same")
    entries = [
        _entry("upscale-fast", "upscale", "a.onnx", sha256_of(blob)),
        _entry("joint", "denoise+demosaic", "a.onnx", sha256_of(blob)),
        _entry("upscale-broken", "upscale", "missing.onnx", "0" * 64),
    ]
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "models": entries}))
    return tmp_path


def test_find_by_task_alias_and_full_name(models_dir: Path) -> None:
    registry = Registry(models_dir)
    assert registry.find("upscale").name == "upscale-fast"
    assert registry.find("upscale", "fast").name == "upscale-fast"
    assert registry.find("upscale", "upscale-fast").scale == 2
    assert registry.find("demosaic", "joint").tasks == ("denoise", "demosaic")


def test_missing_task_is_one_clear_error(models_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model for task 'lens' installed"):
        Registry(models_dir).find("lens")


def test_model_serving_other_task_is_refused(models_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="serves 'upscale', not 'demosaic'"):
        Registry(models_dir).find("demosaic", "upscale-fast")


def test_load_verifies_sha256(models_dir: Path) -> None:
    registry = Registry(models_dir)
    spec = registry.get("upscale-fast")
    assert registry.load(spec) == models_dir / "a.onnx"
    (models_dir / "a.onnx").write_bytes(b"tampered")
    fresh = Registry(models_dir)
    with pytest.raises(ModelIntegrityError, match="corrupt"):
        fresh.load(fresh.get("upscale-fast"))


def test_missing_model_file(models_dir: Path) -> None:
    registry = Registry(models_dir)
    with pytest.raises(ModelIntegrityError, match="missing"):
        registry.load(registry.get("upscale-broken"))


def test_env_var_points_to_models_dir(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    assert Registry().models_dir == models_dir
    monkeypatch.delenv("NNIP_MODELS_DIR")
    assert Registry().models_dir == default_models_dir()


def test_malformed_and_invalid_entries(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [{"name": "x"}]}))
    with pytest.raises(ModelError, match="malformed"):
        Registry(tmp_path)
    bad = _entry("x", "colorize", "a.onnx", "0" * 64)
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [bad]}))
    with pytest.raises(ModelError, match="unknown task 'colorize'"):
        Registry(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        Registry(tmp_path)


def test_missing_models_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Registry(tmp_path / "nope")


def test_spec_round_trips_through_dict(models_dir: Path) -> None:
    spec = Registry(models_dir).get("upscale-fast")
    again = ModelSpec.from_dict(spec.to_dict(), models_dir)
    assert again == spec


def test_manifest_tiles_round_trip_and_are_checked() -> None:
    entry = {**_entry("upscale-t", "upscale", "t.onnx", "0" * 64), "margin": 10}
    assert ModelSpec.from_dict({**entry, "tiles": {"cpu": 1536}}).to_dict()["tiles"] == {"cpu": 1536}
    assert "tiles" not in ModelSpec.from_dict(entry).to_dict()  # absent stays absent
    with pytest.raises(ModelError, match=r"tiles \{'gpu': 1536\}"):
        ModelSpec.from_dict({**entry, "tiles": {"gpu": 1536}})
    with pytest.raises(ModelError, match=r"tiles \{'cpu': 8\}"):
        ModelSpec.from_dict({**entry, "tiles": {"cpu": 8}})  # no core left inside a margin of 10


def test_shipped_manifest_is_valid() -> None:
    """Every model the package ships loads and matches its sha256."""
    registry = Registry(default_models_dir())
    for spec in registry:
        assert registry.load(spec).is_file()
        assert spec.margin >= 0 and spec.gflop_per_mp > 0
