"""int8 variants: the registry's variant hook, and nnip.train.quantize on a small network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnip.core.errors import ModelError, ModelNotFoundError
from nnip.core.models import ModelSpec, Registry

from onnx_builders import conv_net, install

INT8 = {"variant_of": "upscale-tiny", "precision": "int8"}


@pytest.fixture()
def family(tmp_path: Path) -> Registry:
    """An upscale model and its int8 variant, the variant listed first."""
    net = conv_net(layers=3, width=8, scale=2)
    return install(tmp_path / "models", {"upscale-tiny-int8": net, "upscale-tiny": net},
                   overrides={"upscale-tiny-int8": INT8})


# --------------------------------------------------------------------------- registry


def test_default_model_is_never_a_variant(family: Registry) -> None:
    assert family.find("upscale").name == "upscale-tiny"


def test_variant_by_name_alias_or_precision(family: Registry) -> None:
    assert family.find("upscale", "upscale-tiny-int8").precision == "int8"
    assert family.find("upscale", "tiny-int8").name == "upscale-tiny-int8"
    assert family.find("upscale", "tiny", precision="int8").name == "upscale-tiny-int8"
    assert family.find("upscale", precision="int8").name == "upscale-tiny-int8"
    assert family.find("upscale", "tiny-int8", precision="fp32").name == "upscale-tiny"


def test_missing_precision_is_one_clear_error(tmp_path: Path) -> None:
    registry = install(tmp_path / "m", {"upscale-solo": conv_net(scale=2)})
    with pytest.raises(ModelNotFoundError, match=r"'upscale-solo' has no int8 version .*fp32"):
        registry.find("upscale", "solo", precision="int8")


def test_variant_keys_round_trip_and_originals_stay_as_exported(family: Registry) -> None:
    variant = family.get("upscale-tiny-int8")
    assert ModelSpec.from_dict(variant.to_dict(), family.models_dir) == variant
    assert {"variant_of", "precision"} <= set(variant.to_dict())
    assert not {"variant_of", "precision"} & set(family.get("upscale-tiny").to_dict())


def test_unknown_precision_is_refused(family: Registry) -> None:
    entry = {**family.get("upscale-tiny").to_dict(), "precision": "int4"}
    with pytest.raises(ModelError, match="unknown precision 'int4'"):
        ModelSpec.from_dict(entry)


# --------------------------------------------------------------------------- quantize


@pytest.fixture()
def quantize():
    pytest.importorskip("torch")  # nnip.train needs the training extra
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime.quantization")
    from nnip.train import quantize

    return quantize


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """A few smooth training-like pictures (the calibration reads teachers from files)."""
    from PIL import Image

    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        small = rng.random((9, 12, 3))
        picture = np.kron(small, np.ones((16, 16, 1)))[:128, :160]  # 128 x 160 blocks
        Image.fromarray((picture * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


SMALL = dict(samples=8, chunk=8, crop=16, images=4, check_samples=2)


def test_float_ends_keep_first_convs_and_the_tail(quantize) -> None:
    model = quantize.name_nodes(conv_net(layers=4, width=8, scale=2).model)
    by_output = {n.output[0]: n.name for n in model.graph.node}

    def kept(convs: int) -> set[str]:
        return {o for o, name in by_output.items() if name in quantize.float_ends(model, convs)}

    tail = {"conv3", "conv3_d2s", "output"}  # the last conv, the pixel shuffle, the identity
    assert kept(1) == {"conv0"} | tail
    assert kept(2) == {"conv0", "conv0_relu", "conv1", "conv2", "conv2_relu"} | tail
    assert kept(0) == set()


def test_writes_a_verified_int8_variant_beside_a_copy(quantize, tmp_path: Path, photos: Path) -> None:
    source = install(tmp_path / "models", {"upscale-tiny": conv_net(layers=3, width=8, scale=2)})
    before = (source.models_dir / "manifest.json").read_text()
    out = tmp_path / "scratch"
    options = quantize.QuantizeOptions(**SMALL)
    spec = quantize.quantize_model("upscale-tiny", source.models_dir, out, options,
                                   data_dirs=[photos])

    assert (source.models_dir / "manifest.json").read_text() == before  # source untouched
    registry = Registry(out)
    assert registry.names() == ["upscale-tiny", "upscale-tiny-int8"]
    assert spec.name == "upscale-tiny-int8" and spec.file == "upscale-tiny-int8.onnx"
    assert (spec.variant_of, spec.precision) == ("upscale-tiny", "int8")
    registry.load(registry.get(spec.name))  # sha256 matches the file
    assert registry.find("upscale").name == "upscale-tiny"  # fp32 stays the default
    assert spec.provenance["quantization"]["float_nodes"]
    assert spec.metrics["int8_vs_fp32_psnr_db"] > 25.0

    import onnx

    model = onnx.load(str(out / spec.file))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["nnip_spec"])["variant_of"] == "upscale-tiny"

    from nnip.core.engine import Engine

    engine = Engine("cpu", threads=1, registry=registry)
    image = np.random.default_rng(1).random((3, 37, 29), dtype=np.float32)
    fp32 = engine.run(registry.get("upscale-tiny"), [image])
    int8 = engine.run(registry.get(spec.name), [image])
    assert int8.shape == fp32.shape == (3, 74, 58)
    assert 10 * np.log10(1.0 / np.mean((int8 - fp32) ** 2)) > 25.0


def test_refuses_benchmark_images_and_variants(quantize, tmp_path: Path, photos: Path) -> None:
    bench = tmp_path / "data" / "bench" / "Set5"
    bench.mkdir(parents=True)
    registry = install(tmp_path / "models", {"upscale-tiny": conv_net(scale=2)})
    options = quantize.QuantizeOptions(**SMALL)
    with pytest.raises(ValueError, match="benchmark folder"):
        quantize.quantize_model("upscale-tiny", registry.models_dir, tmp_path / "o", options,
                                data_dirs=[bench])
    quantize.quantize_model("upscale-tiny", registry.models_dir, None, options, data_dirs=[photos])
    with pytest.raises(ValueError, match="already a variant"):
        quantize.quantize_model("upscale-tiny-int8", registry.models_dir, None, options,
                                data_dirs=[photos])


def test_options_are_checked(quantize) -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize.QuantizeOptions(calibration="magic")
    with pytest.raises(ValueError, match="multiple of chunk"):
        quantize.QuantizeOptions(samples=10, chunk=8)


def test_denoise_calibration_is_a_noisy_mosaic_and_its_noise_map(quantize) -> None:
    teacher = np.random.default_rng(2).random((32, 32, 3)).astype(np.float32)
    make = quantize._INPUT_MAKERS["denoise"](None)
    mosaic, sigma = make(teacher)
    again, _ = make(teacher)
    assert mosaic.shape == sigma.shape == (4, 16, 16)
    assert (sigma > 0).all() and np.isfinite(mosaic).all()
    np.testing.assert_array_equal(mosaic, again)  # seeded by the crop: the same call, the same data


def test_lens_calibration_is_the_training_simulation_with_its_optics_map(quantize) -> None:
    from types import SimpleNamespace

    spec = SimpleNamespace(provenance={"config": {"demosaic": "malvar", "pattern_fraction": 0.0}})
    make = quantize._lens_maker(spec)
    teacher = np.random.default_rng(3).random((96, 96, 3)).astype(np.float32)
    image, optics = make(teacher)
    again, _ = make(teacher)
    assert image.shape == (3, 64, 64) and optics.shape == (4, 64, 64)  # 16 px of context cut
    assert np.isfinite(image).all() and not np.allclose(image, image.mean())
    assert (optics[1] >= 0).all() and (optics[1] <= 1.5).all()  # field radius
    np.testing.assert_allclose(optics[2] ** 2 + optics[3] ** 2, 1.0, atol=1e-4)  # cos, sin
    np.testing.assert_array_equal(image, again)  # seeded by the crop
