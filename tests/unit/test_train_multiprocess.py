"""Multi-process training: two CPU processes (gloo) under `accelerate launch` give the adapter
of one process with the same global batch — data parallel (DDP), sharded with FSDP2, and under
DeepSpeed ZeRO-2/3 (through accelerate's own FSDP and DeepSpeed preparation; see
tests/cpu_launch.py for how those run on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compatlm.cli import main
from cpu_launch import command
from optional_deps import needs_deepspeed

DIGITS = (1, 3, 4, 7)  # single tokens of the tiny tokenizer


# accelerate launch options per set-up, and the distributed type env.json then records.
MODES = {
    "ddp": (["--multi_gpu"], "MULTI_CPU"),
    "fsdp2": (
        "--use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP".split(),
        "FSDP",
    ),
    "zero2": ("--use_deepspeed --zero_stage 2".split(), "DEEPSPEED"),
    "zero3": ("--use_deepspeed --zero_stage 3".split(), "DEEPSPEED"),
}


def _data(tmp_path: Path, n: int = 10) -> Path:
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
        for k in range(n)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def _launch_two(
    argv: list[str], *, mode: str = "ddp", check: bool = True, env: dict[str, str] | None = None
) -> str:
    """Run the CLI in two processes under accelerate set-up ``mode``; returns stderr."""
    # `--cpu` makes accelerate start a single process unless MPI is set up; `--multi_gpu` starts
    # torchrun, and on CPU our Accelerator then joins a gloo process group. The plain CLI where
    # no test hook is needed: that is what users run.
    hooks = mode != "ddp" or bool(env)
    cmd = command(MODES[mode][0], argv, port=29517, hooks=hooks)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


def _compare(one: Path, two: Path, mode: str = "ddp", steps: tuple = (2, 4)) -> None:
    env = json.loads((two / "env.json").read_text())
    assert (env["num_processes"], env["distributed_type"]) == (2, MODES[mode][1])
    a = load_file(str(one / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(two / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    logs = [
        [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
        for run in (one, two)
    ]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == list(steps)
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


def _compat_yaml(tiny_family, data: Path, bs: int, extra: str = "") -> str:
    return (
        f"old: {tiny_family['old']}+{tiny_family['old_adapter']}\n"
        f"new: {tiny_family['new']}+{tiny_family['new_adapter']}\n"
        f"task: {{name: apples, path: {data}}}\nkd_weight: 0.5\n{extra}" + OPTIM.format(bs=bs)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, one_bs, per_process, steps",
    [
        ("fsdp2", 2, "batch_size: 1", (4, 8)),
        pytest.param("zero3", 4, "batch_size: 1, grad_accum: 2", (2, 4), marks=needs_deepspeed),
    ],
)
def test_compat_sharded_two_processes_match_one(
    tiny_family, tmp_path, mode, one_bs, per_process, steps
):
    """Sharded student with both teachers live: teacher_new switches adapters on the sharded
    model, teacher_old is a whole model per process. 3 validation examples over 2 processes at
    batch 1 make the processes' validation batch counts differ (2 vs 1): a sharded forward is
    collective, so the shorter one must run a filler batch that is not counted. Under ZeRO-3
    the global batch of 4 is 2 processes x 2 accumulated micro-batches of 1."""
    data = _data(tmp_path, n=11)
    one = _compat_yaml(tiny_family, data, one_bs, "val_fraction: 0.27\n")
    (tmp_path / "one.yaml").write_text(one)
    (tmp_path / "two.yaml").write_text(one.replace(f"batch_size: {one_bs}", per_process))
    assert (
        main(["train", "compat", str(tmp_path / "one.yaml"), "--out", str(tmp_path / "one")]) == 0
    )
    _launch_two(
        ["train", "compat", str(tmp_path / "two.yaml"), "--out", str(tmp_path / "two")], mode=mode
    )
    _compare(tmp_path / "one", tmp_path / "two", mode=mode, steps=steps)
    card = (tmp_path / "two" / "adapter" / "README.md").read_text()
    assert "compatibility adapter" in card


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode",
    [
        "ddp",
        "fsdp2",
        pytest.param("zero2", marks=needs_deepspeed),
        pytest.param("zero3", marks=needs_deepspeed),
    ],
)
def test_interrupted_two_process_run_resumes_exactly(tiny_family, tmp_path, mode):
    """Interrupted mid-epoch, resumed with the same processes: bit-identical to the
    uninterrupted run (dropout on: every process's random stream is restored too). The
    checkpoint holds whole tensors keyed by name, so a sharded run's checkpoint also loads in a
    single process."""
    data = _data(tmp_path)
    (tmp_path / "bs2.yaml").write_text(
        f"base: {tiny_family['new']}\ntask: {{name: apples, path: {data}}}\n"
        "lora: {r: 2, alpha: 4, dropout: 0.1}\n"
        + OPTIM.format(bs=2).replace("seed: 3}", "seed: 3, checkpoint_every: 1}")
    )
    run = ["train", "task", str(tmp_path / "bs2.yaml"), "--out"]
    _launch_two([*run, str(tmp_path / "full")], mode=mode)
    argv = [*run, str(tmp_path / "two")]
    _launch_two(argv, mode=mode, check=False, env={"COMPATLM_TEST_INTERRUPT_AT_STEP": "2"})
    state = json.loads((tmp_path / "two" / "checkpoint" / "state.json").read_text())
    assert (state["global_step"], state["batches_done"], state["world_size"]) == (1, 1, 2)
    shutil.copytree(tmp_path / "two", tmp_path / "single")
    _launch_two([*argv, "--resume"], mode=mode)
    a, b = (
        load_file(str(tmp_path / r / "adapter" / "adapter_model.safetensors"))
        for r in ("full", "two")
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [(tmp_path / r / "train_log.jsonl").read_text() for r in ("full", "two")]
    assert logs[0] == logs[1]
    if mode == "fsdp2":  # another global batch on one process: only that it loads and finishes
        single = ["train", "task", str(tmp_path / "bs2.yaml"), "--out", str(tmp_path / "single")]
        assert main([*single, "--resume"]) == 0  # warns: written by 2 processes
        log = (tmp_path / "single" / "train_log.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in log] == [4, 8]  # 1 of 4 batches was done
