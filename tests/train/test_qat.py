"""Quantisation-aware fine-tuning: the rounding, its match with onnxruntime's int8 graph,
and a tiny run from a checkpoint to a quantised variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from nnip.core.models import Registry  # noqa: E402
from nnip.train.export import split_prelu, to_onnx  # noqa: E402
from nnip.train.qat import (  # noqa: E402
    ActivationRange,
    attach,
    camera_mosaic,
    develop_fidelity,
    develop_matrices,
    in_output_colours,
    fake_quant_weight,
    main as qat_main,
    plain_state,
    quantised_modules,
)
from nnip.train.quantize import QuantizeOptions, quantize_file, quantize_model  # noqa: E402
from nnip.train.raw_tasks import DemosaicNet, mosaic_packed  # noqa: E402
from nnip.train.tasks import get_task  # noqa: E402

from test_raw_tasks import _smooth_colour, train_tiny_demosaic  # noqa: E402

TINY = {"variant": "tiny", "channels": 8, "blocks": 2, "slopes": "channel"}


def _tiny_plain(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = DemosaicNet(8, 2, 2.0, "channel")
    with torch.no_grad():  # a network that does something: random, non-zero branches
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.plain().eval()


def _mosaics(count: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [mosaic_packed(_smooth_colour(rng, size))[None] for _ in range(count)]


def test_weights_round_per_output_channel_to_int8_levels():
    weight = torch.randn(6, 4, 3, 3) * torch.tensor([0.01, 0.1, 1, 2, 5, 10]).view(-1, 1, 1, 1)
    rounded = fake_quant_weight(weight)
    scale = weight.abs().amax(dim=(1, 2, 3)) / 127
    levels = rounded / scale.view(-1, 1, 1, 1)
    np.testing.assert_allclose(levels, levels.round(), atol=1e-3)
    assert levels.abs().max() <= 127 + 1e-3
    assert torch.all((rounded - weight).abs() <= scale.view(-1, 1, 1, 1) / 2 + 1e-6)
    # the straight-through gradient reaches every weight
    weight.requires_grad_(True)
    fake_quant_weight(weight).sum().backward()
    assert torch.all(weight.grad == 1)


def test_transposed_conv_weights_round_along_their_output_axis():
    weight = torch.randn(4, 6, 2, 2) * torch.tensor([0.01, 0.1, 1, 2, 5, 10]).view(1, -1, 1, 1)
    rounded = fake_quant_weight(weight, axis=1)
    scale = weight.abs().amax(dim=(0, 2, 3)) / 127
    levels = rounded / scale.view(1, -1, 1, 1)
    np.testing.assert_allclose(levels, levels.round(), atol=1e-3)
    assert torch.all((rounded - weight).abs() <= scale.view(1, -1, 1, 1) / 2 + 1e-6)


def test_activation_range_holds_zero_and_rounds_within_half_a_step():
    act = ActivationRange("a", percentile=100.0)
    values = torch.linspace(0.5, 3.0, 1000)
    assert act(values) is values  # calibrating: values pass unchanged
    act.freeze()
    low, high = act.bounds()
    assert low == pytest.approx(0.0, abs=1e-9) and high == pytest.approx(3.0, rel=1e-3)
    rounded = act(values)
    assert torch.all((rounded - values).abs() <= act.scale / 2 + 1e-6)
    assert float(act(torch.tensor([5.0, -1.0]))[0]) == pytest.approx(high)
    assert float(act(torch.tensor([5.0, -1.0]))[1]) == pytest.approx(0.0, abs=1e-9)


def test_rounded_modules_follow_the_quantisers_float_ends():
    plain = _tiny_plain()
    spec = get_task("demosaic").export_spec({**TINY})
    rounding = quantised_modules(plain, spec, float_convs=1)
    # body: conv 0 (reads the input), convs 1-2 (hidden), conv 3 (tail); skip reads the input
    assert rounding.weights == {"body.convs.1": 0, "body.convs.2": 0}
    assert set(rounding.acts) == {"body.acts.0", "body.acts.1", "body.acts.2"}
    assert rounding.acts["body.acts.0"]["input"] == "/body/convs.0/Conv_output_0"
    assert rounding.acts["body.acts.2"]["output"] == "/body/acts.2/PRelu_output_0"
    # a conv's input is the activation before it, its output the activation's input
    assert rounding.conv_io["body.convs.1"] == ("/body/acts.0/PRelu_output_0", "/body/convs.1/Conv_output_0")
    assert len(rounding.tensors()) == 9
    everything = quantised_modules(plain, spec, float_convs=0).weights
    assert set(everything) == {"body.convs.0", "body.convs.1", "body.convs.2", "body.convs.3", "skip"}


def test_rounded_network_computes_what_onnxruntime_int8_computes(tmp_path: Path):
    """The int8 graph quantised with the fine-tune's ranges (as ``--weights`` does) must
    compute what the rounded torch network computes, far closer than to the float one."""
    import onnxruntime as ort

    plain = _tiny_plain()
    spec = get_task("demosaic").export_spec({**TINY})
    source = tmp_path / "tiny.onnx"
    source.write_bytes(split_prelu(to_onnx(plain, spec)))
    reference = plain_state(plain)
    rounding = quantised_modules(plain, spec, 1)
    hooks = attach(plain, rounding, percentile=99.9)
    calibration = _mosaics(8)
    with torch.no_grad():
        for mosaic in calibration:
            plain(torch.from_numpy(mosaic))
    hooks.freeze()
    ranges = hooks.state()
    target = tmp_path / "tiny-int8.onnx"
    quantize_file(source, target, [[m[0]] for m in calibration], QuantizeOptions(float_convs=1, samples=8),
                  ranges)

    float_run = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    int8_run = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    to_int8, to_float = [], []
    for mosaic in _mosaics(4, size=40):
        int8 = int8_run.run(None, {"mosaic": mosaic})[0]
        exact = float_run.run(None, {"mosaic": mosaic})[0]
        with torch.no_grad():
            rounded = plain(torch.from_numpy(mosaic)).numpy()
        to_int8.append(np.mean((rounded - int8) ** 2))
        to_float.append(np.mean((exact - int8) ** 2))
    assert np.mean(to_int8) < np.mean(to_float) / 10  # >= 10 dB closer to int8 than float is
    hooks.remove()
    assert all(torch.equal(v, reference[k]) for k, v in plain.state_dict().items())


def test_qat_run_resumes_and_its_weights_become_the_int8_variant(tmp_path, monkeypatch):
    models_dir, photos, run = train_tiny_demosaic(tmp_path, monkeypatch, blocks=2, steps=3)
    cache = str(tmp_path / "cache")

    qat = tmp_path / "qat"
    common = ["--out", str(qat), "--data", str(photos), "--cache", cache, "--threads", "1", "--calibration-crop", "16",
              "--minutes", "2", "--lr", "1e-4"]
    assert qat_main([str(run / "last.pt"), *common, "--max-steps", "2"]) == 0
    assert torch.load(qat / "last.pt", weights_only=False)["step"] == 2
    assert qat_main([str(run / "last.pt"), *common, "--max-steps", "3", "--resume", "--distill"]) == 0
    last = torch.load(qat / "last.pt", weights_only=False)
    points = 3 if last["config"]["slopes"] == "channel" else 2  # x, relu branch, sum / in, out
    assert last["step"] == 3 and len(last["ranges"]) == 3 * points  # three PReLUs
    records = [json.loads(line) for line in (qat / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and {"val_psnr_db_float", "val_psnr_db"} <= set(records[0])
    # --init: another fine-tune's weights and, the rounded tensors being the same, its ranges
    follow = tmp_path / "qat-follow"
    follow_args = [a if a != str(qat) else str(follow) for a in common]
    assert qat_main([str(run / "last.pt"), *follow_args, "--max-steps", "1", "--init", str(qat / "best.pt")]) == 0
    followed = torch.load(follow / "last.pt", weights_only=False)["ranges"]
    initial = torch.load(qat / "best.pt", weights_only=False)["ranges"]
    assert set(followed) == set(initial)
    assert all(followed[t] == pytest.approx(initial[t], rel=1e-9, abs=1e-12) for t in initial)
    weights = qat / "float" / "demosaic.onnx"
    assert weights.exists()

    spec = quantize_model("demosaic", models_dir, None, QuantizeOptions(samples=8, check_samples=2, crop=16,
                                                                       images=3),
                          weights=weights, data_dirs=[photos])
    assert (spec.name, spec.variant_of, spec.precision) == ("demosaic-int8", "demosaic", "int8")
    quantisation = spec.provenance["quantization"]
    assert quantisation["weights_sha256"] != Registry(models_dir).get("demosaic").sha256
    assert "nnip.train.qat" in quantisation["fine_tune"]["qat_command"]
    assert 0 <= quantisation["fine_tune"]["qat"]["steps"] <= 3
    assert quantisation["trained_ranges"] == 3 * points  # the fine-tune's ranges, by tensor name


def test_equalisation_keeps_the_function_and_evens_the_channels():
    from nnip.train.equalize import channel_ranges, equalize_stack

    plain = _tiny_plain(seed=2)
    convs = list(plain.body.convs)
    with torch.no_grad():  # channels of very different sizes
        convs[0].weight.mul_(torch.linspace(0.05, 3.0, convs[0].out_channels).view(-1, 1, 1, 1))
        convs[0].bias.mul_(torch.linspace(0.05, 3.0, convs[0].out_channels))
    inputs = [[m[0]] for m in _mosaics(4)]
    probe = torch.from_numpy(inputs[0][0])[None]
    with torch.no_grad():
        before = plain(probe)
    spread = channel_ranges(convs[:-1], plain, inputs)
    scales = equalize_stack(convs, spread, strength=1.0)
    with torch.no_grad():
        np.testing.assert_allclose(plain(probe).numpy(), before.numpy(), atol=1e-5)
    after = channel_ranges(convs[:-1], plain, inputs)
    assert all(torch.all(s >= 1.0 - 1e-6) for s in scales)
    assert float(spread[0].min() / spread[0].max()) < 0.2
    np.testing.assert_allclose(after[0].numpy(), float(spread[0].max()), rtol=1e-3)


def test_learnt_range_rounds_as_its_bounds_tell_onnxruntime():
    """A trained range (LSQ+) gets gradients, and the bounds handed to the quantiser give
    back exactly the rounding the fine-tune trained with."""
    act = ActivationRange("a", percentile=100.0)
    act(torch.linspace(-0.3, 2.0, 500))
    act.freeze()
    values = torch.linspace(-1.0, 3.0, 2001)
    fixed = act(values)
    scale, zero = act.learnable()
    assert torch.equal(act(values), fixed)  # learnable, not yet moved: the same rounding
    act(values).pow(2).sum().backward()  # clipped values pull on the range
    assert float(scale.grad.abs()) > 0 and float(zero.grad.abs()) > 0
    with torch.no_grad():
        scale.add_(0.1)
        zero.add_(3.4)  # zero points are whole uint8 steps once rounded
    trained = act(values)
    assert not torch.allclose(trained, fixed)
    again = ActivationRange("a", percentile=100.0)
    again.set_range(*act.bounds())
    assert torch.allclose(again(values), trained, atol=1e-6)


def test_qat_run_can_train_its_ranges_and_resume(tmp_path, monkeypatch):
    models_dir, photos, run = train_tiny_demosaic(tmp_path, monkeypatch, blocks=2, steps=1)
    qat = tmp_path / "qat"
    common = [str(run / "last.pt"), "--out", str(qat), "--data", str(photos), "--cache", str(tmp_path / "cache"),
              "--threads", "1", "--calibration-crop", "16", "--minutes", "2", "--distill", "--range-lr", "0.05"]
    assert qat_main([*common, "--max-steps", "0"]) == 0
    calibrated = torch.load(qat / "last.pt", weights_only=False)["ranges"]
    assert qat_main([*common, "--max-steps", "3", "--resume"]) == 0
    last = torch.load(qat / "last.pt", weights_only=False)
    assert last["step"] == 3 and last["qat"]["range_lr"] == 0.05
    assert set(last["ranges"]) == set(calibrated)
    assert any(last["ranges"][t] != pytest.approx(calibrated[t], rel=1e-6) for t in calibrated)
    assert len(last["optimizer"]["param_groups"]) == 3  # weights, log scales, zero points


def test_qat_for_a_model_not_named_after_its_task(tmp_path, monkeypatch):
    """``--model``: calibration crops and the float file follow the installed model's name
    (an upscaler ships as upscale-fast, not as its task's name)."""
    models_dir, photos, run = train_tiny_demosaic(tmp_path, monkeypatch, blocks=1, steps=1, name="demosaic-mine")
    qat = tmp_path / "qat"
    assert qat_main([str(run / "last.pt"), "--model", "demosaic-mine", "--out", str(qat), "--data", str(photos),
                     "--cache", str(tmp_path / "cache"), "--threads", "1", "--calibration-crop", "16",
                     "--minutes", "2", "--distill", "--max-steps", "1"]) == 0
    weights = qat / "float" / "demosaic-mine.onnx"
    spec = quantize_model("demosaic-mine", models_dir, None, QuantizeOptions(samples=8, check_samples=2, crop=16,
                                                                            images=3),
                          weights=weights, data_dirs=[photos])
    assert (spec.name, spec.variant_of) == ("demosaic-mine-int8", "demosaic-mine")


def test_develop_colours_amplify_a_chromatic_error_not_a_grey_one():
    """--distill-colour compares in the develop's output colours: the camera matrices keep
    white white, leave an error shared by R, G and B alone and amplify one that differs."""
    matrices = develop_matrices(16)
    assert torch.allclose(matrices.sum(dim=2), torch.ones(16, 3), atol=1e-5)
    torch.manual_seed(0)
    image = 0.2 + 0.6 * torch.rand(1, 3, 16, 16)
    assert torch.allclose(in_output_colours(image, torch.eye(3)), image, atol=1e-6)
    grey_error = torch.full((1, 1, 16, 16), 0.01).expand(1, 3, 16, 16)
    colour_error = torch.tensor([0.01, -0.01, 0.01]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    grey = colour = 0.0
    for matrix in matrices:
        reference = in_output_colours(image, matrix)
        grey += float((in_output_colours(image + grey_error, matrix) - reference).pow(2).mean())
        colour += float((in_output_colours(image + colour_error, matrix) - reference).pow(2).mean())
    assert colour > 2.0 * grey  # the same error energy in the camera's RGB


def test_camera_mosaic_is_the_mosaic_of_the_scene_in_the_camera_colours():
    """--distill-colour feeds what the develop feeds: the crop taken back through the
    inverse of the camera's matrix, then mosaicked and packed exactly as training does."""
    from nnip.simulate.color import linear_to_srgb, srgb_to_linear

    rgb = _smooth_colour(np.random.default_rng(3), 16)
    batch = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    assert torch.allclose(camera_mosaic(batch, torch.eye(3))[0], torch.from_numpy(mosaic_packed(rgb)), atol=1e-5)
    matrix = develop_matrices(4)[1]
    camera = srgb_to_linear(rgb.astype(np.float64)) @ np.linalg.inv(matrix.double().numpy()).T
    expected = mosaic_packed(linear_to_srgb(np.clip(camera, 0.0, 1.0)).astype(np.float32))
    assert torch.allclose(camera_mosaic(batch, matrix)[0], torch.from_numpy(expected), atol=1e-4)
    # A typical camera sees less saturated colours than sRGB: its planes lie closer together.
    srgb, camera = camera_mosaic(batch, torch.eye(3))[0], camera_mosaic(batch, develop_matrices(4)[0])[0]
    assert float((camera[0] - camera[3]).abs().mean()) < 0.8 * float((srgb[0] - srgb[3]).abs().mean())


def test_develop_fidelity_scores_a_network_against_the_float_one():
    plain, teacher = _tiny_plain(0), _tiny_plain(0)
    val = [((None,), _smooth_colour(np.random.default_rng(s), 16).transpose(2, 0, 1)) for s in range(2)]
    matrices = develop_matrices(4)
    assert develop_fidelity(plain, teacher, val, matrices) > 150.0  # the same network
    with torch.no_grad():
        next(plain.parameters()).add_(0.01)
    assert 20.0 < develop_fidelity(plain, teacher, val, matrices) < 150.0


def test_distill_colour_run_keeps_its_own_best_and_needs_distill(tmp_path, monkeypatch, capsys):
    models_dir, photos, run = train_tiny_demosaic(tmp_path, monkeypatch, blocks=1, steps=1)
    qat = tmp_path / "qat"
    common = [str(run / "last.pt"), "--out", str(qat), "--data", str(photos), "--cache", str(tmp_path / "cache"),
              "--threads", "1", "--calibration-crop", "16", "--minutes", "2", "--distill-colour"]
    with pytest.raises(ValueError, match="--distill-colour needs --distill"):
        qat_main([*common, "--max-steps", "0"])
    assert qat_main([*common, "--distill", "--max-steps", "2"]) == 0
    last = torch.load(qat / "last.pt", weights_only=False)
    assert last["val_metric"] == "develop_fidelity_db" and last["qat"]["distill_colour"]
    lines = [json.loads(line) for line in (qat / "metrics.jsonl").read_text().splitlines()]
    assert {line["val_metric"] for line in lines} == {"develop_fidelity_db"}
    # Rounded against float, not against the truth: far above a demosaicker's PSNR to the truth.
    assert last["best_psnr"] > lines[0]["val_psnr_db_float"]
