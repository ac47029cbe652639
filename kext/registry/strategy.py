"""The strategy of a declared resource: what the generic store does differently per resource
(cf. apiextensions-apiserver pkg/registry/customresource/strategy.go). One instance per
(resource, version); the status variant only lets `.status` change, the scale variant only the
spec replicas field. A resource may bring its own strategies to the Store; `crd_strategies`
builds the CustomResource ones."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kext.api import errors, meta
from kext.api.errors import Cause
from kext.api.resource import ResourceDefinition, ScaleSubresource, Version
from kext.api.schema import Schema
from kext.registry import scale as scale_fields

Object = dict[str, Any]

# A resource's own code computing derived fields (its `kext.io/hooks` status hooks): called
# with the object about to be stored and the stored one (None on create), it changes the
# object in place; it may be a coroutine function.
StatusHook = Callable[[Object, Object | None], Any]


class Strategy:
    """Create/update rules, validation and defaulting for one version of a resource."""

    def __init__(self, definition: ResourceDefinition, version: Version,
                 status_hooks: Sequence[StatusHook] = ()) -> None:
        self.definition = definition
        self.version = version
        self.namespaced = definition.namespaced
        self.has_status = version.status_subresource
        # compiled once, when the CRD was parsed (rules included)
        self.schema = version.compiled or Schema(version.schema)
        self.status_hooks = tuple(status_hooks)

    # -- decoding: what the apiextensions decoder does to every incoming object

    def prune_and_default(self, obj: Object) -> list[str]:
        """Drop fields the schema does not know and apply defaults; returns the pruned paths."""
        unknown = self.schema.prune(obj)
        self.schema.default(obj)
        return unknown

    # -- create

    def prepare_for_create(self, obj: Object) -> None:
        """Reset what a client may not set on create (status when it is a subresource)."""
        if self.has_status:
            obj.pop("status", None)
        obj["metadata"]["generation"] = 1

    def validate(self, obj: Object) -> list[Cause]:
        causes = meta.validate_object_meta_create(obj, self.namespaced)
        causes.extend(self.schema.validate(obj))
        causes.extend(self._scale_causes(obj))
        return causes

    def _scale_causes(self, obj: Object) -> list[Cause]:
        """With a scale subresource, its fields must hold what a Scale can show (kube's
        ValidateScaleSpec and ValidateScaleStatus, on every write)."""
        scale = self.version.scale
        if scale is None:
            return []
        return scale_fields.validate_scale_fields(obj, scale)

    # -- update

    def prepare_for_update(self, new: Object, old: Object) -> None:
        """Keep status when it is a subresource; bump generation when anything but metadata
        and status changed."""
        if self.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        new["metadata"]["generation"] = old["metadata"].get("generation", 1)
        if _spec_changed(new, old, ignore_status=self.has_status):
            new["metadata"]["generation"] += 1

    def validate_update(self, new: Object, old: Object) -> list[Cause]:
        causes = meta.validate_object_meta_update(new, old)
        causes.extend(self.schema.validate(new, old))  # old: transition rules, ratcheting
        causes.extend(self._scale_causes(new))
        return causes

    # -- after validation

    async def canonicalize(self, obj: Object, old: Object | None) -> None:
        """Runs once validation passed, before validating admission and storage (kube's
        Canonicalize): the resource's status hooks compute derived fields here, after
        PrepareFor* reset what a client may not set, so what they compute is kept."""
        for hook in self.status_hooks:
            result = hook(obj, old)
            if inspect.isawaitable(result):
                await result


class StatusStrategy(Strategy):
    """Updates through `/status`: only `.status` (and managedFields) may change. It shares
    the main strategy's compiled schema and status hooks rather than building them again."""

    def __init__(self, main: Strategy) -> None:
        self.definition = main.definition
        self.version = main.version
        self.namespaced = main.namespaced
        self.has_status = main.has_status
        self.schema = main.schema
        self.status_hooks = main.status_hooks

    def prepare_for_update(self, new: Object, old: Object) -> None:
        status = new.get("status")
        managed = new.get("metadata", {}).get("managedFields")
        new.clear()
        new.update(copy.deepcopy(old))
        if status is None:
            new.pop("status", None)
        else:
            new["status"] = status
        if managed is not None:
            new["metadata"]["managedFields"] = managed


class ScaleStrategy(Strategy):
    """Updates through `/scale` (cf. kube's ScaleREST, which updates the main object through
    the main strategy after copying only the replicas into it): of what a write brings, only
    the spec replicas field, managedFields and the resourceVersion precondition are kept;
    everything else is the stored object's. Then the main strategy's rules apply (status
    kept, generation bumped: the spec changed). Shares the main strategy's schema and hooks."""

    def __init__(self, main: Strategy, scale: ScaleSubresource) -> None:
        self.definition = main.definition
        self.version = main.version
        self.namespaced = main.namespaced
        self.has_status = main.has_status
        self.schema = main.schema
        self.status_hooks = main.status_hooks
        self.scale = scale

    def prepare_for_update(self, new: Object, old: Object) -> None:
        found, replicas = scale_fields.nested(new, self.scale.spec_replicas_path)
        metadata = new.get("metadata", {})
        managed = metadata.get("managedFields")
        resource_version = metadata.get("resourceVersion")
        new.clear()
        new.update(copy.deepcopy(old))
        if found:
            scale_fields.set_nested(new, self.scale.spec_replicas_path, replicas)
        if managed is not None:
            new["metadata"]["managedFields"] = managed
        if resource_version:
            new["metadata"]["resourceVersion"] = resource_version
        super().prepare_for_update(new, old)


class Strategies:
    """The strategies of one resource: one per served version, and the `/status` and
    `/scale` ones of each version with those subresources."""

    def __init__(self, main: Mapping[str, Strategy], status: Mapping[str, Strategy],
                 scale: Mapping[str, Strategy] | None = None) -> None:
        self.main = dict(main)
        self.status = dict(status)
        self.scale = dict(scale or {})

    def get(self, version: str, subresource: str = "") -> Strategy:
        """The strategy of a write to version (through subresource); 404 for a `/status` or
        `/scale` the version does not have."""
        if subresource in ("status", "scale"):
            strategy = (self.status if subresource == "status" else self.scale).get(version)
            if strategy is None:
                raise errors.path_not_found(
                    f"{self.main[version].definition.plural}/{subresource}")
            return strategy
        return self.main[version]


def crd_strategies(definition: ResourceDefinition,
                   status_hooks: Sequence[StatusHook] = ()) -> Strategies:
    """The CustomResource strategies of a declared resource; status_hooks are its own code
    computing derived fields (loaded by the caller: the registry imports no user code)."""
    main = {v.name: Strategy(definition, v, status_hooks) for v in definition.served_versions}
    status = {v.name: StatusStrategy(main[v.name])
              for v in definition.served_versions if v.status_subresource}
    scale = {v.name: ScaleStrategy(main[v.name], v.scale)
             for v in definition.served_versions if v.scale is not None}
    return Strategies(main, status, scale)


def _spec_changed(new: Object, old: Object, *, ignore_status: bool) -> bool:
    skip = {"metadata", "status"} if ignore_status else {"metadata"}
    keys = (set(new) | set(old)) - skip
    return any(new.get(k) != old.get(k) for k in keys)
