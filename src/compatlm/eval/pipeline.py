"""``compatlm eval`` as a library function: score old, new and candidates on tasks, then compare.

Owns the run directory of an evaluation (``config.yaml``, ``env.json``,
``predictions/<task>/<role>.jsonl``) and the order of work: one model in memory at a time
(old, new, then candidates — a 7B pair does not fit twice on most GPUs), every task for that
model, rows appended and fsynced chunk by chunk so an interrupted run resumes from disk
(``resume=True`` skips examples already present, keyed by ``example_id``). Finally
:func:`compatlm.eval.compare_io.compare_run` writes flips, ``metrics.json`` and the reports.

Everything a user can get wrong (task files, metric names, candidate names) is checked before
the output directory is touched or a model is loaded.
"""

from __future__ import annotations

import gc
import logging
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

from compatlm.config import EvalConfig, dump_config
from compatlm.errors import CompatlmError
from compatlm.eval.generate import gen_prediction, generate
from compatlm.eval.records import Prediction
from compatlm.eval.runner import mc_prediction, score_multiple_choice
from compatlm.io import (
    JsonlAppender,
    atomic_write_json,
    atomic_write_text,
    env_info,
    load_resumable,
    prepare_out_dir,
)
from compatlm.models import load_model, load_tokenizer, preflight, tokenizer_fingerprint
from compatlm.prompts import encode_prompt, example_hash, model_max_length, prompt_hash
from compatlm.spec import ModelSpec
from compatlm.tasks import ResolvedTask, get_extractor, resolve_task

log = logging.getLogger(__name__)

RESERVED_ROLES = ("old", "new")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def roles_of(cfg: EvalConfig) -> list[tuple[str, str | None]]:
    """``[(role, default spec)]`` in evaluation order: old, new, candidates, then roles named
    only in a task's ``models`` (default None). Role names must be file-safe."""
    roles: list[tuple[str, str | None]] = [("old", cfg.old), ("new", cfg.new)]
    roles += list(cfg.candidates.items())
    for task in cfg.tasks:
        roles += [(r, None) for r in task.models if r not in dict(roles)]
    for name, _ in roles[2:]:
        if name in RESERVED_ROLES or not _ROLE_NAME.match(name) or "_vs_" in name:
            raise CompatlmError(
                f"candidates: name {name!r} must be a file-safe name (letters, digits, _ . -),"
                " not 'old'/'new', without '_vs_'"
            )
    where: list[tuple[str, str | None]] = list(roles)
    where += [
        (f"tasks[{i}].models.{r}", s) for i, t in enumerate(cfg.tasks) for r, s in t.models.items()
    ]
    for name, spec in where:
        if spec is None:
            continue
        try:
            ModelSpec.parse(spec)  # a malformed spec fails now, not after the old model ran
        except CompatlmError as err:
            field = name if name in RESERVED_ROLES or "." in name else f"candidates.{name}"
            raise CompatlmError(f"{field}: {err}") from None
    return roles


def task_specs(cfg: EvalConfig, role: str, default: str | None) -> dict[str, str]:
    """``{task name: spec}`` the role is evaluated with (a task's own ``models`` win)."""
    out = {}
    for task in cfg.tasks:
        spec = task.models.get(role, default)
        if spec is not None:
            out[task.name] = spec
    return out


def resolve_tasks(cfg: EvalConfig) -> list[ResolvedTask]:
    tasks = [resolve_task(t, f"tasks[{i}]") for i, t in enumerate(cfg.tasks)]
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CompatlmError(f"tasks: name {dupes[0]!r} appears twice; task names must be unique")
    if not tasks:
        raise CompatlmError("tasks: empty; give at least one task")
    return tasks


def _check_resume_config(out: Path, cfg: EvalConfig) -> None:
    """Refuse to mix predictions of two configurations in one run directory.

    Settings that do not change predictions may differ: ``out`` (a moved run directory),
    ``compare`` (re-run in full at the end), the batch size (resuming after an out-of-memory
    error with a smaller one is the point) and the progress bar.
    """
    path = out / "config.yaml"
    if not path.is_file():
        return
    previous = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    current = cfg.model_dump(mode="json")
    for data in (previous, current):
        for key in ("out", "compare"):
            data.pop(key, None)
        for key in ("batch_size", "progress"):
            (data.get("runtime") or {}).pop(key, None)
    if previous != current:
        keys = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        raise CompatlmError(
            f"--resume {out}: config.yaml there differs from this run's configuration"
            f" (in {', '.join(keys)}); resume with the same config and overrides, or use --overwrite"
        )


def _done_rows(path: Path, task: ResolvedTask, hashes: dict[str, str], resume: bool) -> set[str]:
    """Example ids already written (resume), after checking they still describe the same data."""
    if not resume:
        return set()
    done = set()
    for i, row in enumerate(load_resumable(path), start=1):
        eid = row.get("example_id")
        if eid not in hashes:
            raise CompatlmError(
                f"{path}:{i}: field 'example_id': {eid!r} is not an example of task {task.name};"
                " the task data changed since the interrupted run — use --overwrite"
            )
        if row.get("example_hash") != hashes[eid]:
            raise CompatlmError(
                f"{path}:{i}: field 'example_hash': example {eid!r} changed since the interrupted"
                " run — use --overwrite"
            )
        done.add(eid)
    return done


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    ) as bar:
        yield bar


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
) -> None:
    model, tok = loaded.model, loaded.tokenizer
    max_len = model_max_length(model, tok)
    # Write every few batches: a crash loses at most one chunk, and resume restarts there.
    chunk_size = batch_size * 4
    if task.kind == "multiple_choice":
        for chunk in _chunks(todo, chunk_size):
            results = score_multiple_choice(
                model, tok, chunk, metric=task.metric, batch_size=batch_size, max_length=max_len
            )
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
            advance(len(chunk))
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


