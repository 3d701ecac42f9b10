"""``nnip``: version, models table, and ``develop``'s options, inputs and per-file errors.

``develop`` is plumbing until the develop pipeline lands: with no model for a network
stage, each file fails with the registry's own one-line message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnip.cli import cli
from onnx_builders import conv_net, install


@pytest.fixture()
def empty_models(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    (directory / "manifest.json").write_text('{"format_version": 1, "models": []}')
    return directory


@pytest.fixture()
def runner(empty_models: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("NNIP_MODELS_DIR", str(empty_models))
    return CliRunner()


def _raw(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"II*\x00" + bytes(60))  # a TIFF-like header; nothing reads it yet
    return path


# --------------------------------------------------------------------------- develop


def test_missing_demosaic_model_is_a_per_file_error(
    runner: CliRunner, empty_models: Path, tmp_path: Path
) -> None:
    a, b = _raw(tmp_path / "x.dng"), _raw(tmp_path / "y.CR3")
    result = runner.invoke(cli, ["develop", str(a), str(b), "--json"])
    assert result.exit_code == 1
    message = f"no model for task 'demosaic' installed in {empty_models}"
    assert result.stderr.splitlines() == [f"{a}: {message}", f"{b}: {message}"]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["error", "error"]
    assert records[0]["output"] == str(tmp_path / "x_nnip.tif")
    assert not (tmp_path / "x_nnip.tif").exists()


def test_next_missing_network_is_named(
    runner: CliRunner, empty_models: Path, tmp_path: Path
) -> None:
    src = _raw(tmp_path / "x.dng")
    result = runner.invoke(cli, ["develop", str(src), "--demosaic", "ahd"])
    assert result.stderr == f"{src}: no model for task 'denoise' installed in {empty_models}\n"
    result = runner.invoke(cli, ["develop", str(src), "--demosaic", "ahd", "--denoise", "off"])
    assert result.stderr == f"{src}: no model for task 'lens' installed in {empty_models}\n"


def test_installed_demosaic_model_moves_on_to_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    install(models, {"demosaic-nn": conv_net(4, 3, layers=1, scale=2)}, task="demosaic")
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models))
    src = _raw(tmp_path / "x.dng")
    result = CliRunner().invoke(cli, ["develop", str(src), "--denoise", "off"])
    assert result.exit_code == 1
    assert result.stderr == f"{src}: no model for task 'lens' installed in {models}\n"


def test_bad_inputs_are_per_file_and_the_rest_goes_on(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    good = _raw(tmp_path / "good.dng")
    result = runner.invoke(
        cli, ["develop", str(tmp_path / "gone.CR3"), str(tmp_path / "dir"), str(good), "--json"]
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{tmp_path / 'gone.CR3'}: no such file or directory"
    assert lines[1] == f"{tmp_path / 'dir'}: is a directory (use --recursive)"
    assert lines[2].startswith(f"{good}: no model for task 'demosaic'")
    assert len(result.stdout.splitlines()) == 3


def test_recursive_picks_raw_files_only(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "card"
    raws = [_raw(root / "DCIM" / "IMG_0001.CR3"), _raw(root / "DCIM" / "IMG_0002.nef")]
    (root / "DCIM" / "IMG_0001.JPG").write_bytes(b"jpeg preview")
    result = runner.invoke(cli, ["develop", "-r", str(root), "--json"])
    assert [json.loads(l)["input"] for l in result.stdout.splitlines()] == list(map(str, raws))


def test_skip_existing_counts_as_ok(runner: CliRunner, tmp_path: Path) -> None:
    src = _raw(tmp_path / "x.dng")
    (tmp_path / "x_nnip.jpg").write_bytes(b"done before")
    result = runner.invoke(cli, ["develop", str(src), "--format", "jpeg", "--skip-existing"])
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize(
    "args, hint",
    [
        (["--format", "bmp"], "--format"),
        (["--format", "jpeg", "--bits", "16"], "--bits"),
        (["--bits", "12"], "--bits"),
        (["--colorspace", "cmyk"], "--colorspace"),
        (["--demosaic", "magic"], "--demosaic"),
        (["--wb", "sunset"], "--wb"),
        (["--wb", "99000K"], "--wb"),
        (["--exposure", "20"], "--exposure"),
        (["--denoise", "max"], "--denoise"),
        (["--suffix", ""], "empty --suffix"),
        (["--overwrite", "--skip-existing"], "--skip-existing"),
        (["--device", "abacus"], "--device"),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, tmp_path: Path, args: list[str], hint: str) -> None:
    src = _raw(tmp_path / "x.dng")
    result = runner.invoke(cli, ["develop", str(src), *args])
    assert result.exit_code == 2, result.output
    assert hint in result.stderr


def test_accepted_option_values(runner: CliRunner, tmp_path: Path) -> None:
    src = _raw(tmp_path / "x.dng")
    out = tmp_path / "out"
    result = runner.invoke(
        cli,
        ["develop", str(src), "--wb", "5500K", "--exposure", "-1.5", "--colorspace", "prophoto",
         "--format", "dng", "--suffix", "", "-o", str(out), "--json"],
    )
    assert result.exit_code == 1  # no models: the options themselves were accepted
    assert json.loads(result.stdout)["output"] == str(out / "x.dng")


def test_unavailable_device_fails_the_run_once(runner: CliRunner, tmp_path: Path) -> None:
    from nnip.core.engine import available_devices

    if "cuda" in available_devices():
        pytest.skip("CUDA is available here")
    a, b = _raw(tmp_path / "a.dng"), _raw(tmp_path / "b.dng")
    result = runner.invoke(cli, ["develop", str(a), str(b), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.stderr.startswith("nnip: device 'cuda' is not available")
    assert len(result.stderr.splitlines()) == 1


def test_missing_models_directory(tmp_path: Path) -> None:
    src = _raw(tmp_path / "x.dng")
    result = CliRunner().invoke(
        cli, ["develop", str(src), "--models-dir", str(tmp_path / "nowhere")]
    )
    assert result.exit_code == 1
    assert result.stderr == f"nnip: models directory {tmp_path / 'nowhere'} does not exist\n"


# --------------------------------------------------------------------------- models, version


def test_models_lists_every_task(tmp_path: Path) -> None:
    models = tmp_path / "models"
    install(models, {"upscale-fast": conv_net(3, 3, layers=1, scale=2)})
    manifest = json.loads((models / "manifest.json").read_text())
    joint = dict(manifest["models"][0], name="raw-joint", task="denoise+demosaic",
                 metrics={"kodak_psnr_db": 41.2})
    manifest["models"].append(joint)
    (models / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["models", "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["name", "upscale-fast", "raw-joint"]
    assert rows[2][1] == "denoise+demosaic" and rows[2][-1] == "kodak_psnr_db=41.2"
    entries = json.loads(CliRunner().invoke(cli, ["models", "--models-dir", str(models), "--json"]).stdout)
    assert [e["task"] for e in entries] == ["upscale", "denoise+demosaic"]


def test_models_with_none_installed(runner: CliRunner, empty_models: Path) -> None:
    result = runner.invoke(cli, ["models"])
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == f"no models installed in {empty_models}\n"
    assert json.loads(runner.invoke(cli, ["models", "--json"]).stdout) == []


# --------------------------------------------------------------------------- the installed script


def _nnip(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("nnip")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "nnip.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_installed_script_version() -> None:
    import onnxruntime
    import rawpy

    done = _nnip("--version")
    assert done.returncode == 0
    from nnip import __version__

    lines = done.stdout.splitlines()
    assert lines[0] == f"nnip {__version__}"
    assert lines[1].startswith(f"onnxruntime {onnxruntime.__version__} (providers: ")
    assert lines[2] == (
        f"LibRaw {'.'.join(map(str, rawpy.libraw_version))} (rawpy {rawpy.__version__})"
    )


def test_installed_script_exit_codes(empty_models: Path, tmp_path: Path) -> None:
    src = _raw(tmp_path / "x.dng")
    env = {"NNIP_MODELS_DIR": str(empty_models)}
    done = _nnip("develop", str(src), env=env)
    assert done.returncode == 1
    assert done.stderr == f"{src}: no model for task 'demosaic' installed in {empty_models}\n"
    done = _nnip("develop", str(src), "--suffix", "", env=env)
    assert done.returncode == 2 and "empty --suffix" in done.stderr
    assert "Traceback" not in done.stderr
