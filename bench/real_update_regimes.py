"""Does MUSCLE help most when acc_old ≈ acc_new? Two ``bench/real_update.py`` studies compared.

The paper (arXiv 2407.09435) reports its largest NFR cuts for updates whose old and new task
models are about equally accurate (Llama 1 → 2, Vicuna 1.3 → 1.5) and smaller ones across a
large gap (Phi 1 → 1.5). This script checks that finding on the real base: two committed study
results that differ only in how hard the new base is compressed (``prune`` / ``rank``; every
other setting, seeds included, must be equal), so the harder compression is the larger gap.

Seeds pair up across the two studies: a seed trains the same old adapter on the same old base
with the same data (its test accuracy is recorded as a check, ``old_identical``). Per seed and
study, on the test split: gap = acc_old − acc_new of the task adapters (points), Δ%NFR vs new =
100 · (NFR − NFR_new) / NFR_new of MUSCLE (each seed's selected point, else its below-floor one)
and of ``continue_ce``, and MUSCLE − control. Then mean and t-interval over seeds per study,
and the paired difference mild − harsh (seed-level t-test, compatlm's own).

Verdict on the finding: the studies must be ordered by gap (mild gap < harsh gap in every
seed); then ``confirmed`` if MUSCLE's Δ%NFR is lower in the mild regime with a seed-level
interval below 0, ``contradicted`` if above 0, else ``not shown``. The same reading of
MUSCLE − control says whether the gain *beyond its extra training* depends on the regime.

The committed comparison (seconds; reads only the two result files)::

    .venv/bin/python bench/real_update_regimes.py \\
        bench/results/real_update_t1_v400_p03.json bench/results/real_update_t1_v400.json \\
        --out bench/results/real_update_regimes.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, machine_info, write_result
from knob_study import ci_side

METHOD, CONTROL = "muscle_every_seed", "continue_ce"
REGIME_KNOBS = ("prune", "rank")  # the one thing allowed to differ between the two studies
IGNORED = ("smoke",)
VERDICT = {"below": "confirmed", "above": "contradicted", None: "not shown"}


def _rate(methods: dict[str, Any], role: str, key: str, where: str) -> dict[str, Any]:
    rate = ((methods.get(role) or {}).get(key)) or {}
    if rate.get("numerator") is None or not rate.get("denominator"):
        raise SystemExit(f"{where}: {role} has no {key} with counts (expected a scored method)")
    return rate


def seed_row(methods: dict[str, Any], where: str) -> dict[str, Any]:
    """One seed of one study (``where`` names it in errors): the task adapters' accuracy gap and
    each role's Δ%NFR vs new."""
    acc_old = _rate(methods, "new", "accuracy_old", where)
    acc_new = _rate(methods, "new", "accuracy_new", where)
    flips = {r: _rate(methods, r, "negative_flip_rate", where) for r in ("new", METHOD, CONTROL)}
    n_new = flips["new"]["numerator"]

    def change(role: str) -> float | None:  # undefined, not 0, when new has no flips
        return 100.0 * (flips[role]["numerator"] - n_new) / n_new if n_new else None

    m, c = change(METHOD), change(CONTROL)
    return {
        "accuracy_old": acc_old["value"],
        "accuracy_old_correct": acc_old["numerator"],
        "gap_points": 100.0 * (acc_old["value"] - acc_new["value"]),
        "flips": {r: f["numerator"] for r, f in flips.items()},
        "questions": flips["new"]["denominator"],
        "delta_nfr_percent": {METHOD: m, CONTROL: c},
        "method_minus_control_points": None if m is None or c is None else m - c,
    }