def _run_model(
    out: Path,
    cfg: EvalConfig,
    role: str,
    spec: str,
    tasks: list[ResolvedTask],
    hashes: dict[str, dict[str, str]],
    resume: bool,
    bar: Any,
    env: dict[str, Any],
    fingerprints: dict[str, str],
    warnings: list[str],
) -> None:
    """Score ``tasks`` with one model (loaded only if some rows are missing), then free it."""
    rt = cfg.runtime
    model_name = ModelSpec.parse(spec).format()
    todo: dict[str, list[Any]] = {}
    for task in tasks:
        path = out / "predictions" / task.name / f"{role}.jsonl"
        done = _done_rows(path, task, hashes[task.name], resume)
        todo[task.name] = [ex for ex in task.examples if ex.id not in done]
    if not any(todo.values()):
        log.info("%s: every prediction is already on disk; not loading %s", role, spec)
        fingerprints.setdefault(role, tokenizer_fingerprint(load_tokenizer(spec, rt)))
        return
    torch.manual_seed(rt.seed)
    loaded = load_model(spec, runtime=rt)
    fp = tokenizer_fingerprint(loaded.tokenizer)
    fingerprints.setdefault(role, fp)
    if fp != fingerprints["old"]:
        msg = (
            f"{role} ({spec}) tokenises differently from old ({cfg.old}): prompt hashes"
            " will differ and compare refuses the pairs unless"
            " compare.allow_prompt_mismatch=true"
        )
        log.warning(msg)
        warnings.append(msg)
    env["device"], env["dtype"] = str(loaded.device), str(loaded.dtype).removeprefix("torch.")
    for task in tasks:
        if not todo[task.name]:
            continue
        path = out / "predictions" / task.name / f"{role}.jsonl"
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
                hashes=hashes[task.name],
                advance=lambda n, job=job: bar.advance(job, n),
            )
    _free(loaded)
    del loaded


def run_eval(
    cfg: EvalConfig, out: str | Path, *, overwrite: bool = False, resume: bool = False
) -> Path:
    """Run the evaluation described by ``cfg`` into ``out``; returns the run directory."""
    roles = roles_of(cfg)
    tasks = resolve_tasks(cfg)
    hashes = {t.name: {ex.id: example_hash(ex.hash_fields()) for ex in t.examples} for t in tasks}
    # A wrong path or an adapter of another size must fail now, not after the old model ran.
    every_spec: dict[str, str] = {}  # spec -> the first role using it, for the message
    for role, default in roles:
        for spec in task_specs(cfg, role, default).values():
            every_spec.setdefault(spec, role)
    for spec, role in every_spec.items():
        try:
            preflight(spec, cfg.runtime)
        except CompatlmError as err:
            raise CompatlmError(f"{role}: {err}") from None
    out = Path(out)
    cfg = cfg.model_copy(update={"out": str(out)})
    if resume and out.is_dir():
        _check_resume_config(out, cfg)
    created = not out.exists()
    out = prepare_out_dir(out, overwrite=overwrite, resume=resume)
    try:
        _evaluate(out, cfg, roles, tasks, hashes, resume)
    except CompatlmError:
        # Nothing partial: a directory this call created and that holds no prediction yet
        # (so --resume has nothing to continue from) is removed again.
        rows = [p for p in (out / "predictions").rglob("*.jsonl") if p.stat().st_size]
        if created and not rows:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def _evaluate(
    out: Path,
    cfg: EvalConfig,
    roles: list[tuple[str, str | None]],
    tasks: list[ResolvedTask],
    hashes: dict[str, dict[str, str]],
    resume: bool,
) -> None:
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    rt = cfg.runtime
    env = env_info(seed=rt.seed, device=rt.device, dtype=rt.dtype, batch_size=rt.batch_size)
    env["tasks"] = [t.describe() for t in tasks]
    atomic_write_json(out / "env.json", env)

    fingerprints: dict[str, str] = {}
    warnings: list[str] = []
    with _progress(rt.progress) as bar:
        for role, default in roles:
            # A role may use another adapter per task: group its tasks by spec so each model
            # is loaded once and only one model is in memory at a time.
            specs = task_specs(cfg, role, default)
            groups: dict[str, list[ResolvedTask]] = {}
            for task in tasks:
                spec = specs.get(task.name)
                if spec is not None:
                    groups.setdefault(spec, []).append(task)
            for spec, group in groups.items():
                _run_model(
                    out, cfg, role, spec, group, hashes, resume, bar, env, fingerprints, warnings
                )
    env["tokenizers"] = fingerprints
    env["warnings"] = warnings
    atomic_write_json(out / "env.json", env)
    _compare_and_report(out, cfg, tasks)


def _compare_and_report(out: Path, cfg: EvalConfig, tasks: Sequence[ResolvedTask]) -> None:
    from compatlm.eval.compare_io import compare_run
    from compatlm.eval.noise import measure_run_noise

    # compare.noise_batch_size: the new model re-scored with another batch size gives the
    # noise floor that labels flips within_noise (None when the option is off).
    noise = measure_run_noise(out, cfg, tasks)
    compare_run(out, cfg.compare, noise_margin=noise)
    if not (out / "report.md").is_file():
        # compare_run renders the reports itself today; render here if it ever stops doing so.
        from compatlm.report import render_report

        render_report(out)
