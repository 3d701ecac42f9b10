"""Row strips over the cores: every row once, errors surface, results bit-identical."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nnip.core.parallel import cpu_workers, for_each_strip, row_strips
from nnip.develop.colour import decode_transfer, encode_transfer


def test_row_strips_cover_the_rows_once():
    assert row_strips(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert row_strips(0, 4) == []
    with pytest.raises(ValueError, match="strip_rows"):
        row_strips(10, 0)


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_every_row_is_worked_once(workers):
    seen = np.zeros(1001, dtype=int)
    threads = set()

    def work(rows: slice) -> None:
        threads.add(threading.current_thread())  # objects, not idents (those are reused)
        seen[rows] += 1

    for_each_strip(1001, work, strip_rows=37, workers=workers)
    assert (seen == 1).all()
    assert len(threads) == min(workers, 28)  # 28 strips of 37 rows


def test_one_worker_works_in_order_in_this_thread():
    order = []
    for_each_strip(10, lambda rows: order.append((rows.start, threading.get_ident())), strip_rows=3, workers=1)
    assert [start for start, _ in order] == [0, 3, 6, 9]
    assert {ident for _, ident in order} == {threading.get_ident()}


@pytest.mark.parametrize("failing_strip", [0, 1])  # this thread's strip, a helper's
def test_an_error_in_any_strip_is_raised_once_the_other_threads_are_done(failing_strip):
    """Strips are dealt round-robin (0, 2 here; 1, 3 to the helper); a thread stops at its
    first error, the other finishes its share before the caller sees the error."""
    finished = []

    def work(rows: slice) -> None:
        if rows.start == failing_strip:
            raise RuntimeError(f"strip {rows.start} failed")
        finished.append(rows.start)

    with pytest.raises(RuntimeError, match=f"strip {failing_strip} failed"):
        for_each_strip(4, work, strip_rows=1, workers=2)
    assert sorted(finished) == ([1, 3] if failing_strip == 0 else [0, 2])


def test_cpu_workers_is_at_least_one_and_honours_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = cpu_workers()
    assert cores >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_workers() == 1
    for ignored in ("0", "", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert cpu_workers() == cores


@pytest.mark.parametrize("shape", [(700, 1600, 3), (3, 700, 1600), (2_000_000,)])
def test_transfer_curves_in_strips_equal_the_serial_pass(shape):
    values = np.random.default_rng(0).normal(0.4, 0.5, shape).astype(np.float32)
    for transfer in ("srgb", "adobe", "prophoto", "linear"):
        encoded = encode_transfer(values, transfer, workers=4)
        assert np.array_equal(encoded, encode_transfer(values, transfer, workers=1))
        assert np.array_equal(decode_transfer(encoded, transfer, workers=4),
                              decode_transfer(encoded, transfer, workers=1))
    assert np.array_equal(np.sign(encode_transfer(values, "srgb")), np.sign(values))
