"""MATLAB-compatible bicubic resizing and the Y channel of the SR evaluation protocol.

Published super-resolution tables make their low-resolution inputs with MATLAB's
``imresize(HR, 1/s, 'bicubic')`` and score PSNR on the BT.601 luma. Reproducing those
figures needs MATLAB's exact arithmetic: the Keys cubic (a = -0.5), the kernel widened by
``1/scale`` when downscaling (antialiasing), MATLAB's sample positions
``u = x / scale + 0.5 (1 - 1 / scale)`` and symmetric (mirror, edge sample repeated)
border handling. Any other bicubic (Pillow, OpenCV) moves the figures by tenths of a dB.

Pure numpy: the training data pipeline and the benchmarks both use it, torch is not needed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["cubic", "resize_weights", "imresize", "rgb_to_y"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``).

    Parameters
    ----------
    x : ndarray, float
        Distances in samples.

    Returns
    -------
    ndarray, float64, same shape as ``x``; zero for ``|x| >= 2``.
    """
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_weights(in_length: int, out_length: int, scale: float) -> np.ndarray:
    """Dense resampling matrix of MATLAB's ``imresize`` along one axis.

    Parameters
    ----------
    in_length, out_length : int
        Number of samples before and after resizing.
    scale : float
        Output samples per input sample (0.5 halves the axis).

    Returns
    -------
    ndarray, float64, shape (out_length, in_length)
        Row ``i`` holds the weights of output sample ``i``; each row sums to 1. Taps that
        fall outside the axis are folded back symmetrically (MATLAB's mirror with the edge
        sample repeated), so they add to the weight of the sample they mirror.
    """
    kernel_width = 4.0
    antialias = scale < 1.0
    if antialias:
        # A downscaling kernel is stretched by 1/scale so it low-passes before sampling.
        kernel_width /= scale
    # MATLAB is 1-based: output sample x maps to input position u.
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if antialias else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric border: index sequence 1..n, n..1 repeated (0-based below).
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    source = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_length)[:, None], source.shape)
    np.add.at(matrix, (rows, source), weights)
    return matrix


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image like MATLAB's ``imresize(img, scale, 'bicubic')``.

    Parameters
    ----------
    img : ndarray, shape (H, W) or (H, W, C)
        ``uint8`` (as MATLAB: the result is rounded and clipped to uint8) or float (any
        range, any transfer function: the filter is linear and the result is not clipped).
    scale : float
        Output samples per input sample on both axes; the output is
        ``ceil(H * scale) x ceil(W * scale)``.

    Returns
    -------
    ndarray
        ``uint8`` for uint8 input, else float of the input's dtype (float64 for integers
        other than uint8), shape (ceil(H * scale), ceil(W * scale)[, C]).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    array = np.asarray(img)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {array.shape}")
    height, width = array.shape[:2]
    out_h, out_w = int(math.ceil(height * scale)), int(math.ceil(width * scale))
    data = array.astype(np.float64).reshape(height, width, -1)
    channels = data.shape[2]
    # MATLAB resizes along the first dimension first; the order matters only at rounding.
    rows = resize_weights(height, out_h, scale)
    cols = resize_weights(width, out_w, scale)
    data = (rows @ data.reshape(height, -1)).reshape(out_h, width, channels)
    data = np.matmul(cols, data)  # (out_w, W) @ (out_h, W, C) -> (out_h, out_w, C)
    if array.ndim == 2:
        data = data[..., 0]
    if array.dtype == np.uint8:
        return np.clip(np.round(data), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return data.astype(array.dtype)
    return data


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma as the SR protocol computes it (MATLAB ``rgb2ycbcr``'s Y, not rounded).

    Parameters
    ----------
    img : ndarray, float, shape (H, W, 3) or (H, W)
        sRGB-encoded values in [0, 1]. A single-channel (grey) image is taken as R = G = B.

    Returns
    -------
    ndarray, float64, shape (H, W)
        Y in [16, 235] / 255 for inputs in [0, 1].
    """
    array = np.asarray(img, dtype=np.float64)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 or HxW image, got shape {np.shape(img)}")
    coeffs = np.array([65.481, 128.553, 24.966]) / 255.0
    return (16.0 + 255.0 * (array @ coeffs)) / 255.0
