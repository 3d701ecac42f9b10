"""Quantisation-aware fine-tuning (QAT): int8 variants that keep the float model's quality.

Static int8 quantisation after training (:mod:`nnip.train.quantize`) costs the demosaic
model 0.07-0.15 dB and the denoiser far more; on a CPU with VNNI the int8 file runs 2-2.6x
faster. QAT closes the gap the standard way: the trained network is fine-tuned while every
tensor the int8 graph will round is rounded in the forward pass too (a straight-through
estimator passes the gradient), so the weights learn to live with the rounding.

``python -m nnip.train.qat checkpoints/demosaic-quality/last.pt --minutes 60 --out runs/demosaic-qat``
does, in order:

1. rebuild the task's network from the checkpoint and fold it into the exported form
   (``model.plain()``), which is what gets quantised: the fine-tune moves those weights;
2. find what onnxruntime's QDQ quantisation will round, from the exported ONNX graph
   itself (the same :func:`nnip.train.quantize.float_ends` rule keeps ``--float-convs``
   convolutions at each end in float): every other convolution's weights (int8, one
   symmetric scale per output channel; axis 1 of a transposed conv) with its input and
   output, and every quantised activation's input, ``relu((a - 1) x)`` branch and sum
   (uint8, one asymmetric range per tensor) - the three-pass per-channel PReLU as the
   export writes it - or, for a one-slope PReLU (a LeakyRelu in the graph), its input and
   output. Ranges are kept by the graph's tensor names. What the graph rounds outside
   modules (a U-Net's skip sums, a denoiser's input normalisation) is not rounded here;
3. calibrate those ranges on training batches with onnxruntime's Percentile rule
   (``(100 - p) / 2`` % cut at each side, the range widened to hold 0), then keep them fixed,
   or (``--range-lr``) train them with the weights (LSQ+: scale and zero point get the
   rounding's gradient); the quantiser is then given the trained ranges by tensor name;
4. fine-tune with the task's own data and loss, or (``--distill``) to the float source
   network's output, so that only the rounding is trained away and the float function
   cannot drift (``--distill-colour``, a demosaicker's: the input taken into random
   simulated cameras' colours and the error compared after their colour matrices, as the
   develop runs it, where they amplify chroma error; cosine learning rate from ``--lr``),
   validating the *rounded* network on the task's held-out crops (against the truth or,
   with ``--distill-colour``, against the float network in the develop's colours);
   ``last.pt`` / ``best.pt`` (the folded weights, small) every few minutes; ``--resume``
   continues, ``--init`` starts from another fine-tune's weights;
5. write the best weights, unrounded, as a float ONNX file ``OUT/float/NAME.onnx`` through
   the exporter (same graph, names and parity check as the shipped model).

Then ``python -m nnip.train.quantize NAME --weights OUT/float/NAME.onnx`` quantises those
weights into ``NAME-int8`` (its ranges calibrated again by onnxruntime: the fine-tuned
network has learnt to be robust to rounding at ranges like these), measured against the
installed float ``NAME``. Whether it ships is, as always, the benchmark's decision.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from nnip.train.export import export_model, split_prelu, to_onnx
from nnip.train.loop import _as_inputs, _loader, _stop_requests, git_commit, save_atomic, validate
from nnip.core.models import Registry
from nnip.train.quantize import QuantizeOptions, calibration_inputs, kept_in_float, name_nodes
from nnip.train.tasks import Task, default_data_dirs, get_task, run_config

__all__ = ["ActivationRange", "QatHooks", "QatOptions", "Rounding", "fake_quant_weight",
           "camera_mosaic", "develop_fidelity", "develop_matrices", "in_output_colours",
           "quantised_modules", "attach", "plain_state", "finetune", "main"]

log = logging.getLogger(__name__)

_UINT8 = (0, 255)
_INT8_SYMMETRIC = 127  # onnxruntime's symmetric int8 weights use [-127, 127]
_QUANTILE_LIMIT = 1 << 24


def fake_quant_weight(weight: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """``weight`` rounded to int8 with one symmetric scale per output channel (``axis``: 0
    for a Conv2d, 1 for a ConvTranspose2d, as onnxruntime quantises them)."""
    absmax = weight.detach().abs().amax(dim=tuple(d for d in range(weight.ndim) if d != axis))
    scale = (absmax / _INT8_SYMMETRIC).clamp_min(1e-12).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, axis, -_INT8_SYMMETRIC,
                                                  _INT8_SYMMETRIC)


class _WeightRounding(nn.Module):
    """A parametrisation: the conv sees its weight rounded, the optimiser the float one."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(weight, self.axis)


