"""Every bad input in one real batch, between good files, through the installed scripts.

One ``nnups upscale`` and one ``nnip develop`` run each take all their cases at once (a
child process per command, as a user runs it); each case is then checked on its own: one
``path: message`` line on stderr saying what is wrong, no traceback, no "internal error",
nothing left behind for it (no partial output, no temporary file), while the good files of
the same batch are all done and the exit code is 1.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from robustness.bad_files import (
    dng_bytes,
    flip_bit,
    jpeg_bytes,
    png_bytes,
    tiff_bytes,
    truncated,
    with_jpeg_size,
    with_png_size,
    with_tag_type,
    with_tiff_size,
)
from robustness.conftest import Done, run_script


@dataclass(frozen=True)
class Case:
    """A bad input: its file name (bytes: may be non-UTF-8), content, and expected line."""

    name: bytes
    make: Callable[[Path], bytes | None]  # None: make nothing (a missing file)
    pattern: str  # what the message after "path: " must match


def _bytes_path(directory: Path, name: bytes) -> bytes:
    return os.path.join(os.fsencode(directory), name)


def _write(directory: Path, case: Case) -> bytes:
    path = _bytes_path(directory, case.name)
    data = case.make(directory)
    if data is not None:
        with open(path, "wb") as handle:
            handle.write(data)
    return path


UPSCALE_CASES = {
    "truncated jpeg": Case(b"cut.jpg", lambda d: truncated(jpeg_bytes(seed=1), 0.4),
                           r"^corrupt or truncated JPEG"),
    "truncated png": Case(b"cut.png", lambda d: truncated(png_bytes(), 0.5),
                          r"^truncated PNG \(the IDAT chunk is cut short\)$"),
    "truncated tiff": Case(b"cut.tif", lambda d: truncated(tiff_bytes(), 0.5),
                           r"^truncated TIFF \(image data runs \d+ bytes past the end\)$"),
    "bit-flipped png": Case(b"flip.png", lambda d: flip_bit(png_bytes(), 100, 3),
                            r"^corrupt PNG \(checksum error in the IDAT chunk\)$"),
    "bit-flipped tiff magic": Case(b"flip.tif", lambda d: flip_bit(tiff_bytes(), 0),
                                   r"^not a TIFF \(unknown binary data\)$"),
    "tiff claiming 100000x100000": Case(
        b"huge.tif", lambda d: with_tiff_size(tiff_bytes(), 100_000, 100_000),
        r"^image too large: 100000x100000 = 10000 megapixels \(the limit is 1000\)$"),
    "png claiming 100000x100000": Case(
        b"huge.png", lambda d: with_png_size(png_bytes(), 100_000, 100_000),
        r"^image too large: 100000x100000"),
    "jpeg claiming 65535x65535": Case(
        b"huge.jpg", lambda d: with_jpeg_size(jpeg_bytes(), 65_535, 65_535),
        r"^image too large: 65535x65535"),
    "zero-height tiff": Case(b"flat.tif", lambda d: with_tiff_size(tiff_bytes(), 48, 0),
                             r"^invalid image size 48x0$"),
    "zero-width png": Case(b"flat.png", lambda d: with_png_size(png_bytes(), 0, 32),
                           r"^invalid image size 0x32$"),
    "zero-height jpeg": Case(b"flat.jpg", lambda d: with_jpeg_size(jpeg_bytes(), 48, 0),
                             r"^corrupt or truncated JPEG"),
    "empty file": Case(b"empty.png", lambda d: b"", r"^empty file \(0 bytes\)$"),
    "raw named .jpg": Case(b"raw.jpg", dng_bytes,
                           r"^not an image file \(a camera RAW file \(DNG\): use nnip develop\)$"),
    "raw with its own extension": Case(b"IMG_0001.dng", dng_bytes,
                                       r"a camera RAW file \(DNG\): use nnip develop"),
    "non-UTF-8 name, bad content": Case(b"caf\xe9-\xff.jpg", lambda d: b"plain text\n",
                                        r"^not a JPEG \(looks like text\)$"),
    "missing file": Case(b"gone.jpg", lambda d: None, r"^no such file or directory$"),
    "name of 255 bytes (the output's is longer)": Case(
        b"n" * 251 + b".jpg", lambda d: jpeg_bytes(seed=2),
        r"^cannot write .*: File name too long$"),
}

#: Good inputs the batch must finish, and the outputs they give (names as bytes).
UPSCALE_GOOD = {
    b"first.jpg": b"first_x2.jpg",
    b"png named.jpg": b"png named_x2.jpg",  # a PNG under a .jpg name: a warning, then done
    b"caf\xe9 \xff\xfe.png": b"caf\xe9 \xff\xfe_x2.png",  # not UTF-8
    b"l" * 236 + b".jpg": b"l" * 236 + b"_x2.jpg",  # 243 bytes: its temporary name is cut
    b"damaged tag.tif": b"damaged tag_x2.tif",  # tifffile logs the bad tag: not on stderr
    b"last.tif": b"last_x2.tif",
}


def _good_upscale_inputs(directory: Path) -> list[bytes]:
    contents = {
        b"first.jpg": jpeg_bytes(seed=3),
        b"png named.jpg": png_bytes(seed=4),
        b"caf\xe9 \xff\xfe.png": png_bytes(seed=5),
        b"l" * 236 + b".jpg": jpeg_bytes(seed=6),
        b"damaged tag.tif": with_tag_type(tiff_bytes(seed=8), 305, 0),  # Software: type 0
        b"last.tif": tiff_bytes(seed=7),
    }
    paths = []
    for name, data in contents.items():
        path = _bytes_path(directory, name)
        with open(path, "wb") as handle:
            handle.write(data)
        paths.append(path)
    return paths


def _files(directory: Path) -> set[bytes]:
    return {os.path.relpath(os.fsencode(p), os.fsencode(directory))
            for p in directory.rglob("*") if p.is_file()}


@dataclass
class BatchRun:
    directory: Path
    done: Done
    inputs: dict[str, bytes]  # case -> path
    before: set[bytes]  # files before the run


@pytest.fixture(scope="module")
def upscale_batch(tmp_path_factory: pytest.TempPathFactory, upscale_models: Path) -> BatchRun:
    work = tmp_path_factory.mktemp("upscale-batch")
    good = _good_upscale_inputs(work)
    bad = {name: _write(work, case) for name, case in UPSCALE_CASES.items()}
    before = _files(work)
    args = [good[0], *bad.values(), *good[1:]]
    done = run_script("nnups", ["upscale", *args], models=upscale_models)
    return BatchRun(work, done, bad, before)


def _line_of(run: BatchRun, path: bytes) -> list[str]:
    prefix = os.fsdecode(path).encode("utf-8", "backslashreplace").decode() + ": "
    return [line[len(prefix):] for line in run.done.lines if line.startswith(prefix)]


@pytest.mark.parametrize("case", list(UPSCALE_CASES))
def test_upscale_bad_input_gives_one_line(upscale_batch: BatchRun, case: str) -> None:
    messages = _line_of(upscale_batch, upscale_batch.inputs[case])
    assert len(messages) == 1, upscale_batch.done.err
    assert re.search(UPSCALE_CASES[case].pattern, messages[0]), messages[0]


def test_upscale_batch_finishes_the_good_files_and_leaves_nothing_else(
    upscale_batch: BatchRun,
) -> None:
    done = upscale_batch.done
    assert done.code == 1
    assert "Traceback" not in done.err and "internal error" not in done.err
    warnings = [line for line in done.lines if ": warning: " in line]
    assert warnings == [
        f"{upscale_batch.directory / 'png named.jpg'}: warning: the file is a PNG, not a JPEG "
        "as its name says"
    ]
    # one line per bad input, one warning, nothing else (no library chatter)
    assert len(done.lines) == len(UPSCALE_CASES) + 1, done.err
    made = _files(upscale_batch.directory) - upscale_batch.before
    assert made == set(UPSCALE_GOOD.values())  # no partial output, no temporary file


def test_upscale_outputs_of_odd_names_are_real_images(upscale_batch: BatchRun) -> None:
    for name in (b"caf\xe9 \xff\xfe_x2.png", b"l" * 236 + b"_x2.jpg"):
        with PILImage.open(os.fsdecode(_bytes_path(upscale_batch.directory, name))) as image:
            assert image.size == (96, 64)


# --------------------------------------------------------------------------- nnip develop


DEVELOP_CASES = {
    "truncated dng": Case(b"cut.dng", lambda d: truncated(dng_bytes(d), 0.5),
                          r"^truncated or corrupt RAW data"),
    "dng cut in its header": Case(b"head.dng", lambda d: dng_bytes(d)[:200],
                                  r"^truncated or corrupt RAW data"),
    "dng claiming 100000x100000": Case(b"huge.dng",
                                       lambda d: with_tiff_size(dng_bytes(d), 100_000, 100_000),
                                       r"RAW"),
    "zero-height dng": Case(b"flat.dng", lambda d: with_tiff_size(dng_bytes(d), 48, 0), r"RAW"),
    "bit-flipped dng magic": Case(b"flip.dng", lambda d: flip_bit(dng_bytes(d), 0),
                                  r"^unsupported RAW format or codec$"),
    "jpeg named .CR3": Case(b"IMG_0002.CR3", lambda d: jpeg_bytes(),
                            r"^not a RAW file \(looks like a JPEG image\)$"),
    "png named .NEF": Case(b"DSC_0003.NEF", lambda d: png_bytes(),
                           r"^not a RAW file \(looks like a PNG image\)$"),
    "text named .ARW": Case(b"notes.ARW", lambda d: b"shot list\n", r"^not a RAW file \(looks like text\)$"),
    "empty .CR3": Case(b"empty.CR3", lambda d: b"", r"^empty file \(0 bytes\)$"),
    "non-UTF-8 name, truncated": Case(b"\xe9t\xe9.dng", lambda d: dng_bytes(d)[:300],
                                      r"^truncated or corrupt RAW data"),
    "missing file": Case(b"gone.CR3", lambda d: None, r"^no such file or directory$"),
}

DEVELOP_GOOD = {b"a.dng": b"a.tif", b"\xe9t\xe9 ok.dng": b"\xe9t\xe9 ok.tif", b"z.dng": b"z.tif"}


@pytest.fixture(scope="module")
def develop_batch(tmp_path_factory: pytest.TempPathFactory, demosaic_models: Path) -> BatchRun:
    work = tmp_path_factory.mktemp("develop-batch")
    good = []
    for seed, name in enumerate(DEVELOP_GOOD):
        good.append(_bytes_path(work, name))
        with open(good[-1], "wb") as handle:
            handle.write(dng_bytes(work, seed=seed))
    bad = {name: _write(work, case) for name, case in DEVELOP_CASES.items()}
    before = _files(work)
    args = ["develop", good[0], *bad.values(), *good[1:]]
    done = run_script("nnip", args, models=demosaic_models)
    return BatchRun(work, done, bad, before)


@pytest.mark.parametrize("case", list(DEVELOP_CASES))
def test_develop_bad_input_gives_one_line(develop_batch: BatchRun, case: str) -> None:
    messages = _line_of(develop_batch, develop_batch.inputs[case])
    assert len(messages) == 1, develop_batch.done.err
    assert re.search(DEVELOP_CASES[case].pattern, messages[0]), messages[0]


def test_develop_batch_finishes_the_good_files_and_leaves_nothing_else(
    develop_batch: BatchRun,
) -> None:
    done = develop_batch.done
    assert done.code == 1
    assert "Traceback" not in done.err and "internal error" not in done.err
    assert len(done.lines) == len(DEVELOP_CASES), done.err
    assert _files(develop_batch.directory) - develop_batch.before == set(DEVELOP_GOOD.values())
    with tifffile.TiffFile(os.fsdecode(_bytes_path(develop_batch.directory, b"z.tif"))) as tif:
        assert tif.pages.first.shape[:2] == (32, 48)
        assert np.ptp(tif.pages.first.asarray()) > 0


def test_develop_with_a_classic_demosaic_takes_non_utf8_names(
    tmp_path: Path, no_models: Path
) -> None:
    src = _bytes_path(tmp_path, b"\xe9t\xe9.dng")
    with open(src, "wb") as handle:
        handle.write(dng_bytes(tmp_path))
    done = run_script("nnip", ["develop", "--demosaic", "bilinear", src], models=no_models)
    assert done.code == 0, done.err
    assert os.path.exists(_bytes_path(tmp_path, b"\xe9t\xe9.tif"))
