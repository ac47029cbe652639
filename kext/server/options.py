"""The request options kube validates before a write reaches the registry, in
`Validate*Options`' words (cf. apiserver pkg/endpoints/handlers/rest.go and apimachinery's
pkg/apis/meta/v1/validation): the field manager a write names or defaults to, and the
fieldManager and force rules of PatchOptions.
"""

from __future__ import annotations

from kext.api.errors import Cause, field_forbidden, field_invalid, field_required, field_too_long

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
