"""Resampling and the fidelity step: what makes an upscale *faithful*.

A faithful scale-``s`` output is one whose area-downscale (the mean of each ``s x s``
block) reproduces the input: whatever detail the network invents, it cannot shift
tones or colours, move edges or drop texture. ``nnups.upscale`` runs the network band
by band and calls :func:`fidelity_planar` on each band; :func:`enforce_fidelity` is the
same step on a whole array.

The fidelity step (:func:`enforce_fidelity`) is iterative back-projection:

1. ``smooth_steps`` times (1 by default): ``r = input - area_downscale(out)``;
   ``out += bilinear_up(sharpen(r))``. Alone, the bilinear correction is seamless but, per
   axis, only removes the frequencies it sees with gain ``0.75 + 0.25 cos(w)``; the
   pre-sharpening ``[-0.2, 1.4, -0.2]`` (:data:`SHARPEN`) lifts that to within ~10 % of 1.
   Measured on a real network output (upscale-fast v0.4, an 8 MP photo from the training
   folder), the residual left for the exact step after one sharpened round against three
   plain ones (which the upscaler used until 2026-11-26): 99th percentile 0.06 vs 0.14
   levels of 255, 99.99th 0.54 vs 0.62, RMS 0.019 vs 0.035, for a third of the cost.
2. One exact step: ``out += nearest_up(r)``, which makes every block mean equal to the
   input pixel. It is applied to the small residual left by step 1, so its 2 x 2 pattern
   stays far below visibility. With clipping to [0, 1] (integer outputs) each block whose
   values leave the range is solved exactly: ``clip(v + c)`` with the scalar ``c`` found
   in closed form (the block mean is piecewise linear in ``c``), the Euclidean projection
   onto "block mean = input, values in [0, 1]".
3. The halo clamp, inside that exact step: the bounds of each block are not [0, 1] but
   the min..max of the input pixels within :data:`HALO_REACH` (a 7 x 7 window), so no
   output value overshoots the levels on either side of an edge: no halo, no ringing,
   whatever the network does. The block's own input pixel lies in its window, so the
   projection always has an exact solution and fidelity is untouched. Measured with
   upscale-fast v0.2 (benchmarks/upscale_edges.py, sr_quality.py; MATLAB-bicubic LR):
   ringing at 0/30/45 degree edges 3.7/5.3/8.0 % of the step -> 0.0/0.0/0.0 %, rise
   distance unchanged (1.44 -> 1.48 px, bicubic 2.09); Set5/Set14 Y-PSNR 36.42/32.34 ->
   36.37/32.30 (window 3 x 3: -0.26 dB, 5 x 5: -0.11, 9 x 9: -0.02 but one more context row
   per band). Thin lines brighter than everything around them in the input are the cost:
   a peak the input cannot show is not restored.

Measured when the step was designed (three plain rounds; Set5 + the first 6 Set14
images; input = HR area-downscaled and rounded to 8 bits; PSNR over RGB, 4-pixel border
excluded; "network" = cubic, or cubic sharpened by unsharp masking as a stand-in for a
detail-adding network):

====================  ========  ==========  ==============================
steps                  cubic     sharpened   largest 2x2 block-mean error
====================  ========  ==========  ==============================
none                   29.12     29.49       35/255 (cubic)
exact only             29.55     29.75       0
3 smooth               29.68     29.71       8/255
3 smooth + exact       29.70     29.71       0 (float rounding)
====================  ========  ==========  ==============================

The exact step costs nothing in PSNR and guarantees fidelity; the smooth rounds before it
shrink what the exact step must add, which is what keeps its 2 x 2 pattern invisible.

Cost of the fidelity step: ~0.13 s per input megapixel on one idle CPU core (0.23 s before
2026-11-26: three plain rounds, the clamp's bounds and the sharpening as full-band arrays,
whose fresh pages cost this machine more than the arithmetic, and the clamp's blocks
gathered by numpy's multi-array indexing). It works in place on planar float32 rows as the
engine returns them, in row chunks of ~2 MB so each round is one pass over the output with
cache-sized temporaries, and the clip projection is solved in closed form, only for the
blocks that need it (~14 % of a photo's: most at a window's extreme, set without solving).

Resamplers: :func:`classical_upscale` (Keys cubic, a = -0.5, the ``--strength`` blend and
alpha), :func:`smooth_upsample` (bilinear), :func:`area_downscale` (block means).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = [
    "classical_upscale",
    "smooth_upsample",
    "area_downscale",
    "enforce_fidelity",
    "fidelity_planar",
    "fidelity_reach",
    "planar",
    "SMOOTH_STEPS",
    "SHARPEN",
    "HALO_REACH",
    "FIDELITY_REACH",
    "CUBIC_REACH",
]

Kernel = Callable[[np.ndarray], np.ndarray]  # 1-D interpolation kernel of the distance in pixels

#: Sharpened bilinear back-projection rounds before the exact step (module docstring).
SMOOTH_STEPS = 1
#: Each round pre-sharpens the residual with [-w, 1 + 2 w, -w] per axis: at scale 2 the
#: area-down of a bilinear-up passes frequency ``f`` with gain ``0.75 + 0.25 cos f`` (0.5
#: at Nyquist); the pre-filter's ``1 + 2 w - 2 w cos f`` brings the product near 1.
SHARPEN = 0.2
#: The halo clamp: each output block stays within the min..max of the input pixels this
#: far around it (3: a 7 x 7 window). See the module docstring for the measured trade.
HALO_REACH = 3
#: Input pixels each resampler reaches on either side (bilinear: 1, Keys cubic: 2).
_BILINEAR_REACH = 1
CUBIC_REACH = 2
#: One smooth round reaches the pre-filter's pixel plus the bilinear taps'.
_SMOOTH_REACH = 1 + _BILINEAR_REACH
#: An output block depends on input pixels at most this far away (all fidelity rounds).
FIDELITY_REACH = max(SMOOTH_STEPS * _SMOOTH_REACH, HALO_REACH)  # fidelity_reach()

#: Blocks the clip projection solves at once.
_PROJECT_CHUNK = 1 << 17
#: Output values per row chunk of the fidelity step (2 MB: fits a core's L2 cache).
_CHUNK_VALUES = 1 << 19


def planar(pixels: np.ndarray) -> np.ndarray:
    """(H, W[, C]) -> a (C, H, W) view."""
    return np.moveaxis(pixels.reshape(pixels.shape[:2] + (-1,)), -1, 0)


def fidelity_reach(smooth_steps: int = SMOOTH_STEPS) -> int:
    """Input pixels an output block of the fidelity step depends on, at most, on each side."""
    return max(smooth_steps * _SMOOTH_REACH, HALO_REACH)


# --------------------------------------------------------------------------- resampling


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5: Catmull-Rom, MATLAB's bicubic)."""
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x <= 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 - np.abs(x), 0.0)


