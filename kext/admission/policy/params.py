"""The params of a binding (cf. apiserver's policy/generic CollectParams): the objects of the
policy's paramKind that the binding's paramRef names, read from kext's own resources.

kext serves the params itself: a `ParamSource` (the server's stores, kext.server.routes'
StoreParams) finds the resource of a paramKind, and reads its objects from the watch cache,
asking storage once more for a name the cache does not hold yet (as kube's informer lister,
then a direct GET).
"""

from __future__ import annotations

from typing import Any, Protocol

from kext.admission.policy.definition import ParamKind, ParamRef
from kext.api.selectors import LabelSelector

Object = dict[str, Any]


class ParamResource(Protocol):
    """The resource a paramKind names, in the paramKind's version."""

    @property
    def namespaced(self) -> bool: ...

    async def get(self, namespace: str, name: str) -> Object | None:
        """The object called name (in namespace), or None when there is none."""
        ...

    async def list(self, namespace: str, selector: LabelSelector) -> list[Object]:
        """The objects selector selects (in namespace; every one when "")."""
        ...


class ParamSource(Protocol):
    """Where the resources of paramKinds are found."""

    def resource(self, kind: ParamKind) -> ParamResource | None:
        """The served resource of kind at its version, or None when kext serves none."""
        ...


class NoParams:
    """A ParamSource without resources (admission without a server's stores)."""

    def resource(self, kind: ParamKind) -> ParamResource | None:
        return None


class ParamError(Exception):
    """The params cannot be collected: a configuration error of the binding (kube's text)."""


async def collect_params(kind: ParamKind | None, resource: ParamResource | None,
                         ref: ParamRef | None, namespace: str) -> list[Object | None]:
    """The params to evaluate a binding with, for a request in namespace ("" for a
    cluster-scoped resource): [None] when the policy or the binding uses none; [] when none
    was found and the binding's parameterNotFoundAction is Allow; ParamError otherwise."""
    if kind is None or ref is None:
        return [None]
    if resource is None:
        raise ParamError(f"paramKind kind `{kind}` not known")
    params_namespace = ""
    if resource.namespaced:
        params_namespace = ref.namespace or namespace
        if not params_namespace:
            raise ParamError("cannot use namespaced paramRef in policy binding that matches "
                             "cluster-scoped resources")
    elif ref.namespace:
        raise ParamError("paramRef.namespace must not be provided for a cluster-scoped "
                         "`paramKind`")
    params: list[Object | None]
    if ref.name:
        found = await resource.get(params_namespace, ref.name)
        params = [found] if found is not None else []
    else:
        params = list(await resource.list(params_namespace, ref.selector or LabelSelector()))
    if not params and ref.parameter_not_found_action == "Deny":
        raise ParamError("no params found for policy binding with `Deny` "
                         "parameterNotFoundAction")
    return params