class ActivationRange:
    """One uint8 rounding point: samples values while calibrating, then rounds to its range."""

    def __init__(self, name: str, percentile: float, per_batch: int = 1 << 18) -> None:
        self.name, self.percentile, self.per_batch = name, percentile, per_batch
        self.samples: list[torch.Tensor] = []
        self.scale: float | None = None
        self.zero_point = 0
        self.log_scale: nn.Parameter | None = None  # set by :meth:`learnable`
        self.zero: nn.Parameter | None = None

    def observe(self, x: torch.Tensor) -> None:
        flat = x.detach().flatten()
        if flat.numel() > self.per_batch:
            index = torch.randint(0, flat.numel(), (self.per_batch,), device=flat.device)
            flat = flat[index]
        self.samples.append(flat.float().cpu())

    def freeze(self) -> None:
        """Fix the range from the samples: onnxruntime's asymmetric Percentile rule."""
        values = torch.cat(self.samples)
        if values.numel() > _QUANTILE_LIMIT:  # torch.quantile's input limit: a fixed subsample
            generator = torch.Generator().manual_seed(0)
            values = values[torch.randperm(values.numel(), generator=generator)[:_QUANTILE_LIMIT]]
        cut = (100.0 - self.percentile) / 200.0
        low = float(torch.quantile(values, cut)) if cut > 0 else float(values.min())
        high = float(torch.quantile(values, 1.0 - cut)) if cut > 0 else float(values.max())
        self.set_range(low, high)
        self.samples = []

    def set_range(self, low: float, high: float) -> None:
        low, high = min(low, 0.0), max(high, 0.0)  # the range holds 0, as onnxruntime's does
        self.scale = max((high - low) / (_UINT8[1] - _UINT8[0]), 1e-12)
        self.zero_point = int(round(_UINT8[0] - low / self.scale))
        if self.log_scale is not None and self.zero is not None:
            with torch.no_grad():
                self.log_scale.fill_(math.log(self.scale))
                self.zero.fill_(float(self.zero_point))

    def learnable(self) -> list[nn.Parameter]:
        """Make the fixed range trainable (LSQ+, Bhalgat et al. 2020): its scale, as a log so
        that one learning rate suits tensors of any magnitude, and its zero point get the
        gradient of the rounding's clipping and step size; returns the two parameters."""
        assert self.scale is not None, "calibrate (freeze) or load the range first"
        self.log_scale = nn.Parameter(torch.tensor([math.log(self.scale)]))
        self.zero = nn.Parameter(torch.tensor([float(self.zero_point)]))
        return [self.log_scale, self.zero]

    def bounds(self) -> tuple[float, float]:
        """(low, high) in float units: what onnxruntime, given them as rmin / rmax, turns
        back into this scale and (integer) zero point."""
        assert self.scale is not None
        scale, zero_point = self.scale, self.zero_point
        if self.log_scale is not None and self.zero is not None:
            scale = float(self.log_scale.detach().exp())
            zero_point = int(min(max(round(float(self.zero.detach())), _UINT8[0]), _UINT8[1]))
        return (_UINT8[0] - zero_point) * scale, (_UINT8[1] - zero_point) * scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            self.observe(x)
            return x
        if self.log_scale is not None and self.zero is not None:
            return torch._fake_quantize_learnable_per_tensor_affine(
                x, self.log_scale.exp(), self.zero, *_UINT8, 1.0)
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, *_UINT8)


def _module_path(node_name: str, modules: Mapping[str, nn.Module]) -> str:
    """The module a node comes from: ``/body/convs.3/Conv`` (the TorchScript exporter's
    scope names) -> ``body.convs.3``; ``/body/acts.0/PRelu/MulSlope`` (a node the PReLU
    rewrite made) -> ``body.acts.0``: the longest prefix that names a module."""
    parts = [p for p in node_name.split("/") if p]
    for end in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return ""


@dataclass(frozen=True)
class Rounding:
    """What the int8 graph rounds, by module path, each activation as the ONNX tensor it is
    (ranges are kept by tensor name: the quantiser's ``TensorQuantOverrides`` take them so,
    and a tensor two hooks see - a conv's output and the activation's input - is one range).

    ``weights``: quantised convolutions -> weight axis of their output channels;
    ``conv_io``: the same -> (input tensor, output tensor); ``acts``: quantised PReLUs ->
    point (``input``, ``branch``, ``output``) -> tensor.
    """

    weights: Mapping[str, int]
    conv_io: Mapping[str, tuple[str, str]]
    acts: Mapping[str, Mapping[str, str]]

    def tensors(self) -> set[str]:
        return {t for pair in self.conv_io.values() for t in pair} | {
            t for points in self.acts.values() for t in points.values()}


