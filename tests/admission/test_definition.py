"""Webhook definitions: admissionregistration.k8s.io/v1 manifests checked as kube checks
them, and server.yaml's `admission` section (hooks, webhooks, configurations) with one line
per problem naming the key."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from kext.admission.webhook.definition import (
    MUTATING,
    VALIDATING,
    Rule,
    configuration_webhooks,
    label_selector,
    webhook_from_manifest,
)
from kext.api.errors import Cause
from kext.api.selectors import parse_label_selector
from kext.certs import new_ca
from kext.config import ConfigError, HookConfig, ServerConfig, parse_config

CA = base64.b64encode(new_ca("test").cert_pem).decode()


def manifest(**fields: Any) -> dict[str, Any]:
    base = {"name": "check.example.com", "clientConfig": {"url": "https://hook:9443/check",
                                                          "caBundle": CA},
            "rules": [{"operations": ["CREATE"], "apiGroups": ["example.kext.io"],
                       "apiVersions": ["v1alpha1"], "resources": ["widgets"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1", "v1beta1"]}
    return {**base, **fields}


def problems(item: dict[str, Any], kind: str = VALIDATING) -> list[str]:
    causes: list[Cause] = []
    webhook_from_manifest(item, kind, causes, path="webhooks[0]")
    return [f"{c.field}: {c.message}" for c in causes]


def test_a_manifest_with_kubes_defaults() -> None:
    causes: list[Cause] = []
    webhook = webhook_from_manifest(manifest(), VALIDATING, causes, configuration="cfg",
                                    index=2)
    assert causes == [] and webhook is not None
    assert (webhook.name, webhook.url, webhook.failure_policy, webhook.match_policy,
            webhook.timeout_seconds, webhook.reinvocation_policy, webhook.uid) == (
        "check.example.com", "https://hook:9443/check", "Fail", "Equivalent", 10, "Never",
        "cfg/check.example.com/2")
    assert webhook.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert webhook.rules == (Rule(("CREATE",), ("example.kext.io",), ("v1alpha1",),
                                  ("widgets",), "*"),)
    assert webhook.namespace_selector.empty and webhook.object_selector.empty


def test_a_service_is_called_at_its_cluster_dns_name() -> None:
    causes: list[Cause] = []
    webhook = webhook_from_manifest(manifest(clientConfig={
        "service": {"namespace": "policy", "name": "gatekeeper", "path": "/v1/admit"}}),
        VALIDATING, causes)
    assert causes == [] and webhook is not None
    assert webhook.url == "https://gatekeeper.policy.svc:443/v1/admit"
    webhook = webhook_from_manifest(manifest(clientConfig={
        "service": {"namespace": "policy", "name": "gatekeeper", "port": 8443}}),
        VALIDATING, causes)
    assert webhook is not None and webhook.url == "https://gatekeeper.policy.svc:8443"


@pytest.mark.parametrize(("fields", "problem"), [
    ({"name": "check"}, 'webhooks[0].name: Invalid value: "check": should be a domain with at '
                        "least three segments separated by dots"),
    ({"clientConfig": {}}, "webhooks[0].clientConfig: Required value: exactly one of url or "
                           "service is required"),
    ({"clientConfig": {"url": "http://hook/x"}},
     'webhooks[0].clientConfig.url: Invalid value: "http": \'https\' is the only allowed URL '
     "scheme; desired format: https://host[/path]"),
    ({"clientConfig": {"url": "https://hook/x?a=b"}},
     'webhooks[0].clientConfig.url: Invalid value: "a=b": query parameters are not permitted in '
     "the URL"),
    ({"clientConfig": {"url": "https://hook/", "caBundle": "bm90IGEgY2VydA=="}},
     'webhooks[0].clientConfig.caBundle: Invalid value: "<bytes>": unable to load root '
     "certificates: unable to parse bytes as PEM block"),
    ({"clientConfig": {"service": {"name": "s", "namespace": "n", "path": "x"}}},
     "webhooks[0].clientConfig.service.path: Invalid value: \"x\": must start with a '/'"),
    ({"rules": [{"operations": ["CREATE", "*"], "apiGroups": ["*"], "apiVersions": ["*"],
                 "resources": ["*"]}]},
     'webhooks[0].rules[0].operations: Invalid value: ["CREATE","*"]: if \'*\' is present, '
     "must not specify other operations"),
    ({"rules": [{"operations": ["PATCH"], "apiGroups": ["*"], "apiVersions": ["*"],
                 "resources": ["*"]}]},
     'webhooks[0].rules[0].operations[0]: Unsupported value: "PATCH": supported values: "*", '
     '"CONNECT", "CREATE", "DELETE", "UPDATE"'),
    ({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                 "resources": ["*/*", "widgets"]}]},
     'webhooks[0].rules[0].resources: Invalid value: ["*/*","widgets"]: if \'*/*\' is '
     "present, must not specify other resources"),
    ({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                 "resources": ["widgets/*", "widgets/status"]}]},
     'webhooks[0].rules[0].resources[1]: Invalid value: "widgets/status": if \'widgets/*\' is '
     "present, must not specify widgets/status"),
    ({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                 "resources": ["*"], "scope": "Global"}]},
     'webhooks[0].rules[0].scope: Unsupported value: "Global": supported values: "*", '
     '"Cluster", "Namespaced"'),
    ({"sideEffects": None}, "webhooks[0].sideEffects: Required value: must specify one of "
                            "None, NoneOnDryRun"),
    ({"timeoutSeconds": 0}, "webhooks[0].timeoutSeconds: Invalid value: 0: the timeout value "
                            "must be between 1 and 30 seconds"),
    ({"admissionReviewVersions": ["v1beta1"]},
     'webhooks[0].admissionReviewVersions: Invalid value: ["v1beta1"]: must include v1: kext '
     "sends AdmissionReview admission.k8s.io/v1 only"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In"}]}},
     "webhooks[0].namespaceSelector.matchExpressions[0].values: Required value: must be "
     "specified when `operator` is 'In' or 'NotIn'"),
    ({"objectSelector": {"matchLabels": {"bad key!": "x"}}},
     'webhooks[0].objectSelector.matchLabels: Invalid value: "bad key!": name part must '
     "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
     "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
     "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
    ({"reinvocationPolicy": "IfNeeded"}, "webhooks[0].reinvocationPolicy: unknown field"),
    ({"matchConditions": [{"name": "a"}, {"name": "a", "expression": "true"}]},
     "webhooks[0].matchConditions[0].expression: Required value"),
])
def test_kubes_validation(fields: dict[str, Any], problem: str) -> None:
    assert problem in problems(manifest(**fields))


def test_mutating_webhooks_take_a_reinvocation_policy() -> None:
    assert problems(manifest(reinvocationPolicy="IfNeeded"), MUTATING) == []
    assert problems(manifest(reinvocationPolicy="Sometimes"), MUTATING) == [
        'webhooks[0].reinvocationPolicy: Unsupported value: "Sometimes": supported values: '
        '"IfNeeded", "Never"']


def test_label_selectors_as_kube_reads_them() -> None:
    causes: list[Cause] = []
    selector = label_selector({"matchLabels": {"team": "a"}, "matchExpressions": [
        {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
        {"key": "owner", "operator": "Exists"}]}, "s", causes)
    assert causes == []
    assert selector == parse_label_selector("team=a,env notin (dev,prod),owner")
    assert selector.matches({"team": "a", "owner": "me"})
    assert not selector.matches({"team": "a", "owner": "me", "env": "prod"})


def test_a_configuration_names_every_webhook_and_refuses_duplicates() -> None:
    document = {"apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration", "metadata": {"name": "defaults"},
                "webhooks": [manifest(), manifest(reinvocationPolicy="IfNeeded")]}
    causes: list[Cause] = []
    assert configuration_webhooks(document, causes)
    assert [f"{c.field}: {c.message}" for c in causes] == [
        'webhooks[1].name: Duplicate value: "check.example.com"']


# -- server.yaml


def config(admission: Any) -> ServerConfig:
    return parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                         "admission": admission})


def config_problems(admission: Any) -> list[str]:
    with pytest.raises(ConfigError) as error:
        config(admission)
    return error.value.problems


def test_hooks_are_paths_or_mappings() -> None:
    parsed = config({"hooks": ["a.b:c", {"hook": "a.b:d", "type": "Mutating",
                                         "failurePolicy": "Ignore"}]})
    assert parsed.admission.hooks == [HookConfig("a.b:c"), HookConfig("a.b:d", "Mutating",
                                                                      "Ignore")]
    assert config_problems({"hooks": [{"hook": "a.b:c", "type": "Sometimes"}, 3]}) == [
        "admission.hooks[0].type: expected Mutating or Validating, got 'Sometimes'",
        'admission.hooks[1]: expected "package.module:callable" or a mapping with hook, got 3',
    ]


def test_an_inline_webhook_defaults_to_creates_and_updates_of_every_resource(
        tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(base64.b64decode(CA))
    parsed = config({"webhooks": [{"name": "w.example.com", "url": "https://w:9443/",
                                   "caFile": str(ca_file), "type": "Mutating",
                                   "reinvocationPolicy": "IfNeeded"}]})
    [webhook] = parsed.admission.webhooks
    assert webhook.type == MUTATING and webhook.reinvocation_policy == "IfNeeded"
    assert webhook.ca_pem == ca_file.read_bytes() and webhook.side_effects == "None"
    assert webhook.rules == (Rule(("CREATE", "UPDATE"), ("*",), ("*",), ("*",)),)
    assert webhook.source == "admission.webhooks[0]"
    (tmp_path / "junk.pem").write_text("junk")
    assert config_problems({"webhooks": [{"name": "w.example.com", "url": "https://w/",
                                          "caFile": str(tmp_path / "junk.pem")}]}) == [
        f"admission.webhooks[0].caFile: {tmp_path / 'junk.pem'} holds no PEM certificates"]


def test_configurations_from_files_with_several_documents(tmp_path: Path) -> None:
    validating = {"apiVersion": "admissionregistration.k8s.io/v1",
                  "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "policy"},
                  "webhooks": [manifest()]}
    mutating = {**validating, "kind": "MutatingWebhookConfiguration",
                "webhooks": [manifest(name="defaults.example.com")]}
    path = tmp_path / "hooks.yaml"
    path.write_text(yaml.safe_dump_all([validating, mutating]))
    parsed = config({"configurations": [{"file": str(path)}, {"inline": {
        **validating, "metadata": {"name": "other"}}}]})
    assert [(w.configuration, w.name, w.type) for w in parsed.admission.webhooks] == [
        ("policy", "check.example.com", VALIDATING),
        ("policy", "defaults.example.com", MUTATING),
        ("other", "check.example.com", VALIDATING),
    ]
    broken = {**validating, "webhooks": [manifest(timeoutSeconds=99)]}
    path.write_text(yaml.safe_dump_all([validating, broken, {"kind": "ConfigMap"}]))
    assert config_problems({"configurations": [{"file": str(path)}]}) == [
        f"admission.configurations[0] ({path}, document 2): ValidatingWebhookConfiguration "
        f"'policy' is already declared by admission.configurations[0] ({path}, document 1)",
        f"admission.configurations[0] ({path}, document 3): expected a "
        "MutatingWebhookConfiguration, ValidatingWebhookConfiguration, "
        "ValidatingAdmissionPolicy or ValidatingAdmissionPolicyBinding, got kind ConfigMap",
    ]
    broken["metadata"] = {"name": "broken"}
    path.write_text(yaml.safe_dump(broken))
    assert config_problems({"configurations": [{"file": str(path)}]}) == [
        f"admission.configurations[0] ({path}).webhooks[0].timeoutSeconds: Invalid value: 99: "
        "the timeout value must be between 1 and 30 seconds"]


def test_match_conditions_compile_with_kexts_cel() -> None:
    condition = {"name": "only-widgets", "expression": "request.kind.kind == 'Widget'"}
    parsed = parse_config({
        "apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
        "admission": {
            "webhooks": [{"name": "w.example.com", "url": "https://w/",
                          "matchConditions": [condition]}],
        },
    })
    [webhook] = parsed.admission.webhooks
    assert [(c.name, c.expression) for c in webhook.match_conditions] == [
        ("only-widgets", "request.kind.kind == 'Widget'")]
    assert config_problems({"webhooks": [{"name": "w.example.com", "url": "https://w/",
                                          "matchConditions": [{"name": "a",
                                                               "expression": "object.x +"}]}]}
                           )[0].startswith(
        'admission.webhooks[0].matchConditions[0].expression: Invalid value: "object.x +": '
        "compilation failed: ERROR: <input>:1:11: Syntax error:")
    assert config_problems({"webhooks": [{"name": "w.example.com", "url": "https://w/",
                                          "matchConditions": [{"name": "a",
                                                               "expression": "'yes'"}]}]}
                           ) == ['admission.webhooks[0].matchConditions[0].expression: Invalid '
                                 "value: \"'yes'\": cel expression must evaluate to a bool"]
    checked = config({"webhooks": [{"name": "w.example.com", "url": "https://w/",
                                    "matchConditions": [{
                                        "name": "a", "expression":
                                        "authorizer.requestResource.check('x').allowed()"}]}]})
    assert len(checked.admission.webhooks[0].match_conditions) == 1  # authorizer compiles
    assert config_problems({"fromCluster": True}) == [
        "admission.fromCluster: needs kubernetes.kubeconfig or kubernetes.inCluster: true"]


def test_kext_check_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(textwrap.dedent("""\
        apiVersion: kext.io/v1alpha1
        kind: ServerConfig
        admission:
          webhooks:
            - {name: w.example.com, url: "https://w/", failurePolicy: Sometimes}
        """))
    result = subprocess.run([sys.executable, "-m", "kext", "check", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        'admission.webhooks[0].failurePolicy: Unsupported value: "Sometimes": supported '
        'values: "Fail", "Ignore"']
