"""Content negotiation: which representation (object, Table, PartialObjectMetadata) and which
media type (JSON or YAML) a request asks for (cf. apiserver pkg/endpoints/handlers/negotiation
and RequestScope.AllowsMediaTypeTransform); the Accept header is read by kext.api.accept."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kext.api import errors
from kext.api.accept import JSON, YAML, MediaRange, negotiate_media_type


class Representation(enum.Enum):
    OBJECT = "Object"
    TABLE = "Table"
    PARTIAL_OBJECT_METADATA = "PartialObjectMetadata"


@dataclass(frozen=True)
class Target:
    """What to send back: the representation and whether to encode it as YAML."""

    representation: Representation
    yaml: bool = False
    meta_version: str = "v1"  # meta.k8s.io version of Table / PartialObjectMetadata


# What a resource endpoint serves, in kube's order (`*/*` means JSON).
_OFFERED = (JSON, YAML)
_AS = {
    "Table": Representation.TABLE,
    "PartialObjectMetadata": Representation.PARTIAL_OBJECT_METADATA,
    "PartialObjectMetadataList": Representation.PARTIAL_OBJECT_METADATA,
}


def _target(clause: MediaRange, media_type: str) -> Target | None:
    is_yaml = media_type == YAML
    as_kind = clause.params.get("as")
    if as_kind is None:
        return Target(Representation.OBJECT, yaml=is_yaml)
    representation = _AS.get(as_kind)
    if representation is None or clause.params.get("g") != "meta.k8s.io":
        return None
    version = clause.params.get("v", "v1")
    if version not in ("v1", "v1beta1"):
        return None
    return Target(representation, yaml=is_yaml, meta_version=version)


def negotiate(accept: str | None) -> Target:
    """What a resource request's Accept header asks for: the object, a Table or
    PartialObjectMetadata, as JSON or YAML; 406 if the header admits none of them."""
    target = negotiate_media_type(accept, _OFFERED, _target)
    if target is None:
        raise errors.not_acceptable(
            "only the following media types are accepted: application/json, application/yaml, "
            "application/json;as=Table;v=v1;g=meta.k8s.io, "
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
        )
    return target
