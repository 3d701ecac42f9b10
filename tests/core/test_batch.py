"""Batch runner: inputs, output names, atomic writes, per-file errors, exit codes, --jobs."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest

from nnip.core.batch import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BatchOptions,
    InputItem,
    OutputNameError,
    atomic_write,
    collect_inputs,
    output_path,
    plan_outputs,
    run_batch,
)
from nnip.core.errors import ImageReadError, InputError, OutputError


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _copy_fn(src: Path, dst: Path) -> dict:
    """A process_fn writing the input's bytes reversed, through atomic_write."""
    data = src.read_bytes()[::-1]
    atomic_write(dst, lambda tmp: tmp.write_bytes(data))
    return {"device": "test", "models": ["reverse"]}


def _run(items, process_fn=_copy_fn, **options):
    out, err = io.StringIO(), io.StringIO()
    result = run_batch(items, process_fn, options=BatchOptions(**options), stdout=out, stderr=err)
    return result, out.getvalue(), err.getvalue()


def _errors(items):
    return {item.path.name: str(item.error) for item in items if item.error is not None}


# --------------------------------------------------------------------------- collect_inputs


def test_files_are_kept_in_order_and_duplicates_dropped(tmp_path: Path) -> None:
    b, a = _touch(tmp_path / "b.jpg"), _touch(tmp_path / "a.jpg")
    items = collect_inputs([b, a, str(b), tmp_path / "." / "a.jpg"])
    assert [i.path for i in items] == [b, a]
    assert all(i.error is None for i in items)


