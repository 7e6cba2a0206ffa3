"""Re-rank (BCR): sample k outputs from the new model, keep the one the old model scores highest.

Backward-Congruent Re-ranking (Cai et al. 2022, "Measuring and Reducing Model Update Regression
in Structured Prediction for NLP") reduces regression at inference time, with no training: the
new model proposes candidates, the old model — which users were used to — picks among them.
Here, for generation tasks: k samples from the new model (temperature / top-p, seeded per
example so results do not depend on batch size or on resuming), optionally plus its greedy
output; each is scored by the old model's log-likelihood of the output text given the prompt
(``sum``, or ``mean`` per token; an output that ended with EOS is scored with its EOS, so
"stop here" counts too), and the highest-scoring one is the prediction (ties: first candidate).
An empty candidate has no likelihood to compare and is never preferred over a non-empty one.

This is not a weight-space candidate: :func:`rerank_predictions` returns schema-1 prediction
lines (role ``rerank`` by default) that ``compatlm compare`` treats like any candidate's, plus the
inference cost: forward tokens and wall time of sampling and scoring against greedy decoding of
the new model (forward tokens = prompt + generated tokens per sequence, padding excluded).
It is registered as ``rerank`` with ``produces: predictions`` (run by ``compatlm rerank``).

Models are loaded one at a time (new, then old), like ``compatlm eval``. Samples are appended to
``samples.jsonl`` as they are drawn, so an interrupted run resumes without redrawing them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compatlm.config import RuntimeConfig, dump_config, read_yaml
from compatlm.errors import CompatlmError
from compatlm.eval.generate import gen_prediction
from compatlm.eval.records import Prediction
from compatlm.eval.runner import argmax_first
from compatlm.io import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    env_info,
    load_resumable,
)
from compatlm.methods.config import RerankConfig
from compatlm.methods.rerank_phases import draw, score_candidates
from compatlm.models import load_tokenizer, require_same_tokenizer
from compatlm.paths import RunLayout, check_name
from compatlm.progress import progress_bar
from compatlm.prompts import (
    example_hash,
    scoring_input,
)
from compatlm.rundir import check_out_dir, input_paths, prepare_out_dir
from compatlm.spec import ModelSpec
from compatlm.tasks import ResolvedTask, get_extractor, resolve_task

log = logging.getLogger(__name__)


@dataclass
class RerankOutput:
    predictions: list[dict[str, Any]]  # schema-1 Prediction lines, in task order
    choices: list[dict[str, Any]]  # per example: candidate texts, old-model scores, chosen index
    cost: dict[str, Any]  # forward tokens and wall time against greedy decoding


def _ratio(num: float, den: float, reason: str) -> dict[str, Any]:
    value = num / den if den > 0 else None
    return {
        "value": value,
        "numerator": num,
        "denominator": den,
        "reason": None if value is not None else reason,
    }


def rerank_predictions(
    new: ModelSpec,
    old: ModelSpec,
    task: ResolvedTask,
    cfg: RerankConfig,
    runtime: RuntimeConfig | None = None,
    *,
    samples_path: Path | None = None,
) -> RerankOutput:
    """BCR predictions for ``task`` (see the module docstring). With ``samples_path``, samples
    already there (same examples) are reused and new ones appended."""
    runtime = runtime or cfg.runtime
    if task.kind != "generation":
        raise CompatlmError(
            f"rerank: task {task.name!r} is {task.kind}; re-ranking samples needs a generation task"
        )
    tok = load_tokenizer(new, runtime)
    require_same_tokenizer(
        load_tokenizer(old, runtime), tok, "rerank (the old model scores the new model's outputs)"
    )
    hashes = {ex.id: example_hash(ex.hash_fields()) for ex in task.examples}
    rows: dict[str, dict] = {}
    for i, row in enumerate(load_resumable(samples_path) if samples_path else [], start=1):
        eid = row.get("example_id")
        if not isinstance(eid, str) or hashes.get(eid) != row.get("example_hash"):
            raise CompatlmError(
                f"{samples_path}:{i}: example {row.get('example_id')!r} is not"
                f" in task {task.name} as it is now; use --overwrite"
            )
        if len(row.get("samples", [])) != cfg.k:
            raise CompatlmError(
                f"{samples_path}:{i}: {len(row.get('samples', []))} samples stored but k={cfg.k};"
                " resume with the same k or use --overwrite"
            )
        rows[row["example_id"]] = row
    resumed = bool(rows)
    with progress_bar(runtime.progress) as bar:  # sampling and scoring take minutes on a CPU
        draw(task, cfg, runtime, new, rows, samples_path, bar)
        cands, reqs, flat, flat_scores, score_seconds, max_len = score_candidates(
            task, cfg, runtime, old, tok, rows, bar
        )

    score_tokens = sum(len(scoring_input(r, max_len)[0]) for r in set(flat))

    extractor = get_extractor(task.extract)
    desc = f"rerank(new={new.format()}, old={old.format()}, k={cfg.k})"
    predictions, choices, pos = [], [], 0
    for ex, outs, per in zip(task.examples, cands, reqs, strict=True):
        scores: list[float] = []
        for req in per:
            if req is None:
                scores.append(-math.inf)
                continue
            ll = flat_scores[pos].loglikelihood
            pos += 1
            scores.append(ll / len(req.continuation_ids) if cfg.score == "mean" else ll)
        best = argmax_first(scores)
        choices.append(
            {
                "example_id": ex.id,
                "candidates": [o.text for o in outs],
                "finish": [o.finish for o in outs],
                "scores": [s if math.isfinite(s) else None for s in scores],
                "chosen": best,
            }
        )
        # gen_prediction reads only `.text` of its output argument, which Candidate provides.
        row = gen_prediction(
            ex,
            outs[best],  # type: ignore[arg-type]
            task=task.name,
            role=cfg.role,
            model=desc,
            metric=task.metric,
            extractor=extractor,
            pass_threshold=task.pass_threshold,
            example_hash=hashes[ex.id],
            prompt_hash=rows[ex.id]["prompt_hash"],
        )
        predictions.append(Prediction.model_validate(row).model_dump(mode="json"))
    return RerankOutput(
        predictions, choices, _cost(task.examples, rows, cfg, score_tokens, score_seconds, resumed)
    )


def _cost(
    examples: tuple,
    rows: dict[str, dict],
    cfg: RerankConfig,
    score_tokens: int,
    score_seconds: float,
    resumed: bool,
) -> dict[str, Any]:
    greedy_tokens = sum(
        rows[ex.id]["prompt_tokens"] + rows[ex.id]["greedy"]["n_tokens"] for ex in examples
    )
    greedy_seconds = math.fsum(rows[ex.id]["greedy_seconds"] for ex in examples)
    sample_tokens = sum(
        rows[ex.id]["prompt_tokens"] + s["n_tokens"]
        for ex in examples
        for s in rows[ex.id]["samples"]
    )
    sample_seconds = math.fsum(rows[ex.id]["sample_seconds"] for ex in examples)
    tokens = sample_tokens + score_tokens + (greedy_tokens if cfg.include_greedy else 0)
    seconds = sample_seconds + score_seconds + (greedy_seconds if cfg.include_greedy else 0.0)
    return {
        "examples": len(examples),
        "k": cfg.k,
        "include_greedy": cfg.include_greedy,
        "greedy": {"forward_tokens": greedy_tokens, "seconds": greedy_seconds},
        "rerank": {
            "sample_forward_tokens": sample_tokens,
            "sample_seconds": sample_seconds,
            "score_forward_tokens": score_tokens,
            "score_seconds": score_seconds,
            "forward_tokens": tokens,
            "seconds": seconds,
        },
        "forward_token_ratio": _ratio(tokens, greedy_tokens, "greedy decoding fed no tokens"),
        "time_ratio": _ratio(seconds, greedy_seconds, "greedy decoding took no measurable time"),
        "resumed": resumed,
        "note": "forward tokens = prompt + generated tokens per sequence (padding excluded);"
        " wall times of a resumed run include the earlier run's sampling times",
    }


def run_rerank(
    cfg: RerankConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Sequence[str | Path] = (),
) -> list[Path]:
    """``compatlm rerank``: write predictions/<task>/<role>.jsonl, rerank/<task>/choices.jsonl,
    rerank_cost.json, config.yaml and env.json into ``out``; return the paths written."""
    # Both names become directories and file names: checked before anything is read or written.
    check_name("task.name", cfg.task.name)
    check_name("role", cfg.role)
    task = resolve_task(cfg.task, "task")
    text = dump_config(cfg)
    inputs = [*input_paths(cfg), *inputs]
    check_out_dir(out, kind="rerank", overwrite=overwrite, resume=resume, inputs=inputs)
    recorded = RunLayout(Path(out)).config
    if resume and not overwrite and recorded.is_file():
        read_yaml(recorded)  # a corrupt file is named in one line, not a traceback
        if recorded.read_text("utf-8") != text:
            raise CompatlmError(
                f"--resume {out}: config.yaml there differs from this run's configuration;"
                " resume with the same config and overrides, or use --overwrite"
            )
    out = prepare_out_dir(out, kind="rerank", overwrite=overwrite, resume=resume, inputs=inputs)
    layout = RunLayout(out)
    rt = cfg.runtime
    written = [
        atomic_write_text(layout.config, text),
        atomic_write_json(
            layout.env,
            env_info(seed=rt.seed, device=rt.device, dtype=rt.dtype, batch_size=rt.batch_size),
        ),
    ]
    samples = layout.rerank(task.name) / "samples.jsonl"
    result = rerank_predictions(cfg.new, cfg.old, task, cfg, rt, samples_path=samples)
    written += [
        samples,
        atomic_write_jsonl(layout.rerank(task.name) / "choices.jsonl", result.choices),
        atomic_write_jsonl(layout.predictions(task.name, cfg.role), result.predictions),
        atomic_write_json(out / "rerank_cost.json", result.cost),
    ]
    return written


def config_cls(method: str) -> type[RerankConfig]:
    return RerankConfig


def build(
    method: str,
    cfg: RerankConfig,
    out: Path,
    *,
    runtime: RuntimeConfig | None = None,
    resume: bool = False,
) -> str:
    """The ``rerank`` registry entry: :func:`run_rerank` into ``out``; returns the predictions
    file (BCR makes predictions, not a model)."""
    if runtime is not None:
        cfg = cfg.model_copy(update={"runtime": runtime})
    run_rerank(cfg, out, resume=resume)
    return str(RunLayout(Path(out)).predictions(cfg.task.name, cfg.role))
