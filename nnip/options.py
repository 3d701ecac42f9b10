"""The click layer shared by ``nnip`` and ``nnups``: every shared option defined once.

Options are module-level decorators (rasterio's ``rio/options.py`` habit); callbacks
validate and return typed values or raise :class:`click.BadParameter`, so command bodies
get clean inputs. The few helpers both command bodies need (``--version``, the models
table, turning library errors into exit codes, running a batch) live here too.

=========================  =================================  ====================
decorator                  flag                               used by
=========================  =================================  ====================
``inputs_arg``             ``INPUTS...``                      develop, upscale
``output_dir_opt``         ``-o/--output-dir DIR``            develop, upscale
``suffix_opt(default)``    ``--suffix TEXT``                  develop, upscale
``format_opt(choices)``    ``--format``                       develop, upscale
``bits_opt``               ``--bits 8|16``                    develop, upscale
``quality_opt``            ``--quality 1..100``               develop, upscale
``overwrite_opt``          ``--overwrite``                    develop, upscale
``skip_existing_opt``      ``--skip-existing``                develop, upscale
``run_log_opt``            ``--run-log FILE``                 develop, upscale
``recursive_opt``          ``-r/--recursive``                 develop, upscale
``device_opt``             ``--device``                       develop, upscale
``precision_opt``          ``--precision``                    develop, upscale
``threads_opt``            ``--threads N``                    develop, upscale
``tile_opt``               ``--tile N``                       develop, upscale
``jobs_opt``               ``-j/--jobs N``                    develop, upscale
``cluster_opt``            ``--cluster ADDRESS|local[:N]``    develop, upscale
``json_opt``               ``--json``                         all commands
``quiet_opt``              ``-q/--quiet``                     develop, upscale
``verbose_opt``            ``-v/--verbose``                   develop, upscale
``debug_opt``              ``--debug``                        develop, upscale
``models_dir_opt``         ``--models-dir DIR``               all commands
``version_opt(prog)``      ``--version``                      nnip, nnups groups
=========================  =================================  ====================

``batch_opts`` and ``engine_opts`` apply the usual groups of these at once.

Exit codes: 0 ok, 1 a file (or the whole run) failed, 2 usage error, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM, which stops a batch exactly as Ctrl-C does: files in
flight are finished or removed, never left partial). The core never imports this module
(nor click).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence, TypeVar

import click

from nnip.core.batch import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    BatchOptions,
    InputItem,
    OutputNameError,
    ProcessFn,
    collect_inputs,
    plan_outputs,
    run_batch,
)
from nnip.core.engine import DEVICE_CHOICES, PRECISION_CHOICES
from nnip.core.errors import NnipError
from nnip.core.hugepages import prefer_small_pages
from nnip.core.models import MANIFEST_NAME, MODELS_DIR_ENV, resolve_models_dir, sha256_of

__all__ = [
    "inputs_arg",
    "output_dir_opt",
    "suffix_opt",
    "format_opt",
    "bits_opt",
    "quality_opt",
    "overwrite_opt",
    "skip_existing_opt",
    "run_log_opt",
    "recursive_opt",
    "device_opt",
    "threads_opt",
    "tile_opt",
    "jobs_opt",
    "cluster_opt",
    "json_opt",
    "quiet_opt",
    "verbose_opt",
    "debug_opt",
    "models_dir_opt",
    "version_opt",
    "batch_opts",
    "engine_opts",
    "CommandError",
    "reporting_errors",
    "batch_options",
    "collect_and_check",
    "execute_batch",
    "show_models",
    "markdown_opt",
    "version_text",
    "run_main",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Parameters that change how a batch runs or reports, not what its outputs hold: left out
#: of the settings digest of the run log (a resumed run may use other --jobs or --device).
_NOT_SETTINGS = frozenset({
    "output_dir", "overwrite", "skip_existing", "run_log", "recursive", "jobs", "as_json",
    "quiet", "verbose", "debug", "device", "threads", "tile", "models_dir", "cluster",
})


# --------------------------------------------------------------------------- callbacks


def _exclusive_with(other: str, other_flag: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A flag callback refusing the flag together with ``other`` (whichever comes first)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value and ctx.params.get(other):
            raise click.BadParameter(f"cannot be used together with {other_flag}", ctx, param)
        return value

    return callback


def _check_suffix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if any(sep in value for sep in ("/", "\\", "\0")):
        raise click.BadParameter("must not contain '/', '\\' or NUL", ctx, param)
    return value


def _to_bits(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else int(value)


# --------------------------------------------------------------------------- options

inputs_arg = click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")

output_dir_opt = click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the outputs (created if needed). Default: beside each input.",
)


def suffix_opt(default: str) -> Callable[[F], F]:
    """``--suffix``: text added to each output's file name stem."""
    return click.option(
        "--suffix",
        default=default,
        show_default=True,
        callback=_check_suffix,
        help="Added to the input's name: {stem}{suffix}.{ext}. Empty needs -o another "
        "directory when the extension stays the same.",
    )


