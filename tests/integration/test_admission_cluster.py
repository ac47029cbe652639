"""admission.fromCluster on a real kext: the cluster (the HTTPS kube-apiserver stand-in of
tests/kube_apiserver.py) serves webhook configurations and namespaces, which kext lists and
watches; the webhooks are real (tests/webhook_server.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext, status_of
from tests.kube_apiserver import KubeAPIServer
from tests.webhook_server import WebhookServer, allow, deny

GROUP = "example.kext.io"
ADMISSION = "admissionregistration.k8s.io/v1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-apiserver"))
    server.start()
    for name, labels in (("followed", {}), ("labelled", {"team": "a"})):
        server.put(namespace(name, labels))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer, cluster: KubeAPIServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    workdir: Path = tmp_path_factory.mktemp("kext-cluster")
    kubeconfig = cluster.write_kubeconfig(workdir / "cluster.kubeconfig")
    process = start_kext(workdir, etcd_server.endpoint,
                         kubernetes={"kubeconfig": str(kubeconfig)},
                         admission={"fromCluster": True})
    yield process
    process.stop()


def namespace(name: str, labels: dict[str, str] | None = None,
              phase: str = "Active") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name,
                                                  **(labels or {})}},
            "status": {"phase": phase}}


def configuration(name: str, webhooks: WebhookServer, path: str,
                  **fields: Any) -> dict[str, Any]:
    return {"apiVersion": ADMISSION, "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": f"{name}.cluster.kext.test",
                "clientConfig": {"url": webhooks.url(path), "caBundle": webhooks.ca_bundle},
                "rules": [{"operations": ["CREATE"], "apiGroups": [GROUP], "apiVersions": ["*"],
                           "resources": ["widgets"]}],
                "sideEffects": "None", "admissionReviewVersions": ["v1"],
                **fields,
            }]}


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": 1}}


def widgets(kext: KextProcess, ns: str) -> str:
    return f"{kext.url}/apis/{GROUP}/v1alpha1/namespaces/{ns}/widgets"


def within(seconds: float, attempt: Callable[[int], bool]) -> float:
    """Call attempt(i) until it returns True; the seconds that took (fails after seconds)."""
    started = time.monotonic()
    for i in range(10_000):
        if attempt(i):
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, f"not within {seconds}s"
        time.sleep(0.1)
    raise AssertionError("unreachable")


def test_a_webhook_configuration_added_in_the_cluster_is_followed_within_seconds(
        kext: KextProcess, cluster: KubeAPIServer, webhooks: WebhookServer) -> None:
    http = kext.session()
    assert http.post(widgets(kext, "followed"), json=widget("before")).status_code == 201
    assert webhooks.reviews("/cluster") == []
    webhooks.answer("/cluster", deny("the cluster says no"))
    cluster.put(configuration("policy", webhooks, "/cluster"))

    def refused(i: int) -> bool:
        response = http.post(widgets(kext, "followed"), json=widget(f"after-{i}"))
        if response.status_code == 201:
            return False
        assert response.status_code == 400
        assert status_of(response)["message"] == (
            'admission webhook "policy.cluster.kext.test" denied the request: the cluster '
            "says no")
        return True

    within(10, refused)
    [review] = webhooks.reviews("/cluster")
    assert review["namespace"] == "followed" and review["operation"] == "CREATE"

    cluster.delete(ADMISSION, "ValidatingWebhookConfiguration", "policy")
    within(10, lambda i: http.post(widgets(kext, "followed"),
                                   json=widget(f"later-{i}")).status_code == 201)
    webhooks.answer("/cluster", allow())


def test_a_namespace_selector_reads_the_cluster_namespaces_labels(
        kext: KextProcess, cluster: KubeAPIServer, webhooks: WebhookServer) -> None:
    webhooks.clear()
    webhooks.answer("/team", deny("team a only"))
    cluster.put(configuration("team", webhooks, "/team",
                              namespaceSelector={"matchLabels": {"team": "a"}}))
    http = kext.session()
    within(10, lambda i: http.post(widgets(kext, "labelled"),
                                   json=widget(f"team-{i}")).status_code == 400)
    assert http.post(widgets(kext, "followed"), json=widget("other-team")).status_code == 201
    assert {r["namespace"] for r in webhooks.reviews("/team")} == {"labelled"}
    cluster.delete(ADMISSION, "ValidatingWebhookConfiguration", "team")


def test_namespace_lifecycle(kext: KextProcess, cluster: KubeAPIServer) -> None:
    http = kext.session()
    missing = kext.kubectl("create", "-n", "nowhere", "-f", "-",
                           input='{"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",'
                                 ' "metadata": {"name": "lost"}}', check=False)
    assert ('Error from server (NotFound): error when creating "STDIN": namespaces "nowhere" '
            "not found") in missing.stderr

    cluster.put(namespace("dying"))
    within(10, lambda i: http.post(widgets(kext, "dying"),
                                   json=widget("early")).status_code == 201)
    cluster.put(namespace("dying", phase="Terminating"))

    def refused(i: int) -> bool:
        return http.post(widgets(kext, "dying"), json=widget(f"late-{i}")).status_code == 403

    within(10, refused)
    response = http.post(widgets(kext, "dying"), json=widget("too-late"))
    status = status_of(response)
    assert (response.status_code, status["reason"]) == (403, "Forbidden")
    assert status["message"] == (
        'widgets.example.kext.io "too-late" is forbidden: unable to create new content in '
        "namespace dying because it is being terminated")
    assert status["details"]["causes"] == [{
        "reason": "NamespaceTerminating", "message": "namespace dying is being terminated",
        "field": "metadata.namespace"}]
    # what already exists may still change and go
    merge = {"Content-Type": "application/merge-patch+json"}
    assert http.patch(f"{widgets(kext, 'dying')}/early", json={"spec": {"size": 2}},
                      headers=merge).status_code == 200
    assert http.delete(f"{widgets(kext, 'dying')}/early").status_code == 200
    # cluster-scoped resources have no namespace to check
    gadget = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}}
    assert http.post(f"{kext.url}/apis/{GROUP}/v1alpha1/gadgets", json=gadget).status_code == 201


def test_a_validating_admission_policy_from_the_cluster(
        kext: KextProcess, cluster: KubeAPIServer) -> None:
    http = kext.session()
    cluster.put({
        "apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "cluster-small"},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "operations": ["CREATE"], "apiGroups": [GROUP], "apiVersions": ["*"],
                "resources": ["widgets"]}]},
            "validations": [{
                # the cluster's Namespace object, as kube's policies see it
                "expression": "namespaceObject.metadata.?labels.team.orValue('') == 'a' || "
                              "object.spec.size < 5",
                "messageExpression": "'too big for namespace ' + namespaceObject.metadata.name",
            }]}})
    cluster.put({"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicyBinding",
                 "metadata": {"name": "cluster-small-binding"},
                 "spec": {"policyName": "cluster-small", "validationActions": ["Deny"]}})
    big = {**widget("big"), "spec": {"size": 7}}

    def refused(i: int) -> bool:
        response = http.post(widgets(kext, "followed"),
                             json={**big, "metadata": {"name": f"big-{i}"}})
        if response.status_code == 201:
            return False
        assert response.status_code == 422
        assert status_of(response)["message"] == (
            f'widgets.example.kext.io "big-{i}" is forbidden: ValidatingAdmissionPolicy '
            "'cluster-small' with binding 'cluster-small-binding' denied request: too big for "
            "namespace followed")
        return True

    within(10, refused)
    assert http.post(widgets(kext, "labelled"), json=big).status_code == 201
    assert http.post(widgets(kext, "followed"), json=widget("small")).status_code == 201

    cluster.delete(ADMISSION, "ValidatingAdmissionPolicyBinding", "cluster-small-binding")
    within(10, lambda i: http.post(widgets(kext, "followed"), json={
        **big, "metadata": {"name": f"unbound-{i}"}}).status_code == 201)
    cluster.delete(ADMISSION, "ValidatingAdmissionPolicy", "cluster-small")
