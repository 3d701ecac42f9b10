"""One RAW file in, one finished image out: read, develop, orient, tag, write.

The output carries the ICC profile of its colour space (built from the same primaries the
pixels were converted with), the camera's shooting data as EXIF (make, model, lens, ISO,
f-number, exposure time, focal length, capture time) and upright pixels: the RAW's
orientation is applied to the pixels and the file says orientation 1 (never both).

``format="dng"`` stops the pipeline earlier and writes a *linear* DNG, as DxO PureRAW and
Lightroom's Enhance do: the camera RGB after demosaic (and denoise and lens correction,
when those stages are on), before white balance and colour matrix, so that another raw
developer applies its own. The white balance the pipeline would have used (``--wb``, the
camera's by default) becomes AsShotNeutral; the camera's colour matrix ColorMatrix1 (D65);
``--exposure`` becomes BaselineExposure. Colour space, highlights and the transfer curve are
the raw developer's business and do not apply. Pixels stay in sensor orientation and the
file carries the RAW's Orientation tag (never both).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image as PILImage

from nnip import __version__
from nnip.core import metadata
from nnip.core.imageio import Image, ImageMeta, write_image
from nnip.develop.icc import icc_profile
from nnip.develop.pipeline import (
    STAGE_ORDER,
    DevelopFrame,
    DevelopOptions,
    build_pipeline,
    camera_matrix,
    describe_pipeline,
    develop,
)
from nnip.raw.dng import write_linear_dng
from nnip.raw.frame import RawFrame, read_raw

if TYPE_CHECKING:
    from nnip.core.engine import Engine
    from nnip.core.models import Registry

__all__ = ["process_file", "Developed", "develop_raw", "camera_exif", "options_from_settings",
           "develop_camera_rgb", "write_developed_dng"]

#: The stages a linear DNG keeps: everything before white balance.
LINEAR_DNG_STAGES = STAGE_ORDER[: STAGE_ORDER.index("white-balance")]
#: The value a linear DNG stores for the raw white level (its WhiteLevel; black is 0).
DNG_WHITE = 65535

_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(DevelopOptions))


def options_from_settings(
    options: DevelopOptions | None = None, **settings: Any
) -> DevelopOptions:
    """``options`` updated with ``settings`` (by :class:`DevelopOptions` field names).

    ``bits=None`` means the format's usual depth (16 for TIFF and PNG, 8 for JPEG).
    Unknown names raise TypeError; invalid values ValueError.
    """
    unknown = set(settings) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown develop settings: {', '.join(sorted(unknown))}")
    base = options or DevelopOptions()
    if "format" in settings and "bits" not in settings:
        settings["bits"] = None  # a new format gets its own usual depth
    return dataclasses.replace(base, **settings) if settings else base


def process_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    options: DevelopOptions | None = None,
    engine: "Engine | None" = None,
    *,
    registry: "Registry | None" = None,
    **settings: Any,
) -> dict[str, Any]:
    """Develop the RAW file ``input_path`` into the image file ``output_path``.

    Parameters
    ----------
    input_path, output_path : path-like
        ``output_path`` is written as is (the batch runner passes a temporary name and
        renames it); its format comes from ``options.format``, not its extension.
    options : DevelopOptions, optional
        Default: ``DevelopOptions()``; keyword ``settings`` (same names) override it, so the
        CLI may pass its settings directly.
    engine : Engine, optional
        Needed for ``demosaic="nn"``.
    registry : Registry, optional
        Where models are looked up (``--models-dir``).

    Returns
    -------
    dict
        A JSON-ready record: ``width``, ``height`` (as written; a DNG's are the stored,
        sensor-oriented ones), ``format``, ``bits``, ``colorspace`` (``camera`` for DNG),
        ``demosaic``, ``white_balance``, ``camera``, ``notices``; with ``verbose`` also
        ``pipeline`` (one line per stage) and ``timings``.

    Raises
    ------
    NnipError
        InputError, RawDecodeError (unreadable RAW), ModelNotFoundError (no demosaic
        model), UnsupportedFormatError, OutputError.
    """
    options = options_from_settings(options, **settings)
    developed = develop_raw(read_raw(input_path), options, engine, registry)
    developed.write(output_path)
    return developed.record


@dataclasses.dataclass(frozen=True)
class Developed:
    """A developed RAW file, not written yet: ``write(path)`` writes it (as ``format``).

    ``record`` is what :func:`process_file` returns. It holds the finished pixels and the
    metadata, not the RAW frame, so the frame can be freed before the file is written
    (``nnip develop`` writes one file while it develops the next).
    """

    write: Callable[[str | os.PathLike[str]], None]
    record: dict[str, Any]


def develop_raw(
    raw: RawFrame,
    options: DevelopOptions,
    engine: "Engine | None" = None,
    registry: "Registry | None" = None,
) -> Developed:
    """Everything :func:`process_file` does between reading ``raw`` and writing the file."""
    if options.format == "dng":
        return _developed_dng(raw, options, engine, registry)
    rgb, meta = develop(raw, options, engine, registry)
    upright = metadata.apply_orientation(rgb, raw.orientation)
    image = Image(
        pixels=upright,
        alpha=None,
        meta=ImageMeta(
            format=options.format,
            bit_depth=options.bits,
            mode="rgb",
            exif=camera_exif(raw),
            icc=icc_profile(options.colorspace, options.icc_version),
            orientation=1,
        ),
    )

    def write(path: str | os.PathLike[str]) -> None:
        write_image(path, image, format=options.format, bits=options.bits, quality=options.quality)

    return Developed(write, _record(raw, options, meta, upright))


def _record(raw: RawFrame, options: DevelopOptions, meta: dict[str, Any],
            pixels: np.ndarray) -> dict[str, Any]:
    record: dict[str, Any] = {
        "width": int(pixels.shape[1]),
        "height": int(pixels.shape[0]),
        "format": options.format,
        "bits": options.bits,
        "colorspace": meta["colorspace"],
        "demosaic": options.demosaic,
        "white_balance": meta["white_balance"],
        "camera": " ".join(part for part in (raw.make, raw.model) if part),
        "notices": meta["notices"],
    }
    if "noise" in meta:
        record["noise"] = meta["noise"]
    if "lateral_ca" in meta:
        record["lateral_ca"] = meta["lateral_ca"]
    if options.verbose:
        record["pipeline"] = meta["pipeline"]
        record["timings"] = meta["timings"]
    return record


# --------------------------------------------------------------------------- linear DNG


def develop_camera_rgb(
    raw: RawFrame,
    options: DevelopOptions,
    engine: "Engine | None" = None,
    registry: "Registry | None" = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the pipeline up to white balance: what a linear DNG stores.

    Parameters
    ----------
    raw : RawFrame
    options : DevelopOptions
        Demosaic, denoise, lens and white-balance choices are used; the rest is for the
        later stages and is ignored here.
    engine, registry
        As for :func:`~nnip.develop.pipeline.develop`.

    Returns
    -------
    rgb : ndarray, float32, shape (H, W, 3)
        Linear camera RGB, not white balanced, black 0, 1 = the raw white level, not
        clipped; stored (sensor) orientation.
    meta : dict
        ``multipliers`` (3,) the white balance the full pipeline would apply (smallest 1),
        ``white_balance`` (mode and multipliers), ``colorspace`` (``camera``), ``pipeline``,
        ``notices``, ``timings``, ``denoised`` (whether the denoise stage ran) and, when
        it did, ``noise`` (the noise parameters it used), as ``develop`` gives them.
    """
    stages = build_pipeline(options, engine, registry)
    by_name = {stage.name: stage for stage in stages}
    work = DevelopFrame.from_raw(raw)
    timings: dict[str, float] = {}
    for name in LINEAR_DNG_STAGES:
        if by_name[name].enabled:
            start = time.perf_counter()
            work = by_name[name].apply(work)
            timings[name] = round(time.perf_counter() - start, 4)
    # The white-balance stage decides the multipliers (camera, auto, kelvin...) exactly as
    # the full pipeline does; its balanced pixels are dropped at once.
    balanced = by_name["white-balance"].apply(work)
    multipliers = np.asarray(balanced.multipliers, dtype=np.float64)
    work = work.replace(notices=balanced.notices)
    del balanced
    meta = {
        "multipliers": multipliers,
        "white_balance": {"mode": str(options.wb),
                          "multipliers": [round(float(m), 6) for m in multipliers]},
        "colorspace": "camera",
        # The stages that ran, and white balance, whose choice becomes AsShotNeutral.
        "pipeline": describe_pipeline(stages[: len(LINEAR_DNG_STAGES) + 1])
        + ["then: linear DNG (camera RGB; white balance as AsShotNeutral)"],
        "notices": list(work.notices),
        "timings": timings,
        "denoised": work.noise is not None,  # the denoise stage ran and used these
    }
    if work.noise is not None:
        meta["noise"] = {**work.noise.to_dict(), "text": work.noise.describe()}
    if work.lateral_ca is not None:
        meta["lateral_ca"] = work.lateral_ca
    return work.pixels.astype(np.float32, copy=False), meta


