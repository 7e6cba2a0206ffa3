"""The model being trained (the student), as each recipe builds it.

- ``train task``: a base + a fresh LoRA (:func:`lora_config` of ``cfg.lora``, peft
  ``get_peft_model``), or base + an existing adapter trained further (:func:`build_student`);
- ``train compat``: the NEW base with the new task adapter loaded twice (:func:`load_student`):
  adapter ``"student"``, a trainable copy — the paper's initialisation (MUSCLE, Echterhoff et
  al., arXiv 2407.09435, A.1) — and adapter ``"teacher_new"``, frozen, so teacher_new shares the
  student's base instead of holding a second copy of it (:class:`compatlm.train.teachers.
  AdapterTeacher` runs it). ``student_init: fresh`` re-initialises the student instead
  (:func:`reset_student`), an ablation of that initialisation.

Only the LoRA parameters are trainable; the loop refuses a model with none and checks at the end
that the frozen weights did not move.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.models import load_model
from compatlm.spec import ModelSpec
from compatlm.train.config import LoraSettings

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Adapter names inside the compat student's PeftModel.
STUDENT = "student"
TEACHER_NEW = "teacher_new"


def lora_config(lora: LoraSettings) -> LoraConfig:
    """The peft ``LoraConfig`` of a fresh LoRA."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # peft's "all-linear" already leaves out the output head (lm_head).
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def build_student(
    spec: ModelSpec, lora: LoraSettings, runtime: RuntimeConfig
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for ``train task``: base + (loaded adapter, trainable) or base + a
    fresh LoRA. The fresh LoRA's initialisation draws from the global RNG (seed it first)."""
    from peft import get_peft_model

    loaded = load_model(spec, trainable=True, runtime=runtime)
    model = loaded.model
    if spec.adapter is None:
        try:
            model = get_peft_model(model, lora_config(lora))
        except ValueError as err:
            first = str(err).strip().splitlines()[0]
            raise CompatlmError(f"lora.target_modules: cannot apply LoRA ({first})") from None
    elif lora != LoraSettings():
        log.warning("base names an adapter (%s): it is trained further; lora ignored", spec.adapter)
    return model, loaded.tokenizer


def load_student(
    new: ModelSpec,
    runtime: RuntimeConfig,
    *,
    with_teacher: bool = True,
    init: Literal["new_adapter", "fresh"] = "new_adapter",
) -> tuple[PeftModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for ``train compat``: new base + new adapter twice, "student"
    (trainable copy, active) and "teacher_new" (frozen; not loaded when ``with_teacher`` is
    False: teacher_new then comes from a cache, or is not used at all).

    ``init="fresh"`` re-initialises the student's LoRA weights as a fresh LoRA of the same shape
    (:func:`reset_student`): not the paper's setting, a way to test whether starting at
    teacher_new is what limits MUSCLE. Draws from the global RNG (seed it first)."""
    loaded = load_model(new, trainable=True, runtime=runtime, adapter_name=STUDENT)
    model = loaded.model
    if init == "fresh":
        reset_student(model)
    if with_teacher:
        model.load_adapter(new.adapter, adapter_name=TEACHER_NEW, is_trainable=False)
    model.set_adapter(STUDENT)
    return model, loaded.tokenizer


def reset_student(model: PeftModel) -> int:
    """Re-initialise the "student" adapter as peft initialises a new LoRA (A Kaiming-uniform,
    B zero: the model starts at its base); returns the number of LoRA layers reset. The shape
    (r, alpha, target modules) stays the new task adapter's, so the parameter count and the
    budget match the default initialisation."""
    from peft.tuners.lora import LoraLayer

    conf = model.peft_config[STUDENT]
    # Only plain LoRA has a "fresh" state that is A random, B zero: DoRA's magnitude vector and
    # other adapter types would need their own re-initialisation.
    if conf.peft_type != "LORA" or getattr(conf, "use_dora", False):
        kind = "DoRA" if getattr(conf, "use_dora", False) else conf.peft_type
        raise CompatlmError(
            f"student_init fresh: the new task adapter is {kind!s:.40}; only a plain LoRA can be"
            " re-initialised (use student_init new_adapter)"
        )
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and STUDENT in m.lora_A]
    for layer in layers:
        layer.reset_lora_parameters(STUDENT, True)
    if not layers:
        raise CompatlmError("student_init fresh: the new task adapter has no LoRA layers")
    return len(layers)


def adapter_name(model: PeftModel) -> str:
    """The PeftModel's active adapter (what the task recipe saves)."""
    return model.active_adapter if isinstance(model.active_adapter, str) else "default"