def format_opt(choices: Sequence[str], default: str) -> Callable[[F], F]:
    """``--format``: the output file format, from ``choices``."""
    return click.option(
        "--format",
        "format_",
        type=click.Choice(list(choices), case_sensitive=False),
        default=default,
        show_default=True,
        help="Output file format.",
    )


bits_opt = click.option(
    "--bits",
    type=click.Choice(["8", "16"]),
    default=None,
    callback=_to_bits,
    help="Bits per sample of the output. Default: the format's usual depth (or the input's).",
)

quality_opt = click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=95,
    show_default=True,
    help="JPEG quality of JPEG outputs (90 and above keep full colour resolution).",
)

overwrite_opt = click.option(
    "--overwrite",
    is_flag=True,
    callback=_exclusive_with("skip_existing", "--skip-existing"),
    help="Replace existing outputs.",
)

skip_existing_opt = click.option(
    "--skip-existing",
    is_flag=True,
    callback=_exclusive_with("overwrite", "--overwrite"),
    help="Leave existing outputs alone (reported as skipped). Default: an existing output "
    "is an error for that file.",
)

run_log_opt = click.option(
    "--run-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Append each finished file to this log (JSON Lines). With --skip-existing, an "
    "existing output is redone when the log shows its input or the settings changed.",
)

recursive_opt = click.option(
    "-r", "--recursive", is_flag=True, help="Process the files inside directories given as inputs."
)

device_opt = click.option(
    "--device",
    type=click.Choice(list(DEVICE_CHOICES), case_sensitive=False),
    default="auto",
    show_default=True,
    help="Where the networks run (auto picks the fastest available).",
)

precision_opt = click.option(
    "--precision",
    type=click.Choice(list(PRECISION_CHOICES), case_sensitive=False),
    default="auto",
    show_default=True,
    envvar="NNIP_PRECISION",
    help="Which file of each network runs: fp32 (the network as trained), int8 or fp16 "
    "(its quantised variant, where installed; within 0.05 dB on the benchmarks), or auto: "
    "int8 on a CPU with 8-bit dot products (VNNI), fp16 on CUDA/TensorRT, else fp32.",
)

threads_opt = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads per network run. Default: onnxruntime's choice.",
)

tile_opt = click.option(
    "--tile",
    type=click.IntRange(min=16),
    default=None,
    help="Tile size in input pixels (smaller uses less memory), for every network. Default: "
    "each network's own where its manifest states one (lens: 1536 on the CPU), else 768 on "
    "the CPU and 1024 on a GPU.",
)

jobs_opt = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Files processed at the same time.",
)


