"""The registry of trainable tasks: what each task trains on, which network, which loss.

A :class:`Task` bundles four factories the generic loop (:mod:`nnip.train.loop`) and the
exporter (:mod:`nnip.train.export`) call; nothing in those modules knows a task by name:

- ``build_model(config) -> nn.Module``: the training network; ``forward(*inputs)`` takes
  one NCHW tensor per manifest input, and ``plain()`` returns the network to export.
- ``build_data(config, data_dirs, cache_dir, seed) -> TaskData``: endless training batches
  ``(inputs, target)`` (``inputs`` a tensor or a tuple, one per model input) and a fixed
  validation list.
- ``loss(config) -> callable(prediction, target) -> scalar tensor``.
- ``export_spec(config) -> ExportSpec``: manifest fields (task, tensors, scale, align).

Adding the raw tasks (demosaic, denoise, lens) is writing these four functions with the
simulation's ``raw_pair`` / ``pack_bayer`` and registering the Task: the packed Bayer input
is 4 channels at half resolution (``TensorSpec(layout="bayer_packed")``), conditioning maps
(``noise_sigma``, ``optics``) are extra inputs, and :class:`nnip.train.arch.SRNet` already
takes ``in_channels != out_channels`` (set ``anchor=False`` or give a skip of your own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nnip.core.models import TensorSpec
from nnip.simulate.resize import imresize, rgb_to_y
from nnip.train.arch import SRNet
from nnip.train.data import (
    PairBatches,
    PatchSampler,
    TeacherCache,
    bicubic_pair,
    scaled_teachers,
    training_split,
)

__all__ = [
    "TaskData",
    "ExportSpec",
    "Task",
    "TASK_REGISTRY",
    "register_task",
    "get_task",
    "load_config",
    "default_data_dirs",
    "charbonnier",
    "psnr_y",
]

#: A validation item: (model inputs as CHW float32 arrays, target CHW float32).
ValItem = tuple[tuple[np.ndarray, ...], np.ndarray]


@dataclass
class TaskData:
    """What a task trains and validates on."""

    train: torch.utils.data.IterableDataset
    val: list[ValItem]
    description: str  # one line for the log and the manifest's provenance


@dataclass(frozen=True)
class ExportSpec:
    """The manifest fields a task fixes (the exporter adds name, file, costs, metrics)."""

    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    scale: int = 1
    align: int = 1
    description: str = ""
    tiles: Mapping[str, int] = field(default_factory=dict)  # ModelSpec.tiles: the fastest
    # context tile per device kind where the engine's default is slow for this network


@dataclass(frozen=True)
class Task:
    """One trainable task; see the module docstring for the factories' contracts."""

    name: str
    configs: Mapping[str, Mapping[str, Any]]
    build_model: Callable[[Mapping[str, Any]], nn.Module]
    build_data: Callable[[Mapping[str, Any], Sequence[Path], Path, int], TaskData]
    loss: Callable[[Mapping[str, Any]], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    export_spec: Callable[[Mapping[str, Any]], ExportSpec]
    evaluate: Callable[[np.ndarray, np.ndarray], float]  # (prediction, target) CHW -> dB
    default_data: tuple[str, ...] = field(default=())  # folders under shared/data/train


TASK_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to :data:`TASK_REGISTRY`; a second task of the same name is an error."""
    if task.name in TASK_REGISTRY:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASK_REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASK_REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(TASK_REGISTRY))
        raise ValueError(f"no trainable task {name!r} yet (trainable: {known})") from None


def load_config(task: Task, config: str | None) -> dict[str, Any]:
    """A task's config: a variant name (``fast``), or a JSON file (``{"base": "fast", ...}``).

    A file's keys override its ``base`` variant (the task's first variant by default).
    """
    names = list(task.configs)
    if config is None or config in task.configs:
        variant = config or names[0]
        return {"variant": variant, **task.configs[variant]}
    path = Path(config)
    if not path.is_file():
        raise ValueError(f"config {config!r} is neither a variant ({', '.join(names)}) nor a file")
    overrides = json.loads(path.read_text(encoding="utf-8"))
    base = overrides.pop("base", names[0])
    return {"variant": base, **task.configs[base], **overrides}


def default_data_dirs(task: Task) -> list[Path]:
    """``shared/data/train/<folder>`` beside the repository, for the task's default folders."""
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"
    return [shared / folder for folder in task.default_data]


def charbonnier(eps: float = 1e-3) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Charbonnier loss (a smooth L1): mean of sqrt((x - y)^2 + eps^2)."""

    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((prediction - target) ** 2 + eps * eps).mean()

    return loss


def pixel_loss(config: Mapping[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The config's ``loss``: ``l1`` (default), ``charbonnier`` or ``l2``.

    ``l2`` (mean squared error) is what PSNR measures: the efficient-SR recipes end with a
    short L2 fine-tune at a low learning rate after training with L1.
    """
    name = config.get("loss", "l1")
    losses = {"l1": nn.L1Loss, "charbonnier": charbonnier, "l2": nn.MSELoss}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(losses)}")
    return losses[name]()


