"""Multiple-choice scoring speed of compatlm against lm-evaluation-harness 0.4.13 (the peer).

Same tiny untied Llama (hidden 128, 4 layers, random weights with a wide initialiser so choices
are not near-ties, saved to a temp dir, fp32, CPU), same local 4-choice task (1,000 instances,
context + choice 30-80 tokens), same batch size, same thread count. Each repetition runs, in
ALTERNATING order, one fresh process of each side, so both pay interpreter start, imports,
model loading and writing per-sample outputs:

* lm-eval: its CLI entry point (``lm_eval.__main__.cli_evaluate``, what the ``lm_eval`` console
  script calls) with ``--model hf --model_args pretrained=DIR,dtype=float32 --tasks T
  --include_path D --batch_size B --device cpu --log_samples --output_path O``, through a
  10-line wrapper that only times ``TemplateLM.loglikelihood`` (tokenising + scoring all requests:
  lm-eval's loglikelihood phase). One extra run of the unwrapped console script checks that the
  wrapper costs nothing.
* compatlm: one role of ``compatlm eval`` — ``resolve_task`` on the JSONL task, ``load_model``,
  then the pipeline's own per-task loop (``pipeline._run_task``: chunked
  ``score_multiple_choice`` + validated prediction lines appended to a JSONL file); the time
  inside ``score_multiple_choice`` is its scoring phase.

Reported: wall-time ratio compatlm / lm-eval (target <= 0.67), scoring-phase ratio, the phase
breakdown of each side, a cProfile of one compatlm run, and per-instance agreement of the chosen
answers (acc and acc_norm; target 100 %).

Run (one benchmark at a time; set up the peer first with ``bench/setup_peer.sh``)::

    .venv/bin/python bench/scoring_vs_lmeval.py                 # writes bench/results/
    .venv/bin/python bench/scoring_vs_lmeval.py --quick         # < 30 s smoke check
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    DEFAULT_THREADS,
    LMEVAL_PYTHON,
    LMEVAL_TIMER,
    WORDS,
    default_out,
    last_json_line,
    lmeval_command,
    lmeval_version,
    machine_info,
    make_bpe_tokenizer,
    make_llama,
    mc_agreement,
    mc_task_yaml,
    n_params,
    profile_summary,
    save_model,
    set_threads,
    setup_logging,
    summarize,
    wait_for_quiet,
    write_result,
)

TASK = "compatlm_speed_mc"
# --------------------------------------------------------------------------- fixtures


def make_task(n: int, seed: int) -> list[dict]:
    """4-choice instances: contexts of 25-58 words in four styles, choices of 3-16 words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ctx = " ".join(rng.choices(WORDS, k=rng.randint(25, 58)))
        style = i % 4
        if style == 1:
            ctx = f"Question: {ctx}?\nAnswer:"
        elif style == 2:
            ctx += " "  # trailing space: moves into the continuation
        elif style == 3:
            ctx = ctx.capitalize() + "."
        choices = [" ".join(rng.choices(WORDS, k=rng.randint(3, 16))) for _ in range(4)]
        rows.append({"id": f"q{i}", "context": ctx, "choices": choices, "label": rng.randrange(4)})
    return rows


def build(work: Path, n: int, hidden: int, layers: int, seed: int) -> dict:
    rows = make_task(n, seed)
    task_file = work / "task.jsonl"
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tok = make_bpe_tokenizer([r["context"] + " " + " ".join(r["choices"]) for r in rows], 1024)
    model = make_llama(tok, hidden=hidden, layers=layers, seed=seed, init_range=0.2)
    save_model(model, tok, work / "model")
    lengths = sorted(
        len(tok.encode(r["context"].rstrip() + " " + c)) for r in rows for c in r["choices"]
    )
    tasks_dir = work / "lmeval_tasks"
    tasks_dir.mkdir()
    (tasks_dir / f"{TASK}.yaml").write_text(mc_task_yaml(TASK, task_file), encoding="utf-8")
    (work / "lmeval_timed.py").write_text(LMEVAL_TIMER, encoding="utf-8")
    return {
        "instances": n,
        "choices_per_instance": 4,
        "requests": 4 * n,
        "tokens_per_request": {
            "min": lengths[0],
            "median": statistics.median(lengths),
            "max": lengths[-1],
        },
        "model": f"LlamaForCausalLM hidden {hidden}, {layers} layers, vocab {len(tok)}, untied,"
        " random init (std 0.2), fp32",
        "parameters": n_params(model),
    }


# --------------------------------------------------------------------------- the two sides


