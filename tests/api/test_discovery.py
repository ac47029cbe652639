"""Discovery documents as clients read them: legacy, aggregated (v2, v2beta1) and /version."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

import pytest

from kext.api import discovery
from kext.api.discovery import DiscoveryDocuments, DiscoveryFormat, negotiate_discovery
from kext.api.resource import ResourceDefinition, ScaleSubresource, Version

GROUP = "example.kext.io"
SCHEMA = {"type": "object", "properties": {"spec": {"type": "object"}}}

# What client-go's discovery client and the kube-aggregator send for /apis.
CLIENT_GO_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
AGGREGATOR_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
)


def version(
    name: str, *, served: bool = True, storage: bool = False, status: bool = True
) -> Version:
    return Version(
        name=name, served=served, storage=storage, schema=SCHEMA, status_subresource=status
    )


def widgets(*versions: Version) -> ResourceDefinition:
    return ResourceDefinition(
        group=GROUP,
        plural="widgets",
        singular="widget",
        kind="Widget",
        list_kind="WidgetList",
        namespaced=True,
        versions=versions or (version("v1alpha1", storage=True),),
        short_names=("wd",),
        categories=("all", "kext"),
    )


def gadgets() -> ResourceDefinition:
    return ResourceDefinition(
        group=GROUP,
        plural="gadgets",
        singular="gadget",
        kind="Gadget",
        list_kind="GadgetList",
        namespaced=False,
        versions=(version("v1alpha1", storage=True, status=False),),
    )


def group_document(resources: list[ResourceDefinition], group: str) -> dict[str, Any] | None:
    """The `/apis/<group>` document as served (decoded), or None for 404."""
    doc = DiscoveryDocuments(resources).group(group)
    return None if doc is None else json.loads(doc.body)


def resource_list_document(
    resources: list[ResourceDefinition], group: str, version: str
) -> dict[str, Any] | None:
    """The `/apis/<group>/<version>` document as served (decoded), or None for 404."""
    doc = DiscoveryDocuments(resources).resource_list(group, version)
    return None if doc is None else json.loads(doc.body)


def deserialize(
    document: dict[str, Any], model: str, content_type: str = "application/json"
) -> Any:
    """Read a document through the official Python client's models (required fields checked)."""
    kubernetes = pytest.importorskip("kubernetes")
    return kubernetes.client.ApiClient().deserialize(json.dumps(document), model, content_type)


# --- versions and hashes ----------------------------------------------------------------------


def test_storage_version_hash_matches_kube() -> None:
    # the value kube-apiserver lists for apps/v1 deployments
    assert discovery.storage_version_hash("apps", "v1", "Deployment") == "8aSe+NMegvE="


def test_versions_are_ordered_by_kube_priority() -> None:
    names = ["v1alpha1", "foo", "v1", "v2beta1", "v1beta2", "bar", "v10", "v1beta1", "v2"]
    assert discovery.sort_versions(names) == [
        "v10",
        "v2",
        "v1",
        "v2beta1",
        "v1beta2",
        "v1beta1",
        "v1alpha1",
        "bar",
        "foo",
    ]


# --- legacy discovery -------------------------------------------------------------------------


def test_group_list_prefers_highest_priority_version_not_storage_version() -> None:
    rd = widgets(version("v1alpha1", storage=True), version("v1beta1"), version("v1", served=False))
    doc = discovery.api_group_list([rd])
    assert doc["kind"] == "APIGroupList"
    assert doc["apiVersion"] == "v1"
    (group,) = doc["groups"]
    assert group["name"] == GROUP
    assert group["versions"] == [
        {"groupVersion": f"{GROUP}/v1beta1", "version": "v1beta1"},
        {"groupVersion": f"{GROUP}/v1alpha1", "version": "v1alpha1"},
    ]
    assert group["preferredVersion"] == {"groupVersion": f"{GROUP}/v1beta1", "version": "v1beta1"}
    parsed = deserialize(doc, "V1APIGroupList")
    assert parsed.groups[0].preferred_version.version == "v1beta1"


