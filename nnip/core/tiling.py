"""Run a fully convolutional model over an image of any size, tile by tile, without seams.

The reference is whole-image inference on the image padded by reflection (numpy's
``reflect``: mirror about the edge sample, which is not repeated) by the model's margin,
then cropped. Tiling reproduces it exactly (to float rounding) because every tile gets a
context window of at least ``margin`` pixels on each side, gathered with the same reflected
indexing, and only the tile's valid centre (its *core*) is kept. No blending is needed: the
overlap covers the receptive field, so there is nothing to hide.

Three numbers from the model's spec drive everything:

``margin``
    receptive-field radius in input pixels (an output pixel depends on input pixels at most
    ``margin`` away), measured with :func:`measure_margin` at export.
``align``
    tile origins and core sizes are multiples of it (2 on a Bayer mosaic so the CFA phase
    is kept; the total stride of a network that downsamples inside). Numpy's ``reflect``
    keeps index parity, so a reflected border never changes the CFA phase either.
``scale``
    output pixels per input pixel along each axis; a tile's core ``[y0, y1)`` lands at
    ``[y0 * scale, y1 * scale)`` in the output.

Memory stays bounded to input + output + ``batch`` tiles: context windows are gathered
straight from the input with reflected index arrays, the whole image is never padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from nnip.core.background import Background
from nnip.core.errors import ModelIntegrityError

__all__ = [
    "TileSource",
    "Region",
    "Tile",
    "BatchFn",
    "ProgressFn",
    "align_up",
    "min_tile",
    "reflect_indices",
    "gather",
    "plan_tiles",
    "run_tiled",
    "run_whole",
    "measure_margin",
]

#: ``run_batch_fn``: one NCHW float32 array per model input (same N, H, W) -> the first
#: output, NCHW float32 of shape (N, C_out, H * scale, W * scale).
BatchFn = Callable[[list[np.ndarray]], np.ndarray]
#: ``progress(done, total)``, called after each tile.
ProgressFn = Callable[[int, int], None]


def align_up(value: int, align: int) -> int:
    """Smallest multiple of ``align`` that is >= ``value`` (``align`` >= 1)."""
    return -(-value // align) * align


@dataclass(frozen=True)
class Region:
    """A half-open rectangle ``[y0, y1) x [x0, x1)`` in pixel coordinates.

    Coordinates may be negative or beyond the image: a context region reaches past the
    border, and those pixels are filled by reflection.
    """

    y0: int
    x0: int
    y1: int
    x1: int

    def __post_init__(self) -> None:
        if self.y1 < self.y0 or self.x1 < self.x0:
            raise ValueError(f"empty-inverted region {self}")

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def shifted(self, rows: int) -> "Region":
        """This region moved down by ``rows`` (up where negative)."""
        return Region(self.y0 + rows, self.x0, self.y1 + rows, self.x1)

    def grow(self, top: int, left: int, bottom: int, right: int) -> "Region":
        """This region with each side moved outwards by the given number of pixels."""
        return Region(self.y0 - top, self.x0 - left, self.y1 + bottom, self.x1 + right)

    def scaled(self, factor: int) -> "Region":
        """The same rectangle in a grid ``factor`` times finer (output coordinates)."""
        return Region(self.y0 * factor, self.x0 * factor, self.y1 * factor, self.x1 * factor)

    def relative_to(self, origin: "Region") -> "Region":
        """This region in the coordinates of ``origin``'s top-left corner."""
        return Region(
            self.y0 - origin.y0, self.x0 - origin.x0, self.y1 - origin.y0, self.x1 - origin.x0
        )

    def contains(self, other: "Region") -> bool:
        return (
            self.y0 <= other.y0 and self.x0 <= other.x0
            and other.y1 <= self.y1 and other.x1 <= self.x1
        )

    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices; valid only for a region inside the array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


@dataclass(frozen=True)
class Tile:
    """One tile: the ``core`` it is responsible for and the ``context`` the model sees.

    Both are in input pixels. ``context`` contains ``core`` with at least ``margin``
    pixels on each side (``margin`` rounded up to ``align``; the far side also rounded so
    the context size is a multiple of ``align``) and may extend past the image.
    """

    core: Region
    context: Region


def min_tile(margin: int, align: int = 1) -> int:
    """Smallest ``tile`` that leaves a core: ``2 * margin + 1`` when ``align`` is 1."""
    return 2 * align_up(margin, align) + align


