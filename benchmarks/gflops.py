"""Achieved GFLOP/s of each shipped model against this CPU's limit, from the GEMM to the command.

For every model of the manifest (or ``--models``), with the same thread count throughout:

1. the limit: this CPU's float32 matrix-multiply rate, ``2 n^3`` FLOP per product of two
   ``n x n`` matrices, best of ``--repeats``, through numpy (its BLAS, in a child process
   whose BLAS thread variables say ``--threads``) and through onnxruntime's MatMul;
2. one whole-image ``session.run`` on a ``--size`` square input (the model's own session,
   opened by the engine: graph optimisations as in the commands), and one on an input of
   the command's own size (below; random values, in a child process capped at
   ``--whole-gb`` of address space, since a whole 8 MP activation stack takes GBs): the
   issue's reference, "the model's single whole-image session.run". The square run is
   the stricter one (a 1024^2 input stays nearer the caches than a whole photo), so both
   are printed and the command is compared with each;
3. ``Engine.run`` (tiled, default tile) on the same input: what tiling costs;
4. the full command on a real photo of ``--command-mp`` megapixels (not for fp16 variants,
   which only CUDA / TensorRT run; their session.run rows show the CPU's emulation): ``nnups upscale`` on
   a JPEG (upscale models; output JPEG), ``nnip develop --denoise off --lens off`` on a
   simulated DNG (the default demosaic model; output 16-bit TIFF); the faster of two runs
   (:data:`COMMAND_RUNS`), all in fp32 (``NNIP_PRECISION``, set by common.py) unless the
   model named is a variant. Wall time of the whole
   process (start-up, model loading, decoding, network, fidelity/colour steps, encoding),
   the per-file ``seconds`` of its ``--json`` record (without start-up and model loading)
   and, for develop, the demosaic stage's time from ``--verbose --json`` (the network part);
5. where the time of one ``session.run`` goes, by operator (onnxruntime's profiler);
6. a batch of ``--batch-files`` files through :func:`nnip.core.batch.run_batch` with the
   steps as :class:`~nnip.core.batch.FileStages` (the next file decoded and the last one
   written while the network runs) against the same steps in one call per file: the
   overlap's gain (before / after).

A model's GFLOP are its manifest's ``gflop_per_mp`` (2 x multiply-accumulates of its
convolutions per input megapixel; for demosaic per *packed* megapixel, a quarter of the
mosaic's pixels) times the input megapixels, whatever extra work tiling margins cause.
Speed figures are only valid on an idle machine; the load average is printed.

    python benchmarks/gflops.py --threads 2 --results benchmarks/RESULTS.md       # the figures
    python benchmarks/gflops.py --size 256 --command-mp 0.3 --matmul 512 --batch-files 2 \\
        --results /tmp/scratch.md                                                # a quick check
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from common import REPO, Section, describe_model, markdown_table, publish

__all__ = ["matmul_numpy", "matmul_onnxruntime", "session_seconds", "operator_shares", "main"]

#: Where the simulated DNG of the develop command is kept and reused (ignored by git).
WORK = REPO / "benchmarks" / "_work" / "gflops"
#: numpy's BLAS reads one of these, depending on the build.
_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")

_NUMPY_GEMM = """
import sys, time, numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
a @ b  # warm-up
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - start)
print(best)
"""


def best_seconds(repeats: int, fn: Callable[[], Any]) -> float:
    """Smallest wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------- the limit


def matmul_numpy(n: int, threads: int, repeats: int) -> float:
    """GFLOP/s of numpy's float32 ``n x n`` GEMM in a child process limited to ``threads``."""
    env = {**os.environ, **{name: str(threads) for name in _BLAS_THREADS}}
    done = subprocess.run([sys.executable, "-c", _NUMPY_GEMM, str(n), str(repeats)],
                          capture_output=True, text=True, env=env, check=True)
    return 2.0 * n**3 / float(done.stdout.strip().splitlines()[-1]) / 1e9


def matmul_onnxruntime(n: int, threads: int, repeats: int) -> float:
    """GFLOP/s of onnxruntime's float32 MatMul of two ``n x n`` inputs, ``threads`` threads."""
    import onnxruntime as ort  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", io[:2], io[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.random((n, n), dtype=np.float32), "b": rng.random((n, n), dtype=np.float32)}
    return 2.0 * n**3 / best_seconds(repeats, lambda: session.run(None, feed)) / 1e9


# --------------------------------------------------------------------------- one model


