"""Raw-side trainable tasks; for now the neural demosaicker (task ``demosaic``).

The demosaic model contract (docs/CONTRACTS.md, fixed):

- input ``mosaic``: 4 channels, layout ``bayer_packed`` = the mosaic phase-normalised to
  RGGB and packed as R, G1 (green on red rows), G2 (green on blue rows), B at half
  resolution; values = white-balanced camera RGB in [0, 1] encoded with the sRGB curve;
- output ``rgb``: 3 channels at scale 2 of the packed grid (full mosaic resolution), same
  encoding, not clipped.

Training data. Teachers are the clean training photos (area/2, the upscaler's
:class:`~nnip.train.data.TeacherCache`) taken as sRGB-encoded white-balanced camera RGB,
which is exactly what the literature protocol mosaics. A share of every batch
(``pattern_fraction``) is synthetic hard patches from :mod:`nnip.simulate.patterns`
(gratings near Nyquist, zone plates, diagonals, fabric, saturated colour edges, text). A
share of the photo crops gets a colour augmentation in linear light - a channel
permutation, a hue rotation about the grey axis and a saturation boost - because photos
hold few saturated colours and sharp colour edges (what McMaster is made of). A share of
the photo crops (``hard_fraction``) is mined as Gharbi et al. (2016) mined demosaicnet's
training set: of ``hard_candidates`` crops the one Malvar's demosaic gets most wrong
(:func:`malvar_error`) is kept, so the hard subjects the issue names (fine stripes, fur,
colour edges near Nyquist) are not drowned by easy smooth crops. Every crop
gets one of the 8 dihedral transforms *before* it is mosaicked as RGGB, so the phase never
changes and one model learns every orientation.

Network (:class:`DemosaicNet`): an ECB stack on the packed grid (:class:`SRNet` without
its anchor) plus a learnable linear skip, a 3x3 conv 4 -> 12 initialised to Malvar,
He & Cutler (2004) - Malvar's 5x5 kernels all fit a 3x3 neighbourhood of 2x2 cells - so
the untrained network is already a 35.8 dB demosaicker (Kodak24) and the body learns
the rest. Both shuffle to full resolution. At export every ECB folds into one 3x3 conv:
the graph is plain Conv / PReLU / DepthToSpace / Add.

Loss (:func:`opponent_l1`): L1 on an opponent transform, luma ``Y`` (BT.601 weights) and
the colour differences ``B - Y`` and ``R - Y``, with the luma term weighted ``luma_weight``
(2 by default) against 1 for each chroma term: vision resolves luminance detail far
better than chroma detail, and zippering and blur of edges are luma errors; the chroma
terms stay at full weight so false colour (the classic demosaic artefact) is still
punished (and RGB PSNR, the benchmark, counts chroma errors fully). The loss skips
``loss_border`` pixels at each side of a crop: inference reflect-pads image borders, so
the zero padding a crop's own border sees in training is not what the model should fit.
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
from nnip.simulate.color import linear_to_srgb, srgb_to_linear
from nnip.simulate.patterns import random_pattern
from nnip.simulate.sensor import mosaic_bayer, pack_bayer
from nnip.train.arch import ECB, SRNet
from nnip.train.data import PatchSampler, TeacherCache, scaled_teachers, training_split
from nnip.train.tasks import ExportSpec, Task, TaskData, ValItem, register_task

__all__ = [
    "DEMOSAIC_CONFIGS",
    "DEMOSAIC_GFLOP_BUDGET",
    "PATTERN_KINDS",
    "malvar_packed_kernel",
    "DemosaicNet",
    "PlainDemosaicNet",
    "mosaic_packed",
    "malvar_demosaic_packed",
    "malvar_error",
    "colour_augment",
    "DemosaicBatches",
    "opponent_l1",
    "psnr_rgb",
]

#: Synthetic kinds mixed into training (``skin`` and ``lights`` teach nothing a demosaicker
#: lacks; ``lights`` exceeds 1 and belongs to the raw pipeline's highlight handling).
PATTERN_KINDS = ("stripes", "zoneplate", "diagonal", "fabric", "color_edges", "text")

#: Cost budget of a demosaic network, GFLOP per mosaic megapixel. 130 until width 64 (v8):
#: on AVX-512 onnxruntime computes convolutions in blocks of 16 channels, so width 64 runs as
#: fast as 56 there (benchmarks/channel_widths.py); AVX2 CPUs (blocks of 8) pay ~1.3x.
DEMOSAIC_GFLOP_BUDGET = 160.0

DEMOSAIC_CONFIGS: dict[str, dict[str, Any]] = {
    # Packed grid: head 4->48, 8 ECB 48->48, tail 48->12, + 3x3 skip 4->12:
    # ~173k MACs per packed pixel = ~87 GFLOP per output (mosaic) megapixel.
    "fast": {
        "channels": 48,
        "blocks": 8,
        "multiplier": 2.0,
        "slopes": "layer",  # one PReLU slope per layer: a LeakyRelu onnxruntime fuses (arch.SLOPES)
        "patch": 96,  # full-resolution crop side (even); the packed input is half of it
        "batch": 8,
        "lr": 7e-4,
        "lr_min_ratio": 0.01,
        "warmup_steps": 300,
        "clip": 1.0,
        "weight_decay": 0.0,
        "luma_weight": 2.0,
        "loss_border": 4,
        "pattern_fraction": 0.25,
        "colour_fraction": 0.5,
        "saturation_max": 2.5,
        "hard_fraction": 0.0,  # share of photo crops mined by Malvar's error (DemosaicBatches)
        "hard_candidates": 4,
        # Area downscale factors of the teachers and each one's share of the photo crops
        # (data.scaled_teachers): factor 4 gives camera JPEGs, whose own demosaic and chroma
        # subsampling soften colour detail, pixel-sharp colour edges.
        "teacher_factors": [2],
        "teacher_shares": [1.0],
        "flat_threshold": 0.03,
        "flat_keep": 0.1,
        "holdout_every": 40,
        "val_crop": 192,
        "val_border": 8,
        "checkpoint_minutes": 3.0,
        "restart_lr_ratio": 0.5,
        "seed": 0,
    },
}
# ~117 GFLOP per mosaic megapixel: width 56, same depth, for a longer run (near the budget).
DEMOSAIC_CONFIGS["quality"] = {**DEMOSAIC_CONFIGS["fast"], "channels": 56, "lr": 5e-4}
# ~152 GFLOP per mosaic megapixel: width 64 (demosaic v8; see DEMOSAIC_GFLOP_BUDGET). v8 was
# grown from a "quality" run (``--init ... --set channels=64``): its checkpoint names that.
DEMOSAIC_CONFIGS["wide"] = {**DEMOSAIC_CONFIGS["quality"], "channels": 64, "batch": 16, "lr": 2.5e-4}

# --------------------------------------------------------------------------- network

# Malvar, He & Cutler 2004, "High-quality linear interpolation for demosaicing of
# Bayer-patterned color images", Fig. 2; all kernels are x 1/8 and centred on the target.
_G_AT_RB = ((0, 0, -1, 0, 0), (0, 0, 2, 0, 0), (-1, 2, 4, 2, -1), (0, 0, 2, 0, 0), (0, 0, -1, 0, 0))
_ROW_NEIGHBOURS = (  # the wanted colour is left and right of the green site
    (0, 0, 0.5, 0, 0), (0, -1, 0, -1, 0), (-1, 4, 5, 4, -1), (0, -1, 0, -1, 0), (0, 0, 0.5, 0, 0)
)
_DIAGONAL = (  # R at B sites and B at R sites
    (0, 0, -1.5, 0, 0), (0, 2, 0, 2, 0), (-1.5, 0, 6, 0, -1.5), (0, 2, 0, 2, 0), (0, 0, -1.5, 0, 0)
)
# Position (dy, dx) in the RGGB cell of each packed plane R, G1, G2, B.
_PLANE_AT = {(0, 0): 0, (0, 1): 1, (1, 0): 2, (1, 1): 3}


def _malvar_kernel(colour: int, dy: int, dx: int) -> np.ndarray | None:
    """Malvar's 5x5 kernel for ``colour`` at cell position (dy, dx); None = measured value."""
    site = ("R", "G", "G", "B")[2 * dy + dx]
    wanted = "RGB"[colour]
    if site == wanted:
        return None
    if wanted == "G":
        return np.array(_G_AT_RB, dtype=np.float64) / 8
    if site != "G":
        return np.array(_DIAGONAL, dtype=np.float64) / 8
    # At a green site R lies on R's rows (dy == 0), B on B's rows (dy == 1).
    same_row = (wanted == "R") == (dy == 0)
    kernel = np.array(_ROW_NEIGHBOURS, dtype=np.float64) / 8
    return kernel if same_row else kernel.T


