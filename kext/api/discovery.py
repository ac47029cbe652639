"""Discovery documents, built once from the declared resources.

Mirrors what apiextensions-apiserver serves for CustomResourceDefinitions
(`customresource_discovery_controller.go`) and what k8s.io/apiserver's discovery endpoints
put on the wire:

- legacy: `/apis` (`APIGroupList`), `/apis/<group>` (`APIGroup`) and `/apis/<group>/<version>`
  (`APIResourceList`);
- aggregated: `/apis` as an `apidiscovery.k8s.io/v2` (or `v2beta1`) `APIGroupDiscoveryList`
  when the Accept header asks for it, which is how kubectl and the kube-aggregator read it;
- `/version` (`version.Info`).

`/api` (the core group) is not served by an extension server: it answers 404, which client-go
tolerates. Every document is encoded once into an `EncodedDocument` (bytes, Content-Type and a
strong ETag) so the server only writes bytes and compares ETags.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kext.api.accept import JSON, MediaRange, negotiate_media_type
from kext.api.resource import ResourceDefinition, Version
from kext.api.versions import sort_versions

APIDISCOVERY_GROUP = "apidiscovery.k8s.io"
APIGROUPDISCOVERYLIST = "APIGroupDiscoveryList"

# Verbs apiextensions-apiserver lists for a CRD and for its status subresource, in its order.
RESOURCE_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
SCALE_VERBS = ("get", "patch", "update")
# The kind every `/scale` answers with.
SCALE_KIND = {"group": "autoscaling", "version": "v1", "kind": "Scale"}

# The kube version kext reports in /version: the API level it follows. kubectl warns when its
# own minor version is more than one away from the server's.
KUBE_VERSION = "1.32.0"


class DiscoveryFormat(enum.Enum):
    """The shape of the `/apis` answer chosen from the Accept header."""

    LEGACY = "legacy"
    AGGREGATED_V2 = "v2"
    AGGREGATED_V2BETA1 = "v2beta1"

    @property
    def content_type(self) -> str:
        """The response Content-Type, as k8s.io/apiserver writes it (g, v, as in that order)."""
        if self is DiscoveryFormat.LEGACY:
            return JSON
        return f"{JSON};g={APIDISCOVERY_GROUP};v={self.value};as={APIGROUPDISCOVERYLIST}"


@dataclass(frozen=True)
class EncodedDocument:
    """A document encoded once: the bytes to write, their Content-Type and a strong ETag.

    `etag` is quoted, as kube sends it (`"<uppercase hex sha512 of body>"`); `hash` is the same
    value unquoted, which is what OpenAPI v3 puts in `?hash=`.
    """

    body: bytes
    content_type: str
    etag: str

    @property
    def hash(self) -> str:
        return self.etag[1:-1]

    def matches(self, if_none_match: str | None) -> bool:
        """Whether an If-None-Match header names this document, so the answer is 304."""
        if not if_none_match:
            return False
        for candidate in if_none_match.split(","):
            tag = candidate.strip()
            if tag == "*":
                return True
            # If-None-Match uses the weak comparison (RFC 9110 13.1.2).
            tag = tag.removeprefix("W/")
            if tag == self.etag:
                return True
        return False


def encode(
    document: Mapping[str, Any], content_type: str = JSON, *, sort_keys: bool = False
) -> EncodedDocument:
    """Encode a document as compact JSON with its strong ETag (sha512, like kube)."""
    body = json.dumps(
        document, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys
    ).encode("utf-8")
    return EncodedDocument(body=body, content_type=content_type, etag=etag_for(body))


def etag_for(body: bytes) -> str:
    """The quoted strong ETag kube computes for a discovery or OpenAPI document."""
    return '"' + hashlib.sha512(body).hexdigest().upper() + '"'


# --- versions -----------------------------------------------------------------------------


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """`storageVersionHash`: base64 of the first 8 bytes of sha256("<group>/<version>/<kind>")."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode("ascii")


# --- the declared resources, by group and version -----------------------------------------


def _served(
    resources: Iterable[ResourceDefinition],
) -> dict[str, dict[str, list[tuple[ResourceDefinition, Version]]]]:
    """group -> version -> [(resource, version)], resources sorted by plural."""
    out: dict[str, dict[str, list[tuple[ResourceDefinition, Version]]]] = {}
    for rd in sorted(resources, key=lambda r: (r.group, r.plural)):
        for v in rd.served_versions:
            out.setdefault(rd.group, {}).setdefault(v.name, []).append((rd, v))
    return out


