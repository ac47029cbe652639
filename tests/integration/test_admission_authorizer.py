"""matchConditions with `authorizer` on a real kext: Delegated authorization against the
kube-apiserver stand-in (tests/kube_apiserver.py, which answers SubjectAccessReviews as its
rules say), a real HTTPS webhook (tests/webhook_server.py) whose condition asks whether the
requesting user may `review` widgets. Requests come from the front proxy (the stand-in's
client certificate) naming the user, as the aggregator sends them."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext
from tests.kube_apiserver import KubeAPIServer
from tests.webhook_server import WebhookServer, deny

SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
GROUP, VERSION = "example.kext.io", "v1alpha1"
WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"
REVIEWED = ("authorizer.group('example.kext.io').resource('widgets')"
            ".namespace(object.metadata.namespace).check('review').allowed()")


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer, cluster: KubeAPIServer, webhooks: WebhookServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    workdir: Path = tmp_path_factory.mktemp("kext-authorizer")
    kubeconfig = cluster.write_kubeconfig(workdir / "cluster.kubeconfig")
    webhook = {
        "name": "review.kext.test", "url": webhooks.url("/review"),
        "caFile": webhooks.ca_file, "type": "Validating",
        "rules": [{"operations": ["CREATE"], "apiGroups": [GROUP], "apiVersions": ["*"],
                   "resources": ["widgets"]}],
        "matchConditions": [{"name": "reviewed-users", "expression": REVIEWED}],
    }
    process = start_kext(
        workdir, etcd_server.endpoint,
        kubernetes={"kubeconfig": str(kubeconfig)},
        authentication={"fromCluster": True},
        authorization={"mode": "Delegated", "cacheAuthorizedTTL": "30s",
                       "cacheUnauthorizedTTL": "30s"},
        admission={"webhooks": [webhook]})
    try:
        yield process
    finally:
        process.stop()


def front_proxy(kext: KextProcess, cluster: KubeAPIServer) -> httpx.Client:
    context = ssl.create_default_context(cafile=kext.ca_file)
    context.load_cert_chain(cluster.front_proxy_cert_file, cluster.front_proxy_key_file)
    return httpx.Client(verify=context, trust_env=False, timeout=30)


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"size": 1}}


def reviews_for(cluster: KubeAPIServer, user: str) -> list[dict[str, Any]]:
    return [r.body["spec"] for r in cluster.requests_to(SAR, "POST")
            if r.body["spec"].get("user") == user]


def test_the_webhook_is_called_for_users_the_cluster_lets_review(
        kext: KextProcess, cluster: KubeAPIServer, webhooks: WebhookServer) -> None:
    reviewer, other = f"rita-{uuid.uuid4().hex[:6]}", f"olaf-{uuid.uuid4().hex[:6]}"
    for user in (reviewer, other):
        cluster.sar.allow(user=user, verb="create", resource="widgets")
    cluster.sar.allow(user=reviewer, verb="review", resource="widgets")
    cluster.sar.deny(user=other, verb="review", reason="not a reviewer")
    webhooks.answer("/review", deny("widgets by reviewers wait for a second pair of eyes"))
    with front_proxy(kext, cluster) as client:
        refused = client.post(f"{kext.url}{WIDGETS}", json=widget("by-reviewer"),
                              headers={"x-remote-user": reviewer})
        assert refused.json()["message"] == (
            'admission webhook "review.kext.test" denied the request: widgets by reviewers '
            "wait for a second pair of eyes")
        assert len(webhooks.reviews("/review")) == 1
        created = client.post(f"{kext.url}{WIDGETS}", json=widget("by-other"),
                              headers={"x-remote-user": other})
        assert created.status_code == 201, created.text
        assert len(webhooks.reviews("/review")) == 1  # not called for the other user
    # the check is kube's: the user's `review` on widgets of the group, any version
    expected = {"namespace": "default", "verb": "review", "group": GROUP, "version": "*",
                "resource": "widgets"}
    for user in (reviewer, other):
        asked = [s.get("resourceAttributes", {}) for s in reviews_for(cluster, user)]
        assert [a for a in asked if a.get("verb") == "review"] == [expected]

