"""Formatting shared by the Markdown and HTML reports: numbers, CIs, the headline row, flip
order, and how a data value becomes displayable text (the similarity-aware rows live in
:mod:`compatlm.report.primary`).

Full snake_case metric names live in JSON; the abbreviations (NFR, PFR, BTC, BEC) appear only
in these human-facing tables, with a legend.

Data (task, role and slice names, ids, outputs, targets, warnings) is never trusted: before a
renderer applies its own escaping (HTML, Markdown), :func:`plain` cuts it to a length cap with
"… (N more characters)" and turns control, format (bidi overrides, zero-width) and line/paragraph
separator characters into visible escapes (``\\x00``, ``\\u202e``), so a report shows what the
data holds instead of being reordered or hidden by it. The row builders take ``esc``, the
renderer's escaping of one data field, so that the numbers compatlm writes stay readable.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

NAME_CAP = 200  # characters of a name or an id shown in a report
FIELD_CAP = 2000  # characters of an output, target or warning shown in the flip viewer
# Categories shown as escapes: controls, format characters (bidi overrides and isolates,
# zero-width joiners, BOM), line/paragraph separators, lone surrogates.
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_CANDIDATE = re.compile(r"[^\x20-\x7e]")  # printable ASCII is never escaped: skip it fast
_SHORT = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _same(text: str) -> str:
    return text


def clip(text: str, cap: int) -> str:
    """``text`` if at most ``cap`` characters, else its head and how much was cut."""
    if len(text) <= cap:
        return text
    return f"{text[:cap]}… ({len(text) - cap} more characters)"


def _escape_char(match: re.Match[str], keep: str) -> str:
    ch = match.group()
    if ch in keep or unicodedata.category(ch) not in _INVISIBLE:
        return ch
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str, *, multiline: bool = False) -> str:
    """Invisible and reordering characters as escapes; ``multiline`` keeps newlines and tabs."""
    keep = "\n\t" if multiline else ""
    return _CANDIDATE.sub(lambda m: _escape_char(m, keep), text)


def plain(value: Any, cap: int = NAME_CAP, *, multiline: bool = False) -> str:
    """The displayable text of one data value: ``null`` for None, clipped, invisibles shown."""
    return visible(clip(show(value), cap), multiline=multiline)


def name(value: Any, esc: Callable[[str], str] = _same) -> str:
    """A task, role or slice name as a renderer shows it."""
    return esc(plain(value, NAME_CAP))


LEGEND = (
    ("ref → other", "the reference model (usually old) and the model compared with it"),
    ("NFR", "negative flip rate: ref right, other wrong, over all matched instances"),
    ("PFR", "positive flip rate: ref wrong, other right"),
    ("BTC", "backward trust compatibility: both right / ref right"),
    ("BEC", "backward error compatibility: both wrong / other wrong"),
    ("p", "McNemar exact p-value on the discordant (flipped) instances"),
    ("sNFR / sPFR", "similarity negative / positive flip rate: score fell / rose by > τ"),
    ("m_g / m_r", "mean gain / mean regression of the score over those flips"),
)
FLIP_ORDER = ("negative", "positive", "inconsistency", "similarity_negative", "similarity_positive")


def pct(metric: dict[str, Any] | None, *, ci: bool = True) -> str:
    """``2.50% [1.10, 4.00]``; ``n/a`` for an undefined metric."""
    if not metric or metric.get("value") is None:
        return "n/a"
    text = f"{100 * metric['value']:.2f}%"
    if ci and metric.get("ci"):
        lo, hi = metric["ci"]
        text += f" [{100 * lo:.2f}, {100 * hi:.2f}]"
    return text


def num(metric: dict[str, Any] | None, *, ci: bool = True, digits: int = 3) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    text = f"{metric['value']:.{digits}f}"
    if ci and metric.get("ci"):
        lo, hi = metric["ci"]
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def number(value: Any) -> str:
    """A number as a reader wants it: integers as is, floats to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return plain(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def pvalue(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    v = metric["value"]
    return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}"


def pair(comp: dict[str, Any], esc: Callable[[str], str] = _same) -> str:
    return f"{name(comp['reference'], esc)} → {name(comp['other'], esc)}"


def headline_row(comp: dict[str, Any], esc: Callable[[str], str] = _same) -> list[str]:
    m = comp["metrics"]
    return [
        name(comp["task"], esc),
        pair(comp, esc),
        name(comp["n"], esc),
        pct(m["accuracy_old"], ci=False),
        pct(m["accuracy_new"], ci=False),
        pct(m["negative_flip_rate"]),
        pct(m["positive_flip_rate"]),
        pct(m["backward_trust_compatibility"]),
        pct(m["backward_error_compatibility"]),
        pvalue(m["mcnemar_p_value"]),
    ]


HEADLINE_HEADER = [
    "Task",
    "Comparison",
    "N",
    "Acc ref",
    "Acc other",
    "NFR",
    "PFR",
    "BTC",
    "BEC",
    "p",
]


def ordered_flips(flips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Negative flips first (what users notice), then the rest, file order within a type."""
    rank = {t: i for i, t in enumerate(FLIP_ORDER)}
    return sorted(flips, key=lambda f: rank.get(f.get("flip"), len(rank)))


def show(value: Any) -> str:
    return "null" if value is None else str(value)
