"""nnip.core.background: one call on a daemon thread, and Ctrl-C while waiting for it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from nnip.core.background import Background


def test_result_hands_over_the_value_once_and_reraises_errors() -> None:
    job = Background(lambda a, b: a + b, 2, 3)
    assert job.result() == 5
    assert job.done()
    assert job.result() is None  # the thread keeps no reference to what it made

    def fail() -> None:
        raise ValueError("bad pixels")

    with pytest.raises(ValueError, match="bad pixels"):
        Background(fail).result()


def test_ctrl_c_while_waiting_leaves_the_call_running_and_waitable() -> None:
    """The wait is interrupted, the call is not: asked again, ``result`` waits for the real
    value. (With ``Thread.join`` on Python 3.11 the interrupted join released the thread's
    own lock: the thread then counted as finished while it ran, and a later release failed
    with "release unlocked lock" - the CI interrupt test's failure.)"""
    go_on = threading.Event()

    def slow() -> str:
        go_on.wait(10)
        return "made"

    job = Background(slow)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        job.result()
    timer.join()
    assert not job.done()  # still running: the interrupt did not end or detach it
    go_on.set()
    started = time.monotonic()
    assert job.result() == "made"
    assert job.done() and time.monotonic() - started < 5
