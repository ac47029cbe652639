"""The audit policy as kube's checker evaluates it, and its validation as kube's reader
refuses bad policies (one line per problem)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kext.audit import Level, PolicyError, load_policy
from kext.audit.policy import parse_policy
from kext.auth.user import UserInfo
from kext.server.request_info import RequestInfo, parse_request_info

ALICE = UserInfo("alice", ("devs", "system:authenticated"))
BOB = UserInfo("bob", ("ops", "system:authenticated"))


def policy(*rules: dict[str, Any], **top: Any) -> Any:
    return parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                         "rules": list(rules), **top})


def info(method: str, path: str, query: dict[str, list[str]] | None = None) -> RequestInfo:
    return parse_request_info(method, path, query or {})


WIDGET = info("GET", "/apis/example.kext.io/v1/namespaces/ns/widgets/w1")
WIDGET_STATUS = info("PUT", "/apis/example.kext.io/v1/namespaces/ns/widgets/w1/status")
WIDGETS_OTHER_NS = info("GET", "/apis/example.kext.io/v1/namespaces/other/widgets")
GADGETS = info("POST", "/apis/example.kext.io/v1/gadgets")
HEALTHZ = info("GET", "/healthz")
METRICS = info("GET", "/metrics")


def level(p: Any, user: UserInfo | None, request: RequestInfo) -> Level:
    return p.evaluate(user, request).level


def test_the_first_matching_rule_decides_and_no_match_is_none() -> None:
    p = policy({"level": "None", "users": ["bob"]},
               {"level": "RequestResponse", "resources": [{"group": "example.kext.io",
                                                          "resources": ["gadgets"]}]},
               {"level": "Metadata"})
    assert level(p, BOB, GADGETS) is Level.NONE
    assert level(p, ALICE, GADGETS) is Level.REQUEST_RESPONSE
    assert level(p, ALICE, WIDGET) is Level.METADATA
    assert level(policy({"level": "Metadata", "users": ["carol"]}), ALICE, WIDGET) \
        is Level.NONE


def test_users_groups_and_verbs() -> None:
    p = policy({"level": "Request", "userGroups": ["ops"], "verbs": ["get", "list"]})
    assert level(p, BOB, WIDGET) is Level.REQUEST
    assert level(p, BOB, GADGETS) is Level.NONE  # create
    assert level(p, ALICE, WIDGET) is Level.NONE
    # a request that failed authentication has no user: user rules never match it
    assert level(p, None, WIDGET) is Level.NONE
    assert level(policy({"level": "Metadata"}), None, WIDGET) is Level.METADATA


def test_resources_names_namespaces_and_subresources_as_kube_matches_them() -> None:
    def matches(resources: list[str], request: RequestInfo, names: list[str] | None = None,
                group: str = "example.kext.io") -> bool:
        rule: dict[str, Any] = {"group": group, "resources": resources}
        if names:
            rule["resourceNames"] = names
        return level(policy({"level": "Metadata", "resources": [rule]}), ALICE,
                     request) is Level.METADATA

    assert matches(["widgets"], WIDGET)
    assert not matches(["widgets"], WIDGET_STATUS)  # a subresource must be named
    assert matches(["widgets/status"], WIDGET_STATUS)
    assert matches(["*/status"], WIDGET_STATUS)
    assert matches(["widgets/*"], WIDGET_STATUS)
    assert not matches(["*/status"], WIDGET)
    assert matches(["*"], WIDGET_STATUS)
    assert matches(["widgets"], WIDGET, names=["w1"])
    assert not matches(["widgets"], WIDGET, names=["w2"])
    assert matches(["widgets"], WIDGET, group="*")
    assert not matches(["widgets"], WIDGET, group="")  # the core group
    assert level(policy({"level": "Metadata", "resources": [{"group": "example.kext.io"}]}),
                 ALICE, GADGETS) is Level.METADATA  # no resources: the whole group
    in_ns = policy({"level": "Metadata", "namespaces": ["ns"]})
    assert level(in_ns, ALICE, WIDGET) is Level.METADATA
    assert level(in_ns, ALICE, WIDGETS_OTHER_NS) is Level.NONE
    assert level(in_ns, ALICE, GADGETS) is Level.NONE  # cluster-scoped: namespace ""
    assert level(in_ns, ALICE, HEALTHZ) is Level.NONE
    cluster = policy({"level": "Metadata", "namespaces": [""]})
    assert level(cluster, ALICE, GADGETS) is Level.METADATA


def test_non_resource_urls_with_a_trailing_wildcard() -> None:
    p = policy({"level": "Metadata", "nonResourceURLs": ["/healthz*", "/version"]})
    assert level(p, ALICE, HEALTHZ) is Level.METADATA
    assert level(p, ALICE, info("GET", "/healthz/etcd")) is Level.METADATA
    assert level(p, ALICE, METRICS) is Level.NONE
    assert level(p, ALICE, WIDGET) is Level.NONE  # a resource request never matches
    assert level(policy({"level": "Metadata", "nonResourceURLs": ["*"]}), ALICE,
                 METRICS) is Level.METADATA


def test_omit_stages_join_and_omit_managed_fields_is_overridden_per_rule() -> None:
    p = policy({"level": "Metadata", "users": ["alice"], "omitStages": ["ResponseStarted"],
                "omitManagedFields": False},
               {"level": "Request"},
               omitStages=["RequestReceived"], omitManagedFields=True)
    alice = p.evaluate(ALICE, WIDGET)
    assert alice.omit_stages == {"RequestReceived", "ResponseStarted"}
    assert alice.omit_managed_fields is False
    bob = p.evaluate(BOB, WIDGET)
    assert bob.omit_stages == {"RequestReceived"} and bob.omit_managed_fields is True
    nobody = policy({"level": "Metadata", "users": ["x"]}, omitStages=["Panic"])
    assert nobody.evaluate(BOB, WIDGET).omit_stages == {"Panic"}


def test_bad_policies_are_refused_one_line_per_problem(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["Sent"],
            "rules": [
                {"level": "Loud"},
                {"users": ["a"]},
                {"level": "Metadata", "nonResourceURLs": ["healthz", "/a*b"],
                 "namespaces": ["ns"]},
                {"level": "Metadata", "resources": [{"group": "Bad_Group",
                                                     "resourceNames": ["x"]}]},
                {"level": "Metadata", "usres": ["typo"]},
            ],
        })
    assert refused.value.problems == [
        'omitStages[0]: Invalid value: "Sent": allowed stages are '
        "RequestReceived,ResponseStarted,ResponseComplete,Panic",
        'rules[0].level: Unsupported value: "Loud": supported values: "None", "Metadata", '
        '"Request", "RequestResponse"',
        "rules[1].level: Required value",
        "rules[2].nonResourceURLs[0]: Invalid value: \"healthz\": non-resource URL rules "
        "must begin with a '/' character",
        "rules[2].nonResourceURLs[1]: Invalid value: \"/a*b\": non-resource URL wildcards "
        "'*' must be the final character of the rule",
        'rules[2].nonResourceURLs: Invalid value: ["healthz","/a*b"]: rules cannot apply to '
        "both regular resources and non-resource URLs",
        "rules[3].resources[0].group: Invalid value: \"Bad_Group\": a lowercase RFC 1123 "
        "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        'rules[3].resources[0].resourceNames: Invalid value: ["x"]: using resourceNames '
        "requires at least one resource",
        "rules[4].usres: unknown field",
    ]
    with pytest.raises(PolicyError, match="at least one rule"):
        policy()
    with pytest.raises(PolicyError, match=r"expected apiVersion: audit\.k8s\.io/v1"):
        parse_policy({"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy",
                      "rules": [{"level": "None"}]})
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                    "rules": [{"level": "Metadata"}]}))
    assert load_policy(str(path)).rules[0].level is Level.METADATA
    path.write_text("rules: [\n")
    with pytest.raises(PolicyError, match=r"policy.yaml:2:1"):
        load_policy(str(path))
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(str(tmp_path / "absent.yaml"))
