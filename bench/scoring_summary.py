"""The per-task summary of ``bench/scoring_vs_lmeval.py``: speed ratios, work and agreement.

Owns what is made of one task's runs once they are measured — median wall and scoring-phase
ratios compatlm / lm-eval, the token positions each side computed, per-instance agreement of
the chosen answers (acc and acc_norm), cached vs full log-likelihoods, the targets — so the
driver keeps only building the task and running the sides.
"""

from __future__ import annotations

import statistics

from common import argmax, mc_agreement, summarize


def cached_vs_full(cached: list[dict], full: list[dict]) -> dict:
    ref = {r["example_id"]: r for r in full}
    diff = max(
        abs(a - b)
        for r in cached
        for a, b in zip(r["loglikelihoods"], ref[r["example_id"]]["loglikelihoods"], strict=True)
    )

    def norm_choice(r: dict) -> int:
        return argmax(
            [x / max(k, 1) for x, k in zip(r["loglikelihoods"], r["choice_lengths"], strict=True)]
        )

    same = sum(
        argmax(r["loglikelihoods"]) == argmax(ref[r["example_id"]]["loglikelihoods"])
        for r in cached
    )
    same_norm = sum(norm_choice(r) == norm_choice(ref[r["example_id"]]) for r in cached)
    return {
        "max_abs_loglikelihood_diff": diff,
        "acc_same_choice": same,
        "acc_norm_same_choice": same_norm,
        "instances": len(cached),
    }


def summarize_task(shape: str, setup: dict, runs: dict[str, list[dict]], targets: bool) -> dict:
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ("wall", "scoring")}
           for s, rs in runs.items()}  # fmt: skip
    lm = runs.get("lm_eval")

    def ratio(side: str, key: str) -> float | None:
        return round(med[side][key] / med["lm_eval"][key], 4) if lm else None

    keys = ("wall", "scoring", "child_cpu")
    doc = {
        "setup": setup,
        "seconds": {
            side: {k: summarize([r[k] for r in rs]) for k in keys} for side, rs in runs.items()
        },
        "ratios": {
            f"{key}_{side}_over_lmeval": ratio(side, key)
            for side in ("compatlm", "compatlm_full")
            for key in ("wall", "scoring")
        },
        "token_positions_computed": {side: rs[0]["work"] for side, rs in runs.items()},
        "agreement_with_lmeval": {
            side: {
                k: v
                for k, v in mc_agreement(lm[0]["rows"], runs[side][0]["rows"]).items()
                if k != "disagreement_examples"
            }
            for side in ("compatlm", "compatlm_full")
        }
        if lm
        else None,
        "cached_vs_full": cached_vs_full(
            runs["compatlm"][0]["rows"], runs["compatlm_full"][0]["rows"]
        ),
        "compatlm_outputs_identical_across_runs": all(
            r["rows"] == runs["compatlm"][0]["rows"] for r in runs["compatlm"]
        ),
        "load_per_run": {
            side: [[round(r["load_before"], 2), round(r["load_after"], 2)] for r in rs]
            for side, rs in runs.items()
        },
    }
    if lm:
        doc["lm_eval_command"] = lm[0]["command"]
        agree = doc["agreement_with_lmeval"]["compatlm"]
        full_agree = (
            agree["acc_same_choice"] == agree["acc_norm_same_choice"] == agree["instances_compared"]
        )
        doc["targets"] = (
            {
                "wall_ratio_le_0.6": doc["ratios"]["wall_compatlm_over_lmeval"] <= 0.6,
                "scoring_ratio_le_0.55": doc["ratios"]["scoring_compatlm_over_lmeval"] <= 0.55,
                "acc_and_acc_norm_choices_100pct": full_agree,
            }
            if targets
            else {"acc_and_acc_norm_choices_100pct": full_agree}
        )
    return doc
