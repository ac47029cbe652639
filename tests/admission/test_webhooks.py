"""Webhook admission end to end in one process: the chain kext builds, its real HTTPS client
on this test's loop, and the real webhook server of tests/webhook_server.py."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from kext.admission.attributes import (
    CREATE,
    DELETE,
    UPDATE,
    GroupVersionKind,
    GroupVersionResource,
    request_attributes,
)
from kext.admission.chain import Chain
from kext.admission.interfaces import ObjectInterfaces
from kext.admission.plugins import AdmissionPlugins
from kext.admission.webhook.call import StaticWebhooks
from kext.admission.webhook.client import WebhookClient
from kext.admission.webhook.definition import MUTATING, VALIDATING, MatchCondition, Rule, Webhook
from kext.api.errors import StatusError
from kext.api.resource import ResourceDefinition, parse_crd
from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision
from kext.auth.user import UserInfo
from kext.certs import new_ca
from kext.metrics import Metrics
from kext.registry.rest import RequestContext, options_object
from kext.registry.strategy import crd_strategies
from tests.kext_process import REPO, free_port
from tests.webhook_server import WebhookServer, allow, deny, hang, patch

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
GROUP = "example.kext.io"
KIND = GroupVersionKind(GROUP, "v1alpha1", "Widget")
RESOURCE = GroupVersionResource(GROUP, "v1alpha1", "widgets")
EVERY_WIDGET = (Rule(("*",), (GROUP,), ("*",), ("widgets",)),)


def widgets(extra_version: str = "") -> ResourceDefinition:
    """The Widget CRD of config/resources, with another served version when asked."""
    crd = yaml.safe_load((REPO / "config/resources/widgets.yaml").read_text())
    if extra_version:
        other = copy.deepcopy(crd["spec"]["versions"][0])
        other.update(name=extra_version, storage=False)
        crd["spec"]["versions"].append(other)
    definition, problems = parse_crd(crd, "widgets")
    assert definition is not None and not problems, problems
    return definition


def interfaces_of(definition: ResourceDefinition) -> ObjectInterfaces:
    strategies = crd_strategies(definition)

    def decode(obj: Object, version: str) -> None:
        strategies.get(version).prune_and_default(obj)

    async def convert(obj: Object, version: str) -> Object:
        return {**obj, "apiVersion": f"{GROUP}/{version}"}

    return ObjectInterfaces.of(definition, decode, convert)


def hook(server: WebhookServer, name: str, path: str, kind: str = VALIDATING,
         **fields: Any) -> Webhook:
    return Webhook(name=name, type=kind, url=server.url(path), ca_pem=server.ca_pem,
                   **{"rules": EVERY_WIDGET, **fields})


@dataclasses.dataclass
class Setup:
    """Builds chains of webhooks against one client and one metrics registry."""

    client: WebhookClient
    metrics: Metrics
    definition: ResourceDefinition = dataclasses.field(default_factory=widgets)

    def chain(self, *webhooks: Webhook, authorizer: Authorizer | None = None) -> Chain:
        plugins = AdmissionPlugins(webhooks=StaticWebhooks(webhooks), client=self.client,
                                   metrics=self.metrics.admission, authorizer=authorizer)
        return plugins.chain(self.definition, interfaces_of(self.definition))


@pytest_asyncio.fixture
async def setup(reactor: Any) -> AsyncIterator[Setup]:
    client = WebhookClient(reactor)
    try:
        yield Setup(client, Metrics())
    finally:
        await client.close()


def context(dry_run: bool = False) -> RequestContext:
    return RequestContext(user=UserInfo("alice", ("devs",), "u-1", {"scopes": ("a", "b")}),
                          namespace="ns", dry_run=dry_run,
                          options=options_object("CreateOptions",
                                                 dryRun=["All"] if dry_run else None))


def widget(name: str = "w", **spec: Any) -> Object:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "ns"}, "spec": spec}


async def mutate(chain: Chain, obj: Object, ctx: RequestContext | None = None,
                 old: Object | None = None) -> Object:
    ctx = ctx or context()
    steps = chain.admission(request_attributes(ctx, CREATE if old is None else UPDATE, KIND,
                                               RESOURCE, obj["metadata"]["name"]))
    assert steps.mutate is not None
    return await steps.mutate(obj, old) or obj


async def validate(chain: Chain, obj: Object, ctx: RequestContext | None = None) -> None:
    steps = chain.admission(request_attributes(ctx or context(), CREATE, KIND, RESOURCE))
    assert steps.validate is not None
    await steps.validate(obj, None)


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll condition (bounded): the server answers on its own threads."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_patch_is_applied_then_pruned_and_defaulted(
        setup: Setup, webhook_server: WebhookServer) -> None:
    webhook_server.answer("/m", patch([
        {"op": "add", "path": "/spec/dimensions", "value": {"width": 1, "height": 2}},
        {"op": "add", "path": "/spec/bogus", "value": True},
        {"op": "remove", "path": "/spec/size"},
    ]))
    ctx = context()
    chain = setup.chain(hook(webhook_server, "m.kext.test", "/m", MUTATING))
    original = widget(size=3)
    result = await mutate(chain, original, ctx)
    assert result is not original and original["spec"] == {"size": 3}
    # the unknown field pruned, the removed size defaulted again, as kube re-decodes
    assert result["spec"] == {"size": 1, "dimensions": {"width": 1, "height": 2}}
    assert ctx.audit_annotations["mutation.webhook.admission.k8s.io/round_0_index_0"] == (
        '{"configuration":"","webhook":"m.kext.test","mutated":true}')
    assert "patch.webhook.admission.k8s.io/round_0_index_0" in ctx.audit_annotations


async def test_the_review_carries_user_options_and_audit_annotations_come_back(
        setup: Setup, webhook_server: WebhookServer) -> None:
    webhook_server.answer("/v", allow(warnings=["w1", "w1", "w2"],
                                      audit_annotations={"decision": "fine"}))
    ctx = context(dry_run=True)
    await validate(setup.chain(hook(webhook_server, "v.kext.test", "/v")), widget(), ctx)
    [review] = webhook_server.reviews("/v")
    assert review["userInfo"] == {"username": "alice", "uid": "u-1", "groups": ["devs"],
                                  "extra": {"scopes": ["a", "b"]}}
    assert review["dryRun"] is True
    assert review["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1",
                                 "dryRun": ["All"]}
    assert list(ctx.warnings) == ["w1", "w2"]
    assert ctx.audit_annotations["v.kext.test/decision"] == "fine"


async def test_reinvocation_if_needed_calls_an_earlier_webhook_again(
        setup: Setup, webhook_server: WebhookServer) -> None:
    webhook_server.answer("/b", patch([{"op": "add", "path": "/spec/color", "value": "red"}]))
    chain = setup.chain(
        hook(webhook_server, "a.kext.test", "/a", MUTATING, reinvocation_policy="IfNeeded"),
        hook(webhook_server, "never.kext.test", "/never", MUTATING),
        hook(webhook_server, "b.kext.test", "/b", MUTATING),
    )
    result = await mutate(chain, widget(size=2))
    assert result["spec"]["color"] == "red"
    first, second = webhook_server.reviews("/a")
    assert "color" not in first["object"]["spec"] and second["object"]["spec"]["color"] == "red"
    assert len(webhook_server.reviews("/never")) == 1  # reinvocationPolicy Never
    assert len(webhook_server.reviews("/b")) == 1  # b changed nothing after a's second call


async def test_no_second_round_when_nothing_changed(
        setup: Setup, webhook_server: WebhookServer) -> None:
    chain = setup.chain(
        hook(webhook_server, "a.kext.test", "/a", MUTATING, reinvocation_policy="IfNeeded"),
        hook(webhook_server, "b.kext.test", "/b", MUTATING),
    )
    original = widget(size=2)
    steps = chain.admission(request_attributes(context(), CREATE, KIND, RESOURCE, "w"))
    assert steps.mutate is not None
    assert await steps.mutate(original, None) is None  # unchanged
    assert len(webhook_server.reviews("/a")) == 1


async def test_validating_webhooks_are_called_at_once_and_the_first_refusal_wins(
        setup: Setup, webhook_server: WebhookServer) -> None:
    webhook_server.answer("/one", hang())
    webhook_server.answer("/two", hang())
    chain = setup.chain(hook(webhook_server, "one.kext.test", "/one"),
                        hook(webhook_server, "two.kext.test", "/two"))
    task = asyncio.ensure_future(validate(chain, widget()))
    # both are asked before either answered
    await until(lambda: len(webhook_server.reviews("/one")) == len(
        webhook_server.reviews("/two")) == 1)
    webhook_server.release()
    await task

    webhook_server.answer("/one", deny("one says no"))
    webhook_server.answer("/two", deny("two says no"))
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget())
    assert refused.value.message == 'admission webhook "one.kext.test" denied the request: ' \
                                    "one says no"
    assert refused.value.code == 400 and refused.value.reason == ""


async def test_a_denial_keeps_the_webhooks_code_reason_and_details(
        setup: Setup, webhook_server: WebhookServer) -> None:
    webhook_server.answer("/v", deny(code=422, reason="Invalid"))
    chain = setup.chain(hook(webhook_server, "v.kext.test", "/v"))
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget())
    assert (refused.value.code, refused.value.reason, refused.value.message) == (
        422, "Invalid", 'admission webhook "v.kext.test" denied the request: Invalid')
    webhook_server.answer("/v", deny(code=200))
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget())
    assert (refused.value.code, refused.value.message) == (
        400, 'admission webhook "v.kext.test" denied the request without explanation')


async def test_a_timeout_fails_closed_or_open_as_the_failure_policy_says(
        setup: Setup, webhook_server: WebhookServer) -> None:
    webhook_server.answer("/slow", hang())
    closed = setup.chain(hook(webhook_server, "closed.kext.test", "/slow", timeout_seconds=1))
    with pytest.raises(StatusError) as failed:
        await validate(closed, widget())
    assert failed.value.code == 500 and failed.value.reason == "InternalError"
    assert failed.value.message == (
        'Internal error occurred: failed calling webhook "closed.kext.test": failed to call '
        f'webhook: Post "{webhook_server.url("/slow")}?timeout=1s": context deadline exceeded')
    ctx = context()
    opened = setup.chain(hook(webhook_server, "open.kext.test", "/slow", timeout_seconds=1,
                              failure_policy="Ignore"))
    await validate(opened, widget(), ctx)
    assert ctx.audit_annotations == {
        "failed-open.validating.webhook.admission.k8s.io/round_0_index_0": "open.kext.test"}
    text = setup.metrics.exposition().decode()
    assert 'apiserver_admission_webhook_fail_open_count{name="open.kext.test",' \
           'type="validating"} 1.0' in text
    assert 'apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",' \
           'name="closed.kext.test",operation="CREATE",rejection_code="503",' \
           'type="validating"} 1.0' in text


async def test_connection_errors_in_gos_words(setup: Setup, webhook_server: WebhookServer,
                                              tmp_path: Path) -> None:
    port = free_port()
    down = Webhook(name="down.kext.test", type=VALIDATING, url=f"https://127.0.0.1:{port}/x",
                   rules=EVERY_WIDGET)
    with pytest.raises(StatusError) as refused:
        await validate(setup.chain(down), widget())
    assert refused.value.message == (
        'Internal error occurred: failed calling webhook "down.kext.test": failed to call '
        f'webhook: Post "https://127.0.0.1:{port}/x?timeout=10s": dial tcp 127.0.0.1:{port}: '
        "connect: connection refused")
    stranger = dataclasses.replace(hook(webhook_server, "tls.kext.test", "/v"),
                                   ca_pem=new_ca("someone else").cert_pem)
    with pytest.raises(StatusError) as refused:
        await validate(setup.chain(stranger), widget())
    assert refused.value.message.endswith(
        "tls: failed to verify certificate: x509: certificate signed by unknown authority")
    assert webhook_server.reviews("/v") == []


async def test_calls_share_pooled_connections(setup: Setup,
                                              webhook_server: WebhookServer) -> None:
    chain = setup.chain(hook(webhook_server, "v.kext.test", "/v"),
                        hook(webhook_server, "m.kext.test", "/m", MUTATING))
    for _ in range(5):
        await mutate(chain, widget())
        await validate(chain, widget())
    assert len(webhook_server.reviews("/v")) == len(webhook_server.reviews("/m")) == 5
    assert webhook_server.connections == 1


async def test_a_webhook_restarted_between_calls_is_called_again(
        setup: Setup, webhook_server: WebhookServer) -> None:
    chain = setup.chain(hook(webhook_server, "v.kext.test", "/v"))
    await validate(chain, widget())
    webhook_server.stop()  # the pooled connection is closed under kext
    webhook_server.start()
    await validate(chain, widget())
    assert len(webhook_server.reviews("/v")) == 2


async def test_invalid_responses_are_errors_calling_the_webhook(
        setup: Setup, webhook_server: WebhookServer) -> None:
    webhook_server.answer("/v", lambda request: {"uid": "not-it", "allowed": True})
    chain = setup.chain(hook(webhook_server, "v.kext.test", "/v"))
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget())
    uid = webhook_server.reviews("/v")[0]["uid"]
    assert refused.value.message == (
        'Internal error occurred: failed calling webhook "v.kext.test": received invalid '
        f'webhook response: expected response.uid="{uid}", got "not-it"')
    webhook_server.answer("/v", patch([]))
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget())
    assert refused.value.message.endswith(
        "received invalid webhook response: validating webhook may not return response.patch")
    webhook_server.answer("/v", allow(), http_code=500)
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget())
    assert refused.value.message.endswith("failed to call webhook: the webhook failed with 500")
    ignored = setup.chain(hook(webhook_server, "v.kext.test", "/v", failure_policy="Ignore"))
    await validate(ignored, widget())  # an error calling it: Ignore lets the request pass


async def test_a_patch_on_delete_is_refused(setup: Setup,
                                            webhook_server: WebhookServer) -> None:
    webhook_server.answer("/m", patch([{"op": "add", "path": "/spec/x", "value": 1}]))
    chain = setup.chain(hook(webhook_server, "m.kext.test", "/m", MUTATING,
                             rules=(Rule(("DELETE",), ("*",), ("*",), ("*",)),)))
    check = chain.delete_validation(request_attributes(context(), DELETE, KIND, RESOURCE, "w"))
    assert check is not None
    with pytest.raises(StatusError) as refused:
        await check(widget())
    assert refused.value.message == (
        'Internal error occurred: admission webhook "m.kext.test" attempted to modify the '
        "object, which is not supported for this operation")
    [review] = webhook_server.reviews("/m")
    assert review["operation"] == "DELETE" and review["object"] is None
    assert review["oldObject"]["metadata"]["name"] == "w"


async def test_dry_run_refuses_a_webhook_with_side_effects(
        setup: Setup, webhook_server: WebhookServer) -> None:
    chain = setup.chain(hook(webhook_server, "se.kext.test", "/se", side_effects="Unknown"),
                        hook(webhook_server, "ok.kext.test", "/ok",
                             side_effects="NoneOnDryRun"))
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget(), context(dry_run=True))
    assert (refused.value.code, refused.value.message) == (
        400, 'admission webhook "se.kext.test" does not support dry run')
    assert webhook_server.reviews("/se") == []
    await validate(chain, widget(), context())
    assert len(webhook_server.reviews("/se")) == 1


async def test_match_policy_equivalent_calls_with_the_object_in_the_rules_version(
        setup: Setup, webhook_server: WebhookServer) -> None:
    setup.definition = widgets(extra_version="v1beta1")
    webhook_server.answer("/m", patch([{"op": "add", "path": "/spec/color", "value": "blue"}]))
    v1beta1_only = (Rule(("*",), (GROUP,), ("v1beta1",), ("widgets",)),)
    equivalent = hook(webhook_server, "eq.kext.test", "/m", MUTATING, rules=v1beta1_only)
    exact = hook(webhook_server, "exact.kext.test", "/exact", MUTATING, rules=v1beta1_only,
                 match_policy="Exact")
    result = await mutate(setup.chain(equivalent, exact), widget(size=2))
    assert result["apiVersion"] == f"{GROUP}/v1alpha1" and result["spec"]["color"] == "blue"
    [review] = webhook_server.reviews("/m")
    assert review["kind"] == {"group": GROUP, "version": "v1beta1", "kind": "Widget"}
    assert review["requestKind"] == {"group": GROUP, "version": "v1alpha1", "kind": "Widget"}
    assert review["resource"]["version"] == "v1beta1"
    assert review["object"]["apiVersion"] == f"{GROUP}/v1beta1"
    assert webhook_server.reviews("/exact") == []


async def test_match_conditions_decide_whether_a_webhook_is_called(
        setup: Setup, webhook_server: WebhookServer) -> None:
    conditions = (MatchCondition("red-only", "object.spec.color == 'red'"),
                  MatchCondition("not-alice", "request.userInfo.username != 'bob'"))
    chain = setup.chain(hook(webhook_server, "c.kext.test", "/c", match_conditions=conditions))
    await validate(chain, widget(color="blue"))
    assert webhook_server.reviews("/c") == []
    await validate(chain, widget(color="red"))
    assert len(webhook_server.reviews("/c")) == 1
    # a condition that fails to evaluate (no color: no such key) refuses under Fail ...
    with pytest.raises(StatusError) as refused:
        await validate(chain, widget(size=1))
    assert (refused.value.code, refused.value.message) == (
        403, "widgets.example.kext.io \"w\" is forbidden: expression 'object.spec.color == "
             "'red'' resulted in error: no such key: color")
    # ... and skips the webhook under Ignore
    ignoring = setup.chain(hook(webhook_server, "c.kext.test", "/c", match_conditions=conditions,
                                failure_policy="Ignore"))
    await validate(ignoring, widget(size=1))
    assert len(webhook_server.reviews("/c")) == 1


async def test_match_conditions_ask_the_servers_authorizer_about_the_user(
        setup: Setup, webhook_server: WebhookServer) -> None:
    class Reviewers:
        """May review widgets: alice."""

        def __init__(self) -> None:
            self.asked: list[Attributes] = []

        async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
            self.asked.append(attributes)
            if attributes.user.name == "alice":
                return Decision.ALLOW, ""
            return Decision.NO_OPINION, ""

    reviewers = Reviewers()
    conditions = (MatchCondition("reviewers", "authorizer.requestResource.check('review')"
                                              ".allowed()"),)
    chain = setup.chain(hook(webhook_server, "c.kext.test", "/c", match_conditions=conditions),
                        authorizer=reviewers)
    await validate(chain, widget())
    assert len(webhook_server.reviews("/c")) == 1
    bob = dataclasses.replace(context(), user=UserInfo("bob", ("devs",)))
    await validate(chain, widget(), bob)
    assert len(webhook_server.reviews("/c")) == 1
    assert [(a.user.name, a.verb, a.api_group, a.api_version, a.resource, a.namespace)
            for a in reviewers.asked] == [
        ("alice", "review", GROUP, "*", "widgets", "ns"),
        ("bob", "review", GROUP, "*", "widgets", "ns")]
