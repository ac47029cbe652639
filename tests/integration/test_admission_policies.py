"""ValidatingAdmissionPolicies on a real kext (its etcd, kubectl and the requests client):
policies and bindings from a configuration file (`admission.configurations`), one with Deny
and one with Warn, one reading its params from kext's own Gadgets; each test picks its binding
by an object label."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext, status_of

GROUP = "example.kext.io"
ADMISSION = "admissionregistration.k8s.io/v1"
WIDGET_RULES = [{"operations": ["CREATE", "UPDATE"], "apiGroups": [GROUP],
                 "apiVersions": ["*"], "resources": ["widgets"]}]

POLICIES: list[dict[str, Any]] = [
    {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicy",
     "metadata": {"name": "small-widgets"},
     "spec": {
         "matchConstraints": {"resourceRules": WIDGET_RULES},
         "variables": [{"name": "size", "expression": "object.spec.size"}],
         "validations": [{
             "expression": "variables.size < 10",
             "messageExpression": "'a widget of size ' + string(variables.size) + "
                                  "' is too big'"}],
         "auditAnnotations": [{"key": "size", "valueExpression": "string(variables.size)"}]}},
    {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicyBinding",
     "metadata": {"name": "deny-big"},
     "spec": {"policyName": "small-widgets", "validationActions": ["Deny"],
              "matchResources": {"objectSelector": {"matchLabels": {"policy": "deny"}}}}},
    {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicyBinding",
     "metadata": {"name": "warn-big"},
     "spec": {"policyName": "small-widgets", "validationActions": ["Warn"],
              "matchResources": {"objectSelector": {"matchLabels": {"policy": "warn"}}}}},
    {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicyBinding",
     "metadata": {"name": "audit-big"},
     "spec": {"policyName": "small-widgets", "validationActions": ["Audit"],
              "matchResources": {"objectSelector": {"matchLabels": {"policy": "audit"}}}}},
    {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicy",
     "metadata": {"name": "gadget-limits"},
     "spec": {
         "paramKind": {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Gadget"},
         "matchConstraints": {"resourceRules": WIDGET_RULES},
         "validations": [{"expression": "object.spec.size <= params.spec.replicas",
                          "messageExpression": "'size must be at most ' + "
                                               "string(params.spec.replicas)",
                          "reason": "Forbidden"}]}},
    {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicyBinding",
     "metadata": {"name": "limits"},
     "spec": {"policyName": "gadget-limits", "validationActions": ["Deny"],
              "paramRef": {"name": "limits", "parameterNotFoundAction": "Deny"},
              "matchResources": {"objectSelector": {"matchLabels": {"policy": "limits"}}}}},
]


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[KextProcess]:
    workdir: Path = tmp_path_factory.mktemp("kext-policies")
    policies = workdir / "policies.yaml"
    policies.write_text(yaml.safe_dump_all(POLICIES))
    audit = workdir / "audit-policy.yaml"
    audit.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                     "rules": [{"level": "Metadata"}]}))
    process = start_kext(workdir, etcd_server.endpoint,
                         admission={"configurations": [{"file": str(policies)}]},
                         audit={"policyFile": str(audit),
                                "logPath": str(workdir / "audit.log")})
    yield process
    process.stop()


def widget(name: str, policy: str, size: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "policies", "labels": {"policy": policy}},
            "spec": {"size": size}}


def create(kext: KextProcess, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kext.kubectl("create", "-f", "-", input=json.dumps(obj), check=False)


def test_a_deny_binding_refuses_with_kubes_message_and_code(kext: KextProcess) -> None:
    result = create(kext, widget("big", "deny", 12))
    assert result.returncode == 1
    denied = ("ValidatingAdmissionPolicy 'small-widgets' with binding 'deny-big' denied "
              "request: a widget of size 12 is too big")
    # kubectl words a 422 by its causes, as it words kube's own (the docs' example reads
    # `The deployments "nginx" is invalid: : ValidatingAdmissionPolicy ...`)
    assert result.stderr == f'The widgets "big" is invalid: : {denied}\n'
    message = f'widgets.example.kext.io "big" is forbidden: {denied}'
    response = kext.session().post(
        f"{kext.url}/apis/{GROUP}/v1alpha1/namespaces/policies/widgets",
        json=widget("big", "deny", 12))
    assert response.status_code == 422
    status = status_of(response)
    assert (status["reason"], status["message"]) == ("Invalid", message)
    assert status["details"] == {"name": "big", "group": GROUP, "kind": "widgets",
                                 "causes": [{"message": denied}]}
    assert create(kext, widget("small", "deny", 3)).returncode == 0


def test_a_warn_binding_lets_it_through_with_kubectl_printing_the_warning(
        kext: KextProcess) -> None:
    result = create(kext, widget("warned", "warn", 12))
    assert result.returncode == 0, result.stderr
    assert ("Warning: Validation failed for ValidatingAdmissionPolicy 'small-widgets' with "
            "binding 'warn-big': a widget of size 12 is too big") in result.stderr
    got = kext.kubectl("get", "widget", "warned", "-n", "policies", "-o", "json")
    assert json.loads(got.stdout)["spec"]["size"] == 12


def test_an_audit_binding_and_the_policys_audit_annotations_reach_the_audit_log(
        kext: KextProcess) -> None:
    response = kext.session().post(
        f"{kext.url}/apis/{GROUP}/v1alpha1/namespaces/policies/widgets",
        json=widget("audited", "audit", 12))
    assert response.status_code == 201  # Audit alone lets it through
    audit_id = response.headers["Audit-ID"]
    log = kext.workdir / "audit.log"
    deadline = time.monotonic() + 10
    while True:
        events = [json.loads(line) for line in (log.read_text() if log.exists() else "")
                  .splitlines() if line]
        done = [e for e in events if e["auditID"] == audit_id
                and e["stage"] == "ResponseComplete"]
        if done:
            break
        assert time.monotonic() < deadline, "no ResponseComplete event within 10s"
        time.sleep(0.1)
    annotations = done[0]["annotations"]
    assert annotations["small-widgets/size"] == "12"
    assert json.loads(annotations["validation.policy.admission.k8s.io/validation_failure"]) == [{
        "message": "a widget of size 12 is too big", "policy": "small-widgets",
        "binding": "audit-big", "expressionIndex": 0, "validationActions": ["Audit"]}]


def test_a_policy_reads_its_params_from_kexts_own_resources(kext: KextProcess) -> None:
    missing = create(kext, widget("limited", "limits", 3))
    assert missing.returncode == 1
    assert ("ValidatingAdmissionPolicy 'gadget-limits' with binding 'limits' denied request: "
            "failed to configure binding: no params found for policy binding with `Deny` "
            "parameterNotFoundAction") in missing.stderr
    limits = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Gadget",
              "metadata": {"name": "limits"}, "spec": {"replicas": 2}}
    kext.kubectl("create", "-f", "-", input=json.dumps(limits))
    refused = kext.session().post(
        f"{kext.url}/apis/{GROUP}/v1alpha1/namespaces/policies/widgets",
        json=widget("limited", "limits", 3))
    assert refused.status_code == 403
    assert status_of(refused)["reason"] == "Forbidden"
    assert status_of(refused)["message"].endswith("denied request: size must be at most 2")
    assert create(kext, widget("limited", "limits", 2)).returncode == 0
    # the params change with their object: no restart
    kext.kubectl("patch", "gadget", "limits", "--type", "merge", "-p",
                 '{"spec": {"replicas": 5}}')
    assert create(kext, widget("bigger", "limits", 5)).returncode == 0


def test_kext_check_reports_the_policies_and_refuses_a_bad_one(kext: KextProcess) -> None:
    config = kext.workdir / "server.yaml"
    check = [sys.executable, "-m", "kext", "check", "--config", str(config)]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("admission: 2 ValidatingAdmissionPolicies (small-widgets, gadget-limits) with 4 "
            "bindings") in result.stdout
    bad = kext.workdir / "bad-policies.yaml"
    bad.write_text(yaml.safe_dump({**POLICIES[0], "spec": {
        **POLICIES[0]["spec"], "validations": [{"expression": "object.spec.size >"}]}}))
    broken = kext.workdir / "broken.yaml"
    broken.write_text(config.read_text().replace(str(kext.workdir / "policies.yaml"),
                                                 str(bad)))
    result = subprocess.run([*check[:-1], str(broken)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"admission.configurations[0] ({bad}): spec.validations[0].expression: Invalid value: "
        '"object.spec.size >": compilation failed: ERROR: <input>:1:19: Syntax error:')
    assert "Traceback" not in result.stderr