def quantised_modules(plain: nn.Module, export_spec: Any, float_convs: int, float_nodes: str = "") -> Rounding:
    """What :func:`nnip.train.quantize.quantize_file` will round in ``plain``'s exported graph
    (the quantiser's own rule: :func:`nnip.train.quantize.kept_in_float`)."""
    graph = name_nodes(onnx.load_from_string(split_prelu(to_onnx(plain, export_spec))))
    kept = set(kept_in_float(graph, float_convs, float_nodes))
    weights, conv_io, acts, float_acts = {}, {}, {}, set()
    modules = dict(plain.named_modules())
    for node in graph.graph.node:
        path = _module_path(node.name, modules)
        if node.op_type in _CONV_AXIS and node.name not in kept:
            weights[path] = _CONV_AXIS[node.op_type]
            conv_io[path] = (node.input[0], node.output[0])
        elif node.op_type in _ACTIVATION_NODES and isinstance(modules.get(path), nn.PReLU):
            if node.name in kept:
                float_acts.add(path)
            acts.setdefault(path, {}).update(_ACTIVATION_NODES[node.op_type](node))
    return Rounding(weights, conv_io, {k: v for k, v in acts.items() if k not in float_acts})


_CONV_AXIS = {"Conv": 0, "ConvTranspose": 1}
#: The graph's activation nodes (the export's PReLU rewrites) -> {point: tensor}.
_ACTIVATION_NODES: Mapping[str, Callable[[Any], dict[str, str]]] = {
    "Mul": lambda node: {"input": node.input[0]},  # (a - 1) * x: x is the conv output
    "Relu": lambda node: {"branch": node.output[0]},
    "Add": lambda node: {"output": node.output[0]},  # x + relu(...)
    "LeakyRelu": lambda node: {"input": node.input[0], "output": node.output[0]},
}


