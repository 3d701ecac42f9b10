"""One call on a daemon thread: the overlap primitive of the batch runner and the upscaler.

Not a ThreadPoolExecutor: a signal (Ctrl-C, SIGTERM) landing in the main thread while an
executor starts its worker can leave that worker unregistered and waiting forever, and the
interpreter then hangs at exit joining it (seen once in the upscale interrupt test). A
daemon thread never holds up the exit; whoever needs the outcome waits for it with
:meth:`Background.result`, and work nobody waits for (a file loaded ahead when Ctrl-C
comes) is simply dropped.

The wait is on an Event, never ``Thread.join``: Python 3.11's join, interrupted by Ctrl-C
while the thread still runs, releases the thread's own state lock (its bpo-45274 clean-up
cannot tell whose lock is held), so the thread counts as stopped while it runs and the
lock can be released twice ("RuntimeError: release unlocked lock", seen in the CI interrupt
test). An Event's wait, interrupted, leaves nothing behind.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

__all__ = ["Background"]


class Background:
    """``fn(*args)`` started on a daemon thread named ``name``."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "nnip-background") -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True, name=name)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            self._error = exc
        finally:
            self._finished.set()

    def done(self) -> bool:
        """True once the call has returned or raised."""
        return self._finished.is_set()

    def result(self) -> Any:
        """Wait for the call; its value (handed over once: the thread keeps no reference),
        or its exception raised here. Ctrl-C interrupts the wait; asked again, it waits on."""
        self._finished.wait()
        if self._error is not None:
            raise self._error
        value, self._value = self._value, None
        return value
