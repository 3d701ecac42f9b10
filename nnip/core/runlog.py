"""The run log of a batch: which outputs are finished, from which input, with which settings.

A batch killed halfway (Ctrl-C, SIGTERM, a power cut, a killed job) leaves only complete
outputs behind (:func:`nnip.core.batch.atomic_write`), so running it again with
``--skip-existing`` already skips the finished files. The run log adds what a plain
existence check cannot know: whether an existing output still matches its input and the
settings of the new run. With ``--run-log FILE --skip-existing`` an existing output is

* skipped, as ``up to date``, when the log holds it with the same input (path, size,
  modification time) and the same settings;
* redone when the log holds it but the input or the settings have changed since;
* left alone, as ``--skip-existing`` promises, when the log does not know it, or when the
  output itself changed after it was logged (a retouched file is the user's now).

An output that does not exist is always made. Without ``--skip-existing`` the log is only
written, never consulted (``--overwrite`` redoes everything; neither flag: an existing
output is an error, as without a log).

File format: JSON Lines, one object per finished file, appended after the output is in
place, one ``write`` per line (several processes may append to one log)::

    {"v": 1, "input": "/photos/IMG_1.CR3", "size": 25165824, "mtime_ns": 1700000000000000000,
     "output": "/out/IMG_1.tif", "output_size": 144000000,
     "output_mtime_ns": 1700000100000000000, "settings": "3f2a...", "finished": "2024-...Z"}

Paths are absolute; a file name that is not valid UTF-8 is kept with JSON ``\\udcXX``
escapes (Python's ``surrogateescape``), so it round-trips. The last line for an output
wins. Lines that cannot be parsed (a line cut by a crash) are ignored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from nnip.core.errors import OutputError

__all__ = [
    "RUN_LOG_VERSION",
    "RunLogEntry",
    "Decision",
    "settings_digest",
    "FileState",
    "file_state",
    "RunLog",
]

RUN_LOG_VERSION = 1


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A short stable hash of everything that shapes an output (16 hex digits).

    ``settings`` values may be anything JSON can hold, plus objects whose ``repr`` is
    stable (dataclasses, paths); keys are sorted, so their order does not matter.
    """
    text = json.dumps(dict(settings), sort_keys=True, default=repr, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class FileState:
    """What identifies a file's content cheaply: its size and modification time (ns)."""

    size: int
    mtime_ns: int


def file_state(path: str | os.PathLike[str]) -> FileState | None:
    """The :class:`FileState` of ``path``, or None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return FileState(int(info.st_size), int(info.st_mtime_ns))


@dataclass(frozen=True)
class RunLogEntry:
    """One finished file, as one line of the log."""

    input: str
    size: int
    mtime_ns: int
    output: str
    output_size: int
    output_mtime_ns: int
    settings: str
    finished: str = ""
    v: int = RUN_LOG_VERSION

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=True) + "\n"

    @classmethod
    def from_line(cls, line: str) -> "RunLogEntry | None":
        """The entry of one log line, or None for a line that is not one (cut, foreign)."""
        try:
            data = json.loads(line)
            return cls(
                input=str(data["input"]),
                size=int(data["size"]),
                mtime_ns=int(data["mtime_ns"]),
                output=str(data["output"]),
                output_size=int(data["output_size"]),
                output_mtime_ns=int(data["output_mtime_ns"]),
                settings=str(data["settings"]),
                finished=str(data.get("finished", "")),
                v=int(data.get("v", RUN_LOG_VERSION)),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Decision:
    """What to do with an output that exists: ``skip`` it or not, and why (for the record)."""

    skip: bool
    reason: str


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.realpath(path))


class RunLog:
    """A run log file: the entries read when it was opened, and appending finished files.

    Opening reads the entries and makes sure the file can be appended to (creating it and
    its directory), so an unusable ``--run-log`` stops the run before any work. Appending
    is thread-safe (``--jobs``) and one ``write`` per line on a file opened for appending,
    so processes sharing a log do not mix their lines.

    Raises
    ------
    OutputError
        The log cannot be read or cannot be appended to.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries = self._read()
        try:
            self._write(b"")
        except OSError as exc:
            raise OutputError(f"cannot write the run log {self.path}: {exc.strerror or exc}") from None
        self._lock = threading.Lock()
        self._failed = False

    def __len__(self) -> int:
        return len(self._entries)

    def _read(self) -> dict[str, RunLogEntry]:
        """Entries by output key; the last line for an output wins.

        Raises
        ------
        OutputError
            The log exists but cannot be read (a directory, no permission).
        """
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise OutputError(f"cannot read the run log {self.path}: {exc.strerror or exc}") from None
        entries: dict[str, RunLogEntry] = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            entry = RunLogEntry.from_line(line) if line.strip() else None
            if entry is not None:
                entries[_key(entry.output)] = entry
        return entries

    def get(self, output: str | os.PathLike[str]) -> RunLogEntry | None:
        """The last entry logged for ``output``, or None."""
        return self._entries.get(_key(output))

    def decide(
        self,
        input_path: str | os.PathLike[str],
        output: str | os.PathLike[str],
        settings: str,
    ) -> Decision:
        """Whether ``--skip-existing`` skips the existing ``output`` of ``input_path``.

        See the module docstring for the rules; ``settings`` is the new run's
        :func:`settings_digest`.
        """
        entry = self.get(output)
        if entry is None:
            return Decision(True, "output exists (not in the run log)")
        if file_state(output) != FileState(entry.output_size, entry.output_mtime_ns):
            return Decision(True, "output exists (changed since the run log)")
        if _key(entry.input) != _key(input_path):
            return Decision(False, f"made from another input ({entry.input})")
        if file_state(input_path) != FileState(entry.size, entry.mtime_ns):
            return Decision(False, "the input changed since the run log")
        if entry.settings != settings:
            return Decision(False, "the settings changed since the run log")
        return Decision(True, "up to date (run log)")

    def append(
        self,
        input_path: str | os.PathLike[str],
        input_state: FileState | None,
        output: str | os.PathLike[str],
        settings: str,
    ) -> str | None:
        """Log one finished file; return a warning the first time the log cannot be written.

        ``input_state`` is the input's :class:`FileState` taken *before* it was processed,
        so an input changed while it was being processed is redone next time. Nothing is
        logged when it or the output cannot be stat'ed.
        """
        out_state = file_state(output)
        if input_state is None or out_state is None:
            return None
        entry = RunLogEntry(
            input=os.path.abspath(input_path),
            size=input_state.size,
            mtime_ns=input_state.mtime_ns,
            output=os.path.abspath(output),
            output_size=out_state.size,
            output_mtime_ns=out_state.mtime_ns,
            settings=settings,
            finished=f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
        )
        data = entry.to_line().encode("ascii")
        with self._lock:
            try:
                self._write(data)
            except OSError as exc:
                if self._failed:
                    return None
                self._failed = True
                return f"cannot write the run log {self.path}: {exc.strerror or exc}"
            self._entries[_key(output)] = entry
        return None

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            written = os.write(fd, data) if data else 0
            if written != len(data):  # a full disk mid-line: say so rather than log half
                raise OSError(28, "short write (disk full?)")
        finally:
            os.close(fd)
