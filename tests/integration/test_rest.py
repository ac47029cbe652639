"""The REST API on the wire, as kube-apiserver serves CustomResources: Status errors,
discovery, subresources, finalizers, dry-run, field validation, representations."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
import yaml

from tests.kext_process import KextProcess, status_of

GROUP = "/apis/example.kext.io/v1alpha1"


@pytest.fixture(scope="module")
def http(kext: KextProcess) -> requests.Session:
    return kext.session()


@pytest.fixture
def base(kext: KextProcess) -> str:
    """The widgets collection URL in a namespace of its own."""
    return f"{kext.url}{GROUP}/namespaces/r-{uuid.uuid4().hex[:8]}/widgets"


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": 1, "color": "red", **spec}}


def test_namespaced_writes_need_a_namespace(http: requests.Session, kext: KextProcess,
                                            base: str) -> None:
    http.post(base, json=widget("stays"))
    everywhere = f"{kext.url}{GROUP}/widgets"
    assert http.delete(everywhere).status_code == 404  # never a delete across namespaces
    assert http.post(everywhere, json=widget("x")).status_code == 404
    assert http.get(f"{base}/stays").status_code == 200
    assert http.get(everywhere).status_code == 200  # list spans namespaces


def test_yaml_aliases_are_refused(http: requests.Session, base: str) -> None:
    bomb = ("apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata: {name: b}\n"
            "spec: &a {size: 1}\nstatus: *a\n")
    refused = http.post(base, data=bomb, headers={"Content-Type": "application/yaml"})
    assert refused.status_code == 400
    assert "aliases" in status_of(refused)["message"]


def test_errors_are_status_objects(http: requests.Session, base: str) -> None:
    missing = http.get(f"{base}/nope")
    assert missing.status_code == 404
    assert status_of(missing)["reason"] == "NotFound"
    assert status_of(missing)["details"] == {"name": "nope", "group": "example.kext.io",
                                             "kind": "widgets"}
    assert http.post(base, json=widget("dup")).status_code == 201
    again = http.post(base, json=widget("dup"))
    assert again.status_code == 409 and status_of(again)["reason"] == "AlreadyExists"
    wrong_kind = http.post(base, json={**widget("k"), "kind": "Gadget"})
    assert wrong_kind.status_code == 400 and status_of(wrong_kind)["reason"] == "BadRequest"
    garbage = http.post(base, data=b"{not json", headers={"Content-Type": "application/json"})
    assert garbage.status_code == 400


def test_unauthenticated_requests_get_401(kext: KextProcess) -> None:
    anonymous = requests.get(f"{kext.url}{GROUP}/widgets", verify=kext.ca_file)
    assert anonymous.status_code == 401
    assert status_of(anonymous)["reason"] == "Unauthorized"
    # health stays reachable without credentials, for probes
    assert requests.get(f"{kext.url}/readyz", verify=kext.ca_file).status_code == 200


def test_discovery_with_etag(http: requests.Session, kext: KextProcess) -> None:
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    first = http.get(f"{kext.url}/apis", headers={"Accept": aggregated})
    assert first.status_code == 200
    assert first.headers["Content-Type"] == aggregated
    groups = first.json()["items"]
    assert [g["metadata"]["name"] for g in groups] == ["example.kext.io"]
    etag = first.headers["ETag"]
    again = http.get(f"{kext.url}/apis", headers={"Accept": aggregated, "If-None-Match": etag})
    assert again.status_code == 304
    legacy = http.get(f"{kext.url}/apis").json()
    assert legacy["kind"] == "APIGroupList"
    resources = http.get(f"{kext.url}{GROUP}").json()
    names = {r["name"] for r in resources["resources"]}
    assert {"widgets", "widgets/status", "gadgets", "gadgets/status"} <= names
    assert http.get(f"{kext.url}/api").status_code == 404
    assert http.get(f"{kext.url}/version").json()["major"] == "1"
    v3 = http.get(f"{kext.url}/openapi/v3").json()
    assert "apis/example.kext.io/v1alpha1" in v3["paths"]


def test_status_subresource(http: requests.Session, base: str) -> None:
    body = widget("s")
    body["status"] = {"phase": "Ignored"}
    created = http.post(base, json=body).json()
    assert "status" not in created  # status is not set through the main resource
    created["status"] = {"phase": "Ready"}
    created["spec"]["size"] = 9  # ...and spec is not set through /status
    updated = http.put(f"{base}/s/status", json=created)
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == {"phase": "Ready"}
    assert updated.json()["spec"]["size"] == 1
    assert updated.json()["metadata"]["generation"] == 1
    patched = http.patch(f"{base}/s/status", json={"status": {"phase": "Failed"}},
                         headers={"Content-Type": "application/merge-patch+json"})
    assert patched.json()["status"]["phase"] == "Failed"
    assert http.get(f"{base}/s/status").json()["status"]["phase"] == "Failed"


def test_finalizers_keep_the_object_until_removed(http: requests.Session, base: str) -> None:
    body = widget("f")
    body["metadata"]["finalizers"] = ["example.kext.io/cleanup"]
    http.post(base, json=body)
    marked = http.delete(f"{base}/f")
    assert marked.status_code == 200
    assert marked.json()["metadata"]["deletionTimestamp"]
    assert http.get(f"{base}/f").status_code == 200  # still there
    http.patch(f"{base}/f", json={"metadata": {"finalizers": None}},
               headers={"Content-Type": "application/merge-patch+json"})
    assert http.get(f"{base}/f").status_code == 404


def test_delete_preconditions(http: requests.Session, base: str) -> None:
    created = http.post(base, json=widget("pre")).json()
    wrong = http.delete(f"{base}/pre", json={"preconditions": {"uid": "not-the-uid"}})
    assert wrong.status_code == 409 and status_of(wrong)["reason"] == "Conflict"
    right = http.delete(f"{base}/pre", json={
        "preconditions": {"uid": created["metadata"]["uid"]}, "propagationPolicy": "Foreground",
    })
    assert right.status_code == 200
    assert right.json()["status"] == "Success"
    assert right.json()["details"]["uid"] == created["metadata"]["uid"]


def test_dry_run_persists_nothing(http: requests.Session, base: str) -> None:
    dry = http.post(f"{base}?dryRun=All", json=widget("d"))
    assert dry.status_code == 201  # as kube: a dry-run create answers Created too
    assert dry.json()["metadata"]["uid"]
    assert http.get(f"{base}/d").status_code == 404
    http.post(base, json=widget("d"))
    http.patch(f"{base}/d?dryRun=All", json={"spec": {"size": 5}},
               headers={"Content-Type": "application/merge-patch+json"})
    assert http.get(f"{base}/d").json()["spec"]["size"] == 1
    assert http.delete(f"{base}/d?dryRun=All").status_code == 200
    assert http.get(f"{base}/d").status_code == 200


def test_field_validation(http: requests.Session, base: str) -> None:
    body = widget("fv", extra="x")
    strict = http.post(f"{base}?fieldValidation=Strict", json=body)
    assert strict.status_code == 400
    assert 'unknown field "spec.extra"' in status_of(strict)["message"]
    warn = http.post(f"{base}?fieldValidation=Warn", json=body)
    assert warn.status_code == 201
    assert 'unknown field \\"spec.extra\\"' in warn.headers["Warning"] or \
        'unknown field "spec.extra"' in warn.headers["Warning"]
    assert "extra" not in warn.json()["spec"]  # pruned


def test_patch_types(http: requests.Session, base: str) -> None:
    http.post(base, json=widget("pt"))
    strategic = http.patch(f"{base}/pt", json={"spec": {"size": 2}},
                           headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert strategic.status_code == 415
    assert status_of(strategic)["reason"] == "UnsupportedMediaType"
    failing = http.patch(f"{base}/pt", json=[{"op": "test", "path": "/spec/size", "value": 9}],
                         headers={"Content-Type": "application/json-patch+json"})
    assert failing.status_code == 422


def test_yaml_body_and_size_limit(http: requests.Session, base: str) -> None:
    created = http.post(base, data=yaml.safe_dump(widget("yml")),
                        headers={"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.text
    huge = widget("big", tags=["x" * 1024] * 4096)
    too_large = http.post(base, data=json.dumps(huge),
                          headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413
    assert status_of(too_large)["reason"] == "RequestEntityTooLarge"


def test_table_and_partial_metadata(http: requests.Session, base: str) -> None:
    http.post(base, json=widget("t", size=3))
    table = http.get(base, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    body = table.json()
    assert body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Size", "Color", "Phase",
                                                              "Age"]
    assert body["rows"][0]["cells"][:3] == ["t", 3, "red"]
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    partial = http.get(f"{base}/t", headers={
        "Accept": "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"}).json()
    assert partial["kind"] == "PartialObjectMetadata" and "spec" not in partial


def test_selectors_and_deletecollection(http: requests.Session, base: str) -> None:
    for name, color in (("a", "red"), ("b", "blue"), ("c", "blue")):
        body = widget(name, color=color)
        body["metadata"]["labels"] = {"color": color}
        http.post(base, json=body)
    blue = http.get(f"{base}?labelSelector=color%3Dblue").json()
    assert [i["metadata"]["name"] for i in blue["items"]] == ["b", "c"]
    by_field = http.get(f"{base}?fieldSelector=spec.color%3Dred").json()
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["a"]
    unsupported = http.get(f"{base}?fieldSelector=spec.size%3D1")
    assert unsupported.status_code == 400
    assert "field label not supported: spec.size" in status_of(unsupported)["message"]
    deleted = http.delete(f"{base}?labelSelector=color%3Dblue")
    assert deleted.status_code == 200
    assert [i["metadata"]["name"] for i in http.get(base).json()["items"]] == ["a"]


def test_generate_name_and_immutable_fields(http: requests.Session, base: str) -> None:
    body = widget("")
    body["metadata"] = {"generateName": "gen-"}
    created = http.post(base, json=body).json()
    assert created["metadata"]["name"].startswith("gen-")
    assert len(created["metadata"]["name"]) == len("gen-") + 5
    changed = dict(created)
    changed["metadata"] = {**created["metadata"], "uid": "another"}
    bad = http.put(f"{base}/{created['metadata']['name']}", json=changed)
    assert bad.status_code == 422
    assert any(c["field"] == "metadata.uid" for c in status_of(bad)["details"]["causes"])
    no_rv = dict(created)
    no_rv["metadata"] = {k: v for k, v in created["metadata"].items() if k != "resourceVersion"}
    assert http.put(f"{base}/{created['metadata']['name']}", json=no_rv).status_code == 422


def test_bad_names_are_invalid(http: requests.Session, base: str) -> None:
    bad = http.post(base, json=widget("Not_A_Name"))
    assert bad.status_code == 422
    assert status_of(bad)["details"]["causes"][0]["field"] == "metadata.name"


def test_list_resource_versions(http: requests.Session, base: str) -> None:
    created = http.post(base, json=widget("rv")).json()
    rv = created["metadata"]["resourceVersion"]
    listed = http.get(f"{base}?resourceVersion={rv}&resourceVersionMatch=Exact").json()
    assert [i["metadata"]["name"] for i in listed["items"]] == ["rv"]
    assert listed["metadata"]["resourceVersion"] == rv
    at_zero = http.get(f"{base}?resourceVersion=0").json()
    assert [i["metadata"]["name"] for i in at_zero["items"]] == ["rv"]
    bad_token = http.get(f"{base}?limit=1&continue=garbage")
    assert bad_token.status_code == 400


def test_bad_options_are_invalid_options(http: requests.Session, base: str) -> None:
    """As kube's Validate*Options: 422 Invalid on the options kind, naming the field."""
    bad_dry_run = http.post(f"{base}?dryRun=Some", json=widget("o"))
    assert bad_dry_run.status_code == 422
    assert status_of(bad_dry_run)["details"]["kind"] == "CreateOptions"
    assert status_of(bad_dry_run)["details"]["causes"][0]["field"] == "dryRun"
    bad_validation = http.post(f"{base}?fieldValidation=Loose", json=widget("o"))
    assert bad_validation.status_code == 422
    assert status_of(bad_validation)["details"]["causes"][0]["field"] == "fieldValidation"
    bad_list = http.get(f"{base}?resourceVersion=5&resourceVersionMatch=Exact&continue=x")
    assert bad_list.status_code == 422
    assert status_of(bad_list)["details"]["kind"] == "ListOptions"
    assert http.get(f"{base}/o").status_code == 404  # nothing was created