def write_developed_dng(
    raw: RawFrame,
    output_path: str | os.PathLike[str],
    options: DevelopOptions,
    engine: "Engine | None" = None,
    registry: "Registry | None" = None,
) -> dict[str, Any]:
    """Develop ``raw`` to camera RGB and write it as a linear DNG with the camera metadata.

    The raw white level maps to 65535 (WhiteLevel), black to 0; the RAW's NoiseProfile is
    kept unless the data was denoised (it would no longer describe it). Returns the same
    record as :func:`process_file`.
    """
    developed = _developed_dng(raw, options, engine, registry)
    developed.write(output_path)
    return developed.record


def _developed_dng(
    raw: RawFrame,
    options: DevelopOptions,
    engine: "Engine | None" = None,
    registry: "Registry | None" = None,
) -> Developed:
    """:func:`write_developed_dng` up to the writing (see :class:`Developed`)."""
    rgb, meta = develop_camera_rgb(raw, options, engine, registry)
    matrix, notice = camera_matrix(raw)
    notices = meta["notices"]
    for text in (notice, *_ignored_for_dng(options)):
        if text and text not in notices:
            notices.append(text)
    stored = _to_uint16(rgb)
    del rgb
    tags = dict(
        color_matrix1=matrix, calibration_illuminant1=21,  # cam_from_xyz is for D65
        as_shot_neutral=1.0 / meta["multipliers"],
        white_level=DNG_WHITE,
        baseline_exposure=float(options.exposure),
        noise_profile=None if meta["denoised"] else raw.noise_profile,
        make=raw.make or "Unknown", model=raw.model or "camera",
        iso=raw.iso, fnumber=raw.fnumber, focal_length=raw.focal_length,
        exposure_time=raw.exposure_time, lens_model=raw.lens or None,
        orientation=raw.orientation, datetime=raw.capture_time,
        original_raw_file_name=raw.path.name if raw.path is not None else None,
        software=f"nnip {__version__}",
    )

    def write(path: str | os.PathLike[str]) -> None:
        write_linear_dng(path, stored, **tags)

    return Developed(write, _record(raw, options, meta, stored))


