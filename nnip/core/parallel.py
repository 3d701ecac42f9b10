"""Whole-image numpy passes split into row strips over the CPU's cores.

Between network runs a develop spends seconds in numpy on 24-megapixel arrays (transfer
curves, colour matrices, white balance, resampling): one core works, the other waits.
numpy's ufuncs, matmul and scipy.ndimage's filters release the GIL on large arrays, so
strips of rows on a few threads run truly in parallel (measured on 6000 x 4000 x 3 float32,
2 cores: the sRGB curve 0.26 -> 0.13 s, a multiply 0.14 -> 0.06 s, cubic resampling
2.0x). Each strip writes its own rows of a preallocated output, so the result is
bit-identical to the serial pass.

Threads are :class:`~nnip.core.background.Background` daemons, not an executor (see why
there); an error in any strip is raised in the caller's thread.
"""

from __future__ import annotations

import os
from typing import Callable

from nnip.core.background import Background

__all__ = ["cpu_workers", "row_strips", "for_each_strip", "PARALLEL_MIN_ELEMENTS"]

#: Arrays smaller than this (elements) are worked in one piece: a thread's start costs
#: ~0.1 ms, a pass over a million float32 values ~1 ms.
PARALLEL_MIN_ELEMENTS = 1 << 20


def cpu_workers() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it), at most
    ``OMP_NUM_THREADS`` when that is set: the usual cap for numeric libraries, which Dask's
    workers (``--cluster``) set to 1 so that several workers share the cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    cap = os.environ.get("OMP_NUM_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        cores = min(cores, int(cap))
    return max(1, cores)


def row_strips(rows: int, strip_rows: int) -> list[slice]:
    """Consecutive ``slice``\\ s of at most ``strip_rows`` rows covering ``range(rows)``."""
    if strip_rows < 1:
        raise ValueError(f"strip_rows must be >= 1, got {strip_rows}")
    return [slice(top, min(rows, top + strip_rows)) for top in range(0, rows, strip_rows)]


def for_each_strip(rows: int, work: Callable[[slice], None], *, strip_rows: int = 256,
                   workers: int | None = None) -> None:
    """``work(strip)`` for every strip of :func:`row_strips`, on ``workers`` threads
    (default :func:`cpu_workers`; 1: in order, in this thread).

    ``work`` must only write rows of its own strip (strips never overlap); strips are
    dealt round-robin, so every thread gets a share of the top and the bottom.
    """
    strips = row_strips(rows, strip_rows)
    count = min(len(strips), cpu_workers() if workers is None else max(1, workers))
    if count <= 1:
        for strip in strips:
            work(strip)
        return

    def run(share: list[slice]) -> None:
        for strip in share:
            work(strip)

    helpers = [Background(run, strips[k::count], name="nnip-strips") for k in range(1, count)]
    error: BaseException | None = None
    try:
        run(strips[0::count])
    except BaseException as exc:  # noqa: BLE001 (raised below, once every helper is done)
        error = exc
    for helper in helpers:  # no strip is still being written when the caller goes on
        try:
            helper.result()
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error
