"""Precision variants at run time (Engine precision, --precision) and nnip.train.fp16."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnip.core import engine as engine_module
from nnip.core.engine import Engine
from nnip.core.models import Registry

from onnx_builders import conv_net, install
from test_quantize import family  # noqa: F401  (the fixture: upscale-tiny and its int8 variant)


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
    engine = Engine("cpu", threads=1, registry=registry, precision="auto")
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
    engine = Engine("auto", threads=1, registry=registry, precision="auto")
    assert engine.device == "cuda"
    assert engine.for_device(spec).name == "upscale-tiny-fp16"
    assert engine.for_device(registry.get("upscale-tiny-fp16")).name == "upscale-tiny-fp16"
    image = np.random.default_rng(1).random((3, 24, 20)).astype(np.float32)
    out = engine.run(spec, [image])
    assert engine.device == "cpu"
    assert engine.for_device(spec) is spec  # the CPU it fell back to runs fp32
    reference = Engine("cpu", threads=1, registry=registry).run(spec, [image])
    np.testing.assert_array_equal(out, reference)


# --------------------------------------------------------------------------- precision


def test_cpuinfo_flags_decide_int8() -> None:
    assert engine_module.cpu_has_int8_dot("processor : 0\nflags : fpu sse2 avx512f avx512_vnni\n")
    assert engine_module.cpu_has_int8_dot("Features : fp asimd asimddp\n")
    assert not engine_module.cpu_has_int8_dot("flags : fpu sse2 avx2 avx512f\n")
    assert not engine_module.cpu_has_int8_dot("model name : avx512_vnni in a name only\n")


@pytest.mark.parametrize("vnni, expected", [(True, "upscale-tiny-int8"), (False, "upscale-tiny")])
def test_auto_on_the_cpu_runs_int8_only_with_vnni(
    family: Registry, monkeypatch: pytest.MonkeyPatch, vnni: bool, expected: str
) -> None:
    monkeypatch.setattr(engine_module, "_this_cpu_has_int8_dot", lambda: vnni)
    engine = Engine("cpu", threads=1, registry=family, precision="auto")
    assert engine.for_device(family.get("upscale-tiny")).name == expected


def test_explicit_precisions(family: Registry) -> None:
    spec = family.get("upscale-tiny")
    assert Engine("cpu", registry=family).for_device(spec) is spec  # the library default: fp32
    assert Engine("cpu", registry=family, precision="int8").for_device(spec).name == "upscale-tiny-int8"
    # no fp16 variant installed: the model runs as it is
    assert Engine("cpu", registry=family, precision="fp16").for_device(spec) is spec
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        Engine("cpu", precision="int4")


@pytest.mark.parametrize("precision, expected", [("fp32", "upscale-tiny"), ("int8", "upscale-tiny-int8")])
def test_cli_precision_decides_the_file_that_runs(
    family: Registry, tmp_path: Path, precision: str, expected: str
) -> None:
    from PIL import Image

    picture = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(picture)
    done = subprocess.run(
        [sys.executable, "-m", "nnups.cli", "upscale", str(picture), "-o", str(tmp_path / "out"),
         "--model", "tiny", "--models-dir", str(family.models_dir), "--device", "cpu",
         "--precision", precision, "--json", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "NNIP_PRECISION": "auto"},
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    files = record["files"] if "files" in record else [record]
    assert files[0]["models"] == [expected]


def test_every_installed_variant_was_made_from_its_models_current_file() -> None:
    """A retrained model must bring new variants: a variant whose recorded source is an
    older file of its model would run stale weights under ``--precision auto``."""
    registry = Registry(None)
    variants = [spec for spec in registry if spec.variant_of]
    assert variants, "the installed models ship int8 variants"
    for spec in variants:
        made = spec.provenance.get("quantization") or spec.provenance.get("fp16") or {}
        assert made.get("source_sha256") == registry.get(spec.variant_of).sha256, spec.name


def _smooth_inputs(spec, size: int = 96) -> list[np.ndarray]:
    """Plausible inputs for a model by layout: a smooth picture (CHW) for rgb, a real
    optics map (f/11-like Airy radius, a crop off the frame's centre) for optics, and for a
    denoiser a noisy smooth mosaic (ISO ~3200-like shot and read noise) with the noise map
    the develop computes from it."""
    from scipy import ndimage

    from nnip.develop.denoise import sigma_map
    from nnip.develop.noise import SOURCES, NoiseParams
    from nnip.develop.optics import optics_planes

    rng = np.random.default_rng(7)
    smooth = lambda channels: ndimage.gaussian_filter(  # noqa: E731
        rng.random((channels, size, size)), (0, 2, 2)).astype(np.float32)
    if any(tensor.layout == "noise_sigma" for tensor in spec.inputs):
        noise = NoiseParams(a=1e-3, b=1e-5, source=SOURCES[0])
        clean = smooth(4) * 0.8 + 0.05
        mosaic = (clean + rng.normal(size=clean.shape) * noise.std(clean)).astype(np.float32)
        sigma = sigma_map(mosaic, noise).astype(np.float32)
        return [mosaic if tensor.layout != "noise_sigma" else sigma for tensor in spec.inputs]
    inputs = []
    for tensor in spec.inputs:
        if tensor.layout == "optics":
            inputs.append(optics_planes(size, size, 2.0, -300.0, -500.0, 900.0))
        else:
            inputs.append(smooth(tensor.channels) * 2 - 0.5)
    return inputs


def test_installed_int8_variants_agree_with_their_fp32_models() -> None:
    """A shipped int8 file must compute its model's function: within 40 dB PSNR of the
    fp32 output on a smooth input (they measure 54-61 dB on training crops)."""
    registry = Registry(None)
    engine = Engine("cpu", threads=1, registry=registry, precision="fp32")
    variants = [spec for spec in registry if spec.precision == "int8"]
    assert {"upscale-fast-int8", "lens-int8", "denoise-int8"} <= {spec.name for spec in variants}
    for variant in variants:
        original = registry.get(variant.variant_of)
        inputs = _smooth_inputs(original)
        reference = engine.run_whole(original, inputs)
        rounded = engine.run_whole(variant, inputs)
        error = float(np.mean((rounded - reference) ** 2))
        psnr = 10 * np.log10(1.0 / max(error, 1e-12))
        assert psnr > 40.0, f"{variant.name}: {psnr:.1f} dB from {original.name}"
