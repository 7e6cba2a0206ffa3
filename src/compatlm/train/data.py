"""Training data: examples → token ids with aligned labels, the seeded train/validation split,
the padding collator shared by both recipes, and the per-epoch shuffle.

The prompt/answer boundary must be the one evaluation uses, or the adapter is trained on
tokens it never sees at test time; so all text → ids goes through :mod:`compatlm.prompts`:

- multiple choice: the answer is ``choices[label]``, tokenised as the lm-eval continuation of
  the context (:func:`compatlm.prompts.encode_choices`, same delimiter as scoring);
- generation: the prompt is encoded exactly as the generator encodes it
  (:func:`compatlm.prompts.encode_prompt`), the answer is ``delimiter + reference`` (+ EOS).

A :class:`Features` row is the model input (prompt + answer without its last token) and
``labels`` aligned with it: ``labels[t]`` is the token that position ``t`` must predict, or -100
where no loss is taken (the prompt when ``mask_prompt``; never the BOS). Shapes in the collated
batch: input_ids, attention_mask, labels, answer_mask: (B, T); index: (B,).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from compatlm import prompts
from compatlm.config import TaskConfig
from compatlm.errors import CompatlmError
from compatlm.tasks import Example, GenExample, MCExample, ResolvedTask, resolve_task
from compatlm.tasks.registry import reads_splits
from compatlm.train.config import DataSettings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class Features:
    """One tokenised training example (lists of equal length L = model input length)."""

    example_id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE where no loss is taken
    answer: tuple[bool, ...]  # True where labels[t] is an answer token (for "old correct")

    @property
    def n_labels(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    def token_hash(self) -> str:
        """Fingerprint of what the model sees and predicts (teacher-cache key)."""
        return prompts.prompt_hash([list(self.input_ids), list(self.labels)])


# --------------------------------------------------------------------------- loading


def load_task(cfg: TaskConfig, where: str = "task") -> ResolvedTask:
    """The training examples, loaded exactly as evaluation loads a task, from the ``train``
    split unless another split is named (never a task's default test split by accident). A
    local JSONL file is read whole: the split is not asked of the loader (it would warn that a
    file has no splits), only recorded as what the rows are used for."""
    if cfg.split is not None:
        return resolve_task(cfg, where)
    if reads_splits(cfg):
        return resolve_task(cfg.model_copy(update={"split": "train"}), where)
    return replace(resolve_task(cfg, where), split="train")


# --------------------------------------------------------------------------- tokenising


def encode_example(
    example: Example,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask_prompt: bool,
    max_length: int,
    append_eos: bool,
    chat_template: bool = False,
) -> Features:
    """Token ids and aligned labels of one example (see module docstring)."""
    if isinstance(example, MCExample):
        (req,) = prompts.encode_choices(
            tokenizer, example.context, [example.choices[example.label]]
        )
        prompt_ids, answer_ids = list(req.context_ids), list(req.continuation_ids)
    else:
        prompt_ids = prompts.encode_prompt(tokenizer, example.prompt, chat_template=chat_template)
        text = prompts.render_chat(tokenizer, example.prompt) if chat_template else example.prompt
        # A chat template already ends where the reply starts; a plain prompt is followed by " ".
        answer = ("" if chat_template else prompts.TARGET_DELIMITER) + example.reference
        whole = prompts.encode(tokenizer, text + answer)
        if whole[: len(prompt_ids)] == prompt_ids:
            answer_ids = whole[len(prompt_ids) :]
        else:  # the answer merged with the prompt's last token: keep the prompt as generated
            answer_ids = prompts.encode(tokenizer, answer, add_special_tokens=False)
    if append_eos and tokenizer.eos_token_id is not None:
        answer_ids = [*answer_ids, int(tokenizer.eos_token_id)]
    if not answer_ids:
        raise CompatlmError(f"example {example.id!r}: the answer has no tokens")
    seq = prompt_ids + answer_ids
    if len(seq) < 2:
        raise CompatlmError(f"example {example.id!r}: fewer than 2 tokens, nothing to predict")
    n_prompt = len(prompt_ids)
    # Left truncation keeps the answer and the text right before it (what predicts it).
    drop = max(0, len(seq) - (max_length + 1))
    seq = seq[drop:]
    n_prompt = max(0, n_prompt - drop)
    inputs = seq[:-1]
    labels, answer = [], []
    for t in range(len(inputs)):
        target_pos = t + 1  # inputs[t] predicts seq[t + 1]
        is_answer = target_pos >= n_prompt
        answer.append(is_answer)
        labels.append(seq[target_pos] if (is_answer or not mask_prompt) else IGNORE)
    return Features(example.id, tuple(inputs), tuple(labels), tuple(answer))


def encode_examples(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    cfg: DataSettings,
    *,
    mask_prompt: bool,
    chat_template: bool = False,
    name: str = "task",
) -> list[Features]:
    """Tokenise all examples; refuses an empty set or one where every label is masked."""
    if not examples:
        raise CompatlmError(f"task {name!r}: no training examples")
    feats = []
    for ex in examples:
        append_eos = cfg.append_eos if cfg.append_eos is not None else isinstance(ex, GenExample)
        feats.append(
            encode_example(
                ex,
                tokenizer,
                mask_prompt=mask_prompt,
                max_length=cfg.max_length,
                append_eos=append_eos,
                chat_template=chat_template,
            )
        )
    n_cut = sum(len(f.input_ids) == cfg.max_length for f in feats)
    if n_cut:
        log.warning(
            "task %s: %d of %d examples reach data.max_length=%d and may have lost prompt tokens",
            name,
            n_cut,
            len(feats),
            cfg.max_length,
        )
    if sum(f.n_labels for f in feats) == 0:
        raise CompatlmError(
            f"task {name!r}: every label is masked (no answer tokens within max_length="
            f"{cfg.max_length}); nothing to train on"
        )
    return feats


def encode_task(
    cfg: TaskConfig, tokenizer: PreTrainedTokenizerBase, data: DataSettings, *, mask_prompt: bool
) -> tuple[ResolvedTask, list[Features]]:
    """A recipe's training task (:func:`load_task`) and its examples as :class:`Features`."""
    task = load_task(cfg)
    feats = encode_examples(
        task.examples,
        tokenizer,
        data,
        mask_prompt=mask_prompt,
        chat_template=task.chat_template,
        name=task.name,
    )
    return task, feats


def split_train_val(
    feats: Sequence[Features], val_fraction: float, seed: int
) -> tuple[list[Features], list[Features]]:
    """Seeded shuffle, then the first ``round(n · val_fraction)`` rows are validation."""
    n = len(feats)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).tolist()
    n_val = min(round(n * val_fraction), n - 1) if n > 1 else 0
    val = sorted(perm[:n_val])
    train = sorted(perm[n_val:])
    return [feats[i] for i in train], [feats[i] for i in val]