def test_group_and_resource_list_documents() -> None:
    resources = [widgets(), gadgets()]
    group = group_document(resources, GROUP)
    assert group is not None
    assert group["kind"] == "APIGroup"
    assert deserialize(group, "V1APIGroup").name == GROUP

    doc = resource_list_document(resources, GROUP, "v1alpha1")
    assert doc is not None
    assert doc["kind"] == "APIResourceList"
    assert doc["groupVersion"] == f"{GROUP}/v1alpha1"
    by_name = {r["name"]: r for r in doc["resources"]}
    assert list(by_name) == ["gadgets", "widgets", "widgets/status"]
    w = by_name["widgets"]
    assert w["singularName"] == "widget"
    assert w["namespaced"] is True
    assert w["kind"] == "Widget"
    assert w["verbs"] == [
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "create",
        "update",
        "watch",
    ]
    assert w["shortNames"] == ["wd"]
    assert w["categories"] == ["all", "kext"]
    assert w["storageVersionHash"] == discovery.storage_version_hash(GROUP, "v1alpha1", "Widget")
    assert by_name["widgets/status"] == {
        "name": "widgets/status",
        "singularName": "",
        "namespaced": True,
        "kind": "Widget",
        "verbs": ["get", "patch", "update"],
    }
    g = by_name["gadgets"]
    assert g["namespaced"] is False
    assert "shortNames" not in g and "categories" not in g
    parsed = deserialize(doc, "V1APIResourceList")
    assert [r.name for r in parsed.resources] == ["gadgets", "widgets", "widgets/status"]


def test_storage_version_hash_is_the_storage_versions_in_every_served_version() -> None:
    rd = widgets(version("v1alpha1"), version("v1", storage=True))
    expected = discovery.storage_version_hash(GROUP, "v1", "Widget")
    for v in ("v1alpha1", "v1"):
        doc = resource_list_document([rd], GROUP, v)
        assert doc is not None
        assert doc["resources"][0]["storageVersionHash"] == expected


def test_unserved_versions_and_groups_are_not_found() -> None:
    rd = widgets(version("v1alpha1", storage=True), version("v1", served=False))
    assert resource_list_document([rd], GROUP, "v1") is None
    assert resource_list_document([rd], "other.io", "v1alpha1") is None
    assert group_document([rd], "other.io") is None
    hidden = widgets(version("v1", served=False, storage=True))
    assert discovery.api_group_list([hidden])["groups"] == []
    assert discovery.aggregated_discovery([hidden])["items"] == []


def test_no_status_entry_without_the_status_subresource() -> None:
    rd = widgets(version("v1alpha1", storage=True, status=False))
    doc = resource_list_document([rd], GROUP, "v1alpha1")
    assert doc is not None
    assert [r["name"] for r in doc["resources"]] == ["widgets"]
    (resource,) = discovery.aggregated_discovery([rd])["items"][0]["versions"][0]["resources"]
    assert "subresources" not in resource