def _random_inputs(spec: Any, size: int, cols: int | None = None) -> list[np.ndarray]:
    """Random CHW inputs of ``size`` rows and ``cols`` (default ``size``) columns."""
    rng = np.random.default_rng(0)
    return [rng.random((t.channels, size, cols or size), dtype=np.float32) for t in spec.inputs]


def _feed(session: Any, spec: Any, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Graph inputs by the manifest's names when they match, else by position (as the engine)."""
    graph = [i.name for i in session.get_inputs()]
    names = [t.name for t in spec.inputs]
    order = names if set(names) == set(graph) else graph
    return {name: a[None] for name, a in zip(order, arrays)}


def session_seconds(engine: Any, spec: Any, size: int, repeats: int) -> float:
    """Best wall time of one whole-image ``session.run`` on ``size x size`` inputs."""
    session = engine.session(spec)
    feed = _feed(session, spec, _random_inputs(spec, size))
    return best_seconds(repeats, lambda: session.run(None, feed))


_WHOLE_RUN = """
import resource, sys
limit = int(float(sys.argv[4]) * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.path.insert(0, sys.argv[8])
from gflops import _feed, _random_inputs, best_seconds
from nnip.core.engine import Engine
from nnip.core.models import Registry
registry = Registry(sys.argv[5] or None)
spec = registry.get(sys.argv[1])
session = Engine("cpu", threads=int(sys.argv[7]), registry=registry).session(spec)
feed = _feed(session, spec, _random_inputs(spec, int(sys.argv[2]), int(sys.argv[3])))
print(best_seconds(int(sys.argv[6]), lambda: session.run(None, feed)))
"""


def whole_image_seconds(spec: Any, rows: int, cols: int, threads: int, repeats: int,
                        limit_gb: float, models_dir: Path | None) -> float | None:
    """Best wall time of one ``session.run`` on a whole ``rows x cols`` input (random values),
    in a child process capped at ``limit_gb`` GiB of address space; None where it cannot
    run (out of memory there)."""
    argv = [sys.executable, "-c", _WHOLE_RUN, spec.name, str(rows), str(cols), str(limit_gb),
            str(models_dir or ""), str(repeats), str(threads), str(Path(__file__).resolve().parent)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        print(f"{spec.name}: whole-image run {rows}x{cols} failed: {done.stderr.strip()[-300:]}",
              file=sys.stderr, flush=True)
        return None
    return float(done.stdout.strip().splitlines()[-1])


def tiled_seconds(engine: Any, spec: Any, size: int, repeats: int) -> float:
    """Best wall time of ``Engine.run`` (tiled, the default tile) on the same inputs."""
    arrays = _random_inputs(spec, size)
    return best_seconds(repeats, lambda: engine.run(spec, arrays))


def operator_shares(spec: Any, size: int, threads: int, runs: int = 2) -> list[tuple[str, int, float]]:
    """(operator, nodes, share of kernel time) of ``runs`` session.runs, largest first."""
    import onnxruntime as ort  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="nnip-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(spec.path), options, providers=["CPUExecutionProvider"])
        feed = _feed(session, spec, _random_inputs(spec, size))
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    spent: collections.Counter[str] = collections.Counter()
    nodes: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            spent[op] += event["dur"]
            nodes[op].add(event["name"])
    total = sum(spent.values()) or 1
    return [(op, len(nodes[op]), us / total) for op, us in spent.most_common()]


# --------------------------------------------------------------------------- the commands


@dataclass
class CommandRun:
    """One run of a command on one file: wall seconds, the record's seconds, network seconds."""

    wall: float
    file_seconds: float | None = None
    network_seconds: float | None = None
    megapixels: float = 0.0  # the model's input megapixels for this file
    note: str = ""
    input_shape: tuple[int, int] = (0, 0)  # the model's input rows x columns for this file


#: Runs of each command; the fastest counts (a first run after other work measured up to
#: ~20 % slower on these hosts, as session.run's first call does, which is not timed).
COMMAND_RUNS = 2


def _run_command(argv: list[str]) -> tuple[float, dict[str, Any]]:
    """Best wall seconds of :data:`COMMAND_RUNS` runs of ``argv`` and that run's last
    ``--json`` record; a failure raises."""
    best: tuple[float, dict[str, Any]] | None = None
    for _ in range(COMMAND_RUNS):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} ... failed (rc {done.returncode}): "
                               f"{done.stderr.strip()[-400:]}")
        if best is None or wall < best[0]:
            best = (wall, json.loads(done.stdout.strip().splitlines()[-1]))
    return best


