"""The develop pipeline: one ordered list of stages with one interface.

The order, in this one place (``--verbose`` prints it)::

    normalise -> denoise -> lateral CA -> demosaic -> lens -> white balance
              -> camera matrix -> output space -> highlights -> exposure -> transfer

(lateral CA and lens are the two halves of ``--lens``: colour fringes must be realigned on
the mosaic, before the demosaic absorbs part of them; blur is undone on demosaicked RGB.)

Each stage is a small frozen object with ``name``, ``enabled`` and
``apply(frame) -> frame``; :class:`DevelopFrame` carries the pixels plus everything later
stages need (the :class:`~nnip.raw.frame.RawFrame` with CFA, levels, white balances, matrix,
noise profile and shooting data; the white balance chosen; which colour space the pixels are
in). Stages never change a frame in place: each returns a new one.

The default rendering is neutral and colorimetric: no auto-brightening, no hidden tone curve,
no sharpening. A diffuse white at the raw white level comes out at 1.0 (the encoded white).

Pixel spaces along the way (``DevelopFrame.space``): ``raw`` (uint16 sensor values) ->
``mosaic`` (float32, black subtracted, 1 = white level) -> ``camera`` (demosaicked, H x W x 3)
-> ``camera-wb`` -> ``xyz-d65`` -> the output space (linear) -> encoded with its transfer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import numpy as np

from nnip.core.errors import ModelError, ModelNotFoundError, UnsupportedFormatError
from nnip.core.parallel import for_each_strip
from nnip.develop import colour
from nnip.develop.demosaic import (
    DEMOSAIC_METHODS,
    LIBRAW_METHODS,
    bilinear_bayer,
    libraw_demosaic,
    nn_demosaic,
)
from nnip.develop.denoise import Denoise, parse_denoise
from nnip.develop.lens import Lens, parse_lens
from nnip.develop.tca import LateralCA
from nnip.raw.frame import RawFrame

if TYPE_CHECKING:
    from nnip.core.engine import Engine
    from nnip.core.models import Registry

__all__ = [
    "STAGE_ORDER",
    "FORMAT_BITS",
    "HIGHLIGHT_MODES",
    "DevelopOptions",
    "DevelopFrame",
    "Stage",
    "Normalise",
    "Denoise",
    "LateralCA",
    "Demosaic",
    "Lens",
    "WhiteBalanceStage",
    "CameraMatrix",
    "OutputSpace",
    "Highlights",
    "Exposure",
    "Transfer",
    "build_pipeline",
    "describe_pipeline",
    "normalise_mosaic",
    "camera_matrix",
    "develop",
]

_log = logging.getLogger(__name__)
#: Rows per strip of the colour stages' whole-image passes (split over the cores).
_STRIP_ROWS = 64

#: The order of the stages: the single statement of it.
STAGE_ORDER = (
    "normalise", "denoise", "lateral-ca", "demosaic", "lens", "white-balance",
    "camera-matrix", "output-space", "highlights", "exposure", "transfer",
)

#: Bits per sample each output format can hold (32 = float TIFF).
#: DNG output is reserved for the DNG writer (not wired in yet).
FORMAT_BITS = {"tiff": (8, 16, 32), "png": (8, 16), "jpeg": (8,), "dng": (16,)}
#: ``clip``: white-balanced camera values above 1 are clipped (saturated areas go neutral
#: white); ``reconstruct``: brightness from the unclipped values, colour from the clipped
#: ones (dcraw/LibRaw's highlight mode 2, "blend"), so -EV recovers highlight detail.
HIGHLIGHT_MODES = ("clip", "reconstruct")


@dataclass(frozen=True)
class DevelopOptions:
    """Everything that shapes a development; the CLI builds it from its options.

    ``bits`` None means the format's usual depth (16 for TIFF and PNG, 8 for JPEG).
    ``wb`` is anything :func:`nnip.develop.colour.parse_white_balance` accepts
    (``camera``, ``auto``, ``daylight``, a preset, ``5500K`` or 5500, ``R,G,B``).
    ``denoise`` is ``off``, ``auto`` (= ``nn`` = strength 1) or a strength 0..2 (see
    :func:`nnip.develop.denoise.parse_denoise`). ``lens`` is ``off``, ``auto``, ``deblur`` or
    ``profile`` (see :mod:`nnip.develop.lens`). Invalid values raise ValueError at once.
    """

    format: str = "tiff"
    bits: int | None = None
    colorspace: str = "srgb"
    demosaic: str = "nn"
    wb: Any = "camera"
    exposure: float = 0.0
    highlights: str = "clip"
    # The default develop runs denoise -> lateral CA -> demosaic -> lens, the order and set
    # that measured best (benchmarks/develop_combined.py); ``auto`` skips quietly what it
    # cannot do (no model, no lensfun profile, no f-number or pixel pitch for the deblur).
    denoise: str = "auto"
    lens: str = "auto"
    verbose: bool = False
    quality: int = 95
    demosaic_model: str | None = None
    denoise_model: str | None = None
    lens_model: str | None = None
    tile: int | None = None
    icc_version: int = 2

    def __post_init__(self) -> None:
        fmt = self.format.lower()
        fmt = "jpeg" if fmt == "jpg" else "tiff" if fmt == "tif" else fmt
        object.__setattr__(self, "format", fmt)
        if fmt not in FORMAT_BITS:
            raise ValueError(f"format {self.format!r} is not one of {', '.join(FORMAT_BITS)}")
        if self.bits is None:  # the format's usual depth: 16 where it fits, else 8
            object.__setattr__(self, "bits", 16 if 16 in FORMAT_BITS[fmt] else 8)
        if self.bits not in FORMAT_BITS[fmt]:
            allowed = ", ".join(str(b) for b in FORMAT_BITS[fmt])
            raise ValueError(f"{fmt} holds {allowed} bits per sample, not {self.bits}")
        colour.colour_space(self.colorspace)
        object.__setattr__(self, "colorspace", self.colorspace.lower())
        object.__setattr__(self, "demosaic", self.demosaic.lower())
        if self.demosaic not in DEMOSAIC_METHODS:
            raise ValueError(
                f"demosaic {self.demosaic!r} is not one of {', '.join(DEMOSAIC_METHODS)}")
        object.__setattr__(self, "wb", colour.parse_white_balance(self.wb))
        if self.highlights not in HIGHLIGHT_MODES:
            raise ValueError(
                f"highlights {self.highlights!r} is not one of {', '.join(HIGHLIGHT_MODES)}")
        parse_denoise(self.denoise)  # off | auto | nn | strength 0..2; raises ValueError
        object.__setattr__(self, "lens", parse_lens(self.lens))  # auto|off|deblur|profile
        if not np.isfinite(self.exposure):
            raise ValueError("exposure must be a finite number of stops")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality {self.quality} is not in 1..100")


# --------------------------------------------------------------------------- the frame


@dataclass(frozen=True, eq=False)
class DevelopFrame:
    """The pixels between two stages and what later stages need to know about them.

    Attributes
    ----------
    pixels : ndarray
        ``raw``: uint16 (H, W) or (H, W, C) sensor values. ``mosaic``: float32, same shape,
        black subtracted, 1 = white level, not clipped. From ``camera`` on: float32
        (H, W, 3), linear until the transfer stage, not clipped.
    space : str
        What ``pixels`` hold (see the module notes).
    raw : RawFrame
        The source: CFA (``pattern``, ``cfa_indices``), levels, white balances, colour
        matrix, noise profile, shooting data, path.
    multipliers : ndarray (3,) or None
        White balance applied by the white-balance stage (smallest 1); None before it.
    camera_from_pixels : ndarray (3, 3) or None
        Maps the current linear pixels back to white-balanced camera RGB (kept by the colour
        stages, so the highlight stage can work where highlights are defined).
    highlight_mask : ndarray bool (H, W) or None
        Pixels with a white-balanced camera value above 1 (set by the white-balance stage).
    transfer : str
        ``linear`` until the transfer stage, then the output space's transfer function.
    optics : OpticsMap or None
        The optics map (diffraction radius, field) the lens stage used.
    noise : NoiseParams or None
        The noise model (a, b) the denoise stage used, and where it came from.
    lateral_ca : str or None
        What the lateral-CA stage found and did (one line), when it ran.
    notices : tuple of str
        One-line notes for the user (fallbacks taken).
    """

    pixels: np.ndarray
    space: str
    raw: RawFrame
    multipliers: np.ndarray | None = None
    camera_from_pixels: np.ndarray | None = None
    highlight_mask: np.ndarray | None = None
    transfer: str = "linear"
    optics: Any = None
    noise: Any = None
    lateral_ca: str | None = None
    notices: tuple[str, ...] = ()

    @classmethod
    def from_raw(cls, raw: RawFrame) -> "DevelopFrame":
        return cls(pixels=raw.mosaic, space="raw", raw=raw, notices=tuple(raw.notices))

    def replace(self, **changes: Any) -> "DevelopFrame":
        return dataclasses.replace(self, **changes)

    def with_notice(self, text: str) -> "DevelopFrame":
        if text in self.notices:
            return self
        _log.info("%s", text)
        return self.replace(notices=self.notices + (text,))

    # What the stages read from the source, by rawpy's names.
    @property
    def pattern(self) -> str:
        return self.raw.pattern

    @property
    def black_level_per_channel(self) -> tuple[float, float, float, float]:
        return self.raw.black_level_per_channel

    @property
    def white_level(self) -> float:
        return self.raw.white_level

    @property
    def noise_profile(self) -> tuple[float, float] | None:
        return self.raw.noise_profile


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline."""

    name: str

    @property
    def enabled(self) -> bool: ...

    def apply(self, frame: DevelopFrame) -> DevelopFrame: ...

    def describe(self) -> str: ...


