"""Helpers every benchmark script shares: where it ran, what it ran, and where the figures go.

A benchmark prints one Markdown section: title, the exact command, the machine, the date,
the onnxruntime version, then its tables. With ``--results benchmarks/RESULTS.md`` the
section also replaces its own block in that file, between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` (appended when missing; the file is created when missing), so every
figure in RESULTS.md sits beside the command that made it.

Scripts run as ``python benchmarks/NAME.py`` (this folder is then first on ``sys.path``)
and import this module as ``common``. The last part (upscalers) is what the upscaling
benchmarks compare: bicubic, Lanczos and the manifest's models through ``upscale_image``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
import re
import resource
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "REPO",
    "SHARED",
    "shared_path",
    "machine",
    "utc_now",
    "ort_version",
    "command_line",
    "peak_rss_mb",
    "Measured",
    "run_measured",
    "ab_rows",
    "markdown_table",
    "Section",
    "replace_section",
    "publish",
    "add_common_options",
    "load_models",
    "describe_model",
    "Upscaler",
    "bicubic_x2",
    "lanczos_x2",
    "model_x2",
    "upscalers",
]

# The commands' --precision default (auto) runs a model's int8 variant on a VNNI CPU; a
# benchmark that names a model measures that file, so the commands it starts run fp32
# unless it passes --precision itself (or NNIP_PRECISION is set by whoever runs it).
os.environ.setdefault("NNIP_PRECISION", "fp32")
REPO = Path(__file__).resolve().parents[1]
#: Shared data beside the repository (never copied into it); may be absent.
SHARED = REPO.parent / "shared"


# --------------------------------------------------------------------------- where and when


def shared_path(*parts: str) -> Path | None:
    """``../shared/<parts>`` if it exists, else None (the caller skips that part)."""
    path = SHARED.joinpath(*parts)
    return path if path.exists() else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return float("nan")


def machine() -> str:
    """One line: CPU model, logical cores, RAM, OS, and the host's speed when the section is
    written (a shared virtual machine's speed drifts: the same 2048^3 matmul measured 358 and
    301 GFLOP/s on two days, and every speed figure moved with it)."""
    return (f"{_cpu_model()}, {os.cpu_count()} logical cores, {_ram_gib():.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}; float32 matmul now {matmul_gflops():.0f} GFLOP/s")


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` numpy float32 ``size``^3 matrix product, GFLOP/s (~0.2 s)."""
    import numpy as np  # noqa: PLC0415

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def utc_now() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"


def ort_version() -> str:
    import onnxruntime  # noqa: PLC0415 (a few hundred ms; only when a section is printed)

    return onnxruntime.__version__


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as run, relative to the repository root (what to paste to redo it)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", script_text, *args])


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MiB of this process, or of its waited-for children.

    ``ru_maxrss`` is the largest single process, not a sum; Linux reports KiB, macOS bytes.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10
    return usage.ru_maxrss * scale


@dataclass(frozen=True)
class Measured:
    """One command run in its own wrapper process: wall seconds, child peak RSS, exit code."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stderr: str


# The wrapper is a fresh interpreter whose only child is the measured command, so its
# RUSAGE_CHILDREN maximum belongs to that command alone (maxima of runs don't mix).
_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "maxrss": rss, "rc": done.returncode,
                  "stderr": done.stderr[-2000:]}))
"""


def run_measured(command: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> Measured:
    """Run ``command`` (argv list) in a fresh wrapper process; wall time and its peak RSS."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *command], capture_output=True,
                          text=True, env=env, cwd=cwd, check=True)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10
    return Measured(record["seconds"], record["maxrss"] * scale, record["rc"], record["stderr"])


def ab_rows(runs: dict[tuple[str, str], Sequence[Measured]], commands: Sequence[str],
            sides: Sequence[str], digits: int = 2) -> list[list[str]]:
    """Table rows of commands run in turns on two sides (before / after): per side each
    run's wall seconds, the best, the peak RSS; then the speed-up, best against best."""
    rows = []
    for command in commands:
        best = {}
        for side in sides:
            results = runs[(command, side)]
            best[side] = min(r.seconds for r in results)
            rows.append([command, side, " / ".join(f"{r.seconds:.{digits}f}" for r in results),
                         f"{best[side]:.{digits}f}", f"{max(r.peak_rss_mb for r in results):.0f}"])
        before, after = (best[side] for side in sides)
        rows.append([command, "speed-up (best of each)", "", f"{before / after:.{digits + 1}f}x", ""])
    return rows


def best_in_turns(runs: Sequence[tuple[Any, dict]], repeats: int) -> list[float]:
    """Best ``session.run(None, feed)`` seconds of each (session, feed), after one warm-up
    each, measured in turns (so a drift in the machine's load hits all alike)."""
    for session, feed in runs:
        session.run(None, feed)
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, (session, feed) in enumerate(runs):
            start = time.perf_counter()
            session.run(None, feed)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------- Markdown


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; cells are ``str()``-ed; columns of numbers right-aligned."""
    def numeric(cell: object) -> bool:
        try:
            float(str(cell))
        except ValueError:
            return False
        return True

    align = ["---:" if rows and numeric(rows[0][i]) else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Section:
    """One benchmark's Markdown block in RESULTS.md.

    ``name`` keys the block's markers (the script's stem); ``body`` is the tables and
    verdicts; ``models`` lines say which model files were measured.
    """

    name: str
    title: str
    body: str
    models: Sequence[str] = ()
    argv: Sequence[str] | None = None

    def render(self) -> str:
        lines = [
            f"### {self.title}",
            "",
            f"Command: `{command_line(self.argv)}`  ",
            f"Machine: {machine()}  ",
            f"Date: {utc_now()}; onnxruntime {ort_version()}; numpy {np.__version__}; "
            f"peak RSS of the script {peak_rss_mb():.0f} MiB  ",
        ]
        if self.models:
            lines.append("Models: " + "; ".join(self.models) + "  ")
        return "\n".join(lines).rstrip() + "\n\n" + self.body.strip() + "\n"


def replace_section(path: Path, name: str, text: str) -> None:
    """Put ``text`` between ``name``'s markers in ``path`` (replaced, or appended)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old, count=1)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)


