"""Bad inputs to ``nnups upscale``: one clear ``path: message`` line each, exit 1, no output.

Every case runs in a batch beside a good image, which must still be upscaled; nothing may
print a traceback, call itself an internal error, or leave a file (partial or temporary).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

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
        {"upscale-fast": conv_net(3, 3, layers=1, scale=2, seed=3)},
        overrides={"upscale-fast": {"inputs": [_tensor("image")], "outputs": [_tensor("output")]}},
    )
    return directory


@pytest.fixture()
def runner(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("NNIP_MODELS_DIR", str(models_dir))
    return CliRunner()


def _jpeg_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _good(directory: Path, name: str = "good.jpg") -> Path:
    path = directory / name
    path.write_bytes(_jpeg_bytes())
    return path


# --------------------------------------------------------------------------- the cases

# Each maker returns the bad path (inside ``d``); the pattern is what the line must say.


def _missing(d: Path) -> Path:
    return d / "missing.jpg"


def _zero_bytes(d: Path) -> Path:
    (d / "empty.jpg").write_bytes(b"")
    return d / "empty.jpg"


def _truncated_jpeg(d: Path) -> Path:
    data = _jpeg_bytes(seed=1)
    (d / "cut.jpg").write_bytes(data[: len(data) // 3])
    return d / "cut.jpg"


def _text_named_jpg(d: Path) -> Path:
    (d / "notes.jpg").write_text("These are not pixels.\nJust some words.\n")
    return d / "notes.jpg"


def _directory(d: Path) -> Path:
    (d / "album").mkdir()
    _good(d / "album", "inside.jpg")
    return d / "album"


def _bmp(d: Path) -> Path:
    PILImage.new("RGB", (8, 8), (10, 20, 30)).save(d / "paint.bmp")
    return d / "paint.bmp"


def _zip(d: Path) -> Path:
    with zipfile.ZipFile(d / "photos.zip", "w") as archive:
        archive.writestr("a.jpg", _jpeg_bytes())
    return d / "photos.zip"


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (_missing, r"no such file"),
    "zero-byte": (_zero_bytes, r"empty"),
    "truncated-jpeg": (_truncated_jpeg, r"truncat|corrupt|incomplete|cannot decode|damaged"),
    "text-as-jpg": (_text_named_jpg, r"not a JPEG|text"),
    "directory": (_directory, r"is a directory \(use --recursive\)"),
    "bmp": (_bmp, r"BMP|unsupported|not supported"),
    "zip": (_zip, r"ZIP|zip|unsupported|not supported"),
}


def _outputs(directory: Path) -> set[str]:
    return {p.name for p in directory.rglob("*") if "_x2" in p.name or p.name.startswith(".")}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_the_batch_goes_on(
    runner: CliRunner, tmp_path: Path, case: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    make, pattern = CASES[case]
    first, bad, last = _good(work, "first.jpg"), make(work), _good(work, "last.jpg")
    result = runner.invoke(cli, ["upscale", str(first), str(bad), str(last)])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{bad}: ")
    message = line[len(f"{bad}: "):]
    assert re.search(pattern, message), message
    assert "internal error" not in message and "Traceback" not in result.stderr
    assert str(bad) not in message  # the runner adds the path; the message must not repeat it
    # the good files are done, the bad one left nothing behind (no partial, no temp)
    assert _outputs(tmp_path) == {"first_x2.jpg", "last_x2.jpg"}


def test_unreadable_file(runner: CliRunner, tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root from reading")
    bad = _good(tmp_path, "locked.jpg")
    bad.chmod(0)
    try:
        result = runner.invoke(cli, ["upscale", str(bad), str(_good(tmp_path))])
    finally:
        bad.chmod(0o644)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{bad}: ") and re.search(r"permission|cannot read", line, re.I)
    assert _outputs(tmp_path) == {"good_x2.jpg"}


def test_output_directory_that_cannot_be_created(runner: CliRunner, tmp_path: Path) -> None:
    a, b = _good(tmp_path, "a.jpg"), _good(tmp_path, "b.jpg")
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a directory should be")
    result = runner.invoke(cli, ["upscale", str(a), str(b), "-o", str(blocker / "out")])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    for src, line in zip((a, b), lines):
        assert line.startswith(f"{src}: cannot create output directory {blocker / 'out'}")
    assert "Traceback" not in result.stderr
    assert _outputs(tmp_path) == set()


def test_output_dir_that_is_a_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = runner.invoke(cli, ["upscale", str(_good(tmp_path)), "-o", str(blocker)])
    assert result.exit_code == 2
    assert "--output-dir" in result.stderr


def test_every_bad_input_at_once_through_the_installed_script(
    models_dir: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    bad = [make(work) for make, _ in CASES.values()]
    good = [_good(work, "a.jpg"), _good(work, "z.jpg")]
    script = Path(sys.executable).with_name("nnups")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "nnups.cli"]
    done = subprocess.run(
        [*command, "upscale", str(good[0]), *map(str, bad), str(good[1])],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "NNIP_MODELS_DIR": str(models_dir)},
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == list(map(str, bad))
    assert "Traceback" not in done.stderr
    assert _outputs(tmp_path) == {"a_x2.jpg", "z_x2.jpg"}
