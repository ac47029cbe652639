"""kube-apiserver's continue tokens (cf. k8s.io/apiserver pkg/storage/continue.go): where the
next page of a list starts and the revision every page is read at.

Shared by every storage.Interface implementation, so a token handed out by one (the watch
cache) is understood by another (etcd).

A token kext cannot use is refused as kube-apiserver refuses it, word for word: 400 "invalid
continue token: continue key is not valid: ..." with what Go's base64.RawURLEncoding and
encoding/json say of it (`illegal base64 data at input byte 4`, `unexpected end of JSON
input`, `json: cannot unmarshal string into Go struct field continueToken.rv of type int64`).
"""

from __future__ import annotations

import base64
import json
import posixpath
import string
from collections.abc import Callable
from typing import Any

import orjson

from kext.storage.errors import InvalidObjectError

_CONTINUE_VERSION = "meta.k8s.io/v1"
_INVALID = "continue key is not valid"


def encode_continue(key: str, key_prefix: str, resource_version: int) -> str:
    """The token for a list of key_prefix that goes on at key (under key_prefix) at revision
    resource_version: unpadded URL-safe base64 of
    {"v":"meta.k8s.io/v1","rv":<rev>,"start":"<key after key_prefix>"}."""
    if not key.startswith(key_prefix) or key == key_prefix:
        raise ValueError(f"key {key!r} is not under {key_prefix!r}")
    token = {"v": _CONTINUE_VERSION, "rv": resource_version, "start": key[len(key_prefix):]}
    return base64.urlsafe_b64encode(orjson.dumps(token)).rstrip(b"=").decode("ascii")


def decode_continue(token: str, key_prefix: str) -> tuple[str, int]:
    """(start key, revision) of a continue token; InvalidObjectError (400) in kube's words
    when it is not one.

    A negative revision means "the most recent" (kube-apiserver hands out such tokens with a
    410 when the original revision is compacted)."""

    def invalid(why: str) -> InvalidObjectError:
        return InvalidObjectError(key_prefix, f"invalid continue token: {why}")

    try:
        data = _raw_url_b64decode(_bytes_of(token))
        version, rv, start = _unmarshal_token(data)
    except _GoError as exc:
        raise invalid(f"{_INVALID}: {exc}") from None
    if version != _CONTINUE_VERSION:
        raise invalid(f"{_INVALID}: server does not recognize this encoded version {version}")
    if rv == 0:
        raise invalid(f"{_INVALID}: incorrect encoded start resourceVersion (version "
                      f"{_CONTINUE_VERSION})")
    if not start:
        raise invalid(f"{_INVALID}: encoded start key empty (version {_CONTINUE_VERSION})")
    # As path.Clean in Go: a start key that is not already clean could climb out of the
    # prefix ("../"), so it is refused rather than cleaned.
    key = start if start.startswith("/") else "/" + start
    cleaned = posixpath.normpath(key)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if cleaned != key:
        raise invalid(f"{_INVALID}: {start}")
    return key_prefix + cleaned[1:], rv


class _GoError(Exception):
    """What Go's decoders would say of the token."""


def _bytes_of(token: str) -> bytes:
    """The token's bytes as the client sent them (a query parameter decoded with
    surrogateescape keeps undecodable bytes as lone surrogates)."""
    try:
        return token.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return token.encode("utf-8", "surrogatepass")


_BASE64_URL = frozenset((string.ascii_letters + string.digits + "-_").encode())


def _raw_url_b64decode(data: bytes) -> bytes:
    """base64.RawURLEncoding.DecodeString: unpadded, URL alphabet, CR and LF skipped."""
    digits = bytearray()
    for i, c in enumerate(data):
        if c in b"\r\n":
            continue
        if c not in _BASE64_URL:
            raise _GoError(f"illegal base64 data at input byte {i}")
        digits.append(c)
    if len(digits) % 4 == 1:  # a lone digit carries no whole byte
        raise _GoError(f"illegal base64 data at input byte {len(data) - 1}")
    return base64.urlsafe_b64decode(bytes(digits) + b"=" * (-len(digits) % 4))


# -- encoding/json, as far as json.Unmarshal into continueToken goes


class _Number(str):
    """A JSON number's text (Go reports it as written)."""


class _Object(list[tuple[str, Any]]):
    """A JSON object's members, in order (Go's decoder visits them so; the last of two equal
    keys wins, the first error is reported)."""


