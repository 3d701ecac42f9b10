"""2x super-resolution quality on Set5 / Set14, the standard protocol, beside published figures.

Protocol (what published tables use, see ../shared/README.md): crop HR to a multiple of 2;
LR = MATLAB ``imresize(HR, 0.5)`` on uint8 (antialiased cubic, rounded to uint8); upscale;
round the result to uint8; BT.601 Y (in [16, 235]); shave 2 pixels per border; PSNR on Y and
SSIM (Wang et al. 2004: 11x11 Gaussian, sigma 1.5, 'valid', on Y * 255). Grey images are
taken as R = G = B. Bicubic through this harness gives 33.68 / 30.33 dB.

Usage::

    python benchmarks/sr_quality.py                          # bicubic, Lanczos, every upscale model
    python benchmarks/sr_quality.py --models upscale-fast    # only these models (plus baselines)

Models run through the project's engine (``nnip.core.engine.Engine(...).run``: tiled, as
``nnups`` runs them). Never train or tune on these images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy.signal import convolve2d

from common import Section, publish

from nnip.simulate.resize import imresize, rgb_to_y

__all__ = ["PUBLISHED", "load_hr", "protocol_lr", "psnr_y", "ssim_y", "evaluate", "main"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BENCH = REPO / ".." / "shared" / "data" / "bench"
SETS = ("Set5", "Set14")

#: Published 2x Y-PSNR (Set5, Set14) with GFLOP per input megapixel where MODELS.md gives it
#: (8.68 x the papers' 720p-output multiply-accumulates). From the papers' tables; ECBSR
#: from the ETDS one-protocol retrain table quoted in ../shared/MODELS.md.
PUBLISHED: tuple[tuple[str, float | None, float, float], ...] = (
    ("FSRCNN (Dong et al. 2016)", None, 37.00, 32.63),
    ("ECBSR-M4C32 (ETDS retrain table)", 83.0, 37.39, 33.03),
    ("CARN-M (Ahn et al. 2018)", 790.0, 37.53, 33.26),
    ("IMDN (Hui et al. 2019)", 1398.0, 38.00, 33.63),
    ("EDSR (Lim et al. 2017)", None, 38.11, 33.92),
    ("SwinIR, DF2K (Liang et al. 2021)", None, 38.42, 34.46),
)


@dataclass
class Scores:
    """Per-set mean PSNR / SSIM of one method, and its run time per input megapixel."""

    psnr: dict[str, float] = field(default_factory=dict)
    ssim: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    megapixels: float = 0.0


def load_hr(path: Path) -> np.ndarray:
    """HR ground truth: uint8 (H, W, 3), cropped to even size (grey replicated to RGB)."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


def protocol_lr(hr: np.ndarray) -> np.ndarray:
    """LR input: MATLAB-compatible bicubic halving of the uint8 HR, uint8 (H/2, W/2, 3)."""
    return imresize(hr, 0.5)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int = 2) -> float:
    """Y-channel PSNR (dB) of two uint8 (H, W, 3) images, ``shave`` pixels off each border."""
    a = rgb_to_y(sr / 255.0)[shave:-shave, shave:-shave]
    b = rgb_to_y(hr / 255.0)[shave:-shave, shave:-shave]
    return float(10.0 * np.log10(1.0 / np.mean((a - b) ** 2)))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    axis = np.arange(size) - (size - 1) / 2.0
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int = 2) -> float:
    """SSIM of Wang et al. (their MATLAB ``ssim_index``) on Y * 255 of uint8 RGB images."""
    a = 255.0 * rgb_to_y(sr / 255.0)[shave:-shave, shave:-shave]
    b = 255.0 * rgb_to_y(hr / 255.0)[shave:-shave, shave:-shave]
    window = _gaussian_window()
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return convolve2d(x, window, mode="valid")  # symmetric window: same as filter2

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean())


#: An upscaler: LR uint8 (h, w, 3) -> SR uint8 (2h, 2w, 3).
Upscaler = Callable[[np.ndarray], np.ndarray]


def bicubic(lr: np.ndarray) -> np.ndarray:
    return imresize(lr, 2.0)


def lanczos(lr: np.ndarray) -> np.ndarray:
    image = Image.fromarray(lr)
    return np.asarray(image.resize((lr.shape[1] * 2, lr.shape[0] * 2), Image.Resampling.LANCZOS))


def model_upscaler(engine, spec) -> Upscaler:
    """Run a manifest model through the engine (tiled); output rounded to uint8."""

    def run(lr: np.ndarray) -> np.ndarray:
        chw = (lr.astype(np.float32) / 255.0).transpose(2, 0, 1)
        out = engine.run(spec, [np.ascontiguousarray(chw)])
        return _to_uint8(out.transpose(1, 2, 0))

    return run


