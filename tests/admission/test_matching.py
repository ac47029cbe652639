"""Which webhooks a request calls (rules, scope, selectors, matchPolicy), the AdmissionReview
it is sent, and the request's warnings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from kext.admission.attributes import (
    CREATE,
    DELETE,
    UPDATE,
    Attributes,
    GroupVersionKind,
    GroupVersionResource,
    Operation,
)
from kext.admission.webhook.definition import VALIDATING, Rule, Webhook, label_selector
from kext.admission.webhook.matching import ImpliedNamespaces, Matcher, rule_matches
from kext.admission.webhook.review import InvalidResponse, admission_review, verify_response
from kext.api.errors import StatusError
from kext.registry.rest import Warnings

pytestmark = pytest.mark.asyncio

GROUP = "example.kext.io"
V1 = (GroupVersionResource(GROUP, "v1", "widgets"), GroupVersionKind(GROUP, "v1", "Widget"))
V2 = (GroupVersionResource(GROUP, "v2", "widgets"), GroupVersionKind(GROUP, "v2", "Widget"))


def attributes(operation: Operation = CREATE, subresource: str = "", namespace: str = "ns",
               labels: Mapping[str, str] | None = None,
               old_labels: Mapping[str, str] | None = None) -> Attributes:
    obj = {"metadata": {"name": "w", "labels": dict(labels or {})}}
    old = {"metadata": {"name": "w", "labels": dict(old_labels)}} if old_labels else None
    return Attributes(operation, V1[1], V1[0], subresource, "w", namespace,
                      None if operation == DELETE else obj, old)


def rule(operations: tuple[str, ...] = ("*",), groups: tuple[str, ...] = ("*",),
         versions: tuple[str, ...] = ("*",), resources: tuple[str, ...] = ("*",),
         scope: str = "*") -> Rule:
    return Rule(operations, groups, versions, resources, scope)


@pytest.mark.parametrize(("the_rule", "request_", "matches"), [
    (rule(("CREATE",)), attributes(CREATE), True),
    (rule(("CREATE",)), attributes(UPDATE), False),
    (rule(groups=("other.io",)), attributes(), False),
    (rule(versions=("v2",)), attributes(), False),
    (rule(resources=("widgets",)), attributes(), True),
    (rule(resources=("widgets",)), attributes(subresource="status"), False),
    (rule(resources=("*",)), attributes(subresource="status"), False),
    (rule(resources=("widgets/status",)), attributes(subresource="status"), True),
    (rule(resources=("*/status",)), attributes(subresource="status"), True),
    (rule(resources=("*/*",)), attributes(subresource="status"), True),
    (rule(resources=("*/*",)), attributes(), True),
    (rule(resources=("gadgets",)), attributes(), False),
    (rule(scope="Namespaced"), attributes(namespace=""), False),
    (rule(scope="Cluster"), attributes(namespace=""), True),
    (rule(scope="Cluster"), attributes(), False),
])
async def test_rules(the_rule: Rule, request_: Attributes, matches: bool) -> None:
    assert rule_matches(the_rule, request_, request_.resource) is matches


def webhook(**fields: Any) -> Webhook:
    return Webhook(name="w.kext.test", type=VALIDATING, url="https://w/",
                   **{"rules": (rule(),), **fields})


def selector(**labels: str) -> Any:
    return label_selector({"matchLabels": labels}, "", [])


async def test_a_namespace_carries_only_its_name_label() -> None:
    matcher = Matcher(ImpliedNamespaces())
    by_name = webhook(namespace_selector=selector(**{"kubernetes.io/metadata.name": "ns"}))
    by_team = webhook(namespace_selector=selector(team="a"))
    assert await matcher.invocation(by_name, attributes()) is not None
    assert await matcher.invocation(by_name, attributes(namespace="other")) is None
    assert await matcher.invocation(by_team, attributes()) is None
    # cluster-scoped requests are never excluded by a namespaceSelector
    assert await matcher.invocation(by_team, attributes(namespace="")) is not None


async def test_a_namespace_that_does_not_exist_is_a_404() -> None:
    class NoNamespaces:
        async def labels(self, namespace: str) -> Mapping[str, str] | None:
            return None

    with pytest.raises(StatusError) as missing:
        await Matcher(NoNamespaces()).invocation(
            webhook(namespace_selector=selector(team="a")), attributes())
    assert (missing.value.code, missing.value.message) == (404, 'namespaces "ns" not found')


async def test_the_object_selector_looks_at_the_object_and_the_old_object() -> None:
    matcher = Matcher(ImpliedNamespaces())
    chosen = webhook(object_selector=selector(app="x"))
    assert await matcher.invocation(chosen, attributes(labels={"app": "x"})) is not None
    assert await matcher.invocation(chosen, attributes(labels={"app": "y"})) is None
    assert await matcher.invocation(
        chosen, attributes(UPDATE, labels={}, old_labels={"app": "x"})) is not None
    assert await matcher.invocation(
        chosen, attributes(DELETE, old_labels={"app": "x"})) is not None


async def test_match_policy_equivalent_tries_the_other_versions() -> None:
    matcher = Matcher(ImpliedNamespaces(), [V1, V2])
    only_v2 = (rule(versions=("v2",)),)
    invocation = await matcher.invocation(webhook(rules=only_v2), attributes())
    assert invocation is not None
    assert (invocation.resource, invocation.kind) == V2
    exact = webhook(rules=only_v2, match_policy="Exact")
    assert await matcher.invocation(exact, attributes()) is None


async def test_the_review_and_its_response() -> None:
    matcher = Matcher(ImpliedNamespaces(), [V1, V2])
    status_v2 = webhook(rules=(rule(versions=("v2",), resources=("*/*",)),))
    invocation = await matcher.invocation(status_v2, attributes(subresource="status"))
    assert invocation is not None
    request = dataclasses.replace(attributes(UPDATE, subresource="status"), options={"x": 1})
    review = admission_review(invocation, request, {"o": 1}, {"o": 0}, uid="u")
    assert review == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "request": {
                          "uid": "u",
                          "kind": {"group": GROUP, "version": "v2", "kind": "Widget"},
                          "resource": {"group": GROUP, "version": "v2", "resource": "widgets"},
                          "subResource": "status",
                          "requestKind": {"group": GROUP, "version": "v1", "kind": "Widget"},
                          "requestResource": {"group": GROUP, "version": "v1",
                                              "resource": "widgets"},
                          "requestSubResource": "status",
                          "name": "w", "namespace": "ns", "operation": "UPDATE",
                          "userInfo": {}, "object": {"o": 1}, "oldObject": {"o": 0},
                          "dryRun": False, "options": {"x": 1}}}
    answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "response": {"uid": "u", "allowed": True, "warnings": ["a"]}}
    assert verify_response("u", False, answer).warnings == ["a"]
    for broken, message in [
        ({**answer, "apiVersion": "admission.k8s.io/v1beta1"},
         "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got "
         "admission.k8s.io/v1beta1, Kind=AdmissionReview"),
        ({**answer, "response": None}, "webhook response was absent"),
        ({**answer, "response": {"uid": "u", "allowed": True, "patch": "W10="}},
         "webhook returned response.patch but not response.patchType"),
    ]:
        with pytest.raises(InvalidResponse) as invalid:
            verify_response("u", True, broken)
        assert str(invalid.value) == message


async def test_warnings_are_deduplicated_and_cut_short_as_kube_does() -> None:
    warnings = Warnings()
    for text in ("a", "b", "a", ""):
        warnings.add(text)
    assert list(warnings) == ["a", "b"]
    long = Warnings()
    for i in range(20):
        long.add(f"{i:02d}" + "x" * 298)  # 6,000 characters in all
    sent = list(long)
    assert all(len(t) == 256 for t in sent) and len(sent) == 16  # 4,096 characters, then none
    assert sent[0].startswith("00") and sent[-1].startswith("15")
