"""Raw denoising quality and speed: simulated Kodak24 / McMaster RAWs, a detail chart, a real CRW.

Protocol. Each clean image (8-bit sRGB, optionally a centre crop) becomes a simulated RAW
with :func:`nnip.simulate.pairs.simulate_dng`: the scene decoded to linear light, seen
through the Canon EOS 5D Mark III colour matrix under D65 at 0 EV (diffuse white at the
white level), no lens and no OLPF, RGGB, then the Poisson-Gaussian noise of the
``sony-a7rm2`` sensor model (photon-transfer measurements of a Sony A7R II, see
``nnip/simulate/sensor.py``) at ISO 800, 3200, 12800 and 25600, quantised to 14 bits
(black 512). The DNG carries the exact NoiseProfile. The *clean rendering* is the same
capture without noise (the clean mosaic quantised to 14 bits, written with the same
metadata) developed the same way, so the figures measure noise removal, not demosaicking or
colour: every method is compared with the clean rendering of its own demosaicker. All
renderings go through the project's develop pipeline (as-shot white balance, camera matrix,
sRGB, clip highlights, 0 EV) and are compared as sRGB in [0, 1], 8 pixels off each border:
PSNR over R, G, B and SSIM (Wang et al. 2004: 11 x 11 Gaussian of sigma 1.5, mean of the
three channels).

Methods:

- none: no denoising; the neural demosaic when a ``demosaic`` model is installed, else
  LibRaw's AHD (the section says which).
- LibRaw NR: LibRaw's FBDD noise reduction (Full) with AHD, on the pipeline's own mosaic
  (as the pipeline's AHD path hands it to LibRaw). LibRaw's wavelet denoising
  (``noise_thr``, dcraw's ``-n``) is NOT used: with rawpy 0.28 / LibRaw 0.22 it corrupts
  the heap (glibc "free(): invalid next size" aborts the process a few calls later; a
  segmentation fault at once on the Canon CRW), and on these DNGs its output was
  bit-identical to no threshold before it crashed.
- CBM3D: ``bm3d.bm3d_rgb`` (PyPI ``bm3d``, profile ``np``, opponent colour space) on the AHD
  rendering clipped to [0, 1], with the true noise level: per channel, the standard
  deviation of (noisy AHD rendering - clean AHD rendering) over the image, i.e. the raw
  noise exactly as demosaicking, colour matrix and sRGB curve turn it into sRGB (an oracle:
  CBM3D's best case for a single sigma per channel). LibRaw's AHD gets the mosaic clipped
  at 0 (as LibRaw clips at the black level), which biases shadows and leaves maze-like
  noise that CBM3D cannot remove, so:
- CBM3D on nn: the same oracle CBM3D on the ``none`` rendering (our neural demosaic of the
  unclipped noisy mosaic), against the clean rendering of the same demosaic: CBM3D given
  the better start. Not the issue's protocol (that is the row above), reported so the
  denoiser's own gain can be read without the demosaicker's.
- ours: the ``denoise`` model through ``nnip.develop.denoise.Denoise`` (the develop stage,
  noise (a, b) from the DNG NoiseProfile), then the same demosaic as ``none``; "not
  installed" when there is none.

Clock: per image, the denoising call alone (ours: noise map + engine; CBM3D: bm3d_rgb).
Bars: ours >= 1 dB above CBM3D at ISO 3200 and 12800, and >= 5x faster.

Detail chart: vertical sinusoidal gratings (periods 3, 4 and 6 pixels, contrast +-0.15 about
sRGB 0.5) at ISO 6400; the modulation of each grating (amplitude of the least-squares sine
at its frequency, on the luma of the rendering) after denoising, as a share of the clean
rendering's (bar: >= 80 %). Real Canon EOS D30 CRW (../shared/data/raw/real, ISO 100): the
luma noise std in its flattest 48 x 48 patch (a plane fit removed), before and after, and
a crop picture under benchmarks/figures/.

    python benchmarks/denoise_quality.py --images 1 --crop 192        # quick run
    python benchmarks/denoise_quality.py --results benchmarks/RESULTS.md  # full run
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from common import Section, add_common_options, describe_model, markdown_table, publish, shared_path

__all__ = ["ISOS", "SETS", "psnr", "ssim", "simulate_pair_dngs", "Renderer", "main"]

ISOS = (800, 3200, 12800, 25600)
SETS = ("Kodak24", "McMaster")
SENSOR = "sony-a7rm2"
CAMERA = "Canon EOS 5D Mark III"
BORDER = 8
CHART_ISO = 6400
CHART_PERIODS = (3, 4, 6)
FIGURES = Path(__file__).resolve().parent / "figures"


# --------------------------------------------------------------------------- metrics


def psnr(result: np.ndarray, reference: np.ndarray, border: int = BORDER) -> float:
    """PSNR in dB over R, G, B of two sRGB images in [0, 1] (result clipped), border off."""
    a = np.clip(result, 0, 1)[border:-border, border:-border].astype(np.float64)
    b = np.clip(reference, 0, 1)[border:-border, border:-border].astype(np.float64)
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def ssim(result: np.ndarray, reference: np.ndarray, border: int = BORDER) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian 11 x 11, sigma 1.5, range 1) over R, G, B."""
    a = np.clip(result, 0, 1)[border:-border, border:-border].astype(np.float64)
    b = np.clip(reference, 0, 1)[border:-border, border:-border].astype(np.float64)
    blur = lambda x: ndimage.gaussian_filter(x, sigma=(1.5, 1.5, 0), truncate=3.5)  # noqa: E731
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
             / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(index[5:-5, 5:-5].mean())


