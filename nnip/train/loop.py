"""The generic training loop: time budget, cosine schedule, validation, resumable checkpoints.

A run lives in one directory (``runs/<task>`` by default)::

    last.pt        model + optimizer + step + schedule + config + provenance (resume from it)
    best.pt        model weights with the best validation PSNR so far (export from it)
    metrics.jsonl  one JSON record per validation

The learning-rate schedule runs on training *time*, not steps, because a run is given
minutes (CPU time is the scarce resource): linear warm-up over the first steps of a cycle,
then cosine from ``lr`` down to ``lr * lr_min_ratio`` over the cycle's time budget. A
resumed run continues an unfinished cycle; once a cycle has finished, ``--resume`` starts a
new one at ``lr * restart_lr_ratio`` spanning the new ``--minutes`` (a warm restart).

With ``ema_decay`` > 0 in the config the run also keeps an exponential moving average of
the weights; checkpoints then hold the average as ``model`` (what validation, ``best.pt``
and the export see) and the optimised weights as ``train_model`` (what a resume continues).

``kill PID`` (SIGTERM) or Ctrl-C ends a run after the current step with a checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from nnip.train.arch import fit_state
from nnip.train.tasks import Task, TaskData, run_config

__all__ = ["RunOptions", "Schedule", "new_cycle", "train", "validate", "git_commit", "save_atomic"]

log = logging.getLogger(__name__)

LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.jsonl"
_RESERVE_S = 20.0  # kept back from the budget for the final validation and save


@dataclass
class RunOptions:
    """Everything a run needs besides the task and its config."""

    out: Path
    minutes: float
    resume: bool = False
    device: str = "cpu"
    threads: int = 2
    workers: int = 1  # data worker processes
    new_cycle: bool = False  # drop a resumed run's unfinished cycle: start one at config lr
    overrides: Mapping[str, Any] = field(default_factory=dict)  # knobs that beat a resumed config
    init: Path | None = None  # a fresh run starts from this checkpoint's weights (fine-tuning)
    data_dirs: Sequence[Path] = ()
    cache_dir: Path = Path("runs/cache/teachers")
    command: str = ""
    log_seconds: float = 30.0
    max_steps: int | None = None  # for tests: stop after this many steps


@dataclass
class Schedule:
    """One cosine cycle on training time (seconds); see the module docstring."""

    peak: float
    start_s: float
    horizon_s: float
    start_step: int
    warmup_steps: int
    min_ratio: float

    def lr(self, step: int, train_s: float) -> float:
        warm = min(1.0, (step - self.start_step + 1) / max(1, self.warmup_steps))
        progress = self.progress(train_s)
        cosine = self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.peak * warm * cosine

    def progress(self, train_s: float) -> float:
        return min(1.0, max(0.0, (train_s - self.start_s) / max(self.horizon_s, 1e-9)))

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class _State:
    step: int = 0
    train_s: float = 0.0
    best_psnr: float = -math.inf
    schedule: Schedule | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    average: torch.nn.Module | None = None  # the weights' moving average (ema_decay > 0)


def git_commit(repo: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the repository holding this package ('' when unknown)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a killed run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def validate(model: torch.nn.Module, task: Task, val: Sequence, device: torch.device) -> float:
    """Mean of ``task.evaluate`` (dB) over the validation items, one image at a time."""
    model.eval()
    scores = []
    for inputs, target in val:
        tensors = [torch.from_numpy(np.ascontiguousarray(a))[None].to(device) for a in inputs]
        prediction = model(*tensors)[0].float().cpu().numpy()
        scores.append(task.evaluate(prediction, target))
    model.train()
    return float(np.mean(scores)) if scores else float("nan")


def _as_inputs(x: torch.Tensor | Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    items = [x] if isinstance(x, torch.Tensor) else list(x)
    return [t.to(device, non_blocking=True) for t in items]


def _worker_init(_: int) -> None:
    # The worker is numpy-bound; one thread leaves the cores to the training process.
    torch.set_num_threads(1)
    # `pkill -f "nnip.train ..."` reaches the workers too (same command line): a worker
    # killed by it crashed the run before its checkpoint. The run's own SIGTERM handler
    # stops it cleanly, and the DataLoader then ends its workers.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _loader(data: TaskData, workers: int = 1) -> torch.utils.data.DataLoader:
    # Each worker draws its own stream (the datasets mix the worker id into their seed).
    return torch.utils.data.DataLoader(
        data.train,
        batch_size=None,
        num_workers=max(1, workers),
        prefetch_factor=4,
        persistent_workers=True,
        worker_init_fn=_worker_init,
    )


def _provenance(options: RunOptions, data: TaskData) -> dict[str, Any]:
    return {
        "data": [str(Path(d).resolve()) for d in options.data_dirs],
        "data_description": data.description,
        "command": options.command,
        "commit": git_commit(),
        **({"init": str(options.init)} if options.init else {}),
    }


def _read_last(options: RunOptions) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None (fresh run, or nothing saved yet)."""
    path = options.out / LAST
    if not options.resume:
        return None
    if not path.is_file():
        log.warning("--resume: no %s yet, starting from scratch", path)
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def _read_init(options: RunOptions) -> dict[str, Any] | None:
    """The checkpoint whose weights a fresh run starts from (``--init``), or None."""
    if options.init is None:
        return None
    return torch.load(options.init, map_location="cpu", weights_only=False)


