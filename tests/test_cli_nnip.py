"""``nnip``: version, models table, and ``develop`` end to end on tiny synthetic DNGs.

The DNGs are written by the project's own writer (a random mosaic: LibRaw decodes it, the
pipeline develops it); the demosaic model is a real one-layer ONNX graph in a temporary
models directory that NNIP_MODELS_DIR points at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from nnip.cli import cli
from nnip.raw.dng import write_dng
from onnx_builders import conv_net, install

#: Adobe's ColorMatrix2 (D65) of a Canon EOS 5D Mark III: XYZ -> camera.
CAM_FROM_XYZ = np.array([[6722, -635, -963], [-4287, 12460, 2028], [-908, 2162, 5668]]) / 1e4


@pytest.fixture()
def empty_models(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    (directory / "manifest.json").write_text('{"format_version": 1, "models": []}')
    return directory


@pytest.fixture()
def demosaic_models(tmp_path: Path) -> Path:
    directory = tmp_path / "demosaic-models"
    packed = {"name": "image", "channels": 4, "layout": "bayer_packed", "transfer": "linear"}
    rgb = {"name": "output", "channels": 3, "layout": "rgb", "transfer": "linear"}
    install(
        directory,
        {"demosaic-tiny": conv_net(4, 3, layers=1, scale=2, seed=5)},
        task="demosaic",
        overrides={"demosaic-tiny": {"inputs": [packed], "outputs": [rgb]}},
    )
    return directory


@pytest.fixture()
def runner(empty_models: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("NNIP_MODELS_DIR", str(empty_models))
    return CliRunner()


def _dng(path: Path, seed: int = 0) -> Path:
    """A 48x32 RGGB DNG of random raw values (a uniform one would read as 'no data')."""
    rng = np.random.default_rng(seed)
    mosaic = rng.integers(1000, 9000, (32, 48)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dng(path, mosaic, pattern="RGGB", black_level=512, white_level=16383,
              color_matrix1=CAM_FROM_XYZ, as_shot_neutral=(0.5, 1.0, 0.7))
    return path


def _hidden(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob(".*")]


# --------------------------------------------------------------------------- develop


def test_develop_writes_a_tiff_beside_the_raw(runner: CliRunner, tmp_path: Path) -> None:
    src = _dng(tmp_path / "IMG_0001.dng")
    result = runner.invoke(cli, ["develop", str(src), "--demosaic", "bilinear", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = tmp_path / "IMG_0001.tif"
    with PILImage.open(out) as image:
        assert image.format == "TIFF" and image.size == (48, 32)
    record = json.loads(result.stdout)
    assert record["status"] == "ok" and record["output"] == str(out)
    assert record["device"] == "cpu" and record["models"] == []
    assert (record["format"], record["bits"], record["demosaic"]) == ("tiff", 16, "bilinear")
    assert _hidden(tmp_path) == []


def test_develop_with_the_network_demosaic(demosaic_models: Path, tmp_path: Path) -> None:
    src = _dng(tmp_path / "x.dng")
    result = CliRunner().invoke(
        cli, ["develop", str(src), "--models-dir", str(demosaic_models), "--format", "png",
              "--bits", "8", "--json"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["models"] == ["demosaic-tiny"] and record["demosaic"] == "nn"
    with PILImage.open(tmp_path / "x.png") as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (48, 32)


def test_missing_demosaic_model_is_a_per_file_error(
    runner: CliRunner, empty_models: Path, tmp_path: Path
) -> None:
    a, b = _dng(tmp_path / "x.dng"), _dng(tmp_path / "y.dng", seed=1)
    result = runner.invoke(cli, ["develop", str(a), str(b), "--json"])
    assert result.exit_code == 1
    message = f"no model for task 'demosaic' installed in {empty_models}"
    assert result.stderr.splitlines() == [f"{a}: {message}", f"{b}: {message}"]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["error", "error"]
    assert records[0]["output"] == str(tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists() and _hidden(tmp_path) == []


def test_bad_inputs_are_per_file_and_the_rest_goes_on(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "notes.CR3").write_text("not a raw file at all\n")
    good = _dng(tmp_path / "good.dng")
    args = [str(tmp_path / "gone.CR3"), str(tmp_path / "dir"), str(tmp_path / "notes.CR3"),
            str(good)]
    result = runner.invoke(cli, ["develop", *args, "--demosaic", "ahd"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        f"{tmp_path / 'gone.CR3'}: no such file or directory",
        f"{tmp_path / 'dir'}: is a directory (use --recursive)",
    ]
    assert len(lines) == 3 and lines[2].startswith(f"{tmp_path / 'notes.CR3'}: ")
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert (tmp_path / "good.tif").exists()
    assert not (tmp_path / "notes.tif").exists()


def test_recursive_picks_raw_files_only(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "card"
    raws = [_dng(root / "DCIM" / "IMG_0001.dng"), _dng(root / "DCIM" / "sub" / "IMG_0002.DNG")]
    (root / "DCIM" / "IMG_0001.JPG").write_bytes(b"jpeg preview")
    result = runner.invoke(
        cli, ["develop", "-r", str(root), "--demosaic", "bilinear", "-o", str(tmp_path / "out"),
              "--json"]
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(l)["input"] for l in result.stdout.splitlines()] == list(map(str, raws))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "IMG_0001.tif", "IMG_0002.tif"
    ]


def test_existing_outputs(runner: CliRunner, tmp_path: Path) -> None:
    src = _dng(tmp_path / "x.dng")
    out = tmp_path / "x.jpg"
    out.write_bytes(b"done before")
    base = ["develop", str(src), "--format", "jpeg", "--demosaic", "bilinear"]
    result = runner.invoke(cli, base)
    assert result.exit_code == 1
    assert result.stderr == f"{src}: output {out} exists (use --overwrite or --skip-existing)\n"
    result = runner.invoke(cli, [*base, "--skip-existing"])
    assert result.exit_code == 0 and result.stderr == "" and out.read_bytes() == b"done before"
    result = runner.invoke(cli, [*base, "--overwrite"])
    assert result.exit_code == 0, result.output
    with PILImage.open(out) as image:
        assert image.format == "JPEG"


def test_verbose_prints_device_and_pipeline_once(runner: CliRunner, tmp_path: Path) -> None:
    srcs = [_dng(tmp_path / "a.dng"), _dng(tmp_path / "b.dng", seed=2)]
    result = runner.invoke(cli, ["develop", *map(str, srcs), "--demosaic", "vng", "-v"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "nnip: device cpu; models none"
    assert any("demosaic: vng" in line for line in lines)
    assert sum("white balance" in line for line in lines) == 1
    assert f"{srcs[1]}: ok -> {tmp_path / 'b.tif'}" in result.stderr


@pytest.mark.parametrize(
    "args, hint",
    [
        (["--format", "bmp"], "--format"),
        (["--format", "jpeg", "--bits", "16"], "jpeg holds 8"),
        (["--bits", "12"], "--bits"),
        (["--colorspace", "cmyk"], "--colorspace"),
        (["--demosaic", "magic"], "--demosaic"),
        (["--wb", "sunset"], "--wb"),
        (["--wb", "99000K"], "--wb"),
        (["--exposure", "20"], "--exposure"),
        (["--denoise", "max"], "--denoise"),
        (["--highlights", "paint"], "--highlights"),
        (["--quality", "101"], "--quality"),
        (["--suffix", "", "--format", "dng"], "empty --suffix"),
        (["--overwrite", "--skip-existing"], "--skip-existing"),
        (["--device", "abacus"], "--device"),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, tmp_path: Path, args: list[str], hint: str) -> None:
    src = _dng(tmp_path / "x.dng")
    result = runner.invoke(cli, ["develop", str(src), *args])
    assert result.exit_code == 2, result.output
    assert hint in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "x.dng"]


def test_accepted_option_values(runner: CliRunner, tmp_path: Path) -> None:
    src = _dng(tmp_path / "x.dng")
    out = tmp_path / "out"
    result = runner.invoke(
        cli,
        ["develop", str(src), "--wb", "5500K", "--exposure", "-1.5", "--colorspace", "prophoto",
         "--demosaic", "bilinear", "--highlights", "reconstruct", "--suffix", "", "-o",
         str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["output"] == str(out / "x.tif") and record["colorspace"] == "prophoto"
    assert record["white_balance"]["mode"] == "5500K"


def test_unavailable_device_fails_the_run_once(runner: CliRunner, tmp_path: Path) -> None:
    from nnip.core.engine import available_devices

    if "cuda" in available_devices():
        pytest.skip("CUDA is available here")
    a, b = _dng(tmp_path / "a.dng"), _dng(tmp_path / "b.dng")
    result = runner.invoke(cli, ["develop", str(a), str(b), "--device", "cuda"])
    assert result.exit_code == 1
    assert result.stderr.startswith("nnip: device 'cuda' is not available")
    assert len(result.stderr.splitlines()) == 1


def test_missing_models_directory(tmp_path: Path) -> None:
    src = _dng(tmp_path / "x.dng")
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
    src = _dng(tmp_path / "x.dng")
    env = {"NNIP_MODELS_DIR": str(empty_models)}
    done = _nnip("develop", str(src), env=env)
    assert done.returncode == 1
    assert done.stderr == f"{src}: no model for task 'demosaic' installed in {empty_models}\n"
    done = _nnip("develop", str(src), "--suffix", "", "--format", "dng", env=env)
    assert done.returncode == 2 and "empty --suffix" in done.stderr
    assert "Traceback" not in done.stderr
