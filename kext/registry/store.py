"""The generic store every declared resource reuses (cf. apiserver
pkg/registry/generic/registry/store.go): metadata rules, strategies, dry-run, finalizers and
the translation of storage errors into Status errors. Writes take the request's context and
its admission steps (kext.registry.rest) and call them at kube's points; the store decides no
policy and knows nothing of HTTP or webhooks."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kext.api import errors, meta
from kext.api.errors import Cause
from kext.api.resource import ResourceDefinition, ScaleSubresource
from kext.api.selectors import FieldSelector, LabelSelector, field_set
from kext.registry import scale as scales
from kext.registry.conversion import Converter, new_converter
from kext.registry.fieldmanager import FieldManager
from kext.registry.fieldmanager.managedfields import set_managed
from kext.registry.rest import ADMIT_NOTHING, Admission, RequestContext, ValidateDeleteFunc
from kext.registry.storeerr import MODIFIED, interpret
from kext.registry.strategy import Strategies, Strategy, crd_strategies
from kext.storage import errors as storage_errors
from kext.storage.interface import Interface, ListOptions, Preconditions, WatchEvent, WatchOptions

Object = dict[str, Any]

# Turns the current object (None when absent) into the object the client wants stored.
UpdatedObject = Callable[[Object | None], Awaitable[Object]]
# Turns the current Scale of an object into the Scale the client wants (a PUT's body, a patch
# applied to it).
UpdatedScale = Callable[[Object], Awaitable[Object]]

VALID_PROPAGATION = ("Orphan", "Background", "Foreground")


@dataclass(frozen=True)
class DeleteOptions:
    """What a delete asks beyond the request's context (dry-run is the context's)."""

    preconditions: Preconditions | None = None
    propagation_policy: str = ""
    grace_period_seconds: int | None = None


@dataclass(frozen=True)
class Selection:
    """Label and field selectors of a list, watch or deletecollection."""

    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    @property
    def empty(self) -> bool:
        return self.labels is None and self.fields is None


@dataclass
class Result:
    """An object and the warnings a write produced (sent as Warning headers)."""

    object: Object
    warnings: list[str] = field(default_factory=list)
    deleted: bool = False
    created: bool = False


def resource_root(prefix: str, definition: ResourceDefinition) -> str:
    """The etcd key prefix of a resource: `<prefix>/<group>/<plural>/`."""
    return f"{prefix.rstrip('/')}/{definition.group}/{definition.plural}/"


class Store:
    """CRUD for one declared resource over a storage.Interface, with the resource's
    strategies (the CustomResource ones unless it brings its own) and its converter (None
    conversion unless it brings another): objects are stored in the storage version and
    read and written in any served version."""

    def __init__(self, definition: ResourceDefinition, storage: Interface, prefix: str,
                 strategies: Strategies | None = None,
                 converter: Converter | None = None) -> None:
        self.definition = definition
        self.storage = storage
        self.group = definition.group
        self.resource = definition.plural
        self.kind = definition.kind
        self.namespaced = definition.namespaced
        self._root = resource_root(prefix, definition)
        self._storage_version = definition.storage_version.name
        self.converter = converter if converter is not None else new_converter(definition)
        # where each version keeps its spec replicas, for managedFields through /scale
        self._replicas_paths = {
            definition.api_version(v.name): v.scale.spec_replicas_path
            for v in definition.versions if v.scale is not None
        }
        self.strategies = strategies if strategies is not None else crd_strategies(definition)
        self._field_managers = {
            # the strategy's compiled schema: one compilation per version serves both
            v.name: FieldManager.for_version(definition, v, self.strategies.main[v.name].schema)
            for v in definition.served_versions
        }

    # -- keys and versions

    def key(self, namespace: str, name: str) -> str:
        return f"{self._root}{namespace}/{name}" if self.namespaced else f"{self._root}{name}"

    def prefix(self, namespace: str) -> str:
        return f"{self._root}{namespace}/" if self.namespaced and namespace else self._root

    def strategy(self, version: str, subresource: str = "") -> Strategy:
        return self.strategies.get(version, subresource)

    def _api_version(self, version: str) -> str:
        return f"{self.group}/{version}"

    async def to_version(self, obj: Object, version: str) -> Object:
        """obj as version presents it, through the resource's converter (obj itself when it
        is in that version; 500 when conversion fails)."""
        return await self.converter.convert(obj, version)

    async def _to_storage(self, obj: Object) -> Object:
        return await self.converter.convert(obj, self._storage_version)

    def event_object_now(self, event: WatchEvent, version: str) -> Object | None:
        """A watch event's object in version when that needs no wait (converted before, or
        by None conversion), else None: the watch path's fast case."""
        memo = event.converted.get(version)
        if memo is not None:
            return memo if isinstance(memo, dict) else None
        obj = self.converter.convert_now(event.object, version)
        if obj is not None:
            event.converted[version] = obj
        return obj

    async def event_object(self, event: WatchEvent, version: str) -> Object:
        """A watch event's object in version, converted once per event and version however
        many watchers want it (the event keeps the conversion for the others)."""
        obj = self.event_object_now(event, version)
        if obj is not None:
            return obj
        task = event.converted.get(version)
        if task is None:
            task = asyncio.ensure_future(self.to_version(event.object, version))
            event.converted[version] = task
        # one watcher going away must not cancel the conversion the others wait for
        converted: Object = await asyncio.shield(task)
        return converted

    def _error(self, exc: storage_errors.StorageError, name: str) -> errors.StatusError:
        return interpret(exc, self.group, self.resource, name)

    # -- reads

    async def get(self, namespace: str, name: str, version: str,
                  resource_version: str = "") -> Object:
        try:
            # kube's GET treats an explicit resourceVersion as "not older than".
            obj = await self.storage.get(
                self.key(namespace, name), resource_version=resource_version,
                resource_version_match="NotOlderThan" if resource_version not in ("", "0") else "",
            )
        except storage_errors.StorageError as exc:
            raise self._error(exc, name) from None
        return await self.to_version(obj, version)

    async def get_list(self, namespace: str, version: str, selection: Selection,
                   options: ListOptions) -> Object:
        """A `<Kind>List` of the selected objects."""
        options = ListOptions(
            resource_version=options.resource_version,
            resource_version_match=options.resource_version_match,
            limit=options.limit,
            continue_token=options.continue_token,
            predicate=self.predicate(selection),
        )
        try:
            result = await self.storage.list(self.prefix(namespace), options)
        except storage_errors.StorageError as exc:
            raise self._error(exc, "") from None
        # remainingItemCount only means something beside a continue token
        remaining = result.remaining_item_count if result.continue_token else None
        return {
            "apiVersion": self._api_version(version),
            "kind": self.definition.list_kind,
            "metadata": meta.list_meta(result.resource_version, result.continue_token,
                                       remaining),
            "items": await self.converter.convert_list(result.items, version),
        }

    def predicate(self, selection: Selection) -> Callable[[Object], bool] | None:
        """The storage predicate for a selection (None selects everything)."""
        if selection.empty:
            return None
        labels, fields = selection.labels, selection.fields
        version = self.definition.storage_version
        namespaced = self.namespaced

        def matches(obj: Object) -> bool:
            if labels is not None and not labels.matches(obj["metadata"].get("labels") or {}):
                return False
            return fields is None or fields.matches(field_set(obj, version, namespaced))

        return matches

    def watch(self, namespace: str, resource_version: int | None, selection: Selection, *,
              send_initial_events: bool = False,
              allow_bookmarks: bool = False) -> AsyncGenerator[WatchEvent, None]:
        """Changes after resource_version (0 or None for "": current state as ADDED first),
        with the watch-list initial events and bookmarks as storage.WatchOptions says."""
        events = self.storage.watch(
            self.prefix(namespace), resource_version=resource_version,
            predicate=self.predicate(selection),
            options=WatchOptions(send_initial_events=send_initial_events,
                                 allow_bookmarks=allow_bookmarks),
        )
        return self._status_errors(events)

    async def _status_errors(
        self, events: AsyncGenerator[WatchEvent, None]
    ) -> AsyncGenerator[WatchEvent, None]:
        """The storage's events, its errors turned into Status errors (410 Expired, 504...)."""
        try:
            async for event in events:
                yield event
        except storage_errors.StorageError as exc:
            raise self._error(exc, "") from None
        finally:
            await events.aclose()

    @property
    def cache_revision(self) -> int:
        """The revision the watch cache has reached (0 without a cache)."""
        return self.storage.last_sync_resource_version

    # -- create

    async def create(self, ctx: RequestContext, version: str, obj: Object,
                     admission: Admission = ADMIT_NOTHING, *, applied: bool = False) -> Result:
        """Create obj in ctx.namespace; applied=True when obj is the outcome of a server-side
        apply (its managedFields are already the apply's). In kube's order: decoding (prune,
        default), managedFields, mutating admission, system fields and generateName,
        PrepareForCreate, Validate, Canonicalize, validating admission, storage."""
        strategy = self.strategy(version)
        self._check_type_meta(obj, version)
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise errors.bad_request("metadata must be an object")
        meta.ensure_namespace(metadata, ctx.namespace, self.namespaced)
        _check_create_resource_version(metadata)
        warnings = self._unknown_fields(strategy.prune_and_default(obj), ctx)
        if not applied:
            self._field_managers[version].update(None, obj, ctx.field_manager, meta.now())
        if admission.mutate is not None:
            obj = _mutated(obj, await admission.mutate(obj, None))
            metadata = obj["metadata"]
            meta.ensure_namespace(metadata, ctx.namespace, self.namespaced)
        for key in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(key, None)
        metadata["uid"] = meta.new_uid()
        metadata["creationTimestamp"] = meta.now()
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = meta.generate_name(metadata["generateName"])
        strategy.prepare_for_create(obj)
        self._validate(strategy.validate(obj), metadata.get("name", ""))
        await strategy.canonicalize(obj, None)
        if admission.validate is not None:
            # as kube: validation gets a copy, so it cannot change what is stored
            await admission.validate(copy.deepcopy(obj), None)
        name = metadata["name"]
        obj = await self._to_storage(obj)
        key = self.key(ctx.namespace, name)
        if ctx.dry_run:
            # as kube's DryRunnableStorage: nothing is written, but a taken name is reported
            try:
                await self.storage.get(key)
            except storage_errors.KeyNotFoundError:
                return Result(await self.to_version(obj, version), warnings)
            except storage_errors.StorageError as exc:
                raise self._error(exc, name) from None
            raise errors.already_exists(self.group, self.resource, name)
        try:
            stored = await self.storage.create(key, obj)
        except storage_errors.StorageError as exc:
            raise self._error(exc, name) from None
        return Result(await self.to_version(stored, version), warnings)

    # -- update (PUT and PATCH share it; the caller supplies how the new object is made)

    async def update(self, ctx: RequestContext, name: str, version: str,
                     updated: UpdatedObject, admission: Admission = ADMIT_NOTHING, *,
                     applied: bool = False) -> Result:
        """Replace the object with what updated makes of it (PUT, patches), through
        ctx.subresource; applied=True when updated is a server-side apply (it keeps
        managedFields itself). Each attempt of the guaranteed update runs, in kube's order:
        updated, decoding (prune, default), managedFields, mutating admission, PrepareForUpdate,
        ValidateUpdate, Canonicalize, validating admission; a conflict retries them all."""
        subresource = ctx.subresource
        strategy = self.strategy(version, subresource)
        field_manager = self._field_managers[version]
        warnings: list[str] = []
        finalized = False

        async def try_update(current: Object | None) -> Object:
            nonlocal finalized
            if current is None:
                raise errors.not_found(self.group, self.resource, name)
            old = await self.to_version(current, version)
            new = await updated(copy.deepcopy(old))
            self._check_type_meta(new, version)
            warnings.clear()  # a retried update reports what its last attempt found
            metadata = new.get("metadata")
            if not isinstance(metadata, dict):
                raise errors.bad_request("metadata must be an object")
            meta.ensure_namespace(metadata, ctx.namespace, self.namespaced)
            if metadata.get("name", name) != name:
                raise errors.bad_request(
                    f"the name of the object ({metadata.get('name')}) does not match the "
                    f"name on the URL ({name})"
                )
            metadata["name"] = name
            requested_rv = metadata.get("resourceVersion", "")
            if requested_rv and requested_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(self.group, self.resource, name, MODIFIED)
            warnings.extend(self._unknown_fields(strategy.prune_and_default(new), ctx))
            if not applied:
                field_manager.update(old, new, ctx.field_manager, meta.now(), subresource)
            if admission.mutate is not None:
                new = _mutated(new, await admission.mutate(new, old))
                metadata = new["metadata"]
                meta.ensure_namespace(metadata, ctx.namespace, self.namespaced)
            _keep_system_fields(metadata, old["metadata"])
            strategy.prepare_for_update(new, old)
            self._validate(strategy.validate_update(new, old), name)
            await strategy.canonicalize(new, old)
            if admission.validate is not None:
                await admission.validate(copy.deepcopy(new), copy.deepcopy(old))
            new = await self._to_storage(new)
            finalized = bool(
                new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers")
            )
            if ctx.dry_run:
                raise _DryRun(new)
            return new

        key = self.key(ctx.namespace, name)
        try:
            stored = await self.storage.guaranteed_update(key, try_update)
        except _DryRun as dry:
            return Result(await self.to_version(dry.object, version), warnings)
        except storage_errors.StorageError as exc:
            raise self._error(exc, name) from None
        if finalized:
            # The last finalizer went away on an object being deleted: delete it now.
            deleted = await self._delete_now(key, name)
            return Result(await self.to_version(deleted, version), warnings, deleted=True)
        return Result(await self.to_version(stored, version), warnings)

    # -- server-side apply

    async def apply(self, ctx: RequestContext, name: str, version: str, applied: Object,
                    force: bool, admission: Admission = ADMIT_NOTHING) -> Result:
        """Server-side apply of ctx.field_manager's intent: update when the object exists,
        create it otherwise (not through /status). Conflicts with other managers are 409
        unless force. Admission sees an UPDATE or a CREATE (old None) as the case is."""
        field_manager = self._field_managers[version]
        manager = ctx.field_manager
        subresource = ctx.subresource

        async def apply_to(current: Object | None) -> Object:
            return field_manager.apply(current, applied, manager, force, meta.now(),
                                       subresource)

        for _ in range(2):
            try:
                return await self.update(ctx, name, version, apply_to, admission, applied=True)
            except errors.StatusError as exc:
                if exc.code != 404 or subresource or exc.reason != "NotFound":
                    raise
            try:
                return await self._create_applied(ctx, name, version, applied, force,
                                                  admission)
            except errors.StatusError as exc:
                if exc.reason != "AlreadyExists":
                    raise
                # created concurrently since we looked: apply to that object instead
        raise errors.conflict(self.group, self.resource, name, MODIFIED)

    async def _create_applied(self, ctx: RequestContext, name: str, version: str,
                              applied: Object, force: bool, admission: Admission) -> Result:
        field_manager = self._field_managers[version]
        obj = field_manager.apply(None, applied, ctx.field_manager, force, meta.now())
        metadata = obj.setdefault("metadata", {})
        if metadata.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({metadata.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        metadata["name"] = name
        result = await self.create(ctx, version, obj, admission, applied=True)
        result.created = True
        return result

    # -- the scale subresource (cf. apiextensions' ScaleREST)

    def _scale(self, version: str) -> ScaleSubresource:
        scale = self.definition.version(version)
        if scale is None or scale.scale is None:
            raise errors.path_not_found(f"{self.resource}/scale")
        return scale.scale

    async def get_scale(self, namespace: str, name: str, version: str,
                        resource_version: str = "") -> Object:
        """The object's autoscaling/v1 Scale; 500 when its spec replicas field does not
        exist or a scale field holds the wrong type."""
        scale = self._scale(version)
        obj = await self.get(namespace, name, version, resource_version)
        try:
            scale_obj, found = scales.scale_from_custom_resource(obj, scale)
        except scales.AccessorError as exc:
            raise errors.StatusError(500, "", str(exc)) from None
        if not found:
            raise errors.internal_error(
                f"the spec replicas field {errors.go_quote(scale.spec_replicas_path)} does not "
                "exist")
        return scale_obj

    async def update_scale(self, ctx: RequestContext, name: str, version: str,
                           updated: UpdatedScale, admission: Admission = ADMIT_NOTHING, *,
                           applied: bool = False) -> Result:
        """Update the object through its Scale (ctx.subresource "scale"): updated turns the
        current Scale into the wanted one; then only the spec replicas field of the object
        changes (a resourceVersion on the Scale is the precondition). Admission sees Scales,
        as kube's does: mutation on the Scale before it is applied to the object, validation
        on the Scales of the object about to be stored and of the stored one. applied=True
        when updated is a server-side apply on the Scale (whose managedFields it keeps; they
        are carried back to the object's)."""
        scale = self._scale(version)
        api_version = self._api_version(version)

        async def to_object(current: Object | None) -> Object:
            if current is None:
                raise errors.not_found(self.group, self.resource, name)
            obj = current
            old_scale, found = self._scale_of(obj, scale)
            if not found:
                # signals that the object had no replicas (kube's invalidSpecReplicas)
                old_scale["spec"]["replicas"] = scales.INVALID_SPEC_REPLICAS
            if applied:
                managed = scales.to_subresource(obj, self._replicas_paths)
                set_managed(old_scale["metadata"], managed)
            new_scale = scales.check_scale(await updated(copy.deepcopy(old_scale)))
            sent_name = new_scale["metadata"].get("name")
            if sent_name and sent_name != name:
                raise errors.bad_request(
                    f"the name of the object ({sent_name}) does not match the name on the URL "
                    f"({name})")
            if admission.mutate is not None:
                replaced = await admission.mutate(new_scale, old_scale)
                if replaced is not None:
                    new_scale = scales.check_scale(replaced)
            replicas = scales.spec_replicas(new_scale)
            if replicas == scales.INVALID_SPEC_REPLICAS:
                raise errors.bad_request(
                    f"the spec replicas field {errors.go_quote(scale.spec_replicas_path)} "
                    "cannot be empty")
            scales.set_nested(obj, scale.spec_replicas_path, replicas)
            requested_rv = new_scale["metadata"].get("resourceVersion")
            if requested_rv:
                obj["metadata"]["resourceVersion"] = requested_rv
            if applied:
                scales.to_parent(obj, new_scale, self._replicas_paths, api_version)
            return obj

        validate = None
        if admission.validate is not None:
            check = admission.validate

            async def validate(new: Object, old: Object | None) -> None:
                new_scale, _ = self._scale_of(new, scale)
                old_scale = self._scale_of(old, scale)[0] if old else None
                await check(new_scale, old_scale)

        result = await self.update(ctx, name, version, to_object, Admission(None, validate),
                                   applied=applied)
        result.object, _ = self._scale_of(result.object, scale)
        return result

    @staticmethod
    def _scale_of(obj: Object, scale: ScaleSubresource) -> tuple[Object, bool]:
        """The Scale of an object being written (400, as kube's, when a field is wrong)."""
        try:
            return scales.scale_from_custom_resource(obj, scale)
        except scales.AccessorError as exc:
            raise errors.bad_request(str(exc)) from None

    # -- delete

    async def delete(self, ctx: RequestContext, name: str, version: str,
                     options: DeleteOptions, validate: ValidateDeleteFunc | None = None) -> Result:
        """Delete now, or mark for deletion when finalizers remain (deleted=False). validate
        (delete admission) sees a copy of the object about to be deleted or marked, on the
        attempt that writes it."""
        if options.propagation_policy and options.propagation_policy not in VALID_PROPAGATION:
            raise errors.invalid("meta.k8s.io", "DeleteOptions", "", [Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{options.propagation_policy}": supported values: '
                '"Foreground", "Background", "Orphan"',
                "propagationPolicy",
            )])
        key = self.key(ctx.namespace, name)

        async def check(current: Object) -> None:
            # Runs on the object storage is about to delete (one read, then the txn), after
            # storage checked the preconditions on it.
            if current["metadata"].get("finalizers"):
                raise _Finalizing()
            if validate is not None:
                await validate(await self.to_version(copy.deepcopy(current), version))
            if ctx.dry_run:
                raise _DryRun(current)

        try:
            deleted = await self.storage.delete(key, preconditions=options.preconditions,
                                                validate=check)
        except _Finalizing:
            return await self._mark_deleting(ctx, key, name, version, options, validate)
        except _DryRun as dry:
            return Result(await self.to_version(dry.object, version), deleted=True)
        except storage_errors.StorageError as exc:
            raise self._error(exc, name) from None
        return Result(await self.to_version(deleted, version), deleted=True)

    async def _mark_deleting(self, ctx: RequestContext, key: str, name: str, version: str,
                             options: DeleteOptions,
                             validate: ValidateDeleteFunc | None) -> Result:
        async def mark(current: Object | None) -> Object:
            if current is None:
                raise errors.not_found(self.group, self.resource, name)
            if validate is not None:
                await validate(await self.to_version(copy.deepcopy(current), version))
            metadata = current["metadata"]
            if not metadata.get("deletionTimestamp"):
                metadata["deletionTimestamp"] = meta.now()
                metadata["deletionGracePeriodSeconds"] = 0
                # as rest.BeforeDelete does: controllers see the deletion as a new generation
                metadata["generation"] = metadata.get("generation", 0) + 1
            if ctx.dry_run:
                raise _DryRun(current)
            return current

        try:
            marked = await self.storage.guaranteed_update(
                key, mark, preconditions=options.preconditions
            )
        except _DryRun as dry:
            marked = dry.object
        except storage_errors.StorageError as exc:
            raise self._error(exc, name) from None
        return Result(await self.to_version(marked, version), deleted=False)

    async def _delete_now(self, key: str, name: str) -> Object:
        async def still_deletable(obj: Object) -> None:
            # Finalizers added since we looked keep the object.
            if obj["metadata"].get("finalizers"):
                raise errors.conflict(self.group, self.resource, name, MODIFIED)

        try:
            return await self.storage.delete(key, validate=still_deletable)
        except storage_errors.StorageError as exc:
            raise self._error(exc, name) from None

    async def delete_collection(self, ctx: RequestContext, version: str, selection: Selection,
                                options: DeleteOptions,
                                validate: ValidateDeleteFunc | None = None) -> Object:
        """Delete every selected object in ctx.namespace (validate called for each, as its
        delete runs); returns the list of what was deleted or marked."""
        listed = await self.get_list(ctx.namespace, version, selection, ListOptions())
        items = []
        for item in listed["items"]:
            meta_ = item["metadata"]
            item_ctx = dataclasses.replace(ctx, namespace=meta_.get("namespace", ""))
            try:
                result = await self.delete(item_ctx, meta_["name"], version, options, validate)
            except errors.StatusError as exc:
                if exc.code == 404:  # deleted concurrently: that is what was asked
                    continue
                raise
            items.append(result.object)
        listed["items"] = items
        return listed

    # -- helpers

    def _check_type_meta(self, obj: Object, version: str) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body must be a JSON object")
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if not api_version or not kind:
            raise errors.bad_request(
                "Object 'Kind' is missing in the request body" if not kind
                else "Object 'apiVersion' is missing in the request body"
            )
        if kind != self.kind or api_version != self._api_version(version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({self._api_version(version)})"
                if api_version != self._api_version(version)
                else f"the kind in the data ({kind}) does not match the expected kind ({self.kind})"
            )

    def _unknown_fields(self, unknown: list[str], ctx: RequestContext) -> list[str]:
        if not unknown or ctx.field_validation == "Ignore":
            return []
        messages = [f'unknown field "{path.lstrip(".")}"' for path in unknown]
        if ctx.field_validation == "Strict":
            raise errors.bad_request("strict decoding error: " + ", ".join(messages))
        return messages

    def _validate(self, causes: list[Cause], name: str) -> None:
        if causes:
            raise errors.invalid(self.group, self.kind, name, causes)


class _Finalizing(Exception):
    """Aborts a delete: finalizers remain, so the object is only marked for deletion."""


class _DryRun(Exception):
    """Aborts a guaranteed update after validation when nothing may be persisted."""

    def __init__(self, obj: Object) -> None:
        super().__init__("dry run")
        self.object = obj


def _mutated(obj: Object, result: Object | None) -> Object:
    """The object a mutating admission step leaves: obj changed in place, or its
    replacement (500 when the replacement is no object with metadata)."""
    if result is None:
        return obj
    if not isinstance(result, dict) or not isinstance(result.get("metadata"), dict):
        raise errors.internal_error("mutating admission returned no object with metadata")
    return result


def _keep_system_fields(metadata: dict[str, Any], old: dict[str, Any]) -> None:
    """Fields a client cannot change on update are taken from the stored object (as
    rest.BeforeUpdate does); uid is restored only when left empty, so a changed one is
    reported as an immutable-field error by validation."""
    if not metadata.get("uid"):
        metadata["uid"] = old.get("uid")
    # as rest.BeforeUpdate: changes to the timestamp are ignored, never an error
    metadata["creationTimestamp"] = old.get("creationTimestamp")
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
        if key in old:
            metadata[key] = old[key]
        else:
            metadata.pop(key, None)
    # resourceVersion stays as the client sent it: CustomResources allow no unconditional
    # update, so validation rejects an empty one (patches carry the current one).


def _check_create_resource_version(metadata: dict[str, Any]) -> None:
    """As kube's etcd3 Create: a resourceVersion that parses (ParseUint) to non-zero is
    refused with a 500 of no reason (storage.ErrResourceVersionSetOnCreate, which no error
    interpreter maps); any other is dropped (PrepareObjectForStorage)."""
    rv = metadata.pop("resourceVersion", None)
    if (isinstance(rv, str) and rv.isascii() and rv.isdigit() and len(rv) <= 20
            and 0 < int(rv) < 2**64):
        raise errors.StatusError(
            500, "", "resourceVersion should not be set on objects to be created")
