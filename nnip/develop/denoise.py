"""The denoise stage's work: noise map, the network through the engine, strength.

The denoise model contract (task ``denoise``):

- input ``mosaic`` (layout ``bayer_packed``, 4 channels): the normalised mosaic (black
  subtracted, 1 = white level, LINEAR, NOT white balanced, not clipped: noise below black
  stays negative) phase-normalised to RGGB and packed R, G1, G2, B at half resolution,
  exactly as the demosaic model's input is packed (see :mod:`nnip.develop.demosaic`);
- input ``noise_sigma`` (layout ``noise_sigma``, 4 channels, one per packed channel, or 1):
  the per-pixel noise standard deviation built by :func:`sigma_map` (below);
- output ``denoised`` (layout ``bayer_packed``, 4 channels): the denoised packed mosaic, same
  units, not clipped (ONNX forbids naming an output like an input, hence not ``mosaic``).
  The network learns the correction (residual): at initialisation it is the identity.

The noise map (:func:`sigma_map`, the one function training and inference both use):
``sigma = sqrt(a * clip(box(x), 0, 1) + b)`` per packed channel (float32), where ``box`` is
the mean over a 5 x 5 neighbourhood of the packed plane (10 x 10 mosaic pixels; borders
reflected as numpy's ``reflect`` does) of the noisy input itself. Smoothing makes the
signal estimate 25 times less noisy than the pixel, so the map tells the noise level, not
the noise; with the shot-noise variance linear in the signal, the mean is the right
statistic. (a, b) come from
:func:`nnip.develop.noise.noise_params`.

Strength (``--denoise STRENGTH``, 0..2; 1 = the estimated noise): 0 returns the input
unchanged; between 0 and 1 the output is the blend ``x + s (D(sigma) - x)``; from 1 to 2 the
network is told the noise is ``s`` times stronger, ``D(s sigma)``. Both halves meet at 1, the
blend never adds noise (its residual noise falls monotonically from the input's to the
network's), and a larger assumed sigma makes a denoiser smooth more, so the residual noise
does not grow with the strength (tests check it on flat simulated patches).

Below the trained noise floor the network fades out: it was trained on ISO 100..25600 of
the simulator's sensor models, and on a frame quieter than that (a clean render, a
noise-free simulated DNG, a base-ISO file of a quieter sensor) it still smooths fine
detail (measured: a noise-free Kodak24 develop lost 0.42 dB, 40.05 -> 39.63). So the
correction ``D - x`` is weighted per pixel by ``min(1, sigma / sigma_trained)``, both
sigmas at the same local signal, ``sigma_trained`` from :data:`TRAINED_NOISE_FLOOR` (1 for
every frame within the trained range, so nothing changes there). The weight does not
depend on the strength: the strength stays monotonic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nnip.core.errors import ModelError
from nnip.core.models import find_model
from nnip.core.parallel import for_each_strip
from nnip.develop.demosaic import pack_rggb, to_rggb_phase
from nnip.develop.noise import NoiseParams, noise_params

if TYPE_CHECKING:
    from nnip.core.engine import Engine
    from nnip.core.models import ModelSpec, Registry
    from nnip.develop.pipeline import DevelopFrame

__all__ = [
    "TRAINED_NOISE_FLOOR",
    "trained_range_weight",
    "STRENGTH_RANGE",
    "SIGMA_RADIUS",
    "SIGMA_FLOOR",
    "parse_denoise",
    "box_mean",
    "local_signal",
    "sigma_map",
    "unpack_rggb",
    "check_denoise_model",
    "denoise_packed",
    "denoise_mosaic",
    "Denoise",
]

#: Allowed ``--denoise`` strengths.
STRENGTH_RANGE = (0.0, 2.0)
#: Radius of the box mean the noise map is built from, in packed pixels (5 x 5).
SIGMA_RADIUS = 2
#: (a, b) of the quietest noise the shipped denoise model was trained on: ISO 100 of the
#: simulator's sensor models (nnip.simulate.sensor.SENSORS; lowest a: canon-5d3, lowest b:
#: sony-a7rm2). Retraining on another range must update it (see the module notes).
TRAINED_NOISE_FLOOR: tuple[float, float] = (1.477e-5, 9.6e-9)
#: Smallest sigma in the map (white-level units): keeps a network that divides by sigma
#: finite where b = 0; far below any real noise (14-bit quantisation alone is 1.8e-5).
SIGMA_FLOOR = 1e-6


def parse_denoise(value: str | float | None) -> float | None:
    """``--denoise`` value -> strength, or None for off.

    ``off`` (or None) -> None; ``auto`` or ``nn`` -> 1.0; a number -> itself, within
    :data:`STRENGTH_RANGE`.

    Raises
    ------
    ValueError
        Anything else (the CLI turns it into a usage error).
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "off":
            return None
        if text in ("auto", "nn"):
            return 1.0
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"denoise {value!r} is not one of off, auto, or a strength "
                f"{STRENGTH_RANGE[0]:g}..{STRENGTH_RANGE[1]:g}") from None
    strength = float(value)
    if not (math.isfinite(strength) and STRENGTH_RANGE[0] <= strength <= STRENGTH_RANGE[1]):
        raise ValueError(f"denoise strength {value} is not in "
                         f"{STRENGTH_RANGE[0]:g}..{STRENGTH_RANGE[1]:g}")
    return strength