class FeatureDataset(torch.utils.data.Dataset):
    """Indexable features (the training or validation split)."""

    def __init__(self, feats: Sequence[Features]) -> None:
        self.feats = list(feats)

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> Features:
        return self.feats[i]


class Collator:
    """Right-pads a list of :class:`Features` into a batch of tensors.

    ``index`` holds each row's position in ``example_ids`` (all examples, before the split), so
    a step function can find per-example data such as teacher-cache entries.
    """

    def __init__(self, pad_id: int, example_ids: Sequence[str]) -> None:
        self.pad_id = pad_id
        self.row_of = {ex_id: i for i, ex_id in enumerate(example_ids)}

    def __call__(self, items: Sequence[Features]) -> dict[str, Tensor]:
        width = max(len(f.input_ids) for f in items)
        b = len(items)
        input_ids = torch.full((b, width), self.pad_id, dtype=torch.long)  # (B, T)
        labels = torch.full((b, width), IGNORE, dtype=torch.long)  # (B, T)
        attention = torch.zeros((b, width), dtype=torch.long)  # (B, T)
        answer = torch.zeros((b, width), dtype=torch.bool)  # (B, T)
        for row, f in enumerate(items):
            n = len(f.input_ids)
            input_ids[row, :n] = torch.tensor(f.input_ids)
            labels[row, :n] = torch.tensor(f.labels)
            attention[row, :n] = 1
            answer[row, :n] = torch.tensor(f.answer)
        index = torch.tensor([self.row_of[f.example_id] for f in items], dtype=torch.long)  # (B,)
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "answer_mask": answer,
            "index": index,
        }


class EpochShuffle(torch.utils.data.Sampler[int]):
    """Random order that is a pure function of (seed, epoch): resuming replays it exactly."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())
