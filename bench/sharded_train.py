"""`compatlm train task` on two CPU processes: DDP vs FSDP2 vs DeepSpeed ZeRO-2 / ZeRO-3.

What sharding buys and costs, measured on this CPU machine with the CLI users run: an 8.2M
parameter untied Llama (hidden 384, 6 layers, vocabulary 1024), LoRA r=8 on every linear layer,
128 generated examples, 1 epoch, batch 4 per process (global 8). Each set-up is launched by
`accelerate launch` with 2 processes of 1 thread (FSDP and DeepSpeed through
tests/cpu_launch.py, which turns accelerate's sharded paths on for CPU processes). Recorded per
set-up: wall time of the whole launch (start-up, model load and DeepSpeed import included),
the parameter memory each process holds after preparation (the loop logs it), the peak RSS of
the largest process, and how far its adapter is from the DDP one (the sharded set-ups should
agree with it to float rounding). A single process with batch 8 is the reference for time; its
adapter differs slightly more, because rows differ in length and each process averages the loss
over its own tokens.

Run on a quiet machine (one benchmark at a time)::

    .venv/bin/python bench/sharded_train.py           # writes bench/results/sharded_train.json
    .venv/bin/python bench/sharded_train.py --quick   # smoke run, temp file
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The launcher the two-process tests use (it turns FSDP/DeepSpeed on for CPU processes).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import (
    default_out,
    machine_info,
    make_bpe_tokenizer,
    make_llama,
    n_params,
    save_model,
    set_threads,
    setup_logging,
    wait_for_quiet,
    write_result,
)

from cpu_launch import command

log = logging.getLogger("bench.sharded_train")
MODES = {
    "ddp": ["--multi_gpu"],
    "fsdp2": "--use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP".split(),
    "zero2": "--use_deepspeed --zero_stage 2".split(),
    "zero3": "--use_deepspeed --zero_stage 3".split(),
}
HELD = re.compile(r"parameters held by each process: ([0-9.]+) MB")


def build(root: Path, n_rows: int) -> tuple[Path, Path, int]:
    """A base model and a generation task file; returns (base, data, parameter count)."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    rows = []
    for k in range(n_rows):
        ctx = " ".join(words[(k * 7 + i) % len(words)] for i in range(24))
        rows.append(
            {
                "id": f"r{k}",
                "prompt": f"Context: {ctx}. Which word came first?",
                "reference": ctx.split()[0],
            }
        )
    tok = make_bpe_tokenizer([r["prompt"] + " " + r["reference"] for r in rows], 1024)
    model = make_llama(tok, hidden=384, layers=6, seed=0)
    base = save_model(model, tok, root / "base")
    data = root / "task.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return base, data, n_params(model)


class PeakRss(threading.Thread):
    """Peak resident memory (MB) of the largest of ``pid`` and its descendants (0.1 s samples)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self.done.is_set():
            try:
                for proc in [root, *root.children(recursive=True)]:
                    self.peak = max(self.peak, proc.memory_info().rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.1)


def launch(mode: str | None, cfg: Path, out: Path, env: dict[str, str]) -> dict:
    """One training run; ``mode`` None = a single plain process."""
    if mode is None:
        cmd = [sys.executable, "-m", "compatlm", "train", "task", str(cfg), "--out", str(out)]
    else:
        cmd = command(MODES[mode], ["train", "task", str(cfg), "--out", str(out)], port=29531)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakRss(proc.pid)
    sampler.start()
    _, stderr = proc.communicate(timeout=3600)
    sampler.done.set()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: exit {proc.returncode}\n{stderr[-3000:]}")
    held = HELD.search(stderr)
    history = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {
        "wall_seconds": round(wall, 1),
        "param_mb_per_process": float(held.group(1)) if held else None,
        "peak_rss_mb_largest_process": round(sampler.peak, 1),
        "steps": history[-1]["step"],
        "train_loss": history[-1]["train_loss"],
        "val_ce": history[-1].get("val_ce"),
    }


def max_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x = load_file(str(a / "adapter" / "adapter_model.safetensors"))
    y = load_file(str(b / "adapter" / "adapter_model.safetensors"))
    return max(float((x[k] - y[k]).abs().max()) for k in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="32 rows, no quiet wait, temp output")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    setup_logging()
    machine = machine_info(threads=1)
    quiet = wait_for_quiet(skip=args.quick)
    env = set_threads(1) | {"CUDA_VISIBLE_DEVICES": ""}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, data, params = build(root, 32 if args.quick else 128)
        for bs, name in ((8, "one"), (4, "two")):
            (root / f"{name}.yaml").write_text(
                f"base: {base}\ntask: {{name: words, path: {data}}}\nlora: {{r: 8, alpha: 16}}\n"
                f"optim: {{epochs: 1, batch_size: {bs}, lr: 0.001, seed: 0}}\n"
                "runtime: {device: cpu, progress: false}\n"
            )
        log.info("single process")
        results["single"] = launch(None, root / "one.yaml", root / "single", env)
        for mode in MODES:
            log.info("%s", mode)
            results[mode] = launch(mode, root / "two.yaml", root / mode, env)
            results[mode]["adapter_max_abs_diff_vs_ddp"] = max_diff(root / "ddp", root / mode)
        # Not rounding: rows differ in length, and each process averages over its own tokens.
        results["single"]["adapter_max_abs_diff_vs_ddp"] = max_diff(root / "ddp", root / "single")
    doc = {
        "benchmark": "sharded_train",
        "command": "python bench/sharded_train.py" + (" --quick" if args.quick else ""),
        "model": {"params": params, "hidden": 384, "layers": 6, "lora_r": 8},
        "processes": 2,
        "threads_per_process": 1,
        "global_batch": 8,
        "quiet": quiet,
        "results": results,
    }
    path = write_result(args.out or default_out("sharded_train", args.quick), doc, machine)
    print(json.dumps(results, indent=1))
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
