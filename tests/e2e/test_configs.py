"""Every example config in configs/ runs as written after the demo, by the command in its header.

Each config's first line is the exact command that runs it (``# compatlm eval configs/eval.yaml
--out runs/eval``), and its paths point at what ``make demo`` leaves under ``runs/demo`` (or,
for the methods that need old and new bases of one shape, ``compatlm demo --family continued
--out runs/demo_continued``). The test runs that header command through the CLI on a copy of
the config in which only the path prefix ``runs/demo`` is rewritten to a quick demo made in a
temporary directory (the ``demo_run`` / ``continued_run`` fixtures), and checks exit code 0 and
the command's outputs. Configs for real models (``real_*.yaml``) are validated in
tests/real/test_real_configs.py instead.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from compatlm.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PREFIX = re.compile(r"(?<![\w./-])runs/demo")  # runs/demo and runs/demo_continued, as a path start

# What each command leaves in --out (beside config.yaml), {task} once per task of the config.
OUTPUTS = {
    "eval": [
        "env.json",
        "metrics.json",
        "report.md",
        "report.html",
        "predictions/{task}/old.jsonl",
    ],
    "train": ["env.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"],
    "build": ["env.json", "adapter/adapter_config.json"],
    "rerank": ["env.json", "predictions/{task}/rerank.jsonl", "rerank_cost.json"],
    "sweep": ["selection.json", "sweep.md", "plots/sweep_front.png"],
}


def _configs() -> list[Path]:
    return sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("real_"))


def header_command(path: Path) -> list[str]:
    """The arguments after ``compatlm`` in the config's first line."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and "compatlm " in first, f"{path.name}: no command header"
    return shlex.split(first.split("compatlm ", 1)[1])


def _task_names(cfg: dict) -> list[str]:
    if "tasks" in cfg:
        return [t["name"] for t in cfg["tasks"]]
    return [cfg["task"]["name"]] if "task" in cfg else []


def test_every_config_is_covered():
    """A config added to configs/ is run here (or is a real-model config): nothing is missed."""
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {p.name for p in _configs()} | {n for n in names if n.startswith("real_")} == names
    for path in CONFIGS.glob("*.yaml"):
        argv = header_command(path)
        assert f"configs/{path.name}" in argv and "--out" in argv, path.name
        assert argv[0] in OUTPUTS, f"{path.name}: unknown command {argv[0]}"


@pytest.mark.slow
@pytest.mark.parametrize("path", _configs(), ids=lambda p: p.stem)
def test_config_runs_after_the_demo(path, demo_run, continued_run, demo_root, tmp_path, capsys):
    assert demo_run[0] == 0 and continued_run[0] == 0, "the quick demos themselves failed"
    text = PREFIX.sub(str(demo_root / "runs" / "demo"), path.read_text(encoding="utf-8"))
    cfg = yaml.safe_load(text)
    rewritten = tmp_path / path.name
    rewritten.write_text(text, encoding="utf-8")
    argv = header_command(path)
    argv[argv.index(f"configs/{path.name}")] = str(rewritten)
    out = tmp_path / "out"
    argv[argv.index("--out") + 1] = str(out)

    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, f"{path.name}: exit {code}\n{captured.err[-3000:]}"
    expected = ["config.yaml"]
    for name in OUTPUTS[argv[0]]:
        expected += [name.format(task=t) for t in _task_names(cfg)] if "{task}" in name else [name]
    missing = [name for name in expected if not (out / name).is_file()]
    assert not missing, f"{path.name}: missing {missing} in --out"
    if argv[0] == "build":  # the last stdout line is the candidate's ModelSpec: base+out/adapter
        spec = captured.out.strip().splitlines()[-1]
        base, adapter = spec.rsplit("+", 1)
        assert Path(adapter) == out / "adapter" and Path(base).is_dir(), spec
