"""Server-side apply through the store on a schema with kube's list and map types: keyed
lists (listType map) and sets merge entry by entry between managers, atomic maps and lists
are owned whole, and conflicts name the entry's path as kube prints it."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from kext.api.resource import parse_crd
from kext.registry.rest import RequestContext
from kext.registry.store import Store
from tests.registry.conftest import Storage
from tests.registry.objects import refused

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
API_VERSION = "example.kext.io/v1"

CRD: Object = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "services.example.kext.io"},
    "spec": {
        "group": "example.kext.io", "scope": "Namespaced",
        "names": {"kind": "Service", "listKind": "ServiceList", "plural": "services",
                  "singular": "service"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object", "properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"},
                                                       "port": {"type": "integer"}}}},
                    "hosts": {"type": "array", "x-kubernetes-list-type": "set",
                              "items": {"type": "string"}},
                    "command": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object",
                                 "additionalProperties": {"type": "string"}},
                    "config": {"type": "object", "x-kubernetes-map-type": "atomic",
                               "additionalProperties": {"type": "integer"}},
                }}}}}}],
    },
}


@pytest_asyncio.fixture
async def services(storage: Storage) -> Store:
    definition, problems = parse_crd(CRD, "services")
    assert definition is not None, problems
    return await storage.store(definition)


def apply(store: Store, manager: str, spec: Object, force: bool = False) -> Any:
    body = {"apiVersion": API_VERSION, "kind": "Service", "metadata": {"name": "s"},
            "spec": spec}
    return store.apply(RequestContext(namespace="ns", field_manager=manager), "s", "v1", body,
                       force)


def owned(result: Any, manager: str) -> Object:
    entries = {e["manager"]: e for e in result.object["metadata"]["managedFields"]}
    spec: Object = entries[manager]["fieldsV1"]["f:spec"]
    return spec


async def test_keyed_list_entries_belong_to_whoever_applied_them(services: Store) -> None:
    await apply(services, "web", {"ports": [{"name": "http", "port": 80}]})
    both = await apply(services, "monitoring", {"ports": [{"name": "metrics", "port": 9090}]})
    assert both.object["spec"]["ports"] == [{"name": "http", "port": 80},
                                            {"name": "metrics", "port": 9090}]
    assert owned(both, "web") == {"f:ports": {'k:{"name":"http"}': {
        ".": {}, "f:name": {}, "f:port": {}}}}
    error = await refused(apply(services, "monitoring",
                                {"ports": [{"name": "metrics", "port": 9090},
                                           {"name": "http", "port": 8080}]}))
    assert error.message == ('Apply failed with 1 conflict: conflict with "web": '
                             '.spec.ports[name="http"].port')
    # web stops applying its port: it goes, monitoring's stays
    left = await apply(services, "web", {"ports": []})
    assert left.object["spec"]["ports"] == [{"name": "metrics", "port": 9090}]


async def test_set_members_belong_to_whoever_applied_them(services: Store) -> None:
    await apply(services, "a", {"hosts": ["a.example", "b.example"]})
    merged = await apply(services, "c", {"hosts": ["c.example"]})
    assert merged.object["spec"]["hosts"] == ["a.example", "b.example", "c.example"]
    assert owned(merged, "c") == {"f:hosts": {'v:"c.example"': {}}}
    shrunk = await apply(services, "a", {"hosts": ["a.example"]})
    assert shrunk.object["spec"]["hosts"] == ["a.example", "c.example"]


async def test_atomic_lists_and_maps_are_owned_whole(services: Store) -> None:
    await apply(services, "a", {"command": ["run", "--fast"], "config": {"x": 1}})
    error = await refused(apply(services, "b", {"config": {"y": 2}}))
    assert error.message == 'Apply failed with 1 conflict: conflict with "a": .spec.config'
    error = await refused(apply(services, "b", {"command": ["stop"], "config": {"y": 2}}))
    assert error.message == ('Apply failed with 2 conflicts: conflicts with "a":\n'
                             "- .spec.command\n- .spec.config")
    forced = await apply(services, "b", {"command": ["stop"], "config": {"y": 2}}, force=True)
    assert forced.object["spec"]["config"] == {"y": 2}  # replaced, not merged
    assert forced.object["spec"]["command"] == ["stop"]
    assert "a" not in {e["manager"] for e in forced.object["metadata"]["managedFields"]}


async def test_granular_maps_merge_key_by_key(services: Store) -> None:
    await apply(services, "a", {"selector": {"app": "web"}})
    merged = await apply(services, "b", {"selector": {"tier": "front"}})
    assert merged.object["spec"]["selector"] == {"app": "web", "tier": "front"}
    assert owned(merged, "b") == {"f:selector": {"f:tier": {}}}