def upscale_command(spec: Any, megapixels: float, threads: int, work: Path) -> CommandRun:
    """``nnups upscale`` of a ``megapixels`` JPEG made from a real photo, JPEG out."""
    from upscale_speed import make_test_jpeg, nnups_command  # noqa: PLC0415

    width = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    height = int(round(width / 1.5))
    source = work / "photo.jpg"
    note = make_test_jpeg(source, width, height)
    argv = [*nnups_command(), "upscale", str(source), "-o", str(work / "out"), "--model", spec.name,
            "--device", "cpu", "--threads", str(threads), "--overwrite", "--json", "--quiet"]
    wall, record = _run_command(argv)
    return CommandRun(wall, record.get("seconds"), None, width * height / 1e6, note, (height, width))


def develop_command(megapixels: float, threads: int, work: Path) -> CommandRun:
    """``nnip develop --denoise off --lens off`` (network demosaic) of a simulated DNG."""
    from develop_end_to_end import nnip_command  # noqa: PLC0415
    from develop_speed import make_big_dng  # noqa: PLC0415

    width = int(round((megapixels * 1e6 * 1.5) ** 0.5)) // 2 * 2
    height = int(round(width / 1.5)) // 2 * 2
    dng = WORK / f"raw_{width}x{height}.dng"
    note = make_big_dng(dng, width, height)
    (work / dng.name).symlink_to(dng)  # the overlap batch copies it from here
    argv = [*nnip_command(), "develop", str(dng), "-o", str(work / "out"), "--demosaic", "nn",
            "--denoise", "off", "--lens", "off", "--format", "tiff", "--bits", "16",
            "--device", "cpu", "--threads", str(threads), "--overwrite", "--json", "--verbose"]
    wall, record = _run_command(argv)
    network = (record.get("timings") or {}).get("demosaic")
    # the network's input is the packed mosaic: a quarter of the pixels
    return CommandRun(wall, record.get("seconds"), network, width * height / 4e6, note,
                      (height // 2, width // 2))


# --------------------------------------------------------------------------- overlap


def _upscale_stages(engine: Any, spec: Any) -> Any:
    """What ``nnups upscale`` does per file, as FileStages (JPEG out)."""
    from nnip.core.batch import FileStages, atomic_write  # noqa: PLC0415
    from nnip.core.imageio import read_image, write_image  # noqa: PLC0415
    from nnups.upscale import upscale_image  # noqa: PLC0415

    def save(result: Any, dst: Path) -> None:
        atomic_write(dst, lambda tmp: write_image(tmp, result, format="jpeg"))

    return FileStages(read_image, lambda image, dst: upscale_image(image, engine, spec), save)


def _develop_stages(engine: Any, registry: Any) -> Any:
    """What ``nnip develop --denoise off --lens off`` does per file, as FileStages."""
    from nnip.core.batch import FileStages, atomic_write  # noqa: PLC0415
    from nnip.develop.pipeline import DevelopOptions  # noqa: PLC0415
    from nnip.develop.process import develop_raw  # noqa: PLC0415
    from nnip.raw.frame import read_raw  # noqa: PLC0415

    options = DevelopOptions(demosaic="nn", denoise="off", lens="off")

    def save(developed: Any, dst: Path) -> None:
        atomic_write(dst, developed.write)

    return FileStages(read_raw, lambda raw, dst: develop_raw(raw, options, engine, registry), save)


def overlap_seconds(stages: Any, source: Path, copies: int, work: Path) -> tuple[float, float]:
    """(staged, one call per file) wall seconds of a batch of ``copies`` copies of ``source``."""
    from nnip.core.batch import BatchOptions, InputItem, run_batch  # noqa: PLC0415

    inputs = work / "batch"
    inputs.mkdir(exist_ok=True)
    items = []
    for i in range(copies):
        path = inputs / f"{i:03d}{source.suffix}"
        if not path.exists():
            path.write_bytes(source.read_bytes())
        items.append(InputItem(path))
    ext = "jpg" if source.suffix.lower() in (".jpg", ".jpeg") else "tif"
    options = BatchOptions(output_dir=work / "batch-out", suffix="_out", ext=ext, overwrite=True,
                           progress=False, quiet=True)
    times = []
    for process in (stages, lambda src, dst: stages(src, dst)):  # the lambda: no overlap
        start = time.perf_counter()
        result = run_batch(items, process, options=options)
        times.append(time.perf_counter() - start)
        if result.exit_code != 0:
            raise RuntimeError(f"overlap batch failed: {result.records}")
    return times[0], times[1]


# --------------------------------------------------------------------------- main


@dataclass
class ModelRow:
    spec: Any
    session: float = 0.0
    tiled: float = 0.0
    whole: float | None = None  # session.run on the command's whole input
    command: CommandRun | None = None
    operators: list[tuple[str, int, float]] = field(default_factory=list)
    overlap: tuple[float, float] | None = None


def _rate(gflop: float, seconds: float | None) -> float | None:
    return gflop / seconds if seconds else None


def _cell(rate: float | None, reference: float | None) -> str:
    if rate is None:
        return "-"
    share = f" ({rate / reference:.0%})" if reference else ""
    return f"{rate:.1f}{share}"


def _batch_share(row: ModelRow, files: int, size: int) -> str:
    """The staged batch's network GFLOP/s against session.run's (its files are the command's)."""
    if row.overlap is None or row.command is None:
        return "-"
    session = row.spec.gflop_per_mp * size * size / 1e6 / row.session
    batch = row.spec.gflop_per_mp * row.command.megapixels * files / row.overlap[0]
    return _cell(batch, session)


def _main_table(rows: Sequence[ModelRow], limit: float, size: int) -> str:
    table = []
    for row in rows:
        gflop = row.spec.gflop_per_mp * size * size / 1e6
        session = gflop / row.session
        run = row.command
        if run is not None:
            cmd_gflop = row.spec.gflop_per_mp * run.megapixels
            whole = _rate(cmd_gflop, row.whole)
            command = [_cell(whole, session),
                       _cell(_rate(cmd_gflop, run.wall), session),
                       _cell(_rate(cmd_gflop, run.file_seconds), session),
                       _cell(_rate(cmd_gflop, run.network_seconds), session),
                       _cell(_rate(cmd_gflop, run.wall), whole)]
        else:
            command = ["-"] * 5
        table.append([row.spec.name, f"{row.spec.gflop_per_mp:.1f}", f"{limit:.1f}",
                      _cell(session, limit), _cell(gflop / row.tiled, session), *command])
    headers = ["model", "GFLOP/MP", "matmul GFLOP/s", f"session.run {size}^2 GFLOP/s (% of matmul)",
               "Engine.run tiled (% of session.run)",
               "session.run, the command's whole input (% of session.run)",
               "full command, wall (% of session.run)",
               "command, per-file seconds (%)", "command, network stage (%)",
               "full command, wall (% of the whole-input session.run)"]
    return markdown_table(headers, table)


def _verdicts(rows: Sequence[ModelRow], size: int, bar: float = 0.85) -> list[str]:
    """The 85 % bar per model, against both references (whole input: the issue's words)."""
    lines = []
    for row in rows:
        run = row.command
        if run is None:
            continue
        cmd_rate = row.spec.gflop_per_mp * run.megapixels / run.wall
        square = row.spec.gflop_per_mp * size * size / 1e6 / row.session
        whole = row.spec.gflop_per_mp * run.megapixels / row.whole if row.whole else None
        against_whole = (f"{cmd_rate / whole:.0%} of the whole-input session.run "
                         f"({'pass' if cmd_rate >= bar * whole else 'FAIL'})"
                         if whole else "whole-input session.run did not run")
        lines.append(f"- {row.spec.name}: full command {cmd_rate:.1f} GFLOP/s = {against_whole}; "
                     f"{cmd_rate / square:.0%} of the {size}^2 session.run "
                     f"({'pass' if cmd_rate >= bar * square else 'FAIL'})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names (default: every model)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul", type=int, default=2048, metavar="N", help="GEMM side")
    parser.add_argument("--size", type=int, default=1024, help="session.run input side (pixels)")
    parser.add_argument("--command-mp", type=float, default=8.0,
                        help="megapixels of the command's input image (0: skip the commands)")
    parser.add_argument("--batch-files", type=int, default=3,
                        help="files of the overlap batch (0: skip it)")
    parser.add_argument("--whole-gb", type=float, default=16.0,
                        help="address-space cap of the whole-input session.run (0: skip it)")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)

    from nnip.core.engine import Engine  # noqa: PLC0415
    from nnip.core.models import Registry  # noqa: PLC0415

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    numpy_rate = matmul_numpy(args.matmul, args.threads, args.repeats)
    ort_rate = matmul_onnxruntime(args.matmul, args.threads, args.repeats)
    limit = max(numpy_rate, ort_rate)
    print(f"matmul {args.matmul}^3: numpy {numpy_rate:.1f}, onnxruntime {ort_rate:.1f} GFLOP/s", flush=True)

    registry = Registry(args.models_dir)
    names = args.models.split(",") if args.models else registry.names()
    engine = Engine("cpu", threads=args.threads, registry=registry)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nnip-gflops-") as tmp:
        work = Path(tmp)
        for name in names:
            spec = registry.get(name)
            row = ModelRow(spec)
            row.session = session_seconds(engine, spec, args.size, args.repeats)
            row.tiled = tiled_seconds(engine, spec, args.size, args.repeats)
            row.operators = operator_shares(spec, args.size, args.threads)
            task_work = work / spec.name
            task_work.mkdir()
            # nnip develop has no --model: only the default demosaic model runs in it
            develops = spec.task == "demosaic" and registry.find("demosaic").name == spec.name
            # fp16 files run only on CUDA / TensorRT (--precision auto); onnxruntime's CPU
            # provider emulates them with casts, so a CPU command of one measures nothing real.
            gpu_only = spec.precision == "fp16"
            if args.command_mp > 0 and spec.task == "upscale" and not gpu_only:
                row.command = upscale_command(spec, args.command_mp, args.threads, task_work)
                source = task_work / "photo.jpg"
                stages = _upscale_stages(engine, spec)
            elif args.command_mp > 0 and develops:
                row.command = develop_command(args.command_mp, args.threads, task_work)
                source = next(task_work.glob("raw_*.dng"))
                stages = _develop_stages(engine, registry)
            else:
                stages = None
            if row.command is not None and args.whole_gb > 0:
                row.whole = whole_image_seconds(spec, *row.command.input_shape, args.threads,
                                                max(1, args.repeats - 1), args.whole_gb,
                                                args.models_dir)
            if stages is not None and args.batch_files > 0:
                row.overlap = overlap_seconds(stages, source, args.batch_files, task_work)
            print(f"{spec.name}: session.run {row.session:.3f} s, tiled {row.tiled:.3f} s"
                  + (f", command {row.command.wall:.1f} s" if row.command else ""), flush=True)
            rows.append(row)

    body = [
        f"Limit: float32 GEMM {args.matmul}^3 with {args.threads} threads, best of {args.repeats}: "
        f"numpy {numpy_rate:.1f} GFLOP/s, onnxruntime MatMul {ort_rate:.1f} GFLOP/s (the larger is "
        f"the matmul column). session.run and Engine.run: {args.size}x{args.size} random input, "
        f"CPUExecutionProvider, {args.threads} threads. Commands: {args.command_mp:g} MP input "
        "(upscale: JPEG from a real photo -> JPEG; develop: simulated DNG -> 16-bit TIFF, "
        "--denoise off --lens off), --threads "
        f"{args.threads}; wall = the whole process, per-file = its --json seconds, network stage "
        f"= develop's demosaic stage timing. Load average before the runs: {load} (figures are "
        "only valid on an idle machine).",
        "",
        _main_table(rows, limit, args.size),
        "",
        "Bar (full command >= 85 % of the model's single-run throughput): the issue names the "
        "model's single whole-image session.run, here on an input of the command's own size "
        "(best of "
        f"{max(1, args.repeats - 1)} after a warm-up); the {args.size}^2 run is the stricter "
        "reference and is shown too.",
        "",
        *_verdicts(rows, args.size),
        "",
    ]
    for row in rows:
        if row.command is not None and row.command.note:
            body.append(f"- {row.spec.name} command input: {row.command.note}")
    body += ["", "Where one session.run's time goes (onnxruntime profiler, kernel time by operator):", ""]
    op_rows = [[row.spec.name, op, nodes, f"{share:.0%}"]
               for row in rows for op, nodes, share in row.operators if share >= 0.01]
    body.append(markdown_table(["model", "operator", "nodes", "share"], op_rows))
    overlap_rows = [[row.spec.name, args.batch_files, f"{row.overlap[1]:.2f}", f"{row.overlap[0]:.2f}",
                     f"{row.overlap[1] / row.overlap[0]:.2f}x", _batch_share(row, args.batch_files, args.size)]
                    for row in rows if row.overlap]
    if overlap_rows:
        body += ["", "Overlapped I/O (run_batch, --jobs 1): the next file decoded and the last one "
                 "written while the network runs (FileStages), against the same steps in one "
                 "call per file (before):", "",
                 markdown_table(["model", "files", "one call per file, s", "FileStages, s",
                                 "speed-up", "FileStages GFLOP/s (% of session.run)"], overlap_rows)]
    publish(Section("gflops", "Achieved GFLOP/s: matmul limit, session.run, tiled, full command",
                    "\n".join(body), models=[describe_model(r.spec) for r in rows], argv=argv),
            args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