_FIELDS = {"v": "string", "rv": "int64", "start": "string"}  # continueToken's JSON fields
_INT64 = range(-(2**63), 2**63)


def _unmarshal_token(data: bytes) -> tuple[str, int, str]:
    """json.Unmarshal(data, &continueToken{}): (v, rv, start), or _GoError in Go's words."""
    syntax = _syntax_error(data)
    if syntax is not None:
        raise _GoError(syntax)
    # Go decodes invalid UTF-8 in strings (and unpaired \\u surrogates) as U+FFFD.
    try:
        value = json.loads(data.decode("utf-8", "replace"), object_pairs_hook=_Object,
                           parse_int=_Number, parse_float=_Number)
    except RecursionError:  # Go nests up to 10000 deep; Python's decoder gives up sooner
        raise _GoError("exceeded max depth") from None
    token: dict[str, Any] = {"v": "", "rv": 0, "start": ""}
    if value is None:
        return "", 0, ""
    if not isinstance(value, _Object):
        raise _GoError(f"json: cannot unmarshal {_go_kind(value)} into Go value of type "
                       "storage.continueToken")
    first: str | None = None
    for name, member in value:
        field = name if name in _FIELDS else next(
            (f for f in _FIELDS if f.casefold() == name.casefold()), None
        )
        if field is None or member is None:
            continue  # unknown keys are ignored; null leaves a field as it is
        problem = None
        if _FIELDS[field] == "string":
            if isinstance(member, str) and not isinstance(member, _Number):
                token[field] = _well_formed(member)
            else:
                problem = _go_kind(member)
        elif isinstance(member, _Number):
            n = int(member) if member.lstrip("-").isdigit() else None
            if n is None or n not in _INT64:
                problem = f"number {member}"
            else:
                token[field] = n
        else:
            problem = _go_kind(member)
        if problem is not None and first is None:
            first = (f"json: cannot unmarshal {problem} into Go struct field "
                     f"continueToken.{field} of type {_FIELDS[field]}")
    if first is not None:
        raise _GoError(first)
    return token["v"], token["rv"], token["start"]


def _well_formed(text: str) -> str:
    """text with unpaired surrogates (from \\ud800-like escapes) replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _go_kind(value: object) -> str:
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _Object):
        return "object"
    return "array"


def _syntax_error(data: bytes) -> str | None:
    """encoding/json's checkValid: None if data is one JSON value, else Go's SyntaxError."""
    scanner = _Scanner()
    for c in data:
        if not scanner.step(c):
            return scanner.error
    return scanner.eof()


def _quote_char(c: int) -> str:
    """Go's quoteChar: a byte as json's messages show it."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    escapes = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t",
               0x0B: "\\v", 0x5C: "\\\\"}
    if c in escapes:
        text = escapes[c]
    elif c < 0x20 or c == 0x7F:
        text = f"\\x{c:02x}"
    elif 0x80 <= c <= 0xA0 or c == 0xAD:  # not printable (strconv.IsPrint)
        text = f"\\u{c:04x}"
    else:
        text = chr(c)
    return f"'{text}'"


_SPACE = frozenset(b" \t\r\n")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_OBJECT_KEY, _OBJECT_VALUE, _ARRAY_VALUE = range(3)
_MAX_DEPTH = 10000
_Step = Callable[[int], bool]  # one state of the scanner: False when the byte is an error


