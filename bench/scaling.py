"""How evaluation (multiple-choice scoring) and training-step time grow with the problem size.

Three axes, three points each, every other setting held at the middle point (untied Llama with
4 layers, byte-level BPE vocabulary 1024, CPU, fp32):

* instances — eval: 250 / 500 / 1000 4-choice instances; training: one epoch over 64 / 128 / 256
  examples (batch 8);
* sequence length — eval: requests of about 32 / 64 / 128 tokens; training: 32 / 64 / 128 tokens;
* model size — hidden 64 / 128 / 256 (parameter count on the x axis).

Eval is :func:`compatlm.eval.runner.score_multiple_choice` (batch 16), in process, after a
warm-up; training is the plain task-adapter step of ``compatlm train task``
(:func:`compatlm.train.student.build_student` with the default LoRA r=8 on all linear layers,
:func:`compatlm.train.step.ce_step`, backward, AdamW) on synthetic sequences, every position
labelled. Each point is the median of ``--reps`` repetitions; each axis gets a least-squares fit
of log(time) against log(x) whose slope is the observed exponent (1 = linear).

Run (one benchmark at a time)::

    .venv/bin/python bench/scaling.py            # writes bench/results/scaling.json
    .venv/bin/python bench/scaling.py --quick    # < 30 s smoke check
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_THREADS,
    WORDS,
    default_out,
    loglog_fit,
    machine_info,
    make_bpe_tokenizer,
    make_llama,
    n_params,
    save_model,
    set_threads,
    setup_logging,
    summarize,
    wait_for_quiet,
    write_result,
)

FULL = {
    "eval_instances": (250, 500, 1000),
    "train_instances": (64, 128, 256),
    "seq_tokens": (32, 64, 128),
    "hidden": (64, 128, 256),
    "mid": {"eval_instances": 250, "train_instances": 64, "seq_tokens": 64, "hidden": 128},
    "layers": 4,
    "train_steps": 10,
}
QUICK = {
    "eval_instances": (20, 40, 80),
    "train_instances": (16, 32, 64),
    "seq_tokens": (16, 32, 64),
    "hidden": (32, 64, 128),
    "mid": {"eval_instances": 20, "train_instances": 16, "seq_tokens": 32, "hidden": 64},
    "layers": 2,
    "train_steps": 3,
}
EVAL_BATCH, TRAIN_BATCH = 16, 8
CHOICE_WORDS = 8  # ~8 tokens per choice; the context makes up the rest of the request


def mc_examples(n: int, seq_tokens: int, seed: int) -> list[Any]:
    from compatlm.tasks.base import MCExample

    rng = random.Random(seed)
    ctx_words = max(seq_tokens - CHOICE_WORDS, 4)
    return [
        MCExample(
            id=f"q{i}",
            context=" ".join(rng.choices(WORDS, k=ctx_words)),
            choices=tuple(" ".join(rng.choices(WORDS, k=CHOICE_WORDS)) for _ in range(4)),
            label=rng.randrange(4),
        )
        for i in range(n)
    ]


def eval_job(model: Any, tok: Any, examples: list[Any]) -> Any:
    """A callable that scores ``examples`` once and returns the seconds it took."""
    from compatlm.eval.runner import score_multiple_choice

    def run() -> float:
        t0 = time.perf_counter()
        score_multiple_choice(
            model, tok, examples, metric="acc", batch_size=EVAL_BATCH, max_length=512
        )
        return time.perf_counter() - t0

    return run


def train_features(n: int, seq: int, vocab: int, seed: int) -> list[Any]:
    import torch

    from compatlm.train.data import Features

    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(3, vocab, (seq + 1,), generator=gen).tolist()
        out.append(Features(f"x{i}", tuple(ids[:-1]), tuple(ids[1:]), (True,) * seq))
    return out


def train_job(model_dir: Path, feats: list[Any], steps: int | None) -> tuple[Any, int]:
    """A callable that runs ``steps`` plain task-adapter steps (None: one epoch over ``feats``)
    and returns the seconds they took; and the number of steps."""
    import torch

    from compatlm.config import RuntimeConfig
    from compatlm.spec import ModelSpec
    from compatlm.train.config import LoraSettings
    from compatlm.train.data import Collator
    from compatlm.train.step import ce_step
    from compatlm.train.student import build_student

    model, _ = build_student(
        ModelSpec.parse(str(model_dir)), LoraSettings(), RuntimeConfig(device="cpu")
    )
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collate = Collator(0, [f.example_id for f in feats])
    batches = [collate(feats[i : i + TRAIN_BATCH]) for i in range(0, len(feats), TRAIN_BATCH)]
    n_steps = steps or len(batches)

    def run() -> float:
        t0 = time.perf_counter()
        for i in range(n_steps):
            out = ce_step(model, batches[i % len(batches)])
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    return run, n_steps


def run_jobs(jobs: list[dict], reps: int) -> None:
    """One warm-up each, then ``reps`` rounds over every job, the order rotated each round so
    a drifting machine load spreads over all points instead of bending one axis."""
    for job in jobs:
        job["run"]()  # first-call allocations, optimizer state
        job["times"] = []
    for rep in range(reps):
        shift = rep * len(jobs) // max(reps, 1)
        for job in jobs[shift:] + jobs[:shift]:
            job["times"].append(job["run"]())
    for job in jobs:
        job["seconds"] = summarize(job.pop("times"))
        del job["run"]
        if "steps" in job:
            job["step_ms_median"] = round(1e3 * job["seconds"]["median"] / job["steps"], 2)
        print(f"{job['kind']} {job['axis']}={job['x']}: {job['seconds']['median']:.3f}s",
              file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    grid = QUICK if args.quick else FULL
    reps = 1 if args.quick else args.reps
    set_threads(args.threads)
    mid = grid["mid"]
    rng = random.Random(args.seed)
    tok = make_bpe_tokenizer([" ".join(rng.choices(WORDS, k=60)) for _ in range(500)], 1024)
    load = wait_for_quiet(skip=args.quick)
    machine = machine_info(args.threads)
    started = time.perf_counter()
    jobs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        models = {}
        for hidden in grid["hidden"]:
            model = make_llama(tok, hidden=hidden, layers=grid["layers"], seed=args.seed)
            models[hidden] = (model, save_model(model, tok, Path(tmp) / f"h{hidden}"))
        base, base_dir = models[mid["hidden"]]
        for n in grid["eval_instances"]:
            run = eval_job(base, tok, mc_examples(n, mid["seq_tokens"], 1))
            jobs.append({"kind": "eval", "axis": "instances", "x": n, "run": run})
        for seq in grid["seq_tokens"]:
            examples = mc_examples(mid["eval_instances"], seq, 1)
            req = [len(tok.encode(e.context + " " + c)) for e in examples for c in e.choices]
            jobs.append({"kind": "eval", "axis": "seq_tokens", "x": statistics.median(req),
                         "target_tokens": seq, "run": eval_job(base, tok, examples)})  # fmt: skip
        for hidden, (model, _) in models.items():
            run = eval_job(model, tok, mc_examples(mid["eval_instances"], mid["seq_tokens"], 1))
            jobs.append({"kind": "eval", "axis": "parameters", "x": n_params(model),
                         "hidden": hidden, "run": run})  # fmt: skip
        vocab, steps = len(tok), grid["train_steps"]
        for n in grid["train_instances"]:  # one epoch over n examples
            run, n_steps = train_job(base_dir, train_features(n, mid["seq_tokens"], vocab, 2), None)
            jobs.append(
                {"kind": "train", "axis": "instances", "x": n, "steps": n_steps, "run": run}
            )
        for seq in grid["seq_tokens"]:
            run, _ = train_job(base_dir, train_features(4 * TRAIN_BATCH, seq, vocab, 2), steps)
            jobs.append(
                {"kind": "train", "axis": "seq_tokens", "x": seq, "steps": steps, "run": run}
            )
        for hidden, (model, path) in models.items():
            feats = train_features(4 * TRAIN_BATCH, mid["seq_tokens"], vocab, 2)
            run, _ = train_job(path, feats, steps)
            jobs.append({"kind": "train", "axis": "parameters", "x": n_params(model),
                         "hidden": hidden, "steps": steps, "run": run})  # fmt: skip
        run_jobs(jobs, reps)
    rows: dict[str, dict[str, list[dict]]] = {"eval": {}, "train": {}}
    for job in jobs:
        rows[job.pop("kind")].setdefault(job.pop("axis"), []).append(job)
    eval_rows, train_rows = rows["eval"], rows["train"]

    def fits(rows: dict[str, list[dict]]) -> dict:
        return {
            axis: loglog_fit([r["x"] for r in pts], [r["seconds"]["median"] for r in pts])
            for axis, pts in rows.items()
        }

    doc = {
        "benchmark": "scaling",
        "quick": args.quick,
        "setup": {
            "layers": grid["layers"],
            "vocab": len(tok),
            "middle_point": mid,
            "eval": f"score_multiple_choice, 4 choices of ~{CHOICE_WORDS} tokens, batch {EVAL_BATCH}",
            "train": f"plain task-adapter step (LoRA r=8 all-linear, AdamW), batch {TRAIN_BATCH},"
            f" {grid['train_steps']} steps per timing on the seq/size axes, one epoch on the"
            " instances axis",
            "repetitions": reps,
            "threads": args.threads,
            "seconds_total": None,
        },
        "load": load,
        "eval": {"points": eval_rows, "loglog_slope": fits(eval_rows)},
        "train": {"points": train_rows, "loglog_slope": fits(train_rows)},
    }
    doc["setup"]["seconds_total"] = round(time.perf_counter() - started, 1)
    out = args.out or default_out("scaling", args.quick)
    write_result(out, doc, machine)
    print(
        json.dumps(
            {
                "eval_slopes": doc["eval"]["loglog_slope"],
                "train_slopes": doc["train"]["loglog_slope"],
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