def _phase_weights(
    scale: int, kernel: Kernel, support: int
) -> tuple[np.ndarray, np.ndarray]:
    """Tap offsets and weights of each output phase, half-pixel centres.

    Output pixel ``i * scale + p`` sits at input coordinate ``i + (p + 0.5) / scale - 0.5``:
    the same fractional position for every ``i`` of a phase ``p``, so each phase is a fixed
    small filter. Returns ``offsets`` (scale, 2 * support) relative to ``i`` and
    ``weights`` (scale, 2 * support) summing to 1 per phase.
    """
    centres = (np.arange(scale) + 0.5) / scale - 0.5
    first = np.floor(centres).astype(np.int64) - support + 1
    offsets = first[:, None] + np.arange(2 * support)[None, :]
    weights = kernel(centres[:, None] - offsets)
    return offsets, weights / weights.sum(axis=1, keepdims=True)


def _upsample_axis(
    array: np.ndarray, axis: int, scale: int, kernel: Kernel, support: int
) -> np.ndarray:
    """Interpolate ``array`` by ``scale`` along ``axis`` (half-pixel centres, symmetric border)."""
    offsets, weights = _phase_weights(scale, kernel, support)
    pad = int(np.abs(offsets).max())
    moved = np.moveaxis(array, axis, 0)
    length = moved.shape[0]
    padded = np.pad(moved, [(pad, pad)] + [(0, 0)] * (moved.ndim - 1), mode="symmetric")
    if length < pad:  # np.pad reflects once; tiny inputs need the reflection repeated
        index = np.arange(-pad, length + pad)
        period = np.mod(index, 2 * length)
        padded = moved[np.where(period >= length, 2 * length - 1 - period, period)]
    out = np.empty((length, scale) + moved.shape[1:], dtype=np.float32)
    for phase in range(scale):
        acc = out[:, phase]
        acc[...] = 0.0
        for offset, weight in zip(offsets[phase], weights[phase]):
            acc += np.float32(weight) * padded[pad + offset : pad + offset + length]
    return np.moveaxis(out.reshape((length * scale,) + moved.shape[1:]), 0, axis)