def malvar_packed_kernel() -> np.ndarray:
    """Malvar 2004 as a 3x3 convolution on the packed RGGB grid, before a pixel shuffle.

    Returns
    -------
    ndarray, float32, shape (12, 4, 3, 3)
        Output channel ``c * 4 + 2 * dy + dx`` is colour ``c`` (R, G, B)
        at position (dy, dx) of the output cell (PixelShuffle's order); input channels are
        the planes R, G1, G2, B. Correlation (``torch.nn.functional.conv2d``), padding 1.
        Every 5x5 tap around a cell position falls within one cell of it, so 3x3 suffices.
    """
    weight = np.zeros((12, 4, 3, 3), dtype=np.float64)
    for colour in range(3):
        for dy in range(2):
            for dx in range(2):
                out = colour * 4 + 2 * dy + dx
                kernel = _malvar_kernel(colour, dy, dx)
                if kernel is None:
                    weight[out, _PLANE_AT[(dy, dx)], 1, 1] = 1.0
                    continue
                for oy in range(-2, 3):
                    for ox in range(-2, 3):
                        cell_y, sub_y = divmod(dy + oy, 2)
                        cell_x, sub_x = divmod(dx + ox, 2)
                        weight[out, _PLANE_AT[(sub_y, sub_x)], cell_y + 1, cell_x + 1] += (
                            kernel[oy + 2, ox + 2]
                        )
    return weight.astype(np.float32)


