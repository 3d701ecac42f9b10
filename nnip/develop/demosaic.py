"""Demosaicking: colour-filter mosaic -> linear camera RGB at full resolution.

Three ways, one contract (input: the normalised mosaic, black subtracted, 1 = white level,
not white balanced; output: float32 (H, W, 3) linear camera RGB on the same scale, not
white balanced, not clipped above):

* ``bilinear_bayer``: pure numpy, for mosaics that did not come from a file (synthetic
  frames, tests) and as the reference the others are checked against.
* ``libraw_demosaic``: LibRaw's ahd, dcb, vng, ppg or bilinear. The file is reopened and the
  pipeline's own normalised mosaic is written back into LibRaw's raw buffer (so whatever
  earlier stages did to it counts), with black 0 and saturation 65535. LibRaw white balances
  *before* it interpolates, and its direction-sensing methods (AHD, DCB) need balanced data
  to work well; so it is given the ``balance`` multipliers (the camera's as-shot ones), with
  highlight mode "unclip" (LibRaw scales every channel by at most 1: nothing clips), and its
  output is divided by the same multipliers. White balance thus stays exactly the pipeline's
  own white-balance stage's business.
* ``nn_demosaic``: the registry's ``demosaic`` model through the engine, on the packed
  mosaic (4 channels R, G1, G2, B at half resolution). Every Bayer phase is first made RGGB
  by reflect-padding one row and/or column at the top/left (a reflection by one pixel keeps
  the colour-filter phase consistent, unlike a flip of an odd-sized image), and the padding
  is cropped from the output: one model serves all four phases, and no pixel is lost. The
  model sees balanced data too (the simulator trains it on balanced mosaics), clipped to its
  input range.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nnip.core.errors import ModelError, RawDecodeError
from nnip.core.parallel import for_each_strip
from nnip.develop.colour import decode_transfer, encode_transfer

if TYPE_CHECKING:
    from nnip.core.engine import Engine
    from nnip.core.models import ModelSpec

__all__ = [
    "LIBRAW_METHODS",
    "DEMOSAIC_METHODS",
    "bayer_masks",
    "bilinear_bayer",
    "to_rggb_phase",
    "pack_rggb",
    "libraw_demosaic",
    "nn_demosaic",
]

#: LibRaw's classical demosaickers by ``--demosaic`` name.
LIBRAW_METHODS = ("ahd", "dcb", "vng", "ppg", "bilinear")
#: Every ``--demosaic`` value.
DEMOSAIC_METHODS = ("nn",) + LIBRAW_METHODS

_CHANNEL_OF_LETTER = {"R": 0, "G": 1, "B": 2}


def _check_pattern(pattern: str) -> None:
    if pattern not in ("RGGB", "BGGR", "GRBG", "GBRG"):
        raise ValueError(f"Bayer pattern {pattern!r} is not one of RGGB, BGGR, GRBG, GBRG")


def bayer_masks(shape: Sequence[int], pattern: str) -> np.ndarray:
    """Boolean (3, H, W) masks of the R, G and B sites of a Bayer mosaic.

    ``pattern`` is the row-major 2x2 cell at (0, 0): RGGB, BGGR, GRBG or GBRG.
    """
    _check_pattern(pattern)
    height, width = int(shape[0]), int(shape[1])
    masks = np.zeros((3, height, width), dtype=bool)
    for index, letter in enumerate(pattern):
        dy, dx = divmod(index, 2)
        masks[_CHANNEL_OF_LETTER[letter], dy::2, dx::2] = True
    return masks


def _box3(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3 correlation with zero padding (numpy only: scipy is not an inference dependency)."""
    padded = np.pad(array, 1)
    out = np.zeros_like(array)
    height, width = array.shape
    for dy in range(3):
        for dx in range(3):
            weight = kernel[dy, dx]
            if weight:
                out += weight * padded[dy:dy + height, dx:dx + width]
    return out


_KERNEL_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32)
_KERNEL_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32)