def _upsample(array: np.ndarray, scale: int, kernel: Kernel, support: int) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    return np.ascontiguousarray(
        _upsample_axis(_upsample_axis(array, 0, scale, kernel, support), 1, scale, kernel, support)
    )


def classical_upscale(pixels: np.ndarray, scale: int = 2) -> np.ndarray:
    """Keys cubic (a = -0.5) upscale with half-pixel centres and symmetric borders.

    Parameters
    ----------
    pixels : np.ndarray
        (H, W) or (H, W, C), any real dtype; any transfer function (interpolated as is).
    scale : int
        Integer factor >= 1.

    Returns
    -------
    np.ndarray
        float32 (scale*H, scale*W[, C]); not clipped (cubic overshoots at hard edges).
        Matches MATLAB ``imresize(x, scale, 'bicubic')`` and
        ``scipy.ndimage.zoom(x, scale, order=3, grid_mode=True)`` in spirit (scipy uses
        B-spline cubic, sharper).
    """
    return _upsample(pixels, scale, _keys_cubic, 2)


def smooth_upsample(pixels: np.ndarray, scale: int = 2) -> np.ndarray:
    """Bilinear upsample (half-pixel centres, symmetric borders), float32 (sH, sW[, C]).

    Its area-downscale is a mild blur of the input (kernel [1/8, 3/4, 1/8] per axis for
    scale 2): the smooth half of the fidelity correction.
    """
    values = np.asarray(pixels, dtype=np.float32)
    grid = planar(values)
    channels, height, width = grid.shape
    out = np.zeros((channels, scale * height, scale * width), dtype=np.float32)
    _add_smooth(_blocks(out, scale), grid, scale)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1)).reshape(
        (scale * height, scale * width) + values.shape[2:]
    )


