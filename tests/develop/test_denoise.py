"""The denoise stage's work: noise map, phases, strength, the stage in the pipeline.

The network here is a real ONNX graph following the denoise contract: a Lee filter (local
mean plus the local detail kept in proportion ``max(0, var - sigma^2) / var``), which, like a
trained denoiser, smooths more when told the noise is stronger.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from onnx_builders import OPSET, BuiltNet, install
from nnip.core.engine import Engine
from nnip.core.errors import ModelError, ModelNotFoundError
from nnip.core.models import Registry
from nnip.develop.denoise import (
    Denoise,
    box_mean,
    check_denoise_model,
    denoise_mosaic,
    parse_denoise,
    sigma_map,
    trained_range_weight,
    unpack_rggb,
)
from nnip.develop.noise import NoiseParams
from nnip.develop.pipeline import DevelopFrame, DevelopOptions, build_pipeline, develop
from nnip.raw.frame import BAYER_PATTERNS, read_raw
from nnip.simulate.pairs import raw_pair, simulate_dng
from nnip.simulate.sensor import mosaic_bayer

LEE_RADIUS = 2


def lee_net() -> BuiltNet:
    """mosaic, noise_sigma (4 channels each) -> m + max(0, v - s^2) / v * (x - m)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = 2 * LEE_RADIUS + 1
    box = np.full((4, 1, size, size), 1.0 / size**2, dtype=np.float32)
    conv = dict(group=4, pads=[LEE_RADIUS] * 4)
    nodes = [
        helper.make_node("Conv", ["mosaic", "box"], ["m"], **conv),
        helper.make_node("Mul", ["mosaic", "mosaic"], ["xx"]),
        helper.make_node("Conv", ["xx", "box"], ["m2"], **conv),
        helper.make_node("Mul", ["m", "m"], ["mm"]),
        helper.make_node("Sub", ["m2", "mm"], ["v"]),
        helper.make_node("Mul", ["noise_sigma", "noise_sigma"], ["s2"]),
        helper.make_node("Sub", ["v", "s2"], ["excess"]),
        helper.make_node("Relu", ["excess"], ["kept"]),
        helper.make_node("Add", ["v", "eps"], ["v_safe"]),
        helper.make_node("Div", ["kept", "v_safe"], ["gain"]),
        helper.make_node("Sub", ["mosaic", "m"], ["detail"]),
        helper.make_node("Mul", ["gain", "detail"], ["kept_detail"]),
        helper.make_node("Add", ["m", "kept_detail"], ["denoised"]),
    ]
    def tensor(name: str, channels: int):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, "H", "W"])

    graph = helper.make_graph(
        nodes, "lee", [tensor("mosaic", 4), tensor("noise_sigma", 4)], [tensor("denoised", 4)],
        initializer=[numpy_helper.from_array(box, "box"),
                     numpy_helper.from_array(np.array(1e-20, np.float32), "eps")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return BuiltNet(model=model, margin=2 * LEE_RADIUS, inputs=[("mosaic", 4), ("noise_sigma", 4)],
                    outputs=[("denoised", 4)])


def _contract() -> dict:
    packed = dict(channels=4, layout="bayer_packed", transfer="linear")
    return {
        "inputs": [dict(name="mosaic", **packed),
                   dict(name="noise_sigma", channels=4, layout="noise_sigma", transfer="linear")],
        "outputs": [dict(name="denoised", **packed)],
    }


@pytest.fixture(scope="module")
def lee(tmp_path_factory) -> tuple[Engine, Registry]:
    registry = install(tmp_path_factory.mktemp("models"), {"denoise-lee": lee_net()},
                       task="denoise", overrides={"denoise-lee": _contract()})
    return Engine("cpu", threads=1, registry=registry), registry


def flat_record(iso: float = 6400.0, size: int = 128, level: float = 0.3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    grey = np.full((size, size, 3), level, dtype=np.float32)
    return raw_pair(grey, rng, iso=iso, sensor="sony-a7rm2", exposure=1.0, olpf_px=0.0,
                    cam_from_xyz=np.eye(3))


def _params(record: dict) -> NoiseParams:
    return NoiseParams(record["noise_a"], record["noise_b"], "dng-noiseprofile")


# --------------------------------------------------------------------------- noise map


def test_box_mean_is_a_reflected_uniform_filter() -> None:
    planes = np.random.default_rng(0).random((4, 13, 9)).astype(np.float32)
    expected = ndimage.uniform_filter(planes.astype(np.float64), size=(1, 5, 5), mode="mirror")
    np.testing.assert_allclose(box_mean(planes, 2), expected, atol=1e-6)


def test_sigma_map_follows_the_model() -> None:
    params = NoiseParams(2e-4, 1e-6, "estimated")
    packed = np.stack([np.full((6, 8), v, np.float32) for v in (0.0, 0.25, -0.1, 2.0)])
    sigma = sigma_map(packed, params)
    expected = np.sqrt([1e-6, 2e-4 * 0.25 + 1e-6, 1e-6, 2e-4 + 1e-6])  # clipped to 0..1
    np.testing.assert_allclose(sigma[:, 3, 4], expected, rtol=1e-6)
    one = sigma_map(packed, params, channels=1)
    assert one.shape == (1, 6, 8)
    np.testing.assert_allclose(one[0, 0, 0], np.sqrt(np.mean(expected**2)), rtol=1e-6)
    assert sigma_map(np.zeros((4, 4, 4)), NoiseParams(1e-4, 0.0, "estimated")).min() > 0


def test_sigma_map_matches_the_simulated_noise() -> None:
    record = flat_record(iso=3200.0, size=256)
    sigma = sigma_map(record["packed"], _params(record))
    clean = record["target"][0, 0]  # grey camera RGB: one value per channel
    residual = record["packed"] - np.array([clean[0], clean[1], clean[1], clean[2]])[:, None, None]
    assert residual.std(axis=(1, 2)) == pytest.approx(sigma.mean(axis=(1, 2)), rel=0.05)


@pytest.mark.parametrize("text, strength", [("off", None), ("auto", 1.0), ("nn", 1.0),
                                            ("0", 0.0), ("1.5", 1.5), (" 2 ", 2.0)])
def test_parse_denoise(text, strength) -> None:
    assert parse_denoise(text) == strength


@pytest.mark.parametrize("text", ["max", "-0.5", "2.5", "nan"])
def test_parse_denoise_refuses(text) -> None:
    with pytest.raises(ValueError, match="denoise"):
        parse_denoise(text)


# --------------------------------------------------------------------------- denoising


def test_strength_is_monotonic_and_zero_is_identity(lee) -> None:
    engine, registry = lee
    spec = registry.find("denoise")
    record = flat_record()
    clean = mosaic_bayer(record["target"], "RGGB")
    stds = []
    for strength in (0.0, 0.5, 1.0, 1.5, 2.0):
        out = denoise_mosaic(record["mosaic"], "RGGB", _params(record), engine, spec, strength)
        if strength == 0.0:
            assert np.array_equal(out, record["mosaic"])
        stds.append(float((out - clean)[8:-8, 8:-8].std()))
    # Non-increasing, up to float rounding (where the Lee gain is 0 both give the box mean).
    assert all(later <= earlier * (1 + 1e-4) for earlier, later in zip(stds, stds[1:])), stds
    assert stds[2] < 0.5 * stds[0]  # it does denoise


def test_frames_quieter_than_the_trained_floor_fade_out(lee) -> None:
    # The network never saw frames quieter than ISO 100 and smooths their detail (a clean
    # Kodak24 develop lost 0.42 dB): its correction is weighted by sigma / sigma_trained.
    # A faint texture (std 1e-4, far below both sigmas) makes the Lee net return its box
    # mean D at the floor and at a quarter of its variance alike, so with the weight the
    # quarter-variance frame must come out halfway between the input and D.
    engine, registry = lee
    spec = registry.find("denoise")
    mosaic = 0.3 + 1e-4 * np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    at_floor = denoise_mosaic(mosaic, "RGGB", NoiseParams(1.477e-5, 9.6e-9, "iso-prior"), engine, spec)
    quarter = denoise_mosaic(mosaic, "RGGB", NoiseParams(1.477e-5 / 4, 9.6e-9 / 4, "iso-prior"), engine, spec)
    assert np.max(np.abs(at_floor - mosaic)) > 1e-4  # the net does smooth this texture
    np.testing.assert_allclose(quarter, (mosaic + at_floor) / 2, atol=2e-6)


@pytest.mark.parametrize("sensor", ["sony-a7rm2", "nikon-d800", "canon-5d3"])
def test_trained_range_weight_is_one_within_the_training_range(sensor: str) -> None:
    from nnip.simulate.sensor import noise_model_for_iso

    packed = np.random.default_rng(2).random((4, 16, 16), dtype=np.float32)
    for iso in (100.0, 800.0, 25600.0):
        model = noise_model_for_iso(iso, sensor)
        weight = trained_range_weight(packed, NoiseParams(model.a, model.b, "iso-prior"))
        assert weight.shape == packed.shape and np.all(weight == 1.0)
    half = trained_range_weight(packed, NoiseParams(1.477e-5 / 4, 9.6e-9 / 4, "iso-prior"))
    assert np.allclose(half, 0.5, atol=1e-6)


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_every_phase_and_odd_sizes(lee, pattern) -> None:
    """A mosaic of any phase is denoised as its RGGB equivalent (same colour sites)."""
    engine, registry = lee
    spec = registry.find("denoise")
    rng = np.random.default_rng(1)
    planes = np.array([0.4, 0.2, 0.2, 0.1])[:, None, None] + rng.normal(0, 0.02, (4, 40, 40))
    rggb = unpack_rggb(planes.astype(np.float32))
    top, left = divmod(pattern.index("R"), 2)
    mosaic = rggb[top:top + 75, left:left + 61]  # crop to the phase, odd sides
    params = NoiseParams(1e-4, 3e-4, "estimated")
    out = denoise_mosaic(mosaic, pattern, params, engine, spec)
    assert out.shape == mosaic.shape and out.dtype == np.float32
    reference = denoise_mosaic(rggb, "RGGB", params, engine, spec)[top:top + 75, left:left + 61]
    inner = (slice(12, -12), slice(12, -12))  # away from the differently padded borders
    np.testing.assert_allclose(out[inner], reference[inner], atol=1e-6)
    assert out[inner].std() < mosaic[inner].std()


def test_tiles_give_the_whole_image_result(lee) -> None:
    engine, registry = lee
    spec = registry.find("denoise")
    record = flat_record(size=160)
    whole = denoise_mosaic(record["mosaic"], "RGGB", _params(record), engine, spec, tile=10000)
    tiled = denoise_mosaic(record["mosaic"], "RGGB", _params(record), engine, spec, tile=24)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_models_that_break_the_contract_are_refused(lee, tmp_path) -> None:
    _, registry = lee
    spec = registry.find("denoise")
    assert check_denoise_model(spec) == (0, 1)
    wrong = dataclasses.replace(spec, inputs=spec.inputs[:1])
    with pytest.raises(ModelError, match="two inputs, bayer_packed and noise_sigma"):
        check_denoise_model(wrong)
    with pytest.raises(ModelError, match="4-channel output at scale 1"):
        check_denoise_model(dataclasses.replace(spec, scale=2))


# --------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def noisy_frame(tmp_path_factory):
    rng = np.random.default_rng(3)
    scene = np.clip(rng.uniform(0.1, 0.8, (8, 8, 3)), 0, 1).astype(np.float32)
    scene = np.repeat(np.repeat(scene, 24, axis=0), 24, axis=1)
    path = tmp_path_factory.mktemp("dng") / "noisy.dng"
    record = simulate_dng(scene, path, iso=6400, sensor="canon-5d3", optics=False, seed=3)
    return read_raw(path), record


def _run(frame, stages) -> DevelopFrame:
    work = DevelopFrame.from_raw(frame)
    for stage in stages:
        if stage.enabled:
            work = stage.apply(work)
    return work


def test_off_is_bit_identical_to_no_stage(noisy_frame, lee) -> None:
    frame, _ = noisy_frame
    engine, registry = lee
    options = DevelopOptions(demosaic="bilinear")
    reference, _ = develop(frame, options)
    stages = build_pipeline(options)
    without = [s for s in stages if s.name != "denoise"]
    assert np.array_equal(_run(frame, without).pixels, reference)
    for off in (Denoise("off", engine, registry), Denoise(0.0, engine, registry)):
        assert not off.enabled and off.describe() == "denoise: off"
        assert np.array_equal(_run(frame, [off if s.name == "denoise" else s for s in stages])
                              .pixels, reference)


def test_stage_denoises_in_the_pipeline(noisy_frame, lee) -> None:
    frame, record = noisy_frame
    engine, registry = lee
    stages = build_pipeline(DevelopOptions(demosaic="bilinear"))
    stage = Denoise("auto", engine, registry)
    assert stage.enabled and stage.describe().startswith("denoise: nn, strength 1")
    normalised = _run(frame, stages[:1])
    denoised = stage.apply(normalised)
    assert denoised.space == "mosaic" and denoised.pixels.shape == normalised.pixels.shape
    clean = mosaic_bayer(record["target"], record["pattern"])
    inner = (slice(16, -16), slice(16, -16))
    before = np.abs(normalised.pixels - clean)[inner].mean()
    assert np.abs(denoised.pixels - clean)[inner].mean() < 0.6 * before
    developed = _run(frame, [stage if s.name == "denoise" else s for s in stages])
    assert developed.pixels.shape == (frame.height, frame.width, 3)
    if hasattr(denoised, "noise"):  # once the pipeline's frame carries the noise parameters
        assert denoised.noise.source == "dng-noiseprofile"


def test_stage_without_a_model_says_so(noisy_frame, tmp_path) -> None:
    # An explicit strength needs the model: one clear error. Plain auto (the default)
    # skips the stage with a notice, so a models directory without one still develops.
    frame, _ = noisy_frame
    empty = install(tmp_path / "none", {}, task="denoise")
    work = _run(frame, build_pipeline(DevelopOptions(demosaic="bilinear"))[:1])
    with pytest.raises(ModelNotFoundError, match="denoise"):
        Denoise("1", Engine("cpu", registry=empty), empty).apply(work)
    with pytest.raises(ModelNotFoundError, match="denoise"):
        Denoise("auto", Engine("cpu", registry=empty), empty, model="denoise-x").apply(work)
    out = Denoise("auto", Engine("cpu", registry=empty), empty).apply(work)
    assert out.pixels is work.pixels and out.notices == work.notices  # the default: quiet


def test_stage_passes_non_bayer_frames(noisy_frame, lee) -> None:
    frame, _ = noisy_frame
    engine, registry = lee
    mono = dataclasses.replace(frame, is_bayer=False, pattern="")
    work = _run(mono, build_pipeline(DevelopOptions(demosaic="bilinear"))[:1])
    out = Denoise("1", engine, registry).apply(work)
    assert out.pixels is work.pixels
    assert out.notices[-1] == "denoise: only Bayer mosaics are denoised; skipped"
    quiet = Denoise("auto", engine, registry).apply(work)  # the default says nothing
    assert quiet.pixels is work.pixels and quiet.notices == work.notices
