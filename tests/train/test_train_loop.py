"""The time-based cosine schedule and its resume rules."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from nnip.train.loop import Schedule, new_cycle  # noqa: E402

CONFIG = {"lr": 1e-3, "warmup_steps": 10, "lr_min_ratio": 0.01, "restart_lr_ratio": 0.5}


def test_warmup_then_cosine_on_time():
    schedule = new_cycle(None, step=0, train_s=0.0, config=CONFIG, budget_s=100.0)
    assert schedule.lr(0, 0.0) == pytest.approx(1e-4)  # first of 10 warm-up steps
    assert schedule.lr(9, 0.0) == pytest.approx(1e-3)
    assert schedule.lr(50, 50.0) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert schedule.lr(90, 100.0) == pytest.approx(1e-5)
    assert schedule.lr(99, 500.0) == pytest.approx(1e-5)  # stays at the floor past the end


def test_resume_continues_an_unfinished_cycle():
    first = new_cycle(None, step=0, train_s=0.0, config=CONFIG, budget_s=100.0)
    again = new_cycle(Schedule(**first.to_dict()), step=40, train_s=40.0, config=CONFIG, budget_s=30.0)
    assert again == first


def test_a_cycle_ended_by_its_budget_counts_as_finished():
    """A budgeted run stops ~20 s short of its cycle's end (the final validation's reserve)."""
    first = new_cycle(None, step=0, train_s=0.0, config=CONFIG, budget_s=5400.0)
    resumed = new_cycle(first, step=9000, train_s=5380.0, config=CONFIG, budget_s=3600.0)
    assert resumed != first and resumed.peak == pytest.approx(5e-4)
    halfway = new_cycle(first, step=4000, train_s=2700.0, config=CONFIG, budget_s=3600.0)
    assert halfway == first


def test_resume_after_a_finished_cycle_restarts_lower():
    first = new_cycle(None, step=0, train_s=0.0, config=CONFIG, budget_s=100.0)
    restart = new_cycle(first, step=500, train_s=100.0, config=CONFIG, budget_s=60.0)
    assert restart.peak == pytest.approx(5e-4)
    assert (restart.start_s, restart.horizon_s, restart.start_step) == (100.0, 60.0, 500)
    assert restart.lr(500, 100.0) == pytest.approx(5e-5)  # warm-up again from the new start
    assert restart.lr(510, 130.0) == pytest.approx(5e-4 * (0.01 + 0.99 * 0.5))


def test_data_workers_leave_sigterm_to_the_run() -> None:
    import signal

    from nnip.train.loop import _worker_init

    before = signal.getsignal(signal.SIGTERM)
    try:
        _worker_init(0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
