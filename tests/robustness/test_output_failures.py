"""Outputs that cannot be written: a read-only file system, a full disk, names too long.

Each failed file is one ``path: message`` line and exit code 1; nothing partial or
temporary is left; the other files of the batch are done. Read-only and full file systems
are real: small tmpfs mounts (root may ignore permission bits, not a read-only mount),
skipped with the reason where mounting is not permitted.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

import pytest

from nnip.core.batch import atomic_write
from nnip.core.errors import OutputError
from robustness.bad_files import jpeg_bytes, png_bytes
from robustness.conftest import Done, remount_read_only


def _inputs(directory: Path, **files: bytes) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        (directory / name).write_bytes(data)
        paths.append(directory / name)
    return paths


def _all_files(*roots: Path) -> set[str]:
    return {p.name for root in roots for p in root.rglob("*") if p.is_file()}


def test_read_only_output_directory(
    tmpfs: Callable[..., Path], run_main: Callable[..., Done], upscale_models: Path, tmp_path: Path
) -> None:
    locked = tmpfs("1m")
    (stuck,) = _inputs(locked, **{"stuck.jpg": jpeg_bytes(seed=1)})
    remount_read_only(locked)
    fine = _inputs(tmp_path / "fine", **{"a.jpg": jpeg_bytes(seed=2), "b.png": png_bytes()})
    # outputs beside the inputs: the one on the read-only file system cannot be written
    done = run_main("nnups", ["upscale", fine[0], stuck, fine[1]], models=upscale_models)
    assert done.code == 1
    assert done.lines == [f"{stuck}: cannot write the file (Read-only file system)"]
    assert _all_files(locked) == {"stuck.jpg"}
    assert _all_files(tmp_path / "fine") == {"a.jpg", "b.png", "a_x2.jpg", "b_x2.png"}


def test_read_only_output_dir_given_with_o(
    tmpfs: Callable[..., Path], run_main: Callable[..., Done], upscale_models: Path, tmp_path: Path
) -> None:
    locked = tmpfs("1m")
    remount_read_only(locked)
    srcs = _inputs(tmp_path, **{"a.jpg": jpeg_bytes(seed=1), "b.jpg": jpeg_bytes(seed=2)})
    done = run_main("nnups", ["upscale", *srcs, "-o", locked / "out"], models=upscale_models)
    assert done.code == 1
    assert done.lines == [
        f"{src}: cannot create output directory {locked / 'out'}: Read-only file system"
        for src in srcs
    ]
    assert _all_files(locked) == set()


def test_full_disk(
    tmpfs: Callable[..., Path], run_main: Callable[..., Done], upscale_models: Path, tmp_path: Path
) -> None:
    small_disk = tmpfs("1m")
    big, small = _inputs(tmp_path, **{
        "big.png": png_bytes(512, 512, seed=3),  # its 1024x1024 output needs ~3 MB
        "small.jpg": jpeg_bytes(seed=4),
    })
    done = run_main("nnups", ["upscale", big, small, "-o", small_disk], models=upscale_models)
    assert done.code == 1
    assert done.lines == [f"{big}: cannot write the file (No space left on device)"]
    # the partial temporary file was removed: the small output after it still fits
    assert _all_files(small_disk) == {"small_x2.jpg"}


def test_full_disk_during_develop(
    tmpfs: Callable[..., Path], run_main: Callable[..., Done], demosaic_models: Path,
    tmp_path: Path,
) -> None:
    from robustness.bad_files import dng_bytes

    tiny_disk = tmpfs("8k")
    src = tmp_path / "IMG_0001.dng"
    src.write_bytes(dng_bytes(tmp_path))
    done = run_main("nnip", ["develop", src, "-o", tiny_disk], models=demosaic_models)
    assert done.code == 1
    (line,) = done.lines
    assert line.startswith(f"{src}: ") and "No space left on device" in line
    assert _all_files(tiny_disk) == set()


def test_a_writer_failing_with_enospc_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out.tif"

    def write(temp: Path) -> None:
        temp.write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temp))

    with pytest.raises(OutputError) as caught:
        atomic_write(final, write)
    assert str(caught.value) == f"cannot write {final}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_run_log_on_a_read_only_file_system_stops_the_run_before_any_work(
    tmpfs: Callable[..., Path], run_main: Callable[..., Done], upscale_models: Path, tmp_path: Path
) -> None:
    locked = tmpfs("1m")
    remount_read_only(locked)
    (src,) = _inputs(tmp_path, **{"a.jpg": jpeg_bytes()})
    log = locked / "run.jsonl"
    done = run_main("nnups", ["upscale", src, "--run-log", log], models=upscale_models)
    assert done.code == 1
    assert done.lines == [f"nnups: cannot write the run log {log}: Read-only file system"]
    assert _all_files(tmp_path) == {"a.jpg"}


def test_an_output_directory_path_over_path_max(
    run_main: Callable[..., Done], upscale_models: Path, tmp_path: Path
) -> None:
    srcs = _inputs(tmp_path, **{"a.jpg": jpeg_bytes(seed=1), "b.jpg": jpeg_bytes(seed=2)})
    deep = tmp_path.joinpath(*(["d" * 250] * 20))  # ~5000 bytes: over PATH_MAX (4096)
    done = run_main("nnups", ["upscale", *srcs, "-o", deep], models=upscale_models)
    assert done.code == 1
    assert len(done.lines) == 2 and "Traceback" not in done.err
    for src, line in zip(srcs, done.lines):
        assert line.startswith(f"{src}: cannot create output directory ")
        assert line.endswith("File name too long")
    assert _all_files(tmp_path) == {"a.jpg", "b.jpg"}


def test_an_input_path_over_path_max_says_so(
    run_main: Callable[..., Done], upscale_models: Path, tmp_path: Path
) -> None:
    (good,) = _inputs(tmp_path, **{"good.jpg": jpeg_bytes()})
    too_long = tmp_path / ("x" * 300 + ".jpg")
    done = run_main("nnups", ["upscale", too_long, good], models=upscale_models)
    assert done.code == 1
    assert done.lines == [f"{too_long}: path too long for the file system"]
    assert (tmp_path / "good_x2.jpg").is_file()
