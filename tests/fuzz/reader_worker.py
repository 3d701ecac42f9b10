"""A child process that runs one reader call per request, for the fuzz and bad-input tests.

A reader that segfaults (LibRaw), hangs or allocates gigabytes for a tiny file must cost a
child process, not the test run: :class:`ReaderWorker` starts this script, sends it one
request per call and restarts it when it dies or does not answer in time. The child runs
with an address-space limit (2 GiB, so a runaway allocation is a quick ``MemoryError``)
and without core dumps.

Protocol: one JSON line per request on stdin ``{"target", "ext", "data" (base64)}``; one
JSON line per answer on stdout ``{"status": "ok" | "error" | "crash", "kind", "message"}``.
``error`` is an :class:`~nnip.core.errors.NnipError` (the reader refused the file: fine);
``crash`` is any other exception. Targets: ``image`` (``read_image``, then ``write_image``
back to the same format), ``raw`` (``read_raw``), ``metadata`` (every function of
:mod:`nnip.core.metadata` on an EXIF block; none may raise); and, to test this machinery,
``segfault`` (the child kills itself with SIGSEGV) and ``hang`` (it sleeps).
"""

from __future__ import annotations

import base64
import io
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["MEMORY_LIMIT", "ReaderWorker", "run_target"]

MEMORY_LIMIT = 2 * 2**30
_FORMAT_EXT = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif"}


def _image(path: Path, scratch: Path) -> dict[str, Any]:
    from nnip.core.errors import NnipError
    from nnip.core.imageio import read_image, write_image

    image = read_image(path)
    result = {"shape": list(image.pixels.shape), "dtype": str(image.pixels.dtype),
              "alpha": None if image.alpha is None else list(image.alpha.shape)}
    out = scratch / f"out{_FORMAT_EXT[image.meta.format]}"
    try:
        write_image(out, image)
    except NnipError:
        pass  # e.g. the alpha of a fuzzed TIFF cannot go into a JPEG: the user's problem
    finally:
        out.unlink(missing_ok=True)
    return result


def _raw(path: Path, scratch: Path) -> dict[str, Any]:
    from nnip.raw.frame import read_raw

    frame = read_raw(path)
    return {"shape": list(frame.mosaic.shape), "dtype": str(frame.mosaic.dtype)}


def _metadata(data: bytes) -> dict[str, Any]:
    from nnip.core import metadata

    orientation = metadata.read_orientation(data)
    if not 1 <= orientation <= 8:
        raise AssertionError(f"orientation {orientation} outside 1..8")
    metadata.camera_info(data)
    updated = metadata.update_exif(data, width=96, height=64, software="fuzz")
    if updated is not None:
        metadata.load_exif(updated)
        metadata.fit_exif(updated, 200)
    metadata.tiff_ifd0_tags(data)
    if data[:4] in (b"II*\x00", b"MM\x00*") and len(data) >= 8:
        order = "<" if data[:2] == b"II" else ">"
        metadata.exif_from_tiff(io.BytesIO(data), struct.unpack(order + "I", data[4:8])[0], order)
    return {"orientation": orientation}


def run_target(target: str, data: bytes, ext: str, scratch: Path) -> dict[str, Any]:
    """Run one request in this process; classify the outcome (see the module docstring)."""
    from nnip.core.errors import NnipError

    path = scratch / f"input{ext}"
    if target == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if target == "hang":
        time.sleep(3600)
    try:
        if target == "metadata":
            return {"status": "ok", **_metadata(data)}
        path.write_bytes(data)
        reader = {"image": _image, "raw": _raw}[target]
        return {"status": "ok", **reader(path, scratch)}
    except NnipError as exc:
        return {"status": "error", "kind": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - anything else is what the tests look for
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        return {"status": "crash", "kind": type(exc).__name__, "message": f"{exc} at {where}"}
    finally:
        path.unlink(missing_ok=True)


def _serve(memory: int) -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints must not break the protocol
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (memory, hard))
    import nnip.core.imageio  # noqa: F401 - imported once, before the first request
    import nnip.raw.frame  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="nnip-reader-worker-") as scratch:
        for line in sys.stdin:
            request = json.loads(line)
            data = base64.b64decode(request["data"])
            answer = run_target(request["target"], data, request["ext"], Path(scratch))
            channel.write(json.dumps(answer) + "\n")


class ReaderWorker:
    """The client side: ``run(target, data, ext)`` in a child, restarted after a crash."""

    def __init__(self, memory: int = MEMORY_LIMIT) -> None:
        self._memory = memory
        self._process: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), str(self._memory)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, bufsize=1,
            )
        return self._process

    def run(self, target: str, data: bytes, ext: str = "", timeout: float = 10.0) -> dict[str, Any]:
        """The child's answer; a child killed by a signal or silent for ``timeout`` s is a crash."""
        process = self._start()
        request = {"target": target, "ext": ext, "data": base64.b64encode(data).decode("ascii")}
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except BrokenPipeError:
            pass  # it died; reported below
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        return self._dead(process, timeout, closed=bool(ready))

    def _dead(self, process: subprocess.Popen, timeout: float, closed: bool) -> dict[str, Any]:
        if closed:  # its output closed: it is dying; wait for the status that says how
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        code = process.poll()
        if code is None:
            process.kill()
            process.wait()
            kind, message = "Hang", f"no answer in {timeout:g} s"
        elif code < 0:
            kind = signal.Signals(-code).name
            message = f"the reader killed its process ({kind})"
        else:
            kind, message = "Exit", f"the reader process exited with status {code}"
        self._process = None
        self.restarts += 1
        return {"status": "crash", "kind": kind, "message": message}

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_LIMIT)
