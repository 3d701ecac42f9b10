"""Run a batch's files on a Dask cluster (``--cluster``): several processes or machines.

The batch runner (:mod:`nnip.core.batch`) still does everything around a file in this
process: inputs, output names, ``--skip-existing``, the run log, the one-line errors,
``--json`` and the exit code. Only the per-file work, ``process_fn(src, dst)``, runs on the
cluster's workers, the way ``--jobs`` runs it on threads: :func:`run_on_cluster` hands
:func:`~nnip.core.batch.run_batch` a ``process_fn`` that sends the file to the cluster and
waits for its record, with as many files in flight as the cluster has worker threads.

* Workers load their models once. The batch ships a *recipe*, a picklable callable that
  returns the per-file function (a top-level factory with plain arguments, e.g.
  ``functools.partial(make_processor, params)``), inside a worker plugin; every worker
  process calls it once when the batch starts, or when it joins or is restarted later.
* A worker that dies mid-batch loses no file: the scheduler gives its files to other
  workers (up to ``distributed.scheduler.allowed-failures`` times, 3 by default; after that
  the file fails with one line). Task retries stay off: processing is deterministic, so a
  file that raised would raise again. Outputs are written atomically, so a killed worker
  leaves at most a hidden temporary file; those of this batch's outputs are removed when
  the batch ends (:func:`~nnip.core.batch.remove_stale_temps`).
* Outputs are byte-identical to a local run: the workers run the same code on the same
  inputs, and nothing written depends on the host, the time or the process.

Inputs, outputs and ``--models-dir`` must sit at the same paths on every worker (a shared
file system); paths are sent absolute. Needs the ``distributed`` package
(``pip install 'nnip[cluster]'``): import this module only when a cluster is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

import dask.config
from dask.utils import parse_timedelta
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, get_worker

from nnip.core.batch import (
    BatchOptions,
    BatchResult,
    InputItem,
    ProcessFn,
    remove_stale_temps,
    run_batch,
)
from nnip.core.errors import ClusterError, NnipError
from nnip.core.hugepages import prefer_small_pages

__all__ = [
    "DEFAULT_LOCAL_WORKERS",
    "ClusterAddress",
    "parse_cluster_address",
    "open_cluster",
    "run_on_cluster",
]

#: Worker processes of ``--cluster local`` (each loads the models and holds a file in memory).
DEFAULT_LOCAL_WORKERS = 2

_LOCAL = re.compile(r"local(?::(?P<workers>\d+))?", re.IGNORECASE)
_SCHEDULER = re.compile(  # [scheme://]host:port, an IPv6 host in brackets
    r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>[^\s/:]+|\[[0-9a-fA-F:.]+\]):(?P<port>\d+)"
)
_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


@dataclass(frozen=True)
class ClusterAddress:
    """Where a batch runs: a running scheduler, or a local cluster started for the batch.

    ``scheduler`` is ``scheme://host:port``; None means a local cluster of
    ``local_workers`` worker processes, one thread each.
    """

    scheduler: str | None = None
    local_workers: int = DEFAULT_LOCAL_WORKERS

    def __str__(self) -> str:
        return self.scheduler if self.scheduler is not None else f"local:{self.local_workers}"


def parse_cluster_address(text: str) -> ClusterAddress:
    """``tcp://host:port`` (or ``host:port``, tcp assumed), ``local`` or ``local:N``.

    Raises
    ------
    ValueError
        With a message saying what is accepted.
    """
    text = text.strip()
    local = _LOCAL.fullmatch(text)
    if local:
        workers = int(local["workers"]) if local["workers"] is not None else DEFAULT_LOCAL_WORKERS
        if workers < 1:
            raise ValueError("local:N needs at least 1 worker")
        return ClusterAddress(None, workers)
    scheduler = _SCHEDULER.fullmatch(text)
    if scheduler is None:
        raise ValueError(f"{text!r} is neither a scheduler address (tcp://HOST:PORT) nor local[:N]")
    scheme = (scheduler["scheme"] or "tcp").lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown protocol {scheme!r} (use one of {', '.join(_SCHEMES)})")
    if not 0 < int(scheduler["port"]) < 65536:
        raise ValueError(f"port {scheduler['port']} is out of range")
    return ClusterAddress(f"{scheme}://{scheduler['host']}:{int(scheduler['port'])}")


# --------------------------------------------------------------------------- connecting


@contextlib.contextmanager
def open_cluster(address: ClusterAddress, *, debug: bool = False) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a local cluster started (and stopped
    on exit) for ``local:N``; returns once at least one worker is there.

    Dask's own log lines are kept off stderr unless ``debug``: a lost worker is reported by
    the files it held, not by the scheduler's warnings. The connect timeout is Dask's
    (``distributed.comm.timeouts.connect``, 30 s by default; in the environment:
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).

    Raises
    ------
    ClusterError
        No scheduler answers at ``address``, the local cluster does not start, or no
        worker joins within the connect timeout.
    """
    level = logging.WARNING if debug else logging.CRITICAL
    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
    with _logger_level("distributed", level), contextlib.ExitStack() as stack:
        target: Any = address.scheduler
        if target is None:
            try:
                target = stack.enter_context(LocalCluster(
                    n_workers=address.local_workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None, silence_logs=level,
                ))
            except (OSError, RuntimeError) as exc:  # no port, no memory, a worker died
                raise ClusterError(f"the local cluster did not start: {_first_line(exc)}") from None
        try:
            client = stack.enter_context(Client(target, set_as_default=False))
        except (OSError, ValueError) as exc:  # refused, unknown host, timed out (OSError too)
            raise ClusterError(f"no scheduler answers: {_first_line(exc)}") from None
        if address.scheduler is None:
            client.register_plugin(_IgnoreInterrupt(), name="nnip-ignore-interrupt")
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise ClusterError(f"no worker joined the scheduler within {timeout:g} s") from None
        yield client


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class _IgnoreInterrupt(WorkerPlugin):
    """Local workers ignore SIGINT: Ctrl-C in a terminal reaches them too, and would kill
    the files in flight that an interrupted batch finishes before it stops (as a local run
    does). The cluster stops them when the batch ends."""

    def setup(self, worker: Any = None) -> None:
        if threading.current_thread() is threading.main_thread():  # where signals are set
            signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------- running