def area_downscale(pixels: np.ndarray, factor: int = 2) -> np.ndarray:
    """Mean of each ``factor x factor`` block: what a sensor of ``factor``-times-larger pixels sees.

    Parameters
    ----------
    pixels : np.ndarray
        (H, W) or (H, W, C) with H and W multiples of ``factor``.

    Returns
    -------
    np.ndarray
        float32 (H/factor, W/factor[, C]).
    """
    height, width = pixels.shape[:2]
    if height % factor or width % factor:
        raise ValueError(f"size {width}x{height} is not a multiple of {factor}")
    values = np.asarray(pixels)
    total = _block_sums(_blocks(planar(values), factor))
    total *= np.float32(1.0 / (factor * factor))
    return np.ascontiguousarray(np.moveaxis(total, 0, -1)).reshape(
        (height // factor, width // factor) + values.shape[2:]
    )


def _blocks(rows_chw: np.ndarray, scale: int) -> np.ndarray:
    """A (C, H, s, W, s) view of planar (C, s*H, s*W) rows (any strides): blocks [c, i, :, j, :]."""
    channels, rows, cols = rows_chw.shape
    view = rows_chw.reshape(channels, rows // scale, scale, cols // scale, scale)
    if not np.may_share_memory(view, rows_chw):  # splitting axes never needs a copy
        raise AssertionError("block view is a copy")
    return view


def _block_sums(out5: np.ndarray) -> np.ndarray:
    """Sum of each block of ``out5`` (C, H, s, W, s): float32 (C, H, W).

    Row phases first (adds over whole output rows), then the column phases of the
    half-size result; each add writes its result directly (no copies).
    """
    return _reduce_phases(_reduce_phases(out5, 2, np.add), 3, np.add)


def _reduce_phases(values: np.ndarray, axis: int, ufunc: np.ufunc) -> np.ndarray:
    """``ufunc`` over ``axis`` (a short phase axis) as whole-array operations, float32."""
    take = lambda k: values[(slice(None),) * axis + (k,)]  # noqa: E731
    out = ufunc(take(0), take(1), dtype=np.float32) if values.shape[axis] > 1 else (
        take(0).astype(np.float32, copy=True))
    for k in range(2, values.shape[axis]):
        ufunc(out, take(k), out=out)
    return out


def _along(axis: int, ndim: int, index: slice) -> tuple[slice, ...]:
    """An index tuple taking ``index`` along ``axis`` and everything elsewhere."""
    return tuple(index if a == axis else slice(None) for a in range(ndim))


def _bilinear_phases(values: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray],
                     outs: list[np.ndarray]) -> None:
    """``outs[p]`` = phase ``p`` of the bilinear upsample of ``values`` along ``axis``.

    ``taps`` are the bilinear ``(offsets, weights)`` of :func:`_phase_weights`, one row per
    phase (and per entry of ``outs``).

    Half-pixel centres put each phase between a centre tap (offset 0) and one side tap
    (offset -1 or +1); the edge sample is repeated, which is the symmetric border for taps
    one pixel away. Weighted copies of ``values`` are shared by the phases (scale 2: 0.75
    and 0.25 for both), so each phase costs one add written straight into ``outs[p]``.
    """
    offsets, weights = taps  # from _phase_weights(scale, _triangle, 1)
    weighted: dict[float, np.ndarray] = {}

    def times(weight: float) -> np.ndarray:
        if weight not in weighted:
            weighted[weight] = values * np.float32(weight)
        return weighted[weight]

    at = lambda index: _along(axis, values.ndim, index)  # noqa: E731
    for phase, out in enumerate(outs):
        (first, _), (w_first, w_second) = offsets[phase].tolist(), weights[phase].tolist()
        # Offsets are (-1, 0) or (0, 1): floor of a centre in (-0.5, 0.5), and the next.
        centre, side, step = (w_second, w_first, -1) if first < 0 else (w_first, w_second, 1)
        if side == 0.0:
            out[...] = values
        elif step < 0:  # out[i] = c * v[i] + s * v[i - 1]; the first repeats v[0]
            np.add(times(centre)[at(slice(1, None))], times(side)[at(slice(None, -1))],
                   out=out[at(slice(1, None))])
            np.add(times(centre)[at(slice(0, 1))], times(side)[at(slice(0, 1))],
                   out=out[at(slice(0, 1))])
        else:  # out[i] = c * v[i] + s * v[i + 1]; the last repeats v[-1]
            np.add(times(centre)[at(slice(None, -1))], times(side)[at(slice(1, None))],
                   out=out[at(slice(None, -1))])
            np.add(times(centre)[at(slice(-1, None))], times(side)[at(slice(-1, None))],
                   out=out[at(slice(-1, None))])


def _add_smooth(out5: np.ndarray, residual: np.ndarray, scale: int, start: int = 0,
                stop: int | None = None) -> None:
    """``out5 += bilinear_up(residual)`` in place, on the block rows ``[start, stop)``.

    ``out5`` (C, H, s, W, s) is the output's block view, ``residual`` (C, H, W). Block row
    ``i`` of the correction takes residual rows ``i - 1 .. i + 1`` (edge rows repeated at
    the image's top and bottom only), so any row range gives the whole-array result there.
    """
    channels, height, _, width, _ = out5.shape
    stop = height if stop is None else stop
    first, last = max(start - 1, 0), min(stop + 1, height)
    window = residual[:, first:last]
    taps = _phase_weights(scale, _triangle, _BILINEAR_REACH)
    rows = [np.empty(window.shape, dtype=np.float32) for _ in range(scale)]
    _bilinear_phases(window, 1, taps, rows)
    part = np.empty((channels, stop - start, width, scale), dtype=np.float32)
    for py in range(scale):
        _bilinear_phases(rows[py][:, start - first : stop - first], 2, taps,
                         [part[..., px] for px in range(scale)])
        out5[:, start:stop, py] += part


# --------------------------------------------------------------------------- fidelity


def enforce_fidelity(
    upscaled: np.ndarray,
    reference: np.ndarray,
    scale: int = 2,
    *,
    smooth_steps: int = SMOOTH_STEPS,
    exact: bool = True,
    clip: bool = True,
    halo_reach: int = HALO_REACH,
) -> np.ndarray:
    """Correct ``upscaled`` so that its ``scale x scale`` block means equal ``reference``.

    Parameters
    ----------
    upscaled : np.ndarray
        float (s*H, s*W[, C]), any source (network, cubic, a blend); not modified.
    reference : np.ndarray
        (H, W[, C]), the input the result must stay faithful to.
    smooth_steps : int
        Rounds of pre-sharpened bilinear back-projection (seamless, leaves a small
        residual). Each reaches two more input pixels: an output block depends on
        ``reference`` and ``upscaled`` at most ``2 * smooth_steps`` input pixels away
        (and ``halo_reach`` for the clamp's bounds).
    exact : bool
        Finish with the exact per-block step (block means equal ``reference``).
    clip : bool
        Keep values in [0, 1] (integer outputs); ``reference`` is clipped too.
    halo_reach : int
        With ``exact``: keep each output block within the min..max of the ``reference``
        pixels up to this many pixels away (no halo, no ringing); 0 turns the clamp off.

    Returns
    -------
    np.ndarray
        float32, C-contiguous, the shape of ``upscaled``.
    """
    values = np.asarray(upscaled)
    work = np.array(planar(values), dtype=np.float32, copy=True, order="C")
    target = planar(np.asarray(reference))
    if work.shape[0] != target.shape[0]:
        raise ValueError(
            f"upscaled {values.shape} and reference {reference.shape} differ in channels"
        )
    out = fidelity_planar(work, target, scale, smooth_steps, exact, clip, halo_reach)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1)).reshape(values.shape)