def run_lmeval(work: Path, rep: str, batch: int, env: dict, wrapped: bool = True) -> dict:
    out = work / f"lmeval_out_{rep}"
    timing = work / f"lmeval_timing_{rep}.json"
    cmd = lmeval_command(
        work / "model", TASK, work / "lmeval_tasks", out, batch, timer=work / "lmeval_timed.py"
    )
    if not wrapped:
        cmd = [str(Path(LMEVAL_PYTHON).parent / "lm_eval"), *cmd[2:]]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env | {"LMEVAL_TIMING_OUT": str(timing)}
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"lm_eval failed (exit {proc.returncode}):\n{tail}")
    samples = sorted(out.rglob(f"samples_{TASK}_*.jsonl"))
    rows = [json.loads(line) for line in samples[-1].read_text().splitlines() if line.strip()]
    res = {"wall": wall, "rows": rows, "command": " ".join(cmd)}
    if wrapped:
        t = json.loads(timing.read_text())
        res |= {"scoring": sum(e - s for s, e, _ in t["spans"]), "in_process": t["in_process"]}
        res["before_scoring"] = t["spans"][0][0] if t["spans"] else None
    return res


def run_compatlm(
    work: Path, rep: str, batch: int, threads: int, env: dict, *, profile=False, chunk_sync=False
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(work),
        "--rep",
        rep,
        "--batch-size",
        str(batch),
        "--threads",
        str(threads),
    ]
    cmd += ["--profile"] if profile else []
    cmd += ["--fsync-per-chunk"] if chunk_sync else []
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"compatlm child failed:\n{proc.stderr[-3000:]}")
    res = last_json_line(proc.stdout) | {"wall": wall}
    path = work / f"compatlm_{rep}.jsonl"
    res["rows"] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return res