def test_glob_patterns_are_expanded_by_us(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.jpg", "c.png"):
        _touch(tmp_path / name)
    items = collect_inputs([str(tmp_path / "*.jpg")])
    assert [i.path.name for i in items] == ["a.jpg", "b.jpg"]


def test_pattern_matching_nothing_is_a_per_file_error(tmp_path: Path) -> None:
    items = collect_inputs([str(tmp_path / "*.tif")])
    assert _errors(items) == {"*.tif": "no file matches this pattern"}


def test_existing_file_with_glob_characters_is_taken_literally(tmp_path: Path) -> None:
    odd = _touch(tmp_path / "a[1].jpg")
    _touch(tmp_path / "a1.jpg")
    assert [i.path for i in collect_inputs([odd])] == [odd]


def test_missing_file_is_a_per_file_error_not_an_abort(tmp_path: Path) -> None:
    real = _touch(tmp_path / "real.jpg")
    items = collect_inputs([tmp_path / "gone.jpg", real])
    assert [i.path.name for i in items] == ["gone.jpg", "real.jpg"]
    assert isinstance(items[0].error, InputError)
    assert _errors(items) == {"gone.jpg": "no such file or directory"}


def test_directory_needs_recursive(tmp_path: Path) -> None:
    _touch(tmp_path / "d" / "a.jpg")
    items = collect_inputs([tmp_path / "d"])
    assert _errors(items) == {"d": "is a directory (use --recursive)"}


def test_recursive_walk_filters_extensions_and_hidden_files(tmp_path: Path) -> None:
    root = tmp_path / "d"
    keep = [_touch(root / "a.JPG"), _touch(root / "sub" / "b.png")]
    _touch(root / "notes.txt")
    _touch(root / ".a_x2.jpg.tmp-1234.jpg")  # a temp file of an interrupted run
    _touch(root / ".hidden" / "c.jpg")
    items = collect_inputs([root], recursive=True, extensions=(".jpg", "png"))
    assert [i.path for i in items] == keep


def test_explicit_file_is_kept_whatever_its_extension(tmp_path: Path) -> None:
    odd = _touch(tmp_path / "photo.bmp")
    assert [i.path for i in collect_inputs([odd], extensions=(".jpg",))] == [odd]


# --------------------------------------------------------------------------- output names


def test_output_name_is_stem_suffix_ext(tmp_path: Path) -> None:
    src = tmp_path / "in" / "photo.jpeg"
    assert output_path(src, output_dir=None, suffix="_x2", ext="png") == tmp_path / "in" / "photo_x2.png"
    assert output_path(src, output_dir=tmp_path / "o", suffix="_x2", ext=None) == (
        tmp_path / "o" / "photo_x2.jpeg"
    )
    assert output_path(src, output_dir=tmp_path / "o", suffix="", ext=".tif") == tmp_path / "o" / "photo.tif"


def test_empty_suffix_in_the_input_directory_is_refused(tmp_path: Path) -> None:
    src = _touch(tmp_path / "photo.jpg")
    with pytest.raises(OutputNameError, match="empty --suffix"):
        output_path(src, output_dir=None, suffix="", ext="JPG")
    with pytest.raises(OutputNameError):
        output_path(src, output_dir=tmp_path / ".", suffix="", ext=None)


def test_empty_suffix_beside_the_input_with_another_extension(tmp_path: Path) -> None:
    """nnip develop's default: x.CR3 -> x.tif in the same directory."""
    src = _touch(tmp_path / "IMG_0001.CR3")
    assert output_path(src, output_dir=None, suffix="", ext="tif") == tmp_path / "IMG_0001.tif"


def test_output_that_is_another_input_or_taken_twice_is_a_per_file_error(tmp_path: Path) -> None:
    a = _touch(tmp_path / "a.jpg")
    a_x2 = _touch(tmp_path / "a_x2.jpg")
    b_png = _touch(tmp_path / "b.png")
    b_jpg = _touch(tmp_path / "b.jpg")
    items = [InputItem(p) for p in (a, a_x2, b_png, b_jpg)]
    plan = plan_outputs(items, BatchOptions(suffix="_x2", ext="jpg"))
    assert isinstance(plan[0], InputItem) and "would replace an input" in str(plan[0].error)
    assert plan[1] == tmp_path / "a_x2_x2.jpg"
    assert plan[2] == tmp_path / "b_x2.jpg"
    assert isinstance(plan[3], InputItem)
    assert str(plan[3].error) == f"output {tmp_path / 'b_x2.jpg'} is also the output of {b_png}"


# --------------------------------------------------------------------------- atomic_write


def test_atomic_write_creates_directories_and_leaves_no_temp(tmp_path: Path) -> None:
    seen = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"data")

    final = tmp_path / "a" / "b" / "out.tif"
    assert atomic_write(final, write) == final
    assert final.read_bytes() == b"data"
    # hidden, in the same directory, keeping the real extension for format inference
    assert seen[0].parent == final.parent
    assert seen[0].name.startswith(".out.tif.tmp-") and seen[0].suffix == ".tif"
    assert os.listdir(final.parent) == ["out.tif"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, ValueError, ImageReadError])
def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, exc: type) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half a fi")
        raise exc("stop")

    final = tmp_path / "out.jpg"
    with pytest.raises(exc):
        atomic_write(final, write)
    assert os.listdir(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path: Path) -> None:
    final = _touch(tmp_path / "out.jpg", b"old")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"new but incomp")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(final, write)
    assert final.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.jpg"]


def test_os_errors_become_output_errors(tmp_path: Path) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write(tmp_path / "out.png", write)
    assert os.listdir(tmp_path) == []


def test_output_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = _touch(tmp_path / "file")
    with pytest.raises(OutputError, match="cannot create output directory"):
        atomic_write(blocker / "sub" / "out.png", lambda tmp: tmp.write_bytes(b"x"))


# --------------------------------------------------------------------------- run_batch