def _storage_hash(rd: ResourceDefinition) -> str:
    storage = next((v for v in rd.versions if v.storage), None)
    return storage_version_hash(rd.group, storage.name, rd.kind) if storage else ""


def _group_versions(group: str, versions: Iterable[str]) -> list[dict[str, str]]:
    return [{"groupVersion": f"{group}/{v}", "version": v} for v in sort_versions(versions)]


def _api_group(group: str, versions: Iterable[str]) -> dict[str, Any]:
    listed = _group_versions(group, versions)
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


# --- legacy discovery -----------------------------------------------------------------------


def api_group_list(resources: Sequence[ResourceDefinition]) -> dict[str, Any]:
    """The legacy `/apis` document: every group with a served version, by name."""
    served = _served(resources)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_api_group(g, served[g]) for g in sorted(served)],
    }


def _api_resource_list(
    group: str, version: str, pairs: Iterable[tuple[ResourceDefinition, Version]]
) -> dict[str, Any]:
    """An `APIResourceList`: each resource followed by its `<plural>/status` and
    `<plural>/scale` entries when it has those subresources, as apiextensions-apiserver lists
    them (the scale one with the autoscaling/v1 Scale kind)."""
    listed: list[dict[str, Any]] = []
    for rd, v in pairs:
        entry: dict[str, Any] = {
            "name": rd.plural,
            "singularName": rd.singular,
            "namespaced": rd.namespaced,
            "kind": rd.kind,
            "verbs": list(RESOURCE_VERBS),
        }
        if rd.short_names:
            entry["shortNames"] = list(rd.short_names)
        if rd.categories:
            entry["categories"] = list(rd.categories)
        storage_hash = _storage_hash(rd)
        if storage_hash:
            entry["storageVersionHash"] = storage_hash
        listed.append(entry)
        if v.status_subresource:
            listed.append(
                {
                    "name": f"{rd.plural}/status",
                    "singularName": "",
                    "namespaced": rd.namespaced,
                    "kind": rd.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
        if v.scale is not None:
            listed.append(
                {
                    "name": f"{rd.plural}/scale",
                    "singularName": "",
                    "namespaced": rd.namespaced,
                    **SCALE_KIND,
                    "verbs": list(SCALE_VERBS),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": listed,
    }


# --- aggregated discovery -------------------------------------------------------------------


def _resource_discovery(rd: ResourceDefinition, v: Version) -> dict[str, Any]:
    response_kind = {"group": rd.group, "version": v.name, "kind": rd.kind}
    out: dict[str, Any] = {
        "resource": rd.plural,
        "responseKind": response_kind,
        "scope": "Namespaced" if rd.namespaced else "Cluster",
        "singularResource": rd.singular,
        "verbs": list(RESOURCE_VERBS),
    }
    if rd.short_names:
        out["shortNames"] = list(rd.short_names)
    if rd.categories:
        out["categories"] = list(rd.categories)
    subresources = []
    if v.status_subresource:
        subresources.append(
            {
                "subresource": "status",
                "responseKind": dict(response_kind),
                "verbs": list(STATUS_VERBS),
            }
        )
    if v.scale is not None:
        subresources.append(
            {"subresource": "scale", "responseKind": dict(SCALE_KIND), "verbs": list(SCALE_VERBS)}
        )
    if subresources:
        out["subresources"] = subresources
    return out


def aggregated_discovery(
    resources: Sequence[ResourceDefinition], fmt: DiscoveryFormat = DiscoveryFormat.AGGREGATED_V2
) -> dict[str, Any]:
    """The aggregated `/apis` document (`APIGroupDiscoveryList`), in v2 or v2beta1.

    Groups by name (all CRD groups share one priority), versions by kube priority, resources
    by name, every version `freshness: Current`.
    """
    if fmt is DiscoveryFormat.LEGACY:
        raise ValueError("aggregated_discovery needs an aggregated format")
    served = _served(resources)
    items = []
    for group in sorted(served):
        versions = [
            {
                "version": name,
                "resources": [_resource_discovery(rd, v) for rd, v in served[group][name]],
                "freshness": "Current",
            }
            for name in sort_versions(served[group])
        ]
        items.append({"metadata": {"name": group}, "versions": versions})
    return {
        "kind": APIGROUPDISCOVERYLIST,
        "apiVersion": f"{APIDISCOVERY_GROUP}/{fmt.value}",
        "metadata": {},
        "items": items,
    }


# --- /version -------------------------------------------------------------------------------


def version_info(
    kext_version: str,
    *,
    kube_version: str = KUBE_VERSION,
    git_commit: str = "",
    git_tree_state: str = "",
    build_date: str = "",
) -> dict[str, str]:
    """The `/version` document (`version.Info`).

    gitVersion is the kube version kext follows with kext's own version as semver build
    metadata, k3s-style: `v1.32.0+kext.0.1.0`. It parses as semver, so kubectl's version-skew
    check compares against 1.32, and `kubectl version` still shows it is kext.
    """
    major, minor, *_ = kube_version.split(".")
    build = re.sub(r"[^0-9A-Za-z.-]+", "-", kext_version).strip(".-") or "unknown"
    build = re.sub(r"\.{2,}", ".", build)
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{kube_version}+kext.{build}",
        "gitCommit": git_commit,
        "gitTreeState": git_tree_state,
        "buildDate": build_date or "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{platform.system().lower()}/{_arch()}",
    }


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


# --- Accept negotiation ---------------------------------------------------------------------


# The parameters a discovery clause may carry; kext passes over a clause with any other one
# (kube instead ignores parameters it does not know, e.g. charset or profile).
_KNOWN_PARAMS = {"g", "v", "as", "pretty", "stream"}
_AGGREGATED_VERSIONS = {"v2": DiscoveryFormat.AGGREGATED_V2,
                        "v2beta1": DiscoveryFormat.AGGREGATED_V2BETA1}


def negotiate_discovery(accept: str | None, *, aggregated: bool = True) -> DiscoveryFormat | None:
    """The discovery format to answer with, or None for 406 Not Acceptable.

    Only JSON is served. `aggregated` is True for `/apis` (the one path that serves the
    aggregated document); for `/apis/<group>` and `/apis/<group>/<version>` a clause asking for
    the aggregated kind is not acceptable, as in kube.
    """

    def choose(clause: MediaRange, media_type: str) -> DiscoveryFormat | None:
        params = clause.params
        if not set(params) <= _KNOWN_PARAMS:
            return None
        g, v, as_ = params.get("g"), params.get("v"), params.get("as")
        if g is None and v is None and as_ is None:
            return DiscoveryFormat.LEGACY
        if aggregated and g == APIDISCOVERY_GROUP and as_ == APIGROUPDISCOVERYLIST:
            return _AGGREGATED_VERSIONS.get(v or "")
        return None

    return negotiate_media_type(accept, (JSON,), choose)


# --- everything, encoded once ---------------------------------------------------------------


class DiscoveryDocuments:
    """Every discovery document of a server, encoded once at start-up.

    The server picks one by path and Accept header, sets Content-Type and ETag from it, answers
    304 when `matches(If-None-Match)`, and otherwise writes `body`.
    """

    def __init__(
        self,
        resources: Sequence[ResourceDefinition],
        kext_version: str = "0.0.0",
        *,
        kube_version: str = KUBE_VERSION,
    ) -> None:
        self.group_list = encode(api_group_list(resources))
        self.aggregated = {
            fmt: encode(aggregated_discovery(resources, fmt), fmt.content_type)
            for fmt in (DiscoveryFormat.AGGREGATED_V2, DiscoveryFormat.AGGREGATED_V2BETA1)
        }
        self.groups: dict[str, EncodedDocument] = {}
        self.resource_lists: dict[tuple[str, str], EncodedDocument] = {}
        for group, versions in _served(resources).items():
            self.groups[group] = encode(
                {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}
            )
            for version, pairs in versions.items():
                self.resource_lists[(group, version)] = encode(
                    _api_resource_list(group, version, pairs)
                )
        self.version = encode(version_info(kext_version, kube_version=kube_version))

    def apis(self, accept: str | None) -> EncodedDocument | None:
        """The `/apis` answer for an Accept header; None means 406."""
        fmt = negotiate_discovery(accept)
        if fmt is None:
            return None
        if fmt is DiscoveryFormat.LEGACY:
            return self.group_list
        return self.aggregated[fmt]

    def group(self, group: str) -> EncodedDocument | None:
        """The `/apis/<group>` answer; None means 404."""
        return self.groups.get(group)

    def resource_list(self, group: str, version: str) -> EncodedDocument | None:
        """The `/apis/<group>/<version>` answer; None means 404."""
        return self.resource_lists.get((group, version))
