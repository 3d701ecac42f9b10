"""The neural lens optimizer (task ``lens``): data, network, loss, metric, export spec.

The model contract is in :mod:`nnip.develop.lens`: inputs ``image`` (demosaicked linear
camera RGB, not white balanced, 1 = white level, encoded with the sRGB curve) and
``optics`` (4 channels, :func:`nnip.develop.optics.optics_planes` - the same function at
inference), output the corrected ``rgb``, same encoding.

Why demosaicked RGB and not the packed mosaic: lateral chromatic aberration is a
displacement between the colour planes, which a network on the full-resolution RGB grid
corrects directly; on the packed grid every colour is sampled at half resolution and the
correction would have to be interpolated twice. The stage also sits where the pipeline
already has RGB (after the demosaic stage), so no extra demosaic or repacking is needed.

Training pairs (:func:`simulate_lens_pair`). A clean crop (a training photo's area/2
teacher, or with probability ``pattern_fraction`` a synthetic patch of
:mod:`nnip.simulate.patterns`: point and line lights far above white, text, stripes,
colour edges, zone plates, fabric) gets one of the 8 dihedral transforms, is placed
somewhere in a virtual 3:2 frame (half-diagonal log-uniform in ``frame_radius_px``, the crop
anywhere in it, so its field radius spans 0..1) and goes through
:func:`nnip.simulate.pairs.raw_pair` with a random lens (:func:`random_lens`: f/1.4 to
f/22 log-uniform with diffraction at the drawn pixel pitch, a field-varying elliptical
aberration growing as rho^2 whose corner size shrinks as the lens is stopped down, a little
defocus now and then, lateral CA of either sign per colour), the simulator's random OLPF,
camera matrix, illuminant and exposure (-2..+0.5 EV: bright areas and lights clip at the
white level exactly as the sensor clips), Poisson-Gaussian noise of a random sensor model at
an ISO log-uniform in ``iso_range``, 14-bit quantisation. The noisy mosaic is demosaicked
the way the pipeline would (``demosaic``: ``malvar`` - Malvar 2004 on the white-balanced
mosaic, or ``nn`` - the installed demosaic model through the engine) and encoded. The target
is the clean camera RGB before the lens and the OLPF, clipped to [0, 1], same encoding. The
optics map states the true diffraction radius at 550 nm, except in a ``blind_fraction`` of
the pairs where it says "unknown" (:data:`~nnip.develop.optics.BLIND_AIRY_PX`). Vignetting
is left out on purpose: brightness is the lensfun profile's business, and a network that
learnt to brighten corners would do it twice. ``context`` pixels around each crop are
simulated and then cut, so no crop border is ever seen blurred against padding.

Training reads these pairs from a bank (:mod:`nnip.train.lens_bank`, ``bank_entries`` > 0,
the default): the lens part of a simulation, by far its dearest, is computed once per bank
entry and reused ``bank_reuse`` times or more; crop, dihedral transform, exposure,
illuminant, OLPF, noise, demosaic and blind flag are drawn afresh per sample. The
validation pairs are always simulated whole with fixed seeds, so runs compare.

Network (:class:`LensNet`), a two-level U-Net whose full-resolution work is only its first
and last convolution: a stride-2 3x3 convolution reads image and optics map at full
resolution into ``widths[0]`` channels at 1/2, ``blocks[0]`` ECB convolutions there, a
stride-2 convolution to ``widths[1]`` channels at 1/4, ``blocks[1]`` ECBs, a transposed
convolution back up (skip added), ``blocks[0]`` ECBs, and a 3x3 convolution to 12 channels
shuffled to a full-resolution 3-channel residual added to the input (the last convolution
starts at zero: the untrained network is the identity). Where a channel of the input is
clipped (linear >= :data:`nnip.develop.lens.CLIP_LEVEL`), the input is kept, as the stage
does. Any height and width run (inner levels are cropped to their skip); ``align`` 4 keeps
tiles on the stride grid. ``fast`` costs ~55 GFLOP per megapixel, ``quality`` ~95.

Loss: L1 of the encoded values (perceptual weighting: an error in the shadows counts as
it shows) over the crop minus ``loss_border`` pixels. Metric: PSNR of the encoded RGB
(clipped to [0, 1]), 8 pixels of border left out.
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
from nnip.develop.colour import encode_transfer
from nnip.develop.lens import CLIP_LEVEL
from nnip.develop.optics import BLIND_AIRY_PX, airy_radius_px, optics_planes
from nnip.simulate.optics import Field, LensParams
from nnip.simulate.pairs import raw_pair
from nnip.simulate.patterns import random_pattern
from nnip.simulate.sensor import SENSORS, pack_bayer
from nnip.train.arch import ECB, ECBLevel, fold_ecbs, prelu_size
from nnip.train.data import PatchSampler, TeacherCache, training_split
from nnip.train.raw_tasks import malvar_demosaic_packed, psnr_rgb
from nnip.train.tasks import ExportSpec, Task, TaskData, ValItem, register_task

__all__ = [
    "LENS_CONFIGS",
    "PATTERN_KINDS",
    "VAL_CONDITIONS",
    "LensNet",
    "random_lens",
    "random_field",
    "random_clean_crop",
    "random_iso",
    "random_sensor",
    "random_illuminant",
    "malvar_demosaic",
    "demosaicker",
    "denoiser",
    "simulate_lens_pair",
    "random_capture",
    "LensBatches",
    "lens_sampler",
    "encoded_l1",
]

#: Synthetic patch kinds mixed into training (``lights``: clipped point and line sources).
PATTERN_KINDS = ("lights", "text", "stripes", "color_edges", "zoneplate", "fabric", "diagonal")

LENS_CONFIGS: dict[str, dict[str, Any]] = {
    # Widths 32 / 64 at 1/2 and 1/4 resolution: ~27k MACs per pixel, ~55 GFLOP/MP
    # (budget ~100, so a 24 MP develop with denoise + demosaic + lens stays within 60 s).
    "fast": {
        "widths": (32, 64),
        "blocks": (2, 6),
        "multiplier": 2.0,
        "slopes": "layer",  # one PReLU slope per layer: a LeakyRelu onnxruntime fuses (arch.SLOPES)
        "patch": 128,  # full-resolution side, a multiple of 4
        "context": 16,  # simulated around the patch, then cut
        "batch": 12,
        "lr": 5e-4,
        "lr_min_ratio": 0.01,
        "warmup_steps": 300,
        "clip": 1.0,
        "weight_decay": 0.0,
        "loss_border": 8,
        "pattern_fraction": 0.25,
        "blind_fraction": 0.1,
        "fnumber_range": (1.4, 22.0),
        "pitch_range_um": (2.0, 6.5),
        "aberration_max_px": 3.0,
        "defocus_fraction": 0.15,
        "defocus_max_px": 0.8,
        "ca_max_px": 1.5,
        "iso_range": (100.0, 12800.0),
        "frame_radius_px": (400.0, 4000.0),
        "demosaic": "malvar",
        # Share of samples denoised by the installed denoise model before the demosaic, as
        # the default develop (--denoise auto) feeds the lens stage.
        "denoise_fraction": 0.0,
        "flat_threshold": 0.02,
        "flat_keep": 0.3,
        "holdout_every": 40,
        "val_crop": 192,
        "checkpoint_minutes": 3.0,
        "restart_lr_ratio": 0.5,
        "seed": 0,
        # The bank of blurred crops (nnip.train.lens_bank); bank_entries 0 = every pair
        # simulated whole, as the validation pairs are.
        "bank_entries": 4000,  # ~4 GB under runs/cache/lens-bank/
        "bank_reuse": 16,  # samples per entry built while the bank fills
        "bank_side": 288,  # an entry's side: 2 x patch + 2 x context
    },
}
# ~47k MACs per pixel (~95 GFLOP/MP): the budget's ceiling.
LENS_CONFIGS["quality"] = {**LENS_CONFIGS["fast"], "widths": (40, 80), "blocks": (2, 8),
                           "lr": 4e-4, "warmup_steps": 500}

#: Validation conditions, cycled over the held-out crops (fixed, so runs compare):
#: (f-number, pitch um, corner aberration px, CA red px, CA blue px, ISO, field radius).
VAL_CONDITIONS = (
    (2.0, 4.0, 2.5, 1.0, -0.8, 400.0, 0.9),
    (16.0, 4.0, 0.3, 0.3, -0.3, 3200.0, 0.5),
    (22.0, 3.0, 0.2, 0.0, 0.0, 400.0, 0.2),
    (5.6, 5.0, 0.8, -0.5, 0.5, 3200.0, 0.7),
    (2.8, 4.5, 1.5, 0.8, 0.8, 100.0, 0.95),
)

_ENCODED_CLIP = float(encode_transfer(np.float32(CLIP_LEVEL), "srgb"))


# --------------------------------------------------------------------------- network


class LensNet(nn.Module):
    """Two-level residual U-Net for lens correction (see the module notes).

    ``forward(image, optics)``: (N, 3, H, W) sRGB-encoded camera RGB and (N, 4, H, W)
    optics map, any H and W -> (N, 3, H, W) corrected image, same encoding, not clipped;
    clipped input channels pass through unchanged.

    Parameters
    ----------
    widths : 2 ints
        Channels at 1/2 and 1/4 resolution.
    blocks : 2 ints
        ECB convolutions at 1/2 (on the way down, and again on the way up) and at 1/4.
    multiplier : float
        ECB expand-branch width.
    slopes : str
        PReLU slopes per channel or per layer (:data:`nnip.train.arch.SLOPES`).
    """

    def __init__(self, widths: Sequence[int] = (32, 64), blocks: Sequence[int] = (2, 6),
                 multiplier: float = 2.0, slopes: str = "channel") -> None:
        super().__init__()
        w0, w1 = (int(w) for w in widths)
        n0, n1 = (int(b) for b in blocks)
        self.head = nn.Conv2d(7, w0, 3, stride=2, padding=1)
        self.head_act = nn.PReLU(prelu_size(slopes, w0))
        self.enc = ECBLevel(w0, n0, multiplier, slopes)
        self.down = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.down_act = nn.PReLU(prelu_size(slopes, w1))
        self.mid = ECBLevel(w1, n1, multiplier, slopes)
        self.up = nn.ConvTranspose2d(w1, w0, 2, stride=2)
        self.dec = ECBLevel(w0, n0, multiplier, slopes)
        self.tail = nn.Conv2d(w0, 12, 3, padding=1)
        with torch.no_grad():  # start as the identity
            self.tail.weight.zero_()
            self.tail.bias.zero_()

    def forward(self, image: torch.Tensor, optics: torch.Tensor) -> torch.Tensor:
        h0 = self.enc(self.head_act(self.head(torch.cat([image, optics], dim=1))))
        h1 = self.mid(self.down_act(self.down(h0)))
        # Transposed convolutions give 2 * ceil(n / 2) rows: crop to the skip's size.
        y = self.dec(self.up(h1)[..., : h0.shape[2], : h0.shape[3]] + h0)
        residual = F.pixel_shuffle(self.tail(y), 2)[..., : image.shape[2], : image.shape[3]]
        keep = (image < _ENCODED_CLIP).to(image.dtype)  # clipped channels pass through
        return image + residual * keep

    def plain(self) -> "LensNet":
        """The exported form: a copy with every ECB folded into one Conv2d (same function)."""
        return fold_ecbs(self)


def _build_lens_model(config: Mapping[str, Any]) -> nn.Module:
    return LensNet(config["widths"], config["blocks"], float(config.get("multiplier", 2.0)),
                   str(config["slopes"]))


# --------------------------------------------------------------------------- simulation


def random_lens(rng: np.random.Generator, config: Mapping[str, Any]) -> LensParams:
    """A random lens for training (module notes); no vignetting, centred.

    The corner aberration's upper bound is ``aberration_max_px`` up to f/4 and shrinks as
    ``4 / N`` beyond (real lenses sharpen as they are stopped down).
    """
    low, high = (float(v) for v in config["fnumber_range"])
    fnumber = float(2.0 ** rng.uniform(math.log2(low), math.log2(high)))
    ceiling = float(config["aberration_max_px"]) * min(1.0, 4.0 / fnumber)
    defocus = 0.0
    if rng.random() < float(config["defocus_fraction"]):
        defocus = float(rng.uniform(0.0, float(config["defocus_max_px"])))
    ca = float(config["ca_max_px"])
    return LensParams(
        fnumber=fnumber,
        pixel_pitch_um=float(rng.uniform(*config["pitch_range_um"])),
        aberration_px=float(rng.uniform(0.0, ceiling)),
        defocus_px=defocus,
        ca_red_px=float(rng.uniform(-ca, ca)),
        ca_blue_px=float(rng.uniform(-ca, ca)),
    )


def random_field(rng: np.random.Generator, size: int, radius_range: Sequence[float]) -> Field:
    """Place a ``size`` x ``size`` crop anywhere in a virtual 3:2 frame.

    The frame's half-diagonal is log-uniform in ``radius_range`` (pixels); the crop's centre
    is uniform over the frame, so its field radius covers 0..1 (more often the outer zones,
    which hold more area - where lenses need the help).
    """
    r_corner = float(math.exp(rng.uniform(math.log(radius_range[0]), math.log(radius_range[1]))))
    half_w, half_h = r_corner * 3.0 / math.hypot(3.0, 2.0), r_corner * 2.0 / math.hypot(3.0, 2.0)
    py, px = rng.uniform(-half_h, half_h), rng.uniform(-half_w, half_w)
    centre = (size - 1) / 2.0
    return Field(centre - py, centre - px, r_corner)


def _field_at(size: int, rho: float, angle: float, r_corner: float = 3000.0) -> Field:
    """A crop whose centre lies at field radius ``rho`` in direction ``angle``."""
    centre = (size - 1) / 2.0
    return Field(centre - rho * r_corner * math.sin(angle),
                 centre - rho * r_corner * math.cos(angle), r_corner)


def malvar_demosaic(mosaic: np.ndarray, gains: Sequence[float]) -> np.ndarray:
    """Malvar 2004 demosaic of an RGGB mosaic, white balanced by ``gains`` while it runs.

    Parameters
    ----------
    mosaic : ndarray, float32, (H, W), H and W even, RGGB, linear, not white balanced
    gains : 3 floats
        White-balance multipliers applied before interpolating and divided out after.

    Returns
    -------
    ndarray, float32, (H, W, 3): linear camera RGB, not white balanced, not clipped.
    """
    wb = np.asarray(gains, dtype=np.float32).reshape(3)
    packed = pack_bayer(np.asarray(mosaic, dtype=np.float32), "RGGB")
    packed = packed * wb[[0, 1, 1, 2], None, None]
    rgb = malvar_demosaic_packed(packed, padding="replicate")
    return np.ascontiguousarray(np.moveaxis(rgb, 0, -1) / wb, dtype=np.float32)


def _installed(task: str) -> tuple[Any, Any]:
    """(engine, spec) of the installed model for ``task``, on one CPU thread (data workers)."""
    from nnip.core.engine import Engine
    from nnip.core.models import Registry

    registry = Registry()
    return Engine("cpu", threads=1, registry=registry), registry.find(task)


def _nn_demosaicker() -> Callable[[np.ndarray, Sequence[float]], np.ndarray]:
    """The installed demosaic model through the engine, as the pipeline runs it."""
    from nnip.develop.demosaic import nn_demosaic

    engine, spec = _installed("demosaic")

    def run(mosaic: np.ndarray, gains: Sequence[float]) -> np.ndarray:
        return nn_demosaic(mosaic, "RGGB", gains, engine, spec)

    return run


def simulate_lens_pair(
    clean_srgb: np.ndarray,
    rng: np.random.Generator,
    *,
    lens: LensParams,
    field: Field,
    iso: float,
    sensor: str = "sony-a7rm2",
    blind: bool = False,
    context: int = 16,
    demosaic: Callable[[np.ndarray, Sequence[float]], np.ndarray] = malvar_demosaic,
    illuminant: float | None = None,
    exposure: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training example from a clean sRGB crop (see the module notes).

    Parameters
    ----------
    clean_srgb : ndarray, float32, (S, S, 3), sRGB-encoded (values above 1 are lights),
        S even; ``field`` places it in the frame.
    lens, field, iso, sensor : the capture.
    blind : bool
        The optics map says "diffraction unknown".
    context : int
        Pixels cut from each side after simulating (S - 2 context must be a multiple of 4).
    demosaic : callable (mosaic, gains) -> (H, W, 3)
        How the pipeline would demosaic (:func:`malvar_demosaic` by default).

    Returns
    -------
    image : ndarray, float32, (3, P, P)
        Demosaicked noisy capture, linear camera RGB encoded with the sRGB curve.
    optics : ndarray, float32, (4, P, P)
        Its optics map.
    target : ndarray, float32, (3, P, P)
        The clean camera RGB before lens and OLPF, clipped to [0, 1], sRGB-encoded.
    """
    record = raw_pair(clean_srgb, rng, pattern="RGGB", iso=iso, sensor=sensor, lens=lens,
                      field=field, illuminant=illuminant, exposure=exposure)
    rgb = demosaic(record["mosaic"], record["wb_gains"])
    size = rgb.shape[0] - 2 * context
    inner = (slice(context, context + size), slice(context, context + size))
    airy = BLIND_AIRY_PX if blind else airy_radius_px(lens.fnumber, lens.pixel_pitch_um)
    optics = optics_planes(size, size, airy, field.cy - context, field.cx - context,
                           field.r_corner)
    image = encode_transfer(np.moveaxis(rgb[inner], -1, 0), "srgb")
    target = encode_transfer(np.moveaxis(record["sharp"][inner], -1, 0), "srgb")
    return (np.ascontiguousarray(image), optics, np.ascontiguousarray(target))


