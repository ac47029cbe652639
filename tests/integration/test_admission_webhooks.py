"""Admission webhooks on a real kext: its etcd, kubectl and the requests client on one side, a
real HTTPS webhook server with its own CA (tests/webhook_server.py) on the other. The
webhooks are declared in server.yaml (`admission.webhooks`) and in a configuration file
(`admission.configurations`); each test picks its webhook by an object label."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, free_port, start_kext, status_of
from tests.webhook_server import WebhookServer, allow, deny, hang, patch

GROUP = "example.kext.io"
WIDGETS = {"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [GROUP],
           "apiVersions": ["v1alpha1"], "resources": ["widgets"]}


def selected(value: str) -> dict[str, Any]:
    return {"matchLabels": {"admission": value}}


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer, webhooks: WebhookServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    workdir: Path = tmp_path_factory.mktemp("kext-webhooks")
    down = f"https://127.0.0.1:{free_port()}/down"  # nothing listens there

    def webhook(name: str, path: str, kind: str = "Validating", **fields: Any) -> dict[str, Any]:
        return {"name": name, "url": webhooks.url(path), "caFile": webhooks.ca_file,
                "type": kind, "rules": [WIDGETS], "objectSelector": selected(name.split(".")[0]),
                **fields}

    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "selective"},
        "webhooks": [{
            "name": "selective.kext.test",
            "clientConfig": {"url": webhooks.url("/selective"), "caBundle": webhooks.ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [GROUP], "apiVersions": ["*"],
                       "resources": ["widgets"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["chosen"]}]},
            "objectSelector": selected("selective"),
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    }
    config_file = workdir / "webhook-configuration.yaml"
    config_file.write_text(yaml.safe_dump(configuration))
    admission = {
        "webhooks": [
            webhook("mutate.kext.test", "/mutate", "Mutating", objectSelector=selected("main")),
            webhook("validate.kext.test", "/validate", objectSelector=selected("main")),
            webhook("ignore.kext.test", "/ignore", failurePolicy="Ignore", timeoutSeconds=1),
            webhook("fail.kext.test", "/fail", timeoutSeconds=1),
            {**webhook("downignore.kext.test", "/", failurePolicy="Ignore"), "url": down},
            {**webhook("downfail.kext.test", "/"), "url": down},
            webhook("status.kext.test", "/status", rules=[{
                "operations": ["UPDATE"], "apiGroups": [GROUP], "apiVersions": ["v1alpha1"],
                "resources": ["widgets/status"]}]),
            webhook("effects.kext.test", "/effects", sideEffects="Some"),
            webhook("conditions.kext.test", "/conditions", matchConditions=[
                {"name": "big-ones", "expression": "object.spec.size > 5"},
                {"name": "not-dry", "expression": "!request.dryRun"}]),
        ],
        "configurations": [{"file": str(config_file)}],
    }
    process = start_kext(workdir, etcd_server.endpoint, admission=admission)
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def fresh(webhooks: WebhookServer) -> Iterator[None]:
    webhooks.clear()
    yield
    for path in ("/mutate", "/validate", "/ignore", "/fail", "/status", "/effects",
                 "/selective", "/conditions"):
        webhooks.answer(path, allow())
    webhooks.release()


def widget(name: str, admission: str = "main", namespace: str = "hooked",
           **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"admission": admission}},
            "spec": spec or {"size": 2}}


def widgets_url(kext: KextProcess, namespace: str = "hooked") -> str:
    return f"{kext.url}/apis/{GROUP}/v1alpha1/namespaces/{namespace}/widgets"


def kubectl_create(kext: KextProcess, obj: dict[str, Any], *args: str,
                   check: bool = True) -> Any:
    return kext.kubectl("create", "-f", "-", *args, input=json.dumps(obj), check=check)


def test_a_mutating_webhooks_patch_is_stored_and_the_validating_webhook_sees_it(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    webhooks.answer("/mutate", patch([
        {"op": "add", "path": "/spec/color", "value": "green"},
        {"op": "add", "path": "/metadata/labels/mutated", "value": "yes"},
        {"op": "add", "path": "/spec/unknownField", "value": 1},  # pruned, as kube decodes
    ]))
    kubectl_create(kext, widget("patched"))
    stored = kext.session().get(f"{widgets_url(kext)}/patched").json()
    assert stored["spec"] == {"size": 2, "color": "green"}
    assert stored["metadata"]["labels"]["mutated"] == "yes"
    [mutation] = webhooks.reviews("/mutate")
    [validation] = webhooks.reviews("/validate")
    assert mutation["object"]["spec"] == {"size": 2}
    assert validation["object"]["spec"] == {"size": 2, "color": "green"}
    # AdmissionReview v1 exactly, as kube-apiserver sends it
    assert set(mutation) == {"uid", "kind", "resource", "requestKind", "requestResource",
                             "name", "namespace", "operation", "userInfo", "object",
                             "oldObject", "dryRun", "options"}
    assert mutation["kind"] == {"group": GROUP, "version": "v1alpha1", "kind": "Widget"}
    assert mutation["resource"] == {"group": GROUP, "version": "v1alpha1",
                                    "resource": "widgets"}
    assert mutation["requestKind"] == mutation["kind"]
    assert mutation["requestResource"] == mutation["resource"]
    assert (mutation["name"], mutation["namespace"], mutation["operation"]) == (
        "patched", "hooked", "CREATE")
    assert mutation["userInfo"]["username"] == "kext-admin"
    assert "system:masters" in mutation["userInfo"]["groups"]
    assert mutation["oldObject"] is None and mutation["dryRun"] is False
    assert mutation["options"]["kind"] == "CreateOptions"
    assert mutation["options"]["fieldManager"] == "kubectl-create"
    assert mutation["uid"] != validation["uid"]

    webhooks.clear()
    webhooks.answer("/mutate", allow())
    kext.kubectl("patch", "widget", "patched", "-n", "hooked", "--type", "merge",
                 "-p", '{"spec":{"size":3}}')
    [update] = webhooks.reviews("/validate")
    assert update["operation"] == "UPDATE"
    assert update["oldObject"]["spec"]["size"] == 2 and update["object"]["spec"]["size"] == 3
    assert update["options"]["kind"] == "UpdateOptions"


def test_a_denial_reaches_kubectl_with_the_webhooks_message_and_nothing_is_stored(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    webhooks.answer("/validate", deny("widgets may not be called denied", code=403))
    result = kubectl_create(kext, widget("denied"), check=False)
    assert result.returncode != 0
    assert ('admission webhook "validate.kext.test" denied the request: widgets may not be '
            "called denied") in result.stderr
    response = kext.session().get(f"{widgets_url(kext)}/denied")
    assert response.status_code == 404
    direct = kext.session().post(widgets_url(kext), json=widget("denied"))
    assert direct.status_code == 403
    assert status_of(direct)["message"] == ('admission webhook "validate.kext.test" denied the '
                                            "request: widgets may not be called denied")


def test_a_webhook_may_refuse_a_delete(kext: KextProcess, webhooks: WebhookServer) -> None:
    kubectl_create(kext, widget("kept"))
    webhooks.answer("/validate", deny("keep it"))
    result = kext.kubectl("delete", "widget", "kept", "-n", "hooked", check=False)
    assert 'admission webhook "validate.kext.test" denied the request: keep it' in result.stderr
    deletion = webhooks.reviews("/validate")[-1]
    assert deletion["operation"] == "DELETE" and deletion["object"] is None
    assert deletion["oldObject"]["metadata"]["name"] == "kept"
    assert deletion["options"]["kind"] == "DeleteOptions"
    assert kext.session().get(f"{widgets_url(kext)}/kept").status_code == 200


def test_a_deletecollection_is_admitted_object_by_object(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    http = kext.session()
    for name in ("one", "two"):
        assert http.post(widgets_url(kext, "collect"),
                         json=widget(name, namespace="collect")).status_code == 201
    webhooks.clear()
    deleted = http.delete(widgets_url(kext, "collect"), params={"labelSelector": "admission"})
    assert deleted.status_code == 200
    reviews = webhooks.reviews("/validate")
    assert sorted(r["oldObject"]["metadata"]["name"] for r in reviews) == ["one", "two"]
    # as kube: the attributes of a deletecollection name no object
    assert {(r["operation"], r.get("name", "")) for r in reviews} == {("DELETE", "")}
    assert http.get(widgets_url(kext, "collect")).json()["items"] == []


def test_warnings_show_in_kubectls_output(kext: KextProcess, webhooks: WebhookServer) -> None:
    webhooks.answer("/mutate", allow(warnings=["mutating says hello"]))
    webhooks.answer("/validate", allow(warnings=["widgets are going away in v2"]))
    result = kubectl_create(kext, widget("warned"))
    assert "Warning: mutating says hello" in result.stderr
    assert "Warning: widgets are going away in v2" in result.stderr
    # warnings come with a refusal too
    webhooks.answer("/mutate", allow())
    webhooks.answer("/validate", deny("no", warnings=["said no"]))
    refused = kext.session().post(widgets_url(kext), json=widget("warned-and-refused"))
    assert refused.status_code == 400
    assert refused.headers["Warning"] == '299 - "said no"'


def test_failure_policy_when_the_webhook_hangs_past_its_timeout(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    webhooks.answer("/ignore", hang())
    webhooks.answer("/fail", hang())
    kubectl_create(kext, widget("ignored", "ignore"))
    assert kext.session().get(f"{widgets_url(kext)}/ignored").status_code == 200
    result = kubectl_create(kext, widget("failed", "fail"), check=False)
    assert result.returncode != 0
    assert ('Internal error occurred: failed calling webhook "fail.kext.test": failed to call '
            f'webhook: Post "{webhooks.url("/fail")}?timeout=1s": context deadline exceeded'
            in result.stderr)
    assert kext.session().get(f"{widgets_url(kext)}/failed").status_code == 404
    assert len(webhooks.reviews("/ignore")) == len(webhooks.reviews("/fail")) == 1


def test_failure_policy_when_the_webhook_is_down(kext: KextProcess) -> None:
    kubectl_create(kext, widget("no-webhook-needed", "downignore"))
    failed = kext.session().post(widgets_url(kext), json=widget("no-webhook-no-widget",
                                                                "downfail"))
    assert failed.status_code == 500
    status = status_of(failed)
    assert status["reason"] == "InternalError"
    assert status["message"].startswith(
        'Internal error occurred: failed calling webhook "downfail.kext.test": failed to call '
        'webhook: Post "https://127.0.0.1:')
    assert status["message"].endswith(": connect: connection refused")


def test_a_webhook_is_not_called_unless_rules_and_selectors_match(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    http = kext.session()
    for namespace, labels in (("other", "selective"), ("chosen", "unselected")):
        body = widget(f"in-{namespace}", labels, namespace)
        assert http.post(widgets_url(kext, namespace), json=body).status_code == 201
    gadget = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Gadget",
              "metadata": {"name": "g", "labels": {"admission": "selective"}}}
    assert http.post(f"{kext.url}/apis/{GROUP}/v1alpha1/gadgets", json=gadget).status_code == 201
    assert webhooks.reviews("/selective") == []
    assert http.post(widgets_url(kext, "chosen"),
                     json=widget("called", "selective", "chosen")).status_code == 201
    [review] = webhooks.reviews("/selective")
    assert (review["name"], review["namespace"]) == ("called", "chosen")
    # the rule names CREATE only
    merge = {"Content-Type": "application/merge-patch+json"}
    assert http.patch(f"{widgets_url(kext, 'chosen')}/called", json={"spec": {"size": 5}},
                      headers=merge).status_code == 200
    assert len(webhooks.reviews("/selective")) == 1


def test_a_status_update_is_admitted_with_its_subresource(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    http = kext.session()
    assert http.post(widgets_url(kext), json=widget("with-status", "status")).status_code == 201
    assert webhooks.reviews("/status") == []  # the rule names widgets/status only
    webhooks.answer("/status", deny("not that phase"))
    response = http.patch(f"{widgets_url(kext)}/with-status/status",
                          json={"status": {"phase": "Ready"}},
                          headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 400
    [review] = webhooks.reviews("/status")
    assert review["subResource"] == review["requestSubResource"] == "status"
    assert review["operation"] == "UPDATE"
    assert review["object"]["status"] == {"phase": "Ready"}


def test_dry_run_reaches_webhooks_and_one_with_side_effects_is_refused(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    result = kubectl_create(kext, widget("dry"), "--dry-run=server")
    assert "created (server dry run)" in result.stdout
    [review] = webhooks.reviews("/validate")
    assert review["dryRun"] is True and review["options"]["dryRun"] == ["All"]
    assert kext.session().get(f"{widgets_url(kext)}/dry").status_code == 404

    refused = kubectl_create(kext, widget("effects", "effects"), "--dry-run=server", check=False)
    assert 'admission webhook "effects.kext.test" does not support dry run' in refused.stderr
    assert webhooks.reviews("/effects") == []
    kubectl_create(kext, widget("effects", "effects"))
    assert len(webhooks.reviews("/effects")) == 1


def test_match_conditions_are_evaluated_with_kexts_cel(
        kext: KextProcess, webhooks: WebhookServer) -> None:
    http = kext.session()
    webhooks.answer("/conditions", deny("big widgets need approval"))
    small = widget("small-one", "conditions", size=2)
    assert http.post(widgets_url(kext), json=small).status_code == 201
    big = widget("big-one", "conditions", size=9)
    dry = http.post(widgets_url(kext), json=big, params={"dryRun": "All"})
    assert dry.status_code == 201  # not-dry is false: the webhook is not called
    assert webhooks.reviews("/conditions") == []
    refused = http.post(widgets_url(kext), json=big)
    assert status_of(refused)["message"] == ('admission webhook "conditions.kext.test" denied '
                                             "the request: big widgets need approval")
    assert len(webhooks.reviews("/conditions")) == 1


def test_calls_reuse_their_connection(kext: KextProcess, webhooks: WebhookServer) -> None:
    http = kext.session()
    http.post(widgets_url(kext), json=widget("warm-up"))
    before = webhooks.connections
    for i in range(5):
        assert http.post(widgets_url(kext), json=widget(f"reuse-{i}")).status_code == 201
    assert len(webhooks.reviews("/mutate")) == len(webhooks.reviews("/validate")) == 6
    assert webhooks.connections - before <= 1  # ten calls, at most one new handshake


def test_webhook_metrics(kext: KextProcess, webhooks: WebhookServer) -> None:
    webhooks.answer("/validate", deny("counted", code=409))
    kext.session().post(widgets_url(kext), json=widget("measured"))
    text = kext.session().get(f"{kext.url}/metrics").text
    assert ('apiserver_admission_webhook_rejection_count{error_type="no_error",'
            'name="validate.kext.test",operation="CREATE",rejection_code="409",'
            'type="validating"}') in text
    assert ('apiserver_admission_webhook_request_total{code="409",name="validate.kext.test",'
            'operation="CREATE",rejected="true",type="validating"}') in text
    assert ('apiserver_admission_webhook_admission_duration_seconds_count{'
            'name="mutate.kext.test",operation="CREATE",rejected="false",type="admit"}') in text
    assert ('apiserver_admission_step_admission_duration_seconds_count{operation="CREATE",'
            'rejected="true",type="validate"}') in text


def test_kext_check_reports_the_webhooks(kext: KextProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kext", "check", "--config", str(kext.workdir / "server.yaml")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "admission: 10 webhooks (mutate.kext.test, validate.kext.test," in result.stdout
