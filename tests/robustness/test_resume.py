"""Resumable batches through the CLIs: ``--skip-existing`` with ``--run-log``.

What the run log must tell apart: outputs that are up to date (skipped), outputs whose
settings, model or input changed since (redone), and settings that only change how a run
goes (``--jobs``, ``--device``, ``--quiet``: still up to date).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from onnx_builders import conv_net, install
from robustness.bad_files import dng_bytes, jpeg_bytes
from robustness.conftest import Done, rgb_tensor


def _statuses(done: Done) -> list[tuple[str, str]]:
    records = [json.loads(line) for line in done.out.splitlines()]
    return [(Path(r["input"]).name, r["status"] if r["status"] != "ok" or "redone" not in r
             else "redone") for r in records]


@pytest.fixture()
def batch(tmp_path: Path) -> list[str]:
    srcs = []
    for seed, name in enumerate(("a.jpg", "b.jpg")):
        (tmp_path / name).write_bytes(jpeg_bytes(seed=seed))
        srcs.append(str(tmp_path / name))
    return srcs


def test_upscale_resume_decides_by_settings_model_and_input(
    run_main: Callable[..., Done], upscale_models: Path, tmp_path: Path, batch: list[str]
) -> None:
    base = ["upscale", *batch, "-o", str(tmp_path / "out"), "--run-log", str(tmp_path / "log"),
            "--json"]

    def run(*extra: str, models: Path = upscale_models) -> list[tuple[str, str]]:
        done = run_main("nnups", [*base, *extra], models=models)
        assert done.code == 0, done.err
        return _statuses(done)

    assert run() == [("a.jpg", "ok"), ("b.jpg", "ok")]
    assert run("--skip-existing") == [("a.jpg", "skipped"), ("b.jpg", "skipped")]
    assert run("--skip-existing", "--strength", "0.5") == [("a.jpg", "redone"), ("b.jpg", "redone")]
    # how the run goes is not a setting of the outputs (--jobs reports files as they finish)
    assert sorted(run("--skip-existing", "--strength", "0.5", "--jobs", "2", "--device", "cpu",
                      "--quiet")) == [("a.jpg", "skipped"), ("b.jpg", "skipped")]
    # another model file under the same name: the manifest's sha256 changed
    other = tmp_path / "other-models"
    install(other, {"upscale-fast": conv_net(3, 3, layers=1, scale=2, seed=4)},
            overrides={"upscale-fast": {"inputs": [rgb_tensor("image")], "outputs": [rgb_tensor("output")]}})
    assert run("--skip-existing", "--strength", "0.5", models=other) == [
        ("a.jpg", "redone"), ("b.jpg", "redone")]
    Path(batch[1]).write_bytes(jpeg_bytes(seed=9))  # the photographer replaced b
    assert run("--skip-existing", "--strength", "0.5", models=other) == [
        ("a.jpg", "skipped"), ("b.jpg", "redone")]


def test_develop_resume_redoes_outputs_of_other_settings(
    run_main: Callable[..., Done], demosaic_models: Path, tmp_path: Path
) -> None:
    src = tmp_path / "IMG_0001.dng"
    src.write_bytes(dng_bytes(tmp_path))
    base = ["develop", str(src), "-o", str(tmp_path / "out"), "--run-log",
            str(tmp_path / "out" / ".nnip-runlog.jsonl"), "--json", "--skip-existing"]
    for extra, expected in (([], "ok"), ([], "skipped"), (["--exposure", "1"], "redone"),
                            (["--exposure", "1"], "skipped"), (["--wb", "daylight"], "redone")):
        done = run_main("nnip", [*base, *extra], models=demosaic_models)
        assert done.code == 0, done.err
        assert _statuses(done) == [("IMG_0001.dng", expected)]
    log = (tmp_path / "out" / ".nnip-runlog.jsonl").read_text().splitlines()
    assert len(log) == 3 and all(json.loads(line)["output"].endswith("IMG_0001.tif") for line in log)


def test_run_log_is_in_the_help(
    run_main: Callable[..., Done], upscale_models: Path
) -> None:
    done = run_main("nnups", ["upscale", "--help"], models=upscale_models)
    assert done.code == 0 and "--run-log FILE" in done.out
