"""``nnups``: upscale end to end with a tiny real 2x ONNX model, models table, version, usage.

The model is a one-layer conv 3->12 + DepthToSpace(2) written into a temporary models
directory with its manifest; NNIP_MODELS_DIR points at it, as a user's would.
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

from nnups.cli import cli
from onnx_builders import conv_net, install


def _tensor(name: str) -> dict:
    return {"name": name, "channels": 3, "layout": "rgb", "range": [0, 1], "transfer": "srgb"}


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    install(
        directory,
        {"upscale-fast": conv_net(3, 3, layers=1, scale=2, seed=1)},
        overrides={"upscale-fast": {"inputs": [_tensor("image")], "outputs": [_tensor("output")]}},
    )
    return directory


@pytest.fixture()
def runner(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    return CliRunner()


def _photo(path: Path, size: tuple[int, int] = (24, 16), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(path)
    return path


def _size(path: Path) -> tuple[int, int]:
    with PILImage.open(path) as image:
        return image.size


# --------------------------------------------------------------------------- upscale


def test_upscale_writes_a_2x_image_beside_the_input(runner: CliRunner, tmp_path: Path) -> None:
    src = _photo(tmp_path / "photo.jpg")
    result = runner.invoke(cli, ["upscale", str(src)])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and result.stdout == ""
    out = tmp_path / "photo_x2.jpg"
    assert _size(out) == (48, 32)
    with PILImage.open(out) as image:
        assert image.format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "photo.jpg", "photo_x2.jpg"]


def test_format_output_dir_and_suffix(runner: CliRunner, tmp_path: Path) -> None:
    src = _photo(tmp_path / "in" / "photo.jpg")
    out_dir = tmp_path / "new" / "deeper"
    result = runner.invoke(
        cli, ["upscale", str(src), "-o", str(out_dir), "--format", "png", "--suffix", ""]
    )
    assert result.exit_code == 0, result.output
    out = out_dir / "photo.png"
    with PILImage.open(out) as image:
        assert image.format == "PNG" and image.size == (48, 32)


def test_json_records_and_verbose_device_line(runner: CliRunner, tmp_path: Path) -> None:
    a, b = _photo(tmp_path / "a.png", seed=1), _photo(tmp_path / "b.png", seed=2)
    result = runner.invoke(cli, ["upscale", str(a), str(b), "--json", "--verbose"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in records] == [str(a), str(b)]
    assert {r["status"] for r in records} == {"ok"}
    assert records[0]["output"] == str(tmp_path / "a_x2.png")
    assert records[0]["models"] == ["upscale-fast"] and records[0]["device"]
    assert records[0]["error"] is None and records[0]["seconds"] > 0
    device_lines = [l for l in result.stderr.splitlines() if l.startswith("nnups: device")]
    assert len(device_lines) == 1 and "upscale-fast" in device_lines[0]


def test_recursive_directory(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _photo(root / "a.png")
    _photo(root / "sub" / "b.jpg")
    (root / "notes.txt").write_text("not a photo")
    result = runner.invoke(cli, ["upscale", "-r", str(root)])
    assert result.exit_code == 0, result.output
    assert _size(root / "a_x2.png") == (48, 32)
    assert _size(root / "sub" / "b_x2.jpg") == (48, 32)
    assert not (root / "notes_x2.txt").exists()


def test_existing_output_error_skip_and_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    src = _photo(tmp_path / "a.png")
    out = tmp_path / "a_x2.png"
    out.write_bytes(b"old")
    result = runner.invoke(cli, ["upscale", str(src)])
    assert result.exit_code == 1
    assert result.stderr == f"{src}: output {out} exists (use --overwrite or --skip-existing)\n"
    assert out.read_bytes() == b"old"

    result = runner.invoke(cli, ["upscale", str(src), "--skip-existing", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "skipped"
    assert out.read_bytes() == b"old"

    result = runner.invoke(cli, ["upscale", str(src), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert _size(out) == (48, 32)


def test_jobs_2_gives_the_same_files_as_jobs_1(runner: CliRunner, tmp_path: Path) -> None:
    srcs = [_photo(tmp_path / "in" / f"{i}.png", seed=i) for i in range(4)]
    outputs = {}
    for jobs in ("1", "2"):
        out_dir = tmp_path / f"jobs{jobs}"
        result = runner.invoke(cli, ["upscale", *map(str, srcs), "-j", jobs, "-o", str(out_dir)])
        assert result.exit_code == 0, result.output
        outputs[jobs] = {p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}
    assert len(outputs["1"]) == 4
    assert outputs["1"] == outputs["2"]


# --------------------------------------------------------------------------- whole-run errors


def test_missing_model_is_one_line_and_exit_1(tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text('{"format_version": 1, "models": []}')
    monkeypatch.setenv("NNIP_MODELS_DIR", str(empty))
    a, b = _photo(tmp_path / "a.png"), _photo(tmp_path / "b.png")
    result = CliRunner().invoke(cli, ["upscale", str(a), str(b)])
    assert result.exit_code == 1
    assert result.stderr == f"nnups: no model for task 'upscale' installed in {empty}\n"
    assert not (tmp_path / "a_x2.png").exists()


def test_unknown_model_name_lists_the_installed_ones(runner: CliRunner, tmp_path: Path) -> None:
    src = _photo(tmp_path / "a.png")
    result = runner.invoke(cli, ["upscale", str(src), "--model", "quality"])
    assert result.exit_code == 1
    assert result.stderr.startswith("nnups: no model named 'quality'")
    assert "installed: upscale-fast" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_model_short_name(runner: CliRunner, tmp_path: Path) -> None:
    src = _photo(tmp_path / "a.png")
    result = runner.invoke(cli, ["upscale", str(src), "--model", "fast", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"] == ["upscale-fast"]


@pytest.mark.parametrize(
    "args, hint",
    [
        (["--overwrite", "--skip-existing"], "--skip-existing"),
        (["--skip-existing", "--overwrite"], "--overwrite"),
        (["--suffix", ""], "empty --suffix"),
        (["--suffix", "a/b"], "--suffix"),
        (["--format", "jpeg", "--bits", "16"], "--bits"),
        (["--format", "bmp"], "--format"),
        (["--strength", "1.5"], "--strength"),
        (["--quality", "0"], "--quality"),
        (["--device", "abacus"], "--device"),
        (["--jobs", "0"], "--jobs"),
        (["--tile", "3"], "--tile"),
        (["--quiet", "--verbose"], "--verbose"),
    ],
)
def test_usage_errors_exit_2_and_touch_nothing(
    runner: CliRunner, tmp_path: Path, args: list[str], hint: str
) -> None:
    src = _photo(tmp_path / "a.png")
    result = runner.invoke(cli, ["upscale", str(src), *args])
    assert result.exit_code == 2, result.output
    assert hint in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "models"]


# --------------------------------------------------------------------------- models, version


def test_models_table_and_json(runner: CliRunner, models_dir: Path) -> None:
    result = runner.invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split()[:5] == ["name", "task", "version", "GFLOP/MP", "params"]
    assert row.split()[:3] == ["upscale-fast", "upscale", "1"]
    result = runner.invoke(cli, ["models", "--json"])
    (entry,) = json.loads(result.stdout)
    assert entry["name"] == "upscale-fast" and entry["scale"] == 2


def test_models_dir_option_beats_the_environment(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["models", "--models-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert result.stderr == f"nnups: models directory {tmp_path / 'nowhere'} does not exist\n"


def test_version_names_onnxruntime_providers_and_libraw() -> None:
    import onnxruntime
    import rawpy

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("nnups ")
    assert f"onnxruntime {onnxruntime.__version__}" in lines[1]
    assert "CPUExecutionProvider" in lines[1]
    assert lines[2].startswith("LibRaw " + ".".join(map(str, rawpy.libraw_version)))


# --------------------------------------------------------------------------- the installed script


def _nnups(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_dir is not None:
        env["NNIP_MODELS_DIR"] = str(env_dir)
    script = Path(sys.executable).with_name("nnups")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "nnups.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_installed_script_end_to_end(models_dir: Path, tmp_path: Path) -> None:
    good = _photo(tmp_path / "good.png")
    missing = tmp_path / "missing.png"
    done = _nnups("upscale", str(good), str(missing), env_dir=models_dir)
    assert done.returncode == 1
    assert done.stderr == f"{missing}: no such file or directory\n"
    assert _size(tmp_path / "good_x2.png") == (48, 32)


def test_installed_script_usage_error_exits_2() -> None:
    done = _nnups("upscale")
    assert done.returncode == 2
    assert "Missing argument" in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_mid_write_exits_130_and_leaves_no_partial_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nnip.core.imageio as imageio

    real_write = imageio.write_image_bands

    def write_then_interrupt(path, bands, **kwargs):
        real_write(path, bands, **kwargs)
        if ".b_x2" in Path(path).name:  # Ctrl-C while the second file is half written
            with open(path, "r+b") as handle:
                handle.truncate(Path(path).stat().st_size // 2)
            raise KeyboardInterrupt

    monkeypatch.setattr(imageio, "write_image_bands", write_then_interrupt)
    srcs = [_photo(tmp_path / f"{name}.png", seed=i) for i, name in enumerate("abc")]
    result = runner.invoke(cli, ["upscale", *map(str, srcs)])
    assert result.exit_code == 130
    assert result.stderr == "interrupted: 1 of 3 files done\n"
    assert _size(tmp_path / "a_x2.png") == (48, 32)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.png", "a_x2.png", "b.png", "c.png", "models"]  # nothing partial, no temp
