"""Building one demo family into a directory (called by the cache, never directly by users).

Owns the build order and its parallelism: corpora → shared tokenizer → the two bases
pre-trained either one after the other in this process or side by side in two single-thread
worker subprocesses (tiny matrices scale poorly across threads, so two processes finish sooner) →
the four task splits (written while the workers train) → ``recipe.json`` / ``family.json``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compatlm.demo.recipe import ADAPTER_HINT, FORMAT_VERSION, ROLES, FamilyRecipe, corpora
from compatlm.demo.skill_tasks import make_skill_tasks
from compatlm.demo.tasks import TASKS, make_tasks
from compatlm.demo.world import make_world
from compatlm.io import atomic_write_json, atomic_write_jsonl

log = logging.getLogger(__name__)

_REPORT_EVERY = 10  # steps between progress messages from a worker process


def build_family(recipe: FamilyRecipe, out: Path, *, progress: bool, workers: int) -> None:
    """Fill ``out`` with tokenizer/, old/, new/, tasks/, recipe.json and family.json."""
    from compatlm.demo.pretrain import train_tokenizer
    from compatlm.demo.reference import build_platform

    if recipe.new.init_from is not None:
        workers = 1  # a continued new base starts from the finished old one: nothing in parallel
    t0 = time.perf_counter()
    docs = corpora(recipe)
    tokenizer = train_tokenizer(docs["old"] + docs["new"], recipe.vocab_size)
    tokenizer.save_pretrained(out / "tokenizer")
    t_tok = time.perf_counter() - t0
    with _Progress(progress) as bar:
        if workers >= 2:
            stats, task_counts = _parallel(recipe, out, docs, bar)
        else:
            stats = {}
            for role in ROLES:
                stats[role] = pretrain_role(recipe, role, out, docs[role], bar.callback(role))
            task_counts = write_tasks(recipe, out, docs["old"] + docs["new"])
    info: dict[str, Any] = {
        "pretraining": stats,
        "tasks": task_counts,
        "corpus_docs": {role: len(docs[role]) for role in ROLES},
        "vocab_size": len(tokenizer),
        "seconds": {"tokenizer": round(t_tok, 2), "total": round(time.perf_counter() - t0, 2)},
        "workers": workers,
        # The workers inherit this process's environment, so they dispatch to the same kernels.
        "build_platform": build_platform(),
    }
    write_info(out, recipe, info)


def pretrain_role(
    recipe: FamilyRecipe,
    role: str,
    out: Path,
    docs: list[str],
    on_step: Callable[[int, int, float], None] | None,
) -> dict[str, Any]:
    """Pre-train one base on its corpus and save it (with the shared tokenizer) to out/role."""
    from transformers import AutoTokenizer

    from compatlm.demo.pretrain import make_model, pack, pretrain, save_base

    base = getattr(recipe, role)
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer", trust_remote_code=False)
    data = pack(docs, tokenizer, base.train.seq_len)
    if base.init_from is not None:
        from transformers import LlamaForCausalLM

        # Continued pre-training: ROLES builds "old" first, so its weights are on disk here.
        model = LlamaForCausalLM.from_pretrained(
            out / base.init_from, use_safetensors=True, trust_remote_code=False
        )
    else:
        model = make_model(base.shape, tokenizer, base.train.seed)
    stats = pretrain(model, data, base.train, on_step=on_step)
    save_base(model, tokenizer, out / role)
    return stats


def _worker_main(argv: list[str] | None = None) -> None:
    """Entry point of a worker process: ``python -m compatlm.demo.build ROLE OUT_DIR``.

    Reads ``OUT_DIR/recipe.json``, pre-trains ROLE on one thread and reports on stdout, one JSON
    line per message. (A subprocess rather than multiprocessing: spawn would re-import the
    caller's ``__main__``, which breaks in scripts without a main guard.)
    """
    import torch

    role, out = (argv if argv is not None else sys.argv[1:])[:2]
    torch.set_num_threads(1)
    recipe = FamilyRecipe.model_validate_json(Path(out, "recipe.json").read_text("utf-8"))
    docs = corpora(recipe)[role]

    def report(step: int, total: int, loss: float) -> None:
        if step % _REPORT_EVERY == 0 or step == total:
            print(json.dumps({"step": step, "total": total, "loss": loss}), flush=True)

    stats = pretrain_role(recipe, role, Path(out), docs, report)
    print(json.dumps({"done": stats}), flush=True)


def _parallel(
    recipe: FamilyRecipe, out: Path, docs: dict[str, list[str]], bar: _Progress
) -> tuple[dict[str, Any], dict[str, Any]]:
    atomic_write_json(out / "recipe.json", recipe.model_dump(mode="json"))
    # The workers must import this very compatlm, even when it is not installed (source tree).
    src = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}
    msgs: queue.Queue = queue.Queue()
    procs: dict[str, subprocess.Popen] = {}
    errs: dict[str, list[str]] = {role: [] for role in ROLES}
    try:
        for role in ROLES:
            p = subprocess.Popen(
                [sys.executable, "-m", "compatlm.demo.build", role, str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            procs[role] = p
            threading.Thread(target=_pump, args=(p.stdout, role, msgs), daemon=True).start()
            threading.Thread(target=_drain, args=(p.stderr, errs[role]), daemon=True).start()
        # The parent writes the tasks while the workers train.
        task_counts = write_tasks(recipe, out, docs["old"] + docs["new"])
        callbacks = {role: bar.callback(role) for role in ROLES}
        stats: dict[str, Any] = {}
        while len(stats) < len(ROLES):
            try:
                role, msg = msgs.get(timeout=1.0)
            except queue.Empty:
                for role, p in procs.items():
                    if p.poll() not in (None, 0) or (p.poll() == 0 and role not in stats):
                        tail = "".join(errs[role][-20:]).strip()
                        raise RuntimeError(f"pre-training {role} failed:\n{tail}") from None
                continue
            if "done" in msg:
                stats[role] = msg["done"]
            else:
                callbacks[role](msg["step"], msg["total"], msg["loss"])
        for p in procs.values():
            p.wait()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait()
    return {role: stats[role] for role in ROLES}, task_counts


def _pump(stream: Any, role: str, msgs: queue.Queue) -> None:
    for line in stream:
        line = line.strip()
        if line.startswith("{"):
            msgs.put((role, json.loads(line)))


def _drain(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


class _Progress:
    """A rich progress bar per base (or nothing when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("pre-training {task.description:>3}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def callback(self, role: str) -> Callable[[int, int, float], None]:
        def update(step: int, total: int, loss: float) -> None:
            if self._bar is None:
                return
            if role not in self._tasks:
                self._tasks[role] = self._bar.add_task(role, total=total, loss="-")
            self._bar.update(self._tasks[role], completed=step, loss=f"{loss:.3f}")

        return update


def write_tasks(recipe: FamilyRecipe, out: Path, corpus_docs: list[str]) -> dict[str, dict]:
    """Generate the four tasks and write ``out/tasks/<task>/<split>.jsonl``; returns counts."""
    sizes = {t: recipe.task_sizes.model_dump() for t in TASKS}
    if recipe.skills:
        tasks = make_skill_tasks(sizes, seed=recipe.task_seed, corpus_docs=corpus_docs)
    else:
        world = make_world(recipe.world_seed, recipe.n_people, recipe.n_towns)
        tasks = make_tasks(
            world, sizes, seed=recipe.task_seed, corpus_docs=corpus_docs, max_n=recipe.max_n
        )
    counts: dict[str, dict] = {}
    for task, splits in tasks.items():
        for split, rows in splits.items():
            atomic_write_jsonl(out / "tasks" / task / f"{split}.jsonl", rows)
        counts[task] = {"kind": TASKS[task], **{s: len(r) for s, r in splits.items()}}
    return counts


def write_info(out: Path, recipe: FamilyRecipe, info: dict[str, Any]) -> None:
    atomic_write_json(out / "recipe.json", recipe.model_dump(mode="json"))
    atomic_write_json(
        out / "family.json",
        {"format": FORMAT_VERSION, "key": recipe.key(), "adapter_hint": ADAPTER_HINT, **info},
    )


if __name__ == "__main__":
    _worker_main()
