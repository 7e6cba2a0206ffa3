"""What pinning the CPU kernels would cost a demo-family build, and whether it changes the bases.

A family build is bit-reproducible on one CPU kernel set but not across sets (AVX-512 vs AVX2,
Intel vs AMD; see ``compatlm.demo.reference``). Pinning would make it portable: ATen's kernel set
through ``ATEN_CPU_CAPABILITY`` and MKL's through ``MKL_CBWR`` (only ``COMPATIBLE``, an SSE2 path,
is reproducible across CPU vendors; other branches apply to Intel CPUs only). This script
pre-trains the default family's *new* base for the first ``--steps`` optimiser steps under each
setting, one setting at a time in its own single-thread process, and records steps/s, the
slowdown against the unpinned build and a hash of the weights (equal hashes = identical bases).

    .venv/bin/python bench/build_kernels.py              # ~6 min; bench/results/build_kernels.json
    .venv/bin/python bench/build_kernels.py --quick      # smoke check, < 1 min, temp file
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, machine_info, setup_logging, wait_for_quiet, write_result

# name -> (ATEN_CPU_CAPABILITY, MKL_CBWR); None leaves the variable unset (the machine's best).
SETTINGS = {
    "unpinned": (None, None),
    "aten_avx2+mkl_avx2": ("avx2", "AVX2"),
    "aten_default+mkl_avx2": ("default", "AVX2"),
    "aten_avx2+mkl_compatible": ("avx2", "COMPATIBLE"),
    "aten_default+mkl_compatible (portable)": ("default", "COMPATIBLE"),
}

# Runs in the child process: the variables must be set before torch is imported.
CHILD = r"""
import hashlib, json, sys, time
import torch
torch.set_num_threads(1)
from compatlm.demo.pretrain import make_model, pack, pretrain, train_tokenizer
from compatlm.demo.recipe import FamilyRecipe, corpora

steps = int(sys.argv[1])
recipe = FamilyRecipe.default()
docs = corpora(recipe)
tok = train_tokenizer(docs["old"] + docs["new"], recipe.vocab_size)
base = recipe.new
data = pack(docs["new"][: steps * 40], tok, base.train.seq_len)  # ~5 docs per row, 8 rows/step
model = make_model(base.shape, tok, base.train.seed)
t0 = time.perf_counter()
stats = pretrain(model, data, base.train)
seconds = time.perf_counter() - t0
h = hashlib.sha256()
for _, v in sorted(model.state_dict().items()):
    h.update(v.detach().numpy().tobytes())
print(json.dumps({"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "steps": stats["steps"], "seconds": round(seconds, 2),
                  "steps_per_second": round(stats["steps"] / seconds, 3),
                  "final_loss_ema": stats["final_loss_ema"], "weights_sha256": h.hexdigest()}))
"""


def run(name: str, steps: int) -> dict:
    aten, mkl = SETTINGS[name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for var, value in (("ATEN_CPU_CAPABILITY", aten), ("MKL_CBWR", mkl)):
        env.pop(var, None)
        if value is not None:
            env[var] = value
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name}: child failed:\n{proc.stderr[-2000:]}")
    last = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    return {"aten_cpu_capability": aten, "mkl_cbwr": mkl, **json.loads(last)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="rows of ~40 docs: ~2.7 steps each")
    ap.add_argument("--quick", action="store_true", help="few steps, result to a temp file")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = ap.parse_args(argv)
    setup_logging()
    steps = 8 if args.quick else args.steps
    load = wait_for_quiet(skip=args.quick or args.no_wait)
    machine = machine_info(threads=1)
    rows = {}
    for name in SETTINGS:
        rows[name] = run(name, steps)
        print(f"{name:40s} {rows[name]['steps_per_second']:6.2f} step/s"
              f"  {rows[name]['weights_sha256'][:16]}", flush=True)  # fmt: skip
    base = rows["unpinned"]
    for row in rows.values():
        row["slowdown_vs_unpinned"] = round(base["steps_per_second"] / row["steps_per_second"], 2)
        row["same_weights_as_unpinned"] = row["weights_sha256"] == base["weights_sha256"]
    doc = {
        "command": " ".join(["bench/build_kernels.py", *(argv or sys.argv[1:])]),
        "what": "pre-training the default family's new base, first steps, 1 thread per setting",
        "load": load,
        "settings": rows,
    }
    path = (
        Path(tempfile.mkdtemp()) / "build_kernels.json"
        if args.quick
        else RESULTS_DIR / "build_kernels.json"
    )
    print(write_result(path, doc, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
