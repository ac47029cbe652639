"""Object metadata (meta/v1 ObjectMeta): name rules, labels and annotations, the system fields
a server stamps, and the create/update validation of k8s.io/apimachinery/pkg/api/validation,
with kube-apiserver's messages and field paths."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kext.api import errors
from kext.api.errors import Cause, field_forbidden, field_invalid, field_required, field_too_long

# The fields of meta/v1 ObjectMeta as they appear in JSON; anything else under `metadata` is
# dropped on decode (apiextensions round-trips metadata through the typed ObjectMeta).
STANDARD_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})
OWNER_REFERENCE_FIELDS = frozenset({
    "apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion",
})
MANAGED_FIELDS_ENTRY_FIELDS = frozenset({
    "manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource",
})

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
FIELD_IMMUTABLE = "field is immutable"

# -- names (k8s.io/apimachinery/pkg/util/validation)

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"

_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(_DNS1035_LABEL_FMT)
_QNAME = re.compile(_QNAME_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    # Go joins the examples with "', " + " or " — hence kube's double space.
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len(length: int) -> str:
    return f"must be no more than {length} characters"


_DNS1123_LABEL_MSG = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character",
    _DNS1123_LABEL_FMT, "my-name", "123-abc",
)
_DNS1123_SUBDOMAIN_MSG = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character",
    _DNS1123_SUBDOMAIN_FMT, "example.com",
)
_DNS1035_LABEL_MSG = _regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character",
    _DNS1035_LABEL_FMT, "my-name", "abc-123",
)
_QNAME_MSG = _regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character",
    _QNAME_FMT, "MyName", "my.name", "123-abc",
)
_LABEL_VALUE_MSG = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character",
    _LABEL_VALUE_FMT, "MyValue", "my_value", "12345",
)


def is_dns1123_label(value: str) -> list[str]:
    """Problems with value as an RFC 1123 label (namespace names), kube's wording."""
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(_DNS1123_LABEL_MSG)
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """Problems with value as an RFC 1123 subdomain (object names, API groups)."""
    errs = []
    if len(value) > 253:
        errs.append(_max_len(253))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(_DNS1123_SUBDOMAIN_MSG)
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """Problems with value as an RFC 1035 label (resource names, versions)."""
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(_DNS1035_LABEL_MSG)
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Problems with value as a qualified name (`[prefix/]name`: label keys, finalizers)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name " + _QNAME_MSG
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not _QNAME.fullmatch(name):
        errs.append("name part " + _QNAME_MSG)
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """Problems with value as a label value."""
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def _mask_trailing_dash(name: str) -> str:
    # As apimachinery does (dropping two characters): a generated suffix follows the prefix.
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


NameValidator = Callable[[str, bool], list[str]]


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    """The name rule of custom resources (and generateName prefixes when prefix is True)."""
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    """The name rule of namespaces."""
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def validate_path_segment_name(name: str, prefix: bool) -> list[str]:
    """The weakest name rule (embedded resources): usable as one URL path segment."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


# -- system fields

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATED_BASE = 63 - 5
_random = random.SystemRandom()


def generate_name(base: str) -> str:
    """`<generateName><5 random characters>` as kube's SimpleNameGenerator does."""
    return base[:_MAX_GENERATED_BASE] + "".join(_random.choices(_NAME_ALPHABET, k=5))


def new_uid() -> str:
    """A fresh metadata.uid."""
    return str(uuid.uuid4())