def test_the_scale_subresource_is_listed_with_the_scale_kind() -> None:
    scaled = dataclasses.replace(version("v1alpha1", storage=True),
                                 scale=ScaleSubresource(".spec.size", ".status.size"))
    rd = widgets(scaled)
    doc = resource_list_document([rd], GROUP, "v1alpha1")
    assert doc is not None
    assert [r["name"] for r in doc["resources"]] == ["widgets", "widgets/status", "widgets/scale"]
    assert doc["resources"][2] == {
        "name": "widgets/scale", "singularName": "", "namespaced": True,
        "group": "autoscaling", "version": "v1", "kind": "Scale",
        "verbs": ["get", "patch", "update"]}
    parsed = deserialize(doc, "V1APIResourceList")
    assert parsed.resources[2].group == "autoscaling"
    (resource,) = discovery.aggregated_discovery([rd])["items"][0]["versions"][0]["resources"]
    assert resource["subresources"][1] == {
        "subresource": "scale",
        "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "verbs": ["get", "patch", "update"]}


# --- aggregated discovery ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "model"),
    [
        (DiscoveryFormat.AGGREGATED_V2, "V2APIGroupDiscoveryList"),
        (DiscoveryFormat.AGGREGATED_V2BETA1, "V2beta1APIGroupDiscoveryList"),
    ],
)
def test_aggregated_discovery_document(fmt: DiscoveryFormat, model: str) -> None:
    rd = widgets(version("v1alpha1", storage=True), version("v1"))
    doc = discovery.aggregated_discovery([rd, gadgets()], fmt)
    assert doc["kind"] == "APIGroupDiscoveryList"
    assert doc["apiVersion"] == f"apidiscovery.k8s.io/{fmt.value}"
    (group,) = doc["items"]
    assert group["metadata"] == {"name": GROUP}
    assert [v["version"] for v in group["versions"]] == ["v1", "v1alpha1"]
    assert all(v["freshness"] == "Current" for v in group["versions"])
    alpha = group["versions"][1]
    assert [r["resource"] for r in alpha["resources"]] == ["gadgets", "widgets"]
    gadget, widget = alpha["resources"]
    assert gadget["scope"] == "Cluster"
    assert widget == {
        "resource": "widgets",
        "responseKind": {"group": GROUP, "version": "v1alpha1", "kind": "Widget"},
        "scope": "Namespaced",
        "singularResource": "widget",
        "verbs": [
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "create",
            "update",
            "watch",
        ],
        "shortNames": ["wd"],
        "categories": ["all", "kext"],
        "subresources": [
            {
                "subresource": "status",
                "responseKind": {"group": GROUP, "version": "v1alpha1", "kind": "Widget"},
                "verbs": ["get", "patch", "update"],
            }
        ],
    }
    parsed = deserialize(doc, model, fmt.content_type)
    assert parsed.items[0].versions[0].resources[0].response_kind.kind == "Widget"


def test_aggregated_content_types_are_kubes() -> None:
    assert (
        DiscoveryFormat.AGGREGATED_V2.content_type
        == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert (
        DiscoveryFormat.AGGREGATED_V2BETA1.content_type
        == "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    )
    assert DiscoveryFormat.LEGACY.content_type == "application/json"


# --- Accept negotiation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CLIENT_GO_ACCEPT, DiscoveryFormat.AGGREGATED_V2),
        (AGGREGATOR_ACCEPT, DiscoveryFormat.AGGREGATED_V2),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
            "application/json",
            DiscoveryFormat.AGGREGATED_V2BETA1,
        ),
        # parameter order does not matter; protobuf (not served) is skipped
        (
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            "application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io",
            DiscoveryFormat.AGGREGATED_V2,
        ),
        # q-values rank clauses before their order
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,"
            "application/json",
            DiscoveryFormat.LEGACY,
        ),
        ("application/json", DiscoveryFormat.LEGACY),
        ("application/json, */*", DiscoveryFormat.LEGACY),
        ("*/*", DiscoveryFormat.LEGACY),
        ("", DiscoveryFormat.LEGACY),
        (None, DiscoveryFormat.LEGACY),
        ("application/vnd.kubernetes.protobuf", None),
        ("application/json;as=Table;v=v1;g=meta.k8s.io", None),
        ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList", None),
        ("text/html", None),
        ("application/json;q=0", None),
    ],
)
def test_negotiate_discovery(accept: str | None, expected: DiscoveryFormat | None) -> None:
    assert negotiate_discovery(accept) is expected


def test_aggregated_kind_is_not_acceptable_below_apis() -> None:
    assert negotiate_discovery(AGGREGATOR_ACCEPT, aggregated=False) is None
    assert negotiate_discovery(CLIENT_GO_ACCEPT, aggregated=False) is DiscoveryFormat.LEGACY


