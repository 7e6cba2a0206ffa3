"""Training half of compatlm: MUSCLE compatibility adapters (arXiv 2407.09435, §4).

``masks`` chooses, per token, which teacher the student imitates; ``topk`` represents a teacher by
its top-k log-probabilities (so the old base need not stay in memory); ``losses`` combines them
into the masked distillation objective. Data, teacher cache and recipes live beside them.
"""
