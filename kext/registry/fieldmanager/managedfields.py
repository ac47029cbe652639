"""`metadata.managedFields`: its entries decoded by manager identity and encoded back in
kube's order, the cap on Update managers, and the 409 an apply conflict answers (cf.
k8s.io/apimachinery pkg/util/managedfields/internal: managedfields.go, buildmanagerinfo.go,
capmanagers.go, stripmeta.go, conflict.go).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kext.api.errors import Cause, StatusError, go_json, go_quote
from kext.registry.fieldmanager.fieldpath import (
    Path,
    fields_to_set,
    iterate_paths,
    path_string,
    set_to_fields,
)

Object = dict[str, Any]

APPLY = "Apply"
UPDATE = "Update"
# Update entries kept before the oldest are merged into one bucket per apiVersion.
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES_MANAGER = "ancient-changes"

# Fields nobody owns (stripMetaManager): exact paths only, children stay owned.
STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    ("f:metadata", "f:name"), ("f:metadata", "f:namespace"),
    ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:selfLink"),
    ("f:metadata", "f:uid"), ("f:metadata", "f:clusterName"),
    ("f:metadata", "f:generation"), ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:resourceVersion"),
})

Identity = tuple[str, str, str, str]  # manager, operation, apiVersion (Update only), subresource


@dataclass
class Entry:
    """One decoded `metadata.managedFields` entry."""

    manager: str
    operation: str
    api_version: str
    fields: set[Path] = field(default_factory=set)
    time: str | None = None
    subresource: str = ""

    @property
    def identity(self) -> Identity:
        # Appliers are one manager whatever version they apply (BuildManagerIdentifier).
        version = self.api_version if self.operation == UPDATE else ""
        return (self.manager, self.operation, version, self.subresource)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                               "apiVersion": self.api_version}
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = set_to_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


Managed = dict[Identity, Entry]


# -- decoding


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _normalize_time(value: str) -> str:
    if not _RFC3339.match(value):
        raise ValueError(f"invalid time {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix(time: str | None) -> float:
    if not time:
        return 0
    try:
        return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0


_ENTRY_STRINGS = ("manager", "operation", "apiVersion", "fieldsType", "subresource")


def raw_entries(metadata: object) -> list[dict[str, Any]] | None:
    """managedFields as Unstructured.GetManagedFields reads it: None when absent or when any
    entry fails to convert; otherwise the entries with times normalized."""
    if not isinstance(metadata, dict):
        return None
    entries = metadata.get("managedFields")
    if not isinstance(entries, list):
        return None
    out: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        converted: dict[str, Any] = {}
        for key in _ENTRY_STRINGS:
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                return None
            converted[key] = value or ""
        time = entry.get("time")
        if time is not None:
            if not isinstance(time, str):
                return None
            try:
                time = _normalize_time(time)
            except ValueError:
                return None
        converted["time"] = time
        converted["fieldsV1"] = entry.get("fieldsV1")
        out.append(converted)
    return out


def is_reset(entries: list[dict[str, Any]] | None) -> bool:
    """Whether entries (as raw_entries returns them) are `managedFields: []` or `[{}]`, which
    ask for managedFields to be cleared."""
    if entries is None:
        return False
    if not entries:
        return True
    entry = entries[0]
    return len(entries) == 1 and entry["time"] is None and entry["fieldsV1"] is None and all(
        entry[key] == "" for key in _ENTRY_STRINGS)


def decode_entries(entries: list[dict[str, Any]]) -> Managed:
    """Entries as raw_entries returns them, by manager identity (DecodeManagedFields);
    ValueError in kube's words."""
    out: Managed = {}
    for i, entry in enumerate(entries):
        operation = entry["operation"]
        if operation not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        if not entry["apiVersion"]:
            raise ValueError("apiVersion must not be empty")
        if entry["fieldsType"] == "":
            raise ValueError(f"missing fieldsType in managed fields entry {i}")
        if entry["fieldsType"] != "FieldsV1":
            raise ValueError(
                f"invalid fieldsType {go_quote(entry['fieldsType'])} in managed fields entry {i}")
        decoded = Entry(
            manager=entry["manager"], operation=operation, api_version=entry["apiVersion"],
            fields=fields_to_set(entry["fieldsV1"]), time=entry["time"],
            subresource=entry["subresource"],
        )
        out[decoded.identity] = decoded
    return out