@dataclass
class QatHooks:
    """The rounding attached to a folded network; :meth:`remove` takes it off again."""

    model: nn.Module
    ranges: dict[str, ActivationRange] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)
    convs: list[nn.Module] = field(default_factory=list)

    def freeze(self) -> None:
        for value in self.ranges.values():
            value.freeze()

    def state(self) -> dict[str, tuple[float, float]]:
        return {name: r.bounds() for name, r in self.ranges.items()}

    def load_state(self, state: Mapping[str, Sequence[float]]) -> None:
        for name, (low, high) in state.items():
            self.ranges[name].set_range(float(low), float(high))

    def learnable(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Every range made trainable: (log scales, zero points)."""
        pairs = [r.learnable() for _, r in sorted(self.ranges.items())]
        return [scale for scale, _ in pairs], [zero for _, zero in pairs]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        for conv in self.convs:
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)
        self.handles, self.convs = [], []


def _round_constant(values: torch.Tensor) -> torch.Tensor:
    """A constant input of a quantised Mul (the PReLU's ``a - 1``), rounded as onnxruntime
    rounds it: uint8 over its own min..max (holding 0)."""
    low = min(float(values.detach().min()), 0.0)
    high = max(float(values.detach().max()), 0.0)
    scale = max((high - low) / (_UINT8[1] - _UINT8[0]), 1e-12)
    return torch.fake_quantize_per_tensor_affine(values, scale, int(round(-low / scale)), *_UINT8)


def _activation_hook(points: Mapping[str, ActivationRange]) -> Callable:
    """The forward hook of a quantised PReLU: its output as the int8 graph computes it."""

    def hook(module: nn.PReLU, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> torch.Tensor:
        x = points["input"](inputs[0])
        if module.num_parameters == 1:  # a LeakyRelu: rounded in and out
            return points["output"](F.prelu(x, module.weight))
        slope = _round_constant(module.weight - 1.0).view(1, -1, *([1] * (x.ndim - 2)))
        # x + relu((a - 1) x): the Mul's output is rounded with the Relu folded into its range.
        return points["output"](x + points["branch"](torch.relu(slope * x)))

    return hook


def _conv_hooks(io: tuple[ActivationRange, ActivationRange]) -> tuple[Callable, Callable]:
    """Forward pre-hook and hook of a quantised convolution: its input and output rounded
    (idempotent where the producer or consumer already rounds the same tensor)."""
    rounded_in, rounded_out = io

    def pre_hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (rounded_in(inputs[0]), *inputs[1:])

    def hook(_module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return rounded_out(output)

    return pre_hook, hook


def attach(model: nn.Module, rounding: Rounding, percentile: float = 99.999) -> QatHooks:
    """Round ``rounding``'s weights and activations in ``model``'s forward pass.

    The activation ranges start empty: the first forward passes only record values, until
    :meth:`QatHooks.freeze` (or :meth:`QatHooks.load_state`) fixes them.
    """
    hooks = QatHooks(model)
    hooks.ranges.update({t: ActivationRange(t, percentile) for t in sorted(rounding.tensors())})
    modules = dict(model.named_modules())
    missing = sorted((set(rounding.weights) | set(rounding.acts)) - set(modules))
    if missing:
        raise ValueError(f"the graph names modules the network lacks: {', '.join(missing)}")
    for path, axis in sorted(rounding.weights.items()):
        conv = modules[path]
        parametrize.register_parametrization(conv, "weight", _WeightRounding(axis))
        hooks.convs.append(conv)
        pre_hook, hook = _conv_hooks(tuple(hooks.ranges[t] for t in rounding.conv_io[path]))
        hooks.handles += [conv.register_forward_pre_hook(pre_hook), conv.register_forward_hook(hook)]
    for path, points in sorted(rounding.acts.items()):
        act = modules[path]
        if not isinstance(act, nn.PReLU):
            raise ValueError(f"{path} is a {type(act).__name__}; QAT handles PReLU activations")
        ranges = {point: hooks.ranges[tensor] for point, tensor in points.items()}
        hooks.handles.append(act.register_forward_hook(_activation_hook(ranges)))
    return hooks


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The folded network's float weights under their own names (rounding parametrisations
    stripped from the keys), as the export and a fresh ``plain()`` network know them."""
    state = {}
    for key, value in model.state_dict().items():
        state[key.replace("parametrizations.weight.original", "weight")] = value.detach().clone()
    return state


@dataclass
class QatOptions:
    """One fine-tune: where from, where to, for how long."""

    checkpoint: Path
    out: Path
    minutes: float
    lr: float = 2e-5
    float_convs: int = 1
    float_nodes: str = ""
    percentile: float = 99.999
    calibration_crop: int = 96  # side of the calibration crops (the quantiser's default)
    threads: int = 2
    workers: int = 1
    resume: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    data_dirs: Sequence[Path] = ()
    cache_dir: Path = Path("runs/cache/teachers")
    checkpoint_minutes: float = 3.0
    init: Path | None = None  # start from another fine-tune's weights (its last.pt / best.pt)
    distill: bool = False  # match the float source network's output instead of the truth
    range_lr: float = 0.0  # > 0: the activation ranges are trained too (LSQ+), at this rate
    model: str | None = None  # the installed model this is for (default: the task's name)
    distill_colour: bool = False  # distil in the develop's output colours (random cameras' matrices)
    command: str = ""
    max_steps: int | None = None  # for tests


def _source(options: QatOptions) -> tuple[Task, dict[str, Any], nn.Module, dict[str, Any]]:
    """(task, config, folded network with the source weights, source checkpoint)."""
    source = torch.load(options.checkpoint, map_location="cpu", weights_only=False)
    task = get_task(source["task"])
    config = {**run_config(source["config"]), **dict(options.overrides)}
    model = task.build_model(config)
    model.load_state_dict(source["model"])
    return task, config, model.plain().float().train(), source


def finetune(options: QatOptions) -> Path:
    """Run the fine-tune of the module notes; return the float ONNX of its best weights."""
    deadline = time.monotonic() + options.minutes * 60.0
    options.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    task, config, plain, source = _source(options)
    teacher = copy.deepcopy(plain).eval().requires_grad_(False) if options.distill else None
    init = torch.load(options.init, map_location="cpu", weights_only=False) if options.init else None
    if init is not None:  # an earlier fine-tune (with other data, float nodes, ...)
        plain.load_state_dict(init["model"])
    rounding = quantised_modules(plain, task.export_spec(config), options.float_convs, options.float_nodes)
    previous = _read(options.out / "last.pt") if options.resume else None
    if previous is not None:
        plain.load_state_dict(previous["model"])
    data = task.build_data(config, options.data_dirs, options.cache_dir, 7919 + (previous or {}).get("step", 0))
    float_psnr = validate(plain, task, data.val, torch.device("cpu")) if previous is None else math.nan
    hooks = attach(plain, rounding, options.percentile)
    colour = develop_matrices(64) if options.distill_colour else None
    if colour is not None and (teacher is None or task.name != "demosaic"):
        raise ValueError("--distill-colour needs --distill and a demosaicker (task demosaic)")
    score = _Score(plain, task, data.val, teacher, colour)
    run = _Progress(step=0, best=-math.inf, train_s=0.0)
    with _batches(data, options.workers) as batches:
        if previous is not None:
            hooks.load_state(previous["ranges"])
            same_metric = previous.get("val_metric", _Score.TRUTH) == score.metric
            run = _Progress(int(previous["step"]), float(previous["best_psnr"]) if same_metric else -math.inf,
                            float(previous["train_s"]))
        elif init is not None and set(init.get("ranges", {})) == set(hooks.ranges):
            # The weights were trained with these ranges: calibrating afresh measured worse
            # (validation 39.039 -> 39.000 dB rounded on the demosaicker).
            hooks.load_state(init["ranges"])
            run.best = score()
            log.info("step 0: ranges of --init; val %.3f dB float, %s %.3f dB rounded", float_psnr,
                     score.metric, run.best)
        else:
            run.best = _calibrate(plain, hooks, task, options, float_psnr, score)
        optimizer = _optimizer(plain, hooks, options, previous["optimizer"] if previous else None)
        log.info("QAT of %s (step %d): %d rounded convs, %d rounded activations (%d ranges); %s",
                 options.checkpoint, int(source["step"]), len(rounding.weights), len(rounding.acts), len(hooks.ranges),
                 data.description)
        lineage = None if init is None else {  # what the weights went through before this run
            "checkpoint": str(options.init), "step": int(init["step"]), "qat": init.get("qat", {})}
        save = lambda: _save(plain, hooks, optimizer, task, options, config, source, run, score, lineage)  # noqa: E731
        objective = _objective(plain, teacher, task.loss(config), colour)
        _steps(plain, optimizer, objective, float(config.get("clip", 1.0)), batches, options, deadline, run, save)
        save()
    hooks.remove()
    return _export_best(options, task, config, source)


def _optimizer(plain: nn.Module, hooks: QatHooks, options: QatOptions,
               state: Mapping[str, Any] | None = None) -> torch.optim.Optimizer:
    """Adam over the weights at ``lr`` and, with ``range_lr``, the ranges: log scales at
    ``range_lr``, zero points (in uint8 steps) ten times faster, so that a zero point can
    move by whole steps within a run of a thousand steps. ``state``: a saved optimizer's
    moments (resuming); the learning rates stay this run's."""
    groups = [{"params": list(plain.parameters()), "base_lr": options.lr}]
    if options.range_lr > 0:
        scales, zeros = hooks.learnable()
        groups += [{"params": scales, "base_lr": options.range_lr},
                   {"params": zeros, "base_lr": 10.0 * options.range_lr}]
    optimizer = torch.optim.Adam([{**g, "lr": g["base_lr"]} for g in groups])
    if state is not None:
        optimizer.load_state_dict(state)
        for group, settings in zip(optimizer.param_groups, groups):
            group["base_lr"] = settings["base_lr"]
    return optimizer


def develop_matrices(count: int, seed: int = 0) -> torch.Tensor:
    """(count, 3, 3) float32: white-balanced camera RGB -> linear sRGB for random simulated
    cameras (:func:`nnip.simulate.color.random_camera_matrix`), as the develop's camera-matrix
    stage applies them to a demosaicker's output; rows sum to 1 (white stays white)."""
    from nnip.simulate.color import LINEAR_SRGB_FROM_XYZ, camera_neutral, random_camera_matrix

    rng = np.random.default_rng(seed)
    matrices = []
    for _ in range(count):
        cam_from_xyz = random_camera_matrix(rng)
        matrix = LINEAR_SRGB_FROM_XYZ @ np.linalg.inv(cam_from_xyz) @ np.diag(camera_neutral(cam_from_xyz))
        matrices.append(matrix / matrix.sum(axis=1, keepdims=True))
    return torch.from_numpy(np.stack(matrices)).float()


def _srgb_decode(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).pow(2.4))


def _srgb_encode(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8).pow(1.0 / 2.4) - 0.055)


