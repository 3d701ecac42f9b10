"""Hypothesis fuzzing of the readers and the metadata code, sized for the normal suite.

Each target gets 200 mutated inputs (a small valid seed file, then 1 to 4 edits: bit
flips, byte overwrites, truncation, insertion, deletion; for PNG also with the checksums
made right again), run in a child process
(:class:`ReaderWorker`: a LibRaw segfault or a runaway allocation is a failure of the
case, not of the test run). Every input must be read, or refused with an
:class:`~nnip.core.errors.NnipError` whose message is one line; the metadata functions
must never raise. Examples are derandomised so the suite is repeatable; the long,
random campaign is ``benchmarks/fuzz_readers.py`` (>= 100,000 cases).
"""

from __future__ import annotations

from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.reader_worker import ReaderWorker
from robustness.bad_files import dng_bytes, jpeg_bytes, png_bytes, tiff_bytes, with_png_crcs_fixed

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def worker() -> Iterator[ReaderWorker]:
    child = ReaderWorker()
    yield child
    child.close()


def _exif_block() -> bytes:
    from PIL import Image as PILImage
    from PIL.TiffImagePlugin import IFDRational

    exif = PILImage.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "FuzzCam"
    exif[0x0110] = "Model 1"
    exif[0x8769] = {0x829A: IFDRational(1, 250), 0x8827: 400, 0x9003: "2024:01:02 03:04:05",
                    0x920A: IFDRational(50, 1), 0xA434: "Lens 50mm"}
    return exif.tobytes()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, str]]:
    """target -> (valid seed file, extension)."""
    directory = tmp_path_factory.mktemp("fuzz-seeds")
    return {
        "jpeg": (jpeg_bytes(16, 24), ".jpg"),
        "png": (png_bytes(16, 24), ".png"),
        "tiff": (tiff_bytes(16, 24), ".tif"),
        "raw": (dng_bytes(directory), ".dng"),
        "metadata": (_exif_block(), ""),
    }


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after 1 to 4 random edits (positions wrap around the current length)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("flip", "byte", "cut", "insert", "delete")))
        if not out:
            break
        at = draw(st.integers(0, 1 << 20)) % len(out)
        if kind == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            out[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFF)))
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del out[at:at + draw(st.integers(1, 64))]
    return bytes(out)


def _check(answer: dict, ext: str) -> None:
    assert answer["status"] in ("ok", "error"), answer
    if answer["status"] == "error":
        message = answer["message"]
        assert message and "\n" not in message and f"input{ext}" not in message, answer


@pytest.mark.parametrize("target", [
    "jpeg",
    "png",
    "png-crc-fixed",  # the checksums recomputed, so the damage reaches the decoder
    "tiff",
])
def test_image_reader_survives_mutations(
    worker: ReaderWorker, seeds: dict[str, tuple[bytes, str]], target: str
) -> None:
    seed, ext = seeds[target.removesuffix("-crc-fixed")]
    fix = with_png_crcs_fixed if target.endswith("-crc-fixed") else (lambda data: data)

    @FUZZ
    @given(mutated(seed))
    def run(data: bytes) -> None:
        _check(worker.run("image", fix(data), ext), ext)

    run()


def test_raw_reader_survives_mutations(
    worker: ReaderWorker, seeds: dict[str, tuple[bytes, str]]
) -> None:
    seed, ext = seeds["raw"]

    @FUZZ
    @given(mutated(seed))
    def run(data: bytes) -> None:
        _check(worker.run("raw", data, ext), ext)

    run()


def test_metadata_survives_mutations(
    worker: ReaderWorker, seeds: dict[str, tuple[bytes, str]]
) -> None:
    seed, _ = seeds["metadata"]

    @FUZZ
    @given(mutated(seed))
    def run(data: bytes) -> None:
        answer = worker.run("metadata", data)
        assert answer["status"] == "ok", answer

    run()


@pytest.mark.parametrize("target, kind", [("segfault", "SIGSEGV"), ("hang", "Hang")])
def test_the_worker_reports_a_crash_and_carries_on(
    worker: ReaderWorker, target: str, kind: str
) -> None:
    # What LibRaw could do: kill its process, or never answer. The case is a crash; the
    # next case runs in a fresh child.
    assert worker.run("image", png_bytes(4, 4), ".png")["status"] == "ok"  # started
    answer = worker.run(target, b"", timeout=2.0)
    assert answer["status"] == "crash" and answer["kind"] == kind
    assert worker.run("image", png_bytes(4, 4), ".png")["status"] == "ok"
