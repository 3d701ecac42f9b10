"""Lens correction quality: simulated Kodak24 / McMaster DNGs through blur, diffraction, CA.

Protocol. Each clean image (8-bit sRGB) is a scene seen through the Canon EOS 5D Mark III
colour matrix under D65 at 0 EV, as the whole frame (field radius 1 at its corners), by
:func:`nnip.simulate.pairs.raw_pair` with a lens, no OLPF, RGGB, the Poisson-Gaussian noise
of the ``sony-a7rm2`` sensor model at ISO 400 and 3200, 14 bits; written as a DNG with
:func:`nnip.raw.dng.write_dng` and read back with :func:`nnip.raw.frame.read_raw`. Lenses
(4.0 um pixels):

- ``f/2``: wide open, strong peripheral aberration (elliptical blur growing as rho^2,
  sigma 2.5 px radially and 1.25 px tangentially at the corners) and lateral CA (red image
  +1.2 px, blue -1.0 px at the corners), with f/2 diffraction;
- ``f/16`` and ``f/22``: diffraction (Airy first-zero radius 2.7 and 3.7 px at 550 nm) with a
  trace of aberration (0.3 px at the corners).

Every rendering goes through the project's develop pipeline (demosaic: the ``demosaic``
model when installed, else LibRaw's AHD; as-shot WB, camera matrix, sRGB, clip, 0 EV); the
method under test replaces the lens stage, on the demosaicked linear camera RGB. The
reference is the *clean rendering*: the sharp scene's capture without lens and noise,
developed the same way, so the figures measure the lens and the noise, not demosaicking or
colour. Compared as sRGB in [0, 1]: PSNR over R, G, B and SSIM (Gaussian 11 x 11, sigma
1.5), in the centre (the middle third of each side) and the corners (the four corner
quarter-by-quarter boxes), 8 px of border off.

Methods:

- uncorrected: the lens stage off.
- RL / Wiener: Richardson-Lucy (``skimage.restoration.richardson_lucy``) and Wiener
  deconvolution with the TRUE PSF per zone - the simulator's own 5 x 5 node PSFs (per channel:
  the Airy pattern at the channel's wavelength convolved with the node's aberration),
  each zone deconvolved with reflect context and blended with the same bilinear weights the
  simulator blurs with. The classical best case: the PSF is exact, the input is the frame
  ours gets (after the project's lateral-CA stage: the true PSFs hold no colour shift, so
  RL / Wiener could not remove it), and the iteration count (RL) and noise-to-signal
  constant (Wiener) are chosen per lens and ISO on the first image by the best PSNR in the
  corners (the bar's zone) against the reference (an oracle).
- unsharp: a Gaussian unsharp mask on the same frame, radius and amount chosen the same
  oracle way.
- ours: what ``--lens deblur`` does: the lateral-CA stage on the mosaic (measured in the
  image: the simulated lens has no lensfun profile), the demosaic, then the ``lens`` model
  through :func:`nnip.develop.lens.deblur`, the optics map built from the true f-number and
  pixel pitch (what the EXIF focal-plane resolution states); "not installed" when there is
  none. "ours lateral CA only" is the first part alone.

Further figures (``f/2`` for lateral CA; every method):

- residual lateral CA: a slightly rotated checkerboard at f/2; red-green and blue-green
  misregistration (px, radial component) of the edge maps in the four corner boxes (phase
  correlation, 1/20 px), mean over corners and both colours; the clean rendering's own
  value is the floor of the measure.
- highlights: a dark scene (linear 0.02) with clipped point lights (20x white) and a
  clipped line light at the centre, mid-field and corners, ISO 100; the dark ring (how far
  the azimuthal / along-line mean profile falls below the true background) and the overshoot
  (how far it rises above the uncorrected halo) within 16 px outside the clipped core, in %
  of the step from background to white; the worst source counts.
- flat-area noise: a flat mid-grey frame, the noise std of the developed sRGB in the centre
  and corner boxes, as a share of the uncorrected rendering's.

Bars (issue 7): ours >= 2.5 dB over uncorrected and >= 1.0 dB over the better of RL / Wiener
in the corners; flat-area noise <= 105 % of uncorrected; residual lateral CA <= 0.1 px; no
dark ring or overshoot above 2 %.

    python benchmarks/lens_quality.py --images 2 --methods classical        # quick run
    python benchmarks/lens_quality.py --results benchmarks/RESULTS.md       # full run (2 images: --images 2)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage, signal

from common import Section, add_common_options, describe_model, load_models, markdown_table, \
    publish, shared_path

__all__ = ["CONDITIONS", "ISOS", "SETS", "main"]

SETS = ("Kodak24", "McMaster")
ISOS = (400, 3200)
PITCH_UM = 4.0
SENSOR = "sony-a7rm2"
CAMERA = "Canon EOS 5D Mark III"
BORDER = 8
ZONES = 5
#: name -> LensParams keyword arguments.
CONDITIONS = {
    "f/2": dict(fnumber=2.0, aberration_px=2.5, ca_red_px=1.2, ca_blue_px=-1.0),
    "f/16": dict(fnumber=16.0, aberration_px=0.3),
    "f/22": dict(fnumber=22.0, aberration_px=0.3),
}
# Grids wide enough that the oracle's choice is inside them (until 2026-11-29 it often sat
# on an edge: RL's 40 iterations at f/16 / f/22 ISO 400, Wiener's 0.03 at ISO 3200).
RL_ITERATIONS = (5, 15, 40, 100)
WIENER_NSR = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
UNSHARP = ((0.8, 0.5), (1.2, 0.8), (1.5, 1.2), (2.0, 1.5))  # (sigma px, amount)
#: The lateral-CA stage alone: a part of ours shown for reference, not a bar candidate.
CA_ONLY = "ours lateral CA only"

#: (linear camera RGB (H, W, 3), context) -> corrected linear camera RGB.
Method = Callable[[np.ndarray, "Context"], np.ndarray]


@dataclasses.dataclass
class Context:
    """What a method may know about a rendering: its lens and the true zone PSFs."""

    lens: object
    psfs: np.ndarray  # (G, G, k, k, 3)
    iso: float
    # The same capture developed with the project's lateral-CA stage (on the mosaic,
    # before the demosaic): what the lens network is given.
    ca_corrected: np.ndarray | None = None


# --------------------------------------------------------------------------- metrics


def _boxes(height: int, width: int) -> dict[str, list[tuple[slice, slice]]]:
    """Centre: the middle third of each side; corners: the four quarter-by-quarter boxes."""
    h3, w3, h4, w4 = height // 3, width // 3, height // 4, width // 4
    b = BORDER
    return {
        "centre": [(slice(h3, height - h3), slice(w3, width - w3))],
        "corners": [(slice(b, h4), slice(b, w4)), (slice(b, h4), slice(width - w4, width - b)),
                    (slice(height - h4, height - b), slice(b, w4)),
                    (slice(height - h4, height - b), slice(width - w4, width - b))],
    }


def psnr(result: np.ndarray, reference: np.ndarray) -> float:
    a = np.clip(result, 0, 1).astype(np.float64)
    b = np.clip(reference, 0, 1).astype(np.float64)
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    blur = lambda x: ndimage.gaussian_filter(x, sigma=(1.5, 1.5, 0), truncate=3.5)  # noqa: E731
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
            / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))


def zone_scores(result: np.ndarray, reference: np.ndarray) -> dict[str, tuple[float, float]]:
    """{"centre" | "corners": (PSNR dB, SSIM)} of two sRGB renderings."""
    a = np.clip(result, 0, 1).astype(np.float64)
    b = np.clip(reference, 0, 1).astype(np.float64)
    ssim_map = _ssim_map(a, b)
    out = {}
    for zone, boxes in _boxes(*a.shape[:2]).items():
        mse = np.mean([np.mean((a[box] - b[box]) ** 2) for box in boxes])
        out[zone] = (float(10 * np.log10(1.0 / max(mse, 1e-12))),
                     float(np.mean([ssim_map[box].mean() for box in boxes])))
    return out


def lateral_ca_px(srgb: np.ndarray) -> float:
    """Mean |radial| misregistration of red and blue against green in the corner boxes."""
    from skimage.registration import phase_cross_correlation

    height, width = srgb.shape[:2]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    shifts = []
    for rows, cols in _boxes(height, width)["corners"]:
        box = np.clip(srgb[rows, cols], 0, 1).astype(np.float64)
        y = (rows.start + rows.stop - 1) / 2 - cy
        x = (cols.start + cols.stop - 1) / 2 - cx
        radial = np.array([y, x]) / math.hypot(y, x)
        edges = [np.hypot(ndimage.sobel(box[..., c], 0), ndimage.sobel(box[..., c], 1))
                 for c in range(3)]
        for c in (0, 2):
            # the shift that registers channel c onto green = minus its displacement
            shift, _, _ = phase_cross_correlation(edges[1], edges[c], upsample_factor=20,
                                                  normalization=None)
            shifts.append(abs(float(np.dot(shift, radial))))
    return float(np.mean(shifts))


# --------------------------------------------------------------------------- simulation


def load_clean(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


def lens_params(name: str):
    from nnip.simulate.optics import LensParams

    return LensParams(pixel_pitch_um=PITCH_UM, **CONDITIONS[name])


def true_psfs(lens, height: int, width: int, zones: int = ZONES) -> np.ndarray:
    """The simulator's node PSFs (``nnip.simulate.optics.apply_lens``), public parts only.

    Returns (G, G, k, k, 3): per node, per channel, the diffraction PSF at the channel's
    wavelength convolved with the node's elliptical aberration.
    """
    from nnip.simulate.optics import Field, aberration_psf, diffraction_psfs

    field = Field.of_image(height, width)
    diffraction = diffraction_psfs(lens.fnumber, lens.pixel_pitch_um)
    radius = min(24, math.ceil(3.0 * lens.aberration_px + lens.defocus_px))
    size = diffraction.shape[-1] + 2 * radius
    ys, xs = np.linspace(0, height - 1, zones), np.linspace(0, width - 1, zones)
    out = np.empty((zones, zones, size, size, 3))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            sigma = lens.aberration_px * float(field.rho(y, x)) ** 2
            aber = aberration_psf(sigma, 0.5 * sigma, field.angle(y, x), lens.defocus_px,
                                  2 * radius + 1)
            for c in range(3):
                out[i, j, :, :, c] = signal.fftconvolve(diffraction[c], aber, mode="full")
    return out


def write_capture(path: Path, raw: np.ndarray, record: dict, fnumber: float) -> Path:
    from nnip.raw.dng import write_dng

    write_dng(path, raw, pattern=record["pattern"], black_level=record["black_level"],
              white_level=record["white_level"], color_matrix1=record["cam_from_xyz"],
              calibration_illuminant1=21, as_shot_neutral=record["as_shot_neutral"],
              noise_profile=(record["noise_a"], record["noise_b"]), make="nnip",
              model=f"simulated {CAMERA}", iso=record["iso"], fnumber=fnumber,
              focal_length=50.0, exposure_time=1 / 125, lens_model="simulated lens",
              pixel_pitch_um=PITCH_UM)
    return path


def render_dngs(scene: np.ndarray, lens, iso: float, folder: Path, seed: int,
                tag: str) -> tuple[Path, Path, dict]:
    """The capture through ``lens`` at ``iso`` and the clean capture (no lens, no noise)."""
    from nnip.simulate.color import camera_matrices
    from nnip.simulate.optics import Field
    from nnip.simulate.pairs import raw_pair
    from nnip.simulate.sensor import mosaic_bayer, quantize

    rng = np.random.default_rng(seed)
    record = raw_pair(scene, rng, pattern="RGGB", iso=iso, sensor=SENSOR, lens=lens,
                      field=Field.of_image(*scene.shape[:2]),
                      cam_from_xyz=camera_matrices()[CAMERA], exposure=1.0, olpf_px=0.0)
    noisy = write_capture(folder / f"{tag}-noisy.dng", record["raw"], record, lens.fnumber)
    clean_raw = quantize(mosaic_bayer(record["sharp"], "RGGB"), record["bits"],
                         record["black_level"], record["white_level"])
    clean = write_capture(folder / f"{tag}-clean.dng", clean_raw, record, lens.fnumber)
    return noisy, clean, record


# --------------------------------------------------------------------------- developing


@dataclasses.dataclass
class Developer:
    """The project's pipeline split at the lens stage."""

    engine: object | None
    registry: object | None
    demosaic: str

    def _stages(self, lens: str = "off"):
        from nnip.develop.pipeline import DevelopOptions, build_pipeline

        # Denoise off (the develop default is auto): the lens methods are compared on the
        # same noisy demosaicked frame, noise amplification included.
        stages = build_pipeline(DevelopOptions(demosaic=self.demosaic, denoise="off", lens=lens),
                                self.engine, self.registry)
        at = [s.name for s in stages].index("lens")
        return stages[:at], stages[at + 1:]

    def camera(self, path: Path, lens: str = "off"):
        """The DevelopFrame right before the lens stage (demosaicked camera RGB); with
        ``lens="deblur"`` the lateral-CA stage has run on the mosaic (measured: the
        simulated lens has no lensfun profile)."""
        from nnip.develop.pipeline import DevelopFrame
        from nnip.raw.frame import read_raw

        work = DevelopFrame.from_raw(read_raw(path))
        for stage in self._stages(lens)[0]:
            if stage.enabled:
                work = stage.apply(work)
        return work

    def finish(self, work, pixels: np.ndarray) -> np.ndarray:
        """sRGB rendering of ``work`` with its camera RGB replaced by ``pixels``."""
        work = work.replace(pixels=np.asarray(pixels, dtype=np.float32))
        for stage in self._stages()[1]:
            if stage.enabled:
                work = stage.apply(work)
        return work.pixels


