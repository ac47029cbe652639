"""YAML request bodies decoded as kube-apiserver decodes them: sigs.k8s.io/yaml's YAMLToJSON
over yaml.v2, so the result is a JSON value and nothing else.

What that means for a body (each rule is yaml.v2's `resolve` and decoding into interface{}):
- plain scalars resolve as yaml.v2 does: `y/yes/on/true` (any of their spellings) are true,
  `n/no/off/false` false, `~`/`null`/empty null; integers in Go's syntax (`0x1f`, `0o17`,
  `017`, `0b101`, underscores ignored) when they fit int64 (or uint64); else decimal floats
  when finite; anything else, a thousand-digit number included, is a string. Timestamps
  stay strings. No base-60 numbers.
- an explicit core tag must fit its value: `!!int x` is refused with yaml.v2's words
  ("cannot decode !!str `x` as a !!int"); `!!float` takes integers; `!!str` anything;
  `!!binary` is base64 and becomes the decoded text.
- any other tag (`!foo`, `!!set`, `!!python/object:...`) is ignored: the value is what its
  node is, a string, a list or a mapping.
- `.nan` and `.inf` have no JSON form: refused as YAMLToJSON refuses them.
- mapping keys become strings (true, 1, 1.5 and null as kube prints them).
- aliases are refused (kube limits them by ratio; a few bytes of aliases can expand into
  gigabytes, CVE-2019-11253), and so is nesting deeper than the limit (yaml.v2 stops at
  10000; kext's limit is kext.api.nesting.MAX_DEPTH).

Events come from libyaml's C parser when PyYAML has it; the tree is built here, iteratively,
so no input can exhaust Python's (or C's) stack.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

import yaml
from yaml import events

from kext.api.errors import go_float
from kext.api.nesting import INT64_MAX, INT64_MIN

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG_PREFIX = "tag:yaml.org,2002:"
STR, BOOL, INT, FLOAT, NULL, TIMESTAMP, BINARY, MERGE = (
    "str", "bool", "int", "float", "null", "timestamp", "binary", "merge")

_MAP: dict[str, tuple[str, Any]] = {
    **{s: (BOOL, True) for s in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE",
                                 "on", "On", "ON")},
    **{s: (BOOL, False) for s in ("n", "N", "no", "No", "NO", "false", "False", "FALSE",
                                  "off", "Off", "OFF")},
    **{s: (NULL, None) for s in ("", "~", "null", "Null", "NULL")},
    **{s: (FLOAT, math.nan) for s in (".nan", ".NaN", ".NAN")},
    **{s: (FLOAT, math.inf) for s in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{s: (FLOAT, -math.inf) for s in ("-.inf", "-.Inf", "-.INF")},
    "<<": (MERGE, "<<"),
}
# yaml.v2's yamlStyleFloat (its exponent needs a sign), and a float that starts with '.'
_YAML_FLOAT = re.compile(r"[-+]?[0-9]*\.?[0-9]+([eE][-+][0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]*)?"
    r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?")
_UINT64_MAX = 2**64 - 1


class YAMLDecodeError(ValueError):
    """The body is not YAML kube would accept; the message is kube's kind of sentence."""


def _go_int(text: str, signed: bool) -> int | None:
    """strconv.ParseInt(text, 0, 64) (signed) or ParseUint (unsigned), None when it fails."""
    m = _GO_INT.fullmatch(text) if len(text) <= 80 else None
    if m is None or (m.group(1) and not signed):
        return None
    digits = m.group(2)
    if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXoObB":
        value = int(digits, 8)
    else:
        value = int(digits, 0)
    if m.group(1) == "-":
        value = -value
    low, high = (INT64_MIN, INT64_MAX) if signed else (0, _UINT64_MAX)
    return value if low <= value <= high else None


def resolve(text: str) -> tuple[str, Any]:
    """The tag and value yaml.v2 gives a plain scalar (its resolve with no tag)."""
    hint = text[:1]
    if hint and not (hint in "+-.0123456789" or hint in "yYnNtTfFoO~<"):
        return STR, text
    found = _MAP.get(text)
    if found is not None:
        return found
    if hint == ".":
        if _DOT_FLOAT.fullmatch(text):
            value = float(text)
            if math.isfinite(value):
                return FLOAT, value
        return STR, text
    if hint and hint in "+-0123456789":
        if _TIMESTAMP.fullmatch(text):
            return TIMESTAMP, text  # decoded into interface{}, a timestamp stays its text
        plain = text.replace("_", "")
        for signed in (True, False):
            number = _go_int(plain, signed)
            if number is not None:
                return INT, number
        if _YAML_FLOAT.fullmatch(plain):
            value = float(plain)
            if math.isfinite(value):  # Go's ParseFloat fails with ErrRange past float64
                return FLOAT, value
    return STR, text


