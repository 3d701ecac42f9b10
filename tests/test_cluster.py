"""``--cluster``: batches on a Dask cluster give the local run's files, byte for byte.

A local cluster of two worker processes (one thread each) runs the real commands with the
shipped models (upscale-fast on 48x40 PNGs, demosaic on tiny DNGs). A worker killed while
it holds a file loses nothing: the file is redone by another worker, and no temporary file
is left. Errors look exactly as in a local run. Skipped without the ``distributed`` package.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

distributed = pytest.importorskip("distributed")
import dask.config  # noqa: E402 (after the skip: dask comes with distributed)

from nnip.cli import cli as nnip_cli  # noqa: E402
from nnip.core.cluster import ClusterAddress, parse_cluster_address  # noqa: E402
from nnip.raw.dng import write_dng  # noqa: E402
from nnups.cli import cli as nnups_cli  # noqa: E402
from tests.robustness.test_interrupts import default_sigint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Adobe's ColorMatrix2 (D65) of a Canon EOS 5D Mark III: XYZ -> camera.
CAM_FROM_XYZ = np.array([[6722, -635, -963], [-4287, 12460, 2028], [-908, 2162, 5668]]) / 1e4


@pytest.fixture(scope="module")
def cluster():
    """A client of two local worker processes (the shipped models, as installed)."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=logging.CRITICAL,
    ) as local, distributed.Client(local, set_as_default=False) as client:
        yield client


@pytest.fixture()
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("NNIP_MODELS_DIR", raising=False)  # the shipped models
    return CliRunner()


