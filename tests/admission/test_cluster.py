"""The cluster's admission objects followed in one process: the kube-apiserver stand-in, the
kube client on this test's loop, and ClusterAdmission's informers, webhooks and
NamespaceLifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kext.admission import cluster as cluster_module
from kext.admission.attributes import (
    CREATE,
    UPDATE,
    Attributes,
    GroupVersionKind,
    GroupVersionResource,
)
from kext.admission.cluster import ClusterAdmission, CompositeWebhooks, NamespaceLifecycle
from kext.admission.policy.source import StaticPolicies
from kext.admission.webhook.call import StaticWebhooks
from kext.admission.webhook.definition import VALIDATING, Webhook
from kext.api.errors import StatusError
from kext.kube import KubeClient, load_kubeconfig
from tests.kube_apiserver import KubeAPIServer

pytestmark = pytest.mark.asyncio

GROUP = "example.kext.io"
ADMISSION = "admissionregistration.k8s.io/v1"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeAPIServer]:
    server = KubeAPIServer(tmp_path / "kube")
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def following(kube: KubeAPIServer, tmp_path: Path,
                    reactor: Any) -> AsyncIterator[ClusterAdmission]:
    access = load_kubeconfig(str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    client = KubeClient(access, reactor=reactor)
    followed = ClusterAdmission(client)
    followed.start()
    try:
        yield followed
    finally:
        await followed.stop()
        await client.close()


def create(namespace: str, name: str = "w") -> Attributes:
    return Attributes(CREATE, GroupVersionKind(GROUP, "v1alpha1", "Widget"),
                      GroupVersionResource(GROUP, "v1alpha1", "widgets"), "", name, namespace,
                      {"metadata": {"name": name}})


def namespace(name: str, phase: str = "Active") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
            "status": {"phase": phase}}


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_namespace_lifecycle(kube: KubeAPIServer, following: ClusterAdmission) -> None:
    kube.put(namespace("live"))
    kube.put(namespace("ending", "Terminating"))
    lifecycle = NamespaceLifecycle(following.namespaces)
    await until(lambda: following.namespaces.informer.get("ending") is not None)
    assert await lifecycle.admit(create("live")) is None
    with pytest.raises(StatusError) as refused:
        await lifecycle.admit(create("ending"))
    assert (refused.value.code, refused.value.message) == (
        403, 'widgets.example.kext.io "w" is forbidden: unable to create new content in '
             "namespace ending because it is being terminated")
    assert lifecycle.handles(CREATE) and not lifecycle.handles(UPDATE)
    with pytest.raises(StatusError) as missing:
        await lifecycle.admit(create("gone"))
    assert (missing.value.code, missing.value.message) == (404, 'namespaces "gone" not found')
    # a namespace the cache has not seen (it stopped following) is asked of kube-apiserver
    await following.namespaces.informer.stop()
    kube.put(namespace("brand-new"))
    assert await lifecycle.admit(create("brand-new")) is None
    assert [r.method for r in kube.requests_to("/api/v1/namespaces/brand-new")] == ["GET"]


async def test_webhook_configurations_are_followed_in_name_order(
        kube: KubeAPIServer, following: ClusterAdmission) -> None:
    def configuration(name: str, *hooks: str, **extra: Any) -> dict[str, Any]:
        return {"apiVersion": ADMISSION, "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [{"name": hook, "clientConfig": {"service": {
                    "namespace": "policy", "name": "checker", "path": "/check"}},
                    "sideEffects": "None", "admissionReviewVersions": ["v1"],
                    "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                               "resources": ["*"]}], **extra} for hook in hooks]}

    kube.put(configuration("zeta", "z.example.com"))
    kube.put(configuration("alpha", "a.example.com", "b.example.com",
                           newerField={"kube": "may add fields"}))
    kube.put(configuration("broken", "not-qualified"))
    static = StaticWebhooks([Webhook("own.example.com", VALIDATING, "https://own/")])
    webhooks = CompositeWebhooks(static, following)
    await webhooks.ready(create("ns"))
    await until(lambda: len(webhooks.validating) == 4)
    assert [(w.configuration, w.name) for w in webhooks.validating] == [
        ("", "own.example.com"), ("alpha", "a.example.com"), ("alpha", "b.example.com"),
        ("zeta", "z.example.com")]
    assert webhooks.validating[1].url == "https://checker.policy.svc:443/check"
    assert webhooks.mutating == ()
    kube.delete(ADMISSION, "ValidatingWebhookConfiguration", "alpha")
    await until(lambda: len(webhooks.validating) == 2)


async def test_requests_wait_for_the_first_lists_then_are_refused(
        tmp_path: Path, reactor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "READY_TIMEOUT", 0.3)
    down = KubeAPIServer(tmp_path / "down")  # never started: nothing listens
    access = load_kubeconfig(str(down.write_kubeconfig(tmp_path / "kubeconfig")))
    client = KubeClient(access, reactor=reactor)
    followed = ClusterAdmission(client)
    followed.start()
    try:
        webhooks = CompositeWebhooks(StaticWebhooks([]), followed)
        with pytest.raises(StatusError) as refused:
            await webhooks.ready(create("ns"))
        assert (refused.value.code, refused.value.reason, refused.value.message) == (
            403, "Forbidden",
            'widgets.example.kext.io "w" is forbidden: not yet ready to handle request')
    finally:
        await followed.stop()
        await client.close()



async def test_the_clusters_policies_are_followed_compiled_once_and_bad_ones_left_out(
        kube: KubeAPIServer, following: ClusterAdmission,
        caplog: pytest.LogCaptureFixture) -> None:
    def policy(name: str, expression: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name},
                "spec": {"matchConstraints": {"resourceRules": [{
                    "operations": ["CREATE"], "apiGroups": [GROUP], "apiVersions": ["*"],
                    "resources": ["widgets"]}]},
                    "validations": [{"expression": expression}], **spec}}

    def binding(name: str, policy_name: str) -> dict[str, Any]:
        return {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name},
                "spec": {"policyName": policy_name, "validationActions": ["Deny"]}}

    policies = following.policies
    kube.put(policy("b-second", "true"))
    kube.put(policy("a-first", "object.nope +"))  # does not compile: fails when evaluated
    kube.put(policy("unbound", "true"))
    kube.put(policy("broken", "true", failurePolicy="Sometimes"))  # kube would refuse it
    for name in ("a-first", "b-second", "broken"):
        kube.put(binding(f"{name}-binding", name))
    await until(lambda: len(policies.hooks) == 2)
    assert [(h.name, [b.name for b in h.bindings]) for h in policies.hooks] == [
        ("a-first", ["a-first-binding"]), ("b-second", ["b-second-binding"])]
    first = policies.hooks[0].policy
    assert first.compile_problems()[0][0] == "spec.validations[0].expression"
    assert "ValidatingAdmissionPolicy broken: spec.failurePolicy: Unsupported value" in caplog.text
    # the defaults kube's API adds reached kext as the cluster serves them
    assert policies.hooks[1].policy.policy.match_constraints.match_policy == "Equivalent"

    kube.put(binding("second-binding-too", "b-second"))
    await until(lambda: len(policies.hooks[1].bindings) == 2)
    assert policies.hooks[0].policy is first  # unchanged: not compiled again
    kube.delete(ADMISSION, "ValidatingAdmissionPolicy", "a-first")
    await until(lambda: [h.name for h in policies.hooks] == ["b-second"])


async def test_a_cluster_serving_no_admission_policies_has_none(
        kube: KubeAPIServer, tmp_path: Path, reactor: Any) -> None:
    # before kube 1.30 admissionregistration.k8s.io/v1 has no policies: lists answer 404
    for plural in ("validatingadmissionpolicies", "validatingadmissionpolicybindings"):
        kube.fail(f"/apis/{ADMISSION}/{plural}", 404)
    access = load_kubeconfig(str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    client = KubeClient(access, reactor=reactor)
    followed = ClusterAdmission(client)
    followed.start()
    try:
        composite = cluster_module.CompositePolicies(StaticPolicies([], []), followed)
        await composite.ready(create("default"))  # not refused as "not yet ready"
        assert composite.hooks == ()
        webhooks = CompositeWebhooks(StaticWebhooks([]), followed)
        await webhooks.ready(create("default"))  # webhooks do not wait for policies
    finally:
        await followed.stop()
        await client.close()
