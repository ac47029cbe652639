"""The scale subresource on a real kext: `kubectl scale`, what a HorizontalPodAutoscaler reads
(the kubernetes client's scale call), PUT with a resourceVersion precondition, JSON patch,
merge patch and server-side apply of the Scale, and kube's answers when there is nothing to
scale."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests

from tests.etcd import EtcdServer
from tests.kext_process import REPO, KextProcess, start_kext, status_of

GIZMOS = REPO / "tests/resources/gizmos.yaml"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    workdir: Path = tmp_path_factory.mktemp("scale")
    process = start_kext(workdir, etcd_server.endpoint,
                         resources=[{"file": str(GIZMOS)},
                                    {"file": str(REPO / "config/resources/widgets.yaml")}])
    yield process
    process.stop()


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def base(kext: KextProcess, ns: str) -> str:
    return f"{kext.url}/apis/test.kext.io/v1/namespaces/{ns}/gizmos"


def create(kext: KextProcess, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    response = kext.session().post(base(kext, ns), json={
        "apiVersion": "test.kext.io/v1", "kind": "Gizmo", "metadata": {"name": name},
        "spec": spec})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_kubectl_scale(kext: KextProcess, ns: str) -> None:
    create(kext, ns, "g", replicas=1, color="red")
    scaled = kext.kubectl("scale", "gizmo", "g", "-n", ns, "--replicas=3")
    assert "gizmo.test.kext.io/g scaled" in scaled.stdout
    got = json.loads(kext.kubectl("get", "gizmo", "g", "-n", ns, "-o", "json").stdout)
    assert got["spec"] == {"replicas": 3, "color": "red"}
    assert got["metadata"]["generation"] == 2
    # kubectl checks --current-replicas against the Scale it reads first
    refused = kext.kubectl("scale", "gizmo", "g", "-n", ns, "--current-replicas=2",
                           "--replicas=5", check=False)
    assert refused.returncode != 0 and "Expected replicas to be 2, was 3" in refused.stderr
    kext.kubectl("scale", "gizmo", "g", "-n", ns, "--current-replicas=3", "--replicas=5")
    table = kext.kubectl("get", "gizmos", "-n", ns).stdout.split()
    assert table[:4] == ["NAME", "REPLICAS", "g", "5"]
    # the Scale itself, as kube's table of it
    scale_table = kext.kubectl("get", "gizmo", "g", "-n", ns, "--subresource=scale").stdout
    header, row = scale_table.splitlines()
    assert header.split() == ["NAME", "DESIRED", "AVAILABLE", "AGE"]
    assert row.split()[:3] == ["g", "5", "0"]


def test_an_autoscaler_reads_the_selector_and_status_replicas(kext: KextProcess,
                                                              ns: str) -> None:
    create(kext, ns, "web", replicas=2)
    kext.kubectl("patch", "gizmo", "web", "-n", ns, "--subresource=status", "--type", "merge",
                 "-p", '{"status":{"replicas":2,"selector":"app=web"}}')
    client = kubernetes.config.new_client_from_config(config_file=kext.kubeconfig)
    try:
        api = kubernetes.client.CustomObjectsApi(client)
        scale = api.get_namespaced_custom_object_scale("test.kext.io", "v1", ns, "gizmos",
                                                       "web")
        assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
        assert scale["spec"] == {"replicas": 2}
        assert scale["status"] == {"replicas": 2, "selector": "app=web"}
        # what an autoscaler does with it: write the replicas it wants
        scale["spec"]["replicas"] = 4
        replaced = api.replace_namespaced_custom_object_scale(
            "test.kext.io", "v1", ns, "gizmos", "web", scale)
        assert replaced["spec"] == {"replicas": 4}
    finally:
        client.close()
    got = kext.session().get(f"{base(kext, ns)}/web").json()
    assert got["spec"]["replicas"] == 4
    assert got["status"] == {"replicas": 2, "selector": "app=web"}  # a Scale writes no status


def test_put_scale_with_a_resource_version_precondition(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    create(kext, ns, "p", replicas=1)
    url = f"{base(kext, ns)}/p/scale"
    scale = http.get(url).json()
    scale["spec"]["replicas"] = 2
    assert http.put(url, json=scale).status_code == 200
    scale["spec"]["replicas"] = 3  # the resourceVersion read before the first PUT: stale
    stale = http.put(url, json=scale)
    assert stale.status_code == 409
    assert status_of(stale)["message"] == (
        'Operation cannot be fulfilled on gizmos.test.kext.io "p": the object has been '
        "modified; please apply your changes to the latest version and try again")
    del scale["metadata"]["resourceVersion"]  # no precondition
    assert http.put(url, json=scale).json()["spec"] == {"replicas": 3}
    wrong = http.put(url, json={**scale, "metadata": {"name": "other"}})
    assert wrong.status_code == 400
    assert status_of(wrong)["message"] == (
        "the name of the object (other) does not match the name on the URL (p)")


def test_patch_scale_json_and_merge(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    create(kext, ns, "j", replicas=1)
    url = f"{base(kext, ns)}/j/scale"
    merged = http.patch(url, data='{"spec":{"replicas":2}}', headers=MERGE)
    assert merged.status_code == 200 and merged.json()["spec"] == {"replicas": 2}
    patched = http.patch(url, headers=JSON_PATCH, data=json.dumps([
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 5}]))
    assert patched.status_code == 200 and patched.json()["spec"] == {"replicas": 5}
    failed = http.patch(url, headers=JSON_PATCH, data=json.dumps([
        {"op": "test", "path": "/spec/replicas", "value": 9}]))
    assert failed.status_code == 422
    assert status_of(failed)["message"] == (
        "the server rejected our request due to an error in our request: testing value "
        "/spec/replicas failed: test failed")
    negative = http.patch(url, data='{"spec":{"replicas":-1}}', headers=MERGE)
    assert negative.status_code == 422
    assert status_of(negative)["message"] == (
        'Gizmo.test.kext.io "j" is invalid: [spec.replicas: Invalid value: -1: '
        "spec.replicas in body should be greater than or equal to 0, .spec.replicas: Invalid "
        "value: -1: should be a non-negative integer]")


def test_apply_to_scale_owns_the_replicas(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    create(kext, ns, "a", replicas=1, color="red")
    url = f"{base(kext, ns)}/a/scale"
    scale_6 = "apiVersion: autoscaling/v1\nkind: Scale\nspec:\n  replicas: 6\n"
    # whoever created the object owns its replicas, seen through the Scale too
    taken = http.patch(url, params={"fieldManager": "autoscaler"}, headers=APPLY, data=scale_6)
    assert taken.status_code == 409
    assert status_of(taken)["message"] == (
        'Apply failed with 1 conflict: conflict with "python-requests" using autoscaling/v1: '
        ".spec.replicas")
    applied = http.patch(url, params={"fieldManager": "autoscaler", "force": "true"},
                         headers=APPLY, data=scale_6)
    assert applied.status_code == 200, applied.text
    assert applied.json()["spec"] == {"replicas": 6}
    got = http.get(f"{base(kext, ns)}/a").json()
    owner = next(e for e in got["metadata"]["managedFields"] if e["manager"] == "autoscaler")
    assert (owner["operation"], owner["subresource"], owner["apiVersion"]) == (
        "Apply", "scale", "test.kext.io/v1")
    assert owner["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    # another applier of the Scale conflicts with the owner of the replicas...
    conflict = http.patch(url, params={"fieldManager": "other"}, headers=APPLY,
                          data="apiVersion: autoscaling/v1\nkind: Scale\nspec:\n  replicas: 2\n")
    assert conflict.status_code == 409
    assert 'conflict with "autoscaler" with subresource "scale"' in status_of(conflict)["message"]
    # ...and so does an apply of the object itself
    manifest = ("apiVersion: test.kext.io/v1\nkind: Gizmo\nmetadata:\n  name: a\n"
                "spec:\n  replicas: 1\n  color: red\n")
    whole = http.patch(f"{base(kext, ns)}/a", params={"fieldManager": "deployer"},
                       headers=APPLY, data=manifest)
    assert whole.status_code == 409 and ".spec.replicas" in status_of(whole)["message"]


def test_nothing_to_scale(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    create(kext, ns, "none", color="red")
    url = f"{base(kext, ns)}/none/scale"
    missing = http.get(url)
    assert missing.status_code == 500
    assert status_of(missing)["message"] == (
        'Internal error occurred: the spec replicas field ".spec.replicas" does not exist')
    empty = http.patch(url, data='{"metadata":{"labels":{"a":"b"}}}', headers=MERGE)
    assert empty.status_code == 400
    assert status_of(empty)["message"] == (
        'the spec replicas field ".spec.replicas" cannot be empty')
    assert http.patch(url, data='{"spec":{"replicas":1}}', headers=MERGE).status_code == 200
    # a resource without the subresource has no /scale
    widgets = f"{kext.url}/apis/example.kext.io/v1alpha1/namespaces/{ns}/widgets/w/scale"
    answer: requests.Response = http.get(widgets)
    assert answer.status_code == 404
    refused = kext.kubectl("scale", "widget", "w", "-n", ns, "--replicas=2", check=False)
    assert refused.returncode != 0