def check_comparable(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> None:
    """Refuse two studies that differ in anything but the regime knobs (one line, the field)."""
    sa, sb = a["settings"], b["settings"]
    for key in sorted(set(sa) | set(sb)):
        if key in REGIME_KNOBS or key in IGNORED or sa.get(key) == sb.get(key):
            continue
        raise SystemExit(
            f"{names[1]}: setting {key!r} is {sb.get(key)!r}, but {sa.get(key)!r} in {names[0]};"
            f" only {', '.join(REGIME_KNOBS)} may differ between the two studies"
        )
    if all(sa.get(k) == sb.get(k) for k in REGIME_KNOBS):
        raise SystemExit(f"{names[0]} and {names[1]} have the same new base: nothing to compare")
    if sorted(a["seeds"]) != sorted(b["seeds"]):
        raise SystemExit(f"{names[1]}: seeds {sorted(b['seeds'])} != {sorted(a['seeds'])}")


def compare(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The two studies (label -> result doc), per seed and paired over seeds."""
    from compatlm.eval.seeds import seed_difference_test, summarise_defined

    (na, a), (nb, b) = docs.items()
    check_comparable(a, b, (na, nb))
    seeds = sorted(a["seeds"], key=int)
    rows = {
        n: {s: seed_row(d["seeds"][s]["methods"], f"{n}, seed {s}") for s in seeds}
        for n, d in docs.items()
    }
    gap = {n: [rows[n][s]["gap_points"] for s in seeds] for n in docs}
    mild, harsh = sorted(docs, key=lambda n: sum(gap[n]))
    ordered = all(m < h for m, h in zip(gap[mild], gap[harsh], strict=True))

    def series(n: str, key: str, role: str | None = None) -> list[float | None]:
        return [rows[n][s][key] if role is None else rows[n][s][key][role] for s in seeds]

    keys = {"muscle_delta_nfr_percent": ("delta_nfr_percent", METHOD),
            "control_delta_nfr_percent": ("delta_nfr_percent", CONTROL),
            "muscle_minus_control_points": ("method_minus_control_points", None),
            "gap_points": ("gap_points", None)}  # fmt: skip
    per_study = {
        n: {"settings": {k: docs[n]["settings"].get(k) for k in REGIME_KNOBS}}
        | {name: summarise_defined(series(n, *key)) for name, key in keys.items()}
        for n in (mild, harsh)
    }
    mild_minus_harsh: dict[str, Any] = {}
    for name, key in keys.items():
        pairs = [(h, m) for h, m in zip(series(harsh, *key), series(mild, *key), strict=True)]
        pairs = [p for p in pairs if None not in p]  # seeds where both are defined
        mild_minus_harsh[name] = (
            seed_difference_test(*zip(*pairs, strict=True)) if len(pairs) > 1 else None
        )

    def verdict(name: str) -> str:
        if not ordered:
            return "untestable: the studies are not ordered by gap in every seed"
        diff = mild_minus_harsh[name]  # None with fewer than two seeds defined in both
        return VERDICT[ci_side(diff) if diff else None]

    return {
        "mild": mild,
        "harsh": harsh,
        "seeds": seeds,
        "ordered_by_gap_every_seed": ordered,
        "old_identical": all(
            rows[mild][s]["accuracy_old_correct"] == rows[harsh][s]["accuracy_old_correct"]
            for s in seeds
        ),
        "per_seed": rows,
        "per_study": per_study,
        "mild_minus_harsh": mild_minus_harsh,
        "verdicts": {
            "muscle_helps_most_when_acc_old_near_acc_new": verdict("muscle_delta_nfr_percent"),
            "gain_beyond_extra_training_larger_when_near": verdict("muscle_minus_control_points"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", nargs=2, type=Path, help="two real_update result JSONs")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/real_update_regimes.json")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    docs: dict[str, dict[str, Any]] = {}
    for path in args.studies:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"{path}: not a readable result JSON ({e})") from None
        if doc.get("benchmark") != "real_update" or doc.get("smoke"):
            raise SystemExit(f"{path}: expected a full bench/real_update.py result")
        docs[path.stem] = doc
    if len(docs) != 2:
        raise SystemExit("give two different study files")
    result = {
        "benchmark": "real_update_regimes",
        "command": " ".join([".venv/bin/python bench/real_update_regimes.py", *argv]),
        "studies": {n: d["command"] for n, d in docs.items()},
    } | compare(docs)
    path = write_result(args.out, result, machine_info(1))
    v = result["verdicts"]
    print(f"wrote {path}: {json.dumps(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