def bilinear_bayer(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """Bilinear demosaic of a Bayer mosaic, pure numpy.

    Parameters
    ----------
    mosaic : ndarray, float32, shape (H, W)
        Linear mosaic, any scale. Not clipped.
    pattern : str
        Bayer phase at (0, 0).

    Returns
    -------
    ndarray, float32, shape (H, W, 3)
        Linear RGB, same scale; measured sites keep their exact value. Borders use
        normalised convolution (the average of the neighbours that exist), so there is no
        padding artefact.
    """
    mosaic = np.asarray(mosaic, dtype=np.float32)
    masks = bayer_masks(mosaic.shape, pattern)
    out = np.empty(mosaic.shape + (3,), dtype=np.float32)
    for channel, kernel in ((0, _KERNEL_RB), (1, _KERNEL_G), (2, _KERNEL_RB)):
        known = masks[channel].astype(np.float32)
        weights = _box3(known, kernel)
        out[..., channel] = _box3(mosaic * known, kernel) / np.maximum(weights, 1e-12)
    return out


def to_rggb_phase(mosaic: np.ndarray, pattern: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Reflect-pad a Bayer mosaic so that it starts with R at (0, 0) and has even sides.

    Returns
    -------
    padded : ndarray, shape (H', W'), H' and W' even, phase RGGB
    crop : (top, left, height, width)
        Where the original lies in ``padded`` (and in any full-resolution output of it).
    """
    _check_pattern(pattern)
    red = pattern.index("R")
    top, left = divmod(red, 2)  # reflecting one row/column shifts the phase by one
    height, width = mosaic.shape
    bottom = (top + height) % 2
    right = (left + width) % 2
    padded = np.pad(mosaic, ((top, bottom), (left, right)), mode="reflect")
    return padded, (top, left, height, width)


def pack_rggb(mosaic: np.ndarray) -> np.ndarray:
    """(H, W) RGGB mosaic with even sides -> (4, H/2, W/2) planes R, G1 (R rows), G2, B."""
    return np.stack([mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2],
                     mosaic[1::2, 1::2]]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- LibRaw


def libraw_demosaic(
    path: Path, mosaic: np.ndarray, method: str, balance: Sequence[float]
) -> np.ndarray:
    """Demosaic with LibRaw's ``method`` the pipeline's normalised ``mosaic`` of ``path``.

    Parameters
    ----------
    path : Path
        The RAW file the mosaic came from (LibRaw needs its own context for the geometry).
    mosaic : ndarray, float32, shape (H, W) or (H, W, C)
        Normalised mosaic, exactly the shape of rawpy's ``raw_image_visible``. Clipped to
        [0, 1] on the way in (LibRaw holds 16-bit integers).
    method : str
        One of :data:`LIBRAW_METHODS` (X-Trans files get LibRaw's X-Trans method).
    balance : 3 floats
        White-balance multipliers LibRaw interpolates with; divided out of the result.

    Returns
    -------
    ndarray, float32, shape (H, W, 3)
        Linear camera RGB, not white balanced, 1 = white level.
    """
    import rawpy

    from nnip.raw.frame import open_libraw

    algorithms = {
        "ahd": rawpy.DemosaicAlgorithm.AHD,
        "dcb": rawpy.DemosaicAlgorithm.DCB,
        "vng": rawpy.DemosaicAlgorithm.VNG,
        "ppg": rawpy.DemosaicAlgorithm.PPG,
        "bilinear": rawpy.DemosaicAlgorithm.LINEAR,
    }
    if method not in algorithms:
        raise ValueError(f"demosaic method {method!r} is not one of {', '.join(LIBRAW_METHODS)}")
    wb = np.asarray(balance, dtype=np.float64).reshape(3)
    try:
        with open_libraw(path) as raw:
            target = raw.raw_image_visible
            if target.shape != mosaic.shape:
                raise ValueError(
                    f"mosaic shape {mosaic.shape} does not match the file's {target.shape}"
                )
            target[...] = np.round(np.clip(mosaic, 0.0, 1.0) * 65535.0).astype(np.uint16)
            rgb = raw.postprocess(
                demosaic_algorithm=algorithms[method],
                output_color=rawpy.ColorSpace.raw,
                gamma=(1, 1),
                no_auto_bright=True,
                user_flip=0,
                half_size=False,
                output_bps=16,
                use_camera_wb=False,
                use_auto_wb=False,
                user_wb=[float(wb[0]), float(wb[1]), float(wb[2]), float(wb[1])],
                user_black=0,
                user_cblack=[0, 0, 0, 0],
                user_sat=65535,
                highlight_mode=rawpy.HighlightMode.Ignore,  # unclip: scale by <= 1, no clip
                adjust_maximum_thr=0.0,
                median_filter_passes=0,
            )
    except (rawpy.LibRawError, rawpy.NotSupportedError) as exc:
        raise RawDecodeError(f"LibRaw could not demosaic this file ({exc})") from None
    # LibRaw scaled channel c by wb[c] / max(wb); undo exactly.
    return (rgb.astype(np.float32) / 65535.0) * (wb.max() / wb).astype(np.float32)


# --------------------------------------------------------------------------- network


def nn_demosaic(
    mosaic: np.ndarray,
    pattern: str,
    balance: Sequence[float],
    engine: "Engine",
    spec: "ModelSpec",
    *,
    tile: int | None = None,
) -> np.ndarray:
    """Demosaic a Bayer mosaic with the network ``spec`` (task ``demosaic``).

    Parameters
    ----------
    mosaic : ndarray, float32, shape (H, W)
        Normalised mosaic, not white balanced.
    pattern : str
        Bayer phase at (0, 0).
    balance : 3 floats
        Multipliers applied before the network and divided out after (see module notes).
    engine, spec
        The engine running ``spec``: one input of layout ``bayer_packed`` (4 channels), one
        output of 3 channels at twice the packed resolution.
    tile : int, optional
        Engine tile size.

    Returns
    -------
    ndarray, float32, shape (H, W, 3)
        Linear camera RGB, not white balanced.
    """
    _check_model(spec)
    wb = np.asarray(balance, dtype=np.float32).reshape(3)
    out_spec = spec.outputs[0]
    # Memory matters at 24+ megapixels (one full RGB copy is 288 MB): every step below
    # works in place or lets go of what it no longer needs before the next copy.
    packed, (top, left, height, width) = _network_input(mosaic, pattern, wb, spec.inputs[0])
    output = engine.run(spec, [packed], tile=tile)  # (3, H', W')
    del packed
    rgb = output[:, top:top + height, left:left + width]
    if out_spec.transfer != "linear":
        rgb = decode_transfer(rgb, out_spec.transfer)
    del output
    camera = np.empty((height, width, 3), dtype=np.float32)

    def unbalance(rows: slice) -> None:  # planes -> interleaved, balance divided out
        np.divide(np.moveaxis(rgb[:, rows], 0, -1), wb, out=camera[rows])

    for_each_strip(height, unbalance, strip_rows=64)
    return camera


def _network_input(
    mosaic: np.ndarray, pattern: str, wb: np.ndarray, in_spec
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """White-balanced, clipped, encoded, RGGB-phased and packed mosaic; and the crop."""
    balanced = np.empty(mosaic.shape, dtype=np.float32)  # our own copy, worked in place

    def prepare(rows: slice) -> None:  # strips of an even number of rows keep the phase
        part = balanced[rows]
        part[...] = mosaic[rows]
        for index, letter in enumerate(pattern):
            dy, dx = divmod(index, 2)
            part[dy::2, dx::2] *= wb[_CHANNEL_OF_LETTER[letter]]
        np.clip(part, in_spec.range[0], in_spec.range[1], out=part)
        if in_spec.transfer != "linear":
            part[...] = encode_transfer(part, in_spec.transfer, workers=1)

    for_each_strip(mosaic.shape[0], prepare, strip_rows=64)
    padded, crop = to_rggb_phase(balanced, pattern)
    del balanced
    return pack_rggb(padded), crop


def _check_model(spec: "ModelSpec") -> None:
    problems = []
    if len(spec.inputs) != 1 or spec.inputs[0].layout != "bayer_packed" \
            or spec.inputs[0].channels != 4:
        problems.append("one 4-channel bayer_packed input")
    if spec.outputs[0].channels != 3 or spec.scale != 2:
        problems.append("a 3-channel output at scale 2")
    if problems:
        raise ModelError(
            f"model {spec.name!r} cannot demosaic here: the demosaic stage needs "
            + " and ".join(problems)
        )
