"""The lens stage: lensfun matching and models, the network's wiring, --lens off, notices."""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np
import pytest

from dev_scenes import OPSET, BuiltNet, write_chart_dng
from onnx_builders import install
from nnip.core.engine import Engine
from nnip.core.errors import ModelNotFoundError
from nnip.develop import colour
from nnip.develop.lens import (
    CLIP_LEVEL,
    clip_guard_px,
    clip_guard_weight,
    Lens,
    ProfileCorrection,
    apply_profile,
    deblur,
    find_lens_profile,
    parse_lens,
    profile_correction,
    source_coordinates,
    vignetting_gain,
)
from nnip.develop.optics import OpticsMap
from nnip.develop.pipeline import DevelopFrame, DevelopOptions, build_pipeline, develop
from nnip.raw.frame import read_raw

FIVE_D3 = ("Canon", "Canon EOS 5D Mark III")
ZOOM = "Canon EF 24-70mm f/2.8L II USM"


def lensfunpy():
    return pytest.importorskip("lensfunpy")


def test_parse_lens() -> None:
    assert parse_lens(None) == "off" and parse_lens(" Auto ") == "auto"
    assert [parse_lens(m) for m in ("off", "deblur", "profile")] == ["off", "deblur", "profile"]
    with pytest.raises(ValueError, match="auto, off, deblur, profile"):
        parse_lens("nn")


# --------------------------------------------------------------------------- lensfun


@pytest.mark.parametrize("make, model, lens", [
    (*FIVE_D3, ZOOM),
    ("Canon", "EOS 5D Mark III", "EF24-70mm f/2.8L II USM"),  # LibRaw's and Canon's spellings
])
def test_lensfun_matches_a_known_camera_and_lens(make: str, model: str, lens: str) -> None:
    lensfunpy()
    profile, reason = find_lens_profile(make, model, lens, 35.0)
    assert reason == "" and profile is not None
    assert (profile.camera_name, profile.lens_name) == (FIVE_D3[1], ZOOM)
    assert profile.crop_ratio == pytest.approx(1.0)
    correction = profile_correction(profile, 35.0, 2.8)
    assert correction.distortion[0] == "ptlens" and correction.tca[0] == "poly3"
    assert correction.vignetting is not None


@pytest.mark.parametrize("make, model, lens, focal, why", [
    (*FIVE_D3, "Foobar 1000mm f/99 Ultra", 50.0, "no lensfun profile"),
    (*FIVE_D3, "", 50.0, "no lens name"),
    (*FIVE_D3, "EF 35mm", 35.0, "no lensfun profile"),  # too vague to trust
    (*FIVE_D3, ZOOM, 200.0, "does not cover 200 mm"),
    ("Acme", "Imaginary 1", ZOOM, 50.0, "not in the lensfun database"),
])
def test_lensfun_misses_cleanly(make, model, lens, focal, why) -> None:
    lensfunpy()
    profile, reason = find_lens_profile(make, model, lens, focal)
    assert profile is None and why in reason and "\n" not in reason


@pytest.mark.parametrize("camera, focal", [(FIVE_D3[1], 24.0), ("Canon EOS 7D", 50.0)])
def test_models_agree_with_lensfun(camera: str, focal: float) -> None:
    """Our evaluation of lensfun's data against lensfun's own (float32, jittery) output."""
    lf = lensfunpy()
    profile, _ = find_lens_profile("Canon", camera, ZOOM, focal)
    correction = profile_correction(profile, focal, 2.8)
    height, width = 200, 300
    database = lf.Database()
    body = database.find_cameras("Canon", camera)[0]
    modifier = lf.Modifier(profile.lens, body.crop_factor, width, height)
    modifier.initialize(focal, 2.8, 1000.0, scale=1.0, pixel_format=np.float32,
                        flags=lf.ModifyFlags.DISTORTION | lf.ModifyFlags.TCA)
    expected = modifier.apply_subpixel_geometry_distortion()  # (H, W, 3, (x, y))
    ours = source_coordinates(np.arange(height)[:, None], np.arange(width)[None, :],
                              height, width, correction)
    for channel in range(3):
        error = np.hypot(ours[channel, 0] - expected[..., channel, 1],
                         ours[channel, 1] - expected[..., channel, 0])
        assert np.median(error) < 0.01 and np.percentile(error, 99) < 0.06
    vignetting = lf.Modifier(profile.lens, body.crop_factor, width, height)
    vignetting.initialize(focal, 2.8, 1000.0, pixel_format=np.float32,
                          flags=lf.ModifyFlags.VIGNETTING)
    flat = np.ones((height, width, 3), dtype=np.float32)
    vignetting.apply_color_modification(flat)
    gain = vignetting_gain(np.arange(height)[:, None], np.arange(width)[None, :],
                           height, width, correction)
    np.testing.assert_allclose(gain, flat[..., 1], rtol=1e-3)
    assert gain[0, 0] > 1.2 and gain[100, 150] == pytest.approx(1.0, abs=1e-3)