def _restore(checkpoint: Mapping[str, Any] | None, model, optimizer) -> _State:
    state = _State()
    if checkpoint is None:
        return state
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["torch_rng"])
    state.step, state.train_s = int(checkpoint["step"]), float(checkpoint["train_s"])
    state.best_psnr = float(checkpoint["best_psnr"])
    state.schedule = Schedule(**checkpoint["schedule"])
    state.history = list(checkpoint.get("history", []))
    log.info("resumed at step %d (%.1f min trained)", state.step, state.train_s / 60)
    return state


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by SIGTERM / SIGINT, so ``kill PID`` ends the run with a checkpoint."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _weight_average(
    model: torch.nn.Module, checkpoint: Mapping[str, Any] | None, config: Mapping[str, Any]
) -> torch.nn.Module | None:
    """A copy of ``model`` to average the weights into (``ema_decay`` > 0), else None.

    On a resume ``model`` holds the checkpoint's ``model`` (the average): it becomes the
    average, and ``model`` gets the optimised weights back from ``train_model``.
    """
    if float(config.get("ema_decay", 0.0)) <= 0.0:
        return None
    average = copy.deepcopy(model).requires_grad_(False)
    if checkpoint is not None and "train_model" in checkpoint:
        model.load_state_dict(checkpoint["train_model"])
    return average


