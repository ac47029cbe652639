"""The field manager of one served version: server-side apply and the managedFields of every
other write, as kube-apiserver runs them for custom resources (cf. k8s.io/apimachinery
pkg/util/managedfields: fieldmanager.go, internal/structuredmerge.go and the managers wrapped
around it).

`FieldManager.apply` merges an applied configuration into the live object, removes what the
applier stopped applying, and raises kube's 409 on conflicts; `FieldManager.update` records
who changed what on any other write. Both are pure: no I/O, no clock (the caller passes `now`).
"""

from __future__ import annotations

from typing import Any

from kext.api.errors import StatusError, bad_request
from kext.api.resource import ResourceDefinition, Version
from kext.api.schema import Schema
from kext.registry.fieldmanager.fieldpath import Path, prefixes
from kext.registry.fieldmanager.lastapplied import (
    KUBECTL_MANAGER,
    allowed_conflicts,
    sync_annotation,
)
from kext.registry.fieldmanager.managedfields import (
    APPLY,
    MAX_UPDATE_MANAGERS,
    STRIPPED,
    UPDATE,
    Entry,
    Identity,
    Managed,
    cap_update_managers,
    conflict_error,
    decode_entries,
    decode_object,
    is_reset,
    raw_entries,
    set_managed,
    without_managed_fields,
)
from kext.registry.fieldmanager.typed import (
    compare,
    merge,
    remove_unowned,
    resource_atom,
    to_field_set,
    validation_message,
)

Object = dict[str, Any]


def _gvk_string(obj: Object) -> str:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    api_version = api_version if isinstance(api_version, str) else ""
    kind = kind if isinstance(kind, str) else ""
    group, version = "", api_version
    if api_version.count("/") == 1:
        group, version = api_version.split("/")
    elif "/" in api_version:
        version = ""
    return f"{group}/{version}, Kind={kind}"


def _name_string(obj: Object) -> str:
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    namespace = metadata.get("namespace")
    name = metadata.get("name")
    return (f"{namespace if isinstance(namespace, str) else ''}/"
            f"{name if isinstance(name, str) else ''}")


def _go_json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def _own_metadata(obj: Object) -> tuple[Object, dict[str, Any]]:
    """A shallow copy of obj with a metadata dict of its own, safe to change."""
    out = dict(obj)
    metadata = out.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    out["metadata"] = metadata
    return out, metadata


