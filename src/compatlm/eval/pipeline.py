"""``compatlm eval`` as a library function: score old, new and candidates on tasks, then compare.

Owns the run directory of an evaluation (``config.yaml``, ``env.json``,
``predictions/<task>/<role>.jsonl``) and the order of work: one model in memory at a time
(old, new, then candidates — a 7B pair does not fit twice on most GPUs), every task for that
model, rows appended and fsynced chunk by chunk so an interrupted run resumes from disk
(``resume=True`` skips examples already present, keyed by ``example_id``). Finally
:func:`compatlm.eval.compare_io.compare_run` writes flips and ``metrics.json``; the caller
renders the reports (``compatlm.report.render_report``), which eval never imports.

Everything a user can get wrong (task files, metric names, task and candidate names, an
``--out`` that must not be overwritten or resumed, corrupt predictions of an interrupted run) is
checked before a model is loaded (:mod:`compatlm.eval.checks`); everything but the predictions
before ``--out`` is touched. Tokenizers are fingerprinted before any model loads too
(:func:`compatlm.eval.roles.tokenizer_check`): old and new tokenising differently is said at
the start and recorded in ``env.json``, and the final comparison then verifies example hashes
instead of prompt hashes. The state one run's steps share is an :class:`EvalRun`.
"""

from __future__ import annotations

import gc
import logging
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compatlm.config import EvalConfig, dump_config
from compatlm.errors import CompatlmError
from compatlm.eval.checks import Done, check_resume_config, resolve_tasks, validate_done
from compatlm.eval.compare_io import compare_run
from compatlm.eval.examples import write_examples
from compatlm.eval.generate import gen_prediction, generate
from compatlm.eval.noise import measure_run_noise
from compatlm.eval.records import Prediction
from compatlm.eval.roles import TokenizerCheck, model_groups, roles_of, task_specs, tokenizer_check
from compatlm.eval.runner import mc_prediction, score_multiple_choice
from compatlm.io import JsonlAppender, atomic_write_json, atomic_write_text, env_info
from compatlm.models import load_model, preflight
from compatlm.paths import RunLayout
from compatlm.progress import progress_bar
from compatlm.prompts import encode_prompt, example_hash, model_max_length, prompt_hash
from compatlm.rundir import check_out_dir, input_paths, prepare_out_dir, unlock
from compatlm.spec import ModelSpec
from compatlm.tasks import ResolvedTask, get_extractor

log = logging.getLogger(__name__)


@dataclass
class EvalRun:
    """What the steps of one evaluation share: where it writes, what it evaluates, what is
    already on disk, the progress bar, and the run record (``env.json``) they add to."""

    out: Path
    cfg: EvalConfig
    hashes: dict[str, dict[str, str]]  # task -> example id -> example_hash
    done: Done
    bar: Any = None
    env: dict[str, Any] = field(default_factory=dict)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_task(
    loaded: Any,
    task: ResolvedTask,
    todo: Sequence[Any],
    writer: JsonlAppender,
    *,
    role: str,
    model_name: str,
    batch_size: int,
    hashes: dict[str, str],
    advance: Any,
    scoring: str = "cached",
) -> None:
    model, tok = loaded.model, loaded.tokenizer
    max_len = model_max_length(model, tok)
    # Write every few batches: a crash loses at most one chunk, and resume restarts there.
    chunk_size = batch_size * 4
    if task.kind == "multiple_choice":
        # One call over the whole task so batches are length-sorted across it; finished
        # results come back chunk by chunk (in scoring order, not task order) to be written.
        def write(results: Sequence[Any]) -> None:
            rows = []
            for res in results:
                row = mc_prediction(
                    res,
                    task=task.name,
                    role=role,
                    model=model_name,
                    metric=task.metric,
                    example_hash=hashes[res.example.id],
                )
                rows.append(Prediction.model_validate(row).model_dump(mode="json"))
            writer.write_many(rows)
            advance(len(results))

        score_multiple_choice(
            model,
            tok,
            todo,
            metric=task.metric,
            batch_size=batch_size,
            max_length=max_len,
            scoring=scoring,
            on_results=write,
        )
        return
    extractor = get_extractor(task.extract)
    # Leave room for the answer: lm-eval truncates prompts to max_length - max_new_tokens.
    prompt_len = max_len - task.max_new_tokens if max_len > task.max_new_tokens else max_len
    for chunk in _chunks(todo, chunk_size):
        prompts = [
            encode_prompt(tok, ex.prompt, chat_template=task.chat_template, max_length=prompt_len)
            for ex in chunk
        ]
        outputs = generate(
            model,
            tok,
            prompts,
            max_new_tokens=task.max_new_tokens,
            stop=task.stop,
            batch_size=batch_size,
            no_repeat_ngram_size=task.no_repeat_ngram_size,
        )
        rows = []
        for ex, ids, out in zip(chunk, prompts, outputs, strict=True):
            row = gen_prediction(
                ex,
                out,
                task=task.name,
                role=role,
                model=model_name,
                metric=task.metric,
                extractor=extractor,
                pass_threshold=task.pass_threshold,
                example_hash=hashes[ex.id],
                prompt_hash=prompt_hash(ids),
            )
            rows.append(Prediction.model_validate(row).model_dump(mode="json"))
        writer.write_many(rows)
        advance(len(chunk))


