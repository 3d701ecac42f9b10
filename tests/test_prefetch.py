"""The serial batch with FileStages: load ahead, save behind, same records and messages."""

from __future__ import annotations

import io
import json
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from nnip.core.batch import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BatchOptions,
    FileStages,
    InputItem,
    atomic_write,
    run_batch,
)
from nnip.core.errors import InputError

WAIT = 10.0  # seconds an event may take before the test calls it a failure


class Loaded:
    """A decoded input (weak-referenceable, so the test can count the live ones)."""

    def __init__(self, text: str) -> None:
        self.text = text


class Counting:
    """FileStages parts that count live loaded inputs and remember what ran in which order."""

    def __init__(self, bad: set[str] = frozenset(), bad_save: set[str] = frozenset()) -> None:
        self.bad, self.bad_save = bad, bad_save
        self.alive = 0
        self.most_alive = 0
        self.events: list[str] = []
        self._lock = threading.Lock()

    def _gone(self) -> None:
        with self._lock:
            self.alive -= 1

    def load(self, src: Path) -> Loaded:
        self.events.append(f"load {src.name}")
        if src.name in self.bad:
            raise InputError("not an image (test)")
        loaded = Loaded(src.read_text())
        with self._lock:
            self.alive += 1
            self.most_alive = max(self.most_alive, self.alive)
        weakref.finalize(loaded, self._gone)
        return loaded

    def process(self, loaded: Loaded, dst: Path) -> str:
        self.events.append(f"process {dst.name}")
        return loaded.text.upper()  # nothing of the input is kept

    def save(self, text: str, dst: Path) -> dict[str, Any]:
        self.events.append(f"save {dst.name}")
        if dst.name in self.bad_save:
            raise InputError("disk says no (test)")
        atomic_write(dst, lambda tmp: tmp.write_text(text))
        return {"models": ["upper"], "notices": [f"{dst.name} saved"]}

    def stages(self) -> FileStages:
        return FileStages(self.load, self.process, self.save)


def _inputs(tmp_path: Path, count: int) -> list[InputItem]:
    items = []
    for i in range(count):
        path = tmp_path / f"in{i}.txt"
        path.write_text(f"file {i}")
        items.append(InputItem(path))
    return items


def _run(items, process_fn, tmp_path: Path, **options: Any):
    out, err = io.StringIO(), io.StringIO()
    opts = BatchOptions(output_dir=tmp_path / "out", suffix="_x", json=True, **options)
    result = run_batch(items, process_fn, options=opts, stdout=out, stderr=err)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return result, records, err.getvalue().splitlines()


def _without_seconds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_outputs_and_records_in_input_order(tmp_path: Path) -> None:
    parts = Counting()
    items = _inputs(tmp_path, 5)
    result, records, errors = _run(items, parts.stages(), tmp_path)
    assert result.exit_code == EXIT_OK
    assert [r["input"] for r in records] == [str(i.path) for i in items]
    assert [r["status"] for r in records] == ["ok"] * 5
    for i in range(5):
        assert (tmp_path / "out" / f"in{i}_x.txt").read_text() == f"FILE {i}"
    assert errors == [f"{items[i].path}: warning: in{i}_x.txt saved" for i in range(5)]
    # each file's steps run in order, and files are processed in input order
    processed = [e for e in parts.events if e.startswith("process")]
    assert processed == [f"process in{i}_x.txt" for i in range(5)]


def test_same_records_and_messages_as_a_plain_run(tmp_path: Path) -> None:
    items = _inputs(tmp_path, 4)
    staged = Counting(bad={"in1.txt"}, bad_save={"in2_x.txt"})
    _, records_staged, errors_staged = _run(items, staged.stages(), tmp_path / "a")
    plain = Counting(bad={"in1.txt"}, bad_save={"in2_x.txt"})
    whole = plain.stages()
    result, records_plain, errors_plain = _run(
        items, lambda src, dst: whole(src, dst), tmp_path / "b"
    )
    assert result.exit_code == EXIT_FAILED
    strip = lambda recs: [{**r, "output": Path(r["output"]).name} for r in _without_seconds(recs)]
    assert strip(records_staged) == strip(records_plain)
    assert errors_staged == [e.replace(str(tmp_path / "b"), str(tmp_path / "a")) for e in errors_plain]