def child(work: Path, rep: str, batch: int, threads: int, profile: bool, chunk_sync: bool) -> None:
    """One role of ``compatlm eval`` on the task (runs in its own process).

    ``chunk_sync`` measures a proposed change: fsync once per written chunk (``advance`` is
    called once per chunk of 4 batches) instead of once per prediction line.
    """
    t0 = time.perf_counter()
    import os

    import torch

    torch.set_num_threads(threads)
    from compatlm.config import RuntimeConfig, TaskConfig
    from compatlm.eval import pipeline
    from compatlm.io import JsonlAppender, dumps
    from compatlm.models import load_model
    from compatlm.prompts import example_hash
    from compatlm.tasks import resolve_task

    t_imports = time.perf_counter()
    cfg = TaskConfig(name=TASK, kind="multiple_choice", path=str(work / "task.jsonl"), metric="acc")
    task = resolve_task(cfg, "tasks[0]")
    hashes = {ex.id: example_hash(ex.hash_fields()) for ex in task.examples}
    spec = str(work / "model")
    loaded = load_model(spec, runtime=RuntimeConfig(device="cpu", batch_size=batch, progress=False))
    t_loaded = time.perf_counter()
    spent = [0.0]
    score = pipeline.score_multiple_choice

    def timed_score(*args, **kwargs):
        s = time.perf_counter()
        try:
            return score(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - s

    pipeline.score_multiple_choice = timed_score
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()

    class ChunkSynced(JsonlAppender):
        def write(self, row) -> None:
            self._fh.write(dumps(row) + "\n")

        def sync(self, _n: int = 0) -> None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    appender = ChunkSynced if chunk_sync else JsonlAppender
    with appender(work / f"compatlm_{rep}.jsonl") as writer:
        advance = writer.sync if chunk_sync else (lambda n: None)
        pipeline._run_task(loaded, task, task.examples, writer, role="new", model_name=spec,
                           batch_size=batch, hashes=hashes, advance=advance)  # fmt: skip
    if prof is not None:
        prof.disable()
    end = time.perf_counter()
    res = {
        "imports": t_imports - t0,
        "task_and_model_load": t_loaded - t_imports,
        "scoring": spent[0],
        "run_task": end - t_loaded,
        "in_process": end - t0,
        "torch_threads": torch.get_num_threads(),
    }
    if prof is not None:
        res |= profile_summary(prof, 14)
    print(json.dumps(res))


# --------------------------------------------------------------------------- driver


def measure(work: Path, args: argparse.Namespace, env: dict) -> dict[str, list[dict]]:
    """``--reps`` runs of each side, the order rotated every repetition so a drifting machine
    load hits every side alike (--quick: once each, no peer unless --with-peer)."""
    b, th = args.batch_size, args.threads
    sides = {
        "lm_eval": lambda tag: run_lmeval(work, tag, b, env),
        "compatlm": lambda tag: run_compatlm(work, tag, b, th, env),
        "compatlm_fsync_per_chunk": lambda tag: run_compatlm(
            work, tag + "c", b, th, env, chunk_sync=True
        ),
    }
    runs: dict[str, list[dict]] = {name: [] for name in sides}

    def one(name: str, tag: str) -> None:
        before, cpu = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
        res = sides[name](tag)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # The load next to each run: other jobs starting mid-benchmark show up here.
        res |= {"load_before": before, "load_after": os.getloadavg()[0],
                "child_cpu": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime}  # fmt: skip
        runs[name].append(res)
        print(f"{tag} {name}: wall {res['wall']:.2f}s scoring {res['scoring']:.2f}s"
              f" load {before:.2f}->{res['load_after']:.2f}", file=sys.stderr)  # fmt: skip

    if args.quick:  # smoke check: one run each; the peer alone needs ~20 s just to start
        for name in sides:
            if name != "lm_eval" or args.with_peer:
                one(name, "q")
        return runs
    names = list(sides)
    for rep in range(args.reps):
        for name in names[rep % 3 :] + names[: rep % 3]:
            one(name, f"r{rep}")
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 60 instances, compatlm only")
    ap.add_argument("--with-peer", action="store_true", help="--quick: run lm-eval too (+~25 s)")
    ap.add_argument("--n", type=int, default=1000, help="instances (4 choices each)")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions per side")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rep", default="0", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fsync-per-chunk", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(
            args.child, args.rep, args.batch_size, args.threads, args.profile, args.fsync_per_chunk
        )
        return 0
    setup_logging()
    if args.quick:
        args.n, args.reps, args.hidden, args.layers = 60, 1, 64, 2
    peer_version = lmeval_version()
    env = set_threads(args.threads)
    load = wait_for_quiet(skip=args.quick)
    machine = machine_info(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_mc_") as tmp:
        work = Path(tmp)
        setup = build(work, args.n, args.hidden, args.layers, args.seed)
        runs = measure(work, args, env)
        plain = profiled = None
        if not args.quick:
            plain = run_lmeval(work, "plain", args.batch_size, env, wrapped=False)
            profiled = run_compatlm(work, "prof", args.batch_size, args.threads, env, profile=True)
        lm, ours = runs["lm_eval"], runs["compatlm"]
        agree = mc_agreement(lm[0]["rows"], ours[0]["rows"]) if lm else None
        every_run = ours + runs["compatlm_fsync_per_chunk"]
        same_across_runs = all(r["rows"] == ours[0]["rows"] for r in every_run)
    med = {
        side: {k: statistics.median(r[k] for r in rs) for k in ("wall", "scoring")}
        for side, rs in runs.items()
        if rs
    }

    def ratio(side: str, key: str) -> float | None:
        return round(med[side][key] / med["lm_eval"][key], 4) if lm else None

    def phases(rs: list[dict], keys: tuple[str, ...]) -> dict:
        return {k: summarize([r[k] for r in rs]) for k in keys} if rs else {}

    wall_ratio = ratio("compatlm", "wall")
    doc = {
        "benchmark": "scoring_vs_lmeval",
        "quick": args.quick,
        "setup": setup
        | {
            "batch_size": args.batch_size,
            "device": "cpu",
            "dtype": "float32",
            "repetitions": args.reps,
            "threads": args.threads,
            "seed": args.seed,
            "order": "rotating each repetition (lm_eval, compatlm, compatlm_fsync_per_chunk)",
        },
        "lm_eval_version": peer_version,
        "lm_eval_command": lm[0]["command"] if lm else None,
        "load": load,
        "seconds": {
            "lm_eval": phases(lm, ("wall", "scoring", "before_scoring", "child_cpu"))
            | {"unwrapped_console_script_wall": round(plain["wall"], 3) if plain else None},
            **{
                side: phases(
                    runs[side],
                    ("wall", "scoring", "imports", "task_and_model_load", "run_task", "child_cpu"),
                )
                for side in ("compatlm", "compatlm_fsync_per_chunk")
            },
        },  # scoring: lm-eval's loglikelihood phase / compatlm's score_multiple_choice
        "ratios": {
            "wall_compatlm_over_lmeval": wall_ratio,
            "wall_compatlm_fsync_per_chunk_over_lmeval": ratio("compatlm_fsync_per_chunk", "wall"),
            "scoring_compatlm_over_lmeval": ratio("compatlm", "scoring"),
            "instances_per_second_scoring": {
                side: round(args.n / m["scoring"], 1) for side, m in med.items()
            },
        },
        "targets": {
            "wall_ratio_le_0.67": wall_ratio <= 0.67 if lm else None,
            "acc_agreement_100pct": agree["acc_same_choice"] == agree["instances_compared"]
            if agree
            else None,
        },
        "agreement": agree,
        "compatlm_outputs_identical_across_runs": same_across_runs,
        "load_per_run": {
            side: [[round(r["load_before"], 2), round(r["load_after"], 2)] for r in rs]
            for side, rs in runs.items()
            if rs and "load_before" in rs[0]
        },
        "compatlm_profile": {k: v for k, v in (profiled or {}).items() if k.startswith("profile")},
    }
    out = args.out or default_out("scoring_vs_lmeval", args.quick)
    write_result(out, doc, machine)
    print(
        json.dumps(
            {
                "ratios": doc["ratios"],
                "targets": doc["targets"],
                "agreement": {k: v for k, v in (agree or {}).items() if "examples" not in k},
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
