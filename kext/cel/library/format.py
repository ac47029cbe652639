"""Named string formats (the Kubernetes format library): each validates a string and lists
what is wrong with it, in apimachinery's words."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from kext.cel.library import Function, global_, types

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_UUID = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_URI = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:[^\s]*|/[^\s]*)$")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    shown = ", ".join(f"'{e}'" for e in examples)
    return (f"{msg} (e.g. {shown}, regex used for validation is '{fmt}')" if examples
            else msg)


def _max_len(value: str, limit: int) -> list[str]:
    return [f"must be no more than {limit} characters"] if len(value) > limit else []


def dns1123_label(value: str) -> list[str]:
    errs = _max_len(value, 63)
    if not _DNS1123_LABEL.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character",
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?", "my-name", "123-abc"))
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = _max_len(value, 253)
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character",
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            "example.com"))
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = _max_len(value, 63)
    if not _DNS1035_LABEL.match(value):
        errs.append(_regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character",
            "[a-z]([-a-z0-9]*[a-z0-9])?", "my-name", "abc-123"))
    return errs


def _prefix(check: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    # A prefix (generateName) may end in '-': validate it with a letter appended.
    def run(value: str) -> list[str]:
        return check(value + "a" if value.endswith("-") else value)
    return run


def qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns1123_subdomain(prefix))
    else:
        name = value
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_NAME.match(name):
        errs.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character", "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]",
            "MyName", "my.name", "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    errs = _max_len(value, 63)
    if not _LABEL_VALUE.match(value):
        errs.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character",
            "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", "MyValue", "my_value", "12345"))
    return errs


def _real_date(m: re.Match[str] | None) -> bool:
    if m is None:
        return False
    try:
        date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return False
    return True


def _uri(value: str) -> list[str]:
    return [] if _URI.match(value) else ["invalid URI"]


def _uuid(value: str) -> list[str]:
    return [] if _UUID.match(value) else ["does not match the UUID format"]


def _byte(value: str) -> list[str]:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return ["invalid base64"]
    return []


def _date(value: str) -> list[str]:
    return [] if _real_date(_DATE.match(value)) else ["invalid date"]


def _datetime(value: str) -> list[str]:
    m = _DATETIME.match(value)
    ok = _real_date(m) and m is not None and int(m.group(4)) < 24 and int(m.group(5)) < 60 \
        and int(m.group(6)) < 61
    return [] if ok else ["invalid datetime"]


FORMATS: dict[str, Callable[[str], list[str]]] = {
    "dns1123Label": dns1123_label,
    "dns1123Subdomain": dns1123_subdomain,
    "dns1035Label": dns1035_label,
    "qualifiedName": qualified_name,
    "dns1123LabelPrefix": _prefix(dns1123_label),
    "dns1123SubdomainPrefix": _prefix(dns1123_subdomain),
    "dns1035LabelPrefix": _prefix(dns1035_label),
    "labelValue": label_value,
    "uri": _uri,
    "uuid": _uuid,
    "byte": _byte,
    "date": _date,
    "datetime": _datetime,
}


# -- what CEL sees

F = "kubernetes.NamedFormat"


def _named(name: str) -> Any:
    # An optional: the engine's Python bridge has no optional values, so the environment
    # wraps this one (see environment.py: format.named).
    return types.NamedFormat(value=name) if name in FORMATS else None


def _validate(fmt: Any, value: str) -> list[str] | None:
    errs = FORMATS[fmt.value](value)
    return errs or None


FUNCTIONS: tuple[Function, ...] = tuple(
    global_(f"format.{name}", f"format_{name}", (), F,
            lambda name=name: types.NamedFormat(value=name))
    for name in FORMATS
)