def _png(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(path)
    return path


def _dng(path: Path, seed: int) -> Path:
    """A 48x32 RGGB DNG of random raw values, by the project's DNG writer."""
    rng = np.random.default_rng(seed)
    mosaic = rng.integers(1000, 9000, (32, 48)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dng(path, mosaic, pattern="RGGB", black_level=512, white_level=16383,
              color_matrix1=CAM_FROM_XYZ, as_shot_neutral=(0.5, 1.0, 0.7))
    return path


def _digests(directory: Path) -> dict[str, str]:
    """sha256 of every file in ``directory``, hidden ones (temporary files) included."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _address(client) -> str:
    return client.scheduler.address


# --------------------------------------------------------------------------- addresses


def test_cluster_addresses() -> None:
    assert parse_cluster_address("local") == ClusterAddress(None, 2)
    assert parse_cluster_address("LOCAL:3") == ClusterAddress(None, 3)
    assert str(parse_cluster_address("tcp://sched:8786")) == "tcp://sched:8786"
    assert str(parse_cluster_address("10.0.0.5:8786")) == "tcp://10.0.0.5:8786"
    for bad in ("local:0", "sched", "http://sched:8786", "tcp://sched:99999", ""):
        with pytest.raises(ValueError):
            parse_cluster_address(bad)


# --------------------------------------------------------------------------- identical files


def test_upscale_on_local_cluster_equals_a_local_run(runner: CliRunner, tmp_path: Path) -> None:
    inputs = [str(_png(tmp_path / "in" / f"p{i}.png", i)) for i in range(4)]
    here = runner.invoke(nnups_cli, ["upscale", *inputs, "-o", str(tmp_path / "here"), "-q"])
    assert here.exit_code == 0, here.output
    there = runner.invoke(
        nnups_cli, ["upscale", *inputs, "-o", str(tmp_path / "there"), "--cluster", "local:2", "-q"]
    )
    assert there.exit_code == 0, there.output
    assert there.stderr == ""
    assert len(_digests(tmp_path / "here")) == 4
    assert _digests(tmp_path / "there") == _digests(tmp_path / "here")


def test_develop_on_cluster_equals_a_local_run(cluster, runner: CliRunner, tmp_path: Path) -> None:
    inputs = [str(_dng(tmp_path / "raw" / f"IMG_{i}.dng", i)) for i in range(3)]
    common = ["develop", *inputs, "--denoise", "off", "--lens", "off", "-q"]
    here = runner.invoke(nnip_cli, [*common, "-o", str(tmp_path / "here")])
    assert here.exit_code == 0, here.output
    there = runner.invoke(
        nnip_cli, [*common, "-o", str(tmp_path / "there"), "--cluster", _address(cluster), "--json"]
    )
    assert there.exit_code == 0, there.output
    assert there.stderr == ""
    assert [r.count('"status": "ok"') for r in there.stdout.splitlines()] == [1, 1, 1]
    assert '"demosaic"' in there.stdout  # the network ran, on the workers
    assert len(_digests(tmp_path / "here")) == 3
    assert _digests(tmp_path / "there") == _digests(tmp_path / "here")


def test_run_log_of_a_cluster_run_resumes_locally(
    cluster, runner: CliRunner, tmp_path: Path
) -> None:
    inputs = [str(_png(tmp_path / f"p{i}.png", i)) for i in range(2)]
    log = str(tmp_path / "run.jsonl")
    first = runner.invoke(
        nnups_cli, ["upscale", *inputs, "--run-log", log, "--cluster", _address(cluster), "-q"]
    )
    assert first.exit_code == 0, first.output
    again = runner.invoke(nnups_cli, ["upscale", *inputs, "--run-log", log, "--skip-existing",
                                      "--json", "-q"])
    assert again.exit_code == 0, again.output
    assert [r.count('"status": "skipped"') for r in again.stdout.splitlines()] == [1, 1]


# --------------------------------------------------------------------------- a killed worker


def _kill_the_worker_of(client, name: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the worker process that is running the task of output ``name``."""
    pids = client.run(os.getpid)  # worker address -> its process id
    while not stop.is_set():
        running = client.run(lambda dask_worker: [str(t.key) for t in dask_worker.state.executing])
        for worker, keys in running.items():
            if any(f"-{name}-" in key for key in keys):
                os.kill(pids[worker], signal.SIGKILL)
                killed.append(pids[worker])
                return
        time.sleep(0.02)


def _upscale_killing_a_worker(cluster, runner: CliRunner, inputs: list[str], out_dir: Path):
    """``nnups upscale`` on the cluster, SIGKILLing the worker that runs ``big.png``."""
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_the_worker_of,
                              args=(cluster, "big_x2.png", killed, stop), daemon=True)
    killer.start()
    try:
        result = runner.invoke(nnups_cli, ["upscale", *inputs, "-o", str(out_dir),
                                           "--cluster", _address(cluster), "-q"])
    finally:
        stop.set()
        killer.join(10)
    assert killed, "the worker was not killed while it held the file"
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted it (for the next tests)
    return result


def _inputs_with_a_slow_one(directory: Path) -> list[str]:
    inputs = [str(_png(directory / f"p{i}.png", i)) for i in range(4)]
    inputs.insert(1, str(_png(directory / "big.png", 9, size=(480, 400))))  # takes a while
    return inputs


def test_a_killed_worker_loses_no_file(cluster, runner: CliRunner, tmp_path: Path) -> None:
    inputs = _inputs_with_a_slow_one(tmp_path / "in")
    here = runner.invoke(nnups_cli, ["upscale", *inputs, "-o", str(tmp_path / "here"), "-q"])
    assert here.exit_code == 0, here.output
    there_dir = tmp_path / "there"
    there_dir.mkdir()
    # what a writer killed mid-write leaves: removed at the end of the batch
    (there_dir / ".p0_x2.png.tmp-0123abcd.png").write_bytes(b"partial")
    there = _upscale_killing_a_worker(cluster, runner, inputs, there_dir)
    assert there.exit_code == 0, there.output
    assert there.stderr == ""
    assert _digests(there_dir) == _digests(tmp_path / "here")  # every file, no hidden one


def test_a_file_whose_workers_all_die_is_one_line(
    cluster, runner: CliRunner, tmp_path: Path
) -> None:
    inputs = _inputs_with_a_slow_one(tmp_path / "in")
    allowed = cluster.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    cluster.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    try:
        result = _upscale_killing_a_worker(cluster, runner, inputs, tmp_path / "out")
    finally:
        cluster.run_on_scheduler(
            lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", allowed))
    assert result.exit_code == 1
    assert result.stderr == (f"{inputs[1]}: every worker that took this file died "
                             "(out of memory, or a crash in a decoder)\n")
    assert sorted(_digests(tmp_path / "out")) == [f"p{i}_x2.png" for i in range(4)]


# --------------------------------------------------------------------------- errors


def test_a_bad_input_is_one_line_as_in_a_local_run(tmp_path: Path) -> None:
    inputs = [str(_png(tmp_path / "a.png", 0)), str(tmp_path / "bad.png"),
              str(_png(tmp_path / "c.png", 1))]
    Path(inputs[1]).write_text("not an image\n")
    env = {k: v for k, v in os.environ.items() if k != "NNIP_MODELS_DIR"}

    def nnups(*args: str) -> subprocess.CompletedProcess:
        # a real process: the workers' stderr is its stderr, so any noise of theirs shows
        return subprocess.run([sys.executable, "-m", "nnups.cli", "upscale", *inputs, *args],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=120)

    here = nnups("-o", str(tmp_path / "here"))
    there = nnups("-o", str(tmp_path / "there"), "--cluster", "local:2")
    assert here.returncode == there.returncode == 1
    assert there.stderr == here.stderr == f"{inputs[1]}: not a PNG (looks like text)\n"
    assert _digests(tmp_path / "there") == _digests(tmp_path / "here")
    assert sorted(_digests(tmp_path / "there")) == ["a_x2.png", "c_x2.png"]


def test_ctrl_c_finishes_the_files_in_flight_and_stops(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the workers get it too."""
    inputs = [str(_png(tmp_path / "in" / f"p{i:02d}.png", i, size=(240, 200))) for i in range(16)]
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "NNIP_MODELS_DIR"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nnups.cli", "upscale", *inputs, "-o", str(out),
         "--cluster", "local:2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        start_new_session=True, preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and any(out.glob("*.png"))) and time.monotonic() < deadline:
            time.sleep(0.05)  # the cluster is up and working
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "interrupted: " in stderr and "Traceback" not in stderr
    written = sorted(out.iterdir())
    assert written and all(not p.name.startswith(".") for p in written)
    for path in written:  # complete files only
        with PILImage.open(path) as image:
            assert image.size == (480, 400)
            image.load()


def test_no_scheduler_at_the_address_is_one_line_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    src = str(_png(tmp_path / "a.png", 0))
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = runner.invoke(nnups_cli, ["upscale", src, "--cluster", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("nnups: --cluster tcp://127.0.0.1:1: no scheduler answers")
    assert "Traceback" not in result.output
    assert not (tmp_path / "a_x2.png").exists()


def test_a_malformed_address_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    src = str(_png(tmp_path / "a.png", 0))
    result = runner.invoke(nnups_cli, ["upscale", src, "--cluster", "sched-without-port"])
    assert result.exit_code == 2
    assert "Invalid value for '--cluster': 'sched-without-port' is neither" in result.stderr
    result = runner.invoke(nnups_cli, ["upscale", src, "--cluster", "local", "--jobs", "2"])
    assert result.exit_code == 2
    assert "--cluster cannot be used together with --jobs" in result.stderr