def _zero_last_stage(block: ECB) -> None:
    """Make an ECB exactly the zero map; every zeroed factor still gets a gradient."""
    with torch.no_grad():
        for conv in (block.conv3, block.expand.conv):
            conv.weight.zero_()
            conv.bias.zero_()
        for edge in block.edges:
            edge.scale.zero_()
            edge.bias.zero_()


class DemosaicNet(nn.Module):
    """ECB body + learnable Malvar-initialised skip, both shuffled to full resolution.

    Input (N, 4, h, w) packed RGGB in [0, 1] (sRGB-encoded); output (N, 3, 2h, 2w), same
    encoding, not clipped. At initialisation the body's tail is zero, so the network is
    Malvar's demosaic.

    Parameters
    ----------
    channels, blocks, multiplier, slopes : see :class:`nnip.train.arch.SRNet`
    """

    def __init__(self, channels: int = 48, blocks: int = 8, multiplier: float = 2.0,
                 slopes: str = "channel") -> None:
        super().__init__()
        self.body = SRNet(4, 3, scale=2, channels=channels, blocks=blocks,
                          multiplier=multiplier, anchor=False, slopes=slopes)
        _zero_last_stage(self.body.layers[-1])
        self.skip = nn.Conv2d(4, 12, 3, padding=1)
        with torch.no_grad():
            self.skip.weight.copy_(torch.from_numpy(malvar_packed_kernel()))
            self.skip.bias.zero_()

    def forward(self, mosaic: torch.Tensor) -> torch.Tensor:
        return self.body(mosaic) + F.pixel_shuffle(self.skip(mosaic), 2)

    def plain(self) -> "PlainDemosaicNet":
        """The exported form: ECBs folded into plain 3x3 convs, same function."""
        skip = nn.Conv2d(4, 12, 3, padding=1)
        skip.load_state_dict(self.skip.state_dict())
        return PlainDemosaicNet(self.body.plain(), skip).eval()


class PlainDemosaicNet(nn.Module):
    """Conv/PReLU stack + linear skip conv, each pixel-shuffled and added (the ONNX graph)."""

    def __init__(self, body: nn.Module, skip: nn.Conv2d) -> None:
        super().__init__()
        self.body, self.skip = body, skip

    def forward(self, mosaic: torch.Tensor) -> torch.Tensor:
        return self.body(mosaic) + F.pixel_shuffle(self.skip(mosaic), 2)


