"""CPU-first architectures: re-parameterisable ECB blocks folded into plain 3x3 convs.

An :class:`ECB` (edge-oriented convolution block, Zhang et al. 2021, ECBSR) trains five
parallel linear branches - 3x3, 1x1 -> 3x3, 1x1 -> Sobel-x, 1x1 -> Sobel-y, 1x1 -> Laplacian -
plus the identity. Every branch is linear, so their sum is one 3x3 convolution: at export
each block becomes a single ``Conv2d`` (what onnxruntime's CPU kernels run fastest).

Training uses the same fold ("online re-parameterisation"): each step computes the fused
kernel from the branch parameters (differentiably) and runs one 3x3 conv. The function and
the gradients with respect to the branch parameters are the multi-branch ones, at the cost
of a plain network. :meth:`ECB.forward_branches` runs the branches explicitly and exists to
prove the fold exact. The fold is exact at the borders too because every 1x1 stage sees a
zero-padded input, so its output border holds its bias - as the fused conv sees it.

All compute is at low resolution; one ``PixelShuffle`` makes the output. A global residual
(ABPN's anchor: each input channel repeated ``scale**2`` times, added before the shuffle)
means the body learns only the correction to nearest-neighbour upsampling.
"""

from __future__ import annotations

import copy
import re
from typing import Mapping, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ECB", "ECBLevel", "SRNet", "PlainSRNet", "conv_macs_per_pixel", "fold_ecbs",
           "prelu_size", "SLOPES", "fit_state"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

#: PReLU slope sharing: per channel, or one per layer. Why it matters: onnxruntime's CPU
#: provider fuses a Relu or LeakyRelu (one scalar slope) into the conv before it, not a
#: per-channel PRelu, which costs separate passes over the activations. Measured on
#: upscale-fast's session.run (benchmarks/gflops.py, 2 threads): 145 GFLOP/s with per-channel
#: slopes (then rewritten as Relu/Mul/Mul/Add by the export; now ``x + relu((a-1) x)``, which
#: ran demosaic's session.run 1.2x faster still), 268 with LeakyRelu (80 % of the machine's
#: matmul rate).
SLOPES = ("channel", "layer")

_SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


class _EdgeBranch(nn.Module):
    """1x1 conv, then a fixed edge filter scaled per output channel (depthwise)."""

    def __init__(self, in_channels: int, out_channels: int, mask: Sequence[Sequence[float]]):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.scale = nn.Parameter(torch.randn(out_channels, 1, 1, 1) * 1e-3)
        self.bias = nn.Parameter(torch.randn(out_channels) * 1e-3)
        self.register_buffer("mask", torch.tensor(mask).expand(out_channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, (1, 1, 1, 1)))
        return F.conv2d(y, self.scale * self.mask, self.bias, groups=y.shape[1])

    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        depthwise = self.scale * self.mask  # (out, 1, 3, 3)
        weight = depthwise * self.conv.weight  # (out, in, 3, 3): 1x1 broadcast over taps
        bias = self.bias + self.conv.bias * depthwise.sum(dim=(1, 2, 3))
        return weight, bias