def in_output_colours(rgb: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """An sRGB-encoded, white-balanced camera RGB batch (B, 3, H, W) as the develop writes it:
    decoded, through ``matrix`` (3, 3), clipped and encoded as sRGB."""
    return _srgb_encode(torch.einsum("ij,bjhw->bihw", matrix, _srgb_decode(rgb)))


def camera_mosaic(rgb: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """The demosaicker's input as the develop feeds it for a scene it renders as ``rgb``
    through ``matrix``: the sRGB-encoded batch (B, 3, H, W) taken back to the camera's
    white-balanced RGB (``matrix`` inverted; a camera sees colours less saturated than
    sRGB), clipped, encoded, mosaicked as RGGB and packed (B, 4, H/2, W/2): R, G1, G2, B,
    as :func:`nnip.train.raw_tasks.mosaic_packed`."""
    camera = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(matrix), _srgb_decode(rgb))
    encoded = _srgb_encode(camera)
    return torch.stack([encoded[:, 0, 0::2, 0::2], encoded[:, 1, 0::2, 1::2],
                        encoded[:, 1, 1::2, 0::2], encoded[:, 2, 1::2, 1::2]], dim=1)


def develop_fidelity(plain: nn.Module, teacher: nn.Module, val: Sequence, colour: torch.Tensor,
                     per_item: int = 4) -> float:
    """Mean PSNR (dB) of ``plain`` against the float ``teacher`` on the validation crops
    as the develop renders a demosaicker's output (:func:`camera_mosaic` in,
    :func:`in_output_colours` out), each crop under ``per_item`` of the ``colour``
    matrices: what ``--distill-colour`` trains, measured the same way at every save."""
    plain.eval()
    scores = []
    with torch.no_grad():
        for index, (_, target) in enumerate(val):
            rgb = torch.from_numpy(np.ascontiguousarray(target))[None]
            for k in range(per_item):
                matrix = colour[(index * per_item + k) % len(colour)]
                mosaic = camera_mosaic(rgb, matrix)
                error = F.mse_loss(in_output_colours(plain(mosaic), matrix),
                                   in_output_colours(teacher(mosaic), matrix)).item()
                scores.append(10.0 * math.log10(1.0 / max(error, 1e-20)))
    plain.train()
    return float(np.mean(scores)) if scores else float("nan")


def _objective(plain: nn.Module, teacher: nn.Module | None, loss_fn: Callable,
               colour: torch.Tensor | None = None) -> Callable:
    """The loss of a batch: the task's against the truth, or - distilling - the squared
    error against the float source network's output (what the int8 variant is measured
    against: only the rounding is trained away, the float function does not drift).
    ``colour`` (N, 3, 3), a demosaicker's: one of these colour matrices per batch
    (:func:`develop_matrices`), the input taken into that camera's colours
    (:func:`camera_mosaic`, from the batch's target) and the error after the matrix,
    where the develop sees it: a camera matrix amplifies an error that differs between
    channels, not one shared by all three."""

    def objective(inputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if teacher is None:
            return loss_fn(plain(*inputs), target)
        matrix = colour[int(torch.randint(len(colour), ()))] if colour is not None else None
        if matrix is not None:
            inputs = [camera_mosaic(target, matrix)]
        prediction = plain(*inputs)
        with torch.no_grad():
            goal = teacher(*inputs)
        if matrix is not None:
            return F.mse_loss(in_output_colours(prediction, matrix), in_output_colours(goal, matrix))
        return F.mse_loss(prediction, goal)

    return objective


class _Score:
    """What a save validates and ``best.pt`` keeps the best of: the rounded network's PSNR
    against the truth on the task's held-out crops or, with ``--distill-colour``, against
    the float network as the develop renders it (:func:`develop_fidelity`)."""

    TRUTH, DEVELOP = "truth_psnr_db", "develop_fidelity_db"

    def __init__(self, plain: nn.Module, task: Task, val: Sequence, teacher: nn.Module | None,
                 colour: torch.Tensor | None) -> None:
        self.plain, self.task, self.val, self.teacher, self.colour = plain, task, val, teacher, colour
        self.metric = self.TRUTH if colour is None else self.DEVELOP

    def __call__(self) -> float:
        if self.colour is None:
            return validate(self.plain, self.task, self.val, torch.device("cpu"))
        assert self.teacher is not None
        return develop_fidelity(self.plain, self.teacher, self.val, self.colour)


@dataclass
class _Progress:
    step: int
    best: float
    train_s: float


@contextmanager
def _batches(data: Any, workers: int) -> Iterator[Iterator]:
    """The task's training batches; the worker processes end with the block, also on an
    error (they ignore SIGTERM, so an interpreter exit would wait for them forever)."""
    batches = iter(_loader(data, workers))
    try:
        yield batches
    finally:
        batches._shutdown_workers()


def _steps(plain: nn.Module, optimizer: torch.optim.Optimizer, objective: Callable, clip: float,
           batches: Iterator, options: QatOptions, deadline: float, run: _Progress,
           save: Callable[[], None]) -> None:
    """Optimisation steps until the deadline, ``max_steps`` or a stop request; the learning
    rate falls on a cosine from ``options.lr`` to a tenth of it over this run's budget."""
    budget_s = max(1.0, deadline - time.monotonic() - 30.0)
    first_s, last_save, tick = run.train_s, time.monotonic(), time.monotonic()
    with _stop_requests() as stop:
        for x, target in batches:
            if time.monotonic() >= deadline - 30.0 or stop.is_set() or (
                    options.max_steps is not None and run.step >= options.max_steps):
                break
            progress = min(1.0, (run.train_s - first_s) / budget_s)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))
            loss = objective(_as_inputs(x, torch.device("cpu")), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), clip if clip > 0 else math.inf)
            optimizer.step()
            run.step += 1
            now = time.monotonic()
            run.train_s, tick = run.train_s + now - tick, now
            if run.step % 100 == 0:
                log.info("step %d  loss %.3g  lr %.2e", run.step, loss.item(), optimizer.param_groups[0]["lr"])
            if now - last_save >= options.checkpoint_minutes * 60.0:
                save()
                last_save = tick = time.monotonic()