def _parse_cluster(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A :class:`nnip.core.cluster.ClusterAddress`; the check needs Dask, so it is here."""
    if value is None:
        return None
    try:
        from nnip.core.cluster import parse_cluster_address
    except ImportError:
        raise click.BadParameter(
            "needs the 'distributed' package: pip install 'nnip[cluster]'", ctx, param
        ) from None
    try:
        return parse_cluster_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


cluster_opt = click.option(
    "--cluster",
    default=None,
    callback=_parse_cluster,
    metavar="ADDRESS|local[:N]",
    help="Process the files on a Dask cluster: the address of its scheduler "
    "(tcp://HOST:PORT), or local:N to start N worker processes here (default 2). Inputs, "
    "outputs and --models-dir must have the same paths on every worker.",
)

json_opt = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON on stdout (batch commands: one record per file, as it finishes).",
)

quiet_opt = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    callback=_exclusive_with("verbose", "--verbose"),
    help="No progress bar; only errors on stderr.",
)

verbose_opt = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    callback=_exclusive_with("quiet", "--quiet"),
    help="Say which device and models are used, and what each file became.",
)

debug_opt = click.option(
    "--debug", is_flag=True, help="Show tracebacks of internal errors."
)

models_dir_opt = click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=MODELS_DIR_ENV,
    show_envvar=True,
    default=None,
    help="Directory holding manifest.json and the ONNX models. Default: the installed models.",
)


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


#: Naming, overwrite policy, parallelism and reporting of a batch command.
batch_opts = _stack(
    output_dir_opt,
    overwrite_opt,
    skip_existing_opt,
    run_log_opt,
    recursive_opt,
    jobs_opt,
    cluster_opt,
    json_opt,
    quiet_opt,
    verbose_opt,
    debug_opt,
)

#: Where and how the networks run.
engine_opts = _stack(device_opt, precision_opt, threads_opt, tile_opt, models_dir_opt)


# --------------------------------------------------------------------------- --version


def version_text(prog: str) -> str:
    """Three lines: the program's version, onnxruntime's (with providers), LibRaw's."""
    from nnip import __version__

    lines = [f"{prog} {__version__}"]
    try:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        lines.append(f"onnxruntime {onnxruntime.__version__} (providers: {providers})")
    except ImportError:
        lines.append("onnxruntime not installed")
    try:
        import rawpy

        libraw = ".".join(str(v) for v in rawpy.libraw_version)
        lines.append(f"LibRaw {libraw} (rawpy {rawpy.__version__})")
    except ImportError:
        lines.append("LibRaw not available (rawpy not installed)")
    return "\n".join(lines)


def version_opt(prog: str) -> Callable[[F], F]:
    """``--version``: print :func:`version_text` and exit 0."""

    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(version_text(prog))
            ctx.exit(0)

    return click.option(
        "--version",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=callback,
        help="Show versions (with onnxruntime providers and LibRaw) and exit.",
    )


# --------------------------------------------------------------------------- errors


class CommandError(click.ClickException):
    """A problem with the whole run (no model, unavailable device): ``prog: message``, exit 1."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.prog}: {self.format_message()}", file=file, err=file is None)


@contextlib.contextmanager
def reporting_errors(ctx: click.Context) -> Iterator[None]:
    """Turn a library :class:`NnipError` raised outside the per-file loop into exit 1."""
    try:
        yield
    except OutputNameError as exc:
        raise click.UsageError(str(exc), ctx) from None
    except NnipError as exc:
        raise CommandError(str(exc), ctx.find_root().info_name or "nnip") from None


# --------------------------------------------------------------------------- batches


def batch_options(params: dict[str, Any], *, suffix: str, ext: str | None) -> BatchOptions:
    """:class:`BatchOptions` from a command's parameters (the names the decorators give).

    With ``--run-log``, the settings digest covers every parameter that shapes the
    outputs (all but :data:`_NOT_SETTINGS`), the output name and the models manifest
    (whose sha256 entries change with any model file).
    """
    run_log = params.get("run_log")
    return BatchOptions(
        run_log=run_log,
        settings=_settings_digest(params, suffix, ext) if run_log is not None else "",
        output_dir=params.get("output_dir"),
        suffix=suffix,
        ext=ext,
        overwrite=bool(params.get("overwrite")),
        skip_existing=bool(params.get("skip_existing")),
        jobs=int(params.get("jobs") or 1),
        json=bool(params.get("as_json")),
        quiet=bool(params.get("quiet")),
        verbose=bool(params.get("verbose")),
        debug=bool(params.get("debug")),
    )


def _settings_digest(params: dict[str, Any], suffix: str, ext: str | None) -> str:
    from nnip.core.runlog import settings_digest

    settings = {k: v for k, v in params.items() if k not in _NOT_SETTINGS}
    manifest = resolve_models_dir(params.get("models_dir")) / MANIFEST_NAME
    try:
        settings["manifest"] = sha256_of(manifest)
    except OSError:  # no models: the run fails (or needs none) either way
        settings["manifest"] = None
    return settings_digest({**settings, "suffix": suffix, "ext": ext})


def collect_and_check(
    ctx: click.Context,
    inputs: Sequence[str],
    options: BatchOptions,
    *,
    recursive: bool,
    extensions: Sequence[str] | None,
) -> list[InputItem]:
    """The batch's inputs, after checking the output naming (usage error, exit 2).

    Run it before loading any model, so a naming mistake is reported at once.
    """
    items = collect_inputs(inputs, recursive=recursive, extensions=extensions)
    try:
        plan_outputs(items, options)
    except OutputNameError as exc:
        raise click.UsageError(str(exc), ctx) from None
    return items


def execute_batch(
    ctx: click.Context,
    items: Sequence[InputItem],
    options: BatchOptions,
    make_processor: Callable[..., ProcessFn],
    params: dict[str, Any],
    *args: Any,
) -> NoReturn:
    """Run the batch and leave with its exit code (0 ok, 1 a file failed, 130 interrupted).

    ``make_processor(params, *args)`` returns the per-file function; a problem with the
    whole run it raises (no model, no device) is one line and exit 1. It is called once
    here or, with ``--cluster`` (``params["cluster"]``), once in every worker process: then
    it must be a top-level function and its arguments picklable.
    """
    address = params.get("cluster")
    if address is not None:
        _execute_on_cluster(ctx, items, options, make_processor, params, args, address)
    with reporting_errors(ctx):
        process_fn = make_processor(params, *args)
        result = run_batch(items, process_fn, options=options)
    ctx.exit(result.exit_code)


class _ClusterUnusable(CommandError):
    """``--cluster`` names no usable cluster: one line ``prog: message``, exit 2 (usage)."""

    exit_code = EXIT_USAGE


def _execute_on_cluster(
    ctx: click.Context,
    items: Sequence[InputItem],
    options: BatchOptions,
    make_processor: Callable[..., ProcessFn],
    params: dict[str, Any],
    args: tuple[Any, ...],
    address: Any,
) -> NoReturn:
    """:func:`execute_batch` on a Dask cluster (:mod:`nnip.core.cluster`)."""
    from functools import partial

    from nnip.core.cluster import open_cluster, run_on_cluster
    from nnip.core.errors import ClusterError

    if options.jobs != 1:  # the cluster's worker threads say how many files run at once
        raise click.UsageError("--cluster cannot be used together with --jobs", ctx)
    prog = ctx.find_root().info_name or "nnip"
    # With --verbose each worker says which device and models it loaded, on its own stderr.
    recipe = partial(make_processor, _worker_params(params, address), *args)
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(open_cluster(address, debug=options.debug))
        except ClusterError as exc:
            raise _ClusterUnusable(f"--cluster {address}: {exc}", prog) from None
        if options.verbose:
            threads = client.nthreads()
            click.echo(f"{prog}: cluster {address}: {len(threads)} workers, "
                       f"{sum(threads.values())} threads", err=True)
        with reporting_errors(ctx):
            result = run_on_cluster(items, recipe, client=client, options=options)
    ctx.exit(result.exit_code)


def _worker_params(params: dict[str, Any], address: Any) -> dict[str, Any]:
    """The command's parameters as the workers need them.

    ``--models-dir`` is made absolute (a worker's working directory is not ours). For
    ``local:N`` without ``--threads``, the cores are shared among the N workers: each has
    its own onnxruntime thread pool, and N pools of every core would fight over them.
    """
    worker = dict(params)
    if worker.get("models_dir") is not None:
        worker["models_dir"] = Path(worker["models_dir"]).absolute()
    if address.scheduler is None and worker.get("threads") is None:
        worker["threads"] = max(1, (os.cpu_count() or 1) // address.local_workers)
    return worker


# --------------------------------------------------------------------------- models


markdown_opt = click.option(
    "--markdown", is_flag=True, help="Print a Markdown table (as in the README)."
)


def show_models(
    ctx: click.Context, models_dir: Path | None, task: str | None, as_json: bool,
    markdown: bool = False,
) -> None:
    """Print the manifest's models (those serving ``task``, or all) as a table or JSON."""
    from nnip.core.models import Registry, models_table

    with reporting_errors(ctx):
        registry = Registry(models_dir)
    specs = [s for s in registry if task is None or task in s.tasks]
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    if not specs:
        what = f"{task} models" if task else "models"
        click.echo(f"no {what} installed in {registry.models_dir}", err=True)
        return
    for line in models_table(specs, markdown=markdown):
        click.echo(line)


# --------------------------------------------------------------------------- entry point


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """While inside, SIGTERM stops the program as Ctrl-C does (KeyboardInterrupt).

    Yields a list that holds ``signal.SIGTERM`` once one arrived. Only the first SIGTERM
    interrupts: later ones are ignored, so a supervisor repeating its request cannot cut
    the clean-up (temporary files being removed) short. Outside the main thread (an
    embedding application) signals cannot be handled and nothing changes.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Keep the decoders' chatter off stderr: Python warnings and unhandled log records.

    A damaged file must give one ``path: message`` line, not tifffile's log of every bad
    tag or Pillow's EXIF warnings besides (Python prints both when nobody handles them).
    """
    root = logging.getLogger()
    sink = logging.NullHandler()
    root.addHandler(sink)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(sink)


def run_main(group: click.Group, prog: str, argv: Sequence[str] | None = None) -> NoReturn:
    """The console-script entry point: usage errors exit 2, Ctrl-C 130, SIGTERM 143."""
    prefer_small_pages()  # see nnip.core.hugepages: a process-wide choice, the command's to make
    with _quiet_libraries(), _sigterm_as_interrupt() as terminated:
        code = _main(group, prog, argv, terminated)
    if terminated and code == EXIT_INTERRUPTED:
        code = EXIT_TERMINATED
    sys.exit(code)


def _main(group: click.Group, prog: str, argv: Sequence[str] | None, terminated: list[int]) -> int:
    try:
        code = group.main(args=list(argv) if argv is not None else None, prog_name=prog,
                          standalone_mode=False)
    except click.exceptions.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(f"{prog}: {'terminated' if terminated else 'interrupted'}", err=True)
        return EXIT_INTERRUPTED
    except NnipError as exc:
        click.echo(f"{prog}: {exc}", err=True)
        return EXIT_FAILED
    except BrokenPipeError:
        # `nnip models | head`: the reader left; stay silent as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return code if isinstance(code, int) else 0
