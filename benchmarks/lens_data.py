"""Lens training data: pairs per second of the per-pair simulation and of the bank.

Three ways to feed the lens task (``nnip.train.lens_task``, ``nnip.train.lens_bank``):

- per pair: every pair simulated whole (``bank_entries`` 0);
- bank filling: the bank from empty, one new entry per ``bank_reuse`` samples (the first,
  all-fresh batch is left out of the rate and reported on its own);
- bank full: a bank of ``--full-entries`` entries built beforehand (not timed), pure reuse.

Part 1, the loader alone: batches drawn from the training dataset in this process with one
torch thread, exactly as the DataLoader worker makes them; pairs per second over
``--batches`` batches after one warm-up batch.

Part 2, training: the task's network, loss and Adam on the batches of the loop's own
DataLoader (one worker process, ``nnip.train.loop``), ``--threads`` torch threads, for
``--steps`` steps after ``--warmup`` steps; the share of the wall time spent waiting for a
batch. The worker also takes CPU from the steps even when they never wait (2 cores: the
trainer's threads and the worker share them), so the table adds the worker's CPU time per
batch from part 1 and its ratio to the step time. Both parts share the machine's cores with
whatever else runs: figures taken while another process trains are relative only (the
section gives the load average before and after).

Data: the task's default training folders (or ``--data``) through the teacher cache
(``--cache``, read as training reads it), or synthetic patterns only (``--patterns-only``).
Banks are built in a temporary folder, never in ``runs/``.

    python benchmarks/lens_data.py --patterns-only --batches 2 --steps 3 --warmup 1  # proof
    python benchmarks/lens_data.py --results benchmarks/RESULTS.md                   # full run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from common import REPO, Section, markdown_table, publish

from nnip.train import lens_bank
from nnip.train.data import TeacherCache, training_split
from nnip.train.lens_task import LensBatches, lens_sampler
from nnip.train.loop import _loader  # the loop's own DataLoader settings
from nnip.train.tasks import TaskData, default_data_dirs, get_task, load_config

__all__ = ["main"]

PATHS = ("per pair", "bank filling", "bank full")


def _dataset(path: str, config: Mapping[str, Any], sampler, root: Path,
             part: str) -> torch.utils.data.IterableDataset:
    """The training stream of ``path``; a filling bank starts empty in each ``part``."""
    if path == "per pair":
        return LensBatches(sampler, {**config, "bank_entries": 0}, seed=1)
    if path == "bank filling":
        return lens_bank.BankBatches(sampler, {**config, "bank_entries": 10**9}, seed=1,
                                     directory=root / f"filling-{part}")
    return lens_bank.BankBatches(sampler, config, seed=1, directory=root / "full")


def _fill(directory: Path, entries: int, sampler, config: Mapping[str, Any]) -> None:
    bank = lens_bank.LensBank(directory)
    rng = np.random.default_rng(7)
    while len(bank) < entries:
        bank.add(lens_bank.random_entry(sampler, config, rng))
    bank.flush()


def _loader_rate(data: torch.utils.data.IterableDataset, batches: int,
                 batch: int) -> tuple[float, float]:
    """(seconds of the first batch, pairs per second over the next ``batches``)."""
    stream: Iterator = iter(data)
    start = time.perf_counter()
    next(stream)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return first, batches * batch / (time.perf_counter() - start)


def _training_wait(data: torch.utils.data.IterableDataset, config: Mapping[str, Any], steps: int,
                   warmup: int, threads: int) -> tuple[float, float]:
    """(seconds per step, share of it spent waiting for the batch) over ``steps`` steps."""
    task = get_task("lens")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = task.build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    loss_fn = task.loss(config)
    waited = 0.0
    stream = iter(_loader(TaskData(train=data, val=[], description="")))
    start = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            waited, start = 0.0, time.perf_counter()
        asked = time.perf_counter()
        (image, optics), target = next(stream)
        waited += time.perf_counter() - asked
        loss = loss_fn(model(image, optics), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(config["clip"]))
        optimizer.step()
    total = time.perf_counter() - start
    del stream  # ends the worker
    return total / steps, waited / total


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--config", default="fast", help="lens variant or JSON file (default fast)")
    add("--data", nargs="+", type=Path, help="training folders (default: the task's)")
    add("--cache", type=Path, default=REPO / "runs" / "cache" / "teachers",
        help="teacher cache (default runs/cache/teachers)")
    add("--patterns-only", action="store_true", help="synthetic patterns, no photos")
    add("--batches", type=int, default=20, help="loader batches per path (default 20)")
    add("--steps", type=int, default=30, help="timed training steps per path (default 30)")
    add("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    add("--full-entries", type=int, default=64,
        help="entries of the prebuilt bank for 'bank full' (default 64)")
    add("--threads", type=int, default=2, help="torch threads of the trainer (default 2)")
    add("--results", type=Path, default=None, metavar="RESULTS.md",
        help="also replace this script's section in that file")
    args = parser.parse_args(argv)

    task = get_task("lens")
    config = load_config(task, args.config)
    lens_bank.check_bank_config(config)
    sampler, source = None, "synthetic patterns only"
    if not args.patterns_only:
        dirs = args.data or default_data_dirs(task)
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            print(f"error: data folder(s) not found: {', '.join(missing)} (or --patterns-only)",
                  file=sys.stderr)
            return 2
        train_paths, _ = training_split(dirs, int(config["holdout_every"]))
        sampler = lens_sampler(config, train_paths, TeacherCache(args.cache))
        source = f"{len(sampler.teachers)} teachers of {', '.join(d.name for d in dirs)}"
    batch = int(config["batch"])
    load_before = _load()

    loader_rows, step_rows = [], []
    with tempfile.TemporaryDirectory(prefix="lens-bank-bench-") as tmp:
        root = Path(tmp)
        full = {**config, "bank_entries": args.full_entries}
        _fill(root / "full", args.full_entries, sampler, full)
        rates = {}
        torch.set_num_threads(1)  # as in the loader's worker
        for path in PATHS:
            data = _dataset(path, full, sampler, root, "loader")
            first, rate = _loader_rate(data, args.batches, batch)
            rates[path] = rate
            loader_rows.append([path, f"{rate:.2f}", f"{1000 / rate:.0f}",
                                f"{rate / rates['per pair']:.1f}", f"{first:.1f}"])
            print(f"loader {path}: {rate:.2f} pairs/s", flush=True)
        for path in PATHS:
            data = _dataset(path, full, sampler, root, "steps")
            step_s, wait = _training_wait(data, full, args.steps, args.warmup, args.threads)
            data_s = batch / rates[path]  # the worker's CPU per batch, from part 1
            step_rows.append([path, f"{step_s:.2f}", f"{100 * wait:.0f} %",
                              f"{batch / step_s:.1f}", f"{data_s:.2f}",
                              f"{100 * data_s / step_s:.0f} %"])
            print(f"training {path}: {step_s:.2f} s/step, {100 * wait:.0f} % waiting", flush=True)

    body = "\n\n".join([
        f"Config `{args.config}`: batch {batch}, patch {config['patch']}, context "
        f"{config['context']}, bank_side {config['bank_side']}, bank_reuse "
        f"{config['bank_reuse']}, demosaic {config['demosaic']}; data: {source}. "
        f"'bank full': {args.full_entries} entries built beforehand. "
        f"Load average before: {load_before}; after: {_load()}.",
        "Loader alone (one thread, as the DataLoader worker; first batch of the filling bank "
        "is all fresh):",
        markdown_table(["path", "pairs/s", "ms/pair", "x per pair", "first batch s"], loader_rows),
        f"Training ({args.threads} torch threads + the loop's one worker process, "
        f"{args.steps} steps after {args.warmup}):",
        markdown_table(["path", "s/step", "waiting for data", "pairs/s", "data CPU s/batch",
                        "data CPU / step"], step_rows),
    ])
    section = Section("lens_data", "Lens training data: per-pair simulation vs bank", body)
    publish(section, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
