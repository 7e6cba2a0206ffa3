"""Step time and peak memory of plain LoRA vs MUSCLE (teacher_old live vs cached).

A tiny offline family (Llama, hidden 128, 4 layers, vocabulary 1024, LoRA r=8 on all linear
layers) and synthetic sequences of 64 tokens, batch 8, every position labelled. Each variant
runs in a fresh subprocess (so peak RSS is its own) with one torch thread:

- ``plain``: LoRA fine-tuning of the new task adapter (cross entropy only);
- ``muscle_live``: student + teacher_new (second adapter on the same base) + teacher_old as a
  second model in memory (arXiv 2407.09435, §4);
- ``muscle_cached``: the same, teacher_old read from the top-k teacher cache (k = 64), so the
  old base is never loaded;
- ``muscle_cached_both``: teacher_new cached as well (``teacher_new: cache``): no teacher forward
  pass at all.

Targets (design notes): cached ≤ 1.2× the step time and ≤ 1.15× the peak memory of plain LoRA.
Also measures the cache's fidelity: the relative error of the teacher_old KL and of the full
MUSCLE loss from top-k (per k) against the full-vocabulary values.

Run once, on a quiet machine (`uptime` load < 1.5)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_step.py            # writes bench/results/
    OMP_NUM_THREADS=1 .venv/bin/python bench/train_step.py --profile muscle_cached
    .venv/bin/python bench/train_step.py --device cuda     # adds torch.cuda.max_memory_allocated
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
VARIANTS = ("plain", "muscle_live", "muscle_cached", "muscle_cached_both")
HIDDEN, LAYERS, VOCAB, SEQ, BATCH, RANK, TOPK, TEMP = 128, 4, 1024, 64, 8, 8, 64, 2.0
N_EXAMPLES = 64


# --------------------------------------------------------------------------- fixtures


def build_family(root: Path) -> dict[str, str]:
    """Old/new bases (other seeds, same tokenizer) and a random LoRA on each."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers import make_tokenizer

    tok = make_tokenizer()
    paths = {}
    for role, seed in (("old", 1), ("new", 2)):
        cfg = LlamaConfig(
            vocab_size=VOCAB,  # padded past the tokenizer, as real checkpoints often are
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        model.save_pretrained(root / role)
        tok.save_pretrained(root / role)
        lora = get_peft_model(
            model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules="all-linear")
        )
        gen = torch.Generator().manual_seed(seed + 10)
        with torch.no_grad():
            for name, p in lora.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        lora.save_pretrained(root / f"{role}_adapter")
        paths[role] = f"{root / role}+{root / f'{role}_adapter'}"
    return paths


def features(labels: str = "all"):
    """64-token sequences whose last 16 tokens are the answer. ``labels="all"``: every position
    is labelled (the loss's worst case); ``"answer"``: the prompt is masked from the loss
    (``mask_prompt: true``, the default of ``train compat``), so 16 of 64 positions count."""
    import torch

    from compatlm.train.data import IGNORE, Features

    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(N_EXAMPLES):
        ids = torch.randint(3, 320, (SEQ + 1,), generator=gen).tolist()
        answer = (False,) * (SEQ - 16) + (True,) * 16
        targets = [
            t if a or labels == "all" else IGNORE for t, a in zip(ids[1:], answer, strict=True)
        ]
        out.append(Features(f"x{i}", tuple(ids[:-1]), tuple(targets), answer))
    return out


def compat_cfg(paths: dict[str, str], teacher_old: str):
    from compatlm.config import build_config
    from compatlm.train.config import TrainCompatConfig

    return build_config(
        TrainCompatConfig,
        {
            "old": paths["old"],
            "new": paths["new"],
            "task": {"name": "bench", "path": "unused"},
            "teacher_old": teacher_old,
            "topk": TOPK,
            "temperature": TEMP,
        },
    )


# --------------------------------------------------------------------------- one variant


