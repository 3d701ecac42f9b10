"""Engine: devices -> providers, cached and checked sessions, tiled runs equal whole runs."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import onnxruntime as ort
import pytest

from nnip.core.engine import (
    AUTO_ORDER,
    DEVICE_CHOICES,
    DEVICES,
    Engine,
    available_devices,
    device_of,
    resolve_providers,
)
from nnip.core.errors import ModelError, ModelIntegrityError, NnipError, ProviderError
from nnip.core.tiling import align_up
from onnx_builders import conv_net

TOL = 1e-4


# --- devices -----------------------------------------------------------------------------


def test_available_devices_follow_onnxruntime() -> None:
    devices = available_devices()
    assert devices[-1] == "cpu"
    assert devices == [d for d in AUTO_ORDER if d in devices]  # best first
    providers = set(ort.get_available_providers())
    assert all(DEVICES[d] in providers for d in devices)
    assert DEVICE_CHOICES[0] == "auto" and set(DEVICE_CHOICES[1:]) == set(DEVICES)


def test_resolve_providers() -> None:
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    auto = resolve_providers("auto")
    assert auto[-1] == "CPUExecutionProvider"
    assert auto == [DEVICES[d] for d in available_devices()]
    assert [device_of(p) for p in auto] == available_devices()
    assert device_of("SomethingNewExecutionProvider") == "SomethingNewExecutionProvider"


def test_unknown_device_lists_the_choices() -> None:
    with pytest.raises(ProviderError, match=r"unknown device 'gpu' \(choose from auto, tensorrt"):
        resolve_providers("gpu")


@pytest.mark.parametrize("device", [d for d in AUTO_ORDER if d != "cpu"])
def test_unavailable_device_is_refused_at_once(device: str) -> None:
    if device in available_devices():
        pytest.skip(f"{device} is available on this machine")
    with pytest.raises(ProviderError) as info:
        Engine(device)
    message = str(info.value)
    assert message == (
        f"device {device!r} is not available in this onnxruntime "
        f"(available: {', '.join(['auto'] + available_devices())})"
    )
    assert isinstance(info.value, NnipError) and "\n" not in message


# --- sessions ----------------------------------------------------------------------------


def test_session_is_cached_checked_and_uses_the_thread_count(install_models) -> None:
    registry = install_models({"upscale-a": conv_net(), "upscale-b": conv_net(seed=1)})
    engine = Engine("cpu", threads=1, registry=registry)
    a = engine.session(registry.get("upscale-a"))
    assert engine.session(registry.get("upscale-a")) is a
    assert engine.session(registry.get("upscale-b")) is not a
    assert a.get_providers() == ["CPUExecutionProvider"]
    assert a.get_session_options().intra_op_num_threads == 1
    # pool threads sleep between operators: numpy work beside the network keeps its core
    assert a.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert engine.device == "cpu"
    assert Engine("cpu", registry=registry).session(registry.get("upscale-a")) is not a


def test_auto_reports_the_device_that_runs(install_models) -> None:
    registry = install_models({"upscale-a": conv_net()})
    engine = Engine("auto", registry=registry)
    session = engine.session(registry.get("upscale-a"))
    assert engine.device == device_of(session.get_providers()[0])
    assert engine.device in available_devices()


def test_default_registry_comes_from_the_environment(install_models, monkeypatch) -> None:
    registry = install_models({"upscale-a": conv_net()})
    monkeypatch.setenv("NNIP_MODELS_DIR", str(registry.models_dir))
    engine = Engine("cpu")
    image = np.ones((3, 4, 5), np.float32)
    assert engine.run(registry.get("upscale-a"), [image]).shape == (3, 4, 5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"inputs": [{"name": "image", "channels": 1, "layout": "grey"}]},
         r"input 0 \('image'\) has 3 channels, the manifest says 1"),
        ({"outputs": [{"name": "output", "channels": 4, "layout": "rgb"}]},
         r"output 0 \('output'\) has 3 channels, the manifest says 4"),
        ({"outputs": [{"name": "output", "channels": 3, "layout": "rgb"},
                      {"name": "extra", "channels": 1, "layout": "grey"}]},
         "the graph has 1 outputs, the manifest lists 2"),
        ({"inputs": [{"name": "image", "channels": 3, "layout": "rgb"},
                     {"name": "noise", "channels": 1, "layout": "noise_sigma"}]},
         "the graph has 1 inputs, the manifest lists 2"),
    ],
)
def test_graph_that_does_not_match_its_spec(install_models, overrides: dict, message: str) -> None:
    registry = install_models({"upscale-x": conv_net()}, overrides={"upscale-x": overrides})
    with pytest.raises(ModelIntegrityError, match=message) as info:
        Engine("cpu", registry=registry).session(registry.get("upscale-x"))
    assert str(info.value).startswith("model 'upscale-x' does not match its manifest: ")
    assert "\n" not in str(info.value)


def test_dynamic_channels_are_accepted(install_models, rng) -> None:
    registry = install_models({"upscale-d": conv_net(dynamic_channels=True)})
    out = Engine("cpu", registry=registry).run(registry.get("upscale-d"), [rng.random((3, 9, 9), np.float32)])
    assert out.shape == (3, 9, 9)


def test_corrupt_onnx_file_with_matching_sha256(install_models) -> None:
    garbage = b"\x08\x07not a protobuf" * 50  # released broken: its hash matches
    digest = hashlib.sha256(garbage).hexdigest()
    registry = install_models({"upscale-c": conv_net()}, overrides={"upscale-c": {"sha256": digest}})
    (registry.models_dir / "upscale-c.onnx").write_bytes(garbage)
    with pytest.raises(ModelIntegrityError, match="model 'upscale-c' cannot be opened: ") as info:
        Engine("cpu", registry=registry).session(registry.get("upscale-c"))
    assert "\n" not in str(info.value) and "ONNXRuntimeError" not in str(info.value)


def test_modified_file_fails_the_sha256_check(install_models) -> None:
    registry = install_models({"upscale-m": conv_net()})
    path = registry.models_dir / "upscale-m.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="is corrupt"):
        Engine("cpu", registry=registry).session(registry.get("upscale-m"))


# --- running -----------------------------------------------------------------------------


def _reference(engine: Engine, spec, inputs: list[np.ndarray]) -> np.ndarray:
    """Whole-image inference written without the tiler: np.pad, one session call, crop."""
    session = engine.session(spec)
    pad, (h, w), s = align_up(spec.margin, spec.align), inputs[0].shape[1:], spec.scale
    widths = ((0, 0), (pad, pad + align_up(h, spec.align) - h), (pad, pad + align_up(w, spec.align) - w))
    feed = {t.name: np.pad(a, widths, mode="reflect")[None] for t, a in zip(spec.inputs, inputs)}
    out = session.run(None, feed)[0][0]
    return out[:, pad * s : (pad + h) * s, pad * s : (pad + w) * s]


MODELS = {
    "upscale-plain": conv_net(layers=3),
    "upscale-x2": conv_net(layers=2, scale=2),
    "upscale-cond": conv_net(layers=2, cond_channels=1),
    "upscale-align2": conv_net(layers=1, space_to_depth=2),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("h, w", [(1, 1), (7, 13), (101, 77)])
def test_run_equals_run_whole_and_the_reference(install_models, rng, name: str, h: int, w: int) -> None:
    registry = install_models(MODELS)
    engine = Engine("cpu", threads=1, registry=registry)
    spec = registry.get(name)
    inputs = [rng.random((t.channels, h, w), np.float32) for t in spec.inputs]
    whole = engine.run_whole(spec, inputs)
    assert whole.shape == (3, h * spec.scale, w * spec.scale) and whole.dtype == np.float32
    assert np.abs(whole - _reference(engine, spec, inputs)).max() <= TOL
    smallest = 2 * align_up(spec.margin, spec.align) + spec.align
    for tile in (smallest, 32, None):
        for batch in (1, 3):
            out = engine.run(spec, inputs, tile=tile, batch=batch)
            assert np.abs(out - whole).max() <= TOL, (tile, batch)


def test_inputs_are_fed_by_name_in_manifest_order(install_models, rng) -> None:
    net = conv_net(layers=2, cond_channels=1)
    swapped = {"inputs": [{"name": "cond", "channels": 1, "layout": "grey"},
                          {"name": "image", "channels": 3, "layout": "rgb"}]}
    registry = install_models({"upscale-n": net, "upscale-s": net}, overrides={"upscale-s": swapped})
    engine = Engine("cpu", registry=registry)
    image, cond = rng.random((3, 20, 20), np.float32), rng.random((1, 20, 20), np.float32)
    normal = engine.run(registry.get("upscale-n"), [image, cond], tile=16)
    assert np.array_equal(engine.run(registry.get("upscale-s"), [cond, image], tile=16), normal)


def test_default_tile_progress_and_tile_limits(install_models, rng) -> None:
    registry = install_models({"upscale-p": conv_net(1, 1, layers=2)})
    engine = Engine("cpu", registry=registry)
    spec = registry.get("upscale-p")
    size = engine.default_tile + 10
    ticks: list[tuple[int, int]] = []
    engine.run(spec, [rng.random((1, size, 8), np.float32)], progress=lambda d, t: ticks.append((d, t)))
    assert ticks == [(1, 2), (2, 2)]  # the default tile does not fit: two tiles
    with pytest.raises(ModelError, match=r"tile 4 is too small for model 'upscale-p' \(minimum 5"):
        engine.run(spec, [np.zeros((1, 8, 8), np.float32)], tile=4)


def test_a_models_own_tile_is_its_default_and_tile_overrides_it(install_models, rng) -> None:
    registry = install_models({"upscale-t": conv_net(1, 1, layers=2)})
    engine = Engine("cpu", registry=registry)
    plain = registry.get("upscale-t")
    own = dataclasses.replace(plain, tiles={"cpu": 40, "accelerator": 2048})
    assert (engine.tile_for(plain), engine.tile_for(own)) == (engine.default_tile, 40)
    image = rng.random((1, 100, 8), np.float32)

    def tiles_run(spec, tile=None) -> int:
        ticks: list[tuple[int, int]] = []
        out = engine.run(spec, [image], tile=tile, progress=lambda d, t: ticks.append((d, t)))
        assert np.array_equal(out, engine.run_whole(plain, [image]))  # tiling stays exact
        return ticks[-1][1]

    assert tiles_run(plain) == 1
    assert tiles_run(own) > 1  # the model's 40 px tile, not the engine's default
    assert tiles_run(own, tile=1024) == 1  # an explicit --tile wins


def test_wrong_input_list_is_a_programming_error(install_models) -> None:
    registry = install_models({"upscale-w": conv_net()})
    engine, spec = Engine("cpu", registry=registry), registry.get("upscale-w")
    with pytest.raises(ValueError, match=r"wants \(3, H, W\), got \(1, 4, 4\)"):
        engine.run(spec, [np.zeros((1, 4, 4), np.float32)])
    with pytest.raises(ValueError, match="takes 1 inputs, got 2"):
        engine.run(spec, [np.zeros((3, 4, 4), np.float32)] * 2)


def test_spec_with_a_wrong_scale_is_caught_when_run(install_models, rng) -> None:
    registry = install_models({"upscale-s": conv_net(scale=2)}, overrides={"upscale-s": {"scale": 1}})
    with pytest.raises(ModelIntegrityError, match="spec implies"):
        Engine("cpu", registry=registry).run(registry.get("upscale-s"), [rng.random((3, 8, 8), np.float32)])


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_release_gives_the_arena_back_and_changes_no_result(install_models, rng) -> None:
    registry = install_models({"upscale-wide": conv_net(layers=3, width=32)})
    engine = Engine("cpu", threads=1, registry=registry)
    spec = registry.get("upscale-wide")
    image = rng.random((3, 1024, 1024), np.float32)
    kept = engine.run(spec, [image], tile=1024, release=False)  # 32 x 1024^2 floats: 128 MiB a tensor
    before = _resident_mib()
    engine.release(spec)
    assert before - _resident_mib() > 60
    assert np.array_equal(engine.run(spec, [image], tile=1024), kept)


def test_runs_of_several_tiles_release_the_arena_by_default(install_models, rng, monkeypatch) -> None:
    registry = install_models({"upscale-r": conv_net(layers=2)})
    engine = Engine("cpu", threads=1, registry=registry)
    spec = registry.get("upscale-r")
    released: list[str] = []
    monkeypatch.setattr(engine, "release", lambda s: released.append(s.name))
    engine.run(spec, [rng.random((3, 20, 20), np.float32)], tile=32)  # one tile: kept
    assert released == []
    engine.run(spec, [rng.random((3, 30, 70), np.float32)], tile=32)  # several: released
    assert released == ["upscale-r"]
    engine.run(spec, [rng.random((3, 30, 70), np.float32)], tile=32, release=False)
    engine.run(spec, [rng.random((3, 20, 20), np.float32)], tile=32, release=True)
    assert released == ["upscale-r", "upscale-r"]
