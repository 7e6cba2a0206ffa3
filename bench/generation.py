"""Batched greedy generation with stop strings: compatlm against a plain ``model.generate`` loop.

A tiny untied Llama (hidden 128, 4 layers) is first trained for a few hundred steps on
synthetic "Question: ...?\\nAnswer: ... .\\n" text, so that — like a real model on a
``generate_until`` task — it answers in a few words and then emits the stop string. Then the
same token-id prompts (384 questions of 10-60 tokens), the same ``max_new_tokens`` (48) and the
same batch size (16), greedy, fp32, CPU, are decoded by:

* ``compatlm``: :func:`compatlm.eval.generate.generate` (longest-first batches, a row stops at
  EOS or at a stop string, text cut at the first stop string);
* ``plain``: what a user writes without compatlm — batches in the given order, left padding,
  ``model.generate(do_sample=False, max_new_tokens=48)``, decode, cut at the first stop string;
* ``plain_hf_stop_strings``: the same with transformers' own ``stop_strings`` criterion.

One warm-up each, then 5 repetitions in one process, the order rotated every repetition.
Reported: tokens/s of each (useful tokens = the generated tokens up to the one that completed
the stop string, the same for every side when outputs agree; plus the tokens the plain sides
computed), the speed ratio compatlm / baseline (target >= 1.0) and whether the texts are
identical.

Run (one benchmark at a time)::

    .venv/bin/python bench/generation.py            # writes bench/results/generation.json
    .venv/bin/python bench/generation.py --quick    # < 30 s smoke check
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_THREADS,
    WORDS,
    default_out,
    machine_info,
    make_bpe_tokenizer,
    make_llama,
    n_params,
    set_threads,
    setup_logging,
    summarize,
    wait_for_quiet,
    write_result,
)

STOP = ["\n", "Question:"]


def chain_rules(seed: int) -> tuple[dict[str, str], set[str]]:
    """A successor for every word (one cycle through the word list) and the words that end an
    answer (a fifth of them): answers are learnable, of varied length (1-16 words)."""
    rng = random.Random(seed + 123)
    cycle = list(WORDS)
    rng.shuffle(cycle)
    successor = {w: cycle[(i + 1) % len(cycle)] for i, w in enumerate(cycle)}
    return successor, set(rng.sample(WORDS, len(WORDS) // 5))


def qa_text(rng: random.Random, rules: tuple[dict[str, str], set[str]]) -> tuple[str, str]:
    """A prompt "Question: ...?\nAnswer:" and its answer " w w w.\n": the chain of successors
    of the question's last word, up to an ending word."""
    successor, ending = rules
    question = rng.choices(WORDS, k=rng.randint(6, 50))
    word, answer = question[-1], []
    while not answer or (answer[-1] not in ending and len(answer) < 16):
        word = successor[word]
        answer.append(word)
    return f"Question: {' '.join(question)}?\nAnswer:", " " + " ".join(answer) + ".\n"


def train_model(
    tok: Any, rules: Any, hidden: int, layers: int, steps: int, seed: int
) -> tuple[Any, dict]:
    """Full fine-tuning on the answers (prompt tokens unlabelled) until the model answers in a
    few words and then emits the stop string, as a real model does on a generate_until task."""
    import torch

    rng = random.Random(seed + 1)
    model = make_llama(tok, hidden=hidden, layers=layers, seed=seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    losses = []
    for _ in range(steps):
        rows, labels = [], []
        for prompt, answer in (qa_text(rng, rules) for _ in range(32)):
            p_ids = tok.encode(prompt)
            a_ids = tok.encode(prompt + answer)[len(p_ids) :]
            rows.append(p_ids + a_ids)
            labels.append([-100] * len(p_ids) + a_ids)
        width = max(map(len, rows))
        pad = [tok.pad_token_id]
        input_ids = torch.tensor([r + pad * (width - len(r)) for r in rows])  # [B, T]
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])  # [B, T]
        target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])  # [B, T]
        loss = model(input_ids=input_ids, attention_mask=attention, labels=target).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return model, {
        "steps": steps,
        "batch": 32,
        "loss": "answer tokens only",
        "seconds": round(time.perf_counter() - start, 2),
        "loss_first": round(losses[0], 3),
        "loss_last10_mean": round(statistics.fmean(losses[-10:]), 3),
    }


