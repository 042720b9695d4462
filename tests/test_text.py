"""masbench.text: the strict number parsers, one_line and shown, and the lambda-schedule grammar."""

from __future__ import annotations

import ast
import math
import pathlib
import re
from decimal import Decimal

import pytest

from masbench.text.lambda_schedule import VALID, ParsedSchedule, normalise_lambda_schedule, parse_lambda_schedule
from masbench.text.limits import MAX_EPOCHS
from masbench.text.numbers import (
    ascii_digits,
    decimal,
    integer,
    is_digits,
    is_integer,
    is_mantissa,
    is_number,
    number,
)
from masbench.text.shown import MAX_LINE, one_line, shown

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "masbench"
LONG = "1" * 200_000  # a parser that backtracks would take minutes on this; a linear one, microseconds

# --- the strict parsers: one table, every parser ------------------------------------------------------
# text -> (integer, number, decimal, is_digits, is_mantissa); None: refused
TABLE = [
    ("3", 3, 3.0, Decimal("3"), True, True),
    ("٣", None, None, None, False, False),  # Arabic-Indic three: int() would read it as 3
    ("３", None, None, None, False, False),  # fullwidth three
    ("²", None, None, None, False, False),  # str.isdigit() says yes
    ("1_000", None, None, None, False, False),  # int() would read it as 1000
    (" 1", 1, 1.0, Decimal("1"), False, False),  # whitespace around is dropped, as int() drops it
    ("1 000", None, None, None, False, False),  # never inside
    ("+1", 1, 1.0, Decimal("1"), False, False),
    ("-1", -1, -1.0, Decimal("-1"), False, False),
    ("1e3", None, 1000.0, Decimal("1e3"), False, True),
    ("1.5", None, 1.5, Decimal("1.5"), False, True),
    (".5", None, 0.5, Decimal(".5"), False, True),
    ("2.", None, 2.0, Decimal("2."), False, True),
    ("3.0", None, 3.0, Decimal("3.0"), False, True),
    ("inf", None, math.inf, Decimal("inf"), False, False),  # passed on: the range checks name it
    ("-Infinity", None, -math.inf, Decimal("-inf"), False, False),
    ("0x10", None, None, None, False, False),
    ("1e", None, None, None, False, False),
    ("1,5", None, None, None, False, False),
    ("", None, None, None, False, False),
    ("infinite", None, None, None, False, False),
    ("sNaN", None, None, None, False, False),  # Decimal() would take it
]


@pytest.mark.parametrize("text, as_int, as_float, as_decimal, digits, mantissa", TABLE)
def test_the_strict_parsers_take_digits_0_9_and_nothing_else(text, as_int, as_float, as_decimal, digits, mantissa):
    for parse, expected, check in ((integer, as_int, is_integer), (number, as_float, is_number),
                                   (decimal, as_decimal, is_number)):
        assert check(text) is (expected is not None)
        if expected is None:
            with pytest.raises(ValueError, match=r"is not (an integer|a number) in digits 0-9"):
                parse(text)
        else:
            assert parse(text) == expected and type(parse(text)) is type(expected)
    assert is_digits(text) is digits and is_mantissa(text) is mantissa


@pytest.mark.parametrize("text", ["nan", "NaN", " nan "])
def test_nan_is_passed_on_as_a_number_for_the_range_checks_to_name(text):
    assert math.isnan(number(text)) and decimal(text).is_nan() and not is_integer(text)


@pytest.mark.parametrize("value, as_int, as_float", [(3, 3, 3.0), (2.5, None, 2.5), (True, None, None),
                                                     (None, None, None), (["1"], None, None)])
def test_values_already_typed_pass_and_others_are_refused(value, as_int, as_float):
    for parse, expected in ((integer, as_int), (number, as_float)):
        if expected is None:
            with pytest.raises(ValueError, match="in digits 0-9"):
                parse(value)
        else:
            assert parse(value) == expected


@pytest.mark.parametrize("text", [LONG, LONG + "x", "." + LONG + "e", "-" + LONG + ".5e", "0" * 10**6 + "٣"])
def test_very_long_input_is_answered_in_one_line(text):
    for parse in (integer, number, decimal):
        try:
            parse(text)
        except ValueError as error:
            assert len(str(error)) < 200 and "\n" not in str(error)


def test_an_integer_past_int_s_digit_limit_is_named_not_int_s_own_error():
    with pytest.raises(ValueError, match=r"is not an integer in digits 0-9 of at most \d+ digits"):
        integer(LONG)


@pytest.mark.parametrize("text, plain", [("linear:0.7:0.3", True), ("0.9,0.999", True), ("٠.٩", False),
                                         ("1_0", False), ("é", False), ("", True)])
def test_ascii_digits_guards_a_grammar_that_holds_numbers(text, plain):
    assert ascii_digits(text) is plain


# --- one_line and shown --------------------------------------------------------------------------------

