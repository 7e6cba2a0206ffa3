"""The model card (README.md) of a trained adapter: what it is, how it was trained, the resolved
config, and the best epoch once training is over.

A card is written twice: with every saved adapter (before the best epoch is known; the loop's
save function carries it) and once more at the end by :func:`finish_card`, with the best epoch,
the run's warnings and, for a compatibility adapter, the diagnostics verdict (MUSCLE, Echterhoff
et al., arXiv 2407.09435; see :mod:`compatlm.train.diagnostics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compatlm.config import dump_config
from compatlm.io import atomic_write_text
from compatlm.spec import ModelSpec
from compatlm.tasks import ResolvedTask
from compatlm.train.config import TrainCompatConfig, TrainTaskConfig
from compatlm.train.loop import LoopResult

if TYPE_CHECKING:
    from accelerate import Accelerator


@dataclass
class ModelCard:
    """Title and prose lines of a card; the resolved config and best epoch are added on render."""

    title: str
    cfg: TrainTaskConfig | TrainCompatConfig
    lines: list[str] = field(default_factory=list)

    def render(self, history: list[dict[str, Any]]) -> str:
        return model_card(self.title, self.cfg, self.lines, history)

    def add_warnings(self, warnings: list[str]) -> None:
        """Lines for the run's warnings (also recorded in env.json)."""
        self.lines += warning_lines(warnings)


def model_card(
    title: str,
    cfg: TrainTaskConfig | TrainCompatConfig,
    lines: list[str],
    history: list[dict[str, Any]],
) -> str:
    """README.md of a trained adapter: what it is, how it was trained, the resolved config."""
    parts = [f"# {title}", "", *lines, ""]
    best = [r for r in history if r.get("best")]
    if best:
        r = best[-1]
        val = f", validation CE {r['val_ce']:.4f}" if "val_ce" in r else ""
        parts += [f"Best epoch: {r['epoch']} of {len(history)}{val}.", ""]
    parts += ["## Resolved config", "", "```yaml", dump_config(cfg).rstrip(), "```", ""]
    return "\n".join(parts)


def warning_lines(warnings: list[str]) -> list[str]:
    """Model-card lines for the run's warnings (also recorded in env.json)."""
    return ["", *(f"- **warning**: {w}" for w in warnings)] if warnings else []


def task_card(
    cfg: TrainTaskConfig, spec: ModelSpec, task: ResolvedTask, n_train: int, n_val: int
) -> ModelCard:
    """The card of a task adapter (``compatlm train task``)."""
    return ModelCard(
        f"compatlm task adapter: {task.name} on {spec.base}",
        cfg,
        [
            "Trained with `compatlm train task` (LoRA; base weights frozen).",
            "",
            f"- base: `{spec.base}`",
            f"- task: `{task.name}` ({task.kind}, {n_train} train / {n_val} validation)",
            f"- mask_prompt {cfg.mask_prompt}",
        ],
    )


def compat_card(
    cfg: TrainCompatConfig,
    old: ModelSpec,
    new: ModelSpec,
    task: ResolvedTask,
    n_train: int,
    n_val: int,
) -> ModelCard:
    """The card of a compatibility adapter (``compatlm train compat``, MUSCLE)."""
    return ModelCard(
        f"compatlm compatibility adapter (MUSCLE): {task.name} on {new.base}",
        cfg,
        [
            "Trained with `compatlm train compat`: masked token-level distillation from the old"
            " and new task models (MUSCLE, arXiv 2407.09435). Load it on the NEW base.",
            "",
            f"- new (student base, teacher_new): `{new.format()}`",
            f"- old (teacher_old, {cfg.teacher_old}): `{old.format()}`;"
            f" teacher_new {cfg.teacher_new}",
            f"- mask `{cfg.mask}`, temperature {cfg.temperature}, kd_weight {cfg.kd_weight},"
            f" t_squared {cfg.t_squared}, mask_prompt {cfg.mask_prompt},"
            f" student_init {cfg.student_init}",
            f"- task: `{task.name}` ({task.kind}, {n_train} train / {n_val} validation)",
        ],
    )


def finish_card(acc: Accelerator, result: LoopResult, card: ModelCard) -> None:
    """Rewrite the adapter's README.md once the best epoch is known (collective)."""
    if acc.is_main_process and result.adapter_dir.is_dir():
        atomic_write_text(result.adapter_dir / "README.md", card.render(result.history))
    acc.wait_for_everyone()