def test_all_ok_writes_outputs_and_exits_0(tmp_path: Path) -> None:
    a, b = _touch(tmp_path / "a.jpg", b"abc"), _touch(tmp_path / "b.jpg", b"xyz")
    result, out, err = _run(collect_inputs([a, b]), suffix="_x2", json=True)
    assert result.exit_code == EXIT_OK
    assert (tmp_path / "a_x2.jpg").read_bytes() == b"cba"
    assert (tmp_path / "b_x2.jpg").read_bytes() == b"zyx"
    assert err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert records[0]["input"] == str(a) and records[0]["output"] == str(tmp_path / "a_x2.jpg")
    assert records[0]["device"] == "test" and records[0]["models"] == ["reverse"]
    assert records[0]["error"] is None and records[0]["seconds"] >= 0


def test_failed_files_are_one_line_each_and_the_batch_goes_on(tmp_path: Path) -> None:
    good = _touch(tmp_path / "good.jpg")
    bad = _touch(tmp_path / "bad.jpg")

    def process(src: Path, dst: Path) -> dict:
        if src == bad:
            raise ImageReadError("truncated JPEG")
        return _copy_fn(src, dst)

    items = collect_inputs([bad, tmp_path / "missing.jpg", good])
    _, _, err = _run(items, process, suffix="_x2", debug=True)  # --debug: where it came from
    assert "Traceback (most recent call last)" in err and f"{bad}: truncated JPEG" in err
    (tmp_path / "good_x2.jpg").unlink()
    result, out, err = _run(items, process, suffix="_x2", json=True)
    assert result.exit_code == EXIT_FAILED
    assert err.splitlines() == [
        f"{bad}: truncated JPEG",
        f"{tmp_path / 'missing.jpg'}: no such file or directory",
    ]
    assert (tmp_path / "good_x2.jpg").exists() and not (tmp_path / "bad_x2.jpg").exists()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in records] == ["error", "error", "ok"]
    assert records[0]["error"] == "truncated JPEG"


def test_internal_errors_are_named_and_traced_only_with_debug(tmp_path: Path) -> None:
    src = _touch(tmp_path / "a.jpg")

    def buggy(src: Path, dst: Path) -> dict:
        return {"x": 1 / 0}

    result, _, err = _run(collect_inputs([src]), buggy, suffix="_x2")
    assert result.exit_code == EXIT_FAILED
    assert err == f"{src}: internal error: ZeroDivisionError: division by zero\n"
    result, _, err = _run(collect_inputs([src]), buggy, suffix="_x2", debug=True)
    assert "Traceback (most recent call last)" in err and "1 / 0" in err
    assert err.rstrip().endswith(f"{src}: internal error: ZeroDivisionError: division by zero")


def test_existing_output_is_an_error_unless_skip_or_overwrite(tmp_path: Path) -> None:
    src = _touch(tmp_path / "a.jpg", b"new")
    dst = _touch(tmp_path / "a_x2.jpg", b"old")
    items = collect_inputs([src])

    result, _, err = _run(items, suffix="_x2")
    assert result.exit_code == EXIT_FAILED
    assert err == f"{src}: output {dst} exists (use --overwrite or --skip-existing)\n"
    assert dst.read_bytes() == b"old"

    result, out, err = _run(items, suffix="_x2", skip_existing=True, json=True)
    assert result.exit_code == EXIT_OK and err == ""
    assert json.loads(out)["status"] == "skipped" and dst.read_bytes() == b"old"

    result, _, err = _run(items, suffix="_x2", overwrite=True)
    assert result.exit_code == EXIT_OK and err == ""
    assert dst.read_bytes() == b"wen"


def test_naming_problems_stop_the_batch_before_any_file(tmp_path: Path) -> None:
    src = _touch(tmp_path / "a.jpg")
    calls = []
    with pytest.raises(OutputNameError):
        _run(collect_inputs([src]), lambda s, d: calls.append(s), suffix="")
    assert calls == []


