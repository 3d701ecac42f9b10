"""Batch processing shared by ``nnip develop`` and ``nnups upscale``.

What happens to every file of a run, whatever the command:

* :func:`collect_inputs` turns the command-line words into :class:`InputItem` s: files,
  glob patterns (expanded here too, because scripts on Windows pass them unexpanded) and,
  with ``recursive``, directories. A missing path or a directory given without
  ``recursive`` becomes an item carrying its error, so one bad word never aborts a run.
* :func:`output_path` names the output ``{stem}{suffix}.{ext}``; :func:`plan_outputs` checks
  the whole plan before anything runs (an empty suffix in the input's own directory, an
  output that is another input, two inputs writing the same output).
* :func:`atomic_write` makes sure no partial file is ever left at the output path.
* :class:`FileStages` splits the per-file work into load, process and save, so that a
  serial batch decodes the next file and writes the previous one while the network runs.
* :func:`run_batch` processes the items (optionally on a thread pool), prints one
  ``path: message`` line per failed file on stderr, optional JSON records on stdout and a
  progress bar on a terminal, and returns a :class:`BatchResult` with the exit code.
* With ``run_log``, every finished file is appended to a run log
  (:mod:`nnip.core.runlog`); with ``skip_existing`` too, an existing output is redone when
  the log shows that its input or the settings changed since it was made.

Exit codes: 0 every file ok or skipped, 1 at least one file failed, 130 interrupted.
The CLI turns 130 into 143 when the interruption was a SIGTERM (``nnip.options.run_main``).
Exit code 2 (usage error) is the CLI's to give: it turns :class:`OutputNameError` into one.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import secrets
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

from nnip.core.background import Background
from nnip.core.errors import InputError, NnipError, OutputError, OutputExistsError
from nnip.core.runlog import FileState, RunLog, file_state

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "InputItem",
    "BatchOptions",
    "BatchResult",
    "OutputNameError",
    "ProcessFn",
    "FileStages",
    "collect_inputs",
    "output_path",
    "plan_outputs",
    "atomic_write",
    "remove_stale_temps",
    "run_batch",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM: the CLI's code for a batch stopped by `kill`

_GLOB_CHARS = frozenset("*?[")

#: ``process_fn(input_path, output_path) -> extra record fields`` (e.g. ``device``, ``models``;
#: ``notices``, a list of one-line warnings, is also printed as ``path: warning: ...`` unless
#: quiet). It must write ``output_path`` (through :func:`atomic_write`) and raise
#: :class:`NnipError` for problems the user can fix.
ProcessFn = Callable[[Path, Path], Mapping[str, Any] | None]


@dataclass(frozen=True)
class FileStages:
    """A :data:`ProcessFn` in three steps, so that a serial batch overlaps them across files.

    ``load(input_path)`` decodes the input; ``process(loaded, output_path)`` does the work
    (the networks); ``save(processed, output_path)`` writes the output (through
    :func:`atomic_write`) and returns the record's extra fields, as a ProcessFn does. Each
    raises :class:`NnipError` for problems the user can fix. Called whole,
    ``stages(input_path, output_path)``, it is a plain ProcessFn (``--jobs N`` runs it so).

    With ``jobs == 1``, :func:`run_batch` loads file k+1 in a background thread while file
    k is processed, and saves file k in another while k+1 is processed: one file ahead and
    one behind, never more, so at most two loaded inputs and one result waiting to be
    written exist at a time. Records, messages and their order are those of a plain run.
    """

    load: Callable[[Path], Any]
    process: Callable[[Any, Path], Any]
    save: Callable[[Any, Path], Mapping[str, Any] | None]

    def __call__(self, input_path: Path, output_path: Path) -> Mapping[str, Any] | None:
        return self.save(self.process(self.load(input_path), output_path), output_path)


class OutputNameError(NnipError, ValueError):
    """Output naming options that would overwrite inputs; the CLI reports it as a usage error."""


@dataclass(frozen=True)
class InputItem:
    """One input of a batch: a path, or a path with the problem found while collecting it."""

    path: Path
    error: NnipError | None = None


@dataclass(frozen=True)
class BatchOptions:
    """How a batch names, writes and reports its outputs.

    ``output_dir`` None writes beside each input. ``ext`` is the output extension without
    the dot; None keeps each input's own extension. ``overwrite`` and ``skip_existing`` are
    exclusive (an existing output is otherwise an error for that file).

    ``run_log`` is a run log file (JSON Lines, :mod:`nnip.core.runlog`) that every finished
    file is appended to; ``settings`` is the :func:`~nnip.core.runlog.settings_digest` of
    what shapes the outputs, compared with the log's under ``skip_existing``.
    """

    output_dir: Path | None = None
    suffix: str = ""
    ext: str | None = None
    overwrite: bool = False
    skip_existing: bool = False
    jobs: int = 1
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    progress: bool | None = None  # None: a bar when stderr is a terminal and not quiet
    run_log: Path | None = None
    settings: str = ""

    def __post_init__(self) -> None:
        if self.overwrite and self.skip_existing:
            raise ValueError("overwrite and skip_existing are exclusive")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")


@dataclass
class BatchResult:
    """What a batch did: one record per input (in input order) and the exit code."""

    records: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r["status"] == status)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.count("error") else EXIT_OK


# --------------------------------------------------------------------------- inputs


def collect_inputs(
    patterns: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    extensions: Iterable[str] | None = None,
) -> list[InputItem]:
    """Expand command-line words into input items, in the order given, without duplicates.

    Parameters
    ----------
    patterns
        Paths of files or directories, or glob patterns (``*``, ``?``, ``[...]``; ``**``
        crosses directories with ``recursive``). An existing path is never read as a
        pattern, so a file literally named ``a[1].jpg`` works.
    recursive
        Descend into directories (files whose extension is in ``extensions``, hidden
        files and directories left out). Without it, a directory is a per-file error.
    extensions
        Extensions (with or without the dot, any case) a directory walk keeps; None keeps
        every file. Files named explicitly or matched by a pattern are always kept: their
        reader says what is wrong with them.

    Returns
    -------
    list of InputItem
        A word that matches nothing gives one item with an :class:`InputError`.
    """
    exts = _normalise_extensions(extensions)
    items: list[InputItem] = []
    seen: set[str] = set()
    for word in patterns:
        for item in _expand(str(word), recursive=recursive, exts=exts):
            key = os.path.normcase(os.path.realpath(item.path)) if item.error is None else None
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            items.append(item)
    return items


def _normalise_extensions(extensions: Iterable[str] | None) -> frozenset[str] | None:
    if extensions is None:
        return None
    return frozenset("." + e.lower().lstrip(".") for e in extensions)


def _expand(word: str, *, recursive: bool, exts: frozenset[str] | None) -> list[InputItem]:
    path = Path(word)
    if os.path.lexists(path):
        return _from_existing(path, recursive=recursive, exts=exts)
    if _GLOB_CHARS.intersection(word):
        matches = sorted(glob.glob(word, recursive=recursive))
        if not matches:
            return [InputItem(path, InputError("no file matches this pattern"))]
        found: list[InputItem] = []
        for match in matches:
            found.extend(_from_existing(Path(match), recursive=recursive, exts=exts))
        return found
    return [InputItem(path, _missing(path))]


def _missing(path: Path) -> InputError:
    """Why a path that does not exist cannot be used; a too long one says so."""
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return InputError("path too long for the file system")
    return InputError("no such file or directory")


def _from_existing(
    path: Path, *, recursive: bool, exts: frozenset[str] | None
) -> list[InputItem]:
    if not path.is_dir():
        if not path.exists():  # a dangling symbolic link
            return [InputItem(path, InputError("no such file (broken link)"))]
        return [InputItem(path)]
    if not recursive:
        return [InputItem(path, InputError("is a directory (use --recursive)"))]
    return [InputItem(p) for p in _walk(path, exts)]


def _walk(root: Path, exts: frozenset[str] | None) -> list[Path]:
    """Files under ``root`` in a stable order, skipping hidden names (our temp files too)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if exts is None or os.path.splitext(name)[1].lower() in exts:
                found.append(Path(dirpath) / name)
    return found


