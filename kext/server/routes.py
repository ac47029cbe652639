"""The router: non-resource paths (health, discovery, OpenAPI, version) and resource
requests dispatched to the handler of their verb."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kext.admission.chain import Chain
from kext.admission.interfaces import ObjectInterfaces
from kext.admission.plugins import AdmissionPlugins
from kext.admission.policy.definition import ParamKind
from kext.admission.policy.params import ParamResource
from kext.api import errors
from kext.api.resource import Version
from kext.api.selectors import LabelSelector
from kext.registry.store import ListOptions, Selection, Store
from kext.server.handlers import create, delete, get, patch, scale, update
from kext.server.handlers.scope import Scope
from kext.server.healthz import HealthEndpoint
from kext.server.request import (
    AnyResponse,
    APIRequest,
    Response,
    status_response,
    warning_header,
    warning_headers,
)

ResourceHandler = Callable[[APIRequest, Scope], Awaitable[AnyResponse]]
PathHandler = Callable[[APIRequest], Awaitable[AnyResponse]]

VERBS: dict[str, ResourceHandler] = {
    "get": get.get,
    "list": get.list_,
    "create": create.create,
    "update": update.update,
    "patch": patch.patch,
    "delete": delete.delete,
    "deletecollection": delete.delete_collection,
}

# Verbs each subresource path accepts.
SUBRESOURCE_VERBS = {"status": ("get", "update", "patch"), "scale": ("get", "update", "patch")}

# The handlers of /scale: an autoscaling/v1 Scale in and out.
SCALE_VERBS: dict[str, ResourceHandler] = {
    "get": scale.get,
    "update": scale.update,
    "patch": scale.patch,
}


class Router:
    """Routes an authenticated request to its handler."""

    def __init__(self, stores: list[Store], health: list[HealthEndpoint],
                 watch: ResourceHandler, admission: AdmissionPlugins | None = None) -> None:
        self.stores = {(s.group, s.resource): s for s in stores}
        admission = admission or AdmissionPlugins()
        params = StoreParams(stores)
        # each resource's admission chain, its hooks loaded once
        self.chains: dict[tuple[str, str], Chain] = {
            key: admission.chain(s.definition, object_interfaces(s), params)
            for key, s in self.stores.items()
        }
        # the Warning of each deprecated version, worded once
        self.warnings = {
            (s.group, s.resource, v.name): s.definition.deprecation_warning(v)
            for s in stores for v in s.definition.served_versions if v.deprecated
        }
        self.health = {f"/{h.name}": h for h in health}
        self.paths: dict[str, PathHandler] = {}
        # watch is the server's own: it records that server's watch-event metrics
        self.verbs = {**VERBS, "watch": watch}

    def add_path(self, path: str, handler: PathHandler) -> None:
        self.paths[path] = handler

    async def __call__(self, request: APIRequest) -> AnyResponse:
        info = request.info
        if info.is_resource_request:
            return await self._resource(request)
        path = request.path.rstrip("/") or "/"
        handler = self.paths.get(path)
        if handler is not None:
            return await handler(request)
        endpoint, _, check = path.lstrip("/").partition("/")
        health = self.health.get(f"/{endpoint}")
        if health is not None:
            return await health.serve(request, check)
        prefix = next((p for p in self.paths if p.endswith("/*") and path.startswith(p[:-1])),
                      None)
        if prefix is not None:
            return await self.paths[prefix](request)
        raise errors.path_not_found(request.path)

    async def _resource(self, request: APIRequest) -> AnyResponse:
        info = request.info
        store = self.stores.get((info.api_group, info.resource))
        version = store.definition.version(info.api_version) if store else None
        if store is None or version is None:
            raise errors.path_not_found(request.path)
        if info.namespace and not store.namespaced:
            raise errors.path_not_found(request.path)
        verb = info.verb
        if verb == "watch" and request.method != "GET":
            # the /watch/ paths are GET routes only: any other method is go-restful's 405
            raise errors.StatusError(
                405, "MethodNotAllowed",
                "the server does not allow this method on the requested resource")
        if store.namespaced and not info.namespace and verb not in ("list", "watch"):
            # only list and watch span all namespaces (as kube's CustomResource handler)
            raise errors.path_not_found(request.path)
        if verb in ("update", "patch") and not info.name:
            raise errors.bad_request("name must be provided")
        warning = self.warnings.get((store.group, store.resource, version.name))
        if not warning:
            return await self._dispatch(request, store, version)
        # as kube: every request to a deprecated version carries its warning, errors too
        try:
            response = await self._dispatch(request, store, version)
        except errors.StatusError as exc:
            response = status_response(exc)
        response.headers.append(warning_header(warning))
        return response

    async def _dispatch(self, request: APIRequest, store: Store,
                        version: Version) -> AnyResponse:
        info = request.info
        verb = info.verb
        handler = self.verbs.get(verb)
        if info.subresource:
            allowed = SUBRESOURCE_VERBS.get(info.subresource)
            if allowed is None or (info.subresource == "status"
                                   and not version.status_subresource) or (
                    info.subresource == "scale" and version.scale is None):
                raise errors.path_not_found(request.path)
            if verb not in allowed:
                raise errors.method_not_supported(store.group, f"{store.resource}/"
                                                  f"{info.subresource}", verb)
            if info.subresource == "scale":
                handler = SCALE_VERBS[verb]
        if handler is None:
            raise errors.method_not_supported(store.group, store.resource, verb)
        # admission's audit annotations (webhooks', policies') go to the request's audit event
        scope = Scope(store, version, info.namespace, info.name, info.subresource,
                      self.chains[(store.group, store.resource)],
                      audit_annotations=request.annotations)
        try:
            response = await handler(request, scope)
        except errors.StatusError as error:
            if not scope.warnings:
                raise
            # what admission warned about reaches the client with the refusal too (kube's
            # warning recorder writes its headers whatever the answer)
            response = status_response(error)
        if scope.warnings and isinstance(response, Response):
            response.headers.extend(warning_headers(scope.warnings))
        return response


def object_interfaces(store: Store) -> ObjectInterfaces:
    """What admission may ask of a resource, from its store: decoding (pruning and
    defaulting as the strategy's decoder does) and conversion between served versions."""

    def decode(obj: dict[str, Any], version: str) -> None:
        store.strategy(version).prune_and_default(obj)

    return ObjectInterfaces.of(store.definition, decode, store.to_version)


class StoreParams:
    """The params of admission policies, read from the server's own resources: a paramKind
    names a resource by group, served version and kind."""

    def __init__(self, stores: list[Store]) -> None:
        self._stores = {(s.group, s.kind): s for s in stores}

    def resource(self, kind: ParamKind) -> ParamResource | None:
        store = self._stores.get((kind.group, kind.kind))
        if store is None or store.definition.version(kind.version) is None:
            return None
        return _StoreParam(store, kind.version)


class _StoreParam:
    """One resource's objects as params, in one version, from its watch cache: a param by
    name as the cache holds it, else asked again once the cache caught up with etcd (as
    kube's informer lister, then a direct GET); params by selector by a consistent list."""

    def __init__(self, store: Store, version: str) -> None:
        self.store = store
        self.version = version

    @property
    def namespaced(self) -> bool:
        return self.store.namespaced

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        for resource_version in ("0", ""):
            try:
                return await self.store.get(namespace, name, self.version, resource_version)
            except errors.StatusError as error:
                if error.code != 404:
                    raise
        return None

    async def list(self, namespace: str, selector: LabelSelector) -> list[dict[str, Any]]:
        # a consistent list (the cache once it caught up with etcd): no param just written
        # is missed, where a cache read has nothing to fall back on
        found = await self.store.get_list(namespace, self.version, Selection(labels=selector),
                                          ListOptions())
        items: list[dict[str, Any]] = found["items"]
        return items