def test_jobs_run_files_at_the_same_time_and_keep_input_order(tmp_path: Path) -> None:
    srcs = [_touch(tmp_path / f"{i}.jpg", bytes([i]) * 3) for i in range(6)]
    barrier = threading.Barrier(2, timeout=10)

    def process(src: Path, dst: Path) -> dict:
        if src.name in ("0.jpg", "1.jpg"):
            barrier.wait()  # passes only if two files are in flight together
        return _copy_fn(src, dst)

    items = collect_inputs(srcs)
    result2, out2, err2 = _run(items, process, suffix="_x2", jobs=2, json=True)
    assert result2.exit_code == EXIT_OK and err2 == ""
    outputs2 = {p.name: p.read_bytes() for p in tmp_path.glob("*_x2.jpg")}
    for p in tmp_path.glob("*_x2.jpg"):
        p.unlink()
    result1, out1, _ = _run(items, suffix="_x2", jobs=1, json=True)
    outputs1 = {p.name: p.read_bytes() for p in tmp_path.glob("*_x2.jpg")}
    assert outputs1 == outputs2 and len(outputs1) == 6
    assert [r["input"] for r in result2.records] == [str(s) for s in srcs]
    assert sorted(json.loads(l)["input"] for l in out2.splitlines()) == sorted(
        json.loads(l)["input"] for l in out1.splitlines()
    )


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_cleanly_with_exit_130(tmp_path: Path, jobs: int) -> None:
    srcs = [_touch(tmp_path / f"{i}.jpg") for i in range(5)]

    def process(src: Path, dst: Path) -> dict:
        if src.name == "1.jpg":
            def write(tmp: Path) -> None:
                tmp.write_bytes(b"partial")
                raise KeyboardInterrupt

            atomic_write(dst, write)
        return _copy_fn(src, dst)

    result, _, err = _run(collect_inputs(srcs), process, suffix="_x2", jobs=jobs)
    assert result.interrupted and result.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in err
    assert not (tmp_path / "1_x2.jpg").exists()
    if jobs == 1:  # with a pool, how far the others got is a race; what they wrote is whole
        assert not (tmp_path / "2_x2.jpg").exists()  # later files were not started
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    for name in os.listdir(tmp_path):  # whatever was written is complete
        if name.endswith("_x2.jpg"):
            assert (tmp_path / name).read_bytes() == b"x"


def test_quiet_still_prints_errors_and_verbose_reports_each_file(tmp_path: Path) -> None:
    src = _touch(tmp_path / "a.jpg")
    items = collect_inputs([src, tmp_path / "nope.jpg"])
    _, _, err = _run(items, suffix="_x2", quiet=True)
    assert err == f"{tmp_path / 'nope.jpg'}: no such file or directory\n"
    (tmp_path / "a_x2.jpg").unlink()
    _, _, err = _run(items, suffix="_x2", verbose=True)
    assert f"{src}: ok -> {tmp_path / 'a_x2.jpg'}" in err


def test_progress_bar_keeps_error_lines_whole(tmp_path: Path) -> None:
    items = collect_inputs([tmp_path / "nope.jpg", _touch(tmp_path / "a.jpg")])
    _, _, err = _run(items, suffix="_x2", progress=True)
    assert f"{tmp_path / 'nope.jpg'}: no such file or directory\n" in err
    assert "file" in err  # the bar itself, with its unit


def test_notices_are_warnings_on_stderr_and_in_the_record(tmp_path: Path) -> None:
    src = _touch(tmp_path / "a.jpg")

    def process(src: Path, dst: Path) -> dict:
        _copy_fn(src, dst)
        return {"notices": ["the file is a PNG, not a JPEG as its name says"]}

    result, out, err = _run(collect_inputs([src]), process, suffix="_x2", json=True)
    assert result.exit_code == EXIT_OK
    assert err == f"{src}: warning: the file is a PNG, not a JPEG as its name says\n"
    assert json.loads(out)["notices"] == ["the file is a PNG, not a JPEG as its name says"]
    (tmp_path / "a_x2.jpg").unlink()
    _, _, err = _run(collect_inputs([src]), process, suffix="_x2", quiet=True)
    assert err == ""
