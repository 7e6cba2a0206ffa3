"""Training half of compatlm: task adapters and MUSCLE compatibility adapters (Echterhoff et
al., arXiv 2407.09435, §4).

Read a recipe first: :mod:`compatlm.train.recipes.task` (``compatlm train task``) and
:mod:`compatlm.train.recipes.compat` (``compatlm train compat``) are one function each, top to
bottom. The components they assemble, none of which imports a recipe:

- ``config`` — the two configs and ``preset: paper``; ``data`` — examples → token ids and
  labels, split, collator; ``student`` — the model being trained;
- ``teachers`` — teacher_old / teacher_new and their set-up; ``cache`` — a teacher's top-k
  precomputed once; ``forward`` — logits at the labelled positions only;
- ``step`` — the step functions (``ce_step``, ``compat_step``); ``losses`` — the masked
  distillation objective; ``masks`` — which teacher each token follows; ``topk`` — top-k
  teachers and their KL;
- ``loop`` — the one training loop; ``state`` — its resumable counters and per-epoch sums;
  ``checkpoint`` — checkpoints, run-directory start, adapter saving; ``card`` — the adapter's
  model card; ``diagnostics`` — ``diagnostics.json`` and ``budget.json``; ``progress`` — the
  progress bar; ``distributed`` — DDP / FSDP2 / DeepSpeed ZeRO.
"""
