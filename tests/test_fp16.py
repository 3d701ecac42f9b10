"""fp16 variants: nnip.train.fp16 writes them, the engine runs them on GPU providers only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnip.core import engine as engine_module
from nnip.core.engine import Engine
from nnip.core.models import Registry

from onnx_builders import conv_net, install


@pytest.fixture()
def fp16():
    pytest.importorskip("torch")  # nnip.train needs the training extra
    pytest.importorskip("onnxconverter_common")
    from nnip.train import fp16

    return fp16


@pytest.fixture()
def models(tmp_path: Path) -> Registry:
    return install(tmp_path / "models", {"upscale-tiny": conv_net(layers=3, width=8, scale=2),
                                         "upscale-wide": conv_net(layers=2, width=16, scale=2)})


def test_every_named_model_gets_a_registered_variant(fp16, models: Registry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert fp16.main(["upscale-tiny", "upscale-wide", "--models-dir", str(models.models_dir),
                      "--out-dir", str(out)]) == 0
    # Both: converting the second must not drop the first's entry (it once did).
    registry = Registry(out)
    for name in ("upscale-tiny", "upscale-wide"):
        variant = registry.get(f"{name}-fp16")
        assert (variant.variant_of, variant.precision) == (name, "fp16")
        registry.load(variant)  # sha256 matches the file
        assert registry.find("upscale", name, precision="fp16") == variant
    assert json.loads((models.models_dir / "manifest.json").read_text())["models"][0]["name"] \
        == "upscale-tiny"  # the source directory is untouched
    assert not (models.models_dir / "upscale-tiny-fp16.onnx").exists()


def test_weights_are_half_and_inputs_outputs_stay_float32(fp16, models: Registry,
                                                          tmp_path: Path) -> None:
    import onnx

    spec = fp16.half_model("upscale-tiny", models.models_dir, tmp_path / "out")
    graph = onnx.load(str(spec.path)).graph
    weights = [t for t in graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_cpu_engine_never_swaps_in_the_fp16_variant(fp16, models: Registry, tmp_path: Path) -> None:
    fp16.half_model("upscale-tiny", models.models_dir, tmp_path / "out")
    registry = Registry(tmp_path / "out")
    spec = registry.get("upscale-tiny")
    engine = Engine("cpu", threads=1, registry=registry)
    assert engine.for_device(spec) is spec


def test_gpu_engine_swaps_it_in_and_falls_back_to_fp32_on_the_cpu(
    fp16, models: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp16.half_model("upscale-tiny", models.models_dir, tmp_path / "out")
    registry = Registry(tmp_path / "out")
    spec = registry.get("upscale-tiny")
    # A CUDA device as `auto` would resolve it; this onnxruntime has no CUDA provider, so
    # the session opens on the CPU (onnxruntime skips a provider it does not have).
    monkeypatch.setattr(engine_module, "resolve_providers",
                        lambda device: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    engine = Engine("auto", threads=1, registry=registry)
    assert engine.device == "cuda"
    assert engine.for_device(spec).name == "upscale-tiny-fp16"
    assert engine.for_device(registry.get("upscale-tiny-fp16")).name == "upscale-tiny-fp16"
    image = np.random.default_rng(1).random((3, 24, 20)).astype(np.float32)
    out = engine.run(spec, [image])
    assert engine.device == "cpu"
    assert engine.for_device(spec) is spec  # the CPU it fell back to runs fp32
    reference = Engine("cpu", threads=1, registry=registry).run(spec, [image])
    np.testing.assert_array_equal(out, reference)
