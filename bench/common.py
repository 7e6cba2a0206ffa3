"""Shared pieces of the speed benchmarks in ``bench/`` (scoring_vs_lmeval, generation, scaling).

Owns: machine facts recorded with every result (CPU model from ``/proc/cpuinfo``, cores, library
versions, torch threads, load average before and after), waiting for a quiet machine before a
run (the benchmark machine is shared), the thread setting for this process and its children,
the lm-eval peer (its CLI with a timer around the loglikelihood phase, a local task YAML),
the offline tiny model family (byte-level BPE tokenizer trained on a synthetic corpus, untied
Llama of a given size), a synthetic English-like word list, timing summaries, log-log fits and
atomic result writing.

Nothing here downloads anything: models are random or briefly trained on generated text.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_THREADS = 2
log = logging.getLogger("bench")

# ~200 common words: contexts and choices drawn from them tokenise to roughly one token per word
# with a 1k BPE vocabulary trained on the same text, so word counts control token lengths.
WORDS = """
the a an of to in on at for with by from and or but not is are was were be been has have had
do does did will would can could should may might must this that these those it its they them
their we our you your he she his her i my me who what which when where why how all some any
each every more most other such only own same so than too very just also now then here there
time year people way day man woman child world life hand part place case week company system
program question work government number night point home water room mother area money story
fact month lot right study book eye job word business issue side kind head house service friend
father power hour game line end member law car city community name president team minute idea
kid body information back parent face others level office door health person art war history
party result change morning reason research girl guy moment air teacher force education foot
boy age policy process music market sense nation plan college interest death experience effect
use class control care field development role effort rate heart drug show leader light voice
wife police mind price report decision son view relationship town road arm difference value
building action model season society tax director position player record paper space ground
form event official matter center couple site project activity star table need court oil
situation cost industry figure street image phone data picture practice piece land product
doctor wall patient worker news test movie north love support technology step baby computer
type attention film tree source organization hair window evidence population site river stone
bread apple garden kitchen winter summer morning evening bridge village mountain forest island
""".split()


# --------------------------------------------------------------------------- machine facts


def cpu_model() -> str | None:
    """The ``model name`` line of /proc/cpuinfo (None where there is no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info(threads: int) -> dict[str, Any]:
    """Machine and library facts for a result file (call at the start of a run)."""
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("compatlm", "torch", "transformers", "peft", "accelerate", "tokenizers"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    from compatlm.io import git_hash

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git_hash": git_hash(),
        "load_average_before": list(os.getloadavg()),
    }


def wait_for_quiet(
    threshold: float = 1.0, poll: float = 15.0, timeout: float = 900.0, *, skip: bool = False
) -> dict[str, Any]:
    """Wait until the 1-minute load average is below ``threshold`` (poll every ``poll`` s, at
    most ``timeout`` s); other jobs on a shared 2-core machine would otherwise be measured too.

    Returns what happened, for the result file; ``skip`` (quick smoke runs) only records the load.
    """
    start = time.monotonic()
    load = os.getloadavg()[0]
    while not skip and load >= threshold and time.monotonic() - start < timeout:
        log.info("load average %.2f >= %.2f; waiting %.0f s", load, threshold, poll)
        time.sleep(poll)
        load = os.getloadavg()[0]
    quiet = load < threshold
    note = None
    if not quiet:
        note = (
            "quick run: did not wait for a quiet machine"
            if skip
            else f"load stayed >= {threshold} for {timeout:.0f} s; ran anyway (timings inflated)"
        )
    return {
        "threshold": threshold,
        "waited_seconds": round(time.monotonic() - start, 1),
        "load_average_at_start": list(os.getloadavg()),
        "quiet": quiet,
        "note": note,
    }


def set_threads(threads: int) -> dict[str, str]:
    """Use ``threads`` torch threads here; returns the environment for child processes."""
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


# --------------------------------------------------------------------------- tiny models


def make_bpe_tokenizer(corpus: Sequence[str], vocab_size: int = 1024) -> Any:
    """A GPT-2-style byte-level BPE tokenizer (<pad>, <s>, </s>) trained on ``corpus``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def make_llama(
    tokenizer: Any,
    *,
    hidden: int,
    layers: int,
    seed: int = 0,
    init_range: float = 0.02,
    max_positions: int = 512,
) -> Any:
    """An untied Llama (GQA 4 heads / 2 KV heads, MLP 2x hidden) with random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        initializer_range=init_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def save_model(model: Any, tokenizer: Any, path: Path) -> Path:
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- the lm-eval peer

LMEVAL_PYTHON = "/tmp/lmeval-venv/bin/python"  # made by bench/setup_peer.sh

# lm-eval's CLI entry point (what the `lm_eval` console script calls), unchanged except that
# TemplateLM.loglikelihood — tokenising and scoring every request — is timed, and the token
# positions HFLM._model_call runs (batch x padded width; it computes logits at all of them)
# are counted.
LMEVAL_TIMER = """\
import json, os, sys, time
T0 = time.perf_counter()
import lm_eval.api.model as m
import lm_eval.models.huggingface as hf
orig, spans = m.TemplateLM.loglikelihood, []
calls, positions = [0], [0]
def timed(self, requests, *a, **k):
    s = time.perf_counter()
    try:
        return orig(self, requests, *a, **k)
    finally:
        spans.append([s - T0, time.perf_counter() - T0, len(requests)])
m.TemplateLM.loglikelihood = timed
model_call = hf.HFLM._model_call
def counted(self, inps, *a, **k):
    calls[0] += 1
    positions[0] += int(inps.shape[0]) * int(inps.shape[1])
    return model_call(self, inps, *a, **k)
hf.HFLM._model_call = counted
from lm_eval.__main__ import cli_evaluate
try:
    cli_evaluate()
finally:
    with open(os.environ["LMEVAL_TIMING_OUT"], "w") as f:
        json.dump({"spans": spans, "in_process": time.perf_counter() - T0,
                   "forwards": calls[0], "positions": positions[0]}, f)
"""


def lmeval_version(python: str = LMEVAL_PYTHON) -> str:
    import subprocess

    check = subprocess.run(
        [python, "-c", "import lm_eval; print(lm_eval.__version__)"], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise SystemExit(f"lm_eval is not importable by {python}; run bench/setup_peer.sh")
    return check.stdout.strip()


def mc_task_yaml(task: str, task_file: Path) -> str:
    """An lm-eval task over a compatlm multiple-choice JSONL file (context, choices, label)."""
    return f"""\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {task_file}
output_type: multiple_choice
test_split: test
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def lmeval_command(
    model_dir: Path, task: str, tasks_dir: Path, out: Path, batch: int, *, timer: Path
) -> list[str]:
    """``python TIMER --model hf ... --log_samples``: the lm_eval CLI on a local task, fp32, CPU."""
    return [
        LMEVAL_PYTHON, str(timer),
        "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32",
        "--tasks", task,
        "--include_path", str(tasks_dir),
        "--batch_size", str(batch),
        "--device", "cpu",
        "--output_path", str(out),
        "--log_samples",
    ]  # fmt: skip


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def mc_agreement(lm_rows: list[dict], ours: list[dict]) -> dict:
    """Per-instance agreement of lm-eval's ``--log_samples`` rows with compatlm prediction lines:
    same chosen answer under acc and acc_norm, and the largest log-likelihood difference."""
    mine = {r["example_id"]: r for r in ours}
    same_acc = same_norm = n = 0
    max_diff = 0.0
    differing = []
    for row in lm_rows:
        doc, n = row["doc"], n + 1
        lls = [float(r[0]) for r in row["filtered_resps"]]
        ref = mine[doc["id"]]
        norm = [
            x / max(k, 1) for x, k in zip(ref["loglikelihoods"], ref["choice_lengths"], strict=True)
        ]
        lm_norm = argmax([x / len(c) for x, c in zip(lls, doc["choices"], strict=True)])
        same_acc += argmax(lls) == ref["parsed"]
        same_norm += lm_norm == argmax(norm)
        max_diff = max(
            max_diff, *(abs(a - b) for a, b in zip(lls, ref["loglikelihoods"], strict=True))
        )
        if (argmax(lls) != ref["parsed"]) and len(differing) < 5:
            differing.append({"id": doc["id"], "lmeval": lls, "compatlm": ref["loglikelihoods"]})
    return {
        "instances_compared": n,
        "instances_in_compatlm": len(ours),
        "acc_same_choice": same_acc,
        "acc_agreement": same_acc / n if n else None,
        "acc_norm_same_choice": same_norm,
        "acc_norm_agreement": same_norm / n if n else None,
        "max_abs_loglikelihood_diff": max_diff,
        "disagreement_examples": differing,
    }


# --------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max, mean and the raw values (seconds), rounded for the JSON."""
    vals = [float(v) for v in values]
    return {
        "median": round(statistics.median(vals), 4),
        "min": round(min(vals), 4),
        "max": round(max(vals), 4),
        "mean": round(statistics.fmean(vals), 4),
        "n": len(vals),
        "values": [round(v, 4) for v in vals],
    }


def loglog_fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any]:
    """Least-squares slope of log(y) against log(x): y ~ c * x**slope (slope 1 = linear)."""
    from scipy.stats import linregress

    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    fit = linregress(lx, ly)
    return {
        "slope": round(float(fit.slope), 3),
        "intercept": round(float(fit.intercept), 3),
        "r_squared": round(float(fit.rvalue) ** 2, 4),
        "points": len(xs),
        # Between neighbouring points: a slope that rises with x means a fixed per-call cost
        # that the growing work only gradually outweighs.
        "segment_slopes": [
            round((ly[i + 1] - ly[i]) / (lx[i + 1] - lx[i]), 3) for i in range(len(xs) - 1)
        ],
    }


def profile_summary(prof: Any, top: int = 14) -> dict[str, Any]:
    """A cProfile's top functions by own and by cumulative time, and the time spent in fsync."""
    import io
    import pstats

    out: dict[str, Any] = {
        # stats values are (primitive calls, calls, own time, cumulative time, callers)
        "profile_fsync_seconds": sum(
            v[2] for k, v in pstats.Stats(prof).stats.items() if "fsync" in k[2]
        )
    }
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(top)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        out[f"profile_top_{order}"] = lines[-(top + 2) :]
    return out


def demo_seeds(demo: Path) -> list[int]:
    """The seeds a demo directory holds (its ``seed<S>`` subdirectories), in order."""
    return sorted(int(p.name[4:]) for p in demo.glob("seed*") if p.name[4:].isdigit())


def default_out(name: str, quick: bool) -> Path:
    """Committed results for full runs; a temp file for ``--quick`` smoke runs."""
    if quick:
        return Path(tempfile.gettempdir()) / "compatlm_bench" / f"{name}.quick.json"
    return RESULTS_DIR / f"{name}.json"


def portable(value: Any) -> Any:
    """``value`` with this machine's paths made portable in every string: the repository
    prefix dropped (paths relative to the checkout) and the home directory written ``~``.
    Committed results must not name one machine's directories."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str):
        return value.replace(f"{REPO}/", "").replace(f"{Path.home()}/", "~/")
    return value


def write_result(path: Path, doc: dict[str, Any], machine: dict[str, Any]) -> Path:
    """Add the machine facts (with the load average after the run) and write ``path``, its
    paths made portable (:func:`portable`)."""
    from compatlm.io import atomic_write_json

    machine = machine | {"load_average_after": list(os.getloadavg())}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, portable({**doc, "machine": machine}))


def last_json_line(stdout: str) -> dict[str, Any]:
    """The JSON object a child process printed last (children report through stdout)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"child printed no JSON result:\n{stdout[-2000:]}")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