class _Scanner:
    """encoding/json's scanner (scanner.go), state for state: fed one byte at a time, it
    stops at the first byte that cannot continue a JSON value and says why, as Go does."""

    def __init__(self) -> None:
        self.step: _Step = self._begin_value
        self.stack: list[int] = []
        self.end_top = False
        self.error = ""

    def eof(self) -> str | None:
        """Go's scanner.eof: the end of input read as one more space."""
        if self.end_top:
            return None
        if not self.step(0x20):
            return self.error
        return None if self.end_top else "unexpected end of JSON input"

    def _fail(self, c: int, context: str) -> bool:
        self.error = f"invalid character {_quote_char(c)} {context}"
        return False

    def _push(self, c: int, state: int) -> bool:
        self.stack.append(state)
        return len(self.stack) <= _MAX_DEPTH or self._fail(c, "exceeded max depth")

    def _pop(self) -> bool:
        self.stack.pop()
        if self.stack:
            self.step = self._end_value
        else:
            self.step, self.end_top = self._end_top_state, True
        return True

    def _begin_value_or_empty(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x5D:  # ]
            return self._end_value(c)
        return self._begin_value(c)

    def _begin_value(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x7B:  # {
            self.step = self._begin_string_or_empty
            return self._push(c, _OBJECT_KEY)
        if c == 0x5B:  # [
            self.step = self._begin_value_or_empty
            return self._push(c, _ARRAY_VALUE)
        if c == 0x22:
            self.step = self._in_string
        elif c == 0x2D:  # -
            self.step = self._negative
        elif c == 0x30:  # 0
            self.step = self._zero
        elif c in _DIGITS:
            self.step = self._integer
        elif c in b"tfn":
            self.step = self._literal({0x74: "true", 0x66: "false", 0x6E: "null"}[c], 1)
        else:
            return self._fail(c, "looking for beginning of value")
        return True

    def _begin_string_or_empty(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x7D:  # }
            self.stack[-1] = _OBJECT_VALUE
            return self._end_value(c)
        return self._begin_string(c)

    def _begin_string(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x22:
            self.step = self._in_string
            return True
        return self._fail(c, "looking for beginning of object key string")

    def _end_value(self, c: int) -> bool:
        if not self.stack:
            self.step, self.end_top = self._end_top_state, True
            return self._end_top_state(c)
        if c in _SPACE:
            self.step = self._end_value
            return True
        state = self.stack[-1]
        if state == _OBJECT_KEY:
            if c == 0x3A:  # :
                self.stack[-1] = _OBJECT_VALUE
                self.step = self._begin_value
                return True
            return self._fail(c, "after object key")
        if state == _OBJECT_VALUE:
            if c == 0x2C:  # ,
                self.stack[-1] = _OBJECT_KEY
                self.step = self._begin_string
                return True
            if c == 0x7D:
                return self._pop()
            return self._fail(c, "after object key:value pair")
        if c == 0x2C:
            self.step = self._begin_value
            return True
        if c == 0x5D:
            return self._pop()
        return self._fail(c, "after array element")

    def _end_top_state(self, c: int) -> bool:
        return c in _SPACE or self._fail(c, "after top-level value")

    def _in_string(self, c: int) -> bool:
        if c == 0x22:
            self.step = self._end_value
        elif c == 0x5C:  # backslash
            self.step = self._in_string_escape
        elif c < 0x20:
            return self._fail(c, "in string literal")
        return True

    def _in_string_escape(self, c: int) -> bool:
        if c in b'bfnrt\\/"':
            self.step = self._in_string
            return True
        if c == 0x75:  # u
            self.step = self._unicode_escape(4)
            return True
        return self._fail(c, "in string escape code")

    def _unicode_escape(self, left: int) -> _Step:
        def step(c: int) -> bool:
            if c not in _HEX:
                return self._fail(c, "in \\u hexadecimal character escape")
            self.step = self._in_string if left == 1 else self._unicode_escape(left - 1)
            return True

        return step

    def _negative(self, c: int) -> bool:
        if c == 0x30:
            self.step = self._zero
            return True
        if c in _DIGITS:
            self.step = self._integer
            return True
        return self._fail(c, "in numeric literal")

    def _integer(self, c: int) -> bool:
        if c in _DIGITS:
            return True
        return self._zero(c)

    def _zero(self, c: int) -> bool:
        if c == 0x2E:  # .
            self.step = self._dot
            return True
        if c in b"eE":
            self.step = self._exponent
            return True
        return self._end_value(c)

    def _dot(self, c: int) -> bool:
        if c in _DIGITS:
            self.step = self._fraction
            return True
        return self._fail(c, "after decimal point in numeric literal")

    def _fraction(self, c: int) -> bool:
        if c in _DIGITS:
            return True
        if c in b"eE":
            self.step = self._exponent
            return True
        return self._end_value(c)

    def _exponent(self, c: int) -> bool:
        if c in b"+-":
            self.step = self._exponent_sign
            return True
        return self._exponent_sign(c)

    def _exponent_sign(self, c: int) -> bool:
        if c in _DIGITS:
            self.step = self._exponent_digits
            return True
        return self._fail(c, "in exponent of numeric literal")

    def _exponent_digits(self, c: int) -> bool:
        if c in _DIGITS:
            return True
        return self._end_value(c)

    def _literal(self, word: str, at: int) -> _Step:
        def step(c: int) -> bool:
            if c != ord(word[at]):
                return self._fail(c, f"in literal {word} (expecting {word[at]!r})")
            self.step = self._end_value if at + 1 == len(word) else self._literal(word, at + 1)
            return True

        return step
