"""Per-instance scores of generated text against a reference, in [0, 1].

The MUSCLE paper measures generative regression on SAMSum with ROUGE-1 (arXiv 2407.09435,
Sec. 4.3): a flip happens when the similarity to the reference crosses the pass threshold.
ROUGE comes from Google's ``rouge-score`` package (F-measure, Porter stemming as in the
original ROUGE toolkit); chrF from ``sacrebleu`` when that package happens to be installed
(it is not a dependency). ``exact_match`` is 0/1 and decided by the caller after extraction.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from compatlm.errors import CompatlmError

ROUGE_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
GENERATION_METRICS = ("exact_match", *ROUGE_METRICS, "chrf")


def _sacrebleu() -> Any | None:
    try:
        import sacrebleu
    except ImportError:
        return None
    return sacrebleu


def available_metrics() -> list[str]:
    """Generation metrics usable here (chrF only when sacrebleu is importable)."""
    return [m for m in GENERATION_METRICS if m != "chrf" or _sacrebleu() is not None]


def check_generation_metric(metric: str, where: str = "metric") -> None:
    if metric == "chrf" and _sacrebleu() is None:
        raise CompatlmError(f"{where}: chrf needs the sacrebleu package (pip install sacrebleu)")
    if metric not in GENERATION_METRICS:
        raise CompatlmError(
            f"{where}: unknown generation metric {metric!r}; expected one of"
            f" {', '.join(available_metrics())}"
        )


@cache
def _rouge_scorer(metric: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([metric], use_stemmer=True)


def similarity(metric: str, prediction: str, reference: str) -> float:
    """Similarity of ``prediction`` to ``reference`` under ``metric`` (ROUGE F1 or chrF/100)."""
    if metric in ROUGE_METRICS:
        score = _rouge_scorer(metric).score(reference, prediction)[metric]
        return float(score.fmeasure)
    if metric == "chrf":
        sacrebleu = _sacrebleu()
        if sacrebleu is None:
            raise CompatlmError("metric chrf needs the sacrebleu package (pip install sacrebleu)")
        return float(sacrebleu.sentence_chrf(prediction, [reference]).score) / 100.0
    raise CompatlmError(f"metric {metric!r}: not a similarity metric")