def _to_uint16(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] float -> [0, 65535] uint16, in place on ``rgb`` to spare a full-size copy."""
    if not rgb.flags.writeable:  # a stage's read-only result is not ours to change
        rgb = rgb.copy()
    np.clip(rgb, 0.0, 1.0, out=rgb)
    rgb *= np.float32(DNG_WHITE)
    np.rint(rgb, out=rgb)
    return rgb.astype(np.uint16)


def _ignored_for_dng(options: DevelopOptions) -> list[str]:
    """Notices for options that only shape a rendered image, not a linear DNG."""
    notices = []
    if options.colorspace != DevelopOptions.colorspace:
        notices.append(f"colorspace {options.colorspace}: not used for DNG output "
                       "(camera RGB is written; the raw developer converts it)")
    if options.highlights != DevelopOptions.highlights:
        notices.append(f"highlights {options.highlights}: not used for DNG output "
                       "(the raw developer handles highlights)")
    return notices


def camera_exif(raw: RawFrame) -> bytes | None:
    """EXIF bytes (``Exif\\0\\0`` + TIFF) with the RAW's shooting data, orientation 1.

    Only what LibRaw reads reliably for every format is written; ``None`` when there is
    nothing to say.
    """
    exif = PILImage.Exif()
    sub: dict[int, Any] = {}
    if raw.make:
        exif[metadata.TAG_MAKE] = raw.make
    if raw.model:
        exif[metadata.TAG_MODEL] = raw.model
    if raw.capture_time is not None:
        stamp = raw.capture_time.strftime("%Y:%m:%d %H:%M:%S")
        exif[metadata.TAG_DATETIME] = stamp
        sub[metadata.TAG_DATETIME_ORIGINAL] = stamp
    if raw.exposure_time:
        sub[metadata.TAG_EXPOSURE_TIME] = _rational(raw.exposure_time)
    if raw.fnumber:
        sub[metadata.TAG_F_NUMBER] = _rational(raw.fnumber)
    if raw.iso:
        sub[metadata.TAG_ISO] = int(round(raw.iso))
    if raw.focal_length:
        sub[metadata.TAG_FOCAL_LENGTH] = _rational(raw.focal_length)
    if raw.lens:
        sub[metadata.TAG_LENS_MODEL] = raw.lens
    if not len(exif) and not sub:
        return None
    exif[metadata.TAG_ORIENTATION] = 1
    if sub:
        exif[metadata.TAG_EXIF_IFD] = sub
    return exif.tobytes()


def _rational(value: float):
    from PIL.TiffImagePlugin import IFDRational

    # Exposure times such as 1/250 s stay exact; others keep 4 decimals.
    if 0 < value < 1 and abs(1 / value - round(1 / value)) < 1e-3:
        return IFDRational(1, int(round(1 / value)))
    return IFDRational(int(round(value * 10000)), 10000)