@pytest.mark.parametrize("x, limit, expected", [
    ("a\nb", None, "a b"),
    ("  a \t\t b\r\n c  ", None, "a b c"),
    (ValueError("bad\n  value"), None, "bad value"),
    ("abcdef", 6, "abcdef"),
    ("abcdef", 5, "ab..."),
    ("a\nbcdef", 4, "a..."),
    ("", 10, ""),
])
def test_one_line_is_one_line_cut_with_a_mark(x, limit, expected):
    assert one_line(x, limit) == expected


def test_one_line_cuts_at_an_error_line_s_longest_unless_told_not_to():
    assert len(one_line("word\n" * 10**5)) == MAX_LINE and one_line("word\n" * 10**5).endswith("...")
    assert len(one_line("word " * 10**5, limit=None)) == 5 * 10**5 - 1


def test_shown_cuts_a_long_value_and_names_a_huge_integer():
    assert len(shown("x" * 10**6)) <= 80 and shown(10**1000) == "an integer of about 1001 digits"


def test_there_is_one_one_line_and_no_inline_copy_of_it():
    inline = re.compile(r"""['"] ['"]\.join\(.*\.split\(\)\)""")
    assert [str(path) for path in PACKAGE.rglob("*.py") if path.parent.name != "text" and inline.search(path.read_text())] == []
    defined = [f"{path.relative_to(PACKAGE)}" for path in PACKAGE.rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.FunctionDef) and node.name in ("one_line", "shown")]
    assert defined == ["text/shown.py", "text/shown.py"]


def test_the_text_package_imports_nothing_above_it():
    for path in (PACKAGE / "text").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("masbench"):
                assert node.module.startswith("masbench.text") or node.module == "masbench.errors", path


# --- the lambda-schedule grammar -----------------------------------------------------------------------

@pytest.mark.parametrize("text, parsed, normal", [
    ("constant", ParsedSchedule("constant", ()), "constant"),
    ("linear:0.7:0.3", ParsedSchedule("linear", (0.7, 0.3)), "linear:0.7:0.3"),
    ("linear:0.70:.3", ParsedSchedule("linear", (0.7, 0.3)), "linear:0.7:0.3"),
    ("linear:1.0:0.0:100.0", ParsedSchedule("linear", (1.0, 0.0, 100.0)), "linear:1:0:100"),
    ("linear:1e0:-0:1e2", ParsedSchedule("linear", (1.0, 0.0, 100.0)), "linear:1:0:100"),
    ("linear:+0.5:0.25:7", ParsedSchedule("linear", (0.5, 0.25, 7.0)), "linear:0.5:0.25:7"),
    (f"linear:0:1:{MAX_EPOCHS}", ParsedSchedule("linear", (0.0, 1.0, float(MAX_EPOCHS))), f"linear:0:1:{MAX_EPOCHS}"),
])
def test_a_schedule_parses_once_to_its_one_normal_form(text, parsed, normal):
    assert parse_lambda_schedule(text) == parsed
    assert normalise_lambda_schedule(text) == normal
    assert normalise_lambda_schedule(normal) == normal  # the normal form is a fixed point
    assert parse_lambda_schedule(normal) == parsed


@pytest.mark.parametrize("text, why", [
    ("cosine", ""),
    ("constant:1", ""),
    ("linear", ""),
    ("linear:", ""),
    ("linear:0.5", ""),
    ("linear:0.5:0.5:5:6", ""),
    ("linear:1.5:0", ""),
    ("linear:0:-0.5", ""),
    ("linear:٠.٧:0.3", ""),
    ("linear:0.7:0.3:1_0", ""),
    ("linear:0x1:0", ""),
    ("linear:abc:inf", ""),  # the first part that is no number is named by the general rule
    ("linear:0.7:0.3:inf", "'inf' is not a finite number"),
    ("linear:0.7:nan", "'nan' is not a finite number"),
    ("linear:5:inf", "'inf' is not a finite number"),
    ("linear:0.7:0.3:0", "EPOCHS '0' is out of range"),
    ("linear:0.7:0.3:2.5", "EPOCHS '2.5' is out of range"),
    ("linear:0.7:0.3:1e12", "EPOCHS '1e12' is out of range"),
    (f"linear:0.7:0.3:{MAX_EPOCHS + 1}", f"EPOCHS '{MAX_EPOCHS + 1}' is out of range"),
])
def test_every_refusal_is_one_line_naming_the_text_and_what_is_valid(text, why):
    with pytest.raises(ValueError) as caught:
        parse_lambda_schedule(text)
    message = str(caught.value)
    assert message.startswith(f"Invalid lambda schedule: {text!r} (") and message.endswith(f"{VALID})")
    assert (why + "; ") in message if why else message == f"Invalid lambda schedule: {text!r} ({VALID})"
    assert "\n" not in message


@pytest.mark.parametrize("text, message", [
    ("linear:" + "0" * 200, "is 207 characters (at most 100)"),
    ("linear:0.7:0.3\n", "holds a control character"),
])
def test_a_schedule_s_text_is_checked_as_every_stored_string_is(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_lambda_schedule(text)
