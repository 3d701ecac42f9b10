"""Teacher images and training pairs built from the simulation.

Three products:

- :func:`load_teacher`: a clean photo, downscaled by 2 (area, in linear light), which
  removes most JPEG and demosaic residue of the source.
- :func:`upscale_pair`: (LR, HR) for the 2x upscaler.
- :func:`raw_pair`: a simulated RAW capture of a clean image, with everything a demosaic /
  denoise / lens model is trained on; :func:`simulate_dng` writes one as a DNG file.

Noise and sharpening in upscaling pairs (the choice made here). A faithful upscaler must keep
the grain and the (camera) sharpening of the photo it enlarges, not erase them. So these
"camera look" effects are applied to the **HR target first**, and the LR is derived from that
target by the same degradation as the clean part of the image (bicubic or sensor model).
The noise in LR is then exactly the HR noise seen at LR scale, and the network learns to
carry it into the output at matched scale; fine noise it cannot predict from LR averages out
in the loss instead of being invented. The noise is drawn with an LR-scale correlation
length and the sharpening with an LR-scale radius (both given in HR pixels, doubled), so
that what survives the downscale looks like a camera JPEG's. JPEG compression, on the other
hand, is applied to the LR only: its blocks and ringing are coding error, not picture, and
the target stays free of them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from nnip.simulate.color import (
    D65_XY,
    camera_matrices,
    illuminant_wb,
    linear_to_srgb,
    random_camera_matrix,
    random_exposure,
    scene_to_camera,
    srgb_to_linear,
)
from nnip.simulate.optics import Field, LensParams, apply_lens
from nnip.simulate.sensor import (
    SENSORS,
    NoiseModel,
    add_noise,
    check_pattern,
    mosaic_bayer,
    noise_model_for_iso,
    normalize_raw,
    olpf,
    pack_bayer,
    pixel_integrate,
    quantize,
    random_noise_model,
)

__all__ = [
    "load_teacher",
    "upscale_pair",
    "raw_pair",
    "default_black_level",
    "simulate_dng",
]


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) or (H, W) float -> (H, W, 3) float32."""
    px = np.asarray(pixels, dtype=np.float32)
    if px.ndim == 2:
        px = px[..., None]
    if px.ndim != 3 or px.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {px.shape}")
    return np.repeat(px, 3, axis=2) if px.shape[2] == 1 else px


def _even(img: np.ndarray) -> np.ndarray:
    """Crop the last row/column so both sides are even."""
    h, w = img.shape[:2]
    return img[: h - h % 2, : w - w % 2]


def load_teacher(path: str | os.PathLike[str], rng: np.random.Generator) -> np.ndarray:
    """Read a clean photo and area-downscale it by 2 in linear light.

    Parameters
    ----------
    path : path-like
        A JPEG, PNG or TIFF (read with :func:`nnip.core.imageio.read_image`).
    rng : numpy.random.Generator
        Chooses the 2x2 binning phase (0 or 1 pixel offset per axis), a free augmentation.

    Returns
    -------
    ndarray, (H', W', 3), float32
        sRGB-encoded teacher in [0, 1], ``H' = (H - dy) // 2``.
    """
    from nnip.core.imageio import read_image  # the one image reader of the project

    pixels = _as_rgb(read_image(path).pixels)
    dy, dx = (int(v) for v in rng.integers(0, 2, size=2))
    pixels = _even(pixels[dy:, dx:])
    if min(pixels.shape[:2]) < 2:
        raise ValueError(f"image of {pixels.shape[1]}x{pixels.shape[0]} pixels is too small for a teacher")
    small = pixel_integrate(srgb_to_linear(np.clip(pixels, 0.0, 1.0)), 2)
    return np.clip(linear_to_srgb(small), 0.0, 1.0).astype(np.float32)