def _axis_cores(length: int, core_max: int, align: int) -> list[tuple[int, int]]:
    """Split ``[0, length)`` into near-equal cores of at most ``core_max`` pixels.

    The count comes first, then the sizes (in units of ``align``, differing by at most one
    unit): no thin leftover tile at the far edge. Only the last core may end off the
    ``align`` grid, at ``length``.
    """
    units = -(-length // align)
    units_max = core_max // align
    count = -(-units // units_max)
    base, extra = divmod(units, count)
    cores, start = [], 0
    for i in range(count):
        stop = start + (base + (i < extra)) * align
        cores.append((start, min(stop, length)))
        start = stop
    return cores


def plan_tiles(height: int, width: int, tile: int, margin: int, align: int = 1) -> list[Tile]:
    """Cover a ``height x width`` image with tiles whose context is at most ``tile`` square.

    Parameters
    ----------
    height, width : int
        Image size in input pixels, >= 1.
    tile : int
        Largest context window edge, in input pixels, at least :func:`min_tile`. The core
        edge is at most ``tile - 2 * align_up(margin, align)``, rounded down to ``align``.
        An image that fits gets one tile.
    margin : int
        Receptive-field radius of the model in input pixels, >= 0.
    align : int
        Core origins and sizes (but for the last core of each axis, which ends at the
        image edge) and context origins and sizes are multiples of ``align``.

    Returns
    -------
    list of Tile
        Row-major; the cores partition the image exactly.
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty {height}x{width} image")
    if margin < 0 or align < 1:
        raise ValueError(f"margin {margin} must be >= 0 and align {align} >= 1")
    if tile < min_tile(margin, align):
        raise ValueError(
            f"tile {tile} is below the minimum {min_tile(margin, align)} "
            f"for margin {margin}, align {align}"
        )
    pad = align_up(margin, align)
    core_max = (tile - 2 * pad) // align * align
    tiles = []
    for y0, y1 in _axis_cores(height, core_max, align):
        for x0, x1 in _axis_cores(width, core_max, align):
            core = Region(y0, x0, y1, x1)
            context = core.grow(
                pad, pad, align_up(y1, align) - y1 + pad, align_up(x1, align) - x1 + pad
            )
            tiles.append(Tile(core, context))
    return tiles


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indices ``start .. stop - 1`` folded into ``[0, length)`` by reflection.

    Numpy's ``reflect`` rule (``-1 -> 1``, ``length -> length - 2``) applied as often as
    needed, so any padding width works, even wider than the image; a 1-pixel axis maps
    everything to 0. Reflection keeps index parity, hence the CFA phase of a mosaic.

    Returns
    -------
    ndarray, intp, shape (stop - start,)
    """
    idx = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(idx)
    period = 2 * (length - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= length, period - idx, idx)


@runtime_checkable
class TileSource(Protocol):
    """An input made where a tile needs it instead of held whole: a conditioning map that
    is a function of the pixel position (the lens model's optics planes: 4 float32 planes,
    384 MB on 24 MP) passes as one of these wherever an input array may.

    ``shape`` is (C, H, W); ``region(top, left, height, width)`` returns float32
    (C, height, width) for a rectangle inside the image, equal to the same pixels of the
    whole map. :func:`gather` reflects at the borders as it does for arrays.
    """

    shape: tuple[int, int, int]

    def region(self, top: int, left: int, height: int, width: int) -> np.ndarray: ...


def gather(image: np.ndarray | TileSource, region: Region) -> np.ndarray:
    """The pixels of ``region`` from a CHW ``image`` (or :class:`TileSource`), reflected
    where outside it.

    Returns
    -------
    ndarray, float32, shape (C, region.height, region.width), C-contiguous; a copy.
    """
    _, height, width = image.shape
    if Region(0, 0, height, width).contains(region):
        return np.ascontiguousarray(_window(image, region.y0, region.y1, region.x0, region.x1),
                                    dtype=np.float32)
    rows = reflect_indices(region.y0, region.y1, height)
    cols = reflect_indices(region.x0, region.x1, width)
    # Take from the bounding window of the reflected indices (a view), one axis at a
    # time: the intermediate is tile-sized, never a full-width strip of the image.
    r0, c0 = int(rows.min()), int(cols.min())
    window = _window(image, r0, int(rows.max()) + 1, c0, int(cols.max()) + 1)
    out = np.take(np.take(window, rows - r0, axis=1), cols - c0, axis=2)
    return np.ascontiguousarray(out, dtype=np.float32)


def _window(image: np.ndarray | TileSource, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Rows ``y0:y1`` and columns ``x0:x1`` (inside the image): a view, or a made region."""
    if isinstance(image, TileSource):
        return image.region(y0, x0, y1 - y0, x1 - x0)
    return image[:, y0:y1, x0:x1]


def _check_inputs(inputs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int, int]:
    if not inputs:
        raise ValueError("need at least one input array")
    arrays = [a if isinstance(a, TileSource) else np.asarray(a)
              for a in inputs]
    if any(len(a.shape) != 3 for a in arrays):
        raise ValueError(f"inputs must be CHW, got shapes {[a.shape for a in arrays]}")
    sizes = {a.shape[1:] for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"inputs must share H and W, got shapes {[a.shape for a in arrays]}")
    height, width = arrays[0].shape[1:]
    return arrays, height, width


def _run_checked(run_batch_fn: BatchFn, batch: list[np.ndarray], expected: tuple) -> np.ndarray:
    out = np.asarray(run_batch_fn(batch))
    if out.shape != expected:
        # The model does not do what its spec says (scale, channels): a model problem.
        raise ModelIntegrityError(
            f"model output has shape {out.shape} for input {batch[0].shape}, "
            f"its spec implies {expected}"
        )
    return out


def _groups(tiles: list[Tile], batch: int) -> Iterator[list[Tile]]:
    """Tiles grouped by context shape (so they stack), at most ``batch`` per group."""
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        by_shape.setdefault(t.context.shape, []).append(t)
    for same in by_shape.values():
        for i in range(0, len(same), batch):
            yield same[i : i + batch]


def run_tiled(
    run_batch_fn: BatchFn,
    inputs: Sequence[np.ndarray],
    *,
    scale: int = 1,
    margin: int = 0,
    align: int = 1,
    out_channels: int,
    tile: int,
    batch: int = 1,
    progress: ProgressFn | None = None,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Run a model over images of any size, tile by tile; equals :func:`run_whole`.

    Parameters
    ----------
    run_batch_fn : callable
        ``list[ndarray (N, C_i, h, w)] -> ndarray (N, out_channels, h * scale, w * scale)``,
        float32, one array per model input in the model's input order.
    inputs : sequence of ndarray, float32, shape (C_i, H, W), or ``TileSource``
        The model's inputs, all with the same H and W; values and transfer function are
        whatever the model expects (passed through untouched).
    scale, margin, align : int
        From the model's spec (see the module docstring).
    out_channels : int
        Channels of the model's output.
    tile : int
        Largest context window edge in input pixels, >= ``min_tile(margin, align)``.
    batch : int
        Same-shaped tiles per ``run_batch_fn`` call.
    progress : callable, optional
        ``progress(done, total)`` after each tile.
    rows : (top, bottom), optional
        Compute only input rows ``[top, bottom)``; the rows above and below are context
        for them, used as they are (reflection only beyond the inputs' own edges). A
        horizontal band of a larger image, passed with ``margin`` rows of its neighbours on
        each side, then costs no reflected rows: the result equals those rows of the whole
        image's. ``top`` must be a multiple of ``align``. None: all rows.

    Returns
    -------
    ndarray, float32, shape (out_channels, (bottom - top) * scale, W * scale)
        Not clipped: the model's output range as it comes.
    """
    arrays, height, width = _check_inputs(inputs)
    top, bottom = _output_rows(rows, height, align)
    # Tiles planned over the rows asked for, then placed at them in the inputs: a
    # context reaching above ``top`` or below ``bottom`` takes the real rows there.
    tiles = [Tile(t.core.shifted(top), t.context.shifted(top))
             for t in plan_tiles(bottom - top, width, tile, margin, align)]
    out = np.empty((out_channels, (bottom - top) * scale, width * scale), dtype=np.float32)
    done = 0

    def gathered(group: list[Tile]) -> list[np.ndarray]:
        # One tile (the CPU default) needs no stacking copy: gather's array seen as a batch.
        return [gather(a, group[0].context)[None] if len(group) == 1
                else np.stack([gather(a, t.context) for t in group]) for a in arrays]

    groups = list(_groups(tiles, max(1, batch)))
    # The next group's inputs are gathered (copied, or made by a TileSource) on a helper
    # thread while the model runs on this one: the network does not wait for them.
    upcoming = Background(gathered, groups[0], name="nnip-gather") if groups else None
    for index, group in enumerate(groups):
        assert upcoming is not None
        stacked = upcoming.result()
        upcoming = (Background(gathered, groups[index + 1], name="nnip-gather")
                    if index + 1 < len(groups) else None)
        ctx_h, ctx_w = group[0].context.shape
        expected = (len(group), out_channels, ctx_h * scale, ctx_w * scale)
        result = _run_checked(run_batch_fn, stacked, expected)
        del stacked
        for t, tile_out in zip(group, result):
            core_rows, core_cols = t.core.relative_to(t.context).scaled(scale).slices()
            out_rows, out_cols = t.core.shifted(-top).scaled(scale).slices()
            out[:, out_rows, out_cols] = tile_out[:, core_rows, core_cols]
            done += 1
            if progress is not None:
                progress(done, len(tiles))
    return out


def _output_rows(rows: tuple[int, int] | None, height: int, align: int) -> tuple[int, int]:
    """``rows`` checked against the inputs' ``height`` (None: all of them)."""
    if rows is None:
        return 0, height
    top, bottom = (int(v) for v in rows)
    if not 0 <= top < bottom <= height:
        raise ValueError(f"rows {rows} are not a non-empty range inside {height} rows")
    if top % align:
        raise ValueError(f"rows start {top} is not a multiple of align {align}")
    return top, bottom


def run_whole(
    run_batch_fn: BatchFn,
    inputs: Sequence[np.ndarray],
    *,
    scale: int = 1,
    margin: int = 0,
    align: int = 1,
    out_channels: int,
) -> np.ndarray:
    """The reference: one model run on the whole image reflect-padded by the margin.

    Padding is ``align_up(margin, align)`` on every side, plus enough at the bottom and
    right to make the padded size a multiple of ``align``; the output is cropped back to
    ``(out_channels, H * scale, W * scale)``. Arguments as in :func:`run_tiled`. Memory:
    the whole padded image and every activation of the model at once.
    """
    arrays, height, width = _check_inputs(inputs)
    pad = align_up(margin, align)
    image = Region(0, 0, height, width)
    context = image.grow(
        pad, pad, align_up(height, align) - height + pad, align_up(width, align) - width + pad
    )
    padded = [gather(a, context)[None] for a in arrays]
    expected = (1, out_channels, context.height * scale, context.width * scale)
    result = _run_checked(run_batch_fn, padded, expected)[0]
    rows, cols = image.relative_to(context).scaled(scale).slices()
    return np.ascontiguousarray(result[:, rows, cols])


def _impulse_reach(
    run_fn: Callable, bases: list[np.ndarray], as_list: bool, scale: int, y: int, x: int
) -> int:
    """Largest input-pixel distance from (y, x) of an output pixel an impulse there moves."""
    single = not as_list
    before = np.asarray(run_fn(bases[0] if single else bases))
    kicked = [b.copy() for b in bases]
    for k in kicked:
        k[:, :, y, x] += 1.0
    after = np.asarray(run_fn(kicked[0] if single else kicked))
    # Exact comparison on purpose: float noise can only make the margin larger (safe),
    # a tolerance could make it smaller (seams).
    rows, cols = np.nonzero(np.any(after != before, axis=(0, 1)))
    if rows.size == 0:
        return 0
    return int(max(np.abs(rows // scale - y).max(), np.abs(cols // scale - x).max()))


def measure_margin(
    run_fn: Callable,
    channels: int | Sequence[int],
    scale: int = 1,
    size: int = 64,
    *,
    align: int = 1,
    trials: int = 2,
    max_size: int = 1024,
    seed: int = 0,
) -> int:
    """Receptive-field radius of a model, in input pixels, from its impulse response.

    A random image (uniform in [0, 1)) is run with and without a +1 impulse (in every
    channel of every input) at the centre, for each of the ``align x align`` phases and
    ``trials`` random images (so dead ReLUs cannot hide a path); the margin is the largest
    distance, in input pixels, from the impulse to an output pixel that changed (output
    pixel ``oy`` belongs to input pixel ``oy // scale``). If the response reaches the probe
    border the probe is doubled, up to ``max_size``.

    Parameters
    ----------
    run_fn : callable
        With an int ``channels``: ``ndarray (1, C, S, S) -> ndarray (1, C_out, S*scale,
        S*scale)``. With a sequence (even of one): takes a list of such arrays, one per
        input.
        For an onnxruntime session: ``lambda x: session.run(None, {"image": x})[0]``.
    channels : int or sequence of int
        Channels of the (each) input.
    scale : int
        Output pixels per input pixel.
    size : int
        First probe edge in pixels (rounded up to ``align``).

    Returns
    -------
    int
        The margin to write in the manifest.

    Raises
    ------
    ValueError
        The response still reaches the border of a ``max_size`` probe: a global
        operation (pooling over the image, attention, normalisation) or a huge field.
    """
    as_list = not isinstance(channels, int)
    counts = list(channels) if as_list else [channels]
    rng = np.random.default_rng(seed)
    size = align_up(max(size, 3), align)
    while size <= max_size:
        centre = align_up(size // 2, align)
        reach = 0
        for _ in range(trials):
            bases = [rng.random((1, c, size, size), dtype=np.float32) for c in counts]
            for dy in range(align):
                for dx in range(align):
                    reach = max(
                        reach, _impulse_reach(run_fn, bases, as_list, scale, centre + dy, centre + dx)
                    )
        # The impulse sits at most `centre + align - 1`; the nearest border is this far away.
        if reach < min(centre, size - centre - align):
            return reach
        size = align_up(size * 2, align)
    raise ValueError(
        f"receptive field reaches the border of a {max_size}-pixel probe "
        "(global operation in the model?)"
    )
