"""Reference builds of the demo family: is the family built here the one the docs measured?

Owns the build-platform record (:func:`build_platform`: torch, the CPU kernel set ATen
dispatches to, MKL's reproducibility branch) written into a family's ``family.json``, the
committed table of known builds (:data:`REFERENCE_BUILDS`: recipe key → bases' weight sha256
and the validation accuracies ``bench/family_power.py`` measured on them), and
:func:`check_reference`, which compares a built family with that table.

Why this exists: a family build is deterministic on one CPU kernel set (the same recipe rebuilt
on the same kind of CPU gives bit-identical bases), but pre-training amplifies the last-bit
rounding differences between kernel sets (AVX-512 vs AVX2 matmuls and reductions) into bases
that differ in accuracy by several points. Measured: the default recipe built on an Intel Xeon
(AVX-512) gives validation old/new 52.7/53.3 (hellaswag) and 73.8/72.0 (piqa); built on an AMD
EPYC (AVX2) 50.8/61.5 and 68.4/77.3. Pinning the kernels (``ATEN_CPU_CAPABILITY=default``,
``MKL_CBWR=COMPATIBLE``, the only MKL branch reproducible across CPU vendors) would make builds
portable but costs 2.9× the pre-training time (``bench/build_kernels.py``), which would push a
cold ``compatlm demo`` past 10 minutes. So compatlm does not pin: it records what it built on
and says when a build is not the documented one.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

from compatlm.demo.cache import MANIFEST
from compatlm.demo.recipe import ROLES

log = logging.getLogger(__name__)

# recipe key → builds whose bases were measured. ``validation``: seed 0's old and new task
# adapters on the validation split, in percent (bench/family_power.py, bench/README.md).
REFERENCE_BUILDS: dict[str, list[dict[str, Any]]] = {
    "e2aa520e6cdd577a": [
        {
            "name": "xeon-avx512",
            "cpu_capability": "AVX512",
            "torch": "2.13.0+cpu",
            "weights_sha256": {
                "old": "059a7d6159abc3042c466fda8cebde94d31e0c6dc1140903215bb5877c075a70",
                "new": "ae177aa4d2f8ceb4e97f0a6f53fde7e38cff78f449b553c63a25b97156750913",
            },
            "validation": {
                "demo_hellaswag": {"old": 52.7, "new": 53.3},
                "demo_piqa": {"old": 73.8, "new": 72.0},
                "demo_gsm8k": {"old": 18.7, "new": 71.1},
            },
        }
    ],
}


def build_platform() -> dict[str, Any]:
    """What decides a build's floating-point results, beside the recipe (call before building)."""
    import torch

    return {
        "torch": torch.__version__,
        # The vector kernel set ATen dispatches to (AVX512, AVX2, DEFAULT, ...): bases built
        # with different sets differ in their last bits, and pre-training amplifies that.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY"),
        "mkl_cbwr_env": os.environ.get("MKL_CBWR"),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def weights_sha256(manifest: dict[str, Any]) -> dict[str, str | None]:
    """Each base's ``model.safetensors`` sha256, as the cache manifest recorded it."""
    files = manifest.get("files") or {}
    return {role: files.get(f"{role}/model.safetensors") for role in ROLES}


def check_reference(key: str, info: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """Compare a built family (recipe ``key``, its family.json ``info`` and cache manifest) with
    the reference builds.

    Returns ``status`` (``matches`` | ``differs`` | ``no_reference``), the build's platform and
    weight hashes, the reference compared with, and a one-line ``message`` (logged as a warning
    when the build differs: its accuracies need not be the documented ones).
    """
    here = weights_sha256(manifest)
    built_on = info.get("build_platform")
    refs = REFERENCE_BUILDS.get(key)
    out: dict[str, Any] = {"weights_sha256": here, "build_platform": built_on}
    if not refs:
        out |= {
            "status": "no_reference",
            "reference": None,
            "message": f"demo family {key}: no reference build is recorded for this recipe",
        }
        log.info("%s", out["message"])
        return out
    match = next((r for r in refs if r["weights_sha256"] == here), None)
    if match is not None:
        out |= {
            "status": "matches",
            "reference": match["name"],
            "message": f"demo family {key}: bases identical to reference build {match['name']!r}",
        }
        log.info("%s", out["message"])
        return out
    ref = refs[0]
    cap = (built_on or {}).get("cpu_capability") or "not recorded"
    out |= {
        "status": "differs",
        "reference": ref["name"],
        "message": (
            f"demo family {key}: bases differ from reference build {ref['name']!r} (CPU kernels"
            f" here: {cap}, reference: {ref['cpu_capability']}, torch {ref['torch']});"
            " pre-training amplifies rounding differences between CPU kernel sets, so this"
            " build's accuracies and old/new gaps can differ from the documented ones"
            " (bench/README.md); the report shows this build's own"
        ),
    }
    log.warning("%s", out["message"])
    return out


def manifest_of(entry: Path) -> dict[str, Any]:
    """The cache entry's manifest (an empty one if it cannot be read: then nothing matches)."""
    try:
        return json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