def run_on_cluster(
    items: Sequence[InputItem],
    recipe: Callable[[], ProcessFn],
    *,
    client: Client,
    options: BatchOptions,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> BatchResult:
    """:func:`~nnip.core.batch.run_batch` with every file processed on ``client``'s workers.

    Parameters
    ----------
    items
        From :func:`~nnip.core.batch.collect_inputs`.
    recipe
        ``recipe()`` returns the per-file function (:data:`~nnip.core.batch.ProcessFn`); it
        is called once in every worker process, never here. It must pickle: a top-level
        function, or a ``functools.partial`` of one, with picklable arguments.
    client
        From :func:`open_cluster` (or any ``distributed.Client``).
    options
        As for ``run_batch``; ``jobs`` is replaced by the cluster's worker threads.

    Raises
    ------
    NnipError
        A worker could not build the per-file function (no such model, device missing,
        another nnip version): the error of the first worker that failed.
    """
    from nnip import __version__

    name = f"nnip-batch-{secrets.token_hex(4)}"  # one per batch: batches may share a cluster
    remote = _RemoteProcess(client, name)
    try:
        client.register_plugin(_ProcessorPlugin(recipe, __version__), name=name)
        threads = sum(client.nthreads().values())
        options = replace(options, jobs=max(1, threads))
        return run_batch(items, remote, options=options, stdout=stdout, stderr=stderr)
    finally:
        # Every file is finished now: a temporary file of its output was left by a worker
        # killed mid-write (its file was redone elsewhere, or failed).
        remove_stale_temps(remote.outputs)
        with contextlib.suppress(Exception):  # frees the workers' models; best effort
            client.unregister_worker_plugin(name)


class _ProcessorPlugin(WorkerPlugin):
    """Holds a batch's per-file function in each worker process: the models load once.

    Dask calls :meth:`setup` in every worker that has it, including workers that join or
    are restarted later; the plugin itself travels pickled, with ``process_fn`` None.
    """

    def __init__(self, recipe: Callable[[], ProcessFn], version: str) -> None:
        self.recipe = recipe
        self.version = version
        self.process_fn: ProcessFn | None = None
        self.error: NnipError | None = None

    def setup(self, worker: Any = None) -> None:
        from nnip import __version__

        if __version__ != self.version:
            self.error = ClusterError(
                f"worker {getattr(worker, 'address', '?')} runs nnip {__version__}, "
                f"this batch nnip {self.version}"
            )
            raise self.error
        prefer_small_pages()  # as the local command does (nnip.core.hugepages)
        try:
            self.process_fn = self.recipe()
        except NnipError as exc:  # kept for the files sent here anyway (a late worker)
            self.error = exc
            raise

    def teardown(self, worker: Any = None) -> None:
        self.process_fn = None

    def process(self, src: Path, dst: Path) -> Mapping[str, Any] | None:
        if self.process_fn is None:
            raise self.error or ClusterError("this worker has no per-file function (setup failed)")
        return self.process_fn(src, dst)


def _process_on_worker(plugin_name: str, src: Path, dst: Path) -> Mapping[str, Any] | None:
    """The task each file becomes: this worker's per-file function on one file."""
    return get_worker().plugins[plugin_name].process(src, dst)


class _RemoteProcess:
    """A ``process_fn`` that runs the file on the cluster and waits for its record.

    Called from ``run_batch``'s threads. User problems raised on a worker come back as the
    same :class:`NnipError` (one line); a file whose workers all died is a ClusterError.
    """

    def __init__(self, client: Client, plugin_name: str) -> None:
        self._client = client
        self._plugin_name = plugin_name
        self.outputs: list[Path] = []  # appended from several threads (atomic in CPython)

    def __call__(self, src: Path, dst: Path) -> Mapping[str, Any] | None:
        self.outputs.append(dst)
        future = self._client.submit(
            _process_on_worker, self._plugin_name, Path(os.path.abspath(src)),
            Path(os.path.abspath(dst)), key=f"nnip-{dst.name}-{secrets.token_hex(4)}",
            retries=0,
        )
        try:
            return future.result()
        except KilledWorker:
            raise ClusterError(
                "every worker that took this file died (out of memory, or a crash in a decoder)"
            ) from None
        finally:
            future.release()