@torch.no_grad()
def _update_average(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for kept, current in zip(average.parameters(), model.parameters()):
        kept.lerp_(current, 1.0 - decay)
    for kept, current in zip(average.buffers(), model.buffers()):
        kept.copy_(current)


def new_cycle(
    previous: Schedule | None, step: int, train_s: float, config: Mapping[str, Any], budget_s: float
) -> Schedule:
    """Continue an unfinished cycle, else start one (a warm restart after a finished one).

    ``budget_s`` is the training time this process has; ``step`` and ``train_s`` where the
    run stands.
    """
    if previous is not None:
        # A run that ended on its time budget stops a little short of the cycle's end (the
        # reserve for the last validation): count a cycle with under a minute (or 2 %) of
        # its horizon left as finished, or a resume would crawl on at the floor rate.
        left_s = previous.start_s + previous.horizon_s - train_s
        if left_s > min(0.5 * previous.horizon_s, max(60.0, 0.02 * previous.horizon_s)):
            return previous
    peak = float(config["lr"])
    if previous is not None:
        peak *= float(config.get("restart_lr_ratio", 0.5))
    return Schedule(
        peak=peak,
        start_s=train_s,
        horizon_s=budget_s,
        start_step=step,
        warmup_steps=int(config.get("warmup_steps", 0)),
        min_ratio=float(config.get("lr_min_ratio", 0.01)),
    )


def _checkpoint(
    options: RunOptions,
    task: Task,
    config: Mapping[str, Any],
    model,
    optimizer,
    state: _State,
    provenance: Mapping[str, Any],
    data: TaskData,
    device: torch.device,
) -> float:
    """Validate, append to metrics.jsonl, save last.pt (and best.pt when it improved)."""
    published = state.average if state.average is not None else model
    psnr = validate(published, task, data.val, device)
    improved = psnr > state.best_psnr
    state.best_psnr = max(state.best_psnr, psnr)
    record = {
        "step": state.step,
        "train_min": round(state.train_s / 60, 2),
        "val_psnr_db": round(psnr, 4),
        "best_psnr_db": round(state.best_psnr, 4),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    state.history.append(record)
    with open(options.out / METRICS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    weights = {k: v.detach().cpu() for k, v in published.state_dict().items()}
    optimised = {} if state.average is None else {
        "train_model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    common = {"task": task.name, "config": dict(config), "step": state.step, "provenance": dict(provenance)}
    if improved:
        save_atomic({**common, "model": weights, "metrics": {"val_psnr_db": psnr}}, options.out / BEST)
    save_atomic(
        {
            **common,
            "model": weights,
            **optimised,
            "optimizer": optimizer.state_dict(),
            "train_s": state.train_s,
            "best_psnr": state.best_psnr,
            "schedule": state.schedule.to_dict(),
            "history": state.history,
            "torch_rng": torch.get_rng_state(),
        },
        options.out / LAST,
    )
    log.info("step %d: val %.3f dB (best %.3f)%s", state.step, psnr, state.best_psnr,
             " -> best.pt" if improved else "")
    return psnr


def train(task: Task, config: Mapping[str, Any], options: RunOptions) -> Path:
    """Train ``task`` for ``options.minutes`` of wall time; return the best checkpoint's path.

    The budget starts now: data preparation (decoding teachers on a first run) counts.
    """
    started = time.monotonic()
    deadline = started + options.minutes * 60.0
    options.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(options.threads)
    torch.manual_seed(int(config.get("seed", 0)))
    device = torch.device(options.device)
    if device.type == "cuda":
        # Patches have one fixed shape: let cuDNN pick its fastest kernels once.
        torch.backends.cudnn.benchmark = True

    checkpoint = _read_last(options)
    if checkpoint is not None and dict(checkpoint["config"]) != dict(config):
        # A run keeps the network it started with: its checkpoint's config wins. Keys the
        # run did not know yet (knobs added to the task since) come from the given config.
        added = sorted(set(config) - set(checkpoint["config"]))
        log.info("--resume: using the run's own config, not the one given%s",
                 f" (new keys taken: {', '.join(added)})" if added else "")
        config = {**dict(config), **run_config(checkpoint["config"])}
    init = _read_init(options) if checkpoint is None else None
    if init is not None:
        # The network is the init's: its config wins (then --set), as on a resume.
        config = {**dict(config), **run_config(init["config"])}
    if options.overrides:
        log.info("--set: %s", ", ".join(f"{k}={v}" for k, v in options.overrides.items()))
        config = {**dict(config), **dict(options.overrides)}
    model = task.build_model(config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=float(config["lr"]), weight_decay=float(config.get("weight_decay", 0.0))
    )
    state = _restore(checkpoint, model, optimizer)
    if init is not None:  # --set may change slopes or grow the network: see fit_state
        model.load_state_dict(fit_state(model, init["model"]))
        log.info("--init: weights of %s (step %d); a new run from step 0", options.init,
                 int(init["step"]))
    state.average = _weight_average(model, checkpoint, config)
    if options.new_cycle:
        state.schedule = None
    del checkpoint
    # A resumed run draws fresh patches: the stream's seed moves with the step.
    seed = int(config.get("seed", 0)) * 1_000_003 + state.step
    data = task.build_data(config, options.data_dirs, options.cache_dir, seed)
    provenance = _provenance(options, data)
    log.info("task %s (%s): %d parameters; %s", task.name, config.get("variant"),
             sum(p.numel() for p in model.parameters()), data.description)

    budget_s = max(1.0, deadline - time.monotonic() - _RESERVE_S)
    state.schedule = new_cycle(state.schedule, state.step, state.train_s, config, budget_s)

    if state.step == 0:
        log.info("step 0: val %.3f dB (untrained)", validate(model, task, data.val, device))
    with _stop_requests() as stop:
        _run_steps(task, config, options, model, optimizer, state, data, provenance, device, deadline, stop)
    if stop.is_set():
        log.info("stopped by a signal at step %d", state.step)
    _checkpoint(options, task, config, model, optimizer, state, provenance, data, device)
    log.info("done: %d steps, %.1f min of training, best val %.3f dB", state.step,
             state.train_s / 60, state.best_psnr)
    return options.out / BEST


def _run_steps(
    task: Task,
    config: Mapping[str, Any],
    options: RunOptions,
    model,
    optimizer,
    state: _State,
    data: TaskData,
    provenance: Mapping[str, Any],
    device: torch.device,
    deadline: float,
    stop: threading.Event,
) -> None:
    """Optimisation steps until the deadline, ``max_steps`` or a stop request."""
    loss_fn = task.loss(config)
    clip = float(config.get("clip", 0.0))
    decay = float(config.get("ema_decay", 0.0))
    every_s = float(config.get("checkpoint_minutes", 3.0)) * 60.0
    last_save = last_log = tick = time.monotonic()
    window_loss, window_steps, window_norm = 0.0, 0, 0.0
    for x, target in _loader(data, options.workers):
        now = time.monotonic()
        if now >= deadline - _RESERVE_S or stop.is_set():
            break
        if options.max_steps is not None and state.step >= options.max_steps:
            break
        lr = state.schedule.lr(state.step, state.train_s)
        for group in optimizer.param_groups:
            group["lr"] = lr
        prediction = model(*_as_inputs(x, device))
        loss = loss_fn(prediction, target.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else math.inf)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {state.step}; lower lr")
        optimizer.step()
        if state.average is not None:
            _update_average(state.average, model, decay)
        state.step += 1
        end = time.monotonic()
        # Training time is wall time in the loop (data waits, validations), so the cosine
        # cycle ends at the deadline.
        state.train_s += end - tick
        tick = end
        window_loss, window_steps, window_norm = window_loss + loss.item(), window_steps + 1, window_norm + float(norm)
        if end - last_log >= options.log_seconds:
            log.info("step %d  loss %.5f  lr %.2e  grad %.3f  %.2f steps/s  %.1f min left",
                     state.step, window_loss / window_steps, lr, window_norm / window_steps,
                     window_steps / (end - last_log), (deadline - end) / 60)
            window_loss, window_steps, window_norm, last_log = 0.0, 0, 0.0, end
        if end - last_save >= every_s:
            _checkpoint(options, task, config, model, optimizer, state, provenance, data, device)
            last_save = time.monotonic()
