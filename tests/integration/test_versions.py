"""A resource with two versions on a real kext, driven with kubectl and HTTP: every served
version read and written, stored as the storage version, converted with None, with the
Python converter of examples/ and with a real HTTPS conversion webhook; the deprecated
version's warning; a watch through the version that is not stored; and the stored-versions
record when the storage version changes."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conversion_webhook import ConversionWebhook
from tests.etcd import EtcdServer
from tests.kext_process import REPO, KextProcess, start_kext, status_of

GIZMOS = REPO / "tests/resources/gizmos.yaml"
WARNING = "Warning: test.kext.io/v1beta1 Gizmo is deprecated; use test.kext.io/v1 Gizmo"
V1BETA1 = "gizmos.v1beta1.test.kext.io"  # kubectl's name for the version that is not preferred


def crd() -> dict[str, Any]:
    return yaml.safe_load(GIZMOS.read_text())


def start(workdir: Path, etcd: EtcdServer, definition: dict[str, Any],
          **overrides: Any) -> KextProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gizmos.yaml"
    path.write_text(yaml.safe_dump(definition))
    return start_kext(workdir, etcd.endpoint, resources=[{"file": str(path)}], **overrides)


def gizmo(version: str, name: str, **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": f"test.kext.io/{version}", "kind": "Gizmo",
                           "metadata": {"name": name}, "spec": spec})


def etcd_value(etcd: EtcdServer, key: str) -> bytes:
    """A key's value, read through etcd's own JSON gateway."""
    answer = requests.post(f"{etcd.endpoint}/v3/kv/range", timeout=10,
                           json={"key": base64.b64encode(key.encode()).decode()}).json()
    return base64.b64decode(answer["kvs"][0]["value"])


def get_json(kext: KextProcess, resource: str, name: str, ns: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(
        kext.kubectl("get", resource, name, "-n", ns, "-o", "json").stdout)
    return got


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def kext_none(etcd_server: EtcdServer,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    process = start(tmp_path_factory.mktemp("none"), etcd_server, crd())
    yield process
    process.stop()


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConversionWebhook]:
    server = ConversionWebhook(tmp_path_factory.mktemp("webhook"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def kext_hook(etcd_server: EtcdServer,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    definition = crd()
    definition["metadata"]["annotations"] = {
        "kext.io/hooks": json.dumps({"conversion": "examples.gizmo_conversion:convert"})}
    process = start(tmp_path_factory.mktemp("hook"), etcd_server, definition)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def kext_webhook(etcd_server: EtcdServer, webhook: ConversionWebhook,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    definition = crd()
    definition["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
        "conversionReviewVersions": ["v1"],
        "clientConfig": {"url": webhook.url, "caBundle": webhook.ca_bundle}}}
    process = start(tmp_path_factory.mktemp("webhook-kext"), etcd_server, definition)
    yield process
    process.stop()


@pytest.fixture(params=["hook", "webhook"])
def converting(request: pytest.FixtureRequest) -> KextProcess:
    """kext with a real converter: the example Python hook, or the HTTPS webhook."""
    process: KextProcess = request.getfixturevalue(f"kext_{request.param}")
    return process


def test_none_serves_both_versions_of_one_stored_object(kext_none: KextProcess,
                                                        ns: str) -> None:
    created = kext_none.kubectl("create", "-n", ns, "-f", "-",
                                input=gizmo("v1beta1", "old", count=2))
    assert "gizmo.test.kext.io/old created" in created.stdout
    assert WARNING in created.stderr  # kubectl prints the deprecated version's warning
    as_v1 = get_json(kext_none, "gizmos", "old", ns)
    # None conversion: the apiVersion is rewritten, the fields are as they were written
    assert as_v1["apiVersion"] == "test.kext.io/v1" and as_v1["spec"] == {"count": 2}
    kext_none.kubectl("create", "-n", ns, "-f", "-", input=gizmo("v1", "new", replicas=3))
    listed = kext_none.kubectl("get", V1BETA1, "-n", ns, "-o", "json")
    assert WARNING in listed.stderr
    items = json.loads(listed.stdout)["items"]
    assert [(i["metadata"]["name"], i["apiVersion"]) for i in items] == [
        ("new", "test.kext.io/v1beta1"), ("old", "test.kext.io/v1beta1")]
    # the preferred version carries no warning
    assert "Warning" not in kext_none.kubectl("get", "gizmos", "-n", ns).stderr


def test_a_converter_maps_fields_between_versions(converting: KextProcess, ns: str) -> None:
    kext = converting
    kext.kubectl("create", "-n", ns, "-f", "-", input=gizmo("v1beta1", "g", count=3,
                                                           color="red"))
    table = kext.kubectl("get", "gizmos", "-n", ns).stdout.split()
    assert table[:4] == ["NAME", "REPLICAS", "g", "3"]  # stored and served as v1's replicas
    assert get_json(kext, "gizmos", "g", ns)["spec"] == {"replicas": 3, "color": "red"}

    kext.kubectl("patch", "gizmo", "g", "-n", ns, "--type", "merge",
                 "-p", '{"spec":{"replicas":5}}')
    assert get_json(kext, V1BETA1, "g", ns)["spec"] == {"count": 5, "color": "red"}
    patched = kext.kubectl("patch", V1BETA1, "g", "-n", ns, "--type", "merge",
                           "-p", '{"spec":{"count":6}}')
    assert WARNING in patched.stderr
    assert get_json(kext, "gizmos", "g", ns)["spec"]["replicas"] == 6

    # kubectl scale writes v1's spec.replicas through /scale: v1beta1 sees it as count
    kext.kubectl("scale", "gizmo", "g", "-n", ns, "--replicas=7")
    assert get_json(kext, V1BETA1, "g", ns)["spec"]["count"] == 7
    scale = json.loads(kext.kubectl(
        "get", "--raw", f"/apis/test.kext.io/v1beta1/namespaces/{ns}/gizmos/g/scale").stdout)
    assert scale["spec"] == {"replicas": 7}


def test_a_watch_through_the_version_that_is_not_stored(converting: KextProcess,
                                                        ns: str) -> None:
    kext = converting
    http = kext.session()
    url = (f"{kext.url}/apis/test.kext.io/v1beta1/namespaces/{ns}/gizmos"
           "?watch=true&timeoutSeconds=20")
    events: list[dict[str, Any]] = []
    with http.get(url, stream=True, timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["Warning"] == (
            '299 - "test.kext.io/v1beta1 Gizmo is deprecated; use test.kext.io/v1 Gizmo"')

        def write() -> None:
            kext.kubectl("create", "-n", ns, "-f", "-", input=gizmo("v1", "w", replicas=2))
            kext.kubectl("patch", "gizmo", "w", "-n", ns, "--type", "merge",
                         "-p", '{"spec":{"replicas":4}}')

        writer = threading.Thread(target=write)
        writer.start()
        for line in stream.iter_lines():
            if line:
                events.append(json.loads(line))
            if len(events) == 2:
                break
        writer.join()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
    assert [e["object"]["apiVersion"] for e in events] == ["test.kext.io/v1beta1"] * 2
    assert [e["object"]["spec"] for e in events] == [{"count": 2}, {"count": 4}]


def test_a_failing_webhook_is_a_500_with_its_message(kext_webhook: KextProcess,
                                                     webhook: ConversionWebhook,
                                                     ns: str) -> None:
    kext_webhook.kubectl("create", "-n", ns, "-f", "-", input=gizmo("v1", "f", replicas=1))
    webhook.failure = "the converter is on strike"
    try:
        result = kext_webhook.kubectl("get", V1BETA1, "f", "-n", ns, check=False)
        response = kext_webhook.session().get(
            f"{kext_webhook.url}/apis/test.kext.io/v1beta1/namespaces/{ns}/gizmos/f")
    finally:
        webhook.failure = ""
    message = ("conversion webhook for test.kext.io/v1, Kind=Gizmo failed: the converter is "
               "on strike")
    assert result.returncode == 1
    assert f"Error from server: {message}" in result.stderr
    assert response.status_code == 500
    status = status_of(response)
    assert status["message"] == message and "reason" not in status
    # the webhook's connections are pooled, not one per call
    before = len(webhook.connections)
    for _ in range(5):
        kext_webhook.kubectl("get", V1BETA1, "f", "-n", ns)
    assert len(webhook.connections) - before <= 1


def test_a_webhook_that_cannot_be_verified(etcd_server: EtcdServer, webhook: ConversionWebhook,
                                           tmp_path: Path, ns: str) -> None:
    definition = crd()
    other_ca = ConversionWebhook(tmp_path / "other")  # its CA did not sign the webhook's cert
    try:
        definition["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {"url": webhook.url, "caBundle": other_ca.ca_bundle}}}
        kext = start(tmp_path / "kext", etcd_server, definition)
        try:
            response = kext.session().post(
                f"{kext.url}/apis/test.kext.io/v1beta1/namespaces/{ns}/gizmos",
                json=yaml.safe_load(gizmo("v1beta1", "x", count=1)))
        finally:
            kext.stop()
    finally:
        other_ca.close()
    assert response.status_code == 500
    assert status_of(response)["message"] == (
        f'conversion webhook for test.kext.io/v1beta1, Kind=Gizmo failed: Post "{webhook.url}'
        '?timeout=30s": tls: failed to verify certificate: x509: certificate signed by unknown '
        "authority")


def test_changing_the_storage_version_keeps_old_objects_readable(
        etcd_server: EtcdServer, tmp_path: Path, ns: str) -> None:
    prefix = f"/kext-test-{uuid.uuid4().hex[:8]}"
    storage = {"prefix": prefix, "etcd": {"endpoints": [etcd_server.endpoint]}}
    hooks = {"kext.io/hooks": json.dumps({"conversion": "examples.gizmo_conversion:convert"})}
    first = crd()
    first["metadata"]["annotations"] = hooks
    kext = start(tmp_path / "one", etcd_server, first, storage=storage)
    try:
        kext.kubectl("create", "-n", ns, "-f", "-", input=gizmo("v1", "kept", replicas=2))
    finally:
        kext.stop()

    second = crd()  # v1beta1 becomes the storage version
    second["metadata"]["annotations"] = hooks
    second["spec"]["versions"][0]["storage"] = True
    second["spec"]["versions"][1]["storage"] = False
    kext = start(tmp_path / "two", etcd_server, second, storage=storage)
    try:
        assert get_json(kext, "gizmos", "kept", ns)["spec"] == {"replicas": 2}
        assert get_json(kext, V1BETA1, "kept", ns)["spec"] == {"count": 2}
        kext.kubectl("create", "-n", ns, "-f", "-", input=gizmo("v1", "fresh", replicas=1))
        record = etcd_value(etcd_server, f"{prefix}/kext.io/storedversions/gizmos.test.kext.io")
    finally:
        kext.stop()
    assert json.loads(record)["storedVersions"] == ["v1", "v1beta1"]

    third = crd()  # v1 dropped while an object is still stored as v1: refused at start-up
    third["metadata"]["annotations"] = hooks
    third["spec"]["versions"] = [second["spec"]["versions"][0]]
    with pytest.raises(RuntimeError) as failed:
        start(tmp_path / "three", etcd_server, third, storage=storage)
    assert ("gizmos.test.kext.io: objects are stored in versions spec.versions no longer lists "
            "(1 as test.kext.io/v1)") in str(failed.value)


def test_discovery_lists_the_scale_subresource(kext_none: KextProcess) -> None:
    http: requests.Session = kext_none.session()
    listed = http.get(f"{kext_none.url}/apis/test.kext.io/v1").json()["resources"]
    assert {"name": "gizmos/scale", "singularName": "", "namespaced": True,
            "group": "autoscaling", "version": "v1", "kind": "Scale",
            "verbs": ["get", "patch", "update"]} in listed
    resources = kext_none.kubectl("api-resources", "--api-group", "test.kext.io",
                                  "-o", "wide").stdout
    assert "gizmos" in resources