def command_upscaler(engine, spec) -> Upscaler:
    """What ``nnups upscale`` computes: the network plus the fidelity step; rounded to uint8."""
    from nnip.core.imageio import Image, ImageMeta  # noqa: PLC0415
    from nnups.upscale import upscale_image  # noqa: PLC0415

    meta = ImageMeta(format="png", bit_depth=8, mode="rgb")

    def run(lr: np.ndarray) -> np.ndarray:
        image = Image(pixels=lr.astype(np.float32) / 255.0, alpha=None, meta=meta)
        return _to_uint8(upscale_image(image, engine, spec).pixels)

    return run


def evaluate(upscale: Upscaler, sets: dict[str, list[np.ndarray]]) -> Scores:
    """Mean PSNR / SSIM per set; the clock covers only the upscaling."""
    scores = Scores()
    for name, images in sets.items():
        psnrs, ssims = [], []
        for hr in images:
            lr = protocol_lr(hr)
            start = time.perf_counter()
            sr = upscale(lr)
            scores.seconds += time.perf_counter() - start
            scores.megapixels += lr.shape[0] * lr.shape[1] / 1e6
            if sr.shape != hr.shape:
                raise ValueError(f"upscaler returned {sr.shape} for HR {hr.shape}")
            psnrs.append(psnr_y(sr, hr))
            ssims.append(ssim_y(sr, hr))
        scores.psnr[name], scores.ssim[name] = float(np.mean(psnrs)), float(np.mean(ssims))
    return scores


def _table(rows: list[tuple[str, str, Scores | None, str]], set_names: Sequence[str]) -> str:
    head = "| method | GFLOP/MP | " + " | ".join(f"{s} PSNR / SSIM" for s in set_names)
    head += " | s per input MP | source |"
    lines = [head, "|" + "---|" * (len(set_names) + 4)]
    for name, gflop, scores, source in rows:
        if scores is None:  # a published row: PSNR only, in source order Set5, Set14
            cells = source.split(";")
            lines.append(f"| {name} | {gflop} | " + " | ".join(cells[:-1]) + f" | - | {cells[-1]} |")
            continue
        cells = [f"{scores.psnr[s]:.2f} / {scores.ssim[s]:.4f}" for s in set_names]
        speed = scores.seconds / scores.megapixels if scores.megapixels else 0.0
        lines.append(f"| {name} | {gflop} | " + " | ".join(cells) + f" | {speed:.2f} | {source} |")
    return "\n".join(lines)


def _published_rows(set_names: Sequence[str]) -> list[tuple[str, str, None, str]]:
    rows = []
    for name, gflop, set5, set14 in PUBLISHED:
        figures = {"Set5": f"{set5:.2f}", "Set14": f"{set14:.2f}"}
        cells = ";".join(figures.get(s, "-") for s in set_names)
        rows.append((name, f"{gflop:.0f}" if gflop else "-", None, f"{cells};published"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="comma-separated model names (default: every upscale model)")
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH, help="folder holding Set5/, Set14/")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--models-dir", help="models directory (default as nnups resolves it)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=None, help="also write into this RESULTS.md")
    args = parser.parse_args(argv)

    set_names = [s for s in args.sets.split(",") if s]
    missing = [s for s in set_names if not (args.bench / s).is_dir()]
    if missing:
        print(f"error: benchmark folder(s) not found under {args.bench}: {', '.join(missing)}", file=sys.stderr)
        return 2
    sets = {s: [load_hr(p) for p in sorted((args.bench / s).glob("*.png"))] for s in set_names}

    rows: list[tuple[str, str, Scores | None, str]] = [
        ("bicubic (MATLAB imresize)", "-", evaluate(bicubic, sets), "measured"),
        ("Lanczos (Pillow)", "-", evaluate(lanczos, sets), "measured"),
    ]
    from nnip.core.engine import Engine  # noqa: PLC0415 (heavy: onnxruntime)
    from nnip.core.models import Registry  # noqa: PLC0415

    registry = Registry(args.models_dir)
    names = args.models.split(",") if args.models else [s.name for s in registry.for_task("upscale")]
    engine = Engine(args.device, threads=args.threads, registry=registry)
    for name in names:
        spec = registry.get(name)
        step = spec.provenance.get("checkpoint_step", "?")
        rows.append((f"**{name}** (ours, step {step}): network", f"{spec.gflop_per_mp:.0f}",
                     evaluate(model_upscaler(engine, spec), sets), "measured"))
        rows.append((f"**{name}** (ours): network + fidelity step (`nnups upscale`)",
                     f"{spec.gflop_per_mp:.0f}", evaluate(command_upscaler(engine, spec), sets),
                     "measured"))
    rows += _published_rows(set_names)

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    body = (
        f"Standard protocol (../shared/README.md): MATLAB-bicubic LR, Y PSNR dB / SSIM, shave 2. "
        f"{args.threads} threads, device {engine.device}; load average {load} (the seconds "
        "column is only meaningful on an idle machine). Published rows: the authors' tables "
        "(GPU-trained, each on its paper's data: FSRCNN on T91 + General-100, SwinIR on DF2K, "
        "the others on DIV2K).\n\n" + _table(rows, set_names)
    )
    publish(Section("sr_quality", "2x super-resolution quality: Set5 / Set14", body, argv=argv),
            args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
