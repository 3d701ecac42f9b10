"""``--cluster`` gives a local run's files, byte for byte, also when a worker is killed.

For each command (``nnups upscale`` on synthetic PNGs with the shipped upscale model,
``nnip develop`` on DNGs simulated from them with the shipped demosaic model, ``--denoise
off --lens off``), a batch of N files is run three times, each as the real command in its
own process:

1. locally (the reference);
2. with ``--cluster local:2`` (the command starts two worker processes);
3. on a two-worker local cluster this script starts, passed as ``--cluster tcp://...``,
   while the script SIGKILLs a worker process in the middle of a file, ``--kills`` times
   (waiting for the restarted worker in between).

Every output's sha256 is compared with the reference; the files the killed workers were
running are named; hidden files left in the output directory (temporary files of a killed
writer) are counted. Bar (issue 8, point 4): every run exit 0, every file byte-identical,
a killed worker's files redone, no leftovers. Wall times are printed for orientation only
(this is no speed benchmark; they are meaningless on a busy machine).

    python benchmarks/cluster_check.py --files 24 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from common import Section, describe_model, markdown_table, publish

__all__ = ["main"]

COMMANDS = ("upscale", "develop")


# --------------------------------------------------------------------------- inputs


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(height, width, 3) float32 in [0, 1]: random 8-px blocks, smoothed a little."""
    small = rng.random((height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    blocks = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)[:height, :width]
    return (0.5 * blocks + 0.25 * np.roll(blocks, 3, axis=0) + 0.25 * np.roll(blocks, 3, axis=1))


def make_inputs(directory: Path, command: str, files: int, size: tuple[int, int]) -> list[Path]:
    """``files`` inputs for ``command``: 8-bit PNGs (upscale) or simulated DNGs (develop)."""
    from PIL import Image  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        pixels = _texture(np.random.default_rng(i), *size)
        if command == "upscale":
            path = directory / f"img_{i:03d}.png"
            Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(path)
        else:
            from nnip.simulate.pairs import simulate_dng  # noqa: PLC0415

            path = directory / f"IMG_{i:03d}.dng"
            simulate_dng(pixels, path, iso=400.0, optics=False, seed=i)
        paths.append(path)
    return paths


def command_line(command: str, inputs: Sequence[Path], out: Path) -> list[str]:
    if command == "upscale":
        return [sys.executable, "-m", "nnups.cli", "upscale", *map(str, inputs), "-o", str(out),
                "-q"]
    return [sys.executable, "-m", "nnip.cli", "develop", *map(str, inputs), "-o", str(out),
            "--denoise", "off", "--lens", "off", "-q"]


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One batch: its exit code, outputs (name -> sha256), hidden leftovers, wall time."""

    label: str
    returncode: int
    digests: dict[str, str]
    leftovers: list[str]
    seconds: float
    stderr: str
    killed: list[int] = field(default_factory=list)  # worker pids SIGKILLed
    redone: list[str] = field(default_factory=list)  # outputs those workers were running


def run_command(label: str, argv: list[str], out: Path) -> Run:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    files = sorted(out.iterdir()) if out.exists() else []
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in files if not p.name.startswith(".")}
    leftovers = [p.name for p in files if p.name.startswith(".")]
    return Run(label, done.returncode, digests, leftovers, seconds, done.stderr.strip())


#: ``nnip.core.cluster`` names a file's task ``nnip-{output name}-{8 hex}``.
_TASK = re.compile(r"nnip-(?P<name>.+)-[0-9a-f]{8}")


def _executing(dask_worker) -> list[str]:  # runs on a worker (client.run)
    return [str(task.key) for task in dask_worker.state.executing]


def _killer(client, out: Path, files: int, kills: int, run: Run, stop: threading.Event) -> None:
    """SIGKILL a worker while it runs a file, ``kills`` times, spread over the batch."""
    for k in range(kills):
        # the k-th kill once about (k + 1) / (kills + 1) of the files are written
        target = files * (k + 1) // (kills + 1)
        while not stop.is_set():
            written = len([p for p in out.glob("*") if not p.name.startswith(".")])
            if written >= target:
                pids = client.run(os.getpid)
                running = {w: keys for w, keys in client.run(_executing).items() if keys}
                if running:
                    worker, keys = next(iter(running.items()))
                    os.kill(pids[worker], signal.SIGKILL)
                    run.killed.append(pids[worker])
                    run.redone += [m["name"] for m in map(_TASK.fullmatch, keys) if m]
                    break
            time.sleep(0.02)
        if stop.is_set():
            return
        try:
            client.wait_for_workers(2, timeout=60)  # the nanny restarts it
        except TimeoutError:
            return


def run_killing_workers(label: str, argv: list[str], out: Path, files: int, kills: int) -> Run:
    """``argv`` plus ``--cluster`` of a local two-worker cluster whose workers get killed."""
    from distributed import Client, LocalCluster  # noqa: PLC0415

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, set_as_default=False) as client:
        threads = max(1, (os.cpu_count() or 1) // 2)  # as --cluster local:2 shares the cores
        argv = [*argv, "--cluster", cluster.scheduler_address, "--threads", str(threads)]
        pending = Run(label, -1, {}, [], 0.0, "")
        stop = threading.Event()
        killer = threading.Thread(target=_killer, args=(client, out, files, kills, pending, stop),
                                  daemon=True)
        killer.start()
        try:
            run = run_command(label, argv, out)
        finally:
            stop.set()
            killer.join(70)
    run.killed, run.redone = pending.killed, pending.redone
    return run


# --------------------------------------------------------------------------- report


def check(command: str, files: int, size: tuple[int, int], kills: int,
          work: Path) -> tuple[list[list[object]], bool, list[str]]:
    """The three runs of ``command``: table rows, whether all passed, problems to print."""
    inputs = make_inputs(work / command / "in", command, files, size)
    here, local2, killed = (work / command / name for name in ("local", "local2", "killed"))
    reference = run_command("local", command_line(command, inputs, here), here)
    runs = [
        reference,
        run_command("--cluster local:2",
                    [*command_line(command, inputs, local2), "--cluster", "local:2"], local2),
        run_killing_workers(f"--cluster tcp://... ({kills} worker kill{'s' if kills > 1 else ''})",
                            command_line(command, inputs, killed), killed, files, kills),
    ]
    rows, ok, problems = [], True, []
    for run in runs:
        identical = run.digests == reference.digests and len(run.digests) == files
        killing = run is runs[-1]
        redone_ok = bool(run.redone) and all(name in run.digests for name in run.redone)
        good = (run.returncode == 0 and identical and not run.leftovers
                and (not killing or (len(run.killed) == kills and redone_ok)))
        ok &= good
        if run.returncode != 0:
            problems.append(f"{command} {run.label}: rc {run.returncode}: {run.stderr[-300:]}")
        rows.append([
            "nnups upscale" if command == "upscale" else "nnip develop", run.label,
            f"{len(run.digests)}/{files}", run.returncode,
            "yes" if identical else "NO",
            len(run.killed) if killing else "-",
            (f"{len(run.redone)} ({', '.join(run.redone)})" if run.redone else "0")
            if killing else "-",
            len(run.leftovers), f"{run.seconds:.1f}", "pass" if good else "FAIL",
        ])
    return rows, ok, problems


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24, help="files per batch (default 24)")
    parser.add_argument("--size", type=_size, default=(320, 240), metavar="WxH",
                        help="input size (default 320x240)")
    parser.add_argument("--kills", type=int, default=1,
                        help="workers SIGKILLed during the third run (default 1)")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help=f"comma-separated, from {', '.join(COMMANDS)} (default both)")
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md",
                        help="also replace this script's section in that file")
    args = parser.parse_args(argv)
    from nnip.core.models import Registry  # noqa: PLC0415

    registry = Registry()
    models = [describe_model(registry.find(task)) for task in ("upscale", "demosaic")]
    commands = [c for c in args.commands.split(",") if c]
    load = os.getloadavg()
    rows, verdicts, problems = [], [], []
    with tempfile.TemporaryDirectory(prefix="nnip_cluster_check_") as tmp:
        for command in commands:
            print(f"{command}: {args.files} files, 3 runs ...", file=sys.stderr, flush=True)
            got, ok, trouble = check(command, args.files, args.size, args.kills, Path(tmp))
            rows += got
            verdicts.append(ok)
            problems += trouble
    lines = [
        f"Batches of {args.files} files of {args.size[0]}x{args.size[1]} (upscale: 8-bit PNGs of "
        "smoothed random blocks; develop: DNGs simulated from them, ISO 400, `--denoise off "
        "--lens off`, 16-bit TIFF). Each run is the real command in its own process; the "
        "third uses a two-worker local cluster of this script, whose worker running a file "
        f"is SIGKILLed {args.kills} time(s) mid-batch. byte-identical: every output's sha256 "
        "equals the local run's. Leftovers: hidden (temporary) files in the output directory. "
        f"Wall s for orientation only: load average before the runs {load[0]:.2f} / "
        f"{load[1]:.2f} / {load[2]:.2f} ({os.cpu_count()} cores).",
        "",
        markdown_table(["command", "run", "files", "exit", "byte-identical", "workers killed",
                        "files redone", "leftovers", "wall s", "verdict"], rows),
        "",
        f"**Verdict: {'pass' if all(verdicts) else 'FAIL'}** (bar: byte-identical outputs, a "
        "killed worker's files redone, no leftovers, exit 0).",
    ]
    lines += [f"- {p}" for p in problems]
    section = Section("cluster_check", "--cluster: byte-identical outputs, a killed worker "
                      "loses no file", "\n".join(lines), models, argv)
    publish(section, args.results)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