def decode_object(obj: Object | None) -> Managed:
    """The managedFields of an object (none for None); ValueError when they are invalid."""
    entries = raw_entries(obj.get("metadata")) if obj else None
    return decode_entries(entries) if entries else {}


# -- encoding


def _encode_entries(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Entries as managedFields, in kube's order: Apply before Update, then oldest first,
    then by manager, apiVersion and subresource."""
    ordered = sorted(entries, key=lambda e: (
        e.operation, _unix(e.time), e.manager, e.api_version, e.subresource))
    return [e.to_dict() for e in ordered]


def set_managed(metadata: dict[str, Any], managed: Managed) -> None:
    """Store `managed` as the managedFields of `metadata` (EncodeObjectManagedFields); none
    left removes the field."""
    if managed:
        metadata["managedFields"] = _encode_entries(managed.values())
    else:
        metadata.pop("managedFields", None)


def without_managed_fields(obj: Object) -> Object:
    """`obj` without metadata.managedFields, copied only when it has them."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    out = dict(obj)
    out["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
    return out


def cap_update_managers(managed: Managed, limit: int) -> None:
    """capManagersManager: merge the oldest Update entries, per apiVersion, into one
    `ancient-changes` entry until at most `limit` remain."""
    updaters = [e for e in managed.values() if e.operation == UPDATE]
    if len(updaters) <= limit:
        return
    updaters.sort(key=lambda e: (e.time is not None, _unix(e.time)))
    first_by_version: dict[str, Identity] = {}
    length = len(updaters)
    for entry in updaters:
        if length <= limit:
            break
        bucket: Identity = (ANCIENT_CHANGES_MANAGER, UPDATE, entry.api_version, "")
        if entry.identity == bucket:
            first_by_version.setdefault(entry.api_version, bucket)
            continue
        first = first_by_version.get(entry.api_version)
        if first is None:
            first_by_version[entry.api_version] = entry.identity
            continue
        if bucket not in managed:
            moved = managed.pop(first)
            managed[bucket] = Entry(ANCIENT_CHANGES_MANAGER, UPDATE, entry.api_version,
                                    moved.fields, moved.time)
        target = managed[bucket]
        target.fields = target.fields | entry.fields
        target.time = entry.time
        del managed[entry.identity]
        length -= 1


# -- conflicts


def _identity_json(identity: Identity) -> str:
    manager, operation, version, subresource = identity
    parts = [f'"manager":{go_json(manager)}', f'"operation":{go_json(operation)}']
    if version:
        parts.append(f'"apiVersion":{go_json(version)}')
    if subresource:
        parts.append(f'"subresource":{go_json(subresource)}')
    return "{" + ",".join(parts) + "}"


def _print_manager(identity: Identity) -> str:
    manager, operation, version, subresource = identity
    text = go_quote(manager)
    if subresource:
        text += f" with subresource {go_quote(subresource)}"
    if operation == UPDATE:
        text += f" using {version}"
    return text


def conflict_error(conflicts: dict[Identity, set[Path]]) -> StatusError:
    """The 409 Conflict of an apply that would change fields other managers own
    (NewConflictError), one FieldManagerConflict cause per path."""
    ordered = sorted(conflicts, key=_identity_json)
    pairs = [(identity, path) for identity in ordered for path in iterate_paths(
        conflicts[identity])]
    causes = [Cause("FieldManagerConflict", f"conflict with {_print_manager(identity)}",
                    path_string(path)) for identity, path in pairs]
    if len(pairs) == 1:
        identity, path = pairs[0]
        message = (f"Apply failed with 1 conflict: conflict with {_print_manager(identity)}: "
                   f"{path_string(path)}")
    else:
        lines: list[str] = []
        for identity in ordered:
            lines.append(f"conflicts with {_print_manager(identity)}:")
            lines.extend(f"- {path_string(p)}" for p in iterate_paths(conflicts[identity]))
        message = f"Apply failed with {len(pairs)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, causes=causes)