def fidelity_planar(
    out: np.ndarray,
    reference: np.ndarray,
    scale: int,
    smooth_steps: int,
    exact: bool,
    clip: bool,
    halo_reach: int = HALO_REACH,
) -> np.ndarray:
    """:func:`enforce_fidelity` in place on planar float32 ``out`` (C, s*H, s*W); returns it.

    ``out`` may be any strided view (rows of a larger array); ``reference`` is (C, H, W).
    """
    channels, height, width = reference.shape
    if out.dtype != np.float32 or out.shape != (channels, height * scale, width * scale):
        raise ValueError(f"upscaled {out.shape} is not {scale} x reference {reference.shape}")
    # A contiguous copy (quarter size): residual arithmetic on long rows, caller's data kept.
    target = np.array(reference, dtype=np.float32, copy=True, order="C")
    if clip:
        np.clip(target, 0.0, 1.0, out=target)
    out5 = _blocks(out, scale)
    norm = np.float32(1.0 / (scale * scale))
    # Row chunks of ~2 MB of output: every round is one pass over the output, each chunk
    # updated, clipped and summed for the next residual while it is in cache, with small
    # temporaries (fresh full-size ones cost more in page faults than in arithmetic).
    step = max(1, _CHUNK_VALUES // (channels * scale * scale * width))
    chunks = [(a, min(a + step, height)) for a in range(0, height, step)]
    residual = np.empty_like(target)
    for a, b in chunks:
        residual[:, a:b] = _residual(out5[:, a:b], target[:, a:b], norm)
    for _ in range(smooth_steps):
        following = np.empty_like(residual)
        for a, b in chunks:
            # Block row i takes correction rows i - 1 .. i + 1, each from residual rows
            # one further: sharpen those rows only (cache-sized, no full-size temporary).
            g0, g1 = max(a - _SMOOTH_REACH, 0), min(b + _SMOOTH_REACH, height)
            correction = _sharpen(residual[:, g0:g1], SHARPEN)
            _add_smooth(out5[:, g0:g1], correction, scale, a - g0, b - g0)
            if clip:
                rows = out[:, scale * a : scale * b]
                np.clip(rows, 0.0, 1.0, out=rows)
            following[:, a:b] = _residual(out5[:, a:b], target[:, a:b], norm)
        residual = following
    if exact:
        for a, b in chunks:
            _add_nearest(out5[:, a:b], residual[:, a:b])
            low, high = _block_bounds(target, a, b, halo_reach, clip)
            if low is not None:
                _project_blocks(out5[:, a:b], target[:, a:b], low, high)
    return out


def _sharpen(values: np.ndarray, weight: float) -> np.ndarray:
    """``values`` (C, H, W) filtered by ``[-w, 1 + 2 w, -w]`` along H, then W; edges repeated.

    Float32, a fresh array. A pixel depends on its 3 x 3 neighbourhood only (one pixel of
    reach, counted in :data:`_SMOOTH_REACH`).
    """
    out = np.asarray(values, dtype=np.float32)
    for axis in (1, 2):
        out = _sharpen_axis(out, axis, np.float32(weight))
    return out


def _sharpen_axis(values: np.ndarray, axis: int, weight: np.float32) -> np.ndarray:
    at = lambda index: _along(axis, values.ndim, index)  # noqa: E731
    neighbours = np.empty_like(values)  # v[i - 1] + v[i + 1], the end samples repeated
    np.add(values[at(slice(None, -2))], values[at(slice(2, None))], out=neighbours[at(slice(1, -1))])
    np.add(values[at(slice(0, 1))], values[at(slice(1, 2))] if values.shape[axis] > 1
           else values[at(slice(0, 1))], out=neighbours[at(slice(0, 1))])
    if values.shape[axis] > 1:
        np.add(values[at(slice(-2, -1))], values[at(slice(-1, None))], out=neighbours[at(slice(-1, None))])
    neighbours *= -weight
    neighbours += values * (np.float32(1.0) + 2 * weight)
    return neighbours


def _block_bounds(
    target: np.ndarray, start: int, stop: int, halo_reach: int, clip: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Value bounds (C, stop - start, W) of the exact step for block rows ``[start, stop)``,
    or (None, None) for none.

    With ``halo_reach``: the min and max of ``target`` over a (2 r + 1)^2 window, so an
    output block never leaves the range of the input around it. That is what a halo or
    ringing is (an overshoot past both sides of an edge); a block's own input pixel is in
    its window, so the bounds always leave the exact solution. Else [0, 1] when clipping.
    """
    rows = target[:, start:stop]
    if halo_reach > 0:
        g0, g1 = max(start - halo_reach, 0), min(stop + halo_reach, target.shape[1])
        window = target[:, g0:g1]  # the rows with their reach of real rows
        cut = slice(start - g0, stop - g0)
        low = _window_extreme(_window_extreme(window, halo_reach, 1, np.minimum)[:, cut],
                              halo_reach, 2, np.minimum)
        high = _window_extreme(_window_extreme(window, halo_reach, 1, np.maximum)[:, cut],
                               halo_reach, 2, np.maximum)
        return low, high
    if clip:
        return np.zeros_like(rows), np.ones_like(rows)
    return None, None


def _window_extreme(values: np.ndarray, reach: int, axis: int, ufunc: np.ufunc) -> np.ndarray:
    """``ufunc`` (minimum or maximum) over a ``2 reach + 1`` window along ``axis``, edges
    replicated (scipy's ``mode="nearest"``). Windows of width 2, 4, 8, ... by doubling,
    then two overlapping ones cover the window: ~log2(width) + 1 passes over views, several
    times faster than ``scipy.ndimage.minimum_filter`` on these short windows.
    """
    width, ndim = 2 * reach + 1, values.ndim
    pad = [(0, 0)] * ndim
    pad[axis] = (reach, reach)
    span, extreme = 1, np.pad(values, pad, mode="edge")
    while 2 * span <= width:
        cut = extreme.shape[axis] - span
        head = extreme[_along(axis, ndim, slice(0, cut))]
        ufunc(head, extreme[_along(axis, ndim, slice(span, span + cut))], out=head)
        extreme, span = head, span * 2
    length = values.shape[axis]
    rest = width - span  # the second window starts where the first one's cover ends
    return ufunc(extreme[_along(axis, ndim, slice(0, length))],
                 extreme[_along(axis, ndim, slice(rest, rest + length))])


def _add_nearest(out5: np.ndarray, residual: np.ndarray) -> None:
    """``out5 += nearest_up(residual)``: each block gets its pixel of ``residual`` (C, H, W).

    The residual is widened to a row phase first, so the adds run over whole output rows
    (a broadcast over the short block axes would make numpy loop over 2 values at a time).
    """
    scale = out5.shape[2]
    wide = np.empty(residual.shape + (scale,), dtype=np.float32)
    for px in range(scale):
        wide[..., px] = residual
    for py in range(scale):
        out5[:, :, py] += wide


def _residual(out5: np.ndarray, target: np.ndarray, norm: np.float32) -> np.ndarray:
    """``target - block means of out5``, float32 (C, H, W)."""
    means = _block_sums(out5)
    means *= -norm
    means += target
    return means


def _project_blocks(
    out5: np.ndarray, target: np.ndarray, low: np.ndarray, high: np.ndarray
) -> None:
    """Clip each block of ``out5`` to its ``[low, high]`` in place, keeping its mean exact.

    For a block ``v`` of ``n`` values with target mean ``m`` in ``[lo, hi]``, the sum
    ``g(c) = sum clip(v + c, lo, hi)`` is continuous, non-decreasing and linear between the
    breakpoints ``lo - v_k`` and ``hi - v_k``, from ``n lo`` to ``n hi``: evaluating it at
    the sorted breakpoints and interpolating in the segment that crosses ``n * m`` gives
    the ``c`` with mean exactly ``m`` (the Euclidean projection onto "block mean = input,
    values in the bounds"). Only blocks with a value outside their bounds are touched,
    gathered and scattered through flat element indices (numpy's multi-array indexing of
    the 5-D view cost ~10x more).
    """
    scale = out5.shape[2]
    lowest = _reduce_phases(_reduce_phases(out5, 2, np.minimum), 3, np.minimum)
    highest = _reduce_phases(_reduce_phases(out5, 2, np.maximum), 3, np.maximum)
    c, i, j = np.nonzero((lowest < low) | (highest > high))
    if c.size == 0:
        return
    flat, elements = _flat_blocks(out5, c, i, j)
    goal, lo, hi = target[c, i, j], low[c, i, j], high[c, i, j]
    # Most such blocks sit in flat areas or at the extreme of their window: a mean equal
    # to a bound has one answer, every value at that bound.
    solved = np.repeat(goal[:, None], scale * scale, axis=1)
    rest = np.nonzero((goal > lo) & (goal < hi))[0]
    # In chunks: the solver's (n, 2*s*s, s*s) temporary stays small.
    for start in range(0, rest.size, _PROJECT_CHUNK):
        part = rest[start : start + _PROJECT_CHUNK]
        solved[part] = _solve_blocks(flat[elements[part]], goal[part] * np.float32(scale * scale),
                                     lo[part], hi[part])
    flat[elements] = solved


def _flat_blocks(
    out5: np.ndarray, c: np.ndarray, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D view over ``out5``'s memory and the (n, s*s) element indices of blocks (c, i, j).

    ``out5`` is a strided view (of rows of the engine's output): the 1-D view starts at its
    first element and ends at its last, so it covers only memory of the array it views.
    """
    item = out5.itemsize
    strides = [stride // item for stride in out5.strides]
    if any(stride < 0 for stride in strides) or any(stride * item != full
                                                   for stride, full in zip(strides, out5.strides)):
        raise ValueError("block view needs positive, item-aligned strides")
    span = 1 + sum((n - 1) * stride for n, stride in zip(out5.shape, strides))
    flat = np.lib.stride_tricks.as_strided(out5, shape=(span,), strides=(item,))
    sc, si, spy, sj, spx = strides
    scale = out5.shape[2]
    phases = (np.arange(scale)[:, None] * spy + np.arange(scale)[None, :] * spx).ravel()
    base = c.astype(np.int64) * sc + i.astype(np.int64) * si + j.astype(np.int64) * sj
    return flat, base[:, None] + phases[None, :]


def _solve_blocks(
    blocks: np.ndarray, goal: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """``clip(blocks + c, low, high)`` with a per-row ``c`` making each row sum to ``goal``.

    ``blocks`` float32 (n, k); ``low``, ``high`` (n,); ``goal`` (n,) in ``(k low, k high)``.
    See :func:`_project_blocks`.
    """
    lo, hi = low[:, None], high[:, None]
    breaks = np.sort(np.concatenate([lo - blocks, hi - blocks], axis=1), axis=1)  # (n, 2k)
    sums = np.clip(blocks[:, None, :] + breaks[:, :, None], lo[:, :, None], hi[:, :, None]).sum(axis=2)
    # First breakpoint where the sum reaches the goal (the last one reaches k high > goal).
    k = np.argmax(sums >= goal[:, None], axis=1)
    rows = np.arange(goal.size)
    before = np.maximum(k - 1, 0)
    hi_c, hi_g = breaks[rows, k], sums[rows, k]
    lo_c, lo_g = breaks[rows, before], sums[rows, before]
    # k > 0: lo_g < goal <= hi_g, a rising segment: interpolate in it. k == 0 cannot
    # happen for a goal above k low, but is kept safe.
    slope = (hi_c - lo_c) / np.maximum(hi_g - lo_g, np.float32(1e-30))
    shift = np.where(k > 0, lo_c + (goal - lo_g) * slope, hi_c).astype(np.float32)
    return np.clip(blocks + shift[:, None], lo, hi)