def _blobs(height: int, width: int) -> np.ndarray:
    """Smooth test scene (Gaussian spots): resampling it is exact to well under 1 %."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.full((height, width), 0.1)
    rng = np.random.default_rng(3)
    for cy, cx in rng.uniform((10, 10), (height - 10, width - 10), size=(12, 2)):
        image += 0.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    return image.astype(np.float32)


def test_tca_correction_registers_the_colour_planes() -> None:
    from scipy import ndimage

    height, width = 120, 160
    scene = _blobs(height, width)
    k_red, k_blue = 1.01, 0.992  # red image magnified by 1 %, blue shrunk
    correction = ProfileCorrection(distortion=None, tca=("linear", (k_red, k_blue)),
                                   vignetting=None)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)

    def magnified(k: float) -> np.ndarray:  # the plane as the lens draws it: scaled by k
        return ndimage.map_coordinates(scene, [cy + (yy - cy) / k, cx + (xx - cx) / k],
                                       order=3, mode="mirror")

    captured = np.stack([magnified(k_red), scene, magnified(k_blue)], axis=-1)
    fixed = apply_profile(captured, correction, scale=1.0)
    inner = (slice(8, -8), slice(8, -8))
    before = np.abs(captured[..., 0] - scene)[inner].max()
    assert before > 0.1
    for channel in range(3):
        assert np.abs(fixed[..., channel] - scene)[inner].max() < 0.01 * before + 2e-3


def test_auto_scale_leaves_no_pixel_outside() -> None:
    # Pincushion correction samples beyond the frame at scale 1: the zoom pulls it in.
    correction = ProfileCorrection(distortion=("poly3", (0.05,)), tca=None, vignetting=None)
    from nnip.develop.lens import _auto_scale

    scale = _auto_scale(100, 150, correction)
    assert scale > 1.0
    coords = source_coordinates(np.array([[0.0], [99.0]]), np.array([[0.0, 149.0]]), 100, 150,
                                correction, scale)
    assert coords[:, 0].min() >= -0.01 and coords[:, 0].max() <= 99.01
    assert coords[:, 1].min() >= -0.01 and coords[:, 1].max() <= 149.01
    assert np.abs(coords[1, 1, 0, 0]) < 0.05  # the corner samples the corner


def test_apply_profile_vignetting_only_is_a_gain() -> None:
    correction = ProfileCorrection(distortion=None, tca=None, vignetting=(-0.3, 0.0, 0.0))
    flat = np.full((40, 60, 3), 0.5, dtype=np.float32)
    out = apply_profile(flat, correction)
    assert out[20, 30, 0] == pytest.approx(0.5, rel=1e-3)
    assert out[0, 0, 1] == pytest.approx(0.5 / 0.7, rel=1e-3)  # r = 1 at the corner
    nothing = ProfileCorrection(distortion=None, tca=None, vignetting=None)
    np.testing.assert_array_equal(apply_profile(flat, nothing), flat)


# --------------------------------------------------------------------------- the network


def _optics_shift_net() -> BuiltNet:
    """A lens-contract ONNX model: rgb = image + 0.01 * airy (optics channel 0).

    Its inputs are listed optics first, so the stage must place them by layout.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.zeros((3, 7, 1, 1), dtype=np.float32)
    weight[:, 0] = 0.01  # optics channel 0 (the Airy radius) into every colour
    for c in range(3):
        weight[c, 4 + c] = 1.0  # image channels come after the 4 optics channels
    graph = helper.make_graph(
        [helper.make_node("Concat", ["optics", "image"], ["both"], axis=1),
         helper.make_node("Conv", ["both", "w"], ["rgb"])],
        "optics_shift",
        [helper.make_tensor_value_info("optics", TensorProto.FLOAT, ["N", 4, "H", "W"]),
         helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return BuiltNet(model=model, margin=0, align=4, inputs=[("optics", 4), ("image", 3)],
                    outputs=[("rgb", 3)], params=21)


@pytest.fixture()
def lens_registry(tmp_path: Path):
    spec = {
        "inputs": [
            {"name": "optics", "channels": 4, "layout": "optics", "transfer": "linear"},
            {"name": "image", "channels": 3, "layout": "rgb", "transfer": "srgb"},
        ],
        "outputs": [{"name": "rgb", "channels": 3, "layout": "rgb", "transfer": "srgb"}],
    }
    return install(tmp_path / "models", {"lens-shift": _optics_shift_net()}, task="lens",
                   overrides={"lens-shift": spec})


def test_deblur_feeds_encoded_image_and_optics_and_keeps_clipped(lens_registry) -> None:
    engine = Engine("cpu", threads=1, registry=lens_registry)
    spec = lens_registry.find("lens")
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.0, 0.9, size=(30, 45, 3)).astype(np.float32)
    rgb[3:6, 4:9, 1] = 1.0  # a clipped green highlight
    optics = OpticsMap(height=30, width=45, fnumber=8.0, pixel_pitch_um=4.0)
    out = deblur(rgb, optics, engine, spec, tile=32)
    expected = colour.decode_transfer(
        colour.encode_transfer(rgb, "srgb") + 0.01 * optics.airy_radius_px, "srgb")
    clipped = rgb >= CLIP_LEVEL
    np.testing.assert_array_equal(out[clipped], rgb[clipped])
    # The model brightens everything: near the highlight the guard undoes it, far away not.
    guard = clip_guard_px(optics.airy_radius_px)
    assert guard == math.ceil(2 * optics.airy_radius_px) + 4
    near = np.zeros((30, 45), dtype=bool)
    near[max(0, 3 - guard):6 + guard, max(0, 4 - guard):9 + guard] = True
    far = np.ones((30, 45), dtype=bool)
    far[:6 + 2 * guard + 2, :9 + 2 * guard + 2] = False
    np.testing.assert_allclose(out[near], rgb[near], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[far], expected[far], rtol=1e-5, atol=1e-6)
    between = ~near & ~far
    assert (out[between] >= rgb[between] - 1e-7).all() and (out[between] <= expected[between] + 1e-6).all()
    with pytest.raises(ValueError, match="optics map"):
        deblur(rgb[:20], optics, engine, spec)


def test_clip_guard_by_strips_equals_the_whole_image() -> None:
    rng = np.random.default_rng(3)
    image = rng.uniform(0.0, 0.9, size=(300, 80, 3)).astype(np.float32)
    image[150, 40, 2] = 1.0
    image[5, 70] = 1.0
    whole = clip_guard_weight(image, slice(0, 300), 10)
    assert whole[150, 40] == 1.0 and whole[150 - 10, 40 + 10] == 1.0 and whole[100, 40] == 0.0
    assert 0.0 < whole[150 + 16, 40] < 1.0  # fading out
    strips = []
    for top in range(0, 300, 64):
        rows = slice(top, min(300, top + 64))
        weight = clip_guard_weight(image, rows, 10)  # None: no clipped pixel near the strip
        strips.append(np.zeros((rows.stop - top, 80), np.float32) if weight is None else weight)
    strips = np.concatenate(strips)
    np.testing.assert_array_equal(strips, whole)
    assert clip_guard_weight(image * 0.5, slice(0, 300), 10) is None
    assert clip_guard_px(None) == clip_guard_px(4.0)


# --------------------------------------------------------------------------- the stage


def _develop_with(frame, options: DevelopOptions, lens: Lens) -> tuple[np.ndarray, DevelopFrame]:
    """Run the pipeline's stages with ``lens`` in the lens slot."""
    work = DevelopFrame.from_raw(frame)
    for stage in build_pipeline(options):
        stage = lens if stage.name == "lens" else stage
        if stage.enabled:
            work = stage.apply(work)
    return work.pixels, work


@pytest.fixture(scope="module")
def canon_frame(tmp_path_factory):
    """A chart DNG named as a 5D Mark III with the 24-70 at 24 mm, f/2.8."""
    path = tmp_path_factory.mktemp("lens") / "canon.dng"
    return read_raw(write_chart_dng(path, make="Canon", model="Canon EOS 5D Mark III",
                                    lens_model=ZOOM, focal_length=24.0, fnumber=2.8))


def test_lens_off_is_the_pipeline_without_it(canon_frame) -> None:
    options = DevelopOptions(demosaic="bilinear", lens="off")
    reference, _ = develop(canon_frame, options)
    off = Lens("off")
    assert not off.enabled and off.describe() == "lens: off"
    pixels, work = _develop_with(canon_frame, options, off)
    assert pixels.tobytes() == reference.tobytes()


def test_auto_without_profile_or_model_changes_nothing_quietly(tmp_path: Path) -> None:
    # auto is the default: no profile and no model leave the image as it is, without a
    # line per file; --lens profile says that no profile matched.
    frame = read_raw(write_chart_dng(tmp_path / "unknown.dng", lens_model="Mystery 50mm"))
    options = DevelopOptions(demosaic="bilinear", lens="off")
    reference, _ = develop(frame, options)
    empty = install(tmp_path / "models", {}, task="lens")
    stage = Lens("auto", Engine("cpu", threads=1, registry=empty), empty)
    pixels, work = _develop_with(frame, options, stage)
    assert pixels.tobytes() == reference.tobytes()
    assert not any(n.startswith("lens") for n in work.notices)
    assert isinstance(work.optics, OpticsMap)
    _, explicit = _develop_with(frame, options, Lens("profile"))
    notices = " | ".join(explicit.notices)
    assert "lens profile:" in notices and "profile corrections skipped" in notices


def test_deblur_without_a_model_is_an_error(tmp_path: Path, canon_frame) -> None:
    empty = install(tmp_path / "models", {}, task="lens")
    stage = Lens("deblur", Engine("cpu", threads=1, registry=empty), empty)
    with pytest.raises(ModelNotFoundError, match="lens"):
        _develop_with(canon_frame, DevelopOptions(demosaic="bilinear"), stage)


def test_profile_mode_corrects_a_known_lens(canon_frame) -> None:
    lensfunpy()
    options = DevelopOptions(demosaic="bilinear", lens="off")
    stage = Lens("profile")
    assert "lensfun profile" in stage.describe()
    pixels, work = _develop_with(canon_frame, options, stage)
    reference, _ = develop(canon_frame, options)
    assert not any("lens profile" in n for n in work.notices)
    # 24 mm f/2.8 darkens the corners by over a stop: the corrected corner is brighter.
    assert pixels[:6, :6].mean() > 1.2 * reference[:6, :6].mean()
    assert pixels.shape == reference.shape


def test_stage_runs_the_model_with_the_frame_optics(lens_registry, canon_frame) -> None:
    engine = Engine("cpu", threads=1, registry=lens_registry)
    stage = Lens("deblur", engine, lens_registry, tile=64)
    options = DevelopOptions(demosaic="bilinear")
    _, work = _develop_with(canon_frame, options, stage)
    # The 96 x 144 chart named as a 5D Mark III means a 250 um pitch: not believed.
    assert work.optics.blind
    assert any("deblurring blind" in n for n in work.notices)


def test_auto_runs_profile_then_network(lens_registry, tmp_path: Path) -> None:
    lensfunpy()
    # The EXIF focal-plane resolution states the pitch, so the optics map is not blind.
    frame = read_raw(write_chart_dng(tmp_path / "pitch.dng", make="Canon",
                                     model="Canon EOS 5D Mark III", lens_model=ZOOM,
                                     focal_length=24.0, fnumber=2.8, pixel_pitch_um=6.25))
    options = DevelopOptions(demosaic="bilinear")
    engine = Engine("cpu", threads=1, registry=lens_registry)
    profile_only, _ = _develop_with(frame, options, Lens("profile"))
    both, work = _develop_with(frame, options, Lens("auto", engine, lens_registry))
    assert not work.optics.blind and not any("skipped" in n for n in work.notices)
    # The shift model adds 0.01 x the Airy radius: every unclipped pixel is brighter.
    assert both.mean() > profile_only.mean()
    assert "profile" in Lens("auto").describe() and "deblur" in Lens("auto").describe()


def test_auto_does_not_deblur_blind(lens_registry, canon_frame) -> None:
    lensfunpy()
    options = DevelopOptions(demosaic="bilinear")
    engine = Engine("cpu", threads=1, registry=lens_registry)
    profile_only, _ = _develop_with(canon_frame, options, Lens("profile"))
    auto, work = _develop_with(canon_frame, options, Lens("auto", engine, lens_registry))
    assert work.optics.blind and auto.tobytes() == profile_only.tobytes()
    assert not any("deblurring blind" in n for n in work.notices)
