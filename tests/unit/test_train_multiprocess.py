"""Data-parallel training: two CPU processes (gloo) under `accelerate launch` give the adapter
of one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compatlm.cli import main

DIGITS = (1, 3, 4, 7)  # single tokens of the tiny tokenizer


def _data(tmp_path: Path) -> Path:
    """Rows of equal token counts (15 inputs, 2 labels): then the mean of per-process token
    means is the global token mean and one and two processes differ only by float summation
    order."""
    data = tmp_path / "gen.jsonl"
    rows = [
        {
            "id": f"g{k}",
            "prompt": f"Alice has {DIGITS[k % 4]} apples. How many apples?",
            "reference": str(DIGITS[(k // 4 + k) % 4]),
        }
        for k in range(10)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def _launch_two(argv: list[str]) -> None:
    # `--cpu` makes accelerate start a single process unless MPI is set up; `--multi_gpu` starts
    # torchrun, and on CPU our Accelerator then joins a gloo process group.
    launcher = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "compatlm",
        *argv,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def _compare(one: Path, two: Path) -> None:
    assert json.loads((two / "env.json").read_text())["num_processes"] == 2
    a = load_file(str(one / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(two / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    logs = [
        [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
        for run in (one, two)
    ]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == [2, 4]
    assert logs[1][-1]["val_ce"] == pytest.approx(logs[0][-1]["val_ce"], rel=1e-4)
    assert logs[1][-1]["train_loss"] == pytest.approx(logs[0][-1]["train_loss"], rel=1e-4)


OPTIM = "optim: {{epochs: 2, batch_size: {bs}, lr: 0.02, seed: 3}}\nruntime: {{device: cpu, progress: false}}\n"


@pytest.mark.slow
def test_task_two_processes_match_one(tiny_family, tmp_path):
    data = _data(tmp_path)
    for bs in (4, 2):
        (tmp_path / f"bs{bs}.yaml").write_text(
            f"base: {tiny_family['new']}\ntask: {{name: apples, path: {data}}}\n"
            "lora: {r: 2, alpha: 4}\n" + OPTIM.format(bs=bs)
        )
    assert main(["train", "task", str(tmp_path / "bs4.yaml"), "--out", str(tmp_path / "one")]) == 0
    _launch_two(["train", "task", str(tmp_path / "bs2.yaml"), "--out", str(tmp_path / "two")])
    _compare(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
def test_compat_with_cache_two_processes_match_one(tiny_family, tmp_path):
    """Also covers the cache being built by one process while the other waits."""
    data = _data(tmp_path)
    for bs in (4, 2):
        (tmp_path / f"bs{bs}.yaml").write_text(
            f"old: {tiny_family['old']}+{tiny_family['old_adapter']}\n"
            f"new: {tiny_family['new']}+{tiny_family['new_adapter']}\n"
            f"task: {{name: apples, path: {data}}}\nteacher_old: cache\ntopk: 16\nkd_weight: 0.5\n"
            + OPTIM.format(bs=bs)
        )
    assert (
        main(["train", "compat", str(tmp_path / "bs4.yaml"), "--out", str(tmp_path / "one")]) == 0
    )
    _launch_two(["train", "compat", str(tmp_path / "bs2.yaml"), "--out", str(tmp_path / "two")])
    _compare(tmp_path / "one", tmp_path / "two")
