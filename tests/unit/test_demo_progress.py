"""The demo's progress lines: per-step durations, seed counter and the estimate of what is left."""

from __future__ import annotations

import logging

import pytest

from compatlm.demo import steps
from compatlm.demo.steps import SeedClock, clock_text, step


def test_clock_text():
    assert clock_text(4.4) == "4 s"
    assert clock_text(59.4) == "59 s"
    assert clock_text(65) == "1 min 05 s"
    assert clock_text(3600) == "60 min 00 s"


def test_seed_clock_estimates_from_seeds_run_here_only(monkeypatch, caplog):
    now = iter([0.0, 100.0, 100.0, 101.0, 101.0, 301.0])  # seed 0: 100 s, 1: resumed, 2: 200 s
    monkeypatch.setattr(steps.time, "perf_counter", lambda: next(now))
    clock = SeedClock(4)
    with caplog.at_level(logging.INFO, logger="compatlm.demo.steps"):
        clock.start(0)
        assert clock.finish(0) == "seed 0 (1 of 4) done in 1 min 40 s; about 5 min 00 s left"
        clock.start(1)
        # a seed read back from disk took 1 s: it must not shrink the estimate
        assert clock.finish(1, resumed=True).endswith("about 3 min 20 s left")
        clock.start(2)
        assert clock.finish(2).endswith("done in 3 min 20 s; about 2 min 30 s left")
    assert "seed 2 (3 of 4) ..." in caplog.text


def test_last_seed_has_no_estimate(monkeypatch):
    now = iter([0.0, 10.0])
    monkeypatch.setattr(steps.time, "perf_counter", lambda: next(now))
    clock = SeedClock(1)
    clock.start(7)
    assert clock.finish(7) == "seed 7 (1 of 1) done in 10 s"


def test_step_logs_its_duration_once_and_not_when_reused(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="compatlm.demo.steps"):
        assert step(tmp_path / "s", "seed 0 · t: thing", lambda: "result") == "result"
        assert step(tmp_path / "s", "seed 0 · t: thing", pytest.fail) == "result"
    assert caplog.text.count("seed 0 · t: thing: done in") == 1
    assert "done earlier, reusing" in caplog.text