def _correlated_noise(shape: tuple[int, ...], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise, spatially correlated by a Gaussian of ``sigma_px``."""
    noise = rng.standard_normal(shape)
    if sigma_px > 0.05:
        noise = ndimage.gaussian_filter(noise, sigma=(sigma_px, sigma_px) + (0,) * (len(shape) - 2))
        noise /= max(float(noise.std()), 1e-12)
    return noise


def _camera_look(
    hr: np.ndarray, rng: np.random.Generator, noise_prob: float, sharpen_prob: float
) -> np.ndarray:
    """Camera-JPEG-like sharpening and noise at LR scale, applied to the HR target (sRGB)."""
    out = hr.astype(np.float64)
    if rng.uniform() < sharpen_prob:  # unsharp mask, LR radius 0.5..1 px = HR 1..2 px
        sigma = 2.0 * rng.uniform(0.5, 1.0)
        blurred = ndimage.gaussian_filter(out, sigma=(sigma, sigma, 0))
        out = out + rng.uniform(0.2, 0.8) * (out - blurred)
    if rng.uniform() < noise_prob:  # luminance grain plus weaker chroma, LR correlation 0..0.8 px
        corr = 2.0 * rng.uniform(0.0, 0.8)
        sigma = rng.uniform(0.004, 0.025)
        luma = _correlated_noise(out.shape[:2], corr, rng)[..., None]
        chroma = _correlated_noise(out.shape, corr, rng) * rng.uniform(0.0, 0.5)
        out = out + sigma * (luma + chroma)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _sensor_downscale(
    hr: np.ndarray, rng: np.random.Generator, olpf_range: tuple[float, float]
) -> np.ndarray:
    """LR as a sensor with pixels twice as large sees it: OLPF, 2x2 integration, linear light."""
    linear = olpf(srgb_to_linear(hr), rng.uniform(*olpf_range))
    return linear_to_srgb(np.clip(pixel_integrate(linear, 2), 0.0, None))


def _jpeg(img: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
    """Round trip through an in-memory JPEG (Pillow), 8-bit, -> float32 [0, 1]."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    data = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    PILImage.fromarray(data).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    with PILImage.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0


def upscale_pair(
    hr_srgb: np.ndarray,
    rng: np.random.Generator,
    *,
    bicubic_fraction: float = 0.5,
    jpeg_prob: float = 0.4,
    noise_prob: float = 0.3,
    sharpen_prob: float = 0.3,
    olpf_range: tuple[float, float] = (0.0, 2.0),
) -> tuple[np.ndarray, np.ndarray]:
    """An (LR, HR) pair for 2x upscaling (see the module note on noise and sharpening).

    Parameters
    ----------
    hr_srgb : ndarray, (H, W, 3) or (H, W), float
        Clean teacher, sRGB-encoded; clipped to [0, 1]; an odd last row/column is dropped.
    rng : numpy.random.Generator
        Every random choice; the same generator state gives the same pair.
    bicubic_fraction : float
        Probability that LR is the standard protocol's MATLAB bicubic ``imresize(HR, 0.5)``;
        otherwise LR is the sensor model at half resolution (OLPF of ``olpf_range`` HR px,
        2x2 pixel integration, in linear light).
    jpeg_prob : float
        Probability of JPEG-compressing LR (Pillow, quality 70..100, 4:4:4 or 4:2:0).
    noise_prob, sharpen_prob : float
        Probabilities of camera-like noise and sharpening (applied to HR, see module note).
    olpf_range : (float, float)
        Range of the OLPF spot separation for the sensor path, in HR pixels.

    Returns
    -------
    lr : ndarray, (H/2, W/2, 3), float32, sRGB-encoded, [0, 1]
    hr : ndarray, (H, W, 3), float32, sRGB-encoded, [0, 1]
        The target (the teacher with the camera look, when drawn).
    """
    hr = np.clip(_even(_as_rgb(hr_srgb)), 0.0, 1.0)
    if min(hr.shape[:2]) < 2:
        raise ValueError(f"HR image of shape {hr.shape} is too small for a 2x pair")
    hr = _camera_look(hr, rng, noise_prob, sharpen_prob)
    if rng.uniform() < bicubic_fraction:
        from nnip.simulate.resize import imresize  # the protocol's MATLAB-compatible bicubic

        lr = imresize(hr, 0.5)
    else:
        lr = _sensor_downscale(hr, rng, olpf_range)
    lr = np.clip(lr, 0.0, 1.0).astype(np.float32)
    if rng.uniform() < jpeg_prob:
        lr = _jpeg(lr, int(rng.integers(70, 101)), int(rng.choice([0, 2])))
    return lr, hr


def default_black_level(bits: int) -> int:
    """A typical black level for a ``bits``-bit raw: 512 at 14 bits, scaled by 2 per bit."""
    return int(round(512 * 2.0 ** (bits - 14)))


def raw_pair(
    clean_srgb: np.ndarray,
    rng: np.random.Generator,
    *,
    pattern: str = "RGGB",
    iso: float | None = None,
    sensor: str | None = None,
    lens: LensParams | None = None,
    field: Field | None = None,
    cam_from_xyz: np.ndarray | None = None,
    exposure: float | None = None,
    illuminant: float | tuple[float, float] | None = None,
    olpf_px: float | None = None,
    bits: int = 14,
    black_level: int | None = None,
    noise_method: str = "poisson",
) -> dict[str, Any]:
    """Simulate a RAW capture of a clean image: the training material for raw models.

    The chain, in linear light: sRGB decode -> camera RGB (``cam_from_xyz``, scene lit by
    ``illuminant``) x ``exposure`` -> lens (``lens``) -> OLPF -> Bayer CFA -> Poisson-Gaussian
    noise of ``sensor`` at ``iso`` -> quantisation with black offset and clipping at white.

    Parameters
    ----------
    clean_srgb : ndarray, (H, W, 3), float
        Clean scene, sRGB-encoded (values above 1 are light sources: extended sRGB).
    rng : numpy.random.Generator
        Every random choice; the same generator state gives the same pair.
    pattern : str
        Bayer phase of the mosaic (one of ``sensor.PATTERNS``); RGGB by default, which is the
        geometry of packed-Bayer models (see ``nnip.simulate.sensor``).
    iso, sensor : optional
        ISO and sensor model name (``sensor.SENSORS``); random when None (ISO log-uniform
        100..25600, any sensor).
    lens : LensParams, optional
        Optics to apply (None = a perfect lens); ``field`` places the image in the frame.
    cam_from_xyz : ndarray (3, 3), optional
        Camera matrix; a random one near a real camera when None.
    exposure : float, optional
        Linear exposure factor (1 = diffuse white at the white level); random when None
        (:func:`~nnip.simulate.color.random_exposure`).
    illuminant : kelvin or (x, y), optional
        Scene light (None = D65).
    olpf_px : float, optional
        OLPF spot separation in pixels; random when None (none in 30 % of draws, else
        0.3..1.0 px).
    bits, black_level : int
        Raw depth and black level (default :func:`default_black_level`); white = 2**bits - 1.
    noise_method : {"poisson", "gaussian", "none"}
        See :func:`~nnip.simulate.sensor.add_noise`; ``none`` = no sensor noise at all
        (only quantisation), for noise-free benchmark captures.

    Returns
    -------
    dict
        ``mosaic``: float32 (H, W), raw in white-level units ((raw - black) / (white - black));
        ``raw``: uint16 (H, W), the quantised mosaic; ``packed``: float32 (4, H/2, W/2),
        ``pack_bayer(mosaic, pattern)``; ``target``: float32 (H, W, 3), clean camera RGB at the
        sensor (after lens and OLPF, no noise, clipped to [0, 1]: the demosaic/denoise
        target); ``sharp``: float32 (H, W, 3), clean camera RGB before the lens (clipped to
        [0, 1]: the lens-correction target); ``noise``: :class:`NoiseModel` in white-level
        units including quantisation; ``noise_a``, ``noise_b``: its two floats;
        ``wb_gains``: (3,) camera multipliers (G = 1) making the illuminant neutral;
        ``as_shot_neutral``: (3,) = 1 / wb_gains; ``cam_from_xyz``: (3, 3); ``pattern``,
        ``iso``, ``sensor``, ``exposure``, ``olpf_px``, ``illuminant``, ``lens``, ``bits``,
        ``black_level``, ``white_level``.
    """
    pattern = check_pattern(pattern)
    clean = _even(_as_rgb(clean_srgb))
    if min(clean.shape[:2]) < 2:
        raise ValueError(f"image of shape {clean.shape} is too small for a Bayer mosaic")
    if iso is None or sensor is None:
        _, drawn_iso, drawn_sensor = random_noise_model(rng)
        iso = drawn_iso if iso is None else iso
        sensor = drawn_sensor if sensor is None else sensor
    model = noise_model_for_iso(float(iso), sensor)
    matrix = random_camera_matrix(rng) if cam_from_xyz is None else np.asarray(cam_from_xyz, dtype=np.float64)
    exposure = random_exposure(rng) if exposure is None else float(exposure)
    if olpf_px is None:
        olpf_px = 0.0 if rng.uniform() < 0.3 else float(rng.uniform(0.3, 1.0))
    black = default_black_level(bits) if black_level is None else int(black_level)
    white = 2**bits - 1

    camera = scene_to_camera(srgb_to_linear(clean), matrix, illuminant) * np.float32(exposure)
    sharp = camera
    if lens is not None:
        camera = apply_lens(camera, lens, rng, field=field)
    camera = olpf(camera, olpf_px)
    if noise_method == "none":  # a noise-free capture (quantisation only), for benchmarks
        model = NoiseModel(0.0, 0.0)
        noisy = mosaic_bayer(camera, pattern)
    else:
        noisy = add_noise(mosaic_bayer(camera, pattern), model, rng, method=noise_method)
    raw = quantize(noisy, bits, black, white)
    mosaic = normalize_raw(raw, black, white)
    gains = illuminant_wb(D65_XY if illuminant is None else illuminant, matrix)
    noise = model.with_quantization(black, white)
    return {
        "mosaic": mosaic,
        "raw": raw,
        "packed": pack_bayer(mosaic, pattern),
        "target": np.clip(camera, 0.0, 1.0).astype(np.float32),
        "sharp": np.clip(sharp, 0.0, 1.0).astype(np.float32),
        "noise": noise,
        "noise_a": noise.a,
        "noise_b": noise.b,
        "wb_gains": gains,
        "as_shot_neutral": 1.0 / gains,
        "cam_from_xyz": matrix,
        "pattern": pattern,
        "iso": float(iso),
        "sensor": sensor,
        "exposure": exposure,
        "olpf_px": float(olpf_px),
        "illuminant": illuminant,
        "lens": lens,
        "bits": bits,
        "black_level": black,
        "white_level": white,
    }


def _truth_image(clean: np.ndarray, exposure: float, space: str) -> np.ndarray:
    """Ground truth of a simulated capture: the sharp scene at the capture's exposure."""
    linear = np.clip(srgb_to_linear(clean) * np.float32(exposure), 0.0, None)
    if space == "linear":
        return linear.astype(np.float32)
    if space == "srgb":
        return linear_to_srgb(np.clip(linear, 0.0, 1.0)).astype(np.float32)
    raise ValueError(f"unknown truth space {space!r}; allowed: srgb, linear")


def _write_truth(path: Path, truth: np.ndarray) -> None:
    """Float32 RGB TIFF through the project's image writer."""
    from nnip.core.imageio import Image, ImageMeta, write_image

    image = Image(truth, None, ImageMeta(format="tiff", bit_depth=32, mode="rgb"))
    write_image(path, image, format="tiff", bits=32)


def simulate_dng(
    clean_srgb: np.ndarray,
    out_path: str | os.PathLike[str],
    *,
    iso: float = 100.0,
    fnumber: float = 5.6,
    lens_blur_px: float = 0.0,
    pattern: str = "RGGB",
    seed: int = 0,
    sensor: str = "sony-a7rm2",
    camera: str = "Canon EOS 5D Mark III",
    exposure_ev: float = 0.0,
    pixel_pitch_um: float = 4.0,
    optics: bool = True,
    olpf_px: float = 0.0,
    bits: int = 14,
    focal_length: float = 50.0,
    exposure_time: float = 1 / 125,
    truth_path: str | os.PathLike[str] | None = None,
    truth_space: str = "srgb",
    noise: bool = True,
) -> dict[str, Any]:
    """Clean image -> simulated RAW written as a DNG (+ optional ground-truth TIFF).

    Parameters
    ----------
    clean_srgb : ndarray, (H, W, 3), float, sRGB-encoded
        The scene; an odd last row/column is dropped.
    out_path : path-like
        The DNG to write.
    iso, sensor : ISO setting and sensor noise model (``nnip.simulate.sensor.SENSORS``).
    fnumber, pixel_pitch_um : diffraction of the lens (when ``optics``), written as FNumber.
    lens_blur_px : corner aberration blur of the lens in px (``LensParams.aberration_px``).
    pattern : Bayer phase of the DNG.
    seed : seeds the noise (same seed, same file content).
    camera : which real camera's colour matrix to use (a key of ``camera_matrices()``).
    exposure_ev : exposure in stops (0 = diffuse white at the white level).
    optics : False for no lens at all (no diffraction, no blur).
    noise : False for a noise-free capture (only quantisation to ``bits``).
    olpf_px : OLPF spot separation in px (0 = none, as on many current cameras).
    bits : raw depth (12 or 14).
    focal_length, exposure_time : EXIF values (mm, s).
    truth_path : optional path of a float32 TIFF of the ground truth: the sharp scene at the
        capture's exposure, without lens, noise or vignetting, in ``truth_space``
        (``"srgb"``: clipped to [0, 1] and sRGB-encoded; ``"linear"``: linear sRGB, not clipped).

    Returns
    -------
    dict
        The :func:`raw_pair` record, plus ``truth`` (the ground-truth array) and ``path``.
    """
    from nnip.raw.dng import write_dng

    matrices = camera_matrices()
    if camera not in matrices:
        raise ValueError(f"unknown camera {camera!r}; known: {', '.join(sorted(matrices))}")
    if sensor not in SENSORS:
        raise ValueError(f"unknown sensor {sensor!r}; known: {', '.join(SENSORS)}")
    rng = np.random.default_rng(seed)
    lens = None
    if optics:
        lens = LensParams(fnumber=fnumber, pixel_pitch_um=pixel_pitch_um, aberration_px=lens_blur_px)
    clean = _even(_as_rgb(clean_srgb))
    exposure = 2.0 ** float(exposure_ev)
    record = raw_pair(
        clean, rng, pattern=pattern, iso=iso, sensor=sensor, lens=lens, cam_from_xyz=matrices[camera],
        exposure=exposure, olpf_px=olpf_px, bits=bits,
        noise_method="poisson" if noise else "none",
    )
    profile = (record["noise_a"], record["noise_b"])
    if not noise:
        # A noise-free capture says so: only its quantisation (variance step^2 / 12) and the
        # smallest shot-noise scale a NoiseProfile may carry (nnip.develop.noise accepts
        # a >= 1e-7). Claiming the sensor's noise made `--denoise auto` smooth a clean frame.
        step = 1.0 / (record["white_level"] - record["black_level"])
        profile = (1e-7, step * step / 12.0)
    lens_name = f"simulated {focal_length:g} mm f/{fnumber:g}"
    if lens_blur_px:
        lens_name += f", {lens_blur_px:g} px corner blur"
    write_dng(
        out_path, record["raw"], pattern=record["pattern"], black_level=record["black_level"],
        white_level=record["white_level"], color_matrix1=record["cam_from_xyz"], calibration_illuminant1=21,
        as_shot_neutral=record["as_shot_neutral"], noise_profile=profile,
        make="nnip", model=f"simulated {camera}", iso=iso, fnumber=fnumber, focal_length=focal_length,
        exposure_time=exposure_time, lens_model=lens_name if optics else "none (simulated)",
    )
    record["truth"] = _truth_image(clean, exposure, truth_space)
    record["path"] = Path(out_path)
    if truth_path is not None:
        _write_truth(Path(truth_path), record["truth"])
    return record