def _dihedral(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rgb = np.rot90(rgb, int(rng.integers(4)))
    return rgb[:, ::-1] if rng.random() < 0.5 else rgb


def random_clean_crop(sampler: PatchSampler | None, pattern_fraction: float, size: int,
                      rng: np.random.Generator, min_size: int | None = None) -> np.ndarray:
    """A clean sRGB crop, float32 (size, size, 3), lights above 1: a photo crop, or with
    probability ``pattern_fraction`` (always without a sampler) a synthetic patch; one of
    the 8 dihedral transforms applied. With ``min_size``, a photo smaller than ``size``
    gives a crop of its shorter side (:meth:`PatchSampler.sample`)."""
    if sampler is None or rng.random() < pattern_fraction:
        kind = PATTERN_KINDS[int(rng.integers(len(PATTERN_KINDS)))]
        rgb = random_pattern(kind, size, rng)
    else:
        rgb = sampler.sample(rng, size, min_size).astype(np.float32) / 255.0
    return np.ascontiguousarray(_dihedral(rgb, rng), dtype=np.float32)


def random_iso(rng: np.random.Generator, iso_range: Sequence[float]) -> float:
    """An ISO log-uniform in ``iso_range``."""
    low, high = (float(v) for v in iso_range)
    return float(2.0 ** rng.uniform(math.log2(low), math.log2(high)))


def random_sensor(rng: np.random.Generator) -> str:
    """One of the simulator's sensor noise models, uniformly."""
    return sorted(SENSORS)[int(rng.integers(len(SENSORS)))]


def random_illuminant(rng: np.random.Generator) -> float | None:
    """The scene light: D65 (None) in half the draws, else 2800..7500 K."""
    return float(rng.uniform(2800.0, 7500.0)) if rng.random() < 0.5 else None


def random_capture(
    crop: np.ndarray, rng: np.random.Generator, config: Mapping[str, Any], demosaic: Callable
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`simulate_lens_pair` of ``crop`` with a random lens, field, ISO, sensor, blind
    draw and light from the ranges of ``config`` (the training stream's example)."""
    return simulate_lens_pair(
        crop, rng,
        lens=random_lens(rng, config),
        field=random_field(rng, crop.shape[0], config["frame_radius_px"]),
        iso=random_iso(rng, config["iso_range"]),
        sensor=random_sensor(rng),
        blind=bool(rng.random() < float(config["blind_fraction"])),
        context=int(config["context"]),
        demosaic=demosaic,
        illuminant=random_illuminant(rng),
    )


def denoiser() -> Callable[[np.ndarray, Any], np.ndarray]:
    """The installed denoise model through the engine, as the pipeline's ``--denoise auto``
    runs it on an RGGB mosaic, told the noise model (a, b) the noise was drawn from."""
    from nnip.develop.denoise import denoise_mosaic
    from nnip.develop.noise import NoiseParams

    engine, spec = _installed("denoise")

    def run(mosaic: np.ndarray, noise: Any) -> np.ndarray:
        params = NoiseParams(float(noise.a), float(noise.b), "dng-noiseprofile")
        return denoise_mosaic(mosaic, "RGGB", params, engine, spec)

    return run


def demosaicker(name: str) -> Callable[[np.ndarray, Sequence[float]], np.ndarray]:
    """The ``demosaic`` config value as a function (mosaic, gains) -> RGB."""
    return _nn_demosaicker() if name == "nn" else malvar_demosaic


class LensBatches(torch.utils.data.IterableDataset):
    """Endless ((image, optics), target) batches, NCHW float32, built in the worker.

    Parameters
    ----------
    sampler : PatchSampler or None
        Photo crops (uint8 teachers); None: synthetic patches only.
    config : mapping
        The task config (module notes for the keys).
    seed : int
    """

    def __init__(self, sampler: PatchSampler | None, config: Mapping[str, Any], seed: int) -> None:
        super().__init__()
        self.sampler, self.config, self.seed = sampler, dict(config), seed
        self.batch, self.patch = int(config["batch"]), int(config["patch"])
        self.context = int(config["context"])
        if self.patch % 4:
            raise ValueError(f"patch must be a multiple of 4 (the network's stride), got {self.patch}")
        self.pattern_fraction = float(config["pattern_fraction"]) if sampler else 1.0

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        """A clean sRGB crop, float32 (patch + 2 context)^2 x 3 (lights exceed 1)."""
        return random_clean_crop(self.sampler, self.pattern_fraction,
                                 self.patch + 2 * self.context, rng)

    def example(self, rng: np.random.Generator, demosaic: Callable) -> tuple[np.ndarray, ...]:
        return random_capture(self.crop(rng), rng, self.config, demosaic)

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        demosaic = demosaicker(self.config["demosaic"])
        while True:
            items = [self.example(rng, demosaic) for _ in range(self.batch)]
            image, optics, target = (torch.from_numpy(np.stack(parts)) for parts in zip(*items))
            yield (image, optics), target


def _lens_val(teachers: Sequence[np.ndarray], crop: int, context: int, seed: int = 4321,
              demosaic: Callable[[np.ndarray, Sequence[float]], np.ndarray] = malvar_demosaic,
              ) -> list[ValItem]:
    """Centre crops of held-out teachers under :data:`VAL_CONDITIONS`, fixed noise,
    demosaicked as training demosaics (``demosaic``)."""
    items = []
    for index, teacher in enumerate(teachers):
        h, w = teacher.shape[:2]
        inner = min(h, w, crop + 2 * context) - 2 * context
        inner -= inner % 4
        if inner < 16:
            continue
        size = inner + 2 * context
        y, x = (h - size) // 2, (w - size) // 2
        rgb = np.asarray(teacher[y:y + size, x:x + size], dtype=np.float32) / 255.0
        fnumber, pitch, aberration, ca_r, ca_b, iso, rho = VAL_CONDITIONS[index % len(VAL_CONDITIONS)]
        lens = LensParams(fnumber=fnumber, pixel_pitch_um=pitch, aberration_px=aberration,
                          ca_red_px=ca_r, ca_blue_px=ca_b)
        rng = np.random.default_rng([seed, index])
        image, optics, target = simulate_lens_pair(
            rgb, rng, lens=lens, field=_field_at(size, rho, 0.7 + index), iso=iso,
            context=context, exposure=0.8, demosaic=demosaic)
        items.append(((image, optics), target))
    return items


def lens_sampler(config: Mapping[str, Any], train_paths: Sequence[Path],
                 cache: TeacherCache) -> PatchSampler:
    """Photo crops for training: the teachers with room for a patch and its context."""
    size = int(config["patch"]) + 2 * int(config["context"])
    return PatchSampler(cache.get_all(train_paths, min_size=size),
                        float(config["flat_threshold"]), float(config["flat_keep"]))


def _training_stream(config: Mapping[str, Any], sampler: PatchSampler, train_paths: Sequence[Path],
                     cache_dir: Path, seed: int) -> tuple[torch.utils.data.IterableDataset, str]:
    """The training batches (a bank's when ``bank_entries`` > 0) and a phrase for the log."""
    if int(config.get("bank_entries", 0)) <= 0:
        return LensBatches(sampler, config, seed), "every pair simulated whole"
    # lens_bank builds on this module's simulation helpers, so it is imported here.
    from nnip.train import lens_bank  # noqa: PLC0415

    directory = lens_bank.bank_directory(Path(cache_dir).parent / "lens-bank", config, train_paths)
    phrase = (f"bank {directory} ({lens_bank.stored_entries(directory)} of "
              f"{config['bank_entries']} entries, {config['bank_reuse']} samples per new entry)")
    return lens_bank.BankBatches(sampler, config, seed, directory), phrase


def denoised_first(config: Mapping[str, Any]) -> str:
    """' (0.50 denoised first)' for a run with ``denoise_fraction``, else ''."""
    share = float(config.get("denoise_fraction", 0.0))
    return f" ({share:.2f} denoised first)" if share > 0 else ""


def _build_lens_data(
    config: Mapping[str, Any], data_dirs: Sequence[Path], cache_dir: Path, seed: int
) -> TaskData:
    train_paths, val_paths = training_split(data_dirs, int(config["holdout_every"]))
    cache = TeacherCache(cache_dir)
    sampler = lens_sampler(config, train_paths, cache)
    val = _lens_val(cache.get_all(val_paths, min_size=64), int(config["val_crop"]),
                    int(config["context"]), demosaic=demosaicker(config["demosaic"]))
    train, stream = _training_stream(config, sampler, train_paths, cache_dir, seed)
    teachers = sampler.teachers
    megapixels = sum(t.shape[0] * t.shape[1] for t in teachers) / 1e6
    f_low, f_high = (float(v) for v in config["fnumber_range"])
    iso_low, iso_high = (float(v) for v in config["iso_range"])
    description = (
        f"{len(teachers)} teachers ({megapixels:.1f} MP, area/2 of {len(train_paths)} files) "
        f"+ {config['pattern_fraction']:.2f} synthetic ({', '.join(PATTERN_KINDS)}); "
        f"nnip.simulate raw_pair with random lenses f/{f_low:g}..f/{f_high:g}, corner "
        f"aberration <= {config['aberration_max_px']} px, lateral CA <= {config['ca_max_px']} px, "
        f"ISO {iso_low:g}..{iso_high:g}, {config['demosaic']} demosaic"
        f"{denoised_first(config)}, "
        f"{config['blind_fraction']:.2f} blind; {stream}; {len(val)} held-out crops"
    )
    return TaskData(train=train, val=val, description=description)


# --------------------------------------------------------------------------- loss, export


def encoded_l1(border: int = 0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """L1 of the encoded values, ``border`` pixels left out at each side."""

    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = prediction - target
        if border:
            diff = diff[..., border:-border, border:-border]
        return diff.abs().mean()

    return loss


def _lens_loss(config: Mapping[str, Any]):
    return encoded_l1(int(config.get("loss_border", 0)))


def _lens_export_spec(config: Mapping[str, Any]) -> ExportSpec:
    return ExportSpec(
        task="lens",
        inputs=(
            TensorSpec(
                name="image", channels=3, layout="rgb", range=(0.0, 1.0), transfer="srgb",
                description="demosaicked camera RGB, not white balanced, 1 = white level, "
                            "sRGB curve mirrored through 0, not clipped",
            ),
            TensorSpec(
                name="optics", channels=4, layout="optics", range=(-1.0, 16.0),
                transfer="linear",
                description="Airy radius px at 550 nm (-1 = unknown), field radius (0 centre, "
                            "1 corner), cos and sin of the field angle "
                            "(nnip.develop.optics.optics_planes)",
            ),
        ),
        outputs=(TensorSpec(
            name="rgb", channels=3, layout="rgb", range=(0.0, 1.0), transfer="srgb",
            description="corrected image, same encoding, not clipped; clipped input channels "
                        "unchanged",
        ),),
        scale=1,
        align=4,  # two stride-2 levels
        # Its margin of 40 makes 768-px tiles 25 % overlap: 1536 ran 1.15x faster on the
        # AMD host for ~560 MiB more (benchmarks/tile_sizes.py, 2026-11-27).
        tiles={"cpu": 1536},
        description=(
            f"lens optimizer ({config['variant']}): residual two-level U-Net, widths "
            f"{tuple(config['widths'])} at 1/2 and 1/4 resolution, ECB convs folded; "
            f"deblurs field-varying aberration and diffraction, removes lateral CA, "
            f"conditioned on the EXIF optics map"
        ),
    )


register_task(
    Task(
        name="lens",
        configs=LENS_CONFIGS,
        build_model=_build_lens_model,
        build_data=_build_lens_data,
        loss=_lens_loss,
        export_spec=_lens_export_spec,
        evaluate=psnr_rgb,
        default_data=("CBSD432", "T91", "photos"),
    )
)
