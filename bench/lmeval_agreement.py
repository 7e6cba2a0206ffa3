"""Per-instance agreement of compatlm's multiple-choice scorer with lm-evaluation-harness 0.4.13.

Builds, offline and seeded, a small Llama (random weights with a wide initialiser so choices are
not near-ties) with a byte-level BPE tokenizer, and a local multiple-choice task of ``--n``
instances (contexts with and without trailing spaces, 2-5 choices of varied length). Then:

1. runs ``lm_eval --model hf --log_samples`` on it through a local task YAML (subprocess, with
   ``--lmeval-python``: lm-eval is the optional ``peer`` extra, ``pip install -e '.[peer]'``);
2. scores the same task with :func:`compatlm.eval.runner.score_multiple_choice`;
3. compares, per instance, the ``acc`` and ``acc_norm`` decisions and the per-choice
   log-likelihoods, and writes ``bench/results/lmeval_agreement.json`` with timings and
   machine facts.

Run (one process at a time on a shared machine)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/lmeval_agreement.py
    .venv/bin/python bench/lmeval_agreement.py --n 400 --lmeval-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import argmax, make_bpe_tokenizer, mc_task_yaml

RESULTS = Path(__file__).resolve().parent / "results" / "lmeval_agreement.json"
TASK = "compatlm_agreement"

WORDS = (
    "the cat dog sat on mat park runs sleeps apples bread river stone green mill fox ash red hill "
    "lake elm wolf baker teacher doctor farmer school hospital farm harbor garage library soup "
    "cheese fish rice cake pears plums carrots eggs honey open jar twist lid cut paper scissors "
    "sky blue question answer one two three four five six seven eight nine ten"
)


def make_task(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = WORDS.split()
    rows = []
    for i in range(n):
        ctx = " ".join(rng.choices(words, k=rng.randint(3, 30)))
        style = i % 4
        if style == 1:
            ctx = f"Question: {ctx}?\nAnswer:"
        elif style == 2:
            ctx += " "  # trailing space: moves into the continuation
        elif style == 3:
            ctx = ctx.capitalize() + "."
        k = rng.randint(2, 5)
        choices = [" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(k)]
        rows.append({"id": f"q{i}", "context": ctx, "choices": choices, "label": rng.randrange(k)})
    return rows


def build(workdir: Path, n: int, seed: int) -> tuple[Path, Path]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    rows = make_task(n, seed)
    task_file = workdir / "task.jsonl"
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus = [r["context"] + " " + " ".join(r["choices"]) for r in rows]
    tok = make_bpe_tokenizer(corpus, vocab_size=512)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        initializer_range=0.2,  # spread logits: random-init models otherwise tie on everything
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    model_dir = workdir / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tok.save_pretrained(model_dir)
    return model_dir, task_file


def run_lmeval(python: str, model_dir: Path, task_file: Path, workdir: Path, batch: int):
    tasks_dir = workdir / "lmeval_tasks"
    tasks_dir.mkdir()
    (tasks_dir / f"{TASK}.yaml").write_text(mc_task_yaml(TASK, task_file), encoding="utf-8")
    out = workdir / "lmeval_out"
    cmd = [
        python, "-m", "lm_eval",
        "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32",
        "--tasks", TASK,
        "--include_path", str(tasks_dir),
        "--batch_size", str(batch),
        "--device", "cpu",
        "--output_path", str(out),
        "--log_samples",
    ]  # fmt: skip
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"lm_eval failed (exit {proc.returncode}):\n{tail}")
    samples = sorted(out.rglob(f"samples_{TASK}_*.jsonl"))
    if not samples:
        raise SystemExit(f"lm_eval wrote no samples file under {out}")
    rows = [json.loads(line) for line in samples[-1].read_text().splitlines() if line.strip()]
    return rows, seconds, " ".join(cmd)


def run_compatlm(model_dir: Path, task_file: Path, batch: int):
    from compatlm.config import RuntimeConfig
    from compatlm.eval.runner import decision_scores, score_multiple_choice
    from compatlm.models import load_model
    from compatlm.prompts import model_max_length
    from compatlm.tasks.local import load_local_jsonl

    start = time.perf_counter()
    loaded = load_model(str(model_dir), runtime=RuntimeConfig(device="cpu", batch_size=batch))
    _, examples = load_local_jsonl(task_file, "multiple_choice")
    t_score = time.perf_counter()
    results = score_multiple_choice(
        loaded.model,
        loaded.tokenizer,
        examples,
        metric="acc",
        batch_size=batch,
        max_length=model_max_length(loaded.model, loaded.tokenizer),
    )
    end = time.perf_counter()
    out = {}
    for r in results:
        norm = decision_scores(r.loglikelihoods, r.choice_lengths, "acc_norm")
        out[r.example.id] = {
            "lls": list(r.loglikelihoods),
            "acc_pred": r.pred,
            "acc_norm_pred": max(range(len(norm)), key=lambda i: (norm[i], -i)),
            "label": r.example.label,
        }
    return out, end - start, end - t_score


def compare(lm_rows: list[dict], ours: dict) -> dict:
    n = acc_dis = norm_dis = metric_dis = 0
    max_ll_diff = 0.0
    examples = []
    for row in lm_rows:
        doc = row["doc"]
        mine = ours[doc["id"]]
        lls = [float(r[0]) for r in row["filtered_resps"]]
        lengths = [len(c) for c in doc["choices"]]
        lm_acc = argmax(lls)
        lm_norm = argmax([ll / n_ for ll, n_ in zip(lls, lengths, strict=True)])
        n += 1
        diff = max(abs(a - b) for a, b in zip(lls, mine["lls"], strict=True))
        max_ll_diff = max(max_ll_diff, diff)
        bad_acc = lm_acc != mine["acc_pred"]
        bad_norm = lm_norm != mine["acc_norm_pred"]
        acc_dis += bad_acc
        norm_dis += bad_norm
        # lm-eval's own per-sample metric values must match our correctness too
        metric_dis += (row["acc"] == 1.0) != (mine["acc_pred"] == mine["label"])
        metric_dis += (row["acc_norm"] == 1.0) != (mine["acc_norm_pred"] == mine["label"])
        if (bad_acc or bad_norm) and len(examples) < 10:
            examples.append({"id": doc["id"], "lmeval_lls": lls, "compatlm_lls": mine["lls"]})
    return {
        "instances_compared": n,
        "instances_in_compatlm": len(ours),
        "acc_disagreements": acc_dis,
        "acc_norm_disagreements": norm_dis,
        "per_sample_metric_disagreements": metric_dis,
        "max_abs_loglikelihood_diff": max_ll_diff,
        "disagreement_examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="instances (>= 200)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lmeval-python", default=sys.executable, help="interpreter with lm_eval")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    check = subprocess.run([args.lmeval_python, "-c", "import lm_eval; print(lm_eval.__version__)"],
                           capture_output=True, text=True)  # fmt: skip
    if check.returncode != 0:
        raise SystemExit(
            f"lm_eval is not importable by {args.lmeval_python}; install the peer extra"
            " (pip install -e '.[peer]') or pass --lmeval-python"
        )
    import torch

    from compatlm.io import atomic_write_json, env_info

    with tempfile.TemporaryDirectory(prefix="lmeval_agree_") as tmp:
        work = Path(tmp)
        model_dir, task_file = build(work, args.n, args.seed)
        ours, t_ours, t_ours_scoring = run_compatlm(model_dir, task_file, args.batch_size)
        lm_rows, t_lm, cmd = run_lmeval(
            args.lmeval_python, model_dir, task_file, work, args.batch_size
        )
        result = compare(lm_rows, ours)
    result |= {
        "lm_eval_version": check.stdout.strip(),
        "lm_eval_command": cmd,
        "task": {"instances": args.n, "seed": args.seed, "kind": "multiple_choice"},
        "model": "LlamaForCausalLM hidden 64, 2 layers, vocab 512, random init (std 0.2), fp32",
        "batch_size": args.batch_size,
        "seconds": {
            "lm_eval_total_subprocess": round(t_lm, 3),
            "compatlm_load_and_score": round(t_ours, 3),
            "compatlm_scoring_only": round(t_ours_scoring, 3),
        },
        "note": "lm_eval time includes interpreter start, imports and dataset preparation",
        "machine": env_info(torch_threads=torch.get_num_threads(),
                            omp_num_threads=os.environ.get("OMP_NUM_THREADS")),
    }  # fmt: skip
    atomic_write_json(args.out, result)
    keys = ("instances_compared", "acc_disagreements", "acc_norm_disagreements",
            "per_sample_metric_disagreements", "max_abs_loglikelihood_diff")  # fmt: skip
    print(json.dumps({k: result[k] for k in keys} | {"seconds": result["seconds"]}, indent=2))
    print(f"wrote {args.out}")
    return 0 if result["acc_disagreements"] == result["acc_norm_disagreements"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