# --------------------------------------------------------------------------- noise map


def box_mean(planes: np.ndarray, radius: int = SIGMA_RADIUS) -> np.ndarray:
    """Mean over a ``(2 radius + 1)^2`` square of each plane, borders reflected.

    Parameters
    ----------
    planes : ndarray, float, shape (C, H, W)

    Returns
    -------
    ndarray, float32, shape (C, H, W)
        scipy's ``uniform_filter`` in ``mirror`` mode (numpy's ``reflect``: the edge sample
        is not repeated), which sums in double precision.
    """
    from scipy import ndimage

    data = np.asarray(planes, dtype=np.float32)
    if radius <= 0:
        return data.copy()
    size = 2 * radius + 1
    out = np.empty(data.shape, dtype=np.float32)

    def work(planes: slice) -> None:  # plane by plane, over the cores
        for c in range(planes.start, planes.stop):
            ndimage.uniform_filter(data[c], size=size, mode="mirror", output=out[c])

    for_each_strip(data.shape[0], work, strip_rows=1)
    return out


def local_signal(packed: np.ndarray, radius: int = SIGMA_RADIUS) -> np.ndarray:
    """The signal estimate the noise map and the trained-range weight read: the box mean of
    each plane (:func:`box_mean`), clipped to [0, 1]; float32 (C, h, w), a new array."""
    signal = box_mean(packed, radius)
    return np.clip(signal, 0.0, 1.0, out=signal)


def sigma_map(
    packed: np.ndarray,
    params: NoiseParams,
    *,
    channels: int = 4,
    radius: int = SIGMA_RADIUS,
    signal: np.ndarray | None = None,
) -> np.ndarray:
    """The ``noise_sigma`` input for a packed mosaic (see the module notes).

    Parameters
    ----------
    packed : ndarray, float, shape (4, h, w)
        The packed normalised mosaic (the ``mosaic`` input), noisy.
    params : NoiseParams
        ``variance = a * x + b`` in white-level units.
    channels : {4, 1}
        4: one sigma per packed channel; 1: the root-mean-square over the four.
    radius : int
        Box radius of the signal estimate (training and inference must agree: keep the
        default).
    signal : ndarray, optional
        ``local_signal(packed, radius)`` when the caller has it already; it is then
        worked on in place (and becomes the result, for 4 channels).

    Returns
    -------
    ndarray, float32, shape (channels, h, w)
        Noise standard deviation in white-level units, >= :data:`SIGMA_FLOOR`.
    """
    if channels not in (1, 4):
        raise ValueError(f"a noise map has 4 or 1 channels, not {channels}")
    # The signal estimate, then (in place) its variance.
    variance = local_signal(packed, radius) if signal is None else signal
    variance *= np.float32(params.a)
    variance += np.float32(params.b)
    if channels == 1:
        variance = variance.mean(axis=0, keepdims=True, dtype=np.float32)
    sigma = np.sqrt(variance, out=variance)
    return np.maximum(sigma, np.float32(SIGMA_FLOOR), out=sigma)


