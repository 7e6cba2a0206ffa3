"""What every command of the CLI does the same way: load its config, get its trailing overrides
back from argparse, print its gate and the paths it wrote.

- :func:`load_config` is the one config loader: defaults < an in-code layer (``data``) < the YAML
  file < ``section.key=value`` overrides < flags, then list flags appended (``--fail-if``), into
  a pydantic config with one-line errors (:func:`compatlm.config.build_config`).
- :func:`recover_overrides` gives a command the overrides argparse left over (``CONFIG --out DIR
  a.b=1``) or let a list option swallow (``--tasks a b a.b=1``).
- :func:`print_gate` prints a ``--fail-if`` outcome on stderr in one wording for ``eval``,
  ``compare`` and ``report``: ``gate failed: COND: WHY`` per failure, else ``gate passed: COND;
  COND``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from compatlm.errors import EXIT_GATE_FAILED, EXIT_OK, CompatlmError, printable

if TYPE_CHECKING:
    from pydantic import BaseModel

C = TypeVar("C", bound="BaseModel")

# A command lists here (set_defaults(override_lists=...)) its nargs="+" options that may swallow
# the overrides typed after them.
OVERRIDE_LISTS = "override_lists"


def add_overrides(p: argparse.ArgumentParser, help: str = "config overrides") -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)


def add_fail_if(
    p: argparse.ArgumentParser,
    help: str = 'exit 1 when COND holds, e.g. "negative_flip_rate>0.02" (repeatable)',
) -> None:
    p.add_argument("--fail-if", action="append", default=[], metavar="COND", help=help)


def load_config(
    cls: type[C],
    path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    data: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    append: Mapping[str, Sequence[Any]] | None = None,
    source: str | None = None,
) -> C:
    """``cls`` from defaults < ``data`` < YAML at ``path`` < ``overrides`` < ``flags``.

    ``flags`` maps dotted keys to values, ``None`` meaning "flag not given"; ``append`` maps
    dotted keys to items added to the list already there (``--fail-if`` adds to the YAML's
    conditions). Errors name ``source`` (default: the YAML path, else "overrides").
    """
    from compatlm.config import apply_overrides, build_config, read_yaml

    merged: dict[str, Any] = dict(data or {})
    if path is not None:
        merged.update(read_yaml(path))
    merged = apply_overrides(merged, list(overrides))
    for key, value in (flags or {}).items():
        if value is not None:
            node, last = _parent(merged, key)
            node[last] = value
    for key, items in (append or {}).items():
        if items:
            node, last = _parent(merged, key)
            node[last] = [*(node.get(last) or []), *items]
    if source is None:
        source = str(path) if path is not None else "overrides"
    return build_config(cls, merged, source)


def _parent(data: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The mapping holding ``dotted``'s last part, created on the way (a YAML ``key:`` with no
    value counts as an empty section)."""
    *parts, last = dotted.split(".")
    node = data
    for part in parts:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise CompatlmError(f"{'.'.join(parts)}: expected a section, found {child!r}")
        node = child
    return node, last


def recover_overrides(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Move the overrides argparse did not give the command into ``args.overrides``; return the
    arguments that stay unrecognised.

    argparse stops filling a trailing ``overrides`` list once an option follows it (``CONFIG
    --out DIR a.b=1``), and an ``nargs="+"`` option takes everything up to the next option
    (``--tasks a b a.b=1``). Leftovers are overrides when the command takes overrides and none
    of them is an option; a leftover without ``=`` is passed on too, so the config layer names
    it ("expected section.key=value") in one error line.
    """
    if not hasattr(args, "overrides"):
        return extra
    if any(a.startswith("-") for a in extra):
        return extra
    overrides = [*(args.overrides or []), *extra]
    for dest in getattr(args, OVERRIDE_LISTS, ()):
        values = getattr(args, dest, None)
        if values:
            overrides += [v for v in values if "=" in v]
            setattr(args, dest, [v for v in values if "=" not in v])
    args.overrides = overrides
    return []


def require_out(flag: str | None, configured: str | None) -> Path:
    """``--out`` or, without it, the config's ``out:``; neither is an input error."""
    out = flag or configured
    if not out:
        raise CompatlmError("no output directory: pass --out DIR or set `out:` in the config")
    return Path(out)


def print_existing(run: Path, names: Iterable[str]) -> None:
    """Print (stdout) each of ``run/name`` that exists: the files a command wrote."""
    for name in names:
        if (run / name).exists():
            print(printable(run / name))


def print_gate(doc: Mapping[str, Any], conditions: Sequence[str]) -> int:
    """Print the gate outcome on stderr; return the exit code (0 passed, 1 failed).

    The outcome is the one recorded in metrics.json (``doc["gate"]``, which the report's banner
    shows too); a document without one is checked against ``conditions`` now.
    """
    from compatlm.eval.gate import gate_record

    gate = doc.get("gate") or gate_record(dict(doc), list(conditions))
    for f in gate["failures"]:
        print(printable(f"gate failed: {f['condition']}: {f['message']}"), file=sys.stderr)
    if not gate["passed"]:
        return EXIT_GATE_FAILED
    print(printable(f"gate passed: {'; '.join(gate['conditions'])}"), file=sys.stderr)
    return EXIT_OK
