#!/usr/bin/env bash
# Recreate the lm-evaluation-harness 0.4.13 "peer" used by bench/scoring_vs_lmeval.py and
# bench/lmeval_agreement.py: a separate venv (default /tmp/lmeval-venv) that sees the project's
# .venv packages (torch, transformers, datasets, ...) through a .pth file, so torch is NOT
# installed a second time and both sides run the very same torch/transformers.
#
#   bench/setup_peer.sh                 # -> /tmp/lmeval-venv
#   bench/setup_peer.sh /path/to/venv   # elsewhere (then pass --lmeval-python to lmeval_agreement.py)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-/tmp/lmeval-venv}"
MAIN_PY="$REPO/.venv/bin/python"
[ -x "$MAIN_PY" ] || { echo "error: $MAIN_PY not found; create the project venv first" >&2; exit 2; }

# Same interpreter version as .venv: the shared compiled packages (torch) must load in both.
"$MAIN_PY" -m venv "$VENV"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
MAIN_SITE="$("$MAIN_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Appended after the venv's own site-packages ("zz" sorts last), so the venv's packages win.
printf '%s\n%s\n' "$MAIN_SITE" "$REPO/src" > "$SITE/zz_main_venv.pth"

"$VENV/bin/pip" install --quiet --no-deps "lm-eval==0.4.13"
# lm-eval's requirements that .venv does not provide. pip sees .venv's packages through the
# .pth file, so already-satisfied dependencies (numpy, datasets, ...) are not reinstalled.
"$VENV/bin/pip" install --quiet evaluate pytablewriter sacrebleu scikit-learn sqlitedict \
    word2number more_itertools

"$VENV/bin/python" - "$MAIN_SITE" <<'EOF'
import sys

import lm_eval
import torch
import transformers

main_site = sys.argv[1]
assert torch.__file__.startswith(main_site), f"torch comes from {torch.__file__}, not {main_site}"
print(f"lm_eval {lm_eval.__version__}, torch {torch.__version__} and transformers"
      f" {transformers.__version__} from {main_site}")
EOF
echo "peer ready: $VENV/bin/python"
