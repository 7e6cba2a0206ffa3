"""Teacher cache: teacher_old's predictions on the training data, computed once.

teacher_old (old base + old task adapter) lives on another base than the student. Running it live
doubles the base models in memory and adds a forward pass per step; instead
:func:`build_teacher_cache` runs it once over the training data and stores, per example and per
labelled position, what MUSCLE's loss (arXiv 2407.09435, §4) and its masks need:

- the top-k token ids and log-probs at the distillation temperature T, and the log-mass of the
  remaining tokens (a :class:`~compatlm.train.topk.TopK`; exact at k = V, a lower bound of the
  full KL otherwise);
- the log-prob of the label at T = 1 and the old argmax (:class:`~compatlm.train.masks.OldStats`).

Layout: ``shard-NNNNN.safetensors`` (flat per-token tensors of a group of examples) and
``index.json`` (format version, teacher spec, tokenizer fingerprint, k, T, and per example id:
shard, offset, length, token hash). :meth:`TeacherCache.open` refuses a cache built for another
teacher, tokenizer, k, T, or other token ids, naming the mismatch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from compatlm.config import RuntimeConfig
from compatlm.errors import CompatlmError
from compatlm.io import atomic_write_text, dumps
from compatlm.models import load_model, require_same_tokenizer, tokenizer_fingerprint
from compatlm.spec import ModelSpec
from compatlm.train.checkpoint import replace_dir
from compatlm.train.data import IGNORE, Collator, Features
from compatlm.train.masks import OldStats
from compatlm.train.topk import TopK, topk_from_logits

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

FORMAT = "compatlm-teacher-cache"
VERSION = 1
SHARD_EXAMPLES = 1024
IN_MEMORY_BYTES = 256 * 2**20  # caches up to this size are read into RAM at open
_KEYS = ("ids", "logprobs", "rest_logmass", "label_logprob", "argmax")


def spec_key(spec: ModelSpec) -> str:
    """A spec with local paths made absolute, so ``./old`` and ``/abs/old`` compare equal."""

    def norm(part: str | None) -> str | None:
        return os.path.realpath(part) if part and os.path.exists(part) else part

    return ModelSpec(
        norm(spec.base) or spec.base, spec.base_revision, norm(spec.adapter), spec.adapter_revision
    ).format()


def data_hash(feats: Sequence[Features]) -> str:
    h = hashlib.sha256()
    for f in sorted(feats, key=lambda f: f.example_id):
        h.update(f"{f.example_id}\0{f.token_hash()}\n".encode())
    return h.hexdigest()[:16]


def _rows_of(logits: Tensor, labels: Tensor, k: int, temperature: float) -> list[dict[str, Tensor]]:
    """Per example: the cache tensors at its labelled positions (n_b tokens each)."""
    top = topk_from_logits(logits, k, temperature)  # (B, T, k)
    stats = OldStats.from_logits(logits, labels)  # (B, T)
    rows = []
    for b in range(labels.shape[0]):
        valid = labels[b] != IGNORE  # (T,)
        rows.append(
            {
                "ids": top.ids[b, valid].to(torch.int32).cpu(),  # (n_b, k)
                "logprobs": top.logprobs[b, valid].float().cpu(),  # (n_b, k)
                "rest_logmass": top.rest_logmass[b, valid].float().cpu(),  # (n_b,)
                "label_logprob": stats.label_logprob[b, valid].float().cpu(),  # (n_b,)
                "argmax": stats.argmax[b, valid].to(torch.int32).cpu(),  # (n_b,)
            }
        )
    return rows


def build_teacher_cache(
    old_spec: ModelSpec,
    examples: Sequence[Features],
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    k: int,
    temperature: float,
    runtime: RuntimeConfig | None = None,
) -> Path:
    """Run the old task model once over ``examples`` and write the cache to ``out_dir``.

    ``tokenizer`` is the training (new) tokenizer: the old one must equal it. The directory is
    written under a temporary name and renamed when complete.
    """
    from safetensors.torch import save_file

    runtime = runtime or RuntimeConfig()
    out_dir = Path(out_dir)
    loaded = load_model(old_spec, runtime=runtime)
    require_same_tokenizer(loaded.tokenizer, tokenizer, why="token-level distillation")
    vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
    if not 1 <= k <= vocab:
        raise CompatlmError(f"topk: must be between 1 and the vocabulary size {vocab}, found {k}")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    collate = Collator(tokenizer.pad_token_id, [f.example_id for f in examples])
    index: dict[str, list[Any]] = {}
    shards: list[str] = []
    n_tokens = 0
    bs = runtime.batch_size
    for s0 in range(0, len(examples), SHARD_EXAMPLES):
        group = examples[s0 : s0 + SHARD_EXAMPLES]
        parts: dict[str, list[Tensor]] = {key: [] for key in _KEYS}
        offset = 0
        for b0 in range(0, len(group), bs):
            chunk = group[b0 : b0 + bs]
            batch = collate(chunk)
            with torch.no_grad():
                logits = loaded.model(
                    input_ids=batch["input_ids"].to(loaded.device),
                    attention_mask=batch["attention_mask"].to(loaded.device),
                    use_cache=False,
                ).logits  # (B, T, V)
            for f, row in zip(
                chunk,
                _rows_of(logits, batch["labels"].to(logits.device), k, temperature),
                strict=True,
            ):
                n = int(row["argmax"].shape[0])
                index[f.example_id] = [len(shards), offset, n, f.token_hash()]
                offset += n
                for key in _KEYS:
                    parts[key].append(row[key])
        name = f"shard-{len(shards):05d}.safetensors"
        save_file({key: torch.cat(parts[key]) for key in _KEYS}, str(tmp / name))
        shards.append(name)
        n_tokens += offset
    # Compact JSON: the index has one entry per training example.
    atomic_write_text(
        tmp / "index.json",
        dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "teacher": spec_key(old_spec),
                "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
                "k": k,
                "temperature": float(temperature),
                "vocab_size": vocab,
                "data_hash": data_hash(examples),
                "n_examples": len(examples),
                "n_tokens": n_tokens,
                "shards": shards,
                "examples": index,
            }
        ),
    )
    del loaded
    replace_dir(tmp, out_dir)
    log.info(
        "teacher cache: %d examples, %d tokens, k=%d -> %s", len(examples), n_tokens, k, out_dir
    )
    return out_dir


class TeacherCache:
    """Read side of the cache: batches of :class:`TopK` + :class:`OldStats` of its teacher."""

    def __init__(self, directory: Path, index: dict[str, Any]) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        self.directory = directory
        self.index = index
        self.k = int(index["k"])
        self.vocab_size = int(index["vocab_size"])
        files = [directory / name for name in index["shards"]]
        # A small cache is read into memory once (one slice per example per step is then a
        # view); a large one stays memory-mapped and only the current batch's rows are read.
        self._loaded = None
        if sum(f.stat().st_size for f in files) <= IN_MEMORY_BYTES:
            self._loaded = [load_file(str(f)) for f in files]
        self._shards = [safe_open(str(f), framework="pt") for f in files]

    @classmethod
    def open(
        cls,
        directory: str | Path,
        *,
        teacher: ModelSpec,
        tokenizer: Any,
        k: int,
        temperature: float,
        examples: Sequence[Features],
    ) -> TeacherCache:
        """Open and check that the cache was built for exactly this teacher and data."""
        directory = Path(directory)
        path = directory / "index.json"
        if not path.is_file():
            raise CompatlmError(
                f"teacher cache {directory}: no index.json (not a teacher cache); build one with"
                " `compatlm cache-teacher`"
            )
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise CompatlmError(f"{path}: malformed JSON ({err})") from None
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise CompatlmError(
                f"{path}: format {index.get('format')!r} version {index.get('version')!r};"
                f" expected {FORMAT!r} version {VERSION} — rebuild it with `compatlm cache-teacher`"
            )
        checks = [
            ("teacher", index.get("teacher"), spec_key(teacher)),
            (
                "tokenizer fingerprint",
                index.get("tokenizer_fingerprint"),
                tokenizer_fingerprint(tokenizer),
            ),
            ("k", index.get("k"), k),
            ("temperature", index.get("temperature"), float(temperature)),
        ]
        for what, cached, wanted in checks:
            if cached != wanted:
                raise CompatlmError(
                    f"teacher cache {directory}: built with {what} {cached!r}, this run needs"
                    f" {wanted!r}; rebuild the cache (compatlm cache-teacher) or point cache_dir"
                    " elsewhere"
                )
        entries = index.get("examples", {})
        for f in examples:
            entry = entries.get(f.example_id)
            if entry is None:
                raise CompatlmError(
                    f"teacher cache {directory}: example {f.example_id!r} is not in the cache"
                    " (it was built for other data); rebuild it"
                )
            if entry[3] != f.token_hash():
                raise CompatlmError(
                    f"teacher cache {directory}: example {f.example_id!r} has other token ids than"
                    " when the cache was built (other text, prompt format, mask_prompt or"
                    " max_length); rebuild it"
                )
        return cls(directory, index)

    def _entry(self, example_id: str) -> dict[str, Tensor]:
        shard, offset, n, _ = self.index["examples"][example_id]
        if self._loaded is not None:
            return {key: self._loaded[shard][key][offset : offset + n] for key in _KEYS}
        fh = self._shards[shard]
        return {key: fh.get_slice(key)[offset : offset + n] for key in _KEYS}

    def lookup(self, example_ids: Sequence[str], labels: Tensor) -> tuple[TopK, OldStats]:
        """Padded (B, T, k) TopK and (B, T) OldStats for a batch with ``labels`` (B, T).

        Ignored positions get an empty top-k (log-prob -inf) with all mass in the rest bucket,
        a finite KL that the loss masks out anyway.
        """
        b, t = labels.shape
        dev = labels.device
        valid = (labels != IGNORE).cpu()  # (B, T)
        entries = [self._entry(ex_id) for ex_id in example_ids]
        for row, (ex_id, e) in enumerate(zip(example_ids, entries, strict=True)):
            if int(valid[row].sum()) != e["argmax"].shape[0]:
                raise CompatlmError(
                    f"teacher cache {self.directory}: example {ex_id!r} has"
                    f" {e['argmax'].shape[0]} cached tokens but {int(valid[row].sum())} labels now"
                )
        # Boolean-mask assignment fills positions in row-major order, which is exactly the
        # order of the concatenated per-example entries.
        flat = {key: torch.cat([e[key] for e in entries]) for key in _KEYS}
        ids = torch.zeros((b, t, self.k), dtype=torch.long)  # (B, T, k)
        logprobs = torch.full((b, t, self.k), float("-inf"))  # (B, T, k)
        rest = torch.zeros((b, t))  # (B, T)
        label_lp = torch.zeros((b, t))  # (B, T)
        argmax = torch.zeros((b, t), dtype=torch.long)  # (B, T)
        ids[valid] = flat["ids"].long()
        logprobs[valid] = flat["logprobs"]
        rest[valid] = flat["rest_logmass"]
        label_lp[valid] = flat["label_logprob"]
        argmax[valid] = flat["argmax"].long()
        top = TopK(ids.to(dev), logprobs.to(dev), rest.to(dev))
        return top, OldStats(argmax=argmax.to(dev), label_logprob=label_lp.to(dev))
