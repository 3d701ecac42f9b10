"""Cross-layer equalisation before int8 quantisation: the same function, rounder channels.

onnxruntime's int8 graph rounds every activation tensor with one range for all its
channels, set by the widest channel: a channel that spans a tenth of it keeps a tenth of
the 256 levels. Between ``conv_i -> PReLU_i -> conv_i+1`` a channel can be scaled freely:
multiply conv_i's output channel ``c`` (weights and bias) by ``s_c > 0`` and divide
conv_i+1's input channel ``c`` by it - a PReLU, per-channel slopes included, commutes with
a positive scale - and the network computes the same function (Nagel et al. 2019,
"Data-Free Quantization", section 4.1). Here ``s_c = (R / r_c) ** strength`` with ``r_c``
channel ``c``'s range on calibration crops (a high percentile of ``|x|``) and ``R`` the
widest: 1 spreads every channel over the whole range; less keeps the next conv's weights
from losing precision (their rounding scale is per output channel, so an input channel
scaled down keeps fewer of its levels). The float model is not changed: only the int8
variant is quantised from the equalised weights.

    python -m nnip.train.equalize checkpoints/demosaic-quality/last.pt --out DIR
    python -m nnip.train.quantize demosaic --weights DIR/demosaic.onnx --float-nodes /body/acts.8/

Networks: a stack ``body.convs`` / ``body.acts`` (:class:`~nnip.train.arch.PlainSRNet`,
the demosaicker's and upscalers' body).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from nnip.core.models import Registry
from nnip.train.export import export_model
from nnip.train.loop import git_commit
from nnip.train.quantize import calibration_inputs
from nnip.train.tasks import get_task, run_config

__all__ = ["channel_ranges", "equalize_stack", "main"]


def channel_ranges(convs: Sequence[nn.Conv2d], model: nn.Module, inputs: Sequence[Sequence[np.ndarray]],
                   percentile: float = 99.99) -> list[torch.Tensor]:
    """Per output channel, the ``percentile`` of ``|x|`` of each conv's output over ``inputs``."""
    values: list[list[torch.Tensor]] = [[] for _ in convs]
    handles = [conv.register_forward_hook(
        lambda _m, _i, out, k=k: values[k].append(out.detach().abs().transpose(0, 1).flatten(1)))
        for k, conv in enumerate(convs)]
    try:
        with torch.no_grad():
            for arrays in inputs:
                model(*(torch.from_numpy(np.ascontiguousarray(a))[None] for a in arrays))
    finally:
        for handle in handles:
            handle.remove()
    ranges = []
    for per_conv in values:
        stacked = torch.cat(per_conv, dim=1)
        if stacked.shape[1] > 1 << 20:  # torch.quantile's limit: a strided sample
            stacked = stacked[:, :: stacked.shape[1] // (1 << 20) + 1]
        ranges.append(torch.quantile(stacked, percentile / 100.0, dim=1).clamp_min(1e-6))
    return ranges


def equalize_stack(convs: Sequence[nn.Conv2d], ranges: Sequence[torch.Tensor], strength: float = 0.5) -> list[torch.Tensor]:
    """Scale the output channels of ``convs[i]`` (i < last) by ``(R / r) ** strength`` and
    the next conv's input channels by its inverse; return the scales. In place."""
    scales = []
    with torch.no_grad():
        for conv, following, r in zip(convs[:-1], convs[1:], ranges):
            s = (r.max() / r) ** strength
            conv.weight.mul_(s.view(-1, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.mul_(s)
            following.weight.div_(s.view(1, -1, 1, 1))
            scales.append(s)
    return scales


def _equalized(checkpoint: Path, strength: float, samples: int) -> tuple[Any, dict, nn.Module, dict, float]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    task = get_task(state["task"])
    config = run_config(state["config"])
    model = task.build_model(config)
    model.load_state_dict(state["model"])
    plain = model.plain().float().eval()
    convs = list(plain.body.convs)
    spec = Registry(None).get(task.name)
    inputs = calibration_inputs(spec, samples, 96, images=24, seed=1)
    probe = [torch.from_numpy(np.ascontiguousarray(a))[None] for a in inputs[0]]
    with torch.no_grad():
        before = plain(*probe)
        equalize_stack(convs, channel_ranges(convs[:-1], plain, inputs), strength)
        change = float((plain(*probe) - before).abs().max())
    return task, config, plain, state, change


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnip.train.equalize", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the training checkpoint of the shipped model")
    parser.add_argument("--out", type=Path, required=True, help="models directory for the equalised float file")
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=32, help="calibration crops for the channel ranges")
    args = parser.parse_args(argv)
    task, config, plain, state, change = _equalized(args.checkpoint, args.strength, args.samples)
    command = "python -m nnip.train.equalize " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    provenance = {"equalize_command": command, "commit": git_commit(), "checkpoint_step": int(state["step"]),
                  "equalization": {"strength": args.strength, "max_output_change": change}}
    spec = export_model(SimpleNamespace(plain=lambda: plain), task.export_spec(config), task.name, args.out,
                        version=f"equalized-{args.strength}", provenance=provenance)
    print(f"{spec.path} (output changed by at most {change:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