def luma(srgb: np.ndarray) -> np.ndarray:
    return np.clip(srgb, 0, 1) @ np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------- simulation


def load_clean(path: Path, crop: int | None) -> np.ndarray:
    """float32 sRGB (H, W, 3) in [0, 1], even sides, optionally the centre ``crop`` square."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if crop:
        h, w = rgb.shape[:2]
        y, x = max(0, (h - crop) // 2) // 2 * 2, max(0, (w - crop) // 2) // 2 * 2
        rgb = rgb[y:y + crop, x:x + crop]
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


def simulate_pair_dngs(clean: np.ndarray, iso: float, folder: Path, seed: int) -> tuple[Path, Path]:
    """The noisy DNG (simulate_dng) and the same capture without noise, as two files."""
    from nnip.raw.dng import write_dng
    from nnip.simulate.pairs import simulate_dng
    from nnip.simulate.sensor import mosaic_bayer, quantize

    noisy = folder / f"noisy-{seed}-{iso:g}.dng"
    record = simulate_dng(clean, noisy, iso=iso, sensor=SENSOR, camera=CAMERA, optics=False,
                          olpf_px=0.0, seed=seed)
    clean_raw = quantize(mosaic_bayer(record["target"], record["pattern"]), record["bits"],
                         record["black_level"], record["white_level"])
    clean_path = folder / f"clean-{seed}-{iso:g}.dng"
    write_dng(clean_path, clean_raw, pattern=record["pattern"], black_level=record["black_level"],
              white_level=record["white_level"], color_matrix1=record["cam_from_xyz"],
              as_shot_neutral=record["as_shot_neutral"], iso=iso)
    return noisy, clean_path


# --------------------------------------------------------------------------- rendering


def libraw_nr_demosaic(path: Path, mosaic: np.ndarray, balance: np.ndarray) -> np.ndarray:
    """LibRaw AHD with its FBDD noise reduction on the pipeline's normalised mosaic.

    The same hand-over as ``nnip.develop.demosaic.libraw_demosaic`` (mosaic written back as
    16-bit, black 0, white 65535, white balanced inside LibRaw and divided out after), plus
    ``fbdd_noise_reduction=Full``. Returns linear camera RGB (H, W, 3).
    """
    import rawpy

    wb = np.asarray(balance, dtype=np.float64)
    with rawpy.imread(str(path)) as raw:
        raw.raw_image_visible[...] = np.round(np.clip(mosaic, 0, 1) * 65535).astype(np.uint16)
        rgb = raw.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, output_color=rawpy.ColorSpace.raw,
            gamma=(1, 1), no_auto_bright=True, user_flip=0, output_bps=16, use_camera_wb=False,
            use_auto_wb=False, user_wb=[wb[0], wb[1], wb[2], wb[1]], user_black=0,
            user_cblack=[0, 0, 0, 0], user_sat=65535, highlight_mode=rawpy.HighlightMode.Ignore,
            adjust_maximum_thr=0.0, median_filter_passes=0,
            fbdd_noise_reduction=rawpy.FBDDNoiseReductionMode.Full,
        )
    return (rgb.astype(np.float32) / 65535.0) * (wb.max() / wb).astype(np.float32)


@dataclasses.dataclass
class Renderer:
    """Develops RAW frames through the project's pipeline with one stage swapped as asked.

    ``demosaic`` is ``nn`` (with ``demosaic_spec``) or ``ahd``; ``denoise`` a stage from
    ``nnip.develop.denoise`` or None.
    """

    engine: object | None = None
    registry: object | None = None
    demosaic: str = "ahd"

    def stages(self, demosaic: str | None = None) -> list:
        from nnip.develop.pipeline import DevelopOptions, build_pipeline

        # Denoise and lens off: 'none' must be the pipeline without a denoiser (the
        # develop default is denoise auto), and 'ours' puts its own stage in.
        options = DevelopOptions(demosaic=demosaic or self.demosaic, denoise="off", lens="off")
        return build_pipeline(options, self.engine, self.registry)

    def render(self, frame, *, denoise=None, demosaic: str | None = None,
               camera: Callable | None = None) -> tuple[np.ndarray, float]:
        """sRGB (H, W, 3) and the seconds the denoise stage took.

        ``camera(work) -> rgb`` replaces the demosaic stage (LibRaw NR).
        """
        from nnip.develop.pipeline import DevelopFrame

        work, seconds = DevelopFrame.from_raw(frame), 0.0
        for stage in self.stages(demosaic):
            if stage.name == "denoise" and denoise is not None:
                start = time.perf_counter()
                work = denoise.apply(work)
                seconds = time.perf_counter() - start
            elif stage.name == "demosaic" and camera is not None:
                work = work.replace(pixels=camera(work), space="camera")
            elif stage.enabled:
                work = stage.apply(work)
        return work.pixels, seconds


def _balance(frame) -> np.ndarray:
    wb = np.asarray(frame.camera_whitebalance, dtype=np.float64)
    return wb / wb.min()


def cbm3d(srgb: np.ndarray, sigma: Sequence[float]) -> tuple[np.ndarray, float]:
    import bm3d

    start = time.perf_counter()
    out = bm3d.bm3d_rgb(np.clip(srgb, 0, 1).astype(np.float64), list(map(float, sigma)))
    return out.astype(np.float32), time.perf_counter() - start


# --------------------------------------------------------------------------- parts


@dataclasses.dataclass
class Scores:
    psnr: list[float] = dataclasses.field(default_factory=list)
    ssim: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)

    def add(self, result: np.ndarray, reference: np.ndarray, seconds: float = 0.0) -> None:
        self.psnr.append(psnr(result, reference))
        self.ssim.append(ssim(result, reference))
        self.seconds.append(seconds)


def _images(args: argparse.Namespace) -> list[tuple[str, Path]]:
    found = []
    for name in SETS:
        folder = shared_path("data", "bench", name)
        if folder is None:
            print(f"note: {name} not found under ../shared; skipped", file=sys.stderr)
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".tif", ".bmp"))
        found += [(name, p) for p in files[: args.images or None]]
    return found


def quality_part(args, renderer: Renderer, denoiser, folder: Path) -> tuple[str, dict]:
    """The per-ISO table over the benchmark images."""
    from nnip.raw.frame import read_raw

    images = _images(args)
    if not images:
        return "No benchmark images found (../shared/data/bench).", {}
    methods = ["none", "LibRaw NR", "CBM3D", "CBM3D on nn", "ours"]
    results: dict[tuple[int, str], Scores] = {}
    for iso in ISOS:
        for index, (set_name, path) in enumerate(images):
            clean = load_clean(path, args.crop)
            noisy_path, clean_path = simulate_pair_dngs(clean, iso, folder, seed=index)
            noisy, reference_frame = read_raw(noisy_path), read_raw(clean_path)
            ref_ahd, _ = renderer.render(reference_frame, demosaic="ahd")
            ref_own, _ = renderer.render(reference_frame)
            none, _ = renderer.render(noisy)
            results.setdefault((iso, "none"), Scores()).add(none, ref_own)
            ahd, _ = renderer.render(noisy, demosaic="ahd")
            balance = _balance(noisy)
            nr, _ = renderer.render(noisy, camera=lambda w: libraw_nr_demosaic(
                noisy_path, w.pixels, balance))
            results.setdefault((iso, "LibRaw NR"), Scores()).add(nr, ref_ahd)
            if not args.no_bm3d:
                sigma = (np.clip(ahd, 0, 1) - np.clip(ref_ahd, 0, 1)).reshape(-1, 3).std(axis=0)
                out, seconds = cbm3d(ahd, sigma)
                results.setdefault((iso, "CBM3D"), Scores()).add(out, ref_ahd, seconds)
                if renderer.demosaic != "ahd":  # the same oracle on our own demosaic
                    sigma = (np.clip(none, 0, 1) - np.clip(ref_own, 0, 1)).reshape(-1, 3).std(axis=0)
                    out, seconds = cbm3d(none, sigma)
                    results.setdefault((iso, "CBM3D on nn"), Scores()).add(out, ref_own, seconds)
            if denoiser is not None:
                out, seconds = renderer.render(noisy, denoise=denoiser)
                results.setdefault((iso, "ours"), Scores()).add(out, ref_own, seconds)
            print(f"  ISO {iso} {set_name}/{path.name}: " + ", ".join(
                f"{m} {results[(iso, m)].psnr[-1]:.2f}" for m in methods if (iso, m) in results),
                file=sys.stderr, flush=True)
    rows = []
    for iso in ISOS:
        row: list[object] = [iso]
        for method in methods:
            scores = results.get((iso, method))
            row.append("not installed" if method == "ours" and denoiser is None else
                       "skipped" if scores is None else
                       f"{np.mean(scores.psnr):.2f} / {np.mean(scores.ssim):.4f}")
        for method in ("CBM3D", "ours"):
            scores = results.get((iso, method))
            row.append(f"{np.mean(scores.seconds):.2f}" if scores else "-")
        rows.append(row)
    pixels = np.mean([load_clean(p, args.crop).shape[0] * load_clean(p, args.crop).shape[1]
                      for _, p in images]) / 1e6
    table = markdown_table(
        ["ISO", "none", "LibRaw NR", "CBM3D", "CBM3D on nn", "ours", "CBM3D s/img",
         "ours s/img"], rows)
    sets = ", ".join(sorted({s for s, _ in images}))
    text = (f"{len(images)} images ({sets}; {pixels:.2f} MP each on average"
            f"{f', centre crops of {args.crop}' if args.crop else ''}); PSNR dB / SSIM against the "
            f"clean rendering; 'none' and 'ours' demosaic: {renderer.demosaic}; LibRaw NR = "
            f"FBDD Full + AHD (its wavelet noise_thr crashes LibRaw 0.22).\n\n{table}\n")
    text += _verdict(results, denoiser)
    return text, results


def _verdict(results: dict, denoiser) -> str:
    if denoiser is None:
        return ("\nBars (ours >= CBM3D + 1 dB at ISO 3200 and 12800, >= 5x faster): "
                "no model to judge.\n")
    lines = []
    for iso in (3200, 12800):
        ours, ref = results.get((iso, "ours")), results.get((iso, "CBM3D"))
        if ours is None or ref is None:
            continue
        gain = np.mean(ours.psnr) - np.mean(ref.psnr)
        speed = np.mean(ref.seconds) / max(np.mean(ours.seconds), 1e-9)
        ok = gain >= 1.0 and speed >= 5.0
        line = (f"ISO {iso}: ours - CBM3D = {gain:+.2f} dB, {speed:.1f}x faster: "
                f"{'meets' if ok else 'MISSES'} the bar")
        on_nn = results.get((iso, "CBM3D on nn"))
        if on_nn is not None:
            line += f" (ours - CBM3D on nn = {np.mean(ours.psnr) - np.mean(on_nn.psnr):+.2f} dB)"
        lines.append(line)
    if not lines:
        lines.append("Bars (ours >= CBM3D + 1 dB at ISO 3200 and 12800, >= 5x faster): "
                     "no CBM3D figures to compare with.")
    return "\n" + "  \n".join(lines) + "\n"


def _chart(size: int = 240) -> np.ndarray:
    """Three bands of vertical sinusoidal gratings (periods CHART_PERIODS) on sRGB 0.5."""
    x = np.arange(size)
    bands = [0.5 + 0.15 * np.sin(2 * np.pi * x / period) for period in CHART_PERIODS]
    rows = np.concatenate([np.repeat(b[None], size // len(bands), axis=0) for b in bands])
    return np.repeat(rows[..., None], 3, axis=2).astype(np.float32)


def _modulations(srgb: np.ndarray) -> list[float]:
    """Amplitude of the least-squares sine at each band's frequency, on luma, margins off."""
    y = luma(srgb)
    band = y.shape[0] // len(CHART_PERIODS)
    x = np.arange(y.shape[1])
    out = []
    for k, period in enumerate(CHART_PERIODS):
        rows = y[k * band + 12:(k + 1) * band - 12, 12:-12]
        phase = 2 * np.pi * x[12:-12] / period
        design = np.stack([np.sin(phase), np.cos(phase), np.ones_like(phase)], axis=1)
        coef, *_ = np.linalg.lstsq(design, rows.mean(axis=0), rcond=None)
        out.append(float(np.hypot(coef[0], coef[1])))
    return out