def test_a_bad_file_in_the_middle_is_one_line_and_the_rest_is_written(tmp_path: Path) -> None:
    parts = Counting(bad={"in2.txt"})
    items = _inputs(tmp_path, 5)
    result, records, errors = _run(items, parts.stages(), tmp_path, quiet=True)
    assert result.exit_code == EXIT_FAILED
    assert errors == [f"{items[2].path}: not an image (test)"]
    assert [r["status"] for r in records] == ["ok", "ok", "error", "ok", "ok"]
    assert records[2]["error"] == "not an image (test)"
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["in0_x.txt", "in1_x.txt", "in3_x.txt", "in4_x.txt"]


def test_a_failed_save_is_reported_before_the_next_file(tmp_path: Path) -> None:
    parts = Counting(bad_save={"in1_x.txt"})
    items = _inputs(tmp_path, 3)
    result, records, errors = _run(items, parts.stages(), tmp_path)
    assert result.exit_code == EXIT_FAILED
    assert errors == [
        f"{items[0].path}: warning: in0_x.txt saved",
        f"{items[1].path}: disk says no (test)",
        f"{items[2].path}: warning: in2_x.txt saved",
    ]
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert not (tmp_path / "out" / "in1_x.txt").exists()


def test_existing_outputs_and_collected_errors_keep_their_place(tmp_path: Path) -> None:
    parts = Counting()
    items = _inputs(tmp_path, 3)
    items.insert(1, InputItem(tmp_path / "missing.txt", InputError("no such file or directory")))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in2_x.txt").write_text("old")
    result, records, _ = _run(items, parts.stages(), tmp_path, skip_existing=True)
    assert [r["status"] for r in records] == ["ok", "error", "ok", "skipped"]
    assert (tmp_path / "out" / "in2_x.txt").read_text() == "old"
    assert "load in2.txt" not in parts.events  # a skipped file is never decoded
    assert result.exit_code == EXIT_FAILED


def test_never_more_than_two_inputs_alive(tmp_path: Path) -> None:
    parts = Counting()
    slow = threading.Event()

    def process(loaded: Loaded, dst: Path) -> str:
        slow.wait(0.02)  # give the loader every chance to run ahead
        return parts.process(loaded, dst)

    _run(_inputs(tmp_path, 8), FileStages(parts.load, process, parts.save), tmp_path)
    assert 1 <= parts.most_alive <= 2
    assert parts.alive == 0


def test_next_file_loads_while_this_one_is_processed(tmp_path: Path) -> None:
    parts = Counting()
    second_loading = threading.Event()
    first_saving = threading.Event()

    def load(src: Path) -> Loaded:
        if src.name == "in1.txt":
            second_loading.set()
        return parts.load(src)

    def process(loaded: Loaded, dst: Path) -> str:
        if dst.name == "in0_x.txt":  # file 1 must be loading meanwhile
            assert second_loading.wait(WAIT)
        if dst.name == "in1_x.txt":  # file 0 must be saving (or saved) meanwhile
            assert first_saving.wait(WAIT)
        return parts.process(loaded, dst)

    def save(text: str, dst: Path) -> dict[str, Any]:
        if dst.name == "in0_x.txt":
            first_saving.set()
        return parts.save(text, dst)

    result, records, _ = _run(_inputs(tmp_path, 3), FileStages(load, process, save), tmp_path)
    assert result.exit_code == EXIT_OK, records


def test_interrupt_finishes_the_save_in_flight(tmp_path: Path) -> None:
    parts = Counting()

    def process(loaded: Loaded, dst: Path) -> str:
        if dst.name == "in2_x.txt":
            raise KeyboardInterrupt
        return parts.process(loaded, dst)

    result, records, errors = _run(
        _inputs(tmp_path, 4), FileStages(parts.load, process, parts.save), tmp_path, quiet=True
    )
    assert result.exit_code == EXIT_INTERRUPTED
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["in0_x.txt", "in1_x.txt"]
    assert errors[-1] == "interrupted: 2 of 4 files done"


@pytest.mark.parametrize("jobs", [1, 2])
def test_stages_called_whole_elsewhere(tmp_path: Path, jobs: int) -> None:
    """One file, or --jobs N: the stages run as one call, with the same outputs."""
    parts = Counting()
    count = 1 if jobs == 1 else 3
    result, records, _ = _run(_inputs(tmp_path, count), parts.stages(), tmp_path, jobs=jobs)
    assert result.exit_code == EXIT_OK
    assert [(tmp_path / "out" / f"in{i}_x.txt").read_text() for i in range(count)] == [
        f"FILE {i}" for i in range(count)
    ]
