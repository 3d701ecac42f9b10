"""Tiling: the plan's index maths, reflection, tiled == whole on real ONNX graphs, margins."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import uniform_filter

from nnip.core.errors import ModelIntegrityError
from nnip.core.tiling import (
    Region,
    Tile,
    align_up,
    gather,
    measure_margin,
    min_tile,
    plan_tiles,
    reflect_indices,
    run_tiled,
    run_whole,
)
from onnx_builders import BuiltNet, batch_fn, conv_net, global_mean_net, session_of

TOL = 1e-4


# --- Region and reflection -------------------------------------------------------------


def test_region_maths() -> None:
    core = Region(10, 20, 30, 50)
    assert core.shape == (20, 30)
    context = core.grow(3, 4, 5, 6)
    assert context == Region(7, 16, 35, 56)
    assert core.relative_to(context) == Region(3, 4, 23, 34)
    assert core.scaled(2) == Region(20, 40, 60, 100)
    assert context.contains(core) and not core.contains(context)
    assert np.arange(100).reshape(10, 10)[Region(2, 3, 4, 6).slices()].tolist() == [
        [23, 24, 25], [33, 34, 35]
    ]
    with pytest.raises(ValueError):
        Region(5, 0, 4, 1)


@pytest.mark.parametrize("length", [1, 2, 3, 7])
@pytest.mark.parametrize("pad", [0, 1, 5, 20])
def test_reflect_indices_equal_numpy_reflect_pad(length: int, pad: int) -> None:
    expected = np.pad(np.arange(length), pad, mode="reflect")
    assert reflect_indices(-pad, length + pad, length).tolist() == expected.tolist()


@given(st.integers(-50, 50), st.integers(1, 30), st.integers(2, 20))
def test_reflection_keeps_parity_and_stays_inside(start: int, span: int, length: int) -> None:
    idx = np.arange(start, start + span)
    folded = reflect_indices(start, start + span, length)
    assert folded.min() >= 0 and folded.max() < length
    assert np.array_equal(folded % 2, idx % 2)  # the CFA phase of a mosaic survives


def test_gather_matches_numpy_pad_and_copies(rng: np.random.Generator) -> None:
    image = rng.random((2, 5, 4), dtype=np.float32)
    padded = np.pad(image, ((0, 0), (9, 9), (9, 9)), mode="reflect")
    region = Region(-9, -7, 3, 12)
    window = gather(image, region)
    assert np.array_equal(window, padded[:, 0:12, 2:21])
    inside = gather(image, Region(1, 1, 3, 3))
    inside[:] = -1
    assert image.min() >= 0  # a copy, never a view the model could write through


# --- the plan ----------------------------------------------------------------------------


def _check_plan(tiles: list[Tile], h: int, w: int, tile: int, margin: int, align: int) -> None:
    cover = np.zeros((h, w), dtype=np.int32)
    pad = align_up(margin, align)
    for t in tiles:
        cover[t.core.slices()] += 1
        assert t.core.y0 % align == 0 and t.core.x0 % align == 0
        assert t.context.y0 % align == 0 and t.context.x0 % align == 0
        assert t.context.height % align == 0 and t.context.width % align == 0
        assert t.context.contains(t.core.grow(margin, margin, margin, margin))
        assert t.core.y0 - t.context.y0 == pad and t.core.x0 - t.context.x0 == pad
        assert t.context.height <= tile and t.context.width <= tile
    assert (cover == 1).all()  # the cores partition the image


@given(
    h=st.integers(1, 300), w=st.integers(1, 300), margin=st.integers(0, 12),
    align=st.sampled_from([1, 2, 4]), extra=st.integers(0, 200),
)
@settings(max_examples=200, deadline=None)
def test_plan_partitions_image_with_aligned_even_tiles(
    h: int, w: int, margin: int, align: int, extra: int
) -> None:
    tile = min_tile(margin, align) + extra
    tiles = plan_tiles(h, w, tile, margin, align)
    _check_plan(tiles, h, w, tile, margin, align)
    core_max = (tile - 2 * align_up(margin, align)) // align * align
    rows = len({t.core.y0 for t in tiles})
    assert rows == -(-align_up(h, align) // core_max)  # fewest tiles that fit
    # No thin leftover: core heights (in alignment units) differ by at most one unit.
    heights = [align_up(t.core.height, align) for t in tiles]
    assert max(heights) - min(heights) <= align


def test_plan_examples() -> None:
    # 1000 px, margin 10, tile 256 -> core <= 236 -> 5 tiles of 200, not 4 x 236 + 56.
    tiles = plan_tiles(1000, 1, 256, 10, 1)
    assert [(t.core.y0, t.core.y1) for t in tiles] == [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]
    assert tiles[0].context == Region(-10, -10, 210, 11)
    # An image that fits is one tile whose context is the whole padded image.
    assert plan_tiles(7, 13, 64, 3, 1) == [Tile(Region(0, 0, 7, 13), Region(-3, -3, 10, 16))]
    # align 2, odd size: the last context rounds up to an even size.
    last = plan_tiles(9, 4, 14, 3, 2)[-1]
    assert last.core == Region(6, 0, 9, 4) and last.context == Region(2, -4, 14, 8)


def test_plan_refuses_tiles_without_a_core() -> None:
    assert min_tile(9) == 19 and min_tile(3, 2) == 10 and min_tile(0) == 1
    with pytest.raises(ValueError, match="tile 18 is below the minimum 19"):
        plan_tiles(100, 100, 18, 9, 1)
    smallest = plan_tiles(3, 3, 19, 9, 1)  # the minimum tile: 1-pixel cores
    assert len(smallest) == 9 and {t.core.shape for t in smallest} == {(1, 1)}
    with pytest.raises(ValueError, match="empty"):
        plan_tiles(0, 5, 64, 1, 1)


# --- tiled == whole, on a numpy model over random geometry -------------------------------


def _numpy_model(radius: int, align: int, scale: int):
    """A real, cheap model of radius ``radius`` whose output depends on the phase mod align.

    Box blur with zero padding (as a conv's 'same' padding), times a gain that depends on
    the pixel's position modulo ``align`` in the window it is given: a window whose origin
    is off the align grid gives different numbers. Then nearest-neighbour ``scale``.
    """

    def run(arrays: list[np.ndarray]) -> np.ndarray:
        x = arrays[0].astype(np.float64)
        size = 2 * radius + 1
        y = uniform_filter(x, size=(1, 1, size, size), mode="constant")
        for extra in arrays[1:]:
            y = y + uniform_filter(extra.astype(np.float64), size=(1, 1, size, size), mode="constant").mean(axis=1, keepdims=True)
        h, w = x.shape[2:]
        gain = 1 + np.arange(h)[:, None] % align + 2 * (np.arange(w)[None, :] % align)
        y = y * gain
        return np.repeat(np.repeat(y, scale, axis=2), scale, axis=3).astype(np.float32)

    return run


@given(
    h=st.integers(1, 40), w=st.integers(1, 40), margin=st.integers(0, 6),
    align=st.sampled_from([1, 2, 3]), scale=st.sampled_from([1, 2]),
    extra=st.integers(0, 25), batch=st.integers(1, 3), cond=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_tiled_equals_whole_numpy_model(
    h: int, w: int, margin: int, align: int, scale: int, extra: int, batch: int, cond: bool
) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    inputs = [rng.random((2, h, w), dtype=np.float32)]
    if cond:
        inputs.append(rng.random((1, h, w), dtype=np.float32))
    model = _numpy_model(margin, align, scale)
    kw = dict(scale=scale, margin=margin, align=align, out_channels=2)
    whole = run_whole(model, inputs, **kw)
    tiled = run_tiled(model, inputs, tile=min_tile(margin, align) + extra, batch=batch, **kw)
    assert tiled.shape == (2, h * scale, w * scale) and tiled.dtype == np.float32
    assert np.abs(tiled - whole).max() <= TOL


@given(
    h=st.integers(1, 40), w=st.integers(1, 30), margin=st.integers(0, 6),
    align=st.sampled_from([1, 2, 3]), scale=st.sampled_from([1, 2]),
    extra=st.integers(0, 25), data=st.data(),
)
@settings(max_examples=150, deadline=None)
def test_rows_are_those_rows_of_the_whole_result(
    h: int, w: int, margin: int, align: int, scale: int, extra: int, data
) -> None:
    # A band with real context around it: its rows equal the whole image's, whatever
    # context it gets (the model's phase gain catches any misaligned window).
    top = data.draw(st.integers(0, (h - 1) // align)) * align
    bottom = data.draw(st.integers(top + 1, h))
    rng = np.random.default_rng(h * 1000 + w)
    inputs = [rng.random((2, h, w), dtype=np.float32)]
    model = _numpy_model(margin, align, scale)
    kw = dict(scale=scale, margin=margin, align=align, out_channels=2)
    whole = run_whole(model, inputs, **kw)
    band = run_tiled(model, inputs, tile=min_tile(margin, align) + extra, rows=(top, bottom), **kw)
    assert band.shape == (2, (bottom - top) * scale, w * scale)
    assert np.abs(band - whole[:, top * scale : bottom * scale]).max() <= TOL


def test_rows_cost_no_reflected_rows_inside_the_image(rng: np.random.Generator) -> None:
    seen: list[tuple[int, ...]] = []

    def model(arrays: list[np.ndarray]) -> np.ndarray:
        seen.append(arrays[0].shape)
        return arrays[0]

    image = [rng.random((1, 100, 30), dtype=np.float32)]
    kw = dict(scale=1, margin=5, align=1, out_channels=1, tile=40)
    band = run_tiled(model, image, rows=(5, 35), **kw)  # 5 real rows of context each side
    assert np.array_equal(band, image[0][:, 5:35])
    assert seen == [(1, 1, 40, 40)]  # one tile: 30 rows + 10 real context rows (columns reflect)
    for rows in [(3, 2), (0, 101), (-1, 4)]:
        with pytest.raises(ValueError, match="rows"):
            run_tiled(model, image, rows=rows, **kw)
    with pytest.raises(ValueError, match="align"):
        run_tiled(model, image, rows=(3, 9), **{**kw, "align": 2})


def test_a_margin_too_small_shows_seams(rng: np.random.Generator) -> None:
    image = [rng.random((1, 60, 60), dtype=np.float32)]
    model = _numpy_model(4, 1, 1)
    whole = run_whole(model, image, margin=4, out_channels=1)
    seamy = run_tiled(model, image, margin=3, out_channels=1, tile=20)
    assert np.abs(seamy - whole).max() > 1e-3


# --- tiled == whole, on real ONNX graphs -------------------------------------------------

NETS = {
    "plain": dict(layers=3),
    "scale2": dict(layers=2, scale=2),
    "cond": dict(layers=2, cond_channels=2),
    "align2": dict(layers=2, space_to_depth=2),
}


def _onnx_case(name: str):
    net = conv_net(**NETS[name], seed=len(name))
    run = batch_fn(session_of(net))
    kw = dict(scale=net.scale, margin=net.margin, align=net.align, out_channels=net.outputs[0][1])
    return net, run, kw


def _inputs(net: BuiltNet, h: int, w: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.random((c, h, w), dtype=np.float32) for _, c in net.inputs]


def _reference_by_numpy_pad(net: BuiltNet, run, inputs: list[np.ndarray]) -> np.ndarray:
    """Whole-image inference written independently of the tiler: np.pad, one run, crop."""
    pad, (h, w), s = align_up(net.margin, net.align), inputs[0].shape[1:], net.scale
    widths = ((0, 0), (pad, pad + align_up(h, net.align) - h), (pad, pad + align_up(w, net.align) - w))
    out = run([np.pad(a, widths, mode="reflect")[None] for a in inputs])[0]
    return out[:, pad * s : (pad + h) * s, pad * s : (pad + w) * s]


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("h, w", [(1, 1), (7, 13), (2, 3)])
def test_onnx_tiled_equals_whole_small_images(name: str, h: int, w: int, rng) -> None:
    net, run, kw = _onnx_case(name)
    inputs = _inputs(net, h, w, rng)
    whole = run_whole(run, inputs, **kw)
    assert np.abs(whole - _reference_by_numpy_pad(net, run, inputs)).max() <= TOL
    smallest = min_tile(net.margin, net.align)
    for tile in (smallest, smallest + 1, smallest + 5, 4096):
        for batch in (1, 4):
            tiled = run_tiled(run, inputs, tile=tile, batch=batch, **kw)
            assert tiled.shape == (kw["out_channels"], h * net.scale, w * net.scale)
            assert np.abs(tiled - whole).max() <= TOL, (tile, batch)


@pytest.mark.parametrize("name", list(NETS))
def test_onnx_tiled_equals_whole_1001x777(name: str, rng: np.random.Generator) -> None:
    net, run, kw = _onnx_case(name)
    inputs = _inputs(net, 1001, 777, rng)
    whole = run_whole(run, inputs, **kw)
    for tile in (min_tile(net.margin, net.align) + 40, 257, 512):
        tiled = run_tiled(run, inputs, tile=tile, batch=2, **kw)
        assert np.abs(tiled - whole).max() <= TOL, tile


def test_onnx_tiled_equals_whole_6000x4000_in_bounded_memory(rng: np.random.Generator) -> None:
    net = conv_net(1, 1, layers=1, seed=7)
    run = batch_fn(session_of(net, threads=2))
    image = [rng.random((1, 6000, 4000), dtype=np.float32)]
    whole = run_whole(run, image, margin=net.margin, out_channels=1)
    out_bytes = whole.nbytes
    del whole
    seen: list[tuple[int, ...]] = []

    def recording(arrays: list[np.ndarray]) -> np.ndarray:
        seen.append(arrays[0].shape)
        return run(arrays)

    tracemalloc.start()
    try:
        tiled = run_tiled(recording, image, margin=net.margin, out_channels=1, tile=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Output + a few tiles; a padded copy of the image would add another ~96 MB.
    assert peak < out_bytes + 32 * 2**20
    assert max(max(s[2:]) for s in seen) <= 1000 and len(seen) == 7 * 5
    whole = run_whole(run, image, margin=net.margin, out_channels=1)
    assert np.abs(tiled - whole).max() <= TOL
    del whole
    odd = run_tiled(run, image, margin=net.margin, out_channels=1, tile=777, batch=4)
    assert np.array_equal(odd, tiled) or np.abs(odd - tiled).max() <= TOL


def test_wrong_alignment_would_show_in_the_output(rng: np.random.Generator) -> None:
    net, run, kw = _onnx_case("align2")
    inputs = _inputs(net, 64, 64, rng)
    whole = run_whole(run, inputs, **kw)
    # align 1 puts even-sized contexts at odd origins: the block phase flips.
    misaligned = run_tiled(run, inputs, tile=30, **{**kw, "align": 1})
    assert np.abs(misaligned - whole).max() > 1e-2


def test_batches_progress_and_output_shape_check(rng: np.random.Generator) -> None:
    net, run, kw = _onnx_case("scale2")
    inputs = _inputs(net, 50, 40, rng)
    calls: list[int] = []
    ticks: list[tuple[int, int]] = []

    def counting(arrays: list[np.ndarray]) -> np.ndarray:
        calls.append(arrays[0].shape[0])
        return run(arrays)

    out = run_tiled(counting, inputs, tile=24, batch=3, progress=lambda d, t: ticks.append((d, t)), **kw)
    total = len(plan_tiles(50, 40, 24, net.margin, 1))
    assert sum(calls) == total and max(calls) == 3
    assert ticks == [(i, total) for i in range(1, total + 1)]
    assert np.abs(out - run_whole(run, inputs, **kw)).max() <= TOL
    with pytest.raises(ModelIntegrityError, match="spec implies"):
        run_tiled(run, inputs, tile=24, **{**kw, "scale": 1})


def test_inputs_must_be_chw_of_one_size(rng: np.random.Generator) -> None:
    run = _numpy_model(1, 1, 1)
    with pytest.raises(ValueError, match="share H and W"):
        run_tiled(run, [np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 5), np.float32)], out_channels=1, tile=8)
    with pytest.raises(ValueError, match="CHW"):
        run_tiled(run, [np.zeros((4, 4), np.float32)], out_channels=1, tile=8)


# --- measuring the margin ----------------------------------------------------------------


def _single(net: BuiltNet):
    session = session_of(net)
    names = [n for n, _ in net.inputs]
    return lambda x: session.run(None, dict(zip(names, x if isinstance(x, list) else [x])))[0]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(layers=1), dict(layers=3), dict(layers=2, kernel=5), dict(layers=2, scale=2),
        dict(layers=2, space_to_depth=2), dict(layers=3, space_to_depth=2, scale=2),
    ],
)
def test_measure_margin_finds_the_known_receptive_field(kwargs: dict) -> None:
    net = conv_net(**kwargs)
    margin = measure_margin(_single(net), 3, scale=net.scale, align=net.align)
    assert margin == net.margin


def test_measure_margin_with_conditioning_input_and_growing_probe() -> None:
    net = conv_net(cond_channels=2, layers=2)
    assert measure_margin(_single(net), [3, 2]) == net.margin == 2
    seen: list[type] = []
    plain = conv_net(layers=1)
    run = _single(plain)
    as_given = lambda x: (seen.append(type(x)), run(x))[1]
    assert measure_margin(as_given, [3]) == 1 and set(seen) == {list}  # a sequence: a list
    deep = conv_net(1, 1, layers=10, kernel=7, width=4)  # radius 30: a 32 probe is too small
    assert measure_margin(_single(deep), 1, size=32) == deep.margin == 30


def test_measure_margin_refuses_a_global_operation() -> None:
    with pytest.raises(ValueError, match="global operation"):
        measure_margin(_single(global_mean_net()), 1, size=16, max_size=64)


class _RampSource:
    """A TileSource: plane 0 = row index, plane 1 = column index squared; counts its calls."""

    def __init__(self, height: int, width: int) -> None:
        self.shape = (2, height, width)
        self.calls: list[tuple[int, int, int, int]] = []

    def region(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        self.calls.append((top, left, height, width))
        rows = np.arange(top, top + height, dtype=np.float32)[:, None]
        cols = np.arange(left, left + width, dtype=np.float32)[None, :]
        return np.stack([np.broadcast_to(rows, (height, width)),
                         np.broadcast_to(cols**2, (height, width))]).astype(np.float32)

    def whole(self) -> np.ndarray:
        return self.region(0, 0, self.shape[1], self.shape[2])


@pytest.mark.parametrize("region", [Region(3, 4, 13, 16), Region(-5, -3, 4, 37), Region(20, 30, 34, 39)])
def test_gather_from_a_tile_source_equals_gather_from_its_array(region: Region) -> None:
    source = _RampSource(25, 33)
    assert np.array_equal(gather(source, region), gather(source.whole(), region))


def test_run_tiled_takes_a_tile_source_and_never_makes_it_whole(rng: np.random.Generator) -> None:
    # A conditioning map given as a TileSource: same result as the array, made per tile.
    height, width = 61, 47
    image = rng.random((2, height, width), dtype=np.float32)
    source = _RampSource(height, width)
    model = _numpy_model(3, 1, 2)
    kw = dict(scale=2, margin=3, align=1, out_channels=2, tile=20)
    lazy = run_tiled(model, [image, source], **kw)
    eager = run_tiled(model, [image, source.whole()], **kw)
    assert np.array_equal(lazy, eager)
    assert max(h * w for _, _, h, w in source.calls[:-1]) <= 20 * 20  # tiles, not the image