def chart_part(args, renderer: Renderer, denoiser, folder: Path) -> str:
    from nnip.raw.frame import read_raw

    noisy_path, clean_path = simulate_pair_dngs(_chart(), CHART_ISO, folder, seed=99)
    noisy, reference_frame = read_raw(noisy_path), read_raw(clean_path)
    ref_ahd, _ = renderer.render(reference_frame, demosaic="ahd")
    ref_own, _ = renderer.render(reference_frame)
    clean_ahd, clean_own = _modulations(ref_ahd), _modulations(ref_own)
    def shares(image: np.ndarray, clean: list[float]) -> list[str]:
        return [f"{100 * m / c:.0f} %" for m, c in zip(_modulations(image), clean)]

    rows = [["none"] + shares(renderer.render(noisy)[0], clean_own)]
    ahd, _ = renderer.render(noisy, demosaic="ahd")
    if not args.no_bm3d:
        sigma = (np.clip(ahd, 0, 1) - np.clip(ref_ahd, 0, 1)).reshape(-1, 3).std(axis=0)
        out, _ = cbm3d(ahd, sigma)
        rows.append(["CBM3D"] + shares(out, clean_ahd))
    if denoiser is not None:
        out, _ = renderer.render(noisy, denoise=denoiser)
        rows.append(["ours"] + shares(out, clean_own))
    else:
        rows.append(["ours"] + ["not installed"] * len(CHART_PERIODS))
    table = markdown_table(["method"] + [f"period {p} px" for p in CHART_PERIODS], rows)
    return (f"Detail chart at ISO {CHART_ISO}: grating modulation after denoising as a share "
            f"of the clean rendering's (bar: ours >= 80 %).\n\n{table}\n")