def figure_line(alt: str, picture: Path, results: Path | None) -> str:
    """Markdown for ``picture``, linked relative to the results file (else to itself)."""
    link = Path(os.path.relpath(picture.resolve(), (results or picture).resolve().parent))
    return f"![{alt}]({link.as_posix()})"


def publish(section: Section, results: Path | None) -> str:
    """Print the section; with ``results``, also replace its block in that file."""
    text = section.render()
    print("\n" + text, flush=True)
    if results is not None:
        replace_section(results, section.name, text)
        print(f"(section {section.name!r} written to {results})", flush=True)
    return text


# --------------------------------------------------------------------------- models


def add_common_options(parser: argparse.ArgumentParser,
                       models: str = "upscale-fast,upscale-quality") -> None:
    """``--models``, ``--models-dir``, ``--device``, ``--threads``, ``--results``."""
    parser.add_argument("--models", default=models,
                        help=f"comma-separated model names; absent ones are skipped (default {models})")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="directory with manifest.json (default: as nnups resolves it)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime threads (default: onnxruntime's choice)")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md",
                        help="also replace this script's section in that file")


def load_models(args: argparse.Namespace, task: str = "upscale") -> tuple[object | None, list]:
    """The engine and the specs of ``args.models`` that are installed (a note for the others).

    Returns ``(None, [])`` when no model is installed, so baselines still run.
    """
    from nnip.core.engine import Engine  # noqa: PLC0415 (onnxruntime: heavy)
    from nnip.core.errors import ModelError  # noqa: PLC0415
    from nnip.core.models import Registry  # noqa: PLC0415

    try:
        registry = Registry(args.models_dir)
    except ModelError as exc:
        print(f"note: no models ({exc}); baselines only", file=sys.stderr)
        return None, []
    specs = []
    for name in [n for n in args.models.split(",") if n]:
        try:
            specs.append(registry.find(task, name))
        except ModelError as exc:
            print(f"note: {name} skipped: {exc}", file=sys.stderr)
    if not specs:
        return None, []
    return Engine(args.device, threads=args.threads, registry=registry), specs


def describe_model(spec: object) -> str:
    """``name v1 (sha256 0123456789ab, step N, 83 GFLOP/MP)`` for a section's Models line."""
    step = spec.provenance.get("checkpoint_step")  # type: ignore[attr-defined]
    parts = [f"sha256 {spec.sha256[:12]}"]  # type: ignore[attr-defined]
    if step is not None:
        parts.append(f"step {step}")
    if spec.gflop_per_mp:  # type: ignore[attr-defined]
        parts.append(f"{spec.gflop_per_mp:.0f} GFLOP/MP")  # type: ignore[attr-defined]
    return f"{spec.name} v{spec.version} ({', '.join(parts)})"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- upscalers

#: float32 (H, W, C) sRGB-encoded [0, 1] -> float32 (2H, 2W, C); unclipped for baselines.
Upscaler = Callable[[np.ndarray], np.ndarray]


def bicubic_x2(pixels: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(x, 2, 'bicubic')`` (Keys cubic, a = -0.5), float, not clipped."""
    from nnip.simulate.resize import imresize  # noqa: PLC0415

    return imresize(np.asarray(pixels, dtype=np.float32), 2.0)


def lanczos_x2(pixels: np.ndarray) -> np.ndarray:
    """Pillow LANCZOS (a = 3) per channel on 32-bit float planes: no 8-bit rounding, no clip."""
    from PIL import Image as PILImage  # noqa: PLC0415

    height, width = pixels.shape[:2]
    planes = [
        np.asarray(PILImage.fromarray(np.ascontiguousarray(pixels[..., c], dtype=np.float32), mode="F")
                   .resize((2 * width, 2 * height), PILImage.Resampling.LANCZOS))
        for c in range(pixels.shape[2])
    ]
    return np.stack(planes, axis=-1).astype(np.float32)


def model_x2(engine: object, spec: object, *, tile: int | None = None) -> Upscaler:
    """``nnups.upscale.upscale_image`` with ``spec`` (fidelity step included), as nnups runs it.

    The input is presented as a 16-bit RGB/grey image, so the result is clipped to [0, 1]
    like any integer output, and not quantised.
    """
    from nnip.core.imageio import Image, ImageMeta  # noqa: PLC0415
    from nnups.upscale import upscale_image  # noqa: PLC0415

    def run(pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        meta = ImageMeta(format="png", bit_depth=16, mode="rgb" if pixels.shape[2] == 3 else "grey")
        image = Image(pixels=pixels, alpha=None, meta=meta)
        return upscale_image(image, engine, spec, tile=tile).pixels  # type: ignore[arg-type]

    return run


def upscalers(engine: object | None, specs: Sequence[object]) -> dict[str, Upscaler]:
    """Bicubic, Lanczos, then each model by name, in that order."""
    methods: dict[str, Upscaler] = {"bicubic": bicubic_x2, "Lanczos": lanczos_x2}
    for spec in specs:
        methods[spec.name] = model_x2(engine, spec)  # type: ignore[attr-defined]
    return methods
