"""The raw-domain denoiser (task ``denoise``): data, network, loss, metric, export spec.

The model contract is in :mod:`nnip.develop.denoise`: inputs ``mosaic`` (packed RGGB,
linear normalised raw, not white balanced) and ``noise_sigma`` (4 channels, built by
:func:`nnip.develop.denoise.sigma_map` - the same function at inference), output the
denoised packed ``mosaic``.

Training pairs. A clean crop (a training photo's area/2 teacher, or with probability
``pattern_fraction`` a synthetic patch of :mod:`nnip.simulate.patterns`: skin-like
gradients with pores, text, fine stripes, fabric, zone plates, colour edges, lights) gets one
of the 8 dihedral transforms, then :func:`nnip.simulate.pairs.raw_pair` simulates its RAW
capture as RGGB: a random camera matrix near a real camera, a random illuminant (so the
unbalanced raw has realistic channel ratios), OLPF, Poisson-Gaussian noise of a random
sensor model (:data:`nnip.simulate.sensor.SENSORS`) at an ISO log-uniform in 100..25600,
14-bit quantisation with clipping. The exposure is the simulator's usual -2..+0.5 EV, and
with probability ``shadow_fraction`` 2 to 6 stops lower still (deep shadows, where noise is
worst and Poisson statistics are far from Gaussian). The target is the clean mosaic (the
simulator's noise-free camera RGB at the sensor, clipped to [0, 1], mosaicked the same way).
The noise map is built from the noisy input with the true (a, b), each multiplied by a
random factor (log-normal, ``sigma_jitter``) so the network tolerates the estimator's error.

Network (:class:`DenoiseNet`), a small U-Net on the packed grid that sees the noise in
noise units, so one network serves every ISO: with ``m`` a fixed 5 x 5 box mean of the input
and ``s`` the noise map, the body gets ``(x - m) / s`` (detail in units of the local noise:
the noise in it has unit variance at every ISO and level, a first-order variance-stabilising
transform) and ``m / (|m| + s)`` (how far above the noise floor the signal is, bounded); it
predicts a correction ``r`` in noise units and the output is ``x + s r`` (residual: the
last convolution starts at zero, so the untrained network is the identity). Levels at 1, 1/2
and 1/4 of the packed grid (stride-2 convolutions down, transposed convolutions up, skips
added); every 3x3 convolution is an ECB (:class:`nnip.train.arch.ECB`) folded into one conv
at export. ``align`` is 4 (the total stride, on the packed grid).

Loss: L1 in noise units, ``mean |y - clean| / s`` over the crop minus ``loss_border`` packed
pixels per side (a variance-stabilised L1: shadows at ISO 100 and highlights at ISO 25600
weigh alike). Metric: PSNR of the packed mosaic encoded with the sRGB curve (clipped to
[0, 1]), which weighs shadows roughly as the finished picture does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnip.core.models import TensorSpec
from nnip.develop.denoise import SIGMA_FLOOR, sigma_map
from nnip.develop.noise import NoiseParams
from nnip.simulate.color import linear_to_srgb, random_exposure
from nnip.simulate.pairs import raw_pair
from nnip.simulate.patterns import random_pattern
from nnip.simulate.sensor import mosaic_bayer, pack_bayer
from nnip.train.arch import ECB, ECBLevel, fold_ecbs, prelu_size
from nnip.train.data import PatchSampler, TeacherCache, training_split
from nnip.train.tasks import ExportSpec, Task, TaskData, ValItem, register_task

__all__ = [
    "DENOISE_CONFIGS",
    "PATTERN_KINDS",
    "VAL_ISOS",
    "DenoiseNet",
    "simulate_pair",
    "DenoiseBatches",
    "noise_l1",
    "psnr_mosaic",
]

#: Synthetic patch kinds mixed into training.
PATTERN_KINDS = ("skin", "text", "stripes", "fabric", "diagonal", "zoneplate", "color_edges",
                 "lights")
#: ISOs the validation crops cycle through (fixed, so runs compare).
VAL_ISOS = (200.0, 800.0, 3200.0, 12800.0, 25600.0)

DENOISE_CONFIGS: dict[str, dict[str, Any]] = {
    # Widths 32 / 64 / 128 at 1 / 1/2 / 1/4 of the packed grid: ~100k MACs per packed pixel,
    # ~200 GFLOP per packed megapixel = ~50 per mosaic megapixel (budget 150).
    "fast": {
        "widths": (32, 64, 128),
        "blocks": (2, 2, 3),
        "multiplier": 2.0,
        "slopes": "layer",  # one PReLU slope per layer: a LeakyRelu onnxruntime fuses (arch.SLOPES)
        "patch": 64,  # packed side; the simulated crop is twice that
        "batch": 16,
        "lr": 5e-4,
        "lr_min_ratio": 0.01,
        "warmup_steps": 300,
        "clip": 1.0,
        "weight_decay": 0.0,
        "loss_border": 6,
        "pattern_fraction": 0.3,
        "shadow_fraction": 0.3,
        "sigma_jitter": 0.1,
        "iso_range": (100.0, 25600.0),
        "flat_threshold": 0.02,
        "flat_keep": 0.3,
        "holdout_every": 40,
        "val_crop": 256,
        "checkpoint_minutes": 3.0,
        "restart_lr_ratio": 0.5,
        "seed": 0,
    },
}
# Widths 48 / 96 / 160: ~220k MACs per packed pixel (~110 GFLOP per mosaic megapixel).
DENOISE_CONFIGS["quality"] = {**DENOISE_CONFIGS["fast"], "widths": (48, 96, 160),
                              "blocks": (2, 3, 4), "lr": 4e-4, "warmup_steps": 500}

_BOX = 5  # the body's local mean: 5 x 5 packed pixels, as the noise map's
# The body sees sigma >= 1e-4 (1.6 DN of a 14-bit raw, below any camera's read noise) and
# detail within +-1000 sigma (far beyond noise: such detail is left alone anyway), so its
# activations stay bounded whatever the inputs (the export parity check feeds random ones).
_NET_SIGMA_FLOOR = 1e-4
_DETAIL_LIMIT = 1000.0


# --------------------------------------------------------------------------- network


class DenoiseNet(nn.Module):
    """Noise-normalised residual U-Net on the packed RGGB grid (see the module notes).

    ``forward(mosaic, sigma)``: (N, 4, h, w) packed normalised mosaic and (N, 4 or 1, h, w)
    noise sigma, any h and w -> (N, 4, h, w) denoised mosaic, same units, not clipped.

    Parameters
    ----------
    widths : 3 ints
        Channels at 1, 1/2 and 1/4 of the packed grid.
    blocks : 3 ints
        ECB convolutions at each level (the two upper levels run them on the way down and
        again on the way up).
    multiplier : float
        ECB expand-branch width.
    slopes : str
        PReLU slopes per channel or per layer (:data:`nnip.train.arch.SLOPES`).
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (2, 2, 3),
                 multiplier: float = 2.0, slopes: str = "channel") -> None:
        super().__init__()
        w0, w1, w2 = (int(w) for w in widths)
        n0, n1, n2 = (int(b) for b in blocks)
        self.register_buffer("box", torch.full((4, 1, _BOX, _BOX), 1.0 / (_BOX * _BOX)))
        self.head = ECB(8, w0, multiplier)
        self.head_act = nn.PReLU(prelu_size(slopes, w0))
        self.enc0 = ECBLevel(w0, max(n0 - 1, 0), multiplier, slopes)
        self.down1 = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.enc1 = ECBLevel(w1, n1, multiplier, slopes)
        self.down2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.mid = ECBLevel(w2, n2, multiplier, slopes)
        self.up2 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.dec1 = ECBLevel(w1, n1, multiplier, slopes)
        self.up1 = nn.ConvTranspose2d(w1, w0, 2, stride=2)
        self.dec0 = ECBLevel(w0, max(n0 - 1, 1), multiplier, slopes)
        self.tail = nn.Conv2d(w0, 4, 3, padding=1)
        with torch.no_grad():  # start as the identity: y = x + s * 0
            self.tail.weight.zero_()
            self.tail.bias.zero_()

    def forward(self, mosaic: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = torch.clamp(sigma, min=_NET_SIGMA_FLOOR).expand_as(mosaic)
        mean = F.conv2d(mosaic, self.box, padding=_BOX // 2, groups=4)
        detail = torch.clamp((mosaic - mean) / s, -_DETAIL_LIMIT, _DETAIL_LIMIT)
        level = mean / (mean.abs() + s)
        x0 = self.enc0(self.head_act(self.head(torch.cat([detail, level], dim=1))))
        x1 = self.enc1(self.down1(x0))
        x2 = self.mid(self.down2(x1))
        # Transposed convolutions give 2 * ceil(n / 2) rows: crop to the skip's size.
        y1 = self.dec1(self.up2(x2)[..., : x1.shape[2], : x1.shape[3]] + x1)
        y0 = self.dec0(self.up1(y1)[..., : x0.shape[2], : x0.shape[3]] + x0)
        return mosaic + s * self.tail(y0)

    def plain(self) -> "DenoiseNet":
        """The exported form: a copy with every ECB folded into one Conv2d (same function)."""
        return fold_ecbs(self)


def _build_denoise_model(config: Mapping[str, Any]) -> nn.Module:
    return DenoiseNet(config["widths"], config["blocks"], float(config.get("multiplier", 2.0)),
                      str(config["slopes"]))


# --------------------------------------------------------------------------- data


def _dihedral(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 flips / 90-degree rotations, applied before mosaicking (phase kept)."""
    rgb = np.rot90(rgb, int(rng.integers(4)))
    return rgb[:, ::-1] if rng.random() < 0.5 else rgb


def simulate_pair(
    clean_srgb: np.ndarray,
    rng: np.random.Generator,
    *,
    iso: float | None = None,
    iso_range: tuple[float, float] = (100.0, 25600.0),
    shadow_fraction: float = 0.3,
    sigma_jitter: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training example from a clean sRGB crop (see the module notes).

    Parameters
    ----------
    clean_srgb : ndarray, float32, (H, W, 3), sRGB-encoded, H and W even
    rng : numpy.random.Generator
    iso : float, optional
        Fixed ISO (validation); otherwise log-uniform in ``iso_range``.
    shadow_fraction : float
        Probability of a further 2..6 stops of underexposure.
    sigma_jitter : float
        Log-normal spread of the factors on a and b used for the noise map.

    Returns
    -------
    mosaic : ndarray, float32, (4, H/2, W/2)
        Noisy packed RGGB mosaic, white-level units, not clipped below 0.
    sigma : ndarray, float32, (4, H/2, W/2)
        Its noise map (:func:`nnip.develop.denoise.sigma_map`).
    clean : ndarray, float32, (4, H/2, W/2)
        The clean packed mosaic in [0, 1].
    """
    if iso is None:
        iso = float(2.0 ** rng.uniform(math.log2(iso_range[0]), math.log2(iso_range[1])))
    exposure = random_exposure(rng)
    if rng.random() < shadow_fraction:
        exposure *= float(2.0 ** -rng.uniform(2.0, 6.0))
    illuminant = float(rng.uniform(2800.0, 7500.0)) if rng.random() < 0.5 else None
    from nnip.simulate.sensor import SENSORS

    sensor = sorted(SENSORS)[int(rng.integers(len(SENSORS)))]
    record = raw_pair(clean_srgb, rng, pattern="RGGB", iso=iso, sensor=sensor,
                      exposure=exposure, illuminant=illuminant)
    jitter = np.exp(rng.normal(0.0, sigma_jitter, size=2)) if sigma_jitter > 0 else (1.0, 1.0)
    params = NoiseParams(record["noise_a"] * float(jitter[0]), record["noise_b"] * float(jitter[1]),
                         "dng-noiseprofile")
    mosaic = record["packed"].astype(np.float32)
    clean = pack_bayer(mosaic_bayer(record["target"], "RGGB"), "RGGB").astype(np.float32)
    return mosaic, sigma_map(mosaic, params), np.ascontiguousarray(clean)


class DenoiseBatches(torch.utils.data.IterableDataset):
    """Endless ((mosaic, sigma), target) batches, NCHW float32, built in the worker.

    ``target`` stacks the clean mosaic and the noise map, (batch, 8, p, p), so the loss can
    work in noise units (:func:`noise_l1`).

    Parameters
    ----------
    sampler : PatchSampler or None
        Photo crops (uint8 teachers); None: synthetic patches only.
    config : mapping
        ``batch``, ``patch`` (packed side), ``pattern_fraction``, ``shadow_fraction``,
        ``sigma_jitter``, ``iso_range``.
    seed : int
    """

    def __init__(self, sampler: PatchSampler | None, config: Mapping[str, Any], seed: int) -> None:
        super().__init__()
        self.sampler, self.seed = sampler, seed
        self.batch, self.patch = int(config["batch"]), int(config["patch"])
        self.pattern_fraction = float(config["pattern_fraction"]) if sampler else 1.0
        self.shadow_fraction = float(config["shadow_fraction"])
        self.sigma_jitter = float(config["sigma_jitter"])
        self.iso_range = tuple(float(v) for v in config["iso_range"])

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        """A clean sRGB crop, float32 (2 patch, 2 patch, 3) in [0, 1]."""
        size = 2 * self.patch
        if self.sampler is None or rng.random() < self.pattern_fraction:
            kind = PATTERN_KINDS[int(rng.integers(len(PATTERN_KINDS)))]
            rgb = random_pattern(kind, size, rng)  # "lights" exceed 1: the sensor clips them
        else:
            rgb = self.sampler.sample(rng, size).astype(np.float32) / 255.0
        return np.ascontiguousarray(_dihedral(rgb, rng), dtype=np.float32)

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        while True:
            items = [simulate_pair(self.crop(rng), rng, iso_range=self.iso_range,
                                   shadow_fraction=self.shadow_fraction,
                                   sigma_jitter=self.sigma_jitter) for _ in range(self.batch)]
            mosaic, sigma, clean = (np.stack(parts) for parts in zip(*items))
            target = np.concatenate([clean, sigma], axis=1)
            yield (torch.from_numpy(mosaic), torch.from_numpy(sigma)), torch.from_numpy(target)


def _denoise_val(teachers: Sequence[np.ndarray], crop: int, seed: int = 12345) -> list[ValItem]:
    """Centre crops of held-out teachers at the ISOs of :data:`VAL_ISOS`, fixed noise."""
    items = []
    for index, teacher in enumerate(teachers):
        h, w = teacher.shape[:2]
        ch, cw = min(h, crop) // 4 * 4, min(w, crop) // 4 * 4
        y, x = (h - ch) // 4 * 2, (w - cw) // 4 * 2
        rgb = np.asarray(teacher[y:y + ch, x:x + cw], dtype=np.float32) / 255.0
        rng = np.random.default_rng([seed, index])
        mosaic, sigma, clean = simulate_pair(rgb, rng, iso=VAL_ISOS[index % len(VAL_ISOS)],
                                             shadow_fraction=0.2)
        items.append(((mosaic, sigma), np.concatenate([clean, sigma])))
    return items


def _build_denoise_data(
    config: Mapping[str, Any], data_dirs: Sequence[Path], cache_dir: Path, seed: int
) -> TaskData:
    train_paths, val_paths = training_split(data_dirs, int(config["holdout_every"]))
    cache = TeacherCache(cache_dir)
    size = 2 * int(config["patch"])
    teachers = cache.get_all(train_paths, min_size=size)
    val = _denoise_val(cache.get_all(val_paths, min_size=32), int(config["val_crop"]))
    sampler = PatchSampler(teachers, float(config["flat_threshold"]), float(config["flat_keep"]))
    megapixels = sum(t.shape[0] * t.shape[1] for t in teachers) / 1e6
    low, high = (float(v) for v in config["iso_range"])
    description = (
        f"{len(teachers)} teachers ({megapixels:.1f} MP, area/2 of {len(train_paths)} files) "
        f"+ {config['pattern_fraction']:.2f} synthetic ({', '.join(PATTERN_KINDS)}), "
        f"simulated RAW (nnip.simulate.pairs.raw_pair, RGGB, ISO {low:g}..{high:g} "
        f"log-uniform, every sensor model, {config['shadow_fraction']:.2f} deep shadows); "
        f"{len(val)} held-out crops at ISO {', '.join(f'{i:g}' for i in VAL_ISOS)}"
    )
    return TaskData(train=DenoiseBatches(sampler, config, seed), val=val, description=description)


# --------------------------------------------------------------------------- loss, metric


def noise_l1(border: int = 0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """L1 in noise units: mean ``|prediction - clean| / sigma``.

    Parameters
    ----------
    border : int
        Packed pixels left out at each side.

    The returned loss takes the (N, 4, h, w) prediction and the (N, 8, h, w) target of
    :class:`DenoiseBatches` (clean mosaic, then noise map).
    """

    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        clean, sigma = target[:, :4], target[:, 4:]
        error = (prediction - clean).abs() / torch.clamp(sigma, min=SIGMA_FLOOR)
        if border:
            error = error[..., border:-border, border:-border]
        return error.mean()

    return loss


def _denoise_loss(config: Mapping[str, Any]):
    return noise_l1(int(config.get("loss_border", 0)))


def psnr_mosaic(prediction: np.ndarray, target: np.ndarray, border: int = 4) -> float:
    """PSNR in dB of the sRGB-encoded packed mosaic (clipped to [0, 1]), ``border`` off.

    Parameters
    ----------
    prediction : ndarray, float, (4, h, w), linear white-level units
    target : ndarray, float, (4 or 8, h, w); its first 4 channels are the clean mosaic
    """
    pred = linear_to_srgb(np.clip(prediction[:4], 0.0, 1.0)).astype(np.float64)
    true = linear_to_srgb(np.clip(target[:4], 0.0, 1.0)).astype(np.float64)
    if border:
        inner = (slice(None), slice(border, -border), slice(border, -border))
        pred, true = pred[inner], true[inner]
    mse = float(np.mean((pred - true) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


# --------------------------------------------------------------------------- export


def _denoise_export_spec(config: Mapping[str, Any]) -> ExportSpec:
    linear = dict(transfer="linear")
    return ExportSpec(
        task="denoise",
        inputs=(
            TensorSpec(
                name="mosaic", channels=4, layout="bayer_packed", range=(0.0, 1.0),
                description="Bayer mosaic phase-normalised to RGGB, packed R, G1 (red rows), "
                            "G2 (blue rows), B at half resolution; linear, black subtracted, "
                            "1 = white level, not white balanced, not clipped below 0",
                **linear,
            ),
            TensorSpec(
                name="noise_sigma", channels=4, layout="noise_sigma", range=(0.0, 1.0),
                description="per packed channel noise std sqrt(a * clip(box5(mosaic), 0, 1) + b) "
                            "(nnip.develop.denoise.sigma_map)",
                **linear,
            ),
        ),
        # An ONNX graph cannot name an output like an input: the output is "denoised".
        outputs=(TensorSpec(
            name="denoised", channels=4, layout="bayer_packed", range=(0.0, 1.0),
            description="denoised packed mosaic, same units, not clipped", **linear,
        ),),
        scale=1,
        align=4,  # two stride-2 levels on the packed grid
        description=(
            f"raw denoiser ({config['variant']}): noise-normalised residual U-Net on the "
            f"packed RGGB grid, widths {tuple(config['widths'])}, ECB convs folded; "
            f"gflop_per_mp is per packed input megapixel (divide by 4 for per mosaic pixel)"
        ),
    )


register_task(
    Task(
        name="denoise",
        configs=DENOISE_CONFIGS,
        build_model=_build_denoise_model,
        build_data=_build_denoise_data,
        loss=_denoise_loss,
        export_spec=_denoise_export_spec,
        evaluate=psnr_mosaic,
        default_data=("CBSD432", "T91", "photos"),
    )
)