# --- encoded documents and ETags --------------------------------------------------------------


def test_documents_are_encoded_once_with_a_strong_etag() -> None:
    docs = DiscoveryDocuments([widgets(), gadgets()])
    v2 = docs.apis(CLIENT_GO_ACCEPT)
    assert v2 is docs.aggregated[DiscoveryFormat.AGGREGATED_V2]
    assert v2.content_type == DiscoveryFormat.AGGREGATED_V2.content_type
    assert json.loads(v2.body)["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert v2.etag == '"' + hashlib.sha512(v2.body).hexdigest().upper() + '"'
    assert re.fullmatch(r'"[0-9A-F]{128}"', v2.etag)
    assert v2.hash == v2.etag.strip('"')

    legacy = docs.apis("application/json")
    assert legacy is docs.group_list
    assert json.loads(legacy.body)["kind"] == "APIGroupList"
    assert docs.apis("application/vnd.kubernetes.protobuf") is None

    group = docs.group(GROUP)
    resource_list = docs.resource_list(GROUP, "v1alpha1")
    assert group is not None and json.loads(group.body)["kind"] == "APIGroup"
    assert resource_list is not None and json.loads(resource_list.body)["kind"] == "APIResourceList"
    assert docs.group("other.io") is None
    assert docs.resource_list(GROUP, "v9") is None


def test_etag_is_stable_and_changes_with_the_resources() -> None:
    first = DiscoveryDocuments([widgets(), gadgets()])
    again = DiscoveryDocuments([gadgets(), widgets()])
    for fmt in (DiscoveryFormat.AGGREGATED_V2, DiscoveryFormat.AGGREGATED_V2BETA1):
        assert first.aggregated[fmt].etag == again.aggregated[fmt].etag
    assert first.group_list.etag == again.group_list.etag

    changed = DiscoveryDocuments([dataclasses.replace(widgets(), short_names=("w",)), gadgets()])
    assert changed.aggregated[DiscoveryFormat.AGGREGATED_V2].etag != (
        first.aggregated[DiscoveryFormat.AGGREGATED_V2].etag
    )
    assert first.aggregated[DiscoveryFormat.AGGREGATED_V2].etag != (
        first.aggregated[DiscoveryFormat.AGGREGATED_V2BETA1].etag
    )


def test_if_none_match() -> None:
    doc = DiscoveryDocuments([widgets()]).aggregated[DiscoveryFormat.AGGREGATED_V2]
    assert doc.matches(doc.etag)
    assert doc.matches(f'"other", {doc.etag}')
    assert doc.matches(f"W/{doc.etag}")
    assert doc.matches("*")
    assert not doc.matches(None)
    assert not doc.matches("")
    assert not doc.matches(doc.hash)  # unquoted is not the same entity tag
    assert not doc.matches('"other"')


# --- /version ---------------------------------------------------------------------------------

SEMVER = re.compile(
    r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@pytest.mark.parametrize("kext_version", ["0.1.0", "0.2.0.dev3+gabc123", "1.0.0rc1"])
def test_version_info(kext_version: str) -> None:
    info = discovery.version_info(kext_version, kube_version="1.32.0")
    m = SEMVER.match(info["gitVersion"])
    assert m, info["gitVersion"]
    assert (info["major"], info["minor"]) == (m.group(1), m.group(2)) == ("1", "32")
    assert info["gitVersion"].startswith("v1.32.0+kext.")
    parsed = deserialize(info, "VersionInfo")
    assert parsed.git_version == info["gitVersion"]
    assert parsed.platform and parsed.compiler


def test_version_document_is_served_encoded() -> None:
    docs = DiscoveryDocuments([], "0.1.0")
    assert json.loads(docs.version.body)["gitVersion"] == f"v{discovery.KUBE_VERSION}+kext.0.1.0"
    assert json.loads(docs.group_list.body)["groups"] == []