def psnr_y(prediction: np.ndarray, target: np.ndarray, shave: int = 2) -> float:
    """PSNR in dB of the BT.601 Y channel, ``shave`` pixels off each border (SR protocol).

    Parameters
    ----------
    prediction, target : ndarray, float, (3, H, W), sRGB in [0, 1]; prediction is clipped.
    """
    y_pred = rgb_to_y(np.clip(prediction, 0.0, 1.0).transpose(1, 2, 0))
    y_true = rgb_to_y(target.transpose(1, 2, 0))
    if shave:
        y_pred, y_true = y_pred[shave:-shave, shave:-shave], y_true[shave:-shave, shave:-shave]
    mse = float(np.mean((y_pred - y_true) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


#: Knobs whose default changed after runs were saved without them: such a run was trained
#: with the old value, so it keeps it (a new default must not change a saved network).
LEGACY_DEFAULTS: Mapping[str, Any] = {"slopes": "channel"}


def run_config(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with :data:`LEGACY_DEFAULTS` for the knobs it predates."""
    return {**LEGACY_DEFAULTS, **dict(saved)}


# --------------------------------------------------------------------------- upscale


UPSCALE_CONFIGS: dict[str, dict[str, Any]] = {
    # ~119 GFLOP/MP: head 3->32, 6 ECB 32->32, tail 32->12 (budget <= 160).
    "fast": {
        "channels": 32,
        "blocks": 6,
        "multiplier": 2.0,
        "slopes": "layer",  # one PReLU slope per layer: a LeakyRelu onnxruntime fuses (arch.SLOPES)
        "patch": 64,
        "batch": 16,
        "lr": 7e-4,
        "lr_min_ratio": 0.01,
        "warmup_steps": 300,
        "clip": 1.0,
        "weight_decay": 0.0,
        "loss": "l1",
        "ema_decay": 0.0,  # > 0: checkpoints publish a moving average of the weights (loop)
        "bicubic_fraction": 0.7,
        "defocus_fraction": 0.15,
        "defocus_max_px": 6.0,
        # Area downscale factors of the teachers, each with its share of the crops
        # (data.scaled_teachers); factor 1 is the files at their own resolution.
        "teacher_factors": [2],
        "teacher_shares": [1.0],
        "flat_threshold": 0.03,
        "flat_keep": 0.1,
        "holdout_every": 40,
        "val_crop": 384,
        "checkpoint_minutes": 3.0,
        "restart_lr_ratio": 0.5,
        "seed": 0,
    },
}
# ~523 GFLOP/MP: head 3->56, 9 ECB 56->56, tail 56->12 (budget <= 700); trained as fast is,
# with a gentler learning rate and a longer warm-up.
UPSCALE_CONFIGS["quality"] = {**UPSCALE_CONFIGS["fast"], "channels": 56, "blocks": 9, "lr": 5e-4,
                              "warmup_steps": 500}

_UPSCALE_CONTEXT = 4  # LR pixels cut from each border of a degraded crop


def _build_upscale_model(config: Mapping[str, Any]) -> nn.Module:
    return SRNet(
        in_channels=3,
        out_channels=3,
        scale=2,
        channels=int(config["channels"]),
        blocks=int(config["blocks"]),
        multiplier=float(config.get("multiplier", 2.0)),
        slopes=str(config["slopes"]),
    )


def _simulated_upscale_pair():
    """The simulation's mixed degradation, if that module has landed; else None."""
    try:
        from nnip.simulate.pairs import upscale_pair  # noqa: PLC0415 (optional module)
    except ImportError:
        return None
    return upscale_pair


def defocus(hr: np.ndarray, radius: float) -> np.ndarray:
    """``hr`` (H, W, 3) blurred by a uniform disk of ``radius`` HR pixels, reflect borders."""
    from scipy import ndimage  # noqa: PLC0415 (training-only dependency)

    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = (np.hypot(yy, xx) <= radius).astype(np.float32)
    disk /= disk.sum()
    return np.stack(
        [ndimage.convolve(hr[..., c], disk, mode="reflect") for c in range(hr.shape[2])], axis=-1
    )


class _UpscaleDegrade:
    """Picklable degradation for the worker: protocol bicubic, or the simulation's mix.

    A ``defocus_fraction`` of the teachers is first blurred by a defocus disk, so the network
    sees out-of-focus content whose truth is out of focus too: it learns to keep such
    regions smooth instead of inventing detail (the "no invented detail" bar).
    """

    def __init__(
        self, bicubic_fraction: float, defocus_fraction: float = 0.0, defocus_max_px: float = 6.0
    ) -> None:
        self.bicubic_fraction = bicubic_fraction
        self.defocus_fraction = defocus_fraction
        self.defocus_max_px = defocus_max_px
        self.simulated = _simulated_upscale_pair() is not None

    def __call__(self, hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.defocus_fraction:
            hr = defocus(hr.astype(np.float32), rng.uniform(1.0, self.defocus_max_px))
        if self.simulated and rng.random() >= self.bicubic_fraction:
            upscale_pair = _simulated_upscale_pair()
            # bicubic_fraction=0: this draw is already the non-bicubic share.
            lr, hr2 = upscale_pair(hr, rng, bicubic_fraction=0.0)
            c, s = _UPSCALE_CONTEXT, 2 * _UPSCALE_CONTEXT
            return lr[c:-c, c:-c].astype(np.float32), hr2[s:-s, s:-s].astype(np.float32)
        return bicubic_pair(hr, 2, _UPSCALE_CONTEXT)


def _upscale_val(teachers: Sequence[np.ndarray], crop: int) -> list[ValItem]:
    items = []
    for teacher in teachers:
        h, w = teacher.shape[:2]
        ch, cw = min(h, crop) // 2 * 2, min(w, crop) // 2 * 2
        y, x = (h - ch) // 2, (w - cw) // 2
        hr = np.array(teacher[y : y + ch, x : x + cw], dtype=np.float32) / 255.0
        # The whole held-out crop is degraded at once (no context cut): the protocol's way.
        lr = np.clip(np.round(imresize(hr.astype(np.float64), 0.5) * 255.0), 0, 255) / 255.0
        items.append(((lr.transpose(2, 0, 1).astype(np.float32),), hr.transpose(2, 0, 1).copy()))
    return items


def _build_upscale_data(
    config: Mapping[str, Any], data_dirs: Sequence[Path], cache_dir: Path, seed: int
) -> TaskData:
    train_paths, val_paths = training_split(data_dirs, int(config["holdout_every"]))
    cache = TeacherCache(cache_dir)
    patch = int(config["patch"])
    crop = 2 * (patch + 2 * _UPSCALE_CONTEXT)
    factors, teachers, weights = scaled_teachers(config, train_paths, cache_dir, crop)
    val = _upscale_val(cache.get_all(val_paths, min_size=32), int(config["val_crop"]))
    sampler = PatchSampler(teachers, float(config["flat_threshold"]), float(config["flat_keep"]),
                           weights=weights)
    degrade = _UpscaleDegrade(
        float(config["bicubic_fraction"]),
        float(config.get("defocus_fraction", 0.0)),
        float(config.get("defocus_max_px", 6.0)),
    )
    dataset = PairBatches(sampler, degrade, int(config["batch"]), patch, crop, seed)
    megapixels = sum(t.shape[0] * t.shape[1] for t in teachers) / 1e6
    mix = (
        f"bicubic {config['bicubic_fraction']:.2f} + nnip.simulate.pairs.upscale_pair; "
        f"defocused teachers {config.get('defocus_fraction', 0.0):.2f}"
        if degrade.simulated
        else "bicubic only (nnip.simulate.pairs not available)"
    )
    description = (
        f"{len(teachers)} teachers ({megapixels:.1f} MP, area/{'+'.join(str(f) for f in factors)}"
        f" of {len(train_paths)} files), "
        f"{len(val)} held-out images; degradation: {mix}"
    )
    return TaskData(train=dataset, val=val, description=description)


def _upscale_export_spec(config: Mapping[str, Any]) -> ExportSpec:
    rgb = dict(channels=3, layout="rgb", range=(0.0, 1.0), transfer="srgb")
    return ExportSpec(
        task="upscale",
        inputs=(TensorSpec(name="image", description="sRGB image to enlarge", **rgb),),
        outputs=(TensorSpec(name="output", description="2x image, not clipped", **rgb),),
        scale=2,
        align=1,
        description=(
            f"2x upscaler ({config['variant']}): {int(config['blocks']) + 2} re-parameterised "
            f"ECB convs, width {config['channels']}, anchor residual, pixel shuffle"
        ),
    )


register_task(
    Task(
        name="upscale",
        configs=UPSCALE_CONFIGS,
        build_model=_build_upscale_model,
        build_data=_build_upscale_data,
        loss=pixel_loss,
        export_spec=_upscale_export_spec,
        evaluate=psnr_y,
        default_data=("CBSD432", "T91", "photos"),
    )
)

# The raw tasks register themselves here, after every name above exists.
from nnip.train import raw_tasks as _raw_tasks  # noqa: E402,F401
from nnip.train import denoise_task as _denoise_task  # noqa: E402,F401
from nnip.train import lens_task as _lens_task  # noqa: E402,F401
