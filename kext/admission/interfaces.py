"""What admission plugins may ask of the resource a request is for (cf. admission's
ObjectInterfaces, which kube's handlers pass to every plugin): decode an object as the
resource's decoder does (prune unknown fields, apply defaults; kube re-decodes what a mutating
webhook returns), convert it to another served version, and name the equivalent resources
(the same resource at each served version, for matchPolicy Equivalent). The server builds
them from the resource's store; admission imports nothing of the registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kext.admission.attributes import GroupVersionKind, GroupVersionResource
from kext.api.resource import ResourceDefinition

Object = dict[str, Any]


async def _as_is(obj: Object, version: str) -> Object:
    return obj


def _nothing(obj: Object, version: str) -> None:
    return None


@dataclass(frozen=True)
class ObjectInterfaces:
    """decode(obj, version) prunes and defaults obj in place as decoding into version does;
    await convert(obj, version) returns obj as version presents it; equivalents are the
    (resource, kind) of each served version, in the definition's order."""

    equivalents: tuple[tuple[GroupVersionResource, GroupVersionKind], ...] = ()
    decode: Callable[[Object, str], None] = _nothing
    convert: Callable[[Object, str], Awaitable[Object]] = _as_is

    @classmethod
    def of(cls, definition: ResourceDefinition, decode: Callable[[Object, str], None],
           convert: Callable[[Object, str], Awaitable[Object]]) -> ObjectInterfaces:
        return cls(
            tuple((GroupVersionResource(definition.group, v.name, definition.plural),
                   GroupVersionKind(definition.group, v.name, definition.kind))
                  for v in definition.served_versions),
            decode, convert,
        )
