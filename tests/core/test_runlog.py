"""The run log: what it records, how ``--skip-existing`` uses it, and what it survives."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest

from nnip.core.batch import BatchOptions, atomic_write, collect_inputs, run_batch
from nnip.core.errors import OutputError
from nnip.core.runlog import RunLog, RunLogEntry, file_state, settings_digest


def _copy_upper(src: Path, dst: Path) -> dict:
    """A process_fn: the output is the input's bytes upper-cased, written atomically."""
    atomic_write(dst, lambda tmp: tmp.write_bytes(src.read_bytes().upper()))
    return {}


def _inputs(directory: Path, *names: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = directory / name
        path.write_text(f"content of {name}")
        paths.append(path)
    return paths


def _run(paths: list[Path], out: Path, log: Path, *, settings: str = "s1", **kw) -> list[dict]:
    options = BatchOptions(output_dir=out, suffix="_x", run_log=log, settings=settings,
                           progress=False, **kw)
    result = run_batch(collect_inputs(paths), _copy_upper, options=options)
    return result.records


def test_settings_digest_is_stable_and_order_free() -> None:
    a = settings_digest({"strength": 1.0, "model": "fast", "path": Path("/x")})
    assert a == settings_digest({"path": Path("/x"), "model": "fast", "strength": 1.0})
    assert a != settings_digest({"strength": 0.5, "model": "fast", "path": Path("/x")})
    assert len(a) == 16 and int(a, 16) >= 0


def test_every_finished_file_is_one_line(tmp_path: Path) -> None:
    a, b = _inputs(tmp_path / "in", "a.txt", "b.txt")
    log = tmp_path / "log" / "run.jsonl"  # its directory is created
    _run([a, b], tmp_path / "out", log)
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["input"] == str(a) and first["output"] == str(tmp_path / "out" / "a_x.txt")
    assert first["size"] == a.stat().st_size and first["mtime_ns"] == a.stat().st_mtime_ns
    assert first["output_size"] == len("CONTENT OF A.TXT") and first["settings"] == "s1"


def test_failed_files_are_not_logged(tmp_path: Path) -> None:
    (a,) = _inputs(tmp_path / "in", "a.txt")
    log = tmp_path / "run.jsonl"
    records = _run([a, tmp_path / "in" / "missing.txt"], tmp_path / "out", log)
    assert [r["status"] for r in records] == ["ok", "error"]
    assert len(log.read_text().splitlines()) == 1


def test_resume_skips_up_to_date_and_redoes_stale_outputs(tmp_path: Path) -> None:
    a, b, c, d = _inputs(tmp_path / "in", "a.txt", "b.txt", "c.txt", "d.txt")
    out, log = tmp_path / "out", tmp_path / "run.jsonl"
    _run([a, b, c], out, log)
    (out / "c_x.txt").unlink()  # an output that went missing
    b.write_text("b was edited")  # an input that changed
    foreign = out / "d_x.txt"
    foreign.write_text("made by someone else")  # an output the log does not know
    records = _run([a, b, c, d], out, log, skip_existing=True)
    by_name = {Path(r["input"]).name: r for r in records}
    assert by_name["a.txt"]["status"] == "skipped"
    assert by_name["a.txt"]["reason"] == "up to date (run log)"
    assert by_name["b.txt"]["status"] == "ok"
    assert by_name["b.txt"]["redone"] == "the input changed since the run log"
    assert (out / "b_x.txt").read_text() == "B WAS EDITED"
    assert by_name["c.txt"]["status"] == "ok" and "redone" not in by_name["c.txt"]
    assert by_name["d.txt"]["status"] == "skipped" and foreign.read_text() == "made by someone else"


def test_changed_settings_redo_every_logged_output(tmp_path: Path) -> None:
    a, b = _inputs(tmp_path / "in", "a.txt", "b.txt")
    out, log = tmp_path / "out", tmp_path / "run.jsonl"
    _run([a, b], out, log, settings="old")
    records = _run([a, b], out, log, settings="new", skip_existing=True)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert {r["redone"] for r in records} == {"the settings changed since the run log"}
    records = _run([a, b], out, log, settings="new", skip_existing=True)
    assert [r["status"] for r in records] == ["skipped", "skipped"]


def test_an_output_retouched_after_logging_is_left_alone(tmp_path: Path) -> None:
    (a,) = _inputs(tmp_path / "in", "a.txt")
    out, log = tmp_path / "out", tmp_path / "run.jsonl"
    _run([a], out, log, settings="old")
    (out / "a_x.txt").write_text("retouched by hand, longer than before")
    records = _run([a], out, log, settings="new", skip_existing=True)
    assert records[0]["status"] == "skipped"
    assert records[0]["reason"] == "output exists (changed since the run log)"
    assert (out / "a_x.txt").read_text().startswith("retouched")


def test_an_output_made_from_another_input_is_redone(tmp_path: Path) -> None:
    (first,) = _inputs(tmp_path / "one", "a.txt")
    (second,) = _inputs(tmp_path / "two", "a.txt")
    out, log = tmp_path / "out", tmp_path / "run.jsonl"
    _run([first], out, log)
    records = _run([second], out, log, skip_existing=True)
    assert records[0]["status"] == "ok" and records[0]["redone"].startswith("made from another input")


def test_without_skip_existing_the_log_is_written_but_not_consulted(tmp_path: Path) -> None:
    (a,) = _inputs(tmp_path / "in", "a.txt")
    out, log = tmp_path / "out", tmp_path / "run.jsonl"
    _run([a], out, log)
    assert _run([a], out, log)[0]["status"] == "error"  # exists: still an error
    assert _run([a], out, log, overwrite=True)[0]["status"] == "ok"
    assert len(log.read_text().splitlines()) == 2


def test_cut_and_foreign_lines_are_ignored_and_the_last_entry_wins(tmp_path: Path) -> None:
    (a,) = _inputs(tmp_path / "in", "a.txt")
    out, log = tmp_path / "out", tmp_path / "run.jsonl"
    _run([a], out, log, settings="old")
    _run([a], out, log, settings="new", overwrite=True)
    with open(log, "a") as handle:
        handle.write('{"not": "an entry"}\n\xff garbage\n{"v": 1, "input": "/x", "si')
    run_log = RunLog(log)
    assert len(run_log) == 1
    assert run_log.get(out / "a_x.txt").settings == "new"
    assert _run([a], out, log, settings="new", skip_existing=True)[0]["status"] == "skipped"


def test_non_utf8_and_long_names_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "in"
    directory.mkdir()
    name = os.fsdecode(b"caf\xe9-" + b"n" * 200 + b".txt")
    src = directory / name
    src.write_text("x")
    out, log = tmp_path / "out", tmp_path / "run.jsonl"
    _run([src], out, log)
    log.read_bytes().decode("ascii")  # escapes only: any tool can read the log
    entry = RunLog(log).get(out / os.fsdecode(b"caf\xe9-" + b"n" * 200 + b"_x.txt"))
    assert entry is not None and entry.input == str(src)


@pytest.mark.parametrize("where", ["is a directory", "under a file"])
def test_an_unusable_log_is_an_error_for_the_whole_run(tmp_path: Path, where: str) -> None:
    (a,) = _inputs(tmp_path / "in", "a.txt")
    log = tmp_path / "run.jsonl"
    if where == "is a directory":
        log.mkdir()
    else:
        log.write_text("a file where the log's directory should be")
        log = log / "run.jsonl"
    with pytest.raises(OutputError, match="cannot (read|write) the run log"):
        _run([a], tmp_path / "out", log)
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_a_log_that_fails_mid_run_warns_once_and_the_outputs_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _inputs(tmp_path / "in", "a.txt", "b.txt")
    log = tmp_path / "run.jsonl"

    def full_disk(self: RunLog, data: bytes) -> None:
        if data:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(RunLog, "_write", full_disk)
    records = _run(paths, tmp_path / "out", log)
    assert [r["status"] for r in records] == ["ok", "ok"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "run log" in line]
    assert warnings == [f"{paths[0]}: warning: cannot write the run log {log}: No space left on device"]


def test_threads_append_whole_lines(tmp_path: Path) -> None:
    paths = _inputs(tmp_path / "in", *(f"f{i:02d}.txt" for i in range(24)))
    log = tmp_path / "run.jsonl"
    _run(paths, tmp_path / "out", log, jobs=4)
    entries = [RunLogEntry.from_line(line) for line in log.read_text().splitlines()]
    assert len(entries) == 24 and all(e is not None for e in entries)


def test_appends_from_two_logs_on_one_file_are_all_kept(tmp_path: Path) -> None:
    # Two processes (or cluster workers) sharing one log file: one write per line.
    log = tmp_path / "run.jsonl"
    src = tmp_path / "src.txt"
    src.write_text("x")
    outputs = []
    for i in range(40):
        out = tmp_path / f"o{i}.txt"
        out.write_text("y")
        outputs.append(out)
    logs = [RunLog(log), RunLog(log)]
    state = file_state(src)
    threads = [
        threading.Thread(target=lambda k=k: [logs[k].append(src, state, o, "s") for o in outputs[k::2]])
        for k in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(RunLog(log)) == 40
