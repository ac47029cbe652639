"""The one exception hierarchy of kext's API, and its `meta/v1 Status` form.

Every failure a client can see is a `StatusError`; the server turns it into a Status body in
one place. Constructors mirror k8s.io/apimachinery/pkg/api/errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One entry of `details.causes`: a bad field and why."""

    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if not self.reason:  # Go's omitempty (an admission policy's cause has none)
            del out["reason"]
        if self.field:
            out["field"] = self.field
        return out


@dataclass
class StatusError(Exception):
    """An API error: HTTP code, Status reason, message and optional details."""

    code: int
    reason: str
    message: str
    name: str = ""
    group: str = ""
    kind: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int = 0

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        """The `meta/v1 Status` object for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:  # StatusReasonUnknown: omitted, as Go's omitempty does
            del body["reason"]
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after_seconds:
            details["retryAfterSeconds"] = self.retry_after_seconds
        if details:
            body["details"] = details
        return body


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def not_found(group: str, resource: str, name: str) -> StatusError:
    return StatusError(
        404, "NotFound", f'{_qualified(group, resource)} "{name}" not found',
        name=name, group=group, kind=resource,
    )


def path_not_found(path: str) -> StatusError:
    return StatusError(
        404, "NotFound", f"the server could not find the requested resource ({path})",
    )


def method_not_supported(group: str, resource: str, action: str) -> StatusError:
    return StatusError(
        405, "MethodNotAllowed",
        f"{action} is not supported on resources of kind {_qualified(group, resource)!r}",
        group=group, kind=resource,
    )


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def already_exists(group: str, resource: str, name: str) -> StatusError:
    return StatusError(
        409, "AlreadyExists", f'{_qualified(group, resource)} "{name}" already exists',
        name=name, group=group, kind=resource,
    )


def conflict(group: str, resource: str, name: str, why: str) -> StatusError:
    return StatusError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {why}',
        name=name, group=group, kind=resource,
    )


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def request_entity_too_large(message: str) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: {message}")


def unsupported_media_type(accepted: Sequence[str]) -> StatusError:
    """415, worded as apimachinery's NewUnsupportedMediaTypeError (it names the accepted
    types, not the one sent)."""
    return StatusError(
        415, "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> StatusError:
    """422 Invalid, worded as NewInvalid: `Kind.group "name" is invalid: <cause>` with one
    cause, `[<cause>, <cause>]` (repeats dropped) with several."""
    qualified = f"{kind}.{group}" if group else kind
    message = f'{qualified} "{name}" is invalid' + (f": {causes_message(causes)}" if causes else "")
    return StatusError(
        422, "Invalid", message, name=name, group=group, kind=kind, causes=causes,
    )


def too_many_requests(message: str, retry_after_seconds: int = 1) -> StatusError:
    return StatusError(429, "TooManyRequests", message, retry_after_seconds=retry_after_seconds)


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def timeout(message: str, retry_after_seconds: int = 0) -> StatusError:
    """504 Timeout, worded as kube's NewTimeoutError ("Timeout: " + message)."""
    return StatusError(504, "Timeout", f"Timeout: {message}",
                       retry_after_seconds=retry_after_seconds)


# -- Go's printing: how kube renders values in the messages kext copies. The one place kext
# prints a value the way Go's fmt and encoding/json do; every message built from a value uses it.


def go_quote(text: str) -> str:
    """A string as Go's %q prints it (strconv.Quote)."""
    out = ['"']
    for ch in text:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}


def go_string_slice(values: Iterable[str]) -> str:
    """A []string as Go's %#v prints it: `[]string{"a", "b"}`."""
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"


def _decimal(value: float) -> tuple[str, int]:
    """The shortest decimal digits that read back as abs(value) (value not 0, inf or NaN),
    and where the decimal point goes: 0.0123 is ("123", -1), 1500.0 is ("15", 4)."""
    mantissa, _, exponent = f"{abs(value)!r}".partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole.lstrip("0")) if whole.strip("0") else -(len(frac) - len(frac.lstrip("0")))
    return digits.rstrip("0") or "0", point + int(exponent or 0)


