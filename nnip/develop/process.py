"""One RAW file in, one finished image out: read, develop, orient, tag, write.

The output carries the ICC profile of its colour space (built from the same primaries the
pixels were converted with), the camera's shooting data as EXIF (make, model, lens, ISO,
f-number, exposure time, focal length, capture time) and upright pixels: the RAW's
orientation is applied to the pixels and the file says orientation 1 (never both).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from nnip.core import metadata
from nnip.core.errors import UnsupportedFormatError
from nnip.core.imageio import Image, ImageMeta, write_image
from nnip.develop.icc import icc_profile
from nnip.develop.pipeline import DevelopOptions, develop
from nnip.raw.frame import RawFrame, read_raw

if TYPE_CHECKING:
    from nnip.core.engine import Engine
    from nnip.core.models import Registry

__all__ = ["process_file", "camera_exif", "options_from_settings"]

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
        A JSON-ready record: ``width``, ``height`` (as written), ``format``, ``bits``,
        ``colorspace``, ``demosaic``, ``white_balance``, ``camera``, ``notices``; with
        ``verbose`` also ``pipeline`` (one line per stage) and ``timings``.

    Raises
    ------
    NnipError
        InputError, RawDecodeError (unreadable RAW), ModelNotFoundError (no demosaic
        model), UnsupportedFormatError, OutputError.
    """
    options = options_from_settings(options, **settings)
    if options.format == "dng":
        raise UnsupportedFormatError("DNG output is not available in this version")
    raw = read_raw(input_path)
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
    write_image(output_path, image, format=options.format, bits=options.bits,
                quality=options.quality)
    return _record(raw, options, meta, upright)


def _record(raw: RawFrame, options: DevelopOptions, meta: dict[str, Any],
            pixels: np.ndarray) -> dict[str, Any]:
    record: dict[str, Any] = {
        "width": int(pixels.shape[1]),
        "height": int(pixels.shape[0]),
        "format": options.format,
        "bits": options.bits,
        "colorspace": options.colorspace,
        "demosaic": options.demosaic,
        "white_balance": meta["white_balance"],
        "camera": " ".join(part for part in (raw.make, raw.model) if part),
        "notices": meta["notices"],
    }
    if options.verbose:
        record["pipeline"] = meta["pipeline"]
        record["timings"] = meta["timings"]
    return record


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
