"""Kill -9 in the middle of a run, resume it, and get exactly what an uninterrupted run gives.

The interrupted run is a real ``python -m compatlm`` subprocess killed with SIGKILL (no
cleanup handlers run, a prediction line may be cut mid-write); the reference and the resumed
runs go through ``compatlm.cli.main`` in-process. Timing is never assumed: the test polls the
file system until the run has written something but not finished, and fails with a clear
message if the subprocess ends before it could be killed (make the workload bigger then).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from workloads import eval_yaml, write_mc_task

from compatlm.cli import main

N_EVAL = 300  # examples; 3 choices each, batch_size 4 -> ~1 s of scoring per model
N_TRAIN = 120  # examples; 96 train at batch_size 2 -> 48 optimiser steps per epoch
TIMEOUT = 120.0  # seconds to wait for the subprocess to reach the kill point


@contextmanager
def one_thread() -> Iterator[None]:
    """In-process runs use one thread, like the subprocess (OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def kill_when(argv: list[str], ready: Callable[[], bool], what: str) -> None:
    """Run ``python -m compatlm *argv`` and SIGKILL it as soon as ``ready()`` holds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "compatlm", "-q", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        while not ready():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                pytest.fail(
                    f"the run finished (exit {proc.returncode}) before {what}; it could not be"
                    f" killed mid-run — make the workload bigger. stderr: {err}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {TIMEOUT:.0f} s waiting for {what}")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}: not killed mid-run"


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------- eval


@pytest.fixture(scope="module")
def eval_config(tiny_family, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill_eval")
    task = write_mc_task(root / "mc.jsonl", N_EVAL)
    cfg = root / "eval.yaml"
    cfg.write_text(eval_yaml(tiny_family, task, batch_size=4, bootstrap=50))
    return cfg


@pytest.mark.slow  # a real subprocess, killed and resumed: 10-20 s
def test_eval_killed_then_resumed_equals_uninterrupted(eval_config, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    with one_thread():
        assert main(["eval", str(eval_config), "--out", str(reference)]) == 0

    preds = killed / "predictions" / "tiny_mc"

    def mid_scoring() -> bool:
        # Some rows of a role on disk, not all of them: the kill lands inside scoring.
        return any(0 < count_lines(preds / f"{r}.jsonl") < N_EVAL for r in ("old", "new"))

    kill_when(["eval", str(eval_config), "--out", str(killed)], mid_scoring, "partial predictions")
    assert not (killed / "metrics.json").exists()
    partial = {r: count_lines(preds / f"{r}.jsonl") for r in ("old", "new")}
    assert 0 < partial["old"] + partial["new"] < 2 * N_EVAL, partial

    with one_thread():
        assert main(["eval", str(eval_config), "--out", str(killed), "--resume"]) == 0
    assert (killed / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()
    for role in ("old", "new"):
        got = [json.loads(line) for line in (preds / f"{role}.jsonl").read_text().splitlines()]
        want_path = reference / "predictions" / "tiny_mc" / f"{role}.jsonl"
        want = [json.loads(line) for line in want_path.read_text().splitlines()]
        assert len(got) == len({r["example_id"] for r in got}) == N_EVAL  # no duplicates
        by_id = {r["example_id"]: r for r in got}
        for row in want:
            other = by_id[row["example_id"]]
            assert (other["parsed"], other["correct"]) == (row["parsed"], row["correct"])
            assert other["loglikelihoods"] == pytest.approx(row["loglikelihoods"], abs=1e-6)


# --------------------------------------------------------------------------- train


@pytest.fixture(scope="module")
def train_config(tiny_family, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill_train")
    task = write_mc_task(root / "train.jsonl", N_TRAIN)
    cfg = root / "train.yaml"
    cfg.write_text(
        f"base: {tiny_family['new']}\n"
        f"task: {{name: tiny_mc, path: {task}}}\n"
        "lora: {r: 2, alpha: 4}\n"
        # a checkpoint after every optimiser step: the kill lands between two of them
        "optim: {epochs: 2, batch_size: 2, lr: 0.01, checkpoint_every: 1, seed: 5}\n"
        "runtime: {device: cpu, progress: false}\n"
    )
    return cfg


def adapter_logits(base: Path, adapter: Path) -> torch.Tensor:
    from compatlm.config import RuntimeConfig
    from compatlm.models import load_model

    loaded = load_model(f"{base}+{adapter}", runtime=RuntimeConfig(device="cpu"))
    ids = loaded.tokenizer("Question: what does the cat do?\nAnswer: sleeps")["input_ids"]
    with torch.no_grad():
        return loaded.model(input_ids=torch.tensor([ids])).logits  # (1, T, V)


@pytest.mark.slow  # a real subprocess, killed and resumed: 10-20 s
def test_train_killed_then_resumed_equals_uninterrupted(train_config, tiny_family, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    with one_thread():
        assert main(["train", "task", str(train_config), "--out", str(reference)]) == 0
    total = json.loads((reference / "checkpoint" / "state.json").read_text())["global_step"]
    assert total == 96

    state = killed / "checkpoint" / "state.json"

    def after_first_checkpoint() -> bool:
        return state.exists()

    kill_when(["train", "task", str(train_config), "--out", str(killed)], after_first_checkpoint,
              "the first checkpoint")  # fmt: skip
    # The rename that publishes a checkpoint may have been interrupted; then no checkpoint is
    # left and resuming starts over, which must give the same result too.
    step = json.loads(state.read_text())["global_step"] if state.exists() else 0
    assert step < total, "the run was killed after its last step: nothing left to resume"

    with one_thread():
        assert main(["train", "task", str(train_config), "--out", str(killed), "--resume"]) == 0
    want = adapter_logits(tiny_family["new"], reference / "adapter")
    got = adapter_logits(tiny_family["new"], killed / "adapter")
    assert torch.allclose(got, want, atol=1e-6), float((got - want).abs().max())
    # the adapter really was trained: it moves the base's logits
    base = adapter_logits(tiny_family["new"], tiny_family["new_adapter"])
    assert not torch.allclose(got, base, atol=1e-3)
    log_want = (reference / "train_log.jsonl").read_text().splitlines()
    log_got = (killed / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in log_got] == [1, 2]
    for a, b in zip(log_got, log_want, strict=True):
        ra, rb = json.loads(a), json.loads(b)
        assert ra.keys() == rb.keys()
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], abs=1e-6), key
