"""Content negotiation: which representation (object, Table, PartialObjectMetadata) and which
media type (JSON or YAML) a request asks for (cf. apiserver pkg/endpoints/handlers/negotiation)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kext.api import errors


class Representation(enum.Enum):
    OBJECT = "Object"
    TABLE = "Table"
    PARTIAL_OBJECT_METADATA = "PartialObjectMetadata"


@dataclass(frozen=True)
class MediaType:
    type: str  # e.g. "application/json"
    params: dict[str, str]


@dataclass(frozen=True)
class Target:
    """What to send back: the representation and whether to encode it as YAML."""

    representation: Representation
    yaml: bool = False
    meta_version: str = "v1"  # meta.k8s.io version of Table / PartialObjectMetadata


OBJECT_JSON = Target(Representation.OBJECT)

_JSON_TYPES = {"application/json", "application/*", "*/*"}
_YAML_TYPES = {"application/yaml"}
_AS = {
    "Table": Representation.TABLE,
    "PartialObjectMetadata": Representation.PARTIAL_OBJECT_METADATA,
    "PartialObjectMetadataList": Representation.PARTIAL_OBJECT_METADATA,
}


def parse_media_types(header: str) -> list[MediaType]:
    """Split an Accept (or Content-Type) header into media types with their parameters."""
    out: list[MediaType] = []
    for clause in header.split(","):
        pieces = [p.strip() for p in clause.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        out.append(MediaType(pieces[0].lower(), params))
    return out


def negotiate(accept: str, *, allow_transforms: bool = True) -> Target:
    """Pick the first acceptable media type of the Accept header; 406 if there is none."""
    if not accept.strip():
        return OBJECT_JSON
    for media in parse_media_types(accept):
        is_yaml = media.type in _YAML_TYPES
        if media.type not in _JSON_TYPES and not is_yaml:
            continue
        as_kind = media.params.get("as")
        if as_kind is None:
            return Target(Representation.OBJECT, yaml=is_yaml)
        if not allow_transforms:
            continue
        representation = _AS.get(as_kind)
        if representation is None or media.params.get("g") != "meta.k8s.io":
            continue
        version = media.params.get("v", "v1")
        if version not in ("v1", "v1beta1"):
            continue
        return Target(representation, yaml=is_yaml, meta_version=version)
    raise errors.not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, "
        "application/json;as=Table;v=v1;g=meta.k8s.io, "
        "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
    )