class _ExpandBranch(nn.Module):
    """1x1 conv to ``mid`` channels, then a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, mid_channels, 1)
        self.conv = nn.Conv2d(mid_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.reduce(F.pad(x, (1, 1, 1, 1))))

    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        k0 = self.reduce.weight[:, :, 0, 0]  # (mid, in)
        weight = torch.einsum("omhw,mi->oihw", self.conv.weight, k0)
        bias = self.conv.bias + torch.einsum("omhw,m->o", self.conv.weight, self.reduce.bias)
        return weight, bias


class ECB(nn.Module):
    """Edge-oriented convolution block; computes as one fused 3x3 conv (zero padding).

    Parameters
    ----------
    in_channels, out_channels : int
    multiplier : float
        Width of the 1x1 -> 3x3 branch relative to ``in_channels``.
    identity : bool
        Add the input (only when ``in_channels == out_channels``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, multiplier: float = 2.0, identity: bool = True
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.identity = identity and in_channels == out_channels
        self.conv3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.expand = _ExpandBranch(in_channels, out_channels, max(1, int(in_channels * multiplier)))
        self.edges = nn.ModuleList(
            _EdgeBranch(in_channels, out_channels, mask) for mask in (_SOBEL_X, _SOBEL_Y, _LAPLACIAN)
        )

    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent 3x3 conv: weight (out, in, 3, 3) and bias (out,), differentiable."""
        weight, bias = self.conv3.weight, self.conv3.bias
        for branch in (self.expand, *self.edges):
            w, b = branch.fused()
            weight, bias = weight + w, bias + b
        if self.identity:
            eye = torch.zeros_like(weight)
            index = torch.arange(self.out_channels)
            eye[index, index, 1, 1] = 1.0
            weight = weight + eye
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.fused()
        return F.conv2d(x, weight, bias, padding=1)

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        """The multi-branch computation, branch by branch (reference for the fold)."""
        y = self.conv3(x) + self.expand(x) + sum(edge(x) for edge in self.edges)
        return y + x if self.identity else y

    def to_conv(self) -> nn.Conv2d:
        """A plain ``Conv2d`` computing the same function (for export)."""
        weight, bias = self.fused()
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, 3, padding=1, dtype=weight.dtype, device=weight.device
        )
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        return conv


class ECBLevel(nn.Module):
    """``count`` ECB 3x3 convolutions of constant width, each followed by a PReLU
    (``slopes``: see :data:`SLOPES`)."""

    def __init__(self, width: int, count: int, multiplier: float, slopes: str = "channel") -> None:
        super().__init__()
        self.convs = nn.ModuleList(ECB(width, width, multiplier) for _ in range(count))
        self.acts = nn.ModuleList(nn.PReLU(prelu_size(slopes, width)) for _ in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.acts):
            x = act(conv(x))
        return x


def fold_ecbs(model: ModuleT) -> ModuleT:
    """A CPU eval-mode copy of ``model`` with every :class:`ECB` folded into one Conv2d.

    The same function as ``model``: the export form of the U-Nets (denoise, lens), whose
    ECBs sit at any depth of the module tree.
    """
    net = copy.deepcopy(model).cpu().eval()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ECB):
                setattr(parent, name, child.to_conv())
    return net


def _zero_init(block: ECB) -> None:
    """Zero the learnable last stage of every branch, so the block starts as the zero map.

    The edge branches' scales start at 1e-3 already; gradients still reach every weight
    because the zeroed weights themselves get non-zero gradients on the first step.
    """
    with torch.no_grad():
        for conv in (block.conv3, block.expand.conv):
            conv.weight.zero_()
            conv.bias.zero_()


def _anchor_index(in_channels: int, out_channels: int, scale: int) -> torch.Tensor:
    """Input channel feeding each pre-shuffle channel, so the anchor is nearest upsampling.

    PixelShuffle reads channel ``c * scale**2 + k`` for output colour ``c``, sub-pixel ``k``.
    """
    if out_channels > in_channels:
        raise ValueError("the anchor residual needs at least as many input as output channels")
    return torch.arange(out_channels).repeat_interleave(scale * scale)


class _Upsampler(nn.Module):
    """Shared tail logic: anchor residual + pixel shuffle."""

    scale: int
    anchor: bool

    def _finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.anchor:
            y = y + x.index_select(1, self.anchor_index)
        return F.pixel_shuffle(y, self.scale) if self.scale > 1 else y


class SRNet(_Upsampler):
    """ECB stack at input resolution, anchor residual, pixel shuffle (ECBSR/ABPN family).

    Input NCHW float32 (in_channels); output (N, out_channels, H*scale, W*scale), same value
    range and transfer function as the input (the network learns in sRGB for upscaling).

    Parameters
    ----------
    in_channels, out_channels : int
    scale : int
    channels : int
        Width of the hidden layers.
    blocks : int
        Hidden ECB layers between the head (in -> channels) and the tail (-> out * scale**2).
    multiplier : float
        Width multiplier of each block's 1x1 -> 3x3 branch.
    anchor : bool
        Add the nearest-upsampled input (first ``out_channels`` input channels).
    slopes : str
        ``"channel"``: one PReLU slope per channel; ``"layer"``: one per layer, which the
        export writes as a LeakyRelu that onnxruntime fuses into the conv before it (see
        :func:`prelu_size`).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        scale: int = 2,
        channels: int = 32,
        blocks: int = 6,
        multiplier: float = 2.0,
        anchor: bool = True,
        slopes: str = "channel",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.anchor = anchor
        widths = [in_channels] + [channels] * (blocks + 1)
        self.layers = nn.ModuleList(ECB(a, b, multiplier) for a, b in zip(widths[:-1], widths[1:]))
        self.layers.append(ECB(channels, out_channels * scale * scale, multiplier, identity=False))
        if anchor:
            _zero_init(self.layers[-1])  # start as nearest-neighbour upsampling
        self.acts = nn.ModuleList(nn.PReLU(prelu_size(slopes, channels)) for _ in range(blocks + 1))
        self.register_buffer("anchor_index", _anchor_index(in_channels, out_channels, scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer, act in zip(self.layers[:-1], self.acts):
            y = act(layer(y))
        return self._finish(x, self.layers[-1](y))

    def plain(self) -> "PlainSRNet":
        """The re-parameterised network: one Conv2d per block, same function."""
        net = PlainSRNet(
            [layer.to_conv() for layer in self.layers],
            [nn.PReLU(a.num_parameters) for a in self.acts],
            self.scale,
            self.anchor_index.clone(),
            self.anchor,
        )
        for new, old in zip(net.acts, self.acts):
            new.load_state_dict(old.state_dict())
        return net.eval()


class PlainSRNet(_Upsampler):
    """Conv -> PReLU -> ... -> Conv, anchor residual, pixel shuffle: the exported graph."""

    def __init__(
        self,
        convs: Sequence[nn.Conv2d],
        acts: Sequence[nn.Module],
        scale: int,
        anchor_index: torch.Tensor,
        anchor: bool = True,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.acts = nn.ModuleList(acts)
        self.scale, self.anchor = scale, anchor
        self.register_buffer("anchor_index", anchor_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv, act in zip(self.convs[:-1], self.acts):
            y = act(conv(y))
        return self._finish(x, self.convs[-1](y))


def prelu_size(slopes: str, channels: int) -> int:
    """``nn.PReLU``'s ``num_parameters`` for a ``slopes`` mode (see :data:`SLOPES`)."""
    if slopes not in SLOPES:
        raise ValueError(f"slopes must be one of {SLOPES}, got {slopes!r}")
    return channels if slopes == "channel" else 1


def fit_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (another network's weights) made to load into ``model``, for ``--init``.

    Two changes keep the function, or come as close as one can:

    - PReLU slopes per channel going to one per layer take their mean (the closest single
      slope for activations of similar spread; training does the rest).
    - Growth (Net2Net-style), for every :class:`SRNet` and :class:`ECBLevel` inside
      ``model``: wider layers keep the old weights in their leading channels, with every
      weight *from* a new channel zeroed (old channels compute what they did; new ones
      start from ``model``'s random init and get gradients once the layer after them moves
      off zero; a transposed convolution's inputs are its first axis); deeper SRNet stacks
      keep the old head and hidden layers, then new identity blocks (all learnable branches
      zero, slope 1), then the old tail; a deeper ECBLevel gets its identity blocks at the
      end. So a quality-size network starts as the trained fast one and only improves on it.
    """
    own = model.state_dict()
    source = _rename_grown_layers(own, dict(state))
    transposed = {f"{name}.weight" for name, module in model.named_modules()
                  if isinstance(module, nn.ConvTranspose2d)}
    fitted = {}
    for name, target in own.items():
        value = source.get(name)
        if value is None:
            fitted[name] = _identity_block_value(name, target)
        elif value.shape == target.shape:
            fitted[name] = value
        elif target.numel() == 1:  # per-channel slopes -> one per layer
            fitted[name] = value.mean().reshape(target.shape)
        else:
            fitted[name] = _embed(name, value, target, transposed=name in transposed)
    return fitted


# SRNet stacks name their convolutions ``layers``, ECBLevel ``convs``; both name PReLUs ``acts``.
_LAYER_KEY = re.compile(
    r"^(?P<prefix>(?:.*\.)?)(?P<kind>layers|convs|acts)\.(?P<index>\d+)\.(?P<rest>.*)$")


def _stack_depths(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Number of ``layers`` of each SRNet stack in ``state``, by key prefix."""
    depths: dict[str, int] = {}
    for name in state:
        match = _LAYER_KEY.match(name)
        if match and match["kind"] == "layers":
            prefix = match["prefix"]
            depths[prefix] = max(depths.get(prefix, 0), int(match["index"]) + 1)
    return depths


def _rename_grown_layers(own: Mapping[str, torch.Tensor],
                         state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each shallower stack's tail moved to the end of ``own``'s deeper one.

    An SRNet with ``b`` blocks has ``b + 2`` layers (head, blocks, tail) and ``b + 1`` acts;
    the old layers and acts keep their indices, the tail moves to the new last index.
    """
    wanted, have = _stack_depths(own), _stack_depths(state)
    renamed = {}
    for name, value in state.items():
        match = _LAYER_KEY.match(name)
        if match and match["kind"] == "layers":
            prefix, index = match["prefix"], int(match["index"])
            if prefix in wanted and index == have[prefix] - 1:  # the tail
                name = f"{prefix}layers.{wanted[prefix] - 1}.{match['rest']}"
        renamed[name] = value
    return renamed


def _identity_block_value(name: str, target: torch.Tensor) -> torch.Tensor:
    """A new block's tensor: slopes 1, learnable last stages zero, the rest as initialised.

    With the ECB's own identity, a block whose conv3, expand conv and edge scales and
    biases are zero is the identity map, and a slope of 1 makes its PReLU one too.
    """
    match = _LAYER_KEY.match(name)
    if match is None:
        raise ValueError(f"--init: the checkpoint has no weights for {name!r}")
    rest = match["rest"]
    if match["kind"] == "acts":
        return torch.ones_like(target)
    zeroed = rest.startswith(("conv3.", "expand.conv.")) or (
        rest.startswith("edges.") and rest.endswith((".scale", ".bias")) and ".conv." not in rest)
    return torch.zeros_like(target) if zeroed else target.clone()


def _embed(name: str, value: torch.Tensor, target: torch.Tensor,
           transposed: bool = False) -> torch.Tensor:
    """``value`` in the leading slice of a wider ``target``; a conv's new inputs zeroed
    (axis 1 of a Conv2d weight, axis 0 of a ``transposed`` one's)."""
    if value.ndim != target.ndim or any(v > t for v, t in zip(value.shape, target.shape)):
        raise ValueError(f"--init: {name} {tuple(value.shape)} does not fit {tuple(target.shape)}")
    out = target.clone()
    if out.ndim == 4 and name.endswith("weight"):
        axis = 0 if transposed else 1
        # weights from new channels: the old outputs stay as they were
        out.narrow(axis, value.shape[axis], out.shape[axis] - value.shape[axis]).zero_()
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out


def conv_macs_per_pixel(model: nn.Module) -> int:
    """Multiply-accumulates per input pixel of the model's stride-1 ``Conv2d`` layers.

    Valid for networks whose convs all run at input resolution (everything here).
    """
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += module.out_channels * (module.in_channels // module.groups) * kh * kw
    return total
