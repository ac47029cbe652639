"""The resource handlers in memory, through kext's whole filter chain and router: every verb
as a client sends it, the representations it can ask for, and the Status of every refusal
(404, 405, 406, 415, 422 on the options...)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kext.server.request import Response
from tests.registry.objects import API_VERSION, widget
from tests.server.inmemory import GADGETS, WIDGETS, InMemoryServer, body, header

pytestmark = pytest.mark.asyncio

MERGE = {"content-type": "application/merge-patch+json"}
JSON_PATCH = {"content-type": "application/json-patch+json"}
APPLY = {"content-type": "application/apply-patch+yaml"}
TABLE = {"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
PARTIAL = {"accept": "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"}


def status(response: Any, code: int, reason: str) -> dict[str, Any]:
    """The Status body of an error response, checked to be one with code and reason."""
    assert response.code == code, response.body
    assert response.content_type == "application/json"
    status = body(response)
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1",
                                                                        "Failure")
    assert (status["code"], status.get("reason", "")) == (code, reason)  # kube omits ""
    return status


async def create(server: InMemoryServer, name: str = "w", **spec: Any) -> dict[str, Any]:
    response = await server.request("POST", WIDGETS, widget(name, **spec))
    created: dict[str, Any] = body(response)
    assert response.code == 201, created
    return created


async def test_crud_as_a_client_does_it(server: InMemoryServer) -> None:
    created = await create(server, size=2)
    assert created["metadata"]["namespace"] == "ns" and created["spec"]["size"] == 2
    got = await server.request("GET", f"{WIDGETS}/w")
    assert got.code == 200 and body(got) == created
    listed = body(await server.request("GET", WIDGETS))
    assert listed["kind"] == "WidgetList" and [i["metadata"]["name"] for i in
                                               listed["items"]] == ["w"]
    replaced = await server.request("PUT", f"{WIDGETS}/w", {**created, "spec": {"color": "red"}})
    assert replaced.code == 200 and body(replaced)["spec"] == {"color": "red", "size": 1}
    deleted = await server.request("DELETE", f"{WIDGETS}/w")
    assert deleted.code == 200
    assert body(deleted) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": "w", "group": "example.kext.io", "kind": "widgets",
                    "uid": created["metadata"]["uid"]}}
    missing = status(await server.request("GET", f"{WIDGETS}/w"), 404, "NotFound")
    assert missing["message"] == 'widgets.example.kext.io "w" not found'
    assert missing["details"] == {"name": "w", "group": "example.kext.io", "kind": "widgets"}


async def test_a_cluster_scoped_resource(server: InMemoryServer) -> None:
    gadget = {"apiVersion": API_VERSION, "kind": "Gadget", "metadata": {"name": "g"},
              "spec": {"model": "m1"}}
    created = await server.request("POST", GADGETS, gadget)
    assert created.code == 201 and "namespace" not in body(created)["metadata"]
    assert (await server.request("GET", f"{GADGETS}/g")).code == 200
    # a cluster-scoped resource has no namespaced path
    status(await server.request(
        "GET", "/apis/example.kext.io/v1alpha1/namespaces/ns/gadgets/g"), 404, "NotFound")


async def test_writes_of_a_namespaced_resource_need_a_namespace(server: InMemoryServer) -> None:
    everywhere = "/apis/example.kext.io/v1alpha1/widgets"
    status(await server.request("POST", everywhere, widget()), 404, "NotFound")
    status(await server.request("DELETE", everywhere), 404, "NotFound")
    await create(server)
    assert (await server.request("GET", everywhere)).code == 200  # a list spans namespaces


async def test_unknown_paths_are_404_status(server: InMemoryServer) -> None:
    for path in ("/apis/example.kext.io/v1alpha1/namespaces/ns/sprockets",
                 "/apis/example.kext.io/v9/namespaces/ns/widgets",
                 "/apis/other.io/v1/things", "/nothing/here",
                 f"{WIDGETS}/w/scale", f"{WIDGETS}/w/status/deeper"):
        error = status(await server.request("GET", path), 404, "NotFound")
        assert error["message"] == f"the server could not find the requested resource ({path})"


async def test_verbs_a_path_does_not_take_are_405(server: InMemoryServer) -> None:
    await create(server)
    error = status(await server.request("DELETE", f"{WIDGETS}/w/status"), 405,
                   "MethodNotAllowed")
    assert error["message"] == (
        "delete is not supported on resources of kind 'widgets/status.example.kext.io'")
    status(await server.request("POST", f"{WIDGETS}/w/status", widget()), 405,
           "MethodNotAllowed")
    status(await server.request("OPTIONS", f"{WIDGETS}/w"), 405, "MethodNotAllowed")
    error = status(await server.request("PATCH", WIDGETS, {}, headers=MERGE), 400, "BadRequest")
    assert error["message"] == "name must be provided"


async def test_an_accept_header_kext_cannot_answer_is_406(server: InMemoryServer) -> None:
    await create(server)
    error = status(await server.request("GET", f"{WIDGETS}/w",
                                        headers={"accept": "application/vnd.kubernetes.protobuf"}),
                   406, "NotAcceptable")
    assert error["message"].startswith("only the following media types are accepted: ")
    status(await server.request("GET", WIDGETS, headers={
        "accept": "application/json;as=Table;v=v2;g=meta.k8s.io"}), 406, "NotAcceptable")


async def test_yaml_in_and_out(server: InMemoryServer) -> None:
    sent = yaml.safe_dump(widget(size=4)).encode()
    created = await server.request("POST", WIDGETS, sent,
                                   headers={"content-type": "application/yaml",
                                            "accept": "application/yaml"})
    assert isinstance(created, Response)
    assert (created.code, created.content_type) == (201, "application/yaml")
    assert yaml.safe_load(created.body)["spec"] == {"color": "blue", "size": 4}
    bomb = b"apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata: &m {name: b}\n" \
           b"spec: *m\n"
    error = status(await server.request("POST", WIDGETS, bomb,
                                        headers={"content-type": "application/yaml"}),
                   400, "BadRequest")
    assert "aliases are not accepted in request bodies" in error["message"]


async def test_yaml_keys_become_strings_as_kube_reads_them(server: InMemoryServer) -> None:
    sent = (b"apiVersion: example.kext.io/v1alpha1\nkind: Widget\n"
            b"metadata:\n  name: k\n  annotations: {true: a, null: b, 1: c, 2.5: d}\n"
            b"spec: {color: red}\n")
    created = await server.request("POST", WIDGETS, sent,
                                   headers={"content-type": "application/yaml"})
    assert body(created)["metadata"]["annotations"] == {"true": "a", "null": "b", "1": "c",
                                                        "2.5": "d"}
    timestamp = b"apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata:\n  name: t\n" \
                b"  annotations: {when: 2024-01-01}\nspec: {color: red}\n"
    created = await server.request("POST", WIDGETS, timestamp,
                                   headers={"content-type": "application/yaml"})
    assert body(created)["metadata"]["annotations"] == {"when": "2024-01-01"}  # not a date
    nested = b"apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata: {name: n}\n" \
             b"spec: {? [a, b] : c}\n"
    error = status(await server.request("POST", WIDGETS, nested,
                                        headers={"content-type": "application/yaml"}),
                   400, "BadRequest")
    assert "a mapping key must be a scalar" in error["message"]


async def test_bodies_that_are_not_objects_are_400(server: InMemoryServer) -> None:
    error = status(await server.request("POST", WIDGETS, b"{not json"), 400, "BadRequest")
    assert error["message"].startswith("the request body could not be decoded: ")
    error = status(await server.request("POST", WIDGETS, [1, 2]), 400, "BadRequest")
    assert error["message"] == "the request body must be a JSON or YAML object"
    error = status(await server.request("POST", WIDGETS, b"",
                                        headers={"content-type": "application/json"}),
                   400, "BadRequest")
    assert error["message"] == "the request body is empty"
    await create(server)
    status(await server.request("PUT", f"{WIDGETS}/w", "a string"), 400, "BadRequest")


async def test_a_table_of_the_printer_columns(server: InMemoryServer) -> None:
    await create(server, "a", size=3)
    await create(server, "b", size=5, color="red")
    table = body(await server.request("GET", WIDGETS, headers=TABLE))
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Size", "Color", "Phase", "Age"]
    assert [r["cells"][:3] for r in table["rows"]] == [["a", 3, "blue"], ["b", 5, "red"]]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["metadata"]["resourceVersion"]
    full = body(await server.request("GET", f"{WIDGETS}?includeObject=Object", headers=TABLE))
    assert full["rows"][0]["object"]["spec"] == {"color": "blue", "size": 3}
    none = body(await server.request("GET", f"{WIDGETS}/a?includeObject=None", headers=TABLE))
    assert len(none["rows"]) == 1 and none["rows"][0]["object"] is None  # as Go encodes it


async def test_partial_object_metadata(server: InMemoryServer) -> None:
    await create(server)
    one = body(await server.request("GET", f"{WIDGETS}/w", headers=PARTIAL))
    assert (one["kind"], one["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
    assert one["metadata"]["name"] == "w" and "spec" not in one
    listed = body(await server.request("GET", WIDGETS, headers={
        "accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}))
    assert listed["kind"] == "PartialObjectMetadataList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w"]


async def test_merge_patch_and_json_patch(server: InMemoryServer) -> None:
    await create(server, tags=["a"])
    merged = await server.request("PATCH", f"{WIDGETS}/w",
                                  {"spec": {"size": 3, "tags": None}}, headers=MERGE)
    assert merged.code == 200
    assert body(merged)["spec"] == {"color": "blue", "size": 3}
    patched = await server.request("PATCH", f"{WIDGETS}/w", [
        {"op": "add", "path": "/spec/tags", "value": ["x"]},
        {"op": "replace", "path": "/spec/color", "value": "green"}], headers=JSON_PATCH)
    assert body(patched)["spec"] == {"color": "green", "size": 3, "tags": ["x"]}
    failed = status(await server.request(
        "PATCH", f"{WIDGETS}/w", [{"op": "test", "path": "/spec/size", "value": 9}],
        headers=JSON_PATCH), 422, "Invalid")
    assert failed["message"].startswith(
        "the server rejected our request due to an error in our request: ")
    status(await server.request("PATCH", f"{WIDGETS}/w", {"op": "add"}, headers=JSON_PATCH),
           400, "BadRequest")
    status(await server.request("PATCH", f"{WIDGETS}/w", [{"op": "jump"}], headers=JSON_PATCH),
           400, "BadRequest")
    status(await server.request("PATCH", f"{WIDGETS}/w", [1], headers=MERGE),
           400, "BadRequest")
    status(await server.request("PATCH", f"{WIDGETS}/w", b"{oops", headers=MERGE),
           400, "BadRequest")
    status(await server.request("PATCH", f"{WIDGETS}/nothing", {"spec": {}}, headers=MERGE),
           404, "NotFound")


async def test_patches_kext_does_not_take_are_415(server: InMemoryServer) -> None:
    await create(server)
    for content_type in ("application/strategic-merge-patch+json", "text/plain"):
        error = status(await server.request("PATCH", f"{WIDGETS}/w", {"spec": {}},
                                            headers={"content-type": content_type}),
                       415, "UnsupportedMediaType")
        assert error["message"] == (  # apimachinery's NewUnsupportedMediaTypeError
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml")


async def test_server_side_apply(server: InMemoryServer) -> None:
    intent = yaml.safe_dump({"apiVersion": API_VERSION, "kind": "Widget",
                             "metadata": {"name": "w"}, "spec": {"color": "red"}}).encode()
    created = await server.request("PATCH", f"{WIDGETS}/w?fieldManager=kubectl", intent,
                                   headers=APPLY)
    assert created.code == 201
    [entry] = body(created)["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    again = await server.request("PATCH", f"{WIDGETS}/w?fieldManager=kubectl", intent,
                                 headers=APPLY)
    assert again.code == 200
    other = yaml.safe_dump({"apiVersion": API_VERSION, "kind": "Widget",
                            "metadata": {"name": "w"}, "spec": {"color": "green"}}).encode()
    conflict = status(await server.request("PATCH", f"{WIDGETS}/w?fieldManager=ci", other,
                                           headers=APPLY), 409, "Conflict")
    assert conflict["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl": .spec.color')
    forced = await server.request("PATCH", f"{WIDGETS}/w?fieldManager=ci&force=true", other,
                                  headers=APPLY)
    assert forced.code == 200 and body(forced)["spec"]["color"] == "green"


async def test_patch_options_are_checked(server: InMemoryServer) -> None:
    await create(server)
    error = status(await server.request("PATCH", f"{WIDGETS}/w", b"{}", headers=APPLY),
                   422, "Invalid")
    assert error["details"]["kind"] == "PatchOptions"
    assert error["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                "Required value: is required for apply patch")
    error = status(await server.request("PATCH", f"{WIDGETS}/w?force=true", {"spec": {}},
                                        headers=MERGE), 422, "Invalid")
    assert error["message"] == ('PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: '
                                "may not be specified for non-apply patch")


async def test_the_status_subresource_over_http(server: InMemoryServer) -> None:
    created = await create(server)
    got = body(await server.request("GET", f"{WIDGETS}/w/status"))
    assert got == created
    sent = {**created, "status": {"phase": "Ready"}, "spec": {"color": "red", "size": 9}}
    updated = body(await server.request("PUT", f"{WIDGETS}/w/status", sent))
    assert updated["status"] == {"phase": "Ready"} and updated["spec"]["size"] == 1
    patched = body(await server.request("PATCH", f"{WIDGETS}/w/status",
                                        {"status": {"phase": "Failed"}}, headers=MERGE))
    assert patched["status"] == {"phase": "Failed"}
    main = body(await server.request("PATCH", f"{WIDGETS}/w",
                                     {"status": {"phase": "Ignored"}}, headers=MERGE))
    assert main["status"] == {"phase": "Failed"}


async def test_warnings_are_warning_headers(server: InMemoryServer) -> None:
    response = await server.request("POST", WIDGETS, {**widget(), "extra": 1})
    assert response.code == 201
    assert header(response, "Warning") == '299 - "unknown field \\"extra\\""'
    strict = status(await server.request("POST", f"{WIDGETS}?fieldValidation=Strict",
                                         {**widget("s"), "extra": 1}), 400, "BadRequest")
    assert strict["message"] == 'strict decoding error: unknown field "extra"'


async def test_write_options_are_checked_on_their_kind(server: InMemoryServer) -> None:
    cases = [
        ("POST", WIDGETS, "?dryRun=Some", "CreateOptions", "dryRun"),
        ("POST", WIDGETS, "?fieldValidation=Loose", "CreateOptions", "fieldValidation"),
        ("POST", WIDGETS, "?fieldManager=" + "m" * 129, "CreateOptions", "fieldManager"),
        ("PUT", f"{WIDGETS}/w", "?dryRun=Nope", "UpdateOptions", "dryRun"),
        ("DELETE", f"{WIDGETS}/w", "?dryRun=Nope", "DeleteOptions", "dryRun"),
    ]
    for method, path, query, kind, field in cases:
        sent = None if method == "DELETE" else widget()  # a delete's body is DeleteOptions
        error = status(await server.request(method, path + query, sent), 422, "Invalid")
        assert error["details"]["kind"] == kind, (method, query)
        assert [c["field"] for c in error["details"]["causes"]] == [field]
    assert (await server.request("GET", f"{WIDGETS}/w")).code == 404


async def test_the_field_manager_defaults_to_the_user_agent(server: InMemoryServer) -> None:
    response = await server.request("POST", WIDGETS, widget(),
                                    headers={"user-agent": "kubectl/v1.31.0 (linux/amd64)"})
    [entry] = body(response)["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl"
    named = await server.request("POST", f"{WIDGETS}?fieldManager=mine", widget("n"))
    assert body(named)["metadata"]["managedFields"][0]["manager"] == "mine"


async def test_dry_run_over_http_stores_nothing(server: InMemoryServer) -> None:
    before = await server.storage.current_revision()
    dry = await server.request("POST", f"{WIDGETS}?dryRun=All", widget())
    assert dry.code == 201 and body(dry)["metadata"]["uid"]
    assert await server.storage.current_revision() == before
    created = await create(server)
    before = await server.storage.current_revision()
    assert (await server.request("PUT", f"{WIDGETS}/w?dryRun=All",
                                 {**created, "spec": {"color": "red"}})).code == 200
    assert (await server.request("PATCH", f"{WIDGETS}/w?dryRun=All", {"spec": {"size": 5}},
                                 headers=MERGE)).code == 200
    assert (await server.request("DELETE", f"{WIDGETS}/w?dryRun=All")).code == 200
    assert (await server.request("DELETE", f"{WIDGETS}?dryRun=All")).code == 200
    assert await server.storage.current_revision() == before
    assert body(await server.request("GET", f"{WIDGETS}/w")) == created


async def test_delete_options_in_the_body(server: InMemoryServer) -> None:
    created = await create(server)
    wrong = status(await server.request("DELETE", f"{WIDGETS}/w", {
        "preconditions": {"uid": "not-the-uid"}}), 409, "Conflict")
    assert wrong["message"] == (
        'Operation cannot be fulfilled on widgets.example.kext.io "w": Precondition failed: '
        f"UID in precondition: not-the-uid, UID in object meta: {created['metadata']['uid']}")
    status(await server.request("DELETE", f"{WIDGETS}/w", {"propagationPolicy": "Never"}),
           422, "Invalid")
    status(await server.request("DELETE", f"{WIDGETS}/w", {"preconditions": "uid"}),
           400, "BadRequest")
    status(await server.request("DELETE", f"{WIDGETS}/w?gracePeriodSeconds=soon"),
           400, "BadRequest")
    right = await server.request("DELETE", f"{WIDGETS}/w?gracePeriodSeconds=0", {
        "preconditions": {"uid": created["metadata"]["uid"],
                          "resourceVersion": created["metadata"]["resourceVersion"]},
        "orphanDependents": False})
    assert right.code == 200 and body(right)["status"] == "Success"


async def test_delete_with_finalizers_answers_the_marked_object(server: InMemoryServer) -> None:
    body_ = widget()
    body_["metadata"]["finalizers"] = ["example.kext.io/keep"]
    assert (await server.request("POST", WIDGETS, body_)).code == 201
    marked = await server.request("DELETE", f"{WIDGETS}/w", headers=TABLE)
    assert marked.code == 200
    assert body(marked)["kind"] == "Table"
    got = body(await server.request("GET", f"{WIDGETS}/w"))
    assert got["metadata"]["deletionTimestamp"]
    removed = await server.request("PATCH", f"{WIDGETS}/w",
                                   {"metadata": {"finalizers": None}}, headers=MERGE)
    assert removed.code == 200
    status(await server.request("GET", f"{WIDGETS}/w"), 404, "NotFound")


async def test_list_options_and_selectors(server: InMemoryServer) -> None:
    for name, color in (("a", "red"), ("b", "blue"), ("c", "blue")):
        body_ = widget(name, color=color)
        body_["metadata"]["labels"] = {"color": color}
        assert (await server.request("POST", WIDGETS, body_)).code == 201
    blue = body(await server.request("GET", f"{WIDGETS}?labelSelector=color%3Dblue"))
    assert [i["metadata"]["name"] for i in blue["items"]] == ["b", "c"]
    red = body(await server.request("GET", f"{WIDGETS}?fieldSelector=spec.color%3Dred"))
    assert [i["metadata"]["name"] for i in red["items"]] == ["a"]
    error = status(await server.request("GET", f"{WIDGETS}?fieldSelector=spec.size%3D1"),
                   400, "BadRequest")
    assert "field label not supported: spec.size" in error["message"]
    page = body(await server.request("GET", f"{WIDGETS}?limit=2"))
    assert [i["metadata"]["name"] for i in page["items"]] == ["a", "b"]
    assert page["metadata"]["remainingItemCount"] == 1
    rest = body(await server.request("GET", f"{WIDGETS}?limit=2&continue="
                                     f"{page['metadata']['continue']}"))
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c"]
    deleted = body(await server.request("DELETE", f"{WIDGETS}?labelSelector=color%3Dblue"))
    assert [i["metadata"]["name"] for i in deleted["items"]] == ["b", "c"]
    left = body(await server.request("GET", WIDGETS))
    assert [i["metadata"]["name"] for i in left["items"]] == ["a"]


@pytest.mark.parametrize(("query", "field", "message"), [
    ("resourceVersion=5&resourceVersionMatch=Exact&continue=x", "resourceVersion",
     "specifying resource version is not allowed when using continue"),
    ("resourceVersionMatch=Exact", "resourceVersionMatch",
     "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ("resourceVersion=0&resourceVersionMatch=Exact", "resourceVersionMatch",
     'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ("resourceVersion=1&resourceVersionMatch=Newest", "resourceVersionMatch",
     'Unsupported value: "Newest": supported values: "Exact", "NotOlderThan"'),
    ("sendInitialEvents=true", "sendInitialEvents", "sendInitialEvents is forbidden for list"),
])
async def test_list_options_kube_refuses_are_422(server: InMemoryServer, query: str,
                                                 field: str, message: str) -> None:
    error = status(await server.request("GET", f"{WIDGETS}?{query}"), 422, "Invalid")
    assert error["details"]["kind"] == "ListOptions"
    assert field in [c["field"] for c in error["details"]["causes"]]
    assert message in error["message"]


@pytest.mark.parametrize("query", ["limit=many", "resourceVersion=abc"])
async def test_malformed_list_parameters_are_400(server: InMemoryServer, query: str) -> None:
    status(await server.request("GET", f"{WIDGETS}?{query}"), 400, "BadRequest")


async def test_get_at_a_resource_version(server: InMemoryServer) -> None:
    created = await create(server)
    rv = created["metadata"]["resourceVersion"]
    assert body(await server.request("GET", f"{WIDGETS}/w?resourceVersion={rv}")) == created
    status(await server.request("GET", f"{WIDGETS}/w?resourceVersion=x"), 400, "BadRequest")
    exact = body(await server.request(
        "GET", f"{WIDGETS}?resourceVersion={rv}&resourceVersionMatch=Exact"))
    assert exact["metadata"]["resourceVersion"] == rv