def _free(loaded: Any) -> None:
    loaded.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run_model(run: EvalRun, role: str, spec: ModelSpec, tasks: list[ResolvedTask]) -> None:
    """Score ``tasks`` with one model (loaded only if some rows are missing), then free it."""
    rt = run.cfg.runtime
    model_name = spec.format()
    todo: dict[str, list[Any]] = {}
    for task in tasks:
        have = run.done.get((role, task.name), set())
        todo[task.name] = [ex for ex in task.examples if ex.id not in have]
    if not any(todo.values()):
        log.info("%s: every prediction is already on disk; not loading %s", role, spec)
        return
    torch.manual_seed(rt.seed)
    loaded = load_model(spec, runtime=rt)
    run.env["device"] = str(loaded.device)
    run.env["dtype"] = str(loaded.dtype).removeprefix("torch.")
    bar = run.bar
    for task in tasks:
        if not todo[task.name]:
            continue
        path = RunLayout(run.out).predictions(task.name, role)
        job = bar.add_task(f"{role} · {task.name}", total=len(task.examples))
        bar.update(job, completed=len(task.examples) - len(todo[task.name]))
        with JsonlAppender(path) as writer:
            _run_task(
                loaded,
                task,
                todo[task.name],
                writer,
                role=role,
                model_name=model_name,
                batch_size=rt.batch_size,
                scoring=rt.scoring,
                hashes=run.hashes[task.name],
                advance=lambda n, job=job: bar.advance(job, n),
            )
    _free(loaded)
    del loaded


def run_eval(
    cfg: EvalConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Run the evaluation described by ``cfg`` into ``out``; returns the run directory.
    ``inputs`` are files read besides those ``cfg`` names (the config file itself): like
    the task files and local models, ``--overwrite`` refuses to delete a directory holding
    them."""
    roles = roles_of(cfg)
    tasks = resolve_tasks(cfg)
    hashes = {t.name: {ex.id: example_hash(ex.hash_fields()) for ex in t.examples} for t in tasks}
    # A wrong path, an adapter of another size or an example longer than a model's context
    # must fail now, not after the old model ran.
    every_spec: dict[ModelSpec, str] = {}  # spec -> the first role using it, for the message
    spec_tasks: dict[ModelSpec, set[str]] = {}  # spec -> the tasks it runs
    for role, default in roles:
        for task_name, spec in task_specs(cfg, role, default).items():
            every_spec.setdefault(spec, role)
            spec_tasks.setdefault(spec, set()).add(task_name)
    fitted: set[tuple[str, int, str]] = set()
    for spec, role in every_spec.items():
        try:
            own = [t for t in tasks if t.name in spec_tasks[spec]]
            preflight(spec, cfg.runtime, tasks=own, checked=fitted)
        except CompatlmError as err:
            raise CompatlmError(f"{role}: {err}") from None
    # Tokenizers only, still before any model loads: a tokenizer change is said now.
    tokenizers = tokenizer_check(cfg, tasks, cfg.runtime)
    out = Path(out)
    cfg = cfg.model_copy(update={"out": str(out)})
    every_input = [*input_paths(cfg), *inputs]
    check_out_dir(out, kind="eval", overwrite=overwrite, resume=resume, inputs=every_input)
    if resume and out.is_dir():
        check_resume_config(out, cfg)
    created = not out.exists()
    out = prepare_out_dir(out, kind="eval", overwrite=overwrite, resume=resume, inputs=every_input)
    try:
        # Under the run's lock: only then may a cut-off last line be truncated.
        todo = [(r, t) for r, d in roles for t in tasks if t.name in task_specs(cfg, r, d)]
        done = validate_done(out, todo, hashes) if resume else {}
        run = EvalRun(out, cfg, hashes, done)
        _evaluate(run, roles, tasks, tokenizers)
    except CompatlmError:
        # Nothing partial: a directory this call created and that holds no prediction yet
        # (so --resume has nothing to continue from) is removed again.
        preds = RunLayout(out).predictions_dir
        rows = [p for p in preds.rglob("*.jsonl") if p.stat().st_size]
        if created and not rows:
            shutil.rmtree(out, ignore_errors=True)
            unlock(out)
        raise
    return out


def _evaluate(
    run: EvalRun,
    roles: list[tuple[str, ModelSpec | None]],
    tasks: list[ResolvedTask],
    tokenizers: TokenizerCheck,
) -> None:
    layout = RunLayout(run.out)
    cfg = run.cfg
    atomic_write_text(layout.config, dump_config(cfg))
    rt = cfg.runtime
    run.env = env_info(seed=rt.seed, device=rt.device, dtype=rt.dtype, batch_size=rt.batch_size)
    run.env["tasks"] = [t.describe() for t in tasks]
    # Known before any model loads, so an interrupted run's env.json already says it.
    run.env["tokenizers"] = tokenizers.fingerprints
    run.env["warnings"] = list(tokenizers.warnings)
    atomic_write_json(layout.env, run.env)
    # The inputs themselves (prompt, choices), so the report can show them beside each flip.
    write_examples(run.out, tasks, run.hashes)

    with progress_bar(rt.progress) as run.bar:
        for role, default in roles:
            for spec, group in model_groups(cfg, role, default, tasks).items():
                _run_model(run, role, spec, group)
    atomic_write_json(layout.env, run.env)
    _compare_and_report(run.out, cfg, tasks)


def _compare_and_report(out: Path, cfg: EvalConfig, tasks: Sequence[ResolvedTask]) -> None:
    # compare.noise_batch_size: the new model re-scored with another batch size gives the
    # noise floor that labels flips within_noise (None when the option is off).
    noise = measure_run_noise(out, cfg, tasks)
    # No reports here: eval does not import compatlm.report; callers render (render_report).
    compare_run(out, cfg.compare, noise_margin=noise)