def unpack_rggb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`nnip.develop.demosaic.pack_rggb`: (4, h, w) -> (2h, 2w) RGGB mosaic."""
    planes = np.asarray(packed, dtype=np.float32)
    out = np.empty((2 * planes.shape[1], 2 * planes.shape[2]), dtype=np.float32)
    out[0::2, 0::2], out[0::2, 1::2] = planes[0], planes[1]
    out[1::2, 0::2], out[1::2, 1::2] = planes[2], planes[3]
    return out


# --------------------------------------------------------------------------- the network


def check_denoise_model(spec: "ModelSpec") -> tuple[int, int]:
    """Positions of the ``bayer_packed`` and ``noise_sigma`` inputs of a denoise model.

    Raises
    ------
    ModelError
        The spec does not follow the denoise contract (module notes).
    """
    layouts = [t.layout for t in spec.inputs]
    problems = []
    if "denoise" not in spec.tasks:
        problems.append("task 'denoise'")
    if len(layouts) != 2 or "bayer_packed" not in layouts or "noise_sigma" not in layouts:
        problems.append("two inputs, bayer_packed and noise_sigma")
    else:
        if spec.inputs[layouts.index("bayer_packed")].channels != 4:
            problems.append("a 4-channel bayer_packed input")
        if spec.inputs[layouts.index("noise_sigma")].channels not in (1, 4):
            problems.append("a 1- or 4-channel noise_sigma input")
    if spec.outputs[0].channels != 4 or spec.scale != 1:
        problems.append("a 4-channel output at scale 1")
    if problems:
        raise ModelError(f"model {spec.name!r} cannot denoise here: the denoise stage needs "
                         + " and ".join(problems))
    return layouts.index("bayer_packed"), layouts.index("noise_sigma")


def denoise_packed(
    packed: np.ndarray,
    params: NoiseParams,
    engine: "Engine",
    spec: "ModelSpec",
    strength: float = 1.0,
    tile: int | None = None,
) -> np.ndarray:
    """Denoise a packed RGGB mosaic at ``strength`` (module notes).

    Parameters
    ----------
    packed : ndarray, float32, shape (4, h, w)
        Packed normalised mosaic, linear, not white balanced, not clipped.
    params : NoiseParams
    engine, spec
        The engine and a model following the denoise contract.
    strength : float
        0..2; 0 returns ``packed`` itself (no copy, no model run).
    tile : int, optional
        Engine tile edge (packed pixels).

    Returns
    -------
    ndarray, float32, shape (4, h, w)
        Same units, not clipped.
    """
    strength = float(strength)
    if not STRENGTH_RANGE[0] <= strength <= STRENGTH_RANGE[1]:
        raise ValueError(f"strength {strength} is not in {STRENGTH_RANGE}")
    packed = np.asarray(packed, dtype=np.float32)
    if strength == 0.0:
        return packed
    mosaic_at, sigma_at = check_denoise_model(spec)
    # One box filter serves both the weight and the noise map (the map's works in place).
    signal = local_signal(packed)
    weight = trained_range_weight(packed, params, signal=signal)
    sigma = sigma_map(packed, params, channels=spec.inputs[sigma_at].channels, signal=signal)
    del signal
    if strength > 1.0:
        sigma *= np.float32(strength)
    inputs: list[Any] = [None, None]
    inputs[mosaic_at], inputs[sigma_at] = packed, sigma
    denoised = engine.run(spec, inputs, tile=tile)
    del inputs, sigma
    if strength < 1.0:
        weight *= np.float32(strength)

    def blend(rows: slice) -> None:  # packed + weight (denoised - packed), in place
        part = denoised[:, rows]
        part -= packed[:, rows]
        part *= weight[:, rows]
        part += packed[:, rows]

    for_each_strip(denoised.shape[1], blend, strip_rows=64)
    return np.ascontiguousarray(denoised, dtype=np.float32)


def trained_range_weight(
    packed: np.ndarray, params: NoiseParams, *, signal: np.ndarray | None = None
) -> np.ndarray:
    """Per-pixel weight of the network's correction, float32 (4, h, w) in [0, 1]:
    ``min(1, sigma / sigma_trained)`` at the local signal (module notes), so a frame quieter
    than the model was trained on is left as it is rather than smoothed. ``signal``:
    ``local_signal(packed)`` when the caller has it (read, not changed)."""
    if signal is None:
        signal = local_signal(packed)
    floor_a, floor_b = TRAINED_NOISE_FLOOR
    ratio = (signal * np.float32(params.a) + np.float32(params.b)) / (
        signal * np.float32(floor_a) + np.float32(floor_b))
    np.minimum(ratio, np.float32(1.0), out=ratio)
    return np.sqrt(ratio, out=ratio).astype(np.float32, copy=False)


def denoise_mosaic(
    mosaic: np.ndarray,
    pattern: str,
    params: NoiseParams,
    engine: "Engine",
    spec: "ModelSpec",
    strength: float = 1.0,
    tile: int | None = None,
) -> np.ndarray:
    """Denoise a Bayer mosaic of any phase and size with the network ``spec``.

    The mosaic is phase-normalised to RGGB by reflect-padding one row and/or column at the
    top/left (as the demosaic stage does), packed, denoised by :func:`denoise_packed`,
    unpacked and cropped back: one model serves the four phases.

    Parameters
    ----------
    mosaic : ndarray, float32, shape (H, W)
        Normalised mosaic: black subtracted, 1 = white level, linear, not white balanced,
        not clipped.
    pattern : str
        Bayer phase at (0, 0): RGGB, BGGR, GRBG or GBRG.
    params : NoiseParams
        The frame's noise (:func:`nnip.develop.noise.noise_params`).
    engine, spec
        The engine and a ``denoise`` model (see the module notes for the contract).
    strength : float
        0..2 (module notes); 0 returns the input values unchanged.
    tile : int, optional
        Engine tile edge in packed pixels.

    Returns
    -------
    ndarray, float32, shape (H, W)
        The denoised mosaic, same units, not clipped.
    """
    mosaic = np.asarray(mosaic, dtype=np.float32)
    if float(strength) == 0.0:
        return mosaic.copy()
    padded, (top, left, height, width) = to_rggb_phase(mosaic, pattern)
    packed = denoise_packed(pack_rggb(padded), params, engine, spec, strength, tile)
    return np.ascontiguousarray(unpack_rggb(packed)[top:top + height, left:left + width])


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True, eq=False)
class Denoise:
    """The pipeline's denoise stage: the mosaic, before demosaicking.

    ``requested`` is what ``--denoise`` said (``off``, ``auto``, ``nn`` or a strength
    0..2, see :func:`parse_denoise`). The stage is disabled for ``off`` (and for strength
    0), so the pipeline is then exactly the pipeline without it. Non-Bayer frames pass
    through unchanged, with a notice. The noise parameters used go into the frame's
    ``noise`` (when the frame carries that field) and a notice for a bad NoiseProfile.
    """

    requested: str | float = "off"
    engine: "Engine | None" = None
    registry: "Registry | None" = None
    model: str | None = None
    tile: int | None = None
    name: str = "denoise"

    @property
    def strength(self) -> float | None:
        return parse_denoise(self.requested)

    @property
    def enabled(self) -> bool:
        return bool(self.strength)

    def describe(self) -> str:
        if not self.enabled:
            return "denoise: off"
        model = self.model or "first installed for task denoise"
        return f"denoise: nn, strength {self.strength:g} (model {model})"

    def apply(self, frame: "DevelopFrame") -> "DevelopFrame":
        if frame.space != "mosaic":
            raise RuntimeError(f"stage denoise expects pixels in mosaic, got {frame.space!r}")
        raw = frame.raw
        if not raw.is_bayer or frame.pixels.ndim != 2:
            if self._optional:  # the default: nothing to say about a stage that cannot apply
                return frame
            return frame.with_notice("denoise: only Bayer mosaics are denoised; skipped")
        spec = self._spec()
        if spec is None:  # plain auto (the default) without a model or engine: nothing to do
            return frame
        params, notices = noise_params(raw, frame.pixels)
        for notice in notices:
            frame = frame.with_notice(notice)
        pixels = denoise_mosaic(frame.pixels, raw.pattern, params, self.engine, spec,
                                self.strength or 0.0, self.tile)
        changes: dict[str, Any] = {"pixels": pixels}
        if hasattr(frame, "noise"):
            changes["noise"] = params
        return frame.replace(**changes)

    @property
    def _optional(self) -> bool:
        """``auto`` without a named model: a missing model skips the stage (the default)."""
        return isinstance(self.requested, str) and self.requested.strip().lower() == "auto" \
            and self.model is None

    def _spec(self) -> "ModelSpec | None":
        """The denoise model; None when none is installed (or no engine) and the mode is plain ``auto``."""
        spec = find_model("denoise", self.model, self.registry, optional=self._optional)
        if spec is None:
            return None
        if self.engine is None:
            if self._optional:  # a library call without an engine: the classical pipeline
                return None
            raise ValueError("denoise nn needs an Engine")
        return spec