def _exponent_form(sign: str, digits: str, exp: int, min_width: int) -> str:
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):0{min_width}d}"


def _fixed_form(sign: str, digits: str, point: int) -> str:
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_float(value: float) -> str:
    """A float64 as Go's %v prints it (shortest digits, exponent from 1e+06 up or below 1e-04)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign = "-" if value < 0 else ""
    digits, point = _decimal(value)
    exp = point - 1
    if exp < -4 or exp >= 6:
        return _exponent_form(sign, digits, exp, 2)
    return _fixed_form(sign, digits, point)


def _json_float(value: float) -> str:
    # encoding/json's float64: plain digits, an exponent only below 1e-6 or from 1e21 up.
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign = "-" if value < 0 else ""
    digits, point = _decimal(value)
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        return _exponent_form(sign, digits, point - 1, 1)
    return _fixed_form(sign, digits, point)


def go_type(value: Any) -> str:
    """The Go type (fmt's %T) a JSON value decodes to in unstructured content."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def go_json(value: Any) -> str:
    """A JSON value as Go's json.Marshal writes it: compact, map keys sorted, integral floats
    without a fraction, and <, >, &, U+2028, U+2029 escaped in strings."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(
            f"{_json_string(str(k))}:{go_json(v)}" for k, v in sorted(value.items())
        ) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    return _json_string(str(value))


_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_HTML_ESCAPES)


def go_value(value: Any, *, quote_strings: bool = True) -> str:
    """A value as kube prints one in text: booleans `true`/`false`, numbers as %v prints
    them, null, lists and maps as JSON.

    quote_strings=True is a bad value in a field error (field.Error.ErrorBody: strings %q);
    False is a string printer column's cell (jsonpath's PrintResults: strings as they are).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value) if quote_strings else value
    return go_json(value)


def causes_message(causes: Sequence[Cause]) -> str:
    """The text of field errors aggregated (field.ErrorList.ToAggregate): `<field>: <message>`
    for one, `[<one>, <two>]` for several, repeats dropped."""
    messages = list(dict.fromkeys(
        f"{c.field}: {c.message}" if c.field else c.message for c in causes
    ))
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


# -- field errors (k8s.io/apimachinery/pkg/util/validation/field): one Cause per bad field,
# its message rendered as field.Error.ErrorBody() renders it, so clients see kube's text.


def _body(kind: str, value: Any, detail: str, omit_value: bool = False) -> str:
    body = kind if omit_value else f"{kind}: {go_value(value)}"
    return f"{body}: {detail}" if detail else body


def field_required(path: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", _body("Required value", None, detail, True), path)


def field_invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", _body("Invalid value", value, detail), path)


def field_type_invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueTypeInvalid", _body("Invalid value", value, detail), path)


def field_not_supported(path: str, value: Any, valid: list[str] | tuple[str, ...]) -> Cause:
    detail = "supported values: " + ", ".join(go_quote(v) for v in valid) if valid else ""
    return Cause("FieldValueNotSupported", _body("Unsupported value", value, detail), path)


def field_duplicate(path: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", _body("Duplicate value", value, ""), path)


def field_forbidden(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", _body("Forbidden", None, detail, True), path)


def field_too_long(path: str, max_length: int) -> Cause:
    if max_length >= 0:
        detail = f"may not be more than {max_length} {'byte' if max_length == 1 else 'bytes'}"
    else:
        detail = "value is too long"
    return Cause("FieldValueTooLong", _body("Too long", None, detail, True), path)


def field_too_many(path: str, actual: int, max_quantity: int) -> Cause:
    if max_quantity >= 0:
        detail = f"must have at most {max_quantity} {'item' if max_quantity == 1 else 'items'}"
    else:
        detail = "has too many items"
    return Cause(
        "FieldValueTooMany", _body("Too many", actual, detail, actual < 0), path,
    )
