"""Workloads of the reliability suite: multiple-choice task files and eval configs on the tiny
family (imported by the tests and by conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["cat", "dog", "bird", "cow", "fox", "owl", "sky", "mat", "park", "jar", "lid", "paper"]


def write_mc_task(path: Path, n: int) -> Path:
    """``n`` three-way multiple-choice examples with varied contexts and labels."""
    rows = [
        {
            "id": f"q{i}",
            "context": f"Question: what does the {WORDS[i % len(WORDS)]} do {i}?\nAnswer:",
            "choices": ["sleeps on the mat", "runs in the park", "twist the lid"],
            "label": (i * 7) % 3,
            "slice": "even" if i % 2 == 0 else "odd",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def eval_yaml(
    family: dict[str, Path], task: Path, *, batch_size: int, bootstrap: int = 200, extra: str = ""
) -> str:
    return (
        f"old: {family['old']}+{family['old_adapter']}\n"
        f"new: {family['new']}+{family['new_adapter']}\n"
        f"tasks:\n  - name: tiny_mc\n    path: {task}\n    metric: acc_norm\n"
        f"runtime:\n  batch_size: {batch_size}\n  progress: false\n  device: cpu\n"
        f"compare:\n  bootstrap: {bootstrap}\n  seed: 3\n{extra}"
    )