def plain_generate(
    model: Any, tok: Any, prompts: list[list[int]], max_new: int, batch: int, stop_strings: bool
):
    """The baseline: given order, left padding, model.generate, decode, cut at the stop string;
    ``stop_strings`` also hands the stop strings to transformers' own stopping criterion."""
    import torch

    from compatlm.eval.generate import cut_at_stop

    texts, raw_tokens = [], 0
    pad = tok.pad_token_id
    for start in range(0, len(prompts), batch):
        rows = prompts[start : start + batch]
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # [B, T]
        attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])  # [B, T]
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                do_sample=False,
                num_beams=1,
                max_new_tokens=max_new,
                pad_token_id=pad,
                **({"stop_strings": STOP, "tokenizer": tok} if stop_strings else {}),
            )  # [B, T + new]
        raw_tokens += out[:, width:].numel()
        for row in out[:, width:]:
            texts.append(cut_at_stop(tok.decode(row, skip_special_tokens=True), STOP)[0])
    return texts, raw_tokens


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small model, 32 prompts")
    ap.add_argument("--prompts", type=int, default=384)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    if args.quick:
        args.prompts, args.hidden, args.layers, args.train_steps, args.reps = 32, 64, 2, 60, 1
    set_threads(args.threads)
    import torch

    from compatlm.eval.generate import generate
    from compatlm.prompts import encode_prompt

    rng = random.Random(args.seed)
    rules = chain_rules(args.seed)
    corpus = ["".join(qa_text(rng, rules)) for _ in range(2000)]
    tok = make_bpe_tokenizer(corpus, 1024)
    torch.manual_seed(args.seed)
    model, training = train_model(tok, rules, args.hidden, args.layers, args.train_steps, args.seed)
    pairs = [qa_text(rng, rules) for _ in range(args.prompts)]
    prompts = [encode_prompt(tok, prompt) for prompt, _ in pairs]

    load = wait_for_quiet(skip=args.quick)
    machine = machine_info(args.threads)
    kw = {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
    sides: dict[str, Any] = {
        "plain": lambda ps: plain_generate(
            model, tok, ps, args.max_new_tokens, args.batch_size, False
        ),
        "plain_hf_stop_strings": lambda ps: plain_generate(
            model, tok, ps, args.max_new_tokens, args.batch_size, True
        ),
        "compatlm": lambda ps: generate(model, tok, ps, stop=STOP, **kw),
    }
    for run in sides.values():  # warm-up: first-call allocations and lazy imports
        run(prompts[: args.batch_size])
    times: dict[str, list[float]] = {name: [] for name in sides}
    outs: dict[str, Any] = {}
    names = list(sides)
    for rep in range(args.reps):
        # Rotate the order so a drifting machine load hits every side alike.
        for name in names[rep % 3 :] + names[: rep % 3]:
            t0 = time.perf_counter()
            outs[name] = sides[name](prompts)
            times[name].append(time.perf_counter() - t0)
            print(f"rep {rep} {name}: {times[name][-1]:.2f}s", file=sys.stderr)

    ours = outs["compatlm"]
    useful = sum(o.n_tokens for o in ours)
    med = {name: statistics.median(t) for name, t in times.items()}
    identical = {
        name: sum(o.text == t for o, t in zip(ours, outs[name][0], strict=True))
        for name in ("plain", "plain_hf_stop_strings")
    }
    ratios = {f"compatlm_over_{n}": round(med[n] / med["compatlm"], 3) for n in identical}
    doc = {
        "benchmark": "generation",
        "quick": args.quick,
        "setup": {
            "model": f"LlamaForCausalLM hidden {args.hidden}, {args.layers} layers, vocab"
            f" {len(tok)}, untied, trained briefly on synthetic Q/A text, fp32, CPU",
            "parameters": n_params(model),
            "training": training,
            "prompts": args.prompts,
            "prompt_tokens": {
                "min": min(map(len, prompts)),
                "max": max(map(len, prompts)),
                "median": statistics.median(map(len, prompts)),
            },
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "stop": STOP,
            "decoding": "greedy",
            "repetitions": args.reps,
            "threads": args.threads,
        },
        "load": load,
        "seconds": {name: summarize(t) for name, t in times.items()},
        "tokens": {
            "useful_generated": useful,
            "computed": {n: outs[n][1] for n in identical},
            "finish_reasons": {
                f: sum(o.finish == f for o in ours) for f in ("stop", "eos", "length")
            },
            "answers_equal_reference": sum(
                o.text == a.rstrip("\n") for o, (_, a) in zip(ours, pairs, strict=True)
            ),
        },
        "tokens_per_second_useful": {name: round(useful / t, 1) for name, t in med.items()},
        "tokens_per_second_computed": {n: round(outs[n][1] / med[n], 1) for n in identical},
        "speed_ratio_tokens_per_second": ratios,
        "outputs_identical": {n: {"same": k, "of": len(ours)} for n, k in identical.items()},
        "targets": {
            "speed_ratio_ge_1.0_vs_plain": ratios["compatlm_over_plain"] >= 1.0,
            "speed_ratio_ge_1.0_vs_hf_stop_strings": ratios["compatlm_over_plain_hf_stop_strings"]
            >= 1.0,
            "outputs_identical": all(k == len(ours) for k in identical.values()),
        },
        "examples": [
            {"prompt_tokens": len(p), "reference": a, "text": o.text, "finish": o.finish}
            for p, o, (_, a) in list(zip(prompts, ours, pairs, strict=True))[:4]
        ],
    }
    out = args.out or default_out("generation", args.quick)
    write_result(out, doc, machine)
    keys = (
        "tokens_per_second_useful",
        "speed_ratio_tokens_per_second",
        "outputs_identical",
        "tokens",
        "targets",
    )
    print(json.dumps({k: doc[k] for k in keys}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
