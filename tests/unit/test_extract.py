"""Answer extraction: GSM8K strict/flexible, last number, regex, normalisation, failures."""

from __future__ import annotations

import pytest

from compatlm.errors import CompatlmError
from compatlm.tasks.extract import (
    get_extractor,
    gsm8k_answer,
    last_number,
    normalize_number,
    target_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 3 + 4 = 7 apples.\n#### 7", "7"),
        ("#### 1,234", "1234"),
        ("#### -5", "-5"),
        ("#### 7.0", "7"),
        ("#### 7 and later #### 9", "7"),  # strict match: the first "#### N"
        ("The answer is $1,000.", "1000"),  # flexible fallback: last number
        ("3 apples, then 4, so 7.", "7"),
        ("Total: 12.50 dollars", "12.5"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_gsm8k(text, expected):
    assert gsm8k_answer(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", "7"),
        ("7.0", "7"),
        ("007", "7"),
        ("-0", "0"),
        ("$3,000.", "3000"),
        ("1.50", "1.5"),
        ("1.2.3", None),
        ("abc", None),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_last_number_and_none():
    assert last_number("from 2 to -3.0 and then 10") == "10"
    assert last_number("minus -3.0") == "-3"
    assert last_number("nothing") is None
    assert get_extractor("none")("  Ana greets Ben. \n") == "Ana greets Ben."
    assert get_extractor(None)(" x ") == "x"


def test_regex_extractor_first_group_or_match():
    grab = get_extractor(r"regex:answer is (\w+)")
    assert grab("I think the answer is blue, not the answer is red") == "blue"
    assert grab("no answer") is None
    assert get_extractor(r"regex:[A-D]\b")("pick: C because") == "C"


def test_bad_specs_are_one_line_errors():
    with pytest.raises(CompatlmError, match=r"tasks\[0\]\.extract: invalid regex"):
        get_extractor("regex:(unclosed", "tasks[0].extract")
    with pytest.raises(CompatlmError, match="unknown extraction 'gsm9k'"):
        get_extractor("gsm9k")


def test_target_answer_falls_back_to_reference():
    gsm = get_extractor("gsm8k")
    assert target_answer("72", gsm) == "72"
    assert target_answer("He pays 3*24 = 72\n#### 72", gsm) == "72"
    assert target_answer(" blue ", get_extractor("regex:(red)")) == "blue"
