"""The strategy of a declared resource: what the generic store does differently per resource
(cf. apiextensions-apiserver pkg/registry/customresource/strategy.go). One instance per
(resource, version); the status variant only lets `.status` change."""

from __future__ import annotations

import copy
from typing import Any

from kext.api import meta
from kext.api.errors import Cause
from kext.api.resource import ResourceDefinition, Version
from kext.api.schema import Schema
from kext.registry.hooks import Hook, call_hook, load_hook

Object = dict[str, Any]


class Strategy:
    """Create/update rules, validation and defaulting for one version of a resource."""

    def __init__(self, definition: ResourceDefinition, version: Version) -> None:
        self.definition = definition
        self.version = version
        self.namespaced = definition.namespaced
        self.has_status = version.status_subresource
        self.schema = Schema(version.schema)
        self.hooks: dict[str, list[Hook]] = {
            kind: [load_hook(path) for path in paths]
            for kind, paths in definition.hooks.items()
        }

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

    async def validate(self, obj: Object) -> list[Cause]:
        causes = meta.validate_object_meta_create(obj, self.namespaced)
        causes.extend(self.schema.validate(obj))
        causes.extend(await self._hook_validation(obj, None))
        return causes

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

    async def validate_update(self, new: Object, old: Object) -> list[Cause]:
        causes = meta.validate_object_meta_update(new, old)
        causes.extend(self.schema.validate(new))
        causes.extend(await self._hook_validation(new, old))
        return causes

    # -- hooks

    async def run_defaulting(self, obj: Object, old: Object | None) -> None:
        for hook in self.hooks.get("defaulting", ()):
            await call_hook(hook, obj, old)

    async def run_status(self, obj: Object, old: Object | None) -> None:
        for hook in self.hooks.get("status", ()):
            await call_hook(hook, obj, old)

    async def _hook_validation(self, obj: Object, old: Object | None) -> list[Cause]:
        causes: list[Cause] = []
        for hook in self.hooks.get("validation", ()):
            for message in await call_hook(hook, obj, old) or ():
                if isinstance(message, Cause):
                    causes.append(message)
                else:
                    causes.append(Cause("FieldValueInvalid", str(message)))
        return causes


class StatusStrategy(Strategy):
    """Updates through `/status`: only `.status` (and managedFields) may change. It shares
    the main strategy's compiled schema and hooks rather than building them again."""

    def __init__(self, main: Strategy) -> None:
        self.definition = main.definition
        self.version = main.version
        self.namespaced = main.namespaced
        self.has_status = main.has_status
        self.schema = main.schema
        self.hooks = main.hooks

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


def _spec_changed(new: Object, old: Object, *, ignore_status: bool) -> bool:
    skip = {"metadata", "status"} if ignore_status else {"metadata"}
    keys = (set(new) | set(old)) - skip
    return any(new.get(k) != old.get(k) for k in keys)