def _read(path: Path) -> dict[str, Any] | None:
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def _calibrate(plain: nn.Module, hooks: QatHooks, task: Task, options: QatOptions,
               float_psnr: float, score: _Score) -> float:
    """Record the activation ranges on the quantiser's own calibration crops (training
    photos, as :func:`nnip.train.quantize.quantize_model` cuts them: the ranges the int8
    file would get anyway) and freeze them; log what rounding costs before any fine-tuning
    (validation PSNR of the float and the rounded network)."""
    defaults = QuantizeOptions()
    spec = Registry(None).get(options.model or task.name)
    inputs = calibration_inputs(spec, defaults.samples, options.calibration_crop, images=defaults.images,
                                seed=defaults.seed, data_dirs=options.data_dirs or None)
    with torch.no_grad():
        for arrays in inputs:
            plain(*(torch.from_numpy(np.ascontiguousarray(a))[None] for a in arrays))
    hooks.freeze()
    rounded = score()
    log.info("step 0: val %.3f dB float; %s %.3f dB rounded", float_psnr, score.metric, rounded)
    _append_metrics(options.out, {"step": 0, "val_psnr_db_float": round(float_psnr, 4),
                                  "val_psnr_db": round(rounded, 4), "val_metric": score.metric})
    return rounded


def _append_metrics(out: Path, record: Mapping[str, Any]) -> None:
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({**record, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")


def _save(plain: nn.Module, hooks: QatHooks, optimizer: torch.optim.Optimizer, task: Task,
          options: QatOptions, config: Mapping[str, Any], source: Mapping[str, Any], run: _Progress,
          score: _Score, lineage: Mapping[str, Any] | None = None) -> None:
    """Validate the rounded network, write last.pt (and best.pt when it improved).
    ``lineage``: the ``--init`` fine-tune the weights started from (kept in the record)."""
    psnr = score()
    step, best, train_s = run.step, run.best, run.train_s
    record = {
        "task": task.name, "config": dict(config), "model": plain_state(plain), "ranges": hooks.state(),
        "optimizer": optimizer.state_dict(), "step": step, "train_s": train_s,
        "best_psnr": max(best, psnr), "val_metric": score.metric,
        "source": {"checkpoint": str(options.checkpoint), "step": int(source["step"]),
                   "provenance": dict(source.get("provenance", {}))},
        "qat": {"float_convs": options.float_convs, "float_nodes": options.float_nodes,
                "distill": options.distill, "percentile": options.percentile, "lr": options.lr,
                "range_lr": options.range_lr, "init": dict(lineage) if lineage else None,
                "distill_colour": options.distill_colour,
                "command": options.command, "commit": git_commit()},
    }
    save_atomic(record, options.out / "last.pt")
    if psnr > best:
        save_atomic({k: v for k, v in record.items() if k != "optimizer"}, options.out / "best.pt")
    _append_metrics(options.out, {"step": step, "train_min": round(train_s / 60.0, 2),
                                  "val_psnr_db": round(psnr, 4), "best_psnr_db": round(max(best, psnr), 4),
                                  "val_metric": score.metric})
    log.info("step %d: val %s %.3f dB rounded (best %.3f)%s", step, score.metric, psnr, max(best, psnr),
             " -> best.pt" if psnr > best else "")
    run.best = max(best, psnr)


def _export_best(options: QatOptions, task: Task, config: Mapping[str, Any],
                 source: Mapping[str, Any]) -> Path:
    """The best weights as a float ONNX model ``OUT/float/NAME.onnx`` (NAME: ``--model``,
    else the task's name)."""
    best = _read(options.out / "best.pt") or _read(options.out / "last.pt")
    assert best is not None
    model = task.build_model(config)
    plain = model.plain().float().eval()
    plain.load_state_dict(best["model"])
    name = options.model or task.name  # the quantiser's variant then matches it by name
    provenance = {
        "data": best["source"]["provenance"].get("data", []),
        "command": best["source"]["provenance"].get("command", ""),
        "qat_command": options.command,
        "qat": {**best["qat"], "source_checkpoint": best["source"]["checkpoint"],
                "source_step": best["source"]["step"], "steps": best["step"],
                "tensor_ranges": {t: [float(lo), float(hi)] for t, (lo, hi) in best["ranges"].items()}},
        "commit": git_commit(),
        "config": dict(config),
    }
    spec = export_model(SimpleNamespace(plain=lambda: plain), task.export_spec(config), name,
                        options.out / "float", version=f"qat-{best['step']}", provenance=provenance,
                        metrics={"val_psnr_db_rounded": round(float(best["best_psnr"]), 4)})
    log.info("float weights of the best step (%d) written to %s", best["step"], spec.path)
    return spec.path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnip.train.qat", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (last.pt / best.pt of a run)")
    parser.add_argument("--out", type=Path, required=True, help="run directory of the fine-tune")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--model", metavar="NAME",
                        help="the installed model the fine-tune is for, e.g. upscale-fast (its "
                        "calibration crops; the float file's name); default: the task's name")
    parser.add_argument("--lr", type=float, default=QatOptions.lr)
    parser.add_argument("--float-convs", type=int, default=QatOptions.float_convs, metavar="N",
                        help="convolutions kept in float at each end (as nnip.train.quantize's)")
    parser.add_argument("--float-nodes", default="", metavar="A|B",
                        help="nodes kept in float besides the ends (as nnip.train.quantize's)")
    parser.add_argument("--percentile", type=float, default=QatOptions.percentile)
    parser.add_argument("--range-lr", type=float, default=QatOptions.range_lr, metavar="LR",
                        help="train the activation ranges too (LSQ+): learning rate of their log "
                        "scales (zero points: ten times it); 0 keeps them fixed")
    parser.add_argument("--calibration-crop", type=int, default=QatOptions.calibration_crop, metavar="N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--distill", action="store_true",
                        help="train the rounded network to the float source network's output")
    parser.add_argument("--distill-colour", action="store_true",
                        help="with --distill, for a demosaicker: as the develop runs it, input in "
                        "random simulated cameras' colours, error after their colour matrices; "
                        "best.pt then keeps the best such fidelity to the float network")
    parser.add_argument("--init", type=Path, metavar="QAT_CHECKPOINT",
                        help="start from another fine-tune's weights (and its ranges, where the "
                        "rounded tensors are the same)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training knob of the task's config (e.g. batch=16)")
    parser.add_argument("--data", nargs="+", type=Path, help="training image folders")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"))
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="stop after N steps (with --init and 0: only write the float ONNX of "
                        "those weights, e.g. to quantise a kept run again)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    overrides = dict(_parse_set(item) for item in args.overrides)
    source = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    data_dirs = args.data or default_data_dirs(get_task(source["task"]))
    del source
    options = QatOptions(
        checkpoint=args.checkpoint, out=args.out, minutes=args.minutes, lr=args.lr,
        float_convs=args.float_convs, float_nodes=args.float_nodes, percentile=args.percentile, threads=args.threads,
        workers=args.workers, resume=args.resume, overrides=overrides, data_dirs=data_dirs,
        cache_dir=args.cache, max_steps=args.max_steps, init=args.init, distill=args.distill,
        calibration_crop=args.calibration_crop, range_lr=args.range_lr, model=args.model,
        distill_colour=args.distill_colour,
        command="python -m nnip.train.qat " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
    )
    path = finetune(options)
    print(path)
    return 0


def _parse_set(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


if __name__ == "__main__":
    sys.exit(main())