def _build_demosaic_model(config: Mapping[str, Any]) -> nn.Module:
    return DemosaicNet(int(config["channels"]), int(config["blocks"]),
                       float(config.get("multiplier", 2.0)), str(config["slopes"]))


# --------------------------------------------------------------------------- data


def mosaic_packed(rgb: np.ndarray) -> np.ndarray:
    """The model input for an RGB image: its RGGB mosaic, packed.

    Parameters
    ----------
    rgb : ndarray, float32, (H, W, 3), H and W even, sRGB-encoded in [0, 1]

    Returns
    -------
    ndarray, float32, (4, H/2, W/2): planes R, G1, G2, B
    """
    return np.ascontiguousarray(pack_bayer(mosaic_bayer(rgb, "RGGB"), "RGGB"), dtype=np.float32)


def malvar_demosaic_packed(packed: np.ndarray, padding: str = "reflect") -> np.ndarray:
    """Malvar 2004 of a packed RGGB mosaic (4, h, w): (3, 2h, 2w) float32, not clipped.

    :class:`DemosaicNet`'s skip at initialisation as a function, the edges padded by
    ``torch.nn.functional.pad``'s ``padding`` mode.
    """
    weight = torch.from_numpy(malvar_packed_kernel())
    with torch.no_grad():
        cells = torch.from_numpy(np.ascontiguousarray(packed, dtype=np.float32))[None]
        padded = F.pad(cells, (1, 1, 1, 1), mode=padding)
        return F.pixel_shuffle(F.conv2d(padded, weight), 2)[0].numpy()


def malvar_error(rgb: np.ndarray, border: int = 4) -> float:
    """Mean squared error of Malvar's demosaic of the crop's RGGB mosaic: how hard it is.

    Parameters
    ----------
    rgb : ndarray, float32, (H, W, 3), H and W even, in [0, 1]
    border : int
        Pixels left out at each side (the reflected padding's own errors).
    """
    error = malvar_demosaic_packed(mosaic_packed(rgb)) - rgb.transpose(2, 0, 1)
    if border:
        error = error[:, border:-border, border:-border]
    return float(np.mean(np.square(error)))


_LUMA = np.array([0.2126, 0.7152, 0.0722])  # linear-light luminance (BT.709 primaries)