def _expect(frame: DevelopFrame, stage: str, *spaces: str) -> None:
    # A stage fed the wrong pixels is a bug in the stage list, not a user problem.
    if frame.space not in spaces:
        raise RuntimeError(f"stage {stage} expects pixels in {spaces}, got {frame.space!r}")


# --------------------------------------------------------------------------- helpers


def normalise_mosaic(raw: RawFrame) -> np.ndarray:
    """Raw sensor values -> float32, black subtracted, divided by (white - black).

    Black is per colour index (tiled through ``cfa_indices`` for a mosaic; per channel for
    (H, W, C) data). Values are not clipped: noise below black stays negative.
    """
    data = raw.mosaic.astype(np.float32)  # the one full-size array: worked in place
    black = np.asarray(raw.black_level_per_channel, dtype=np.float32)
    if data.ndim == 3:
        per_pixel = black[: data.shape[2]] if data.shape[2] <= 4 else black[0]
    elif raw.cfa_indices is not None:
        n = raw.cfa_indices.shape[0]
        # LibRaw gives index 6 ("all colours") for a monochrome sensor: its black is black[0].
        cell = np.where(raw.cfa_indices > 3, 0, raw.cfa_indices)
        # One period of rows (n, W): broadcast over the row periods, no per-pixel tables.
        per_pixel = black[np.tile(cell, (1, -(-data.shape[1] // n)))[:, : data.shape[1]]]
        whole = data.shape[0] // n * n
        _normalise_rows(data[:whole].reshape(-1, n, data.shape[1]), per_pixel, raw.white_level)
        _normalise_rows(data[whole:], per_pixel[: data.shape[0] - whole], raw.white_level)
        return data
    else:
        per_pixel = black[0]
    _normalise_rows(data, per_pixel, raw.white_level)
    return data


def _normalise_rows(data: np.ndarray, black: np.ndarray | np.floating, white: float) -> None:
    """``data = (data - black) / max(white - black, 1)`` in place, ``black`` broadcast."""
    data -= black
    data /= np.maximum(np.float32(white) - black, np.float32(1.0))


def camera_matrix(raw: RawFrame) -> tuple[np.ndarray, str | None]:
    """``cam_from_xyz`` for ``raw``, and a notice when a fallback had to be used.

    Without a matrix (LibRaw knows none for this camera) camera RGB is taken as linear
    sRGB: colours are then only approximately right.
    """
    if raw.cam_from_xyz is not None:
        return np.asarray(raw.cam_from_xyz, dtype=np.float64), None
    srgb = colour.colour_space("srgb")
    return (
        np.linalg.inv(srgb.xyz_from_rgb),
        "no colour matrix known for this camera: camera RGB is taken as linear sRGB",
    )


def _as_shot_balance(raw: RawFrame) -> np.ndarray:
    """The best white balance known before the white-balance stage (for demosaickers)."""
    for candidate in (raw.camera_whitebalance, raw.daylight_whitebalance):
        if candidate is not None:
            return colour.normalise_multipliers(candidate)
    if raw.cam_from_xyz is not None:
        return colour.daylight_multipliers(raw.cam_from_xyz)
    return np.ones(3)


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Normalise:
    """Black and white levels: raw values -> 0 at black, 1 at the white level."""

    name: str = "normalise"
    enabled: bool = True

    def describe(self) -> str:
        return "normalise: subtract black level per colour, divide by white - black"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        _expect(frame, self.name, "raw")
        return frame.replace(pixels=normalise_mosaic(frame.raw), space="mosaic")


@dataclass(frozen=True, eq=False)
class Demosaic:
    """Mosaic -> linear camera RGB (``nn``, or LibRaw's ahd|dcb|vng|ppg|bilinear).

    Frames without a file (synthetic) use the numpy bilinear demosaic for the classical
    methods; X-Trans, Foveon and linear DNG always take LibRaw's own path, with a notice.
    """

    method: str = "nn"
    engine: "Engine | None" = None
    registry: "Registry | None" = None
    model: str | None = None
    tile: int | None = None
    name: str = "demosaic"
    enabled: bool = True

    def describe(self) -> str:
        if self.method == "nn":
            return f"demosaic: nn (model {self.model or 'first installed for task demosaic'})"
        return f"demosaic: {self.method} (LibRaw)"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        _expect(frame, self.name, "mosaic")
        raw = frame.raw
        if raw.num_colors > 3 or not set(raw.color_desc[:3]) <= set("RGB"):
            raise UnsupportedFormatError(
                f"{raw.color_desc}-filter sensors (not RGB) are not supported")
        balance = _as_shot_balance(raw)
        if not raw.is_bayer:
            return self._libraw_own_path(frame, balance)
        if self.method == "nn":
            rgb = self._network(frame, balance)
        elif raw.path is not None:
            rgb = libraw_demosaic(raw.path, frame.pixels, self.method, balance)
        else:
            frame = frame.with_notice(
                f"demosaic {self.method}: no RAW file behind this mosaic, bilinear used")
            rgb = bilinear_bayer(frame.pixels, raw.pattern)
        return frame.replace(pixels=rgb, space="camera")

    def _libraw_own_path(self, frame: DevelopFrame, balance: np.ndarray) -> DevelopFrame:
        raw = frame.raw
        if raw.path is None:
            raise ValueError("a non-Bayer frame can only be demosaicked from its RAW file")
        kind = "X-Trans" if raw.cfa_indices is not None and raw.cfa_indices.shape[0] == 6 \
            else "non-Bayer"
        method = self.method if self.method in LIBRAW_METHODS else "ahd"
        frame = frame.with_notice(f"{kind} sensor data: developed with LibRaw's own {method} "
                                  "path instead of the network")
        rgb = libraw_demosaic(raw.path, frame.pixels, method, balance)
        return frame.replace(pixels=rgb, space="camera")

    def _network(self, frame: DevelopFrame, balance: np.ndarray) -> np.ndarray:
        if self.engine is None:
            raise ValueError("demosaic nn needs an Engine")
        registry = self.registry
        if registry is None:
            from nnip.core.models import Registry

            try:
                registry = Registry()
            except ModelError as exc:  # no models directory or manifest at all
                raise ModelNotFoundError(f"no model for task 'demosaic' installed ({exc})") \
                    from None
        spec = registry.find("demosaic", self.model)
        return nn_demosaic(frame.pixels, frame.raw.pattern, balance, self.engine, spec,
                           tile=self.tile)


@dataclass(frozen=True)
class WhiteBalanceStage:
    """Decide the white balance (``camera|auto|daylight|preset|KELVIN|R,G,B``) and apply it."""

    request: colour.WhiteBalance = field(default_factory=lambda: colour.WhiteBalance("camera"))
    name: str = "white-balance"
    enabled: bool = True

    def describe(self) -> str:
        return f"white balance: {self.request}"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        _expect(frame, self.name, "camera")
        multipliers, frame = self._multipliers(frame)
        pixels, gains = frame.pixels, multipliers.astype(np.float32)
        balanced = np.empty(pixels.shape, dtype=np.float32)
        mask = np.empty(pixels.shape[:-1], dtype=bool)

        def work(rows: slice) -> None:
            np.multiply(pixels[rows], gains, out=balanced[rows])
            np.greater(colour.channel_max(balanced[rows]), 1.0, out=mask[rows])

        for_each_strip(pixels.shape[0], work, strip_rows=_STRIP_ROWS)
        return frame.replace(pixels=balanced, space="camera-wb", multipliers=multipliers,
                             highlight_mask=mask)

    def _multipliers(self, frame: DevelopFrame) -> tuple[np.ndarray, DevelopFrame]:
        raw, mode = frame.raw, self.request.mode
        matrix, _ = camera_matrix(raw)
        if mode == "camera":
            if raw.camera_whitebalance is not None:
                return colour.normalise_multipliers(raw.camera_whitebalance), frame
            frame = frame.with_notice("no as-shot white balance in this file: daylight used")
            mode = "daylight"
        if mode == "daylight":
            if raw.cam_from_xyz is None and raw.daylight_whitebalance is not None:
                return colour.normalise_multipliers(raw.daylight_whitebalance), frame
            return colour.daylight_multipliers(matrix), frame
        if mode == "kelvin":
            return colour.kelvin_multipliers(self.request.kelvin, matrix), frame
        if mode == "multipliers":
            return colour.normalise_multipliers(self.request.multipliers), frame
        if mode == "auto":
            # Every 4th pixel is plenty for a mean, and keeps this cheap on 50 MP.
            return colour.grey_world_multipliers(frame.pixels[::4, ::4]), frame
        raise ValueError(f"unknown white balance mode {mode!r}")


@dataclass(frozen=True)
class CameraMatrix:
    """White-balanced camera RGB -> D65 scene XYZ (camera white -> D65 white)."""

    name: str = "camera-matrix"
    enabled: bool = True

    def describe(self) -> str:
        return "camera matrix: camera RGB -> XYZ (D65)"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        _expect(frame, self.name, "camera-wb")
        matrix, notice = camera_matrix(frame.raw)
        if notice:
            frame = frame.with_notice(notice)
        xyz_from_cam = colour.camera_to_xyz_matrix(matrix)
        return frame.replace(
            pixels=_apply_matrix(frame.pixels, xyz_from_cam), space="xyz-d65",
            camera_from_pixels=np.linalg.inv(xyz_from_cam),
        )


@dataclass(frozen=True)
class OutputSpace:
    """D65 XYZ -> the output space's linear RGB (Bradford to D50 for ProPhoto)."""

    colorspace: str = "srgb"
    name: str = "output-space"
    enabled: bool = True

    def describe(self) -> str:
        return f"output space: {colour.colour_space(self.colorspace).description} (linear)"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        _expect(frame, self.name, "xyz-d65")
        rgb_from_xyz = colour.colour_space(self.colorspace).rgb_from_xyz_d65()
        camera_from = frame.camera_from_pixels @ np.linalg.inv(rgb_from_xyz)
        return frame.replace(pixels=_apply_matrix(frame.pixels, rgb_from_xyz),
                             space=self.colorspace, camera_from_pixels=camera_from)


@dataclass(frozen=True)
class Highlights:
    """Clip (or reconstruct) where a white-balanced camera value went above 1.

    Works in white-balanced camera RGB, where "above white" is defined, on the masked
    pixels only, then returns them to the current space.
    """

    mode: str = "clip"
    name: str = "highlights"
    enabled: bool = True

    def describe(self) -> str:
        return f"highlights: {self.mode}"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        if frame.highlight_mask is None or frame.camera_from_pixels is None \
                or not frame.highlight_mask.any():
            return frame
        mask = frame.highlight_mask
        to_camera = frame.camera_from_pixels
        camera = frame.pixels[mask] @ to_camera.T.astype(np.float32)
        fixed = np.minimum(camera, 1.0) if self.mode == "clip" else _blend_highlights(camera)
        pixels = frame.pixels.copy()
        pixels[mask] = fixed @ np.linalg.inv(to_camera).T.astype(np.float32)
        return frame.replace(pixels=pixels)


# dcraw's blend_highlights opponent transform for 3 colours: lightness and two chroma axes.
_BLEND = np.array([[1.0, 1.0, 1.0], [1.7320508, -1.7320508, 0.0], [-1.0, -1.0, 2.0]])
_BLEND_INV = np.array([[1.0, 0.8660254, -0.5], [1.0, -0.8660254, -0.5], [1.0, 0.0, 1.0]]) / 3.0


def _blend_highlights(camera: np.ndarray) -> np.ndarray:
    """Lightness of the unclipped values with the chroma (scaled) of the clipped ones."""
    unclipped = camera.astype(np.float64) @ _BLEND.T
    clipped = np.minimum(camera, 1.0).astype(np.float64) @ _BLEND.T
    chroma_u = np.sum(unclipped[:, 1:] ** 2, axis=1)
    chroma_c = np.sum(clipped[:, 1:] ** 2, axis=1)
    ratio = np.sqrt(np.divide(chroma_c, chroma_u, out=np.zeros_like(chroma_u),
                              where=chroma_u > 0))
    unclipped[:, 1:] *= ratio[:, None]
    return (unclipped @ _BLEND_INV.T).astype(np.float32)


@dataclass(frozen=True)
class Exposure:
    """Multiply linear light by 2^EV."""

    ev: float = 0.0
    name: str = "exposure"

    @property
    def enabled(self) -> bool:
        return self.ev != 0.0

    def describe(self) -> str:
        return f"exposure: {self.ev:+g} EV"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        return frame.replace(pixels=frame.pixels * np.float32(2.0 ** self.ev))


@dataclass(frozen=True)
class Transfer:
    """Encode linear light with the output space's transfer function (not clipped)."""

    colorspace: str = "srgb"
    name: str = "transfer"
    enabled: bool = True

    def describe(self) -> str:
        return f"transfer: {colour.colour_space(self.colorspace).transfer}"

    def apply(self, frame: DevelopFrame) -> DevelopFrame:
        _expect(frame, self.name, self.colorspace)
        transfer = colour.colour_space(self.colorspace).transfer
        return frame.replace(pixels=colour.encode_transfer(frame.pixels, transfer),
                             transfer=transfer, camera_from_pixels=None)


def _apply_matrix(pixels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``pixels`` (H, W, 3) through the 3 x 3 ``matrix``: a new array, in row strips."""
    transposed = np.asarray(matrix, dtype=np.float32).T
    out = np.empty(pixels.shape, dtype=np.float32)

    def work(rows: slice) -> None:
        np.matmul(pixels[rows], transposed, out=out[rows])

    for_each_strip(pixels.shape[0], work, strip_rows=_STRIP_ROWS)
    return out


# --------------------------------------------------------------------------- pipeline


def build_pipeline(
    options: DevelopOptions,
    engine: "Engine | None" = None,
    registry: "Registry | None" = None,
) -> list[Stage]:
    """The stages for ``options``, in :data:`STAGE_ORDER` (disabled ones included)."""
    stages: list[Stage] = [
        Normalise(),
        Denoise(options.denoise, engine, registry, options.denoise_model, options.tile),
        LateralCA(options.lens),
        Demosaic(options.demosaic, engine, registry, options.demosaic_model, options.tile),
        Lens(options.lens, engine, registry, options.lens_model, options.tile),
        WhiteBalanceStage(options.wb),
        CameraMatrix(),
        OutputSpace(options.colorspace),
        Highlights(options.highlights),
        Exposure(float(options.exposure)),
        Transfer(options.colorspace),
    ]
    assert tuple(s.name for s in stages) == STAGE_ORDER
    return stages


def describe_pipeline(stages: Sequence[Stage]) -> list[str]:
    """One numbered line per stage, disabled stages marked (what ``--verbose`` prints)."""
    return [
        f"{i}. {stage.describe()}" + ("" if stage.enabled else " [off]")
        for i, stage in enumerate(stages, 1)
    ]


def develop(
    frame: RawFrame,
    options: DevelopOptions,
    engine: "Engine | None" = None,
    registry: "Registry | None" = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Develop a RAW frame into an encoded image.

    Parameters
    ----------
    frame : RawFrame
        From :func:`nnip.raw.frame.read_raw` (or built in memory; then classical demosaic
        methods fall back to numpy bilinear).
    options : DevelopOptions
    engine : Engine, optional
        Needed for ``demosaic="nn"``.
    registry : Registry, optional
        Where the demosaic model is looked up (default: the default models directory).

    Returns
    -------
    rgb : ndarray, float32, shape (H, W, 3)
        Encoded with the output space's transfer function (linear for linear-srgb);
        nominal range [0, 1], not clipped (out-of-gamut and above-white values remain).
        Stored orientation: the RAW's orientation is NOT applied (see ``meta``).
    meta : dict
        ``colorspace``, ``transfer``, ``white_balance`` (mode and multipliers),
        ``orientation`` (EXIF value still to apply), ``pipeline`` (one line per stage),
        ``notices`` (fallbacks taken), ``timings`` (seconds per stage).

    Raises
    ------
    ModelNotFoundError
        ``demosaic="nn"`` and no demosaic model is installed.
    UnsupportedFormatError
        A sensor the pipeline cannot develop (4-colour CMYG).
    """
    stages = build_pipeline(options, engine, registry)
    work = DevelopFrame.from_raw(frame)
    timings: dict[str, float] = {}
    for stage in stages:
        if not stage.enabled:
            continue
        start = time.perf_counter()
        work = stage.apply(work)
        timings[stage.name] = round(time.perf_counter() - start, 4)
    meta = {
        "colorspace": options.colorspace,
        "transfer": work.transfer,
        "white_balance": {
            "mode": str(options.wb),
            "multipliers": [round(float(m), 6) for m in work.multipliers],
        },
        "orientation": frame.orientation,
        "pipeline": describe_pipeline(stages),
        "notices": list(work.notices),
        "timings": timings,
    }
    if work.noise is not None:
        meta["noise"] = {**work.noise.to_dict(), "text": work.noise.describe()}
    if work.lateral_ca is not None:
        meta["lateral_ca"] = work.lateral_ca
    return work.pixels.astype(np.float32, copy=False), meta