class RssSampler(threading.Thread):
    """Peak resident set size, sampled every 2 ms (CPU has no max_memory_allocated)."""

    def __init__(self) -> None:
        import psutil

        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)


def child(
    variant: str,
    workdir: Path,
    steps: int,
    warmup: int,
    profile: bool,
    device: str = "cpu",
    labels: str = "all",
) -> dict:
    import psutil
    import torch

    from compatlm.config import RuntimeConfig
    from compatlm.models import load_model
    from compatlm.spec import ModelSpec
    from compatlm.train.data import Collator
    from compatlm.train.step import ce_step, compat_step
    from compatlm.train.student import load_student
    from compatlm.train.teachers import AdapterTeacher, CachedTeacher, LiveOldTeacher, Teachers

    torch.set_num_threads(1)
    paths = json.loads((workdir / "paths.json").read_text())
    feats = features(labels)
    ids = [f.example_id for f in feats]
    rt = RuntimeConfig(device=device, progress=False)
    dev = torch.device(device)
    rss_imports = psutil.Process().memory_info().rss
    sampler = RssSampler()
    sampler.start()
    if variant == "plain":
        model = load_model(ModelSpec.parse(paths["new"]), trainable=True, runtime=rt).model
        step_fn = ce_step
    else:
        both = variant == "muscle_cached_both"
        model, _ = load_student(ModelSpec.parse(paths["new"]), rt, with_teacher=not both)
        if variant == "muscle_live":
            old = LiveOldTeacher(load_model(ModelSpec.parse(paths["old"]), runtime=rt).model)
        else:
            old = CachedTeacher(_open(workdir / "cache", paths["old"], feats), ids)
        new = (
            CachedTeacher(_open(workdir / "cache_new", paths["new"], feats), ids) if both else None
        )
        teacher = "live" if variant == "muscle_live" else "cache"
        teachers = Teachers(new=new or AdapterTeacher(model), old=old)
        step_fn = partial(compat_step, cfg=compat_cfg(paths, teacher), teachers=teachers)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    collate = Collator(0, ids)
    batches = [
        {k: v.to(dev) for k, v in collate(feats[i : i + BATCH]).items()}
        for i in range(0, N_EXAMPLES, BATCH)
    ]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rss_loaded = psutil.Process().memory_info().rss

    def one(i: int) -> float:
        sync()
        t0 = time.perf_counter()
        out = step_fn(model, batches[i % len(batches)])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t0

    for i in range(warmup):
        one(i)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    times = [one(warmup + i) for i in range(steps)]
    if prof is not None:
        prof.disable()
    sampler.stop.set()
    sampler.join()
    import resource

    res = {
        "variant": variant,
        "step_seconds_median": statistics.median(times),
        "step_seconds_mean": statistics.fmean(times),
        "steps": steps,
        "peak_rss_mb": sampler.peak / 2**20,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mb": rss_imports / 2**20,
        "rss_after_load_mb": rss_loaded / 2**20,
        "peak_above_imports_mb": (sampler.peak - rss_imports) / 2**20,
        "trainable_params": sum(p.numel() for p in params),
        "device": device,
    }
    if dev.type == "cuda":
        res["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    if prof is not None:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        res["profile_top_tottime"] = buf.getvalue().splitlines()[-22:]
    return res


def _open(directory: Path, spec: str, feats):
    from compatlm.spec import ModelSpec
    from compatlm.train.cache import TeacherCache

    paths = json.loads((directory.parent / "paths.json").read_text())
    return TeacherCache.open(
        directory,
        teacher=ModelSpec.parse(spec),
        tokenizer=_tok(paths),
        k=TOPK,
        temperature=TEMP,
        examples=feats,
    )


def _tok(paths: dict[str, str]):
    from compatlm.models import load_tokenizer
    from compatlm.spec import ModelSpec

    return load_tokenizer(ModelSpec.parse(paths["new"]))


# --------------------------------------------------------------------------- cache fidelity


def fidelity(paths: dict[str, str]) -> dict:
    """Relative error (full − top-k) / full of the old-teacher KL and of the MUSCLE loss."""
    import torch

    from compatlm.config import RuntimeConfig
    from compatlm.models import load_model
    from compatlm.spec import ModelSpec
    from compatlm.train.data import Collator
    from compatlm.train.forward import forward_logits
    from compatlm.train.losses import compat_loss
    from compatlm.train.masks import OldStats
    from compatlm.train.topk import per_token_kl_full, per_token_kl_topk, topk_from_logits

    rt = RuntimeConfig(device="cpu")
    feats = features()[:16]
    batch = Collator(0, [f.example_id for f in feats])(feats)
    labels = batch["labels"]
    with torch.no_grad():
        old = forward_logits(load_model(ModelSpec.parse(paths["old"]), runtime=rt).model, batch)
        new = forward_logits(load_model(ModelSpec.parse(paths["new"]), runtime=rt).model, batch)
    out = {}
    # Random tiny models are nearly uniform over the vocabulary (the worst case for top-k);
    # trained LMs are far more peaked. "sharpened" scales the logits to mimic that.
    for name, scale in (("random_tiny_model", 1.0), ("sharpened_x8", 8.0)):
        o, n = old * scale, new * scale
        student = n + 0.3 * torch.randn(n.shape, generator=torch.Generator().manual_seed(1))
        stats = OldStats.from_logits(o, labels)
        full_kl = float(per_token_kl_full(student, o, TEMP).mean())
        live = float(
            compat_loss(student, labels, old=o, new=n, old_stats=stats, temperature=TEMP).loss
        )
        rows = []
        for k in (1, 4, 16, 64, 256, VOCAB):
            top = topk_from_logits(o, k, TEMP)
            kl = float(per_token_kl_topk(student, top, TEMP).mean())
            loss = float(
                compat_loss(student, labels, old=top, new=n, old_stats=stats, temperature=TEMP).loss
            )
            rows.append(
                {
                    "k": k,
                    "old_teacher_kl_rel_error": (full_kl - kl) / full_kl,
                    "muscle_loss_rel_error": (live - loss) / live,
                    "top_k_mass": float(top.logprobs.exp().sum(-1).mean()),
                }
            )
        out[name] = {"full_old_teacher_kl": full_kl, "full_muscle_loss": live, "by_k": rows}
    return out


# --------------------------------------------------------------------------- driver


def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": 1,
        "load_average_at_start": os.getloadavg(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        import peft
        import transformers

        info |= {"transformers": transformers.__version__, "peft": peft.__version__}
    except ImportError:
        pass
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5, help="fresh processes per variant")
    ap.add_argument("--profile", choices=VARIANTS, action="append", default=[])
    ap.add_argument("--child", choices=VARIANTS)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to also get max_memory_allocated")
    ap.add_argument(
        "--labels",
        choices=("all", "answer"),
        default="all",
        help="all = every position in the loss; answer = prompt masked (16 of 64 positions)",
    )
    args = ap.parse_args()
    if args.labels == "answer" and args.out == RESULTS:
        args.out = RESULTS.with_name("train_step_answer.json")
    if args.child:
        prof = args.child in args.profile
        res = child(
            args.child, args.workdir, args.steps, args.warmup, prof, args.device, args.labels
        )
        print(json.dumps(res))
        return

    from compatlm.config import RuntimeConfig
    from compatlm.spec import ModelSpec
    from compatlm.train.cache import build_teacher_cache

    started = machine()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = build_family(work)
        (work / "paths.json").write_text(json.dumps(paths))
        t0 = time.perf_counter()
        build_teacher_cache(
            ModelSpec.parse(paths["old"]),
            features(args.labels),
            _tok(paths),
            work / "cache",
            TOPK,
            TEMP,
            RuntimeConfig(device="cpu", batch_size=BATCH),
        )
        cache_seconds = time.perf_counter() - t0
        cache_bytes = sum(p.stat().st_size for p in (work / "cache").iterdir())
        build_teacher_cache(
            ModelSpec.parse(paths["new"]),
            features(args.labels),
            _tok(paths),
            work / "cache_new",
            TOPK,
            TEMP,
            RuntimeConfig(device="cpu", batch_size=BATCH),
        )
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for rep in range(args.reps):
            for v in VARIANTS:  # interleaved, so drifting load hits every variant alike
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    v,
                    "--workdir",
                    str(work),
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--device",
                    args.device,
                    "--labels",
                    args.labels,
                ]
                for p in args.profile:
                    cmd += ["--profile", p]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(
                    f"rep {rep} {v}: {runs[v][-1]['step_seconds_median'] * 1e3:.1f} ms/step",
                    file=sys.stderr,
                )
        fid = fidelity(paths)

    summary = {}
    for v in VARIANTS:
        summary[v] = {
            "step_ms_median_of_reps": 1e3
            * statistics.median(r["step_seconds_median"] for r in runs[v]),
            "peak_rss_mb_median_of_reps": statistics.median(r["peak_rss_mb"] for r in runs[v]),
            "peak_above_imports_mb_median_of_reps": statistics.median(
                r["peak_above_imports_mb"] for r in runs[v]
            ),
        }
    base = summary["plain"]
    # Variants of one repetition run back to back, so a ratio within a repetition cancels slow
    # drifts of the machine (another tenant, clock changes); the median over repetitions then
    # drops an outlier repetition. The ratio of per-variant medians is kept for comparison.
    ratios = {
        v: {
            "time_vs_plain": statistics.median(
                r["step_seconds_median"] / p["step_seconds_median"]
                for r, p in zip(runs[v], runs["plain"], strict=True)
            ),
            "time_vs_plain_of_medians": summary[v]["step_ms_median_of_reps"]
            / base["step_ms_median_of_reps"],
            "peak_rss_vs_plain": summary[v]["peak_rss_mb_median_of_reps"]
            / base["peak_rss_mb_median_of_reps"],
            "peak_above_imports_vs_plain": summary[v]["peak_above_imports_mb_median_of_reps"]
            / base["peak_above_imports_mb_median_of_reps"],
        }
        for v in VARIANTS
    }
    cached = ratios["muscle_cached"]
    doc = {
        "benchmark": "train_step",
        "setup": {
            "hidden": HIDDEN,
            "layers": LAYERS,
            "vocab": VOCAB,
            "seq": SEQ,
            "batch": BATCH,
            "lora_r": RANK,
            "topk": TOPK,
            "temperature": TEMP,
            "steps": args.steps,
            "warmup": args.warmup,
            "reps": args.reps,
            "labelled_positions": args.labels,
        },
        "machine": started | {"load_average_at_end": os.getloadavg()},
        "summary": summary,
        "ratios": ratios,
        "targets": {
            "cached_time_le_1.2x_plain": cached["time_vs_plain"] <= 1.2,
            "cached_peak_rss_le_1.15x_plain": cached["peak_rss_vs_plain"] <= 1.15,
            "cached_both_time_le_1.2x_plain": ratios["muscle_cached_both"]["time_vs_plain"] <= 1.2,
            "cached_both_peak_rss_le_1.15x_plain": ratios["muscle_cached_both"]["peak_rss_vs_plain"]
            <= 1.15,
        },
        "teacher_cache": {
            "build_seconds": cache_seconds,
            "bytes": cache_bytes,
            "examples": N_EXAMPLES,
            "tokens": N_EXAMPLES * SEQ,
        },
        "cache_fidelity": fid,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"summary": summary, "ratios": ratios, "targets": doc["targets"]}, indent=2))


if __name__ == "__main__":
    main()