def now() -> str:
    """The current time as metav1.Time serialises it: RFC 3339, UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_time(value: object) -> datetime | None:
    """A metav1.Time string as an aware datetime; None when it is not RFC 3339."""
    if not isinstance(value, str):
        return None
    m = _RFC3339.fullmatch(value)
    if m is None:
        return None
    zone = m.group(8)
    text = value[:19].replace("t", "T") + ("+00:00" if zone in ("Z", "z") else zone)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def ensure_namespace(metadata: dict[str, Any], request_namespace: str, namespaced: bool) -> None:
    """Make metadata.namespace agree with the request namespace, as
    EnsureObjectNamespaceMatchesRequestNamespace does: default it from the URL, clear it for
    cluster-scoped resources, 400 on a mismatch."""
    expected = request_namespace if namespaced else ""
    current = metadata.get("namespace") or ""
    if current == expected:
        return
    if not current:
        metadata["namespace"] = expected
    elif not expected:
        metadata.pop("namespace", None)
    else:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )


# -- labels, annotations, owner references, finalizers


def validate_labels(labels: object, path: str = "metadata.labels") -> list[Cause]:
    """Label keys must be qualified names, values valid label values (path is not keyed)."""
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [field_invalid(path, labels, "must be a map of string keys to string values")]
    causes: list[Cause] = []
    for key, value in labels.items():
        causes.extend(field_invalid(path, key, m) for m in is_qualified_name(key))
        if not isinstance(value, str):
            causes.append(field_invalid(path, value, "must be a string"))
            continue
        causes.extend(field_invalid(path, value, m) for m in is_valid_label_value(value))
    return causes


def validate_annotations(annotations: object, path: str = "metadata.annotations") -> list[Cause]:
    """Annotation keys are qualified names (any case); keys and values total at most 256 KiB."""
    if annotations is None:
        return []
    if not isinstance(annotations, Mapping):
        return [field_invalid(path, annotations, "must be a map of string keys to string values")]
    causes: list[Cause] = []
    total = 0
    for key, value in annotations.items():
        causes.extend(field_invalid(path, key, m) for m in is_qualified_name(key.lower()))
        if not isinstance(value, str):
            causes.append(field_invalid(path, value, "must be a string"))
            continue
        total += len(key.encode()) + len(value.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(field_too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def validate_owner_references(refs: object, path: str = "metadata.ownerReferences") -> list[Cause]:
    if refs is None:
        return []
    if not isinstance(refs, list):
        return [field_invalid(path, refs, "must be a list of owner references")]
    causes: list[Cause] = []
    controller = ""
    for ref in refs:
        if not isinstance(ref, Mapping):
            causes.append(field_invalid(path, ref, "must be an object"))
            continue
        api_version = ref.get("apiVersion") or ""
        version = api_version.rpartition("/")[2] if isinstance(api_version, str) else ""
        if not version:
            causes.append(field_invalid(f"{path}.apiVersion", api_version,
                                        "version must not be empty"))
        for key in ("kind", "name", "uid"):
            if not ref.get(key):
                causes.append(field_invalid(f"{path}.{key}", ref.get(key) or "",
                                            "must not be empty"))
        if api_version == "v1" and ref.get("kind") == "Event":
            causes.append(field_invalid(path, dict(ref),
                                        "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{ref.get('kind')}/{ref.get('name')}"
            if controller:
                causes.append(field_invalid(
                    path, refs,
                    "Only one reference can have Controller set to true. Found \"true\" in "
                    f"references for {controller} and {current}",
                ))
            else:
                controller = current
    return causes


def validate_finalizers(finalizers: object, path: str = "metadata.finalizers") -> list[Cause]:
    if finalizers is None:
        return []
    if not isinstance(finalizers, list):
        return [field_invalid(path, finalizers, "must be a list of strings")]
    causes: list[Cause] = []
    for finalizer in finalizers:
        if not isinstance(finalizer, str):
            causes.append(field_invalid(path, finalizer, "must be a string"))
            continue
        causes.extend(field_invalid(path, finalizer, m) for m in is_qualified_name(finalizer))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        causes.append(field_invalid(
            path, finalizers, "finalizer orphan and foregroundDeletion cannot be both set",
        ))
    return causes


def validate_managed_fields(entries: object, path: str = "metadata.managedFields") -> list[Cause]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        return [field_invalid(path, entries, "must be a list of managed fields entries")]
    causes: list[Cause] = []
    for i, entry in enumerate(entries):
        at = f"{path}[{i}]"
        if not isinstance(entry, Mapping):
            causes.append(field_invalid(at, entry, "must be an object"))
            continue
        operation = entry.get("operation", "")
        if operation not in ("Apply", "Update"):
            causes.append(field_invalid(f"{at}.operation", operation,
                                        "must be `Apply` or `Update`"))
        fields_type = entry.get("fieldsType", "")
        if fields_type != "FieldsV1":
            causes.append(field_invalid(f"{at}.fieldsType", fields_type, "must be `FieldsV1`"))
    return causes


# -- ObjectMeta as a whole


def string_field(metadata: Mapping[str, Any], key: str, path: str,
                 causes: list[Cause]) -> str:
    """metadata[key] when it is a string ("" when absent); a cause at path.key otherwise."""
    value = metadata.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        causes.append(field_invalid(f"{path}.{key}", value, "must be a string"))
        return ""
    return value


def validate_object_meta(metadata: object, namespaced: bool, *, path: str = "metadata",
                         name_rule: NameValidator = name_is_dns_subdomain) -> list[Cause]:
    """ValidateObjectMetaAccessor: name (or generateName), namespace by scope, generation,
    labels, annotations, owner references, finalizers, managed fields."""
    if not isinstance(metadata, Mapping):
        return [field_required(f"{path}.name", "name or generateName is required")]
    causes: list[Cause] = []
    generate = string_field(metadata, "generateName", path, causes)
    if generate:
        causes.extend(field_invalid(f"{path}.generateName", generate, m)
                      for m in name_rule(generate, True))
    name = string_field(metadata, "name", path, causes)
    if not name:
        causes.append(field_required(f"{path}.name", "name or generateName is required"))
    else:
        causes.extend(field_invalid(f"{path}.name", name, m) for m in name_rule(name, False))
    namespace = string_field(metadata, "namespace", path, causes)
    if namespaced:
        if not namespace:
            causes.append(field_required(f"{path}.namespace"))
        else:
            causes.extend(field_invalid(f"{path}.namespace", namespace, m)
                          for m in name_is_dns_label(namespace, False))
    elif namespace:
        causes.append(field_forbidden(f"{path}.namespace", "not allowed on this type"))
    causes.extend(_generation(metadata, path))
    causes.extend(_common(metadata, path))
    causes.extend(validate_finalizers(metadata.get("finalizers"), f"{path}.finalizers"))
    return causes


def _generation(metadata: Mapping[str, Any], path: str) -> list[Cause]:
    generation = metadata.get("generation")
    if generation is None:
        return []
    if not isinstance(generation, int) or isinstance(generation, bool):
        return [field_invalid(f"{path}.generation", generation, "must be an integer")]
    if generation < 0:
        return [field_invalid(f"{path}.generation", generation,
                              "must be greater than or equal to 0")]
    return []


def _common(metadata: Mapping[str, Any], path: str) -> list[Cause]:
    causes = validate_labels(metadata.get("labels"), f"{path}.labels")
    causes.extend(validate_annotations(metadata.get("annotations"), f"{path}.annotations"))
    causes.extend(validate_owner_references(metadata.get("ownerReferences"),
                                            f"{path}.ownerReferences"))
    causes.extend(validate_managed_fields(metadata.get("managedFields"), f"{path}.managedFields"))
    return causes


def validate_object_meta_create(obj: Mapping[str, Any], namespaced: bool) -> list[Cause]:
    """Metadata rules for creating a custom resource (names are DNS-1123 subdomains); call
    after generateName has been turned into a name."""
    return validate_object_meta(obj.get("metadata"), namespaced)


_IMMUTABLE = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
              "deletionGracePeriodSeconds")


def validate_object_meta_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[Cause]:
    """ValidateObjectMetaAccessorUpdate: resourceVersion given, generation not decremented,
    name/namespace/uid/creationTimestamp/deletion fields immutable, no new finalizers while
    deleting, and the create-time rules for labels, annotations, owners and managed fields."""
    new_meta = new.get("metadata")
    old_meta = old.get("metadata") or {}
    if not isinstance(new_meta, Mapping):
        return [field_required("metadata", "")]
    causes: list[Cause] = []
    if old_meta.get("deletionTimestamp"):
        added = [f for f in new_meta.get("finalizers") or () if f not in
                 (old_meta.get("finalizers") or ())]
        if added:
            causes.append(field_forbidden(
                "metadata.finalizers",
                f"no new finalizers can be added if the object is being deleted, found new "
                f"finalizers {errors.go_string_slice(sorted(str(f) for f in added))}",
            ))
    if not new_meta.get("resourceVersion"):
        causes.append(field_invalid("metadata.resourceVersion", 0,
                                    "must be specified for an update"))
    new_generation = new_meta.get("generation") or 0
    old_generation = old_meta.get("generation") or 0
    if isinstance(new_generation, int) and isinstance(old_generation, int) \
            and new_generation < old_generation:
        causes.append(field_invalid("metadata.generation", new_generation,
                                    "must not be decremented"))
    for key in _IMMUTABLE:
        value = new_meta.get(key)
        if (value or None) != (old_meta.get(key) or None):
            bad = "" if value is None and key in ("name", "namespace", "uid") else value
            causes.append(field_invalid(f"metadata.{key}", bad, FIELD_IMMUTABLE))
    causes.extend(_generation(new_meta, "metadata"))
    causes.extend(_common(new_meta, "metadata"))
    causes.extend(validate_finalizers(new_meta.get("finalizers"), "metadata.finalizers"))
    return causes


def prune_object_meta(metadata: dict[str, Any], path: str, unknown: list[str]) -> None:
    """Drop what the typed ObjectMeta would not keep: unknown fields (recorded in unknown as
    `<path>.<field>`) and empty values (omitempty). Mistyped fields stay for validation."""
    for key in [k for k in metadata if k not in STANDARD_FIELDS]:
        unknown.append(f"{path}.{key}")
        del metadata[key]
    for key in [k for k, v in metadata.items() if v is None or v == "" or v == {} or v == []
                or (v == 0 and not isinstance(v, bool) and k == "generation")]:
        del metadata[key]
    refs = metadata.get("ownerReferences")
    if isinstance(refs, list):
        for i, ref in enumerate(refs):
            _drop_unknown(ref, OWNER_REFERENCE_FIELDS, f"{path}.ownerReferences[{i}]", unknown)
    entries = metadata.get("managedFields")
    if isinstance(entries, list):
        for i, entry in enumerate(entries):
            _drop_unknown(entry, MANAGED_FIELDS_ENTRY_FIELDS, f"{path}.managedFields[{i}]", unknown)


def _drop_unknown(obj: object, known: frozenset[str], path: str, unknown: list[str]) -> None:
    if isinstance(obj, dict):
        for key in [k for k in obj if k not in known]:
            unknown.append(f"{path}.{key}")
            del obj[key]


def list_meta(resource_version: str, continue_token: str = "",
              remaining_item_count: int | None = None) -> dict[str, Any]:
    """A ListMeta: only the fields that are set, as kube's JSON omits empty ones."""
    out: dict[str, Any] = {}
    if resource_version:
        out["resourceVersion"] = resource_version
    if continue_token:
        out["continue"] = continue_token
    if remaining_item_count is not None:
        out["remainingItemCount"] = remaining_item_count
    return out
