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

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ECB", "ECBLevel", "SRNet", "PlainSRNet", "conv_macs_per_pixel", "prelu_size",
           "SLOPES", "adapt_slopes"]

#: PReLU slope sharing: per channel, or one per layer. Why it matters: onnxruntime's CPU
#: provider fuses a Relu or LeakyRelu (one scalar slope) into the conv before it, not a
#: per-channel PRelu, which costs separate passes over the activations. Measured on
#: upscale-fast (768 x 768, 2 threads): 181 GFLOP/s with per-channel slopes (rewritten as
#: Relu/Mul/Mul/Add by the export, already the fastest unfused form), 309 with LeakyRelu.
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


def adapt_slopes(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with its PReLU weights resized to ``model``'s (for fine-tuning across modes).

    Per-channel slopes going to one per layer take their mean: the closest single slope
    in the least-squares sense for activations of similar spread; training does the rest.
    """
    own = model.state_dict()
    adapted = dict(state)
    for name, value in state.items():
        target = own.get(name)
        if target is not None and target.shape != value.shape and target.numel() == 1:
            adapted[name] = value.mean().reshape(target.shape)
    return adapted


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
