"""Ctrl-C (SIGINT) and SIGTERM in the middle of writing an output, then resuming the batch.

The real ``nnups`` script upscales a small file, then a large one whose 16-bit TIFF output
takes a moment to write; the signal is sent once that output's temporary file appears.
The command must stop cleanly: exit 130 (SIGINT) or 143 (SIGTERM), no traceback, the
first output complete, no partial or temporary file of the second, the third not started.
Run again with ``--skip-existing --run-log``, the batch finishes what is left and skips
what is done.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from robustness.bad_files import jpeg_bytes, png_bytes
from robustness.conftest import run_script, script

#: Large enough that writing its 1536 x 1536 16-bit TIFF output takes a visible moment.
BIG = 768


def _batch(tmp_path: Path) -> list[Path]:
    files = {"a.jpg": jpeg_bytes(seed=1), "big.png": png_bytes(BIG, BIG, seed=2),
             "z.jpg": jpeg_bytes(seed=3)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / name for name in files]


def default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal delivers it. A test run started in
    the background by a non-interactive shell inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler: the command would never see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class _Run:
    """One interrupted run: its process, output folder, the signal to send and when it was sent."""

    process: subprocess.Popen
    out: Path
    signum: int
    sent: bool = False


def _interrupt_while_writing(
    runs: list[tuple[list[str], Path, int]], models: Path
) -> list[subprocess.CompletedProcess]:
    """Start every ``(args, out, signum)`` at once; signal each as its big output is written.

    The runs go side by side (two cores), so the suite waits for one start-up, not three.
    """
    env = {**os.environ, "NNIP_MODELS_DIR": str(models)}
    started = [
        _Run(subprocess.Popen([*script("nnups"), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env,
                              preexec_fn=default_sigint), out, signum)
        for args, out, signum in runs
    ]
    deadline = time.monotonic() + 120
    try:
        while not all(run.sent for run in started):
            for run in started:
                if not run.sent and list(run.out.glob(".big_x2.tif.tmp-*")):
                    run.process.send_signal(run.signum)
                    run.sent = True
                elif not run.sent and (run.process.poll() is not None or time.monotonic() > deadline):
                    pytest.fail(f"the big output was never being written (rc {run.process.poll()})")
            time.sleep(0.005)
        results = []
        for run, (args, _, _) in zip(started, runs):
            out_text, err = run.process.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(args, run.process.returncode, out_text, err))
        return results
    finally:
        for run in started:
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()


def test_signals_mid_write_stop_the_batch_cleanly_and_it_resumes(
    tmp_path: Path, upscale_models: Path
) -> None:
    runs, logs = [], []
    for signum in (signal.SIGINT, signal.SIGTERM):
        work = tmp_path / signum.name
        work.mkdir()
        srcs, out, log = _batch(work), work / "out", work / "run.jsonl"
        args = ["upscale", *map(str, srcs), "-o", str(out), "--format", "tiff", "--bits", "16",
                "--run-log", str(log)]
        runs.append((args, out, signum))
        logs.append(log)
    for done, (_, out, signum), code in zip(_interrupt_while_writing(runs, upscale_models),
                                            runs, (130, 143)):
        assert done.returncode == code, (signum, done.stderr)
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        assert done.stderr.splitlines()[-1] == "interrupted: 1 of 3 files done"
        assert sorted(p.name for p in out.iterdir()) == ["a_x2.tif"]  # nothing partial, no temp
    # the Ctrl-C'd batch, run again, finishes what is left and skips what is done
    args, out, _ = runs[0]
    before = (out / "a_x2.tif").stat().st_mtime_ns
    again = run_script("nnups", [*args, "--skip-existing", "--json"], models=upscale_models)
    assert again.code == 0, again.err
    records = [json.loads(line) for line in again.out.splitlines()]
    assert [(Path(r["input"]).name, r["status"]) for r in records] == [
        ("a.jpg", "skipped"), ("big.png", "ok"), ("z.jpg", "ok")]
    assert records[0]["reason"] == "up to date (run log)"
    assert (out / "a_x2.tif").stat().st_mtime_ns == before  # not redone
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.tif", "big_x2.tif", "z_x2.tif"]
    assert len(logs[0].read_text().splitlines()) == 3
