"""Answer extraction for generation tasks: raw model text → the answer compared by exact match.

Specs (``TaskConfig.extract``):

* ``none`` — the whole generated text, stripped;
* ``gsm8k`` — lm-eval's strict GSM8K filter (the first ``#### <number>``), falling back to the
  last number in the text (lm-eval's "flexible-extract"); numbers are normalised;
* ``last_number`` — the last number in the text, normalised;
* ``regex:<pattern>`` — the first match; its first group when the pattern has groups.

Numbers are normalised so that formatting is not an error: thousands commas and ``$`` are
dropped, a trailing period is cut, and integral decimals lose their zeros (``"7.0"`` → ``"7"``).
A failed extraction is ``None`` (the prediction's ``parsed`` is null and it counts as wrong).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from compatlm.errors import CompatlmError

Extractor = Callable[[str], str | None]

# lm-eval 0.4.13 gsm8k "strict-match" pattern.
_GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
# A number as people write it: optional sign and $, digits with optional thousands commas,
# optional decimals. Stricter than lm-eval's flexible pattern, which also matches "..", "$,".
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")

EXTRACT_HELP = "none | gsm8k | last_number | regex:<pattern>"


def normalize_number(text: str) -> str | None:
    """``"$1,234.50"`` → ``"1234.5"``; ``"7.0"`` → ``"7"``; ``"-0"`` → ``"0"``; junk → None."""
    s = text.strip().replace(",", "").replace("$", "").rstrip(".")
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", s):
        return None
    if "." in s:
        s = s.rstrip("0").rstrip(".")  # "7.50" -> "7.5", "7.0" -> "7"
    if "." not in s:
        return str(int(s))  # "007" -> "7", "-0" -> "0"
    return s


def last_number(text: str) -> str | None:
    """The last number in ``text``, normalised, or None."""
    for match in reversed(_NUMBER.findall(text)):
        value = normalize_number(match)
        if value is not None:
            return value
    return None


def gsm8k_answer(text: str) -> str | None:
    """The first ``#### N`` answer (GSM8K's format), else the last number in the text."""
    m = _GSM8K_STRICT.search(text)
    if m:
        value = normalize_number(m.group(1))
        if value is not None:
            return value
    return last_number(text)


def _whole(text: str) -> str | None:
    return text.strip()


def regex_extractor(pattern: str, where: str = "extract") -> Extractor:
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise CompatlmError(f"{where}: invalid regex {pattern!r} ({err})") from None

    def extract(text: str) -> str | None:
        m = compiled.search(text)
        if m is None:
            return None
        value = m.group(1) if compiled.groups else m.group(0)
        return value.strip() if value is not None else None

    return extract


def get_extractor(spec: str | None, where: str = "extract") -> Extractor:
    """The extraction function for ``spec``; an unknown spec is a one-line error at ``where``."""
    if spec is None or spec == "none":
        return _whole
    if spec == "gsm8k":
        return gsm8k_answer
    if spec == "last_number":
        return last_number
    if spec.startswith("regex:"):
        return regex_extractor(spec[len("regex:") :], where)
    raise CompatlmError(f"{where}: unknown extraction {spec!r}; expected {EXTRACT_HELP}")


def target_answer(reference: str, extractor: Extractor) -> str:
    """The gold answer for exact match: the reference run through the same extraction, or the
    stripped reference when extraction finds nothing (a bare ``"72"`` has no ``####``)."""
    value = extractor(reference)
    return value if value is not None else reference.strip()