# --------------------------------------------------------------------------- methods


def _tent(coords: np.ndarray, nodes: np.ndarray, i: int) -> np.ndarray:
    step = nodes[1] - nodes[0]
    return np.clip(1.0 - np.abs(coords - nodes[i]) / step, 0.0, 1.0)


def _support(nodes: np.ndarray, i: int, n: int) -> tuple[int, int]:
    lo = 0 if i == 0 else int(math.floor(nodes[i - 1])) + 1
    hi = n if i == len(nodes) - 1 else int(math.ceil(nodes[i + 1]))
    return lo, hi


def zonewise(image: np.ndarray, psfs: np.ndarray,
             deconvolve: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Deconvolve each zone with its node PSF and blend with the simulator's weights.

    ``deconvolve(plane (h, w), psf (k, k)) -> plane``; each zone gets 3 PSF radii of
    reflected context, cut after.
    """
    height, width, _ = image.shape
    zones, k = psfs.shape[0], psfs.shape[2]
    pad = 3 * (k // 2) + 4
    padded = np.pad(image.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    ys, xs = np.linspace(0, height - 1, zones), np.linspace(0, width - 1, zones)
    out = np.zeros(image.shape, dtype=np.float64)
    for i in range(zones):
        y0, y1 = _support(ys, i, height)
        wy = _tent(np.arange(y0, y1, dtype=np.float64), ys, i)
        for j in range(zones):
            x0, x1 = _support(xs, j, width)
            wx = _tent(np.arange(x0, x1, dtype=np.float64), xs, j)
            region = padded[y0:y1 + 2 * pad, x0:x1 + 2 * pad]
            for c in range(3):
                plane = deconvolve(region[..., c], psfs[i, j, :, :, c])
                out[y0:y1, x0:x1, c] += wy[:, None] * wx[None, :] * plane[pad:-pad, pad:-pad]
    return out.astype(np.float32)


def richardson_lucy(iterations: int) -> Method:
    from skimage.restoration import richardson_lucy as rl

    def deconvolve(plane: np.ndarray, psf: np.ndarray) -> np.ndarray:
        scale = max(float(plane.max()), 1e-6)
        positive = np.clip(plane / scale, 1e-6, None)
        return rl(positive, psf, num_iter=iterations, clip=False) * scale

    return lambda image, ctx: zonewise(image, ctx.psfs, deconvolve)


def wiener(nsr: float) -> Method:
    """Wiener filter ``conj(H) / (|H|^2 + nsr)`` with the zone's OTF (flat spectra)."""

    def deconvolve(plane: np.ndarray, psf: np.ndarray) -> np.ndarray:
        otf = np.zeros(plane.shape)
        k = psf.shape[0]
        otf[:k, :k] = psf
        otf = np.fft.rfft2(np.roll(otf, (-(k // 2), -(k // 2)), axis=(0, 1)))
        spectrum = np.fft.rfft2(plane) * np.conj(otf) / (np.abs(otf) ** 2 + nsr)
        return np.fft.irfft2(spectrum, s=plane.shape)

    return lambda image, ctx: zonewise(image, ctx.psfs, deconvolve)


def unsharp(sigma: float, amount: float) -> Method:
    def run(image: np.ndarray, ctx: Context) -> np.ndarray:
        blurred = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")
        return image + amount * (image - blurred)

    return run


def ours(engine, spec) -> Method:
    from nnip.develop.lens import deblur
    from nnip.develop.optics import OpticsMap

    def run(image: np.ndarray, ctx: Context) -> np.ndarray:
        source = image if ctx.ca_corrected is None else ctx.ca_corrected
        height, width = source.shape[:2]
        optics = OpticsMap(height=height, width=width, fnumber=ctx.lens.fnumber,
                           pixel_pitch_um=ctx.lens.pixel_pitch_um,
                           pitch_source="simulation")
        return deblur(source, optics, engine, spec)

    return run


def lateral_ca_only(image: np.ndarray, ctx: Context) -> np.ndarray:
    """The lateral-CA stage alone (on the mosaic), no network."""
    return image if ctx.ca_corrected is None else ctx.ca_corrected


def identity(image: np.ndarray, ctx: Context) -> np.ndarray:
    return image


def on_ca_corrected(method: Method) -> Method:
    """``method`` run on the frame ours gets (after the lateral-CA stage) where there is one."""
    return lambda image, ctx: method(image if ctx.ca_corrected is None else ctx.ca_corrected, ctx)


def classical_grids() -> dict[str, list[tuple[str, Method]]]:
    """Each classical method with its parameter grid (the oracle picks one per condition),
    on the lateral-CA-corrected frame, as ours."""
    return {
        "RL (true PSF)": [(f"{n} it", on_ca_corrected(richardson_lucy(n))) for n in RL_ITERATIONS],
        "Wiener (true PSF)": [(f"nsr {k:g}", on_ca_corrected(wiener(k))) for k in WIENER_NSR],
        "unsharp": [(f"s{s:g} a{a:g}", on_ca_corrected(unsharp(s, a))) for s, a in UNSHARP],
    }


# --------------------------------------------------------------------------- parts


@dataclasses.dataclass
class Tally:
    """Scores of one method under one condition over images."""

    zones: dict[str, list[tuple[float, float]]] = dataclasses.field(
        default_factory=lambda: {"centre": [], "corners": []})
    choice: str = ""

    def add(self, scores: dict[str, tuple[float, float]]) -> None:
        for zone, value in scores.items():
            self.zones[zone].append(value)

    def mean(self, zone: str) -> tuple[float, float]:
        values = np.array(self.zones[zone])
        return float(values[:, 0].mean()), float(values[:, 1].mean())


def _images(args) -> list[tuple[str, Path]]:
    found = []
    for name in args.sets.split(","):
        folder = shared_path("data", "bench", name)
        if folder is None:
            print(f"note: {name} not found under ../shared; skipped", file=sys.stderr)
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".tif", ".bmp"))
        found += [(name, p) for p in files[: args.images or None]]
    return found


def _pick(grid: list[tuple[str, Method]], camera: np.ndarray, ctx: Context, work,
          developer: Developer, reference: np.ndarray) -> tuple[str, Method]:
    """The grid entry with the best PSNR in the corners (the bar's zone) against the
    reference (the oracle)."""
    def corners(entry: tuple[str, Method]) -> float:
        return zone_scores(developer.finish(work, entry[1](camera, ctx)), reference)["corners"][0]

    return max(grid, key=corners)


def quality_part(args, developer: Developer, methods: dict[str, Method | None],
                 folder: Path) -> tuple[str, dict, dict]:
    """The quality tables, the raw tallies and the classical parameters the oracle chose
    per (lens, ISO, method)."""
    images = _images(args)
    grids = classical_grids() if args.methods in ("all", "classical") else {}
    results: dict[tuple[str, str, float], dict[str, Tally]] = {}
    chosen: dict[tuple[str, float, str], tuple[str, Method]] = {}
    seed = 0
    for set_name, path in images:
        scene = load_clean(path)
        for condition in CONDITIONS:
            lens = lens_params(condition)
            psfs = true_psfs(lens, *scene.shape[:2])
            for iso in ISOS:
                seed += 1
                start = time.perf_counter()
                noisy, clean, _ = render_dngs(scene, lens, iso, folder, seed, "q")
                clean_work = developer.camera(clean)
                reference = developer.finish(clean_work, clean_work.pixels)
                work = developer.camera(noisy)
                camera = work.pixels
                ctx = Context(lens, psfs, iso, developer.camera(noisy, "deblur").pixels)
                tallies = results.setdefault((set_name, condition, iso), {})
                runs: dict[str, Method] = {"uncorrected": identity}
                for name, grid in grids.items():
                    key = (condition, iso, name)
                    if key not in chosen:
                        chosen[key] = _pick(grid, camera, ctx, work, developer, reference)
                    runs[name] = chosen[key][1]
                runs.update({k: v for k, v in methods.items() if v is not None})
                for name, method in runs.items():
                    srgb = developer.finish(work, method(camera, ctx))
                    tally = tallies.setdefault(name, Tally())
                    tally.add(zone_scores(srgb, reference))
                    if name in grids:
                        tally.choice = chosen[(condition, iso, name)][0]
                print(f"  {set_name} {path.name} {condition} ISO {iso}: "
                      f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return _quality_tables(results, methods), results, chosen


def _quality_tables(results, methods) -> str:
    lines = []
    for set_name in dict.fromkeys(k[0] for k in results):
        rows = []
        for (name, condition, iso), tallies in results.items():
            if name != set_name:
                continue
            for method, tally in tallies.items():
                if not tally.zones["centre"]:
                    continue
                (pc, sc), (pk, sk) = tally.mean("centre"), tally.mean("corners")
                label = f"{method} ({tally.choice})" if tally.choice else method
                rows.append([condition, iso, label, f"{pc:.2f}", f"{pk:.2f}", f"{sc:.4f}",
                             f"{sk:.4f}"])
        # Each set's own count (McMaster has 18 images, Kodak24 24).
        first = next(k for k in results if k[0] == set_name)
        count = len(results[first]["uncorrected"].zones["centre"])
        lines += [f"**{set_name}** (mean over {count} image(s) per row; PSNR dB / SSIM "
                  "against the clean rendering)", "",
                  markdown_table(["lens", "ISO", "method", "PSNR centre", "PSNR corners",
                                  "SSIM centre", "SSIM corners"], rows), ""]
    for name, method in methods.items():
        if method is None:
            lines.append(f"{name}: not installed")
    return "\n".join(lines)


# --------------------------------------------------------------------------- lateral CA


def _checkerboard(height: int = 384, width: int = 576, period: int = 24) -> np.ndarray:
    """sRGB checkerboard (0.1 / 0.8), slightly rotated so edges fall between pixels."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = math.radians(4.0)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) / period
    v = (-xx * math.sin(angle) + yy * math.cos(angle)) / period
    board = (np.floor(u) + np.floor(v)) % 2
    return np.repeat((0.1 + 0.7 * board)[..., None], 3, axis=2).astype(np.float32)


def ca_part(developer: Developer, ours_methods: dict, chosen: dict,
            folder: Path) -> tuple[str, dict[str, float]]:
    """Residual lateral CA on a checkerboard at f/2, per ISO; the text and the worst
    misregistration (px) of each method."""
    scene = _checkerboard()
    lens = lens_params("f/2")
    ctx_psfs = true_psfs(lens, *scene.shape[:2])
    rows, worst = [], {}
    for iso in ISOS:
        noisy, clean, _ = render_dngs(scene, lens, iso, folder, 11, "ca")
        clean_work = developer.camera(clean)
        floor = lateral_ca_px(developer.finish(clean_work, clean_work.pixels))
        work = developer.camera(noisy)
        ctx = Context(lens, ctx_psfs, iso, developer.camera(noisy, "deblur").pixels)
        for name, (choice, method) in _methods_for("f/2", iso, ours_methods, chosen).items():
            srgb = developer.finish(work, method(work.pixels, ctx))
            value = lateral_ca_px(srgb)
            worst[name] = max(worst.get(name, 0.0), value)
            rows.append([iso, name, f"{value:.3f}"])
        rows.append([iso, "clean rendering (floor of the measure)", f"{floor:.3f}"])
    return ("Residual lateral CA at f/2 (checkerboard; red and blue against green, radial "
            "component, corner boxes at field radius ~0.75 where the lens shifts red by "
            "~0.9 px and blue by ~0.75 px; px):\n\n"
            + markdown_table(["ISO", "method", "misregistration px"], rows)), worst


# --------------------------------------------------------------------------- highlights


def _lights_scene(height: int = 256, width: int = 384) -> tuple[np.ndarray, list, tuple]:
    """Linear-light scene (sRGB-encoded for raw_pair, extended above 1), its point lights
    and its line light."""
    from nnip.simulate.color import linear_to_srgb

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    linear = np.full((height, width), 0.02)
    points = [(height / 2, width / 2), (height / 2, width * 0.78), (height * 0.14, width * 0.1),
              (height * 0.86, width * 0.9)]
    for cy, cx in points:
        linear += 20.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.7**2))
    line_row, line_cols = height * 0.85, (width * 0.25, width * 0.6)
    inside = (xx >= line_cols[0]) & (xx <= line_cols[1])
    linear += 10.0 * np.exp(-((yy - line_row) ** 2) / (2 * 0.6**2)) * inside
    srgb = np.sign(linear) * linear_to_srgb(np.abs(linear).astype(np.float32))
    return np.repeat(srgb[..., None], 3, axis=2).astype(np.float32), points, (line_row, line_cols)


def _radial_profile(plane: np.ndarray, cy: float, cx: float, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[0:plane.shape[0], 0:plane.shape[1]]
    r = np.rint(np.hypot(yy - cy, xx - cx)).astype(int)
    inside = r <= radius
    sums = np.bincount(r[inside], weights=plane[inside], minlength=radius + 1)
    counts = np.bincount(r[inside], minlength=radius + 1)
    return sums / np.maximum(counts, 1)


def _line_profile(plane: np.ndarray, row: float, cols: tuple, radius: int) -> np.ndarray:
    c0, c1 = int(cols[0] + 20), int(cols[1] - 20)  # away from the line's ends
    centre = int(round(row))
    rows = [plane[centre + d, c0:c1].mean() if 0 <= centre + d < plane.shape[0] else np.nan
            for d in range(-radius, radius + 1)]
    above, below = np.array(rows[:radius][::-1]), np.array(rows[radius + 1:])
    return np.concatenate([[rows[radius]], np.nanmean([above, below], axis=0)])


def _ring_figures(out: np.ndarray, uncorrected: np.ndarray, background: float,
                  radius: int = 16) -> tuple[float, float]:
    """(dark ring %, overshoot %) of a profile outside the clipped core, % of the step."""
    from nnip.develop.lens import CLIP_LEVEL

    clipped = np.nonzero(uncorrected >= CLIP_LEVEL)[0]
    start = (clipped.max() + 1) if clipped.size else 1
    ring = slice(start, radius + 1)
    step = 1.0 - background
    dark = max(0.0, background - float(np.min(out[ring]))) / step * 100
    over = max(0.0, float(np.max(out[ring] - uncorrected[ring]))) / step * 100
    return dark, over


def _methods_for(condition: str, iso: float, ours_methods: dict, chosen: dict) -> dict:
    """uncorrected, the classical methods as the oracle chose them for (lens, ISO), ours."""
    methods: dict[str, tuple[str, Method]] = {"uncorrected": ("", identity)}
    for (cond, i, name), entry in chosen.items():
        if cond == condition and i == iso:
            methods[name] = entry
    methods.update({k: ("", v) for k, v in ours_methods.items() if v is not None})
    return methods


def highlights_part(developer: Developer, ours_methods: dict, chosen: dict,
                    folder: Path) -> tuple[str, dict[str, float]]:
    """The highlight table and each method's worst dark ring or overshoot (% of step)."""
    scene, points, (line_row, line_cols) = _lights_scene()
    rows, worst = [], {}
    for condition in [c for c in ("f/2", "f/16") if c in CONDITIONS]:
        lens = lens_params(condition)
        noisy, clean, record = render_dngs(scene, lens, 100.0, folder, 99, "lights")
        work = developer.camera(noisy)
        camera = work.pixels
        ctx = Context(lens, true_psfs(lens, *scene.shape[:2]), 100.0,
                      developer.camera(noisy, "deblur").pixels)
        background = float(np.median(record["sharp"][..., 1]))
        base = camera[..., 1]
        for name, (choice, method) in _methods_for(condition, ISOS[0], ours_methods,
                                                   chosen).items():
            out = method(camera, ctx)[..., 1]
            figures = [_ring_figures(_radial_profile(out, cy, cx, 16),
                                     _radial_profile(base, cy, cx, 16), background)
                       for cy, cx in points]
            figures.append(_ring_figures(_line_profile(out, line_row, line_cols, 16),
                                         _line_profile(base, line_row, line_cols, 16), background))
            dark = max(f[0] for f in figures)
            over = max(f[1] for f in figures)
            label = f"{name} ({choice})" if choice else name
            worst[name] = max(worst.get(name, 0.0), dark, over)
            rows.append([condition, label, f"{dark:.2f}", f"{over:.2f}"])
    return ("Highlights (clipped point and line lights, ISO 100, classical parameters as "
            "chosen at ISO 400; green channel of the linear camera RGB; worst source):\n\n"
            + markdown_table(["lens", "method", "dark ring % of step", "overshoot % of step"],
                             rows)), worst


# --------------------------------------------------------------------------- flat noise


def noise_part(developer: Developer, ours_methods: dict, chosen: dict,
               folder: Path) -> tuple[str, dict[str, float]]:
    """The flat-noise table and each method's worst noise ratio (% of uncorrected)."""
    from nnip.simulate.color import linear_to_srgb

    grey = float(linear_to_srgb(np.float32(0.18)))
    scene = np.full((256, 384, 3), grey, dtype=np.float32)
    rows, worst = [], {}
    for condition in CONDITIONS:
        lens = lens_params(condition)
        ctx_psfs = true_psfs(lens, *scene.shape[:2])
        for iso in ISOS:
            noisy, _, _ = render_dngs(scene, lens, iso, folder, 7, "flat")
            work = developer.camera(noisy)
            ctx = Context(lens, ctx_psfs, iso, developer.camera(noisy, "deblur").pixels)
            stds = {}
            for name, (choice, method) in _methods_for(condition, iso, ours_methods,
                                                       chosen).items():
                srgb = developer.finish(work, method(work.pixels, ctx))
                boxes = _boxes(*srgb.shape[:2])
                stds[name] = [np.mean([srgb[box].std(axis=(0, 1)).mean() for box in boxes[z]])
                              for z in ("centre", "corners")]
            base = stds["uncorrected"]
            for name, (centre, corners) in stds.items():
                worst[name] = max(worst.get(name, 0.0), 100 * centre / base[0],
                                  100 * corners / base[1])
                rows.append([condition, iso, name, f"{100 * centre / base[0]:.0f}",
                             f"{100 * corners / base[1]:.0f}"])
    return ("Flat-area noise (mid-grey frame; std of the sRGB rendering as % of uncorrected):"
            "\n\n" + markdown_table(["lens", "ISO", "method", "centre %", "corners %"], rows)), worst


# --------------------------------------------------------------------------- main


def _our_methods(args) -> tuple[dict[str, Method | None], list[str], object, object]:
    if args.methods == "classical":
        return {}, [], None, None
    engine, specs = load_models(args, task="lens")
    names = [n for n in args.models.split(",") if n]
    methods: dict[str, Method | None] = {}
    for name in names:
        spec = next((s for s in specs if s.name == name or s.name == f"lens-{name}"), None)
        methods[f"ours {name}"] = ours(engine, spec) if spec is not None else None
    methods[CA_ONLY] = lateral_ca_only
    return methods, [describe_model(s) for s in specs], engine, specs


def _demosaic_choice(args):
    """``nn`` with the installed demosaic model, else LibRaw's AHD."""
    from nnip.core.engine import Engine
    from nnip.core.errors import ModelError
    from nnip.core.models import Registry

    try:
        registry = Registry(args.models_dir)
        spec = registry.find("demosaic")
    except ModelError:
        return Developer(None, None, "ahd"), "LibRaw AHD (no demosaic model installed)"
    engine = Engine(args.device, threads=args.threads, registry=registry)
    return Developer(engine, registry, "nn"), f"nn ({describe_model(spec)})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=0, help="first N images of each set (0 = all)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default="all", choices=("all", "classical", "ours"),
                        help="classical: uncorrected, RL, Wiener, unsharp; ours: uncorrected "
                             "and the models")
    add_common_options(parser, models="lens")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    developer, demosaic_text = _demosaic_choice(args)
    ours_methods, model_lines, _, _ = _our_methods(args)
    with tempfile.TemporaryDirectory(prefix="nnip-lens-") as tmp:
        folder = Path(tmp)
        tables, results, chosen = quality_part(args, developer, ours_methods, folder)
        lateral, ca_worst = ca_part(developer, ours_methods, chosen, folder) \
            if "f/2" in CONDITIONS else ("", {})
        highlights, ring_worst = highlights_part(developer, ours_methods, chosen, folder)
        noise, noise_worst = noise_part(developer, ours_methods, chosen, folder)
        extras = {"ca": ca_worst, "ring": ring_worst, "noise": noise_worst}
    body = "\n\n".join([
        f"Demosaic: {demosaic_text}. Classical parameters chosen by the oracle are in "
        "brackets; the flat-noise rows use the same choices per lens and ISO.",
        tables, lateral, highlights, noise, _verdict(results, ours_methods, extras),
        f"Run time {time.perf_counter() - started:.0f} s.",
    ])
    publish(Section("lens_quality", "Lens correction quality (issue 7)", body,
                    model_lines or ["no lens model measured"]), args.results)
    return 0


def _verdict(results, ours_methods, extras: dict[str, dict[str, float]]) -> str:
    installed = [name for name, method in ours_methods.items()
                 if method is not None and name != CA_ONLY]
    if not installed:
        return "Bars: not judged (no lens model measured)."
    lines = []
    for name in installed:
        gains, margins = [], []
        for tallies in results.values():
            corners = {m: t.mean("corners")[0] for m, t in tallies.items() if t.zones["corners"]}
            classical = [corners[m] for m in ("RL (true PSF)", "Wiener (true PSF)") if m in corners]
            gains.append(corners[name] - corners["uncorrected"])
            if classical:  # absent with --methods ours
                margins.append(corners[name] - max(classical))
        ca, ring, noise = (extras[k].get(name, float("nan")) for k in ("ca", "ring", "noise"))
        margin = min(margins, default=float("nan"))
        passed = (min(gains) >= 2.5 and margin >= 1.0 and ca <= 0.1 and ring <= 2.0
                  and noise <= 105.0)
        lines.append(f"{name}: corners vs uncorrected worst {min(gains):+.2f} dB (bar +2.5), "
                     f"vs best of RL/Wiener worst {margin:+.2f} dB (bar +1.0; nan: not run); lateral CA "
                     f"worst {ca:.3f} px (bar 0.1); dark ring / overshoot worst {ring:.2f} % "
                     f"(bar 2); flat noise worst {noise:.0f} % of uncorrected (bar 105): "
                     + ("PASS" if passed else "FAIL"))
    return "Bars:\n\n" + "\n".join(f"- {line}" for line in lines)


if __name__ == "__main__":
    sys.exit(main())
