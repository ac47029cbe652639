"""OpenAPI v2 and v3 documents as kubectl reads them: names, GVK extensions, paths, refs."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kext.api import openapi
from kext.api.openapi import OpenAPIDocuments
from kext.api.resource import ResourceDefinition, ScaleSubresource, Version

GROUP = "example.kext.io"
WIDGET = "io.kext.example.v1alpha1.Widget"
WIDGET_LIST = "io.kext.example.v1alpha1.WidgetList"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Widget is a thing.",
    "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
        "spec": {
            "type": "object",
            "description": "Desired state.",
            "required": ["size", "color"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "default": 3, "description": "How big."},
                "color": {"type": "string", "enum": ["red", "blue"], "nullable": True},
                "port": {"x-kubernetes-int-or-string": True},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                    },
                },
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "labels": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "x-kubernetes-map-type": "granular",
                },
                "raw": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"known": {"type": "string"}},
                },
                "template": {"type": "object", "x-kubernetes-embedded-resource": True},
                "choice": {
                    "type": "string",
                    "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}],
                    "example": "abc",
                    "externalDocs": {"url": "https://example.com"},
                },
                # a field named like a keyword must survive default pruning
                "default": {"type": "string", "default": "x"},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def widgets(*versions: Version) -> ResourceDefinition:
    return ResourceDefinition(
        group=GROUP,
        plural="widgets",
        singular="widget",
        kind="Widget",
        list_kind="WidgetList",
        namespaced=True,
        versions=versions
        or (
            Version(
                name="v1alpha1", served=True, storage=True, schema=SCHEMA, status_subresource=True
            ),
        ),
    )


def gadgets() -> ResourceDefinition:
    return ResourceDefinition(
        group=GROUP,
        plural="gadgets",
        singular="gadget",
        kind="Gadget",
        list_kind="GadgetList",
        namespaced=False,
        versions=(
            Version(
                name="v1",
                served=True,
                storage=True,
                schema={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            ),
        ),
    )


def v2_doc(*resources: ResourceDefinition) -> dict[str, Any]:
    return json.loads(OpenAPIDocuments(list(resources) or [widgets()]).v2.body)


def v3_doc(*resources: ResourceDefinition, version: str = "v1alpha1") -> dict[str, Any]:
    docs = OpenAPIDocuments(list(resources) or [widgets()])
    return json.loads(docs.v3[openapi.v3_path(GROUP, version)].body)


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def schema_keywords(schema: Any) -> Iterator[str]:
    """Every keyword used in a schema, descending only into subschemas (not property names)."""
    if not isinstance(schema, dict):
        return
    yield from schema
    for sub in (schema.get("properties") or {}).values():
        yield from schema_keywords(sub)
    for key in ("items", "additionalProperties", "not"):
        yield from schema_keywords(schema.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            yield from schema_keywords(sub)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# --- names ------------------------------------------------------------------------------------


def test_definition_names_reverse_the_group() -> None:
    assert openapi.definition_name(GROUP, "v1alpha1", "Widget") == WIDGET
    assert openapi.definition_name("stable.example.com", "v1", "CronTab") == (
        "com.example.stable.v1.CronTab"
    )


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("listNamespacedWidget", "listExampleKextIoV1alpha1NamespacedWidget"),
        ("listWidgetForAllNamespaces", "listExampleKextIoV1alpha1WidgetForAllNamespaces"),
        ("readNamespacedWidgetStatus", "readExampleKextIoV1alpha1NamespacedWidgetStatus"),
        # kube takes the shortest known verb as the prefix
        (
            "deletecollectionNamespacedWidget",
            "deleteExampleKextIoV1alpha1collectionNamespacedWidget",
        ),
    ],
)
def test_operation_ids_are_kubes(operation: str, expected: str) -> None:
    assert openapi.operation_id_and_tag(operation, GROUP, "v1alpha1") == (
        expected,
        "exampleKextIo_v1alpha1",
    )


# --- definitions ------------------------------------------------------------------------------


@pytest.mark.parametrize("v2", [True, False])
def test_kind_and_list_definitions(v2: bool) -> None:
    doc = v2_doc() if v2 else v3_doc()
    definitions = doc["definitions"] if v2 else doc["components"]["schemas"]
    prefix = "#/definitions/" if v2 else "#/components/schemas/"
    widget = definitions[WIDGET]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": GROUP, "kind": "Widget", "version": "v1alpha1"}
    ]
    assert widget["description"] == "A Widget is a thing."
    assert widget["properties"]["metadata"]["$ref"] == prefix + OBJECT_META
    assert widget["properties"]["apiVersion"]["type"] == "string"
    assert widget["properties"]["kind"]["type"] == "string"
    assert set(widget["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}

    widget_list = definitions[WIDGET_LIST]
    assert widget_list["x-kubernetes-group-version-kind"] == [
        {"group": GROUP, "kind": "WidgetList", "version": "v1alpha1"}
    ]
    assert widget_list["required"] == ["items"]
    assert widget_list["properties"]["items"]["items"] == {"$ref": prefix + WIDGET}
    assert widget_list["properties"]["metadata"]["$ref"] == (
        prefix + "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
    )
    for name in (
        "ObjectMeta",
        "ListMeta",
        "Status",
        "StatusDetails",
        "StatusCause",
        "ManagedFieldsEntry",
        "OwnerReference",
        "Time",
        "FieldsV1",
        "DeleteOptions",
        "Preconditions",
        "Patch",
        "WatchEvent",
    ):
        assert f"io.k8s.apimachinery.pkg.apis.meta.v1.{name}" in definitions
    status = definitions["io.k8s.apimachinery.pkg.apis.meta.v1.Status"]
    assert status["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Status", "version": "v1"}
    ]
    owner_refs = definitions[OBJECT_META]["properties"]["ownerReferences"]
    assert owner_refs["x-kubernetes-list-type"] == "map"
    assert owner_refs["x-kubernetes-list-map-keys"] == ["uid"]


@pytest.mark.parametrize("v2", [True, False])
def test_every_ref_resolves(v2: bool) -> None:
    doc = v2_doc(widgets(), gadgets()) if v2 else v3_doc(widgets(), gadgets())
    refs = [value for key, value in walk(doc) if key == "$ref"]
    assert refs
    for ref in refs:
        assert ref.startswith("#/definitions/" if v2 else "#/components/schemas/")
        assert isinstance(resolve(doc, ref), dict), ref


def test_v2_conversion_drops_what_swagger_2_cannot_hold() -> None:
    spec = v2_doc()["definitions"][WIDGET]["properties"]["spec"]
    keywords = set(schema_keywords(spec))
    assert not keywords & {"allOf", "anyOf", "oneOf", "not", "nullable", "default"}
    assert not keywords & {"example", "externalDocs"}
    fields = spec["properties"]
    assert "default" in fields  # a field called "default" is not a keyword
    # nullable: no type, and no longer required
    assert fields["color"] == {"enum": ["red", "blue"]}
    assert spec["required"] == ["size"]
    # preserve-unknown-fields: no properties, no object type
    assert fields["raw"] == {"x-kubernetes-preserve-unknown-fields": True}
    # list/map semantics kept for kubectl and server-side apply
    assert fields["ports"]["x-kubernetes-list-type"] == "map"
    assert fields["ports"]["x-kubernetes-list-map-keys"] == ["name"]
    assert fields["tags"]["x-kubernetes-list-type"] == "set"
    assert fields["labels"]["x-kubernetes-map-type"] == "granular"
    assert fields["port"] == {"x-kubernetes-int-or-string": True}


def test_v3_keeps_the_declared_schema() -> None:
    spec = v3_doc()["components"]["schemas"][WIDGET]["properties"]["spec"]
    fields = spec["properties"]
    assert fields["color"]["nullable"] is True
    assert spec["required"] == ["size", "color"]
    assert fields["size"]["default"] == 3
    assert fields["choice"]["anyOf"] == [{"pattern": "^a"}, {"pattern": "^b"}]
    assert "example" not in fields["choice"] and "externalDocs" not in fields["choice"]
    assert fields["raw"]["properties"] == {"known": {"type": "string"}}
    # Structural.Unfold
    assert fields["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    # embedded resources get apiVersion, kind and metadata
    template = fields["template"]
    assert template["properties"]["metadata"]["$ref"] == "#/components/schemas/" + OBJECT_META
    assert {"apiVersion", "kind"} <= set(template["required"])


def test_preserve_unknown_fields_root() -> None:
    v2 = v2_doc(gadgets())["definitions"]["io.kext.example.v1.Gadget"]
    assert v2 == {
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": GROUP, "kind": "Gadget", "version": "v1"}],
    }
    v3 = v3_doc(gadgets(), version="v1")["components"]["schemas"]["io.kext.example.v1.Gadget"]
    assert v3["x-kubernetes-preserve-unknown-fields"] is True
    assert "metadata" in v3["properties"]


def test_declared_schema_is_not_mutated() -> None:
    before = copy.deepcopy(SCHEMA)
    OpenAPIDocuments([widgets()])
    assert before == SCHEMA


# --- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("v2", [True, False])
def test_paths_and_operations(v2: bool) -> None:
    doc = v2_doc(widgets(), gadgets()) if v2 else v3_doc(widgets(), gadgets())
    base = f"/apis/{GROUP}/v1alpha1"
    namespaced = f"{base}/namespaces/{{namespace}}/widgets"
    widget_paths = {p for p in doc["paths"] if "widgets" in p}
    assert widget_paths == {
        f"{base}/widgets",
        namespaced,
        f"{namespaced}/{{name}}",
        f"{namespaced}/{{name}}/status",
    }
    actions = {
        (path, method): op["x-kubernetes-action"]
        for path in widget_paths
        for method, op in doc["paths"][path].items()
        if method != "parameters"
    }
    assert actions == {
        (f"{base}/widgets", "get"): "list",
        (namespaced, "get"): "list",
        (namespaced, "post"): "post",
        (namespaced, "delete"): "deletecollection",
        (f"{namespaced}/{{name}}", "get"): "get",
        (f"{namespaced}/{{name}}", "put"): "put",
        (f"{namespaced}/{{name}}", "delete"): "delete",
        (f"{namespaced}/{{name}}", "patch"): "patch",
        (f"{namespaced}/{{name}}/status", "get"): "get",
        (f"{namespaced}/{{name}}/status", "put"): "put",
        (f"{namespaced}/{{name}}/status", "patch"): "patch",
    }
    operation_ids = [
        op["operationId"]
        for item in doc["paths"].values()
        for method, op in item.items()
        if method != "parameters"
    ]
    assert len(operation_ids) == len(set(operation_ids))
    item = doc["paths"][f"{namespaced}/{{name}}"]
    assert item["get"]["operationId"] == "readExampleKextIoV1alpha1NamespacedWidget"
    assert item["get"]["x-kubernetes-group-version-kind"] == {
        "group": GROUP,
        "kind": "Widget",
        "version": "v1alpha1",
    }
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    gadget_paths = {p for p in doc["paths"] if "gadgets" in p} if v2 else set()
    assert gadget_paths == (
        {"/apis/example.kext.io/v1/gadgets", "/apis/example.kext.io/v1/gadgets/{name}"}
        if v2
        else set()
    )


@pytest.mark.parametrize("v2", [True, False])
def test_every_patch_accepts_field_validation_and_no_strategic_merge(v2: bool) -> None:
    # kubectl looks for fieldValidation on a PATCH of the kind to skip client-side validation,
    # and builds a strategic merge patch only when the PATCH body admits one.
    doc = v2_doc() if v2 else v3_doc()
    patches = [item["patch"] for item in doc["paths"].values() if "patch" in item]
    assert len(patches) == 2
    for op in patches:
        assert "fieldValidation" in {p["name"] for p in op["parameters"]}
        types = op["consumes"] if v2 else list(op["requestBody"]["content"])
        assert sorted(types) == [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ]


def test_v3_operation_shape() -> None:
    doc = v3_doc()
    create = doc["paths"][f"/apis/{GROUP}/v1alpha1/namespaces/{{namespace}}/widgets"]["post"]
    assert create["requestBody"]["required"] is True
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/" + WIDGET
    }
    assert set(create["responses"]) == {"200", "201", "202", "401"}
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        WIDGET
    )
    assert {p["name"] for p in create["parameters"]} == {
        "dryRun",
        "fieldManager",
        "fieldValidation",
    }


def test_unserved_versions_are_left_out() -> None:
    rd = widgets(
        Version(name="v1alpha1", served=True, storage=True, schema=SCHEMA),
        Version(name="v1", served=False, storage=False, schema=SCHEMA),
    )
    docs = OpenAPIDocuments([rd])
    assert list(docs.v3) == [f"apis/{GROUP}/v1alpha1"]
    assert not [p for p in json.loads(docs.v2.body)["paths"] if "/v1/" in p]


# --- index, hashes, negotiation ---------------------------------------------------------------


def test_v3_index_points_at_hashed_documents() -> None:
    docs = OpenAPIDocuments([widgets(), gadgets()])
    index = json.loads(docs.v3_index.body)
    assert set(index["paths"]) == {f"apis/{GROUP}/v1", f"apis/{GROUP}/v1alpha1"}
    for path, entry in index["paths"].items():
        doc = docs.v3[path]
        assert entry["serverRelativeURL"] == f"/openapi/v3/{path}?hash={doc.hash}"
        assert doc.etag == f'"{doc.hash}"'
        assert doc.content_type == "application/json"


def test_hashes_are_stable_and_follow_changes() -> None:
    first = OpenAPIDocuments([widgets(), gadgets()])
    again = OpenAPIDocuments([gadgets(), widgets()])
    assert first.v2.etag == again.v2.etag
    assert first.v3_index.body == again.v3_index.body

    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["spec"]["properties"]["size"]["maximum"] = 10
    (v,) = widgets().versions
    changed = OpenAPIDocuments(
        [
            dataclasses.replace(widgets(), versions=(dataclasses.replace(v, schema=schema),)),
            gadgets(),
        ]
    )
    assert changed.v2.etag != first.v2.etag
    assert changed.v3[f"apis/{GROUP}/v1alpha1"].hash != first.v3[f"apis/{GROUP}/v1alpha1"].hash
    assert changed.v3[f"apis/{GROUP}/v1"].hash == first.v3[f"apis/{GROUP}/v1"].hash
    assert changed.v3_index.etag != first.v3_index.etag


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        ("application/json", True),
        ("application/json, */*", True),
        ("*/*", True),
        ("", True),
        (None, True),
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", False),
        (
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json;q=0.5",
            True,
        ),
        ("text/html", False),
    ],
)
def test_accepts_json(accept: str | None, ok: bool) -> None:
    assert openapi.accepts_json(accept) is ok


# --- validators -------------------------------------------------------------------------------


def test_documents_validate() -> None:
    validation = pytest.importorskip("openapi_spec_validator.validation")
    docs = OpenAPIDocuments([widgets(), gadgets()])
    v2 = json.loads(docs.v2.body)
    assert [e.message for e in validation.OpenAPIV2SpecValidator(v2).iter_errors()] == []
    for doc in docs.v3.values():
        v3 = json.loads(doc.body)
        assert [e.message for e in validation.OpenAPIV30SpecValidator(v3).iter_errors()] == []


# --- the scale subresource ------------------------------------------------------------------


def scaled_widgets() -> ResourceDefinition:
    version = Version(name="v1alpha1", served=True, storage=True, schema=SCHEMA,
                      status_subresource=True,
                      scale=ScaleSubresource(".spec.size", ".status.size", ".status.selector"))
    return widgets(version)


@pytest.mark.parametrize("v2", [True, False])
def test_scale_routes_read_and_write_an_autoscaling_scale(v2: bool) -> None:
    doc = v2_doc(scaled_widgets()) if v2 else v3_doc(scaled_widgets())
    root = "/apis/example.kext.io/v1alpha1/namespaces/{namespace}/widgets"
    path = doc["paths"][f"{root}/{{name}}/scale"]
    assert sorted(k for k in path if k != "parameters") == ["get", "patch", "put"]
    assert path["get"]["operationId"] == "readExampleKextIoV1alpha1NamespacedWidgetScale"
    assert path["get"]["description"] == "read scale of the specified Widget"
    assert path["patch"]["operationId"] == "patchExampleKextIoV1alpha1NamespacedWidgetScale"
    # as kube's CRD builder: the route's GVK is the resource's, its body and answer a Scale
    assert path["put"]["x-kubernetes-group-version-kind"]["kind"] == "Widget"
    scale = "io.k8s.api.autoscaling.v1.Scale"
    prefix = "#/definitions/" if v2 else "#/components/schemas/"
    answer = path["get"]["responses"]["200"]
    ref = answer["schema"]["$ref"] if v2 else answer["content"]["application/json"]["schema"][
        "$ref"]
    assert ref == prefix + scale
    definitions = doc["definitions"] if v2 else doc["components"]["schemas"]
    assert definitions[scale]["x-kubernetes-group-version-kind"] == [
        {"group": "autoscaling", "kind": "Scale", "version": "v1"}]
    status = definitions["io.k8s.api.autoscaling.v1.ScaleStatus"]
    assert status["properties"]["selector"]["type"] == "string"
    assert status["required"] == ["replicas"]
    for key, value in walk(doc):
        if key == "$ref":
            assert isinstance(resolve(doc, value), dict), value


def test_no_scale_no_scale_definitions() -> None:
    assert "io.k8s.api.autoscaling.v1.Scale" not in v2_doc(widgets())["definitions"]


def test_scale_documents_validate() -> None:
    validation = pytest.importorskip("openapi_spec_validator.validation")
    docs = OpenAPIDocuments([scaled_widgets()])
    v2 = json.loads(docs.v2.body)
    assert [e.message for e in validation.OpenAPIV2SpecValidator(v2).iter_errors()] == []
    for doc in docs.v3.values():
        v3 = json.loads(doc.body)
        assert [e.message for e in validation.OpenAPIV30SpecValidator(v3).iter_errors()] == []
