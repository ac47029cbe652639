"""Kubernetes resource quantities (k8s.io/apimachinery resource.Quantity), exact.

A quantity is `<sign><digits>[.<digits>]<suffix>` with a binary (Ki..Ei), decimal (n..E)
or exponent (e3, E-2) suffix; values finer than a nano unit are rounded up to one, as
resource.ParseQuantity does. Values are held as exact Fractions so `add`, `sub` and the
comparisons are exact like Go's inf.Dec arithmetic.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from kext.cel.library import Function, Overload, global_, member, types

FORMAT_ERROR = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
SUFFIX_ERROR = "unable to parse quantity's suffix"

_SHAPE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50,
           "Ei": 2 ** 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
            "E": 18}
_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")
_NANO = Fraction(1, 10 ** 9)
_INT64_MAX = 2 ** 63 - 1
_INT64_MIN = -(2 ** 63)


class QuantityError(ValueError):
    """Not a quantity; the message is resource.ParseQuantity's."""


@lru_cache(maxsize=1024)
def parse(text: str) -> Fraction:
    """The exact value of a quantity string, or QuantityError."""
    if not text:
        raise QuantityError(FORMAT_ERROR)
    m = _SHAPE.match(text)
    if m is None:
        raise QuantityError(FORMAT_ERROR)
    number, suffix = m.group(1), m.group(2)
    if not _NUMBER.match(number):
        raise QuantityError(FORMAT_ERROR)
    value = Fraction(number)
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= Fraction(10) ** _DECIMAL[suffix]
    elif _EXPONENT.match(suffix):
        value *= Fraction(10) ** int(suffix[1:])
    else:
        raise QuantityError(SUFFIX_ERROR)
    if (value / _NANO).denominator != 1:
        # Finer than 1n: rounded up (away from zero) to the next nano unit.
        nanos = math.ceil(abs(value) / _NANO)
        value = Fraction(nanos, 10 ** 9) * (1 if value > 0 else -1)
    return value


def is_quantity(text: str) -> bool:
    try:
        parse(text)
    except QuantityError:
        return False
    return True


def canonical(value: Fraction) -> str:
    """A value's one spelling, so that equal quantities compare equal."""
    return f"{value.numerator}/{value.denominator}"


def from_canonical(text: str) -> Fraction:
    return Fraction(text)


def is_integer(value: Fraction) -> bool:
    return value.denominator == 1 and _INT64_MIN <= value.numerator <= _INT64_MAX


def as_integer(value: Fraction) -> int:
    if not is_integer(value):
        raise QuantityError("cannot convert value to integer")
    return value.numerator


def as_approximate_float(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def sign(value: Fraction) -> int:
    return (value > 0) - (value < 0)


def compare(a: Fraction, b: Fraction) -> int:
    return (a > b) - (a < b)


# -- what CEL sees

def _q(value: Fraction) -> Any:
    return types.Quantity(value=canonical(value))


def _v(q: Any) -> Fraction:
    return from_canonical(q.value)



Q = "kubernetes.Quantity"
FUNCTIONS: tuple[Function, ...] = (
    global_("quantity", "string_to_quantity", ("string",), Q, lambda s: _q(parse(s))),
    global_("isQuantity", "is_quantity_string", ("string",), "bool", is_quantity),
    member("isInteger", "quantity_is_integer", (Q,), "bool", lambda q: is_integer(_v(q))),
    member("asInteger", "quantity_get_integer", (Q,), "int", lambda q: as_integer(_v(q))),
    member("asApproximateFloat", "quantity_get_float", (Q,), "double",
           lambda q: as_approximate_float(_v(q))),
    member("sign", "quantity_get_sign", (Q,), "int", lambda q: sign(_v(q))),
    Function("add", (
        Overload("quantity_add", (Q, Q), Q, lambda a, b: _q(_v(a) + _v(b)), True),
        Overload("quantity_add_int", (Q, "int"), Q, lambda a, b: _q(_v(a) + b), True),
    )),
    Function("sub", (
        Overload("quantity_sub", (Q, Q), Q, lambda a, b: _q(_v(a) - _v(b)), True),
        Overload("quantity_sub_int", (Q, "int"), Q, lambda a, b: _q(_v(a) - b), True),
    )),
    member("isLessThan", "quantity_less", (Q, Q), "bool",
           lambda a, b: compare(_v(a), _v(b)) < 0),
    member("isGreaterThan", "quantity_greater", (Q, Q), "bool",
           lambda a, b: compare(_v(a), _v(b)) > 0),
    member("compareTo", "quantity_compare", (Q, Q), "int", lambda a, b: compare(_v(a), _v(b))),
)