class FieldManager:
    """Server-side apply and managedFields for one served version of a resource, built once
    from that version's compiled schema (kube's NewDefaultCRDFieldManager)."""

    def __init__(self, api_version: str, kind: str, schema: Schema, *,
                 status_subresource: bool = False,
                 max_update_managers: int = MAX_UPDATE_MANAGERS) -> None:
        self.api_version = api_version
        self.kind = kind
        self.status_subresource = status_subresource
        self.max_update_managers = max_update_managers
        self._type = resource_atom(schema)

    @classmethod
    def for_version(cls, definition: ResourceDefinition, version: Version,
                    schema: Schema | None = None) -> FieldManager:
        """The field manager of one served version of a declared resource; `schema` is that
        version's compiled schema when the caller has it, else it is compiled here."""
        return cls(f"{definition.group}/{version.name}", definition.kind,
                   schema if schema is not None else Schema(version.schema),
                   status_subresource=version.status_subresource)

    # Fields a write through this endpoint cannot set, so never owns (GetResetFields).
    def _reset(self, subresource: str) -> frozenset[str]:
        if subresource == "status":
            return frozenset({"f:spec"})
        if self.status_subresource:
            return frozenset({"f:status"})
        return frozenset()

    @staticmethod
    def _filter(paths: set[Path], reset: frozenset[str]) -> set[Path]:
        if not reset:
            return paths
        return {p for p in paths if p[0] not in reset}

    def _empty(self) -> Object:
        return {"apiVersion": self.api_version, "kind": self.kind}

    # -- apply

    def apply(self, live: Object | None, applied: object, manager: str, force: bool, now: str,
              subresource: str = "") -> Object:
        """The object after applying `applied`, the manager's whole intent, to `live` (None
        to create), with managedFields updated. Raises StatusError: 400 when `applied` is not
        this version's kind or carries managedFields, 500 (kube's `failed to create typed
        patch object`) when it does not fit the schema, 409 Conflict when it changes fields
        other managers own and `force` is false. Never mutates its inputs; the result may
        share unchanged subtrees with them."""
        if applied is None:
            applied = {}
        if not isinstance(applied, dict):
            raise bad_request(
                "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: "
                f"cannot unmarshal {_go_json_type(applied)} into Go value of type "
                "map[string]interface {}")
        if applied.get("apiVersion") != self.api_version or applied.get("kind") != self.kind:
            raise bad_request(f"invalid object type: {_gvk_string(applied)}")
        applied_meta = applied.get("metadata")
        if isinstance(applied_meta, dict) and isinstance(applied_meta.get("managedFields"), list):
            raise bad_request("metadata.managedFields must be nil")
        try:
            managed = decode_object(live)
        except ValueError as exc:
            raise StatusError(500, "", f"failed to decode managed fields: {exc}") from None
        invalid = validation_message(applied, self._type)
        if invalid:
            raise StatusError(500, "", (
                f"failed to create typed patch object ({_name_string(applied)}; "
                f"{_gvk_string(applied)}): {invalid}"))

        live_obj = without_managed_fields(live) if live is not None else self._empty()
        reset = self._reset(subresource)
        identity: Identity = (manager, APPLY, "", subresource)
        previous = managed.pop(identity, None)
        applied_set = self._filter(to_field_set(applied, self._type), reset)

        merged = merge(live_obj, applied, self._type)
        if previous is not None and previous.fields:
            owned = set(applied_set)
            for entry in managed.values():
                owned |= entry.fields
            merged = remove_unowned(merged, self._type, previous.fields,
                                    prefixes(previous.fields), owned, prefixes(owned))

        diff = compare(live_obj, merged, self._type)
        changed_paths = self._filter(diff.added | diff.modified, reset)
        removed = self._filter(diff.removed, reset)
        conflicts = {i: e.fields & changed_paths for i, e in managed.items()}
        conflicts = {i: c for i, c in conflicts.items() if c}
        if conflicts and not force:
            allowed = (allowed_conflicts(live_obj, self._type, self.api_version)
                       if manager == KUBECTL_MANAGER else None)
            if allowed is None:
                raise conflict_error(conflicts)
            remaining = {i: c - allowed for i, c in conflicts.items()}
            remaining = {i: c for i, c in remaining.items() if c}
            if remaining:
                raise conflict_error(remaining)
        for i, entry in list(managed.items()):
            entry.fields = entry.fields - conflicts.get(i, set()) - removed
            if not entry.fields:
                del managed[i]
        time = now if diff.changed() else (previous.time if previous else None)
        managed[identity] = Entry(manager, APPLY, self.api_version, applied_set - STRIPPED,
                                  time, subresource)

        result, metadata = _own_metadata(merged)
        if manager == KUBECTL_MANAGER:
            sync_annotation(metadata, applied)
        set_managed(metadata, managed)
        return result

    # -- update

    def update(self, live: Object | None, new: Object, manager: str, now: str,
               subresource: str = "") -> Object:
        """Record a non-apply write (create with live None, PUT, JSON or merge PATCH): the
        fields that changed from `live` to `new` go to `manager` (an Update entry), leaving
        other managers' sets. Returns `new`, changed in place. Never raises: managedFields
        `new` carries are used when valid (so clients may edit them, `[]` or `[{}]` clears
        them), else the live ones are kept; through a subresource only the live ones count."""
        metadata = new.get("metadata")
        if not isinstance(metadata, dict):
            return new
        try:
            live_managed = decode_object(live)
        except ValueError:
            live_managed = {}
        managed: Managed
        if subresource:
            managed = live_managed
        else:
            entries = raw_entries(metadata)
            if is_reset(entries):
                managed = {}
            else:
                try:
                    managed = decode_entries(entries) if entries else {}
                except ValueError:
                    managed = {}
                if not managed:
                    managed = live_managed
        metadata.pop("managedFields", None)
        if not managed and live is not None:
            live_meta = live.get("metadata")
            if isinstance(live_meta, dict) and live_meta.get("uid"):
                # Tracking restarts only with an apply once managedFields are gone.
                return new

        live_obj = without_managed_fields(live) if live is not None else self._empty()
        reset = self._reset(subresource)
        diff = compare(live_obj, new, self._type)
        current = self._filter(diff.added | diff.modified, reset)
        removed = self._filter(diff.removed, reset)
        for i, entry in list(managed.items()):
            entry.fields = entry.fields - current - removed
            if not entry.fields:
                del managed[i]
        if current:
            name = manager or "unknown"
            identity: Identity = (name, UPDATE, self.api_version, subresource)
            previous = managed.get(identity)
            fields = current - STRIPPED
            if previous is not None:
                fields |= previous.fields
            managed[identity] = Entry(name, UPDATE, self.api_version, fields, now, subresource)
        cap_update_managers(managed, self.max_update_managers)
        set_managed(metadata, managed)
        return new
