"""numpy's transparent-huge-page advice, switched off for the commands.

On Linux numpy ``madvise``s every array of 4 MiB or more for transparent huge pages. Where
the kernel's THP defrag policy compacts memory synchronously for such regions (``madvise``
in ``/sys/kernel/mm/transparent_hugepage/defrag``, a common default), the first touch of a
fresh large array can stall while the kernel assembles huge pages, and a develop or an
upscale makes many fresh 100-300 MB arrays. The arithmetic on them streams through memory
and gains little from fewer TLB misses. Measured on the development machine
(benchmarks/hugepages.py, the same commands in turns, best of two): a 24 MP three-stage
develop 47.7 -> 44.7 s and a 24 MP fast upscale 19.4 -> 18.7 s without the advice, peak
memory no higher (the upscale's 1656 -> 1532 MiB).

A user who sets ``NUMPY_MADVISE_HUGEPAGE`` (numpy's own switch) keeps their choice: numpy
applied it at import, and :func:`prefer_small_pages` then changes nothing.
"""

from __future__ import annotations

import os

__all__ = ["prefer_small_pages"]

#: numpy's environment switch for the advice, read once at ``import numpy``.
NUMPY_SWITCH = "NUMPY_MADVISE_HUGEPAGE"


def prefer_small_pages() -> bool:
    """Stop numpy advising huge pages for new arrays, unless the user chose with
    ``NUMPY_MADVISE_HUGEPAGE``. Returns whether the setting changed (False where this
    numpy has no such switch)."""
    if NUMPY_SWITCH in os.environ:
        return False
    try:  # numpy 2 moved the private module; neither is a public API, so never fail on it
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            return False
    _set_madvise_hugepage(False)
    return True
