"""The upscaler: network, strength blend, fidelity step, alpha / grey / 16-bit handling.

``upscale_image`` runs a scale-``s`` model (``spec.scale``, 2 for the shipped ones) over an
:class:`~nnip.core.imageio.Image` through the engine, then makes the result *faithful*:
its area-downscale (the mean of each ``s x s`` block) reproduces the input. Whatever
detail the network invents, it cannot shift tones or colours, move edges or drop texture.

The fidelity step lives in :mod:`nnups.fidelity` (its docstring: the method and what it
was measured to cost and give).

Bands. A 24 MP input makes a 96 MP output (1.15 GB as float32), so nothing else of that
size may exist at the same time. :func:`iter_upscaled_bands` works in horizontal bands of
input rows and yields each band's valid centre (its *core*), finished; ``upscale_image``
pastes them into one preallocated output, and :func:`write_upscaled` can instead stream
them into a tiled BigTIFF (``nnip.core.imageio.write_tiled_tiff``), so that a 100 MP input
never has its 400 MP output (4.8 GB as float32) in memory. The result equals the
whole-image computation to float rounding because every step is local, with a reach known
in input rows:

- the network: ``spec.margin``; the engine gets the band's rows with that many real rows
  of its neighbours on each side and computes only the band's own (``Engine.run``'s
  ``rows``), reflecting at the image's edges alone;
- the cubic blend (strength < 1): 2 (Keys cubic taps);
- the fidelity step: two rows per smooth round (the pre-sharpening's one, the bilinear
  taps' one); the exact step acts on single blocks, with bounds from the input within
  ``HALO_REACH`` rows.

So a band's fidelity step runs on its core plus :data:`FIDELITY_REACH` rows each side, and the
network computes those rows from them plus ``margin`` rows of context; the banded result is
then the one-band result to float rounding (tests/upscale/test_upscale_memory.py). By
default a band is one engine tile row (its rows and their context fit in ``tile``). Until
2026-11-27 the engine took the network rows as an image of their own and padded them by
reflection again, computing ``2 margin`` rows per band that nothing kept (~3 % of an 8 MP
upscale's network time at tile 768).

Overlap: the network of band k + 1 runs on a worker thread (onnxruntime releases the GIL)
while this thread finishes band k, so on 2 cores most of the fidelity step hides behind the
network (a 6000 x 4000 upscale: 32.5 -> 30.0 s), for one more band's network output in
memory. ``write_upscaled`` turns each finished band into the file's samples at once, so the
float result never exists whole (peak RSS 2.5 -> 1.8 GB on that upscale).

``strength`` blends the network output with :func:`classical_upscale` (Keys cubic, a = -0.5)
before the fidelity step: 0 gives a plain (but still faithful) cubic upscale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from nnip.core import imageio
from nnip.core.background import Background
from nnip.core.imageio import Image, ImageBand, OutputPlan
from nnip.core.models import ModelSpec
from nnip.core.tiling import align_up, min_tile, plan_tiles
from nnups.fidelity import (
    CUBIC_REACH,
    FIDELITY_REACH,
    HALO_REACH,
    SHARPEN,
    SMOOTH_STEPS,
    area_downscale,
    classical_upscale,
    enforce_fidelity,
    fidelity_planar,
    fidelity_reach,
    planar,
    smooth_upsample,
)

if TYPE_CHECKING:  # the engine imports onnxruntime lazily; typing only
    from nnip.core.engine import Engine

__all__ = [
    "upscale_image",
    "iter_upscaled_bands",
    "write_upscaled",
    "Band",
    "plan_bands",
    "default_band_rows",
    # the fidelity step's public names, re-exported (their home is nnups.fidelity)
    "classical_upscale",
    "smooth_upsample",
    "area_downscale",
    "enforce_fidelity",
    "SMOOTH_STEPS",
    "SHARPEN",
    "HALO_REACH",
    "FIDELITY_REACH",
]


ProgressFn = Callable[[int, int], None]

#: Bands never get fewer input rows than this (tiny tiles would make slivers).
MIN_BAND_ROWS = 64
#: Nor more input pixels than this: a band's few float32 temporaries at the output size
#: (s*s*3*4 bytes per input pixel each, ~290 MB at 6 MP) bound the memory beyond the output.
MAX_BAND_PIXELS = 6_000_000


def upscale_image(
    image: Image,
    engine: Engine,
    spec: ModelSpec,
    *,
    strength: float = 1.0,
    tile: int | None = None,
    progress: ProgressFn | None = None,
    band_rows: int | None = None,
) -> Image:
    """Upscale ``image`` by ``spec.scale`` with the model, then enforce fidelity.

    Parameters
    ----------
    image : Image
        float32 (H, W, 1|3) pixels, sRGB-encoded as stored; optional alpha (H, W).
    engine : nnip.core.engine.Engine
        Runs ``spec`` (``engine.run(spec, [CHW], tile=..., progress=...)``).
    spec : ModelSpec
        An upscaling model: one RGB (or grey) input in ``spec.inputs[0].range``, output of
        the same channels at ``spec.scale`` times the size.
    strength : float
        0..1; the share of the network's output against the cubic upscale.
    tile : int, optional
        Engine context tile edge (None: the engine's default); also sets the band height.
    progress : callable, optional
        ``progress(done, total)`` after each engine tile, counted over all bands.
    band_rows : int, optional
        Input rows per band; None: :func:`default_band_rows`. Any value gives the same
        result to float rounding; it only trades memory for repeated network rows.

    Returns
    -------
    Image
        float32 (s*H, s*W, C) with the same channels; alpha cubic-upscaled and clipped to
        [0, 1]; values clipped to [0, 1] unless the image is float (``bit_depth`` 32).
        ``area_downscale(result, s)`` equals the input pixels (to float rounding, and where
        clipping leaves a solution, which it always does for inputs in [0, 1]). Metadata is
        kept (the writer updates dimensions and orientation).
    """
    bands = iter_upscaled_bands(
        image, engine, spec, strength=strength, tile=tile, progress=progress, band_rows=band_rows
    )
    scale = int(spec.scale)
    height, width, channels = image.pixels.shape
    pixels = np.empty((scale * height, scale * width, channels), dtype=np.float32)
    alpha = None if image.alpha is None else np.empty(pixels.shape[:2], dtype=np.float32)
    for band in bands:
        rows = slice(band.row, band.row + band.pixels.shape[0])
        # A (rows, W, C) view of the planar band: the one transposing copy, into the output.
        pixels[rows] = band.pixels
        if alpha is not None:
            alpha[rows] = band.alpha
    return Image(pixels=pixels, alpha=alpha, meta=replace(image.meta, notices=()))


def iter_upscaled_bands(
    image: Image,
    engine: Engine,
    spec: ModelSpec,
    *,
    strength: float = 1.0,
    tile: int | None = None,
    progress: ProgressFn | None = None,
    band_rows: int | None = None,
) -> Iterator[ImageBand]:
    """:func:`upscale_image`'s output band by band, top to bottom, to stream it to disk.

    Same parameters as :func:`upscale_image` (checked here, before any band is made),
    whose result is exactly these bands pasted together.

    Yields
    ------
    ImageBand
        Output rows ``[row, row + n)``: float32 pixels (n, s*W, C), a view of the band's
        planar result, and alpha (n, s*W) or ``None``, as :func:`upscale_image` gives them
        (not yet rounded to the file's bits: the writer does that). Only the latest band
        is kept; each is made when the next is asked for, so take what you need first.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    scale = int(spec.scale)
    if scale < 2:
        raise ValueError(f"model {spec.name!r} has scale {scale}; an upscaler needs >= 2")
    reference = image.pixels
    height, width, channels = reference.shape
    tile = engine.default_tile if tile is None else tile
    rows = band_rows or default_band_rows(tile, spec, width)
    bands = plan_bands(height, rows, spec, smooth_steps=SMOOTH_STEPS)
    report = None
    if progress is not None and strength > 0.0:
        report = _BandProgress(bands, spec, width, tile, channels, progress)
    clip = image.meta.bit_depth != 32

    def network(index: int) -> np.ndarray | None:
        band_progress = report.for_band(index) if report is not None else None
        return _band_network(reference, bands[index], engine, spec, strength, tile, band_progress)

    def results() -> Iterator[ImageBand]:
        # The network of band k + 1 runs (onnxruntime, GIL released) while this thread
        # finishes band k (numpy, one core): on 2 cores that hides most of the fidelity
        # step, for one more band's network output in memory.
        pending = Background(network, 0, name="nnups-network")
        for index, band in enumerate(bands):
            detail = pending.result()
            if index + 1 < len(bands):
                pending = Background(network, index + 1, name="nnups-network")
            core = _finish_band(detail, reference, band, spec, strength, clip)
            detail = None
            alpha = None if image.alpha is None else _upscale_alpha_rows(image.alpha, band, scale)
            # (C, rows, W) -> a (rows, W, C) view; the consumer makes the one copy.
            yield ImageBand(scale * band.core[0], np.moveaxis(core, 0, -1), alpha)
            core = alpha = None  # the consumer is done with them: freed before the next band

    return results()


def write_upscaled(
    path: str | os.PathLike[str],
    image: Image,
    engine: Engine,
    spec: ModelSpec,
    *,
    format: str | None = None,
    bits: int | None = None,
    quality: int = 95,
    tiled: bool = False,
    strength: float = 1.0,
    tile: int | None = None,
    progress: ProgressFn | None = None,
) -> OutputPlan:
    """Upscale ``image`` into the file ``path``: one file, or a tiled BigTIFF streamed band by band.

    ``nnip.core.imageio.plan_output`` decides before any work: a TIFF output is streamed
    from :func:`iter_upscaled_bands` into a tiled BigTIFF when ``tiled`` or when it passes
    ``LARGE_OUTPUT_BYTES`` (the output then never exists whole in memory); a JPEG or PNG
    that large is refused. Otherwise each band is converted to file samples as it comes
    (``write_image_bands``). Either way the pixels are those of :func:`upscale_image`.

    Parameters
    ----------
    path : the file to write (the caller handles temporary names and renames).
    format, bits, quality : as for ``nnip.core.imageio.write_image``.
    tiled : stream a tiled BigTIFF whatever the size (the format must be TIFF).
    strength, tile, progress : as for :func:`upscale_image`.

    Returns
    -------
    OutputPlan
        The format, bits and streaming that were used.

    Raises
    ------
    OutputError
        From the plan (an output too large for JPEG/PNG, ``tiled`` with another format)
        or the writer.
    """
    scale = int(spec.scale)
    shape = (scale * image.height, scale * image.width, image.channels)
    meta = replace(image.meta, notices=())
    has_alpha = image.alpha is not None
    plan = imageio.plan_output(
        path, meta, shape=shape, alpha=has_alpha, format=format, bits=bits, tiled=tiled
    )
    bands = iter_upscaled_bands(image, engine, spec, strength=strength, tile=tile, progress=progress)
    if plan.streamed:
        imageio.write_tiled_tiff(path, bands, shape=shape, alpha=has_alpha, meta=meta, bits=plan.bits)
    else:  # each band becomes file samples as it comes: no whole float output in memory
        imageio.write_image_bands(path, bands, meta=meta, shape=shape, alpha=has_alpha,
                                  format=plan.format, bits=plan.bits, quality=quality)
    return plan


# --------------------------------------------------------------------------- bands


@dataclass(frozen=True)
class Band:
    """Input rows ``[start, stop)`` of one band, at three depths.

    ``core``: the rows this band writes (the cores partition the image). ``fidelity``: the
    rows the fidelity step and the blend run on (core plus the fidelity step's reach).
    ``detail``: the rows the network computes (the fidelity rows, their start rounded down
    to the model's ``align``). ``network``: the rows fed to the network (detail rows plus
    the model's margin of context, rounded up to ``align``). All clipped to the image.
    """

    core: tuple[int, int]
    fidelity: tuple[int, int]
    network: tuple[int, int]
    detail: tuple[int, int]


def default_band_rows(tile: int, spec: ModelSpec, width: int) -> int:
    """Input rows per band: one engine tile row, bounded by :data:`MAX_BAND_PIXELS`.

    A band's network rows are its core plus the fidelity reach and the model's margin on
    each side (:func:`plan_bands`); a core of ``tile`` minus those gives the engine exactly
    ``tile`` rows: one tile row, and the fewest rows computed twice for that tile (~3 % at
    tile 768 and margin 8).
    """
    pad = align_up(spec.margin, spec.align)
    rows = tile - 2 * (FIDELITY_REACH + pad) - (spec.align - 1)  # detail rows start aligned
    rows = min(rows, MAX_BAND_PIXELS // max(width, 1))
    return max(align_up(rows, spec.align) if rows > 0 else 0, MIN_BAND_ROWS)


def plan_bands(
    height: int, rows: int, spec: ModelSpec, *, smooth_steps: int = SMOOTH_STEPS
) -> list[Band]:
    """Split ``height`` input rows into near-equal bands of at most ``rows`` core rows.

    Core boundaries are multiples of ``spec.align`` (the network then sees the same
    alignment as on the whole image). Returns the bands top to bottom.
    """
    if height < 1 or rows < 1:
        raise ValueError(f"cannot split {height} rows into bands of {rows}")
    align = spec.align
    units = -(-height // align)
    count = -(-units // max(rows // align, 1))
    base, extra = divmod(units, count)
    reach = fidelity_reach(smooth_steps)
    pad = align_up(spec.margin, align)
    bands, start = [], 0
    for i in range(count):
        stop = min(start + (base + (i < extra)) * align, height)
        fid = (max(start - reach, 0), min(stop + reach, height))
        detail = (fid[0] // align * align, fid[1])
        network = (max(detail[0] - pad, 0), min(detail[1] + pad, height))
        bands.append(Band((start, stop), fid, network, detail))
        start = stop
    return bands


class _BandProgress:
    """Turns each band's engine ``progress(done, total)`` into one count over all bands."""

    def __init__(self, bands: list[Band], spec: ModelSpec, width: int, tile: int,
                 channels: int, progress: ProgressFn) -> None:
        # A 1-channel model runs once per colour channel (see _network_upscale).
        runs = channels if spec.inputs[0].channels == 1 else 1
        # A tile below the minimum is the engine's to refuse (a ModelError for the user),
        # on the first band; nothing is counted then.
        fits = tile >= min_tile(spec.margin, spec.align)
        self._counts = [
            runs * len(plan_tiles(d1 - d0, width, tile, spec.margin, spec.align)) if fits else 0
            for d0, d1 in (b.detail for b in bands)
        ]
        self._total = sum(self._counts)
        self._progress = progress

    def for_band(self, index: int) -> ProgressFn:
        offset, report, total = sum(self._counts[:index]), self._progress, self._total
        done = [0]  # tiles of this band, over all its engine runs

        def band_progress(_done: int, _total: int) -> None:
            done[0] += 1
            report(offset + done[0], total)

        return band_progress


def _band_network(
    reference: np.ndarray,
    band: Band,
    engine: Engine,
    spec: ModelSpec,
    strength: float,
    tile: int,
    progress: ProgressFn | None,
) -> np.ndarray | None:
    """The network's planar output for ``band.detail`` rows (None at strength 0)."""
    if strength <= 0.0:
        return None
    (n0, n1), (d0, d1) = band.network, band.detail
    return _network_upscale(reference[n0:n1], engine, spec, tile, progress, rows=(d0 - n0, d1 - n0))


def _finish_band(
    detail: np.ndarray | None,
    reference: np.ndarray,
    band: Band,
    spec: ModelSpec,
    strength: float,
    clip: bool,
) -> np.ndarray:
    """The finished output rows of ``band.core``, planar: float32 (C, s * core rows, s * W).

    ``detail`` is :func:`_band_network`'s output (worked on in place). Everything runs on
    planar (C, rows, W) arrays, as the engine returns them: each row operation of the
    fidelity step then has a long inner loop (interleaved RGB would give numpy inner loops
    of length 3, several times slower).
    """
    scale = int(spec.scale)
    f0, f1 = band.fidelity
    if detail is not None:
        d0 = band.detail[0]
        blended = detail[:, scale * (f0 - d0) : scale * (f1 - d0)]  # a view of its rows
        if strength < 1.0:
            blended *= np.float32(strength)
            blended += np.float32(1.0 - strength) * planar(_cubic_rows(reference, f0, f1, scale))
    else:
        blended = np.ascontiguousarray(planar(_cubic_rows(reference, f0, f1, scale)))
    out = fidelity_planar(blended, planar(reference[f0:f1]), scale, SMOOTH_STEPS, True, clip)
    c0, c1 = band.core
    return out[:, scale * (c0 - f0) : scale * (c1 - f0)]

def _cubic_rows(pixels: np.ndarray, start: int, stop: int, scale: int) -> np.ndarray:
    """Rows ``[start, stop)`` of ``classical_upscale(pixels)``, from those rows plus its reach."""
    g0, g1 = max(start - CUBIC_REACH, 0), min(stop + CUBIC_REACH, pixels.shape[0])
    up = classical_upscale(pixels[g0:g1], scale)
    return np.ascontiguousarray(up[scale * (start - g0) : scale * (stop - g0)])


def _upscale_alpha_rows(alpha: np.ndarray, band: Band, scale: int) -> np.ndarray:
    """The output alpha rows of ``band.core``: cubic-upscaled, clipped to [0, 1], float32."""
    rows = _cubic_rows(alpha, *band.core, scale)
    return np.clip(rows, 0.0, 1.0, out=rows)


def _network_upscale(
    pixels: np.ndarray,
    engine: Engine,
    spec: ModelSpec,
    tile: int | None,
    progress: ProgressFn | None,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """The model's output for ``pixels`` (H, W, C), model units undone: planar (C, s*H, s*W),
    or only input ``rows`` of it (the others their context: ``Engine.run``'s ``rows``).

    A grey image is replicated to a 3-channel model's input and its output averaged back;
    an RGB image on a 1-channel model runs channel by channel. The result is a fresh
    C-contiguous array (the caller may work on it in place).
    """
    tensor = spec.inputs[0]
    low, high = (float(v) for v in tensor.range)
    # The network was trained on [0, 1] data: clip (float TIFF may exceed it; the fidelity
    # step restores the true block means afterwards).
    scaled = np.clip(pixels, 0.0, 1.0) * np.float32(high - low) + np.float32(low)
    chw = np.ascontiguousarray(np.moveaxis(scaled, -1, 0), dtype=np.float32)
    del scaled
    channels = pixels.shape[2]
    if tensor.channels == channels:
        outputs = [_run(engine, spec, chw, tile, progress, rows)]
    elif tensor.channels == 3 and channels == 1:
        outputs = [_run(engine, spec, np.repeat(chw, 3, axis=0), tile, progress, rows).mean(0, keepdims=True)]
    elif tensor.channels == 1:
        outputs = [_run(engine, spec, chw[c : c + 1], tile, progress, rows) for c in range(channels)]
    else:
        raise ValueError(
            f"model {spec.name!r} takes {tensor.channels} channels; cannot feed a {channels}-channel image"
        )
    out = np.concatenate(outputs, axis=0) if len(outputs) > 1 else outputs[0]
    out_low, out_high = (float(v) for v in spec.outputs[0].range)
    if (out_low, out_high) != (0.0, 1.0):
        out -= np.float32(out_low)
        out *= np.float32(1.0 / (out_high - out_low))
    return out


def _run(
    engine: Engine, spec: ModelSpec, chw: np.ndarray, tile: int | None, progress: ProgressFn | None,
    rows: tuple[int, int] | None,
) -> np.ndarray:
    # The next band runs the model again: its arena stays warm (no release).
    out = engine.run(spec, [chw], tile=tile, progress=progress, release=False, rows=rows)
    return np.ascontiguousarray(out, dtype=np.float32)
