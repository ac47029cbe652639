"""The request options kube validates before a write reaches the registry, in
`Validate*Options`' words (cf. apiserver pkg/endpoints/handlers/rest.go and apimachinery's
pkg/apis/meta/v1/validation): the field manager a write names or defaults to, the
fieldManager and force rules of PatchOptions, and the numbers in query parameters, read with
kube's parameter codec's bounds.
"""

from __future__ import annotations

import re

from kext.api.errors import (
    Cause,
    bad_request,
    field_forbidden,
    field_invalid,
    field_required,
    field_too_long,
    go_quote,
)

FIELD_MANAGER_MAX_LENGTH = 128


def default_manager(user_agent: str) -> str:
    """The manager of a non-apply write that names none: the User-Agent up to its first '/',
    printable characters only, at most 128 bytes (prefixFromUserAgent)."""
    out: list[str] = []
    size = 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        n = len(ch.encode("utf-8", "surrogatepass"))
        if size + n > FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(ch)
        size += n
    return "".join(out)


def validate_field_manager(field_manager: str, path: str = "fieldManager") -> list[Cause]:
    """ValidateFieldManager: at most 128 bytes, printable characters only."""
    causes: list[Cause] = []
    if len(field_manager.encode("utf-8", "surrogatepass")) > FIELD_MANAGER_MAX_LENGTH:
        causes.append(field_too_long(path, FIELD_MANAGER_MAX_LENGTH))
    causes.extend(field_invalid(path, field_manager, f"invalid character U+{ord(ch):04X}")
                  for ch in field_manager if not ch.isprintable())
    return causes


def patch_options_causes(apply: bool, field_manager: str, force: bool | None) -> list[Cause]:
    """The fieldManager and force rules of ValidatePatchOptions; the caller reports them as
    `errors.invalid("meta.k8s.io", "PatchOptions", "", causes)` (422)."""
    causes: list[Cause] = []
    if not apply:
        if force is not None:
            causes.append(field_forbidden("force", "may not be specified for non-apply patch"))
    elif not field_manager:
        causes.append(field_required("fieldManager", "is required for apply patch"))
    causes.extend(validate_field_manager(field_manager))
    return causes


# -- numbers in query parameters, as kube's parameter codec parses them (apimachinery
# pkg/runtime/conversion.go: strconv.ParseInt(s, 10, 64) of the parameter's first value,
# a failure answered 400 with strconv's words by DecodeParameters' callers).

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
_GO_DECIMAL = re.compile(r"[-+]?[0-9]+")


def parse_int64(value: str) -> int:
    """strconv.ParseInt(value, 10, 64); StatusError 400 in strconv's words when it fails."""
    if not _GO_DECIMAL.fullmatch(value):
        raise bad_request(f"strconv.ParseInt: parsing {go_quote(value)}: invalid syntax")
    if len(value) > 25 or not -INT64_MAX - 1 <= int(value) <= INT64_MAX:
        raise bad_request(f"strconv.ParseInt: parsing {go_quote(value)}: value out of range")
    return int(value)


def parse_resource_version(value: str) -> int:
    """A resourceVersion as kube's APIObjectVersioner.ParseResourceVersion reads it
    (strconv.ParseUint(value, 10, 64); "" is 0); StatusError 400 worded as
    storage.ValidateListOptions words it."""
    if not value:
        return 0
    problem = ""
    if not value.isascii() or not value.isdigit():
        problem = "invalid syntax"
    elif len(value) > 25 or int(value) > UINT64_MAX:
        problem = "value out of range"
    if problem:
        raise bad_request(
            f"invalid resource version: resourceVersion: Invalid value: {go_quote(value)}: "
            f"strconv.ParseUint: parsing {go_quote(value)}: {problem}"
        )
    return int(value)