def _scalar(event: events.ScalarEvent) -> Any:
    """The JSON value of a scalar event, by yaml.v2's rules for its tag."""
    text = event.value
    tag = event.tag
    if tag in (None, "!"):
        if not event.implicit[0]:  # quoted, literal or folded: a string
            return text
        rtag, value = resolve(text)
    else:
        short = tag[len(_TAG_PREFIX):] if tag.startswith(_TAG_PREFIX) else None
        if short in (None, "seq", "map", "set", "omap", "pairs") or short not in (
                STR, BOOL, INT, FLOAT, NULL, TIMESTAMP, BINARY):
            return text  # yaml.v2 ignores tags it cannot resolve
        if short == STR:
            return text
        if short == BINARY:
            try:
                decoded = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise _error(event, "!!binary value contains invalid base64 data") from None
            return decoded.decode("utf-8", "replace")
        rtag, value = resolve(text)
        if rtag != short:
            if short == FLOAT and rtag == INT:
                return float(value)
            raise _error(event, f"cannot decode !!{rtag} `{_shorten(text)}` as a !!{short}")
    if rtag == FLOAT and not math.isfinite(value):
        raise YAMLDecodeError(f"json: unsupported value: {_go_float(value)}")
    if rtag == INT and not INT64_MIN <= value <= INT64_MAX:
        return float(value)  # as kube's JSON decoding of a number past int64
    return value


def _go_float(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _shorten(text: str) -> str:
    return text if len(text) <= 64 else text[:64] + "..."


def _error(event: events.Event, message: str) -> YAMLDecodeError:
    mark = event.start_mark
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return YAMLDecodeError(f"yaml: {where}{message}")


def _key(value: Any, event: events.Event) -> str:
    """A mapping key as sigs.k8s.io/yaml makes it a JSON object's key."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    raise _error(event, "a mapping key must be a scalar")


class _Mapping:
    """A mapping being built: its dict and the key waiting for its value."""

    __slots__ = ("has_key", "key", "value")

    def __init__(self) -> None:
        self.value: dict[str, Any] = {}
        self.key: Any = None
        self.has_key = False


def yaml_to_json(data: bytes | str, max_depth: int, reported_depth: int = 0) -> Any:
    """The JSON value of one YAML document (None for an empty one); YAMLDecodeError when it
    is not YAML kube would accept (nesting past max_depth is reported as past
    reported_depth, the limit callers state), yaml.YAMLError when it does not parse."""
    stack: list[_Mapping | list[Any]] = []
    result: Any = None
    documents = 0

    def add(value: Any, event: events.Event) -> None:
        nonlocal result
        if not stack:
            result = value
            return
        top = stack[-1]
        if isinstance(top, list):
            top.append(value)
        elif not top.has_key:
            if isinstance(value, (dict, list)):
                raise _error(event, "a mapping key must be a scalar")
            top.key = value
            top.has_key = True
        else:
            _put(top, top.key, value, event)
            top.key = None
            top.has_key = False

    for event in yaml.parse(data, Loader=_LOADER):
        if isinstance(event, events.AliasEvent):
            raise _error(event, "aliases are not accepted in request bodies")
        if isinstance(event, events.ScalarEvent):
            top = stack[-1] if stack else None
            if (isinstance(top, _Mapping) and not top.has_key and event.implicit[0]
                    and event.tag is None and event.value == "<<"):
                top.key = MERGE_KEY
                top.has_key = True
                continue
            add(_scalar(event), event)
        elif isinstance(event, (events.MappingStartEvent, events.SequenceStartEvent)):
            if len(stack) >= max_depth:
                raise YAMLDecodeError(
                    f"yaml: exceeded max depth of {reported_depth or max_depth}")
            stack.append(_Mapping() if isinstance(event, events.MappingStartEvent) else [])
        elif isinstance(event, (events.MappingEndEvent, events.SequenceEndEvent)):
            done = stack.pop()
            add(done.value if isinstance(done, _Mapping) else done, event)
        elif isinstance(event, events.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _error(event, "expected a single document in the request body")
    return result


MERGE_KEY = object()  # the key `<<` of a mapping: its value's keys are merged in


def _put(mapping: _Mapping, key: Any, value: Any, event: events.Event) -> None:
    """Set key to value; a merge key (<<) sets its mapping's keys, in order (as yaml.v2)."""
    if key is MERGE_KEY:
        for source in value if isinstance(value, list) else [value]:
            if not isinstance(source, dict):
                raise _error(event, "map merge requires map or sequence of maps as the value")
            mapping.value.update(source)
        return
    mapping.value[_key(key, event)] = value