def _hue_rotation(angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` about the grey axis (1, 1, 1) (Rodrigues' formula)."""
    axis = np.ones(3) / math.sqrt(3.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def colour_augment(
    rgb: np.ndarray, rng: np.random.Generator, saturation_max: float = 2.5
) -> np.ndarray:
    """Random channel permutation, hue rotation and saturation boost, in linear light.

    Parameters
    ----------
    rgb : ndarray, float32, (H, W, 3), sRGB-encoded in [0, 1]
    saturation_max : float
        Saturation is scaled by a factor log-uniform in [1, saturation_max] about the
        luminance (so grey stays grey and colours move away from it).

    Returns
    -------
    ndarray, float32, (H, W, 3), sRGB-encoded, clipped to [0, 1] (a boost past the gamut
    clips, as saturated real colours do).
    """
    matrix = np.eye(3)[rng.permutation(3)]
    matrix = _hue_rotation(rng.uniform(-math.pi, math.pi)) @ matrix
    boost = math.exp(rng.uniform(0.0, math.log(saturation_max)))
    # c' = Y + s (c - Y) with Y = luma . c, as a matrix: s I + (1 - s) 1 luma^T
    matrix = (boost * np.eye(3) + (1 - boost) * np.outer(np.ones(3), _LUMA)) @ matrix
    linear = srgb_to_linear(rgb.astype(np.float32))
    mixed = np.clip(linear @ matrix.T.astype(np.float32), 0.0, 1.0)
    return linear_to_srgb(mixed).astype(np.float32)


def _dihedral(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 flips / 90-degree rotations (applied to RGB, before mosaicking)."""
    rgb = np.rot90(rgb, int(rng.integers(4)))
    return rgb[:, ::-1] if rng.random() < 0.5 else rgb


class DemosaicBatches(torch.utils.data.IterableDataset):
    """Endless (packed mosaic, RGB target) batches, NCHW float32, built in the worker.

    Parameters
    ----------
    sampler : PatchSampler
        Photo crops (uint8 teachers).
    config : mapping
        ``batch``, ``patch`` (full-resolution side, even), ``pattern_fraction``,
        ``colour_fraction``, ``saturation_max``; optional ``hard_fraction`` (0 when absent,
        as in checkpoints made before it) and ``hard_candidates``.
    seed : int
        Base seed; the worker id is mixed in.

    Yields
    ------
    (mosaic, target) : torch.Tensor (batch, 4, patch/2, patch/2), (batch, 3, patch, patch)
        sRGB-encoded values in [0, 1].
    """

    def __init__(self, sampler: PatchSampler, config: Mapping[str, Any], seed: int) -> None:
        super().__init__()
        self.sampler, self.seed = sampler, seed
        self.batch, self.patch = int(config["batch"]), int(config["patch"])
        self.pattern_fraction = float(config["pattern_fraction"])
        self.colour_fraction = float(config["colour_fraction"])
        self.saturation_max = float(config["saturation_max"])
        self.hard_fraction = float(config.get("hard_fraction", 0.0))
        self.hard_candidates = int(config.get("hard_candidates", 4))
        if self.patch % 2:
            raise ValueError(f"patch must be even (whole Bayer cells), got {self.patch}")

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        """One training target: float32 (patch, patch, 3), sRGB-encoded in [0, 1]."""
        if rng.random() < self.pattern_fraction:
            kind = PATTERN_KINDS[int(rng.integers(len(PATTERN_KINDS)))]
            rgb = np.clip(random_pattern(kind, self.patch, rng), 0.0, 1.0)
        elif self.hard_fraction and rng.random() < self.hard_fraction:
            rgb = max((self.photo_crop(rng) for _ in range(self.hard_candidates)), key=malvar_error)
        else:
            rgb = self.photo_crop(rng)
        return np.ascontiguousarray(_dihedral(rgb, rng), dtype=np.float32)

    def photo_crop(self, rng: np.random.Generator) -> np.ndarray:
        """A photo crop, float32 in [0, 1], colour-augmented with ``colour_fraction``."""
        rgb = self.sampler.sample(rng, self.patch).astype(np.float32) / 255.0
        if rng.random() < self.colour_fraction:
            rgb = colour_augment(rgb, rng, self.saturation_max)
        return rgb

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        while True:
            crops = [self.crop(rng) for _ in range(self.batch)]
            mosaics = np.stack([mosaic_packed(c) for c in crops])
            targets = np.stack([c.transpose(2, 0, 1) for c in crops])
            yield torch.from_numpy(mosaics), torch.from_numpy(np.ascontiguousarray(targets))


def _demosaic_val(teachers: Sequence[np.ndarray], crop: int) -> list[ValItem]:
    """Centre crops (even sides) of held-out teachers, mosaicked whole."""
    items = []
    for teacher in teachers:
        h, w = teacher.shape[:2]
        ch, cw = min(h, crop) // 2 * 2, min(w, crop) // 2 * 2
        y, x = (h - ch) // 2 // 2 * 2, (w - cw) // 2 // 2 * 2
        rgb = np.asarray(teacher[y:y + ch, x:x + cw], dtype=np.float32) / 255.0
        items.append(((mosaic_packed(rgb),), np.ascontiguousarray(rgb.transpose(2, 0, 1))))
    return items


def _build_demosaic_data(
    config: Mapping[str, Any], data_dirs: Sequence[Path], cache_dir: Path, seed: int
) -> TaskData:
    train_paths, val_paths = training_split(data_dirs, int(config["holdout_every"]))
    cache = TeacherCache(cache_dir)
    factors, teachers, weights = scaled_teachers(config, train_paths, cache_dir,
                                                 int(config["patch"]))
    val = _demosaic_val(cache.get_all(val_paths, min_size=32), int(config["val_crop"]))
    sampler = PatchSampler(teachers, float(config["flat_threshold"]), float(config["flat_keep"]),
                           weights=weights)
    dataset = DemosaicBatches(sampler, config, seed)
    megapixels = sum(t.shape[0] * t.shape[1] for t in teachers) / 1e6
    description = (
        f"{len(teachers)} teachers ({megapixels:.1f} MP, area/"
        f"{'+'.join(str(f) for f in factors)} of {len(train_paths)} files) "
        f"mosaicked as RGGB, {config['pattern_fraction']:.2f} of each batch synthetic "
        f"({', '.join(PATTERN_KINDS)}), {config['colour_fraction']:.2f} of photo crops "
        f"colour-augmented, {dataset.hard_fraction:.2f} mined as the hardest "
        f"of {dataset.hard_candidates} for Malvar; {len(val)} held-out images"
    )
    return TaskData(train=dataset, val=val, description=description)


# --------------------------------------------------------------------------- loss, metric

_Y = (0.299, 0.587, 0.114)  # BT.601 luma of the encoded values (as YCbCr does)


def opponent_l1(
    luma_weight: float = 2.0, border: int = 0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """L1 on (Y, B - Y, R - Y), luma weighted ``luma_weight`` and chroma 1 (module notes).

    Parameters
    ----------
    luma_weight : float
        Weight of the luma term; the two chroma terms weigh 1 each; the sum is divided by
        ``luma_weight + 2`` so the loss stays on the scale of an RGB L1.
    border : int
        Pixels left out at each side of the (N, 3, H, W) prediction and target.
    """
    weights = torch.tensor([luma_weight, 1.0, 1.0]) / (luma_weight + 2.0)

    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = prediction - target
        if border:
            diff = diff[..., border:-border, border:-border]
        r, g, b = diff[:, 0], diff[:, 1], diff[:, 2]
        y = _Y[0] * r + _Y[1] * g + _Y[2] * b
        w = weights.to(diff.device, diff.dtype)
        return w[0] * y.abs().mean() + w[1] * (b - y).abs().mean() + w[2] * (r - y).abs().mean()

    return loss


def _demosaic_loss(config: Mapping[str, Any]):
    return opponent_l1(float(config.get("luma_weight", 2.0)), int(config.get("loss_border", 0)))


def psnr_rgb(prediction: np.ndarray, target: np.ndarray, border: int = 8) -> float:
    """PSNR in dB over R, G and B, ``border`` pixels off each side (the demosaic protocol).

    Parameters
    ----------
    prediction, target : ndarray, float, (3, H, W), sRGB-encoded in [0, 1]
        The prediction is clipped to [0, 1].
    """
    pred = np.clip(prediction, 0.0, 1.0).astype(np.float64)
    true = np.asarray(target, dtype=np.float64)
    if border:
        inside = (slice(None), slice(border, -border), slice(border, -border))
        pred, true = pred[inside], true[inside]
    mse = float(np.mean((pred - true) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


# --------------------------------------------------------------------------- export


def _demosaic_export_spec(config: Mapping[str, Any]) -> ExportSpec:
    encoded = dict(range=(0.0, 1.0), transfer="srgb")
    return ExportSpec(
        task="demosaic",
        inputs=(TensorSpec(
            name="mosaic", channels=4, layout="bayer_packed",
            description="Bayer mosaic phase-normalised to RGGB, packed R, G1 (red rows), "
                        "G2 (blue rows), B at half resolution; white-balanced camera RGB, "
                        "sRGB-encoded",
            **encoded,
        ),),
        outputs=(TensorSpec(
            name="rgb", channels=3, layout="rgb",
            description="full-resolution RGB (2x the packed grid), same encoding, not clipped",
            **encoded,
        ),),
        scale=2,
        align=1,  # the packed grid is already whole cells
        description=(
            f"Bayer demosaicker ({config['variant']}): {int(config['blocks']) + 2} "
            f"re-parameterised ECB convs of width {config['channels']} on the packed RGGB "
            f"grid + learnable Malvar-initialised 3x3 skip, pixel shuffle; gflop_per_mp is "
            f"per packed input megapixel (divide by 4 for per mosaic pixel)"
        ),
    )


register_task(
    Task(
        name="demosaic",
        configs=DEMOSAIC_CONFIGS,
        build_model=_build_demosaic_model,
        build_data=_build_demosaic_data,
        loss=_demosaic_loss,
        export_spec=_demosaic_export_spec,
        evaluate=psnr_rgb,
        default_data=("CBSD432", "T91", "photos"),
    )
)