def _flattest_patch(y: np.ndarray, size: int = 48) -> tuple[int, int]:
    """Top-left of the size x size window with the least detail, luma 0.15..0.8."""
    smooth = ndimage.gaussian_filter(y, 2.0)
    detail = ndimage.uniform_filter(np.hypot(*np.gradient(smooth)), size)
    mean = ndimage.uniform_filter(y, size)
    half = size // 2
    valid = np.zeros_like(y, dtype=bool)
    valid[half:-half, half:-half] = True
    detail = np.where(valid & (mean > 0.15) & (mean < 0.8), detail, np.inf)
    cy, cx = np.unravel_index(np.argmin(detail), detail.shape)
    return int(cy - half), int(cx - half)


def _patch_noise(y: np.ndarray, top: int, left: int, size: int = 48) -> float:
    """Std of the luma patch after removing a least-squares plane (shading is not noise)."""
    patch = y[top:top + size, left:left + size].astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size]
    design = np.stack([yy.ravel(), xx.ravel(), np.ones(size * size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, patch.ravel(), rcond=None)
    return float((patch.ravel() - design @ coef).std())


def crw_part(args, renderer: Renderer, denoiser) -> str:
    from nnip.raw.frame import read_raw

    path = shared_path("data", "raw", "real", "Canon_EOS_D30.CRW")
    if path is None:
        return "Real CRW: ../shared/data/raw/real/Canon_EOS_D30.CRW not present; skipped.\n"
    frame = read_raw(path)
    ahd, _ = renderer.render(frame, demosaic="ahd")
    top, left = _flattest_patch(luma(ahd))
    before = _patch_noise(luma(ahd), top, left)
    renders = {"none (AHD)": ahd}
    rows = [["none (AHD)", f"{1000 * before:.2f}"]]
    if renderer.demosaic != "ahd":
        # The same demosaic as "ours" without the denoiser: what the denoiser alone removes
        # (the AHD row holds the demosaicker's change too).
        plain, _ = renderer.render(frame)
        rows.append([f"none ({renderer.demosaic})", f"{1000 * _patch_noise(luma(plain), top, left):.2f}"])
    if not args.no_bm3d:
        # CBM3D's sigma: the measured noise of the flat patch (per channel).
        sig = [_patch_noise(np.clip(ahd[..., c], 0, 1), top, left) for c in range(3)]
        y0, x0 = max(0, top - 104), max(0, left - 104)
        window = np.clip(ahd[y0:y0 + 256, x0:x0 + 256], 0, 1)
        out, _ = cbm3d(window, sig)
        full = ahd.copy()
        full[y0:y0 + out.shape[0], x0:x0 + out.shape[1]] = out
        renders["CBM3D"] = full
        rows.append(["CBM3D", f"{1000 * _patch_noise(luma(full), top, left):.2f}"])
    if denoiser is not None:
        out, _ = renderer.render(frame, denoise=denoiser)
        renders["ours"] = out
        rows.append(["ours", f"{1000 * _patch_noise(luma(out), top, left):.2f}"])
    else:
        rows.append(["ours", "not installed"])
    FIGURES.mkdir(parents=True, exist_ok=True)
    figure = FIGURES / "denoise_crw_crop.png"
    y0, x0 = max(0, top - 40), max(0, left - 40)
    crops = [np.clip(r[y0:y0 + 128, x0:x0 + 128], 0, 1) for r in renders.values()]
    gap = ((0, 0), (0, 4), (0, 0))  # a white line between the crops
    strip = np.concatenate([np.pad(c, gap, constant_values=1) for c in crops], axis=1)
    pixels = np.round(np.kron(strip, np.ones((2, 2, 1))) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(figure)
    table = markdown_table(["method", "luma noise std x 1000"], rows)
    return (f"Real Canon EOS D30 CRW (ISO {frame.iso:g}): flattest 48 x 48 patch at "
            f"({top}, {left}), sRGB luma std after a plane fit. Crops (2x, "
            f"{' | '.join(renders)}): `{figure.relative_to(FIGURES.parent.parent)}`.\n\n{table}\n")


# --------------------------------------------------------------------------- main


def _models(args):
    """Engine, registry, the demosaic mode ('nn' when a model is installed) and the denoiser."""
    from nnip.core.engine import Engine
    from nnip.core.errors import ModelError
    from nnip.core.models import Registry
    from nnip.develop.denoise import Denoise

    try:
        registry = Registry(args.models_dir)
    except ModelError as exc:
        print(f"note: no models ({exc})", file=sys.stderr)
        return None, None, "ahd", None, []
    engine = Engine(args.device, threads=args.threads, registry=registry)
    demosaic = "nn" if registry.for_task("demosaic") else "ahd"
    models = [describe_model(s) for s in registry.for_task("demosaic")[:1]]
    denoiser = None
    names = [n for n in args.models.split(",") if n] or [None]
    for name in names:
        try:
            spec = registry.find("denoise", name)
        except ModelError as exc:
            print(f"note: denoise model {name or '(any)'}: {exc}", file=sys.stderr)
            continue
        denoiser = Denoise("auto", engine, registry, model=spec.name, tile=args.tile)
        models.append(describe_model(spec))
        break
    return engine, registry, demosaic, denoiser, models


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, models="")
    parser.add_argument("--images", type=int, default=0, help="first N images of each set (0: all)")
    parser.add_argument("--crop", type=int, default=0, help="centre crop side in pixels (0: whole)")
    parser.add_argument("--tile", type=int, default=None, help="engine tile for ours")
    parser.add_argument("--no-bm3d", action="store_true", help="skip CBM3D (slow)")
    args = parser.parse_args(argv)
    engine, registry, demosaic, denoiser, models = _models(args)
    renderer = Renderer(engine, registry, demosaic)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        quality, _ = quality_part(args, renderer, denoiser, folder)
        chart = chart_part(args, renderer, denoiser, folder)
    crw = crw_part(args, renderer, denoiser)
    body = "\n".join([quality, chart, crw])
    if denoiser is None:
        body += "\nours: not installed (no `denoise` model in the manifest).\n"
    publish(Section("denoise_quality", "Raw denoising: simulated Kodak24 / McMaster RAWs",
                    body, models, argv), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