# --------------------------------------------------------------------------- outputs


def output_path(
    input_path: str | os.PathLike[str],
    *,
    output_dir: str | os.PathLike[str] | None,
    suffix: str,
    ext: str | None,
) -> Path:
    """The output path ``{output_dir}/{stem}{suffix}.{ext}`` of one input.

    ``output_dir`` None means the input's directory; ``ext`` None keeps the input's
    extension (a leading dot in ``ext`` is accepted).

    Raises
    ------
    OutputNameError
        ``suffix`` is empty, the output directory is the input's own and the extension
        is the input's: the output would replace the input.
    """
    src = Path(input_path)
    directory = Path(output_dir) if output_dir is not None else src.parent
    extension = src.suffix.lstrip(".") if ext is None else ext.lstrip(".")
    # An empty suffix beside the input is fine when the extension changes (x.CR3 -> x.tif,
    # nnip develop's default); with the same extension the output would be the input.
    if not suffix and _same_dir(directory, src.parent) and (
        extension.lower() == src.suffix.lstrip(".").lower()
    ):
        raise OutputNameError(
            "an empty --suffix needs an --output-dir other than the input's directory"
        )
    name = f"{src.stem}{suffix}.{extension}" if extension else f"{src.stem}{suffix}"
    return directory / name


def _same_dir(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _key(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def plan_outputs(items: Sequence[InputItem], options: BatchOptions) -> list[InputItem | Path]:
    """The output path of every item, checked as a whole before anything is written.

    Returns, per item, its output path, or the item again with a per-file error when its
    output would replace one of the inputs of this batch or the output of an earlier item.
    Items that already carry an error get a best-effort path (for the JSON record).

    Raises
    ------
    OutputNameError
        The naming options themselves are unusable (see :func:`output_path`).
    """
    inputs = {_key(it.path) for it in items if it.error is None}
    claimed: dict[str, Path] = {}
    plan: list[InputItem | Path] = []
    for item in items:
        out = output_path(
            item.path, output_dir=options.output_dir, suffix=options.suffix, ext=options.ext
        )
        if item.error is not None:
            plan.append(item)
            continue
        key = _key(out)
        if key in inputs:
            plan.append(InputItem(item.path, OutputError(f"output {out} would replace an input")))
        elif key in claimed:
            plan.append(
                InputItem(item.path, OutputError(f"output {out} is also the output of {claimed[key]}"))
            )
        else:
            claimed[key] = item.path
            plan.append(out)
    return plan


def atomic_write(final_path: str | os.PathLike[str], write_fn: Callable[[Path], Any]) -> Path:
    """Call ``write_fn(temp_path)`` and move the result to ``final_path`` in one step.

    The temporary file sits in the output directory (``os.replace`` is atomic only within a
    file system) under a hidden name that keeps the real extension, so writers that infer
    the format from the name still work: ``.{name}.tmp-{random}{ext}``, the name cut short
    where the whole would pass the file system's name limit (so every name an output may
    have can be written). It is removed on any exception, KeyboardInterrupt included, so
    ``final_path`` is either the complete new file or untouched. The output directory is
    created (parents too).

    Raises
    ------
    OutputError
        The directory cannot be created or the file cannot be written or moved.
    """
    final = Path(final_path)
    _make_dir(final.parent)
    temp = _temp_path(final)
    try:
        write_fn(temp)
        if not temp.exists():
            raise OutputError(f"the writer produced no file for {final}")
        os.replace(temp, final)
    except NnipError:
        _remove_quietly(temp)
        raise
    except OSError as exc:
        _remove_quietly(temp)
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from exc
    except BaseException:
        _remove_quietly(temp)
        raise
    return final


def _temp_path(final: Path) -> Path:
    """A hidden temporary name beside ``final``, with its extension, within NAME_MAX bytes."""
    tail = f".tmp-{secrets.token_hex(4)}{final.suffix}"
    name = os.fsencode(final.name)
    excess = len(name) + len(os.fsencode(tail)) + 1 - _name_max(final.parent)
    if excess > 0:  # cut bytes, not characters: fsdecode keeps a cut UTF-8 sequence intact
        name = name[: max(1, len(name) - excess)]
    return final.parent / f".{os.fsdecode(name)}{tail}"


#: ``.{name}.tmp-{8 hex}{ext}``, as :func:`_temp_path` names it (``name`` possibly cut).
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-[0-9a-f]{8}(?P<ext>.*)", re.DOTALL)


def remove_stale_temps(outputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left beside ``outputs``; return them.

    A writer killed outright (SIGKILL, a lost cluster worker, a power cut) cannot remove
    its temporary file. Only temporary files of these outputs are touched, and each
    directory is listed once. Call it only when nothing writes these outputs any more: a
    temporary file still being written would be removed too.
    """
    names_in: dict[Path, set[str]] = {}
    for out in outputs:
        path = Path(out)
        names_in.setdefault(path.parent, set()).add(path.name)
    removed: list[Path] = []
    for directory, names in names_in.items():
        try:
            entries = os.listdir(directory)
        except OSError:  # gone or unreadable: nothing of ours to clean there
            continue
        limit = _name_max(directory)
        for entry in entries:
            if _is_temp_of(entry, names, limit):
                _remove_quietly(directory / entry)
                removed.append(directory / entry)
    return removed


def _is_temp_of(entry: str, names: set[str], name_max: int) -> bool:
    """Whether ``entry`` is a :func:`_temp_path` name of one of ``names`` (same directory)."""
    match = _TEMP_NAME.fullmatch(entry)
    if match is None:
        return False
    stem, ext = match["name"], match["ext"]
    if stem in names:
        return Path(stem).suffix == ext
    if len(os.fsencode(entry)) < name_max:  # not a name _temp_path had to cut short
        return False
    cut = os.fsencode(stem)
    return any(
        os.fsencode(name).startswith(cut) and Path(name).suffix == ext for name in names
    )


def _name_max(directory: Path) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # not POSIX, or no answer: the common limit
        return 255


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output directory {directory}: {exc.strerror or exc}"
        ) from exc


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # nothing more we can do; the name is hidden at least
        pass


# --------------------------------------------------------------------------- running

#: (index in the batch, item, its output path or None when the item carries an error)
_Task = tuple[int, InputItem, "Path | None"]
_Slots = list["dict[str, Any] | None"]


def run_batch(
    items: Sequence[InputItem],
    process_fn: ProcessFn,
    *,
    options: BatchOptions,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> BatchResult:
    """Process every item and report each one; never stop at a failed file.

    Parameters
    ----------
    items
        From :func:`collect_inputs`.
    process_fn
        ``process_fn(input_path, output_path) -> dict | None``; see :data:`ProcessFn`.
        With ``options.jobs > 1`` it is called from several threads at once.
    options
        Naming, overwrite policy and reporting.
    stdout, stderr
        Streams for JSON records and messages; default: ``sys.stdout`` / ``sys.stderr``
        at call time.

    Returns
    -------
    BatchResult
        Records in input order: ``{input, output, status: ok|skipped|error, error,
        seconds, device, models}`` plus whatever ``process_fn`` returned; a skipped file
        has ``reason``, a file redone because the run log shows it stale has ``redone``.

    Raises
    ------
    OutputNameError
        From :func:`plan_outputs`, before any file is processed.
    OutputError
        ``options.run_log`` cannot be read or appended to (before any file is processed).
    """
    plan = plan_outputs(items, options)
    run_log = RunLog(options.run_log) if options.run_log is not None else None
    reporter = _Reporter(
        options,
        stdout if stdout is not None else sys.stdout,
        stderr if stderr is not None else sys.stderr,
        total=len(items),
    )
    result = BatchResult()
    slots: list[dict[str, Any] | None] = [None] * len(items)
    tasks: list[_Task] = [
        (i, item, target) if isinstance(target, Path) else (i, target, None)
        for i, (item, target) in enumerate(zip(items, plan))
    ]
    try:
        if options.jobs == 1 or len(tasks) <= 1:
            _run_serial(tasks, process_fn, options, reporter, slots, run_log)
        else:
            _run_pool(tasks, process_fn, options, reporter, slots, run_log)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        reporter.close()
    result.records = [r for r in slots if r is not None]
    if result.interrupted:
        reporter.message(f"interrupted: {len(result.records)} of {len(items)} files done")
    return result


def _run_serial(
    tasks: Sequence[_Task],
    process_fn: ProcessFn,
    options: BatchOptions,
    reporter: "_Reporter",
    slots: _Slots,
    run_log: RunLog | None,
) -> None:
    if isinstance(process_fn, FileStages) and len(tasks) > 1:
        _run_staged(tasks, process_fn, options, reporter, slots, run_log)
        return
    for index, item, out in tasks:
        record = _process_one(item, out, process_fn, options, reporter, run_log)
        slots[index] = record
        reporter.record(record)


def _run_staged(
    tasks: Sequence[_Task],
    stages: FileStages,
    options: BatchOptions,
    reporter: "_Reporter",
    slots: _Slots,
    run_log: RunLog | None,
) -> None:
    """The serial batch with the next file's load and the last file's save in the background.

    Only the main thread reports, file by file in input order; the two helper threads
    just run a step and keep its outcome in the file's :class:`_FileRun`.
    """
    # Daemon threads (nnip.core.background), not executors: see why there.
    def begin(task: _Task) -> tuple[int, _FileRun, Background | None]:
        index, item, out = task
        run = _FileRun(item, out, options, run_log)
        loading = (Background(run.attempt, stages.load, item.path, name="nnip-load")
                   if run.begin() else None)
        return index, run, loading

    def settle(pending: tuple[int, _FileRun, Background]) -> None:
        index, run, saving = pending
        extra = saving.result()
        if slots[index] is None:  # once, also when Ctrl-C came while it was reported
            slots[index] = run.finish(extra, reporter)
            reporter.record(slots[index])

    queue = iter(tasks)
    ahead: tuple[int, _FileRun, Background | None] | None = begin(next(queue))
    behind: tuple[int, _FileRun, Background] | None = None  # the save in flight
    try:
        while ahead is not None:
            index, run, loading = ahead
            loaded = loading.result() if loading is not None else None
            loading = ahead = None
            following = next(queue, None)
            ahead = begin(following) if following is not None else None
            if behind is not None and behind[2].done():  # report as soon as possible
                settle(behind)
                behind = None
            processed = run.attempt(stages.process, loaded, run.out) if run.ok else None
            del loaded
            if behind is not None:
                settle(behind)
                behind = None
            if run.ok:
                saving = Background(run.attempt, stages.save, processed, run.out,
                                    name="nnip-save")
                behind = (index, run, saving)
            else:
                slots[index] = run.finish(None, reporter)
                reporter.record(slots[index])
            del processed
        if behind is not None:
            settle(behind)
    except KeyboardInterrupt:
        # The save in flight finishes (its write is atomic) and is reported; a file
        # loaded ahead is dropped.
        if behind is not None:
            reporter.message("interrupted: finishing 1 file(s) already started")
            settle(behind)
        raise


def _run_pool(
    tasks: Sequence[_Task],
    process_fn: ProcessFn,
    options: BatchOptions,
    reporter: "_Reporter",
    slots: _Slots,
    run_log: RunLog | None,
) -> None:
    # Threads, not processes: onnxruntime and numpy release the GIL, and one Engine (with
    # its cached sessions) is shared. Submitting lazily keeps at most `jobs` files in flight,
    # so Ctrl-C only waits for those.
    pending = iter(tasks)
    running: dict[Future[dict[str, Any]], int] = {}
    with ThreadPoolExecutor(max_workers=options.jobs, thread_name_prefix="nnip-batch") as pool:
        try:
            while True:
                while len(running) < options.jobs:
                    task = next(pending, None)
                    if task is None:
                        break
                    index, item, out = task
                    future = pool.submit(
                        _process_one, item, out, process_fn, options, reporter, run_log
                    )
                    running[future] = index
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    slots[index] = future.result()
                    reporter.record(slots[index])
        except KeyboardInterrupt:
            # Files in flight finish (their writes are atomic) and are still reported.
            if running:
                reporter.message(f"interrupted: finishing {len(running)} file(s) already started")
            for future in running:
                future.cancel()
            for future, index in running.items():
                if not future.cancelled():
                    slots[index] = future.result()
                    reporter.record(slots[index])
            raise


def _process_one(
    item: InputItem,
    out: Path | None,
    process_fn: ProcessFn,
    options: BatchOptions,
    reporter: "_Reporter",
    run_log: RunLog | None = None,
) -> dict[str, Any]:
    run = _FileRun(item, out, options, run_log)
    extra = run.attempt(process_fn, item.path, out) if run.begin() else None
    return run.finish(extra, reporter)


class _FileRun:
    """One file of a batch: its record, its checks, and the outcome of each step.

    :meth:`attempt` may run in another thread: it only keeps the first failure and adds
    the step's time; :meth:`finish` (on the reporting thread) prints what the file has to
    say and completes the record. ``seconds`` is the time spent on this file's steps.
    """

    def __init__(
        self, item: InputItem, out: Path | None, options: BatchOptions, run_log: RunLog | None
    ) -> None:
        self.item, self.out, self.options, self.run_log = item, out, options, run_log
        self.record: dict[str, Any] = {
            "input": str(item.path),
            "output": str(out) if out is not None else None,
            "status": "ok",
            "error": None,
            "seconds": 0.0,
            "device": None,
            "models": [],
        }
        self.state: FileState | None = None
        self.failure: tuple[str, str | None] | None = None  # (message, traceback if --debug)
        self.seconds = 0.0

    @property
    def ok(self) -> bool:
        """Neither failed nor skipped: the next step should run."""
        return self.failure is None and self.record["status"] == "ok"

    def begin(self) -> bool:
        """The checks before any work (the item's own error, an existing output); ``ok``."""
        self.attempt(self._check)
        return self.ok

    def _check(self) -> None:
        item, out, options = self.item, self.out, self.options
        if item.error is not None:
            raise item.error
        assert out is not None
        if os.path.lexists(out) and not options.overwrite:
            if not options.skip_existing:
                raise OutputExistsError(f"output {out} exists (use --overwrite or --skip-existing)")
            skip, reason = _skip_existing(item.path, out, options, self.run_log)
            if skip:
                self.record["status"] = "skipped"
                self.record["reason"] = reason
                return
            self.record["redone"] = reason
        # stat'ed before processing: an input changed meanwhile is redone on the next run
        self.state = file_state(item.path) if self.run_log is not None else None

    def attempt(self, step: Callable[..., Any], *args: Any) -> Any:
        """``step(*args)``, timed; a failure is kept (not raised) and gives None."""
        start = time.perf_counter()
        try:
            return step(*args)
        except NnipError as exc:  # a user's problem: one line; --debug shows where it was raised
            self.failure = (str(exc), traceback.format_exc() if self.options.debug else None)
        except Exception as exc:  # a bug: say so, and keep going with the other files
            message = f"internal error: {type(exc).__name__}: {exc}"
            self.failure = (message, traceback.format_exc() if self.options.debug else None)
        finally:
            self.seconds += time.perf_counter() - start
        return None

    def finish(self, extra: Mapping[str, Any] | None, reporter: "_Reporter") -> dict[str, Any]:
        """Complete the record with the last step's ``extra`` fields; print notices or the error."""
        record = self.record
        if self.ok:
            if extra:
                record.update(extra)
            for notice in record.get("notices") or ():
                reporter.notice(self.item.path, str(notice))
            if self.run_log is not None:
                start = time.perf_counter()
                assert self.out is not None
                _log_finished(
                    self.run_log, self.item.path, self.state, self.out, self.options, reporter
                )
                self.seconds += time.perf_counter() - start
        if self.failure is not None:
            message, trace = self.failure
            _fail(record, message)
            reporter.error(self.item.path, message, trace)
        record["seconds"] = round(self.seconds, 4)
        return record


def _skip_existing(
    src: Path, out: Path, options: BatchOptions, run_log: RunLog | None
) -> tuple[bool, str]:
    """``(skip, reason)`` for an existing output under ``skip_existing``."""
    if run_log is None:
        return True, "output exists"
    decision = run_log.decide(src, out, options.settings)
    return decision.skip, decision.reason


def _log_finished(
    run_log: RunLog,
    src: Path,
    state: FileState | None,
    out: Path,
    options: BatchOptions,
    reporter: "_Reporter",
) -> None:
    # A log that cannot be written costs the next run its knowledge, not this file.
    warning = run_log.append(src, state, out, options.settings)
    if warning:
        reporter.notice(src, warning)


def _fail(record: dict[str, Any], message: str) -> None:
    record["status"] = "error"
    record["error"] = message


class _Reporter:
    """Serialises everything a batch prints, so records and messages stay whole lines."""

    def __init__(self, options: BatchOptions, stdout: TextIO, stderr: TextIO, total: int) -> None:
        self._options = options
        self._stdout = stdout
        self._stderr = stderr
        self._lock = threading.Lock()
        self._bar = self._make_bar(total)

    def _make_bar(self, total: int):
        show = self._options.progress
        if show is None:
            show = not self._options.quiet and _isatty(self._stderr)
        if not show or total == 0:
            return None
        from tqdm import tqdm  # only when a bar is shown

        return tqdm(total=total, unit="file", file=self._stderr, dynamic_ncols=True, leave=False)

    def _write_err(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._stderr)
        else:
            print(text, file=self._stderr, flush=True)

    def error(self, path: Path, message: str, trace: str | None = None) -> None:
        # Errors are printed even with --quiet: they are the one thing the user must see.
        with self._lock:
            if trace:
                self._write_err(trace.rstrip("\n"))
            self._write_err(f"{path}: {message}")

    def notice(self, path: Path, text: str) -> None:
        if not self._options.quiet:
            with self._lock:
                self._write_err(f"{path}: warning: {text}")

    def message(self, text: str) -> None:
        with self._lock:
            self._write_err(text)

    def record(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            if self._options.json:
                print(json.dumps(record, default=str), file=self._stdout, flush=True)
            if self._options.verbose and not self._options.quiet and record["status"] != "error":
                self._write_err(
                    f"{record['input']}: {record['status']} -> {record['output']} "
                    f"({record['seconds']:.2f} s)"
                )
                for line in record.get("details") or ():  # per-file facts, e.g. noise used
                    self._write_err(f"{record['input']}:   {line}")
            if self._bar is not None:
                self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None  # later messages go straight to stderr


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
