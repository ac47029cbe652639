"""CEL validation rules (x-kubernetes-validations) through kubectl against a real kext: bad
objects are refused with the rule's message at the rule's path, a transition rule keeps a
field immutable, and validation ratchets across a CRD that tightened its rules."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.etcd import EtcdServer
from tests.kext_process import REPO, KextProcess, start_kext

CRD = Path(__file__).parent / "buckets-with-rules.yaml"


def bucket(name: str, **spec: Any) -> str:
    body = {"minReplicas": 1, "replicas": 2, "maxReplicas": 3, **spec}
    return yaml.safe_dump({"apiVersion": "rules.kext.io/v1", "kind": "Bucket",
                           "metadata": {"name": name}, "spec": body})


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[KextProcess]:
    workdir = tmp_path_factory.mktemp("kext-cel")
    process = start_kext(workdir, etcd_server.endpoint, resources=[{"file": str(CRD)}])
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def create(kext: KextProcess, ns: str, manifest: str) -> Any:
    return kext.kubectl("create", "-n", ns, "-f", "-", input=manifest, check=False)


def test_a_good_bucket_is_created(kext: KextProcess, ns: str) -> None:
    result = create(kext, ns, bucket("good", owner="team-a", quota="5Gi", retentionDays=7))
    assert result.returncode == 0, result.stderr
    assert "bucket.rules.kext.io/good created" in result.stdout


def test_a_cross_field_rule_refuses_with_its_message(kext: KextProcess, ns: str) -> None:
    result = create(kext, ns, bucket("few", minReplicas=3, replicas=2))
    assert result.returncode != 0
    assert result.stderr.strip() == (
        'The Bucket "few" is invalid: spec: Invalid value: replicas must be between '
        "minReplicas and maxReplicas")


def test_regex_quantity_and_message_expression_rules_name_their_fields(
        kext: KextProcess, ns: str) -> None:
    result = create(kext, ns, bucket("bad", owner="Team_A", quota="20Gi", retentionDays=90))
    assert result.returncode != 0
    assert 'The Bucket "bad" is invalid: ' in result.stderr
    assert "spec.retentionDays: Invalid value: retentionDays may be at most 30" in result.stderr
    assert 'spec.owner: Invalid value: "Team_A": owner must be a lowercase name' in result.stderr
    assert ("spec.quota: Forbidden: quota must be a quantity of at most 10Gi, not 20Gi"
            in result.stderr)


def test_the_status_lists_one_cause_per_failed_rule(kext: KextProcess, ns: str) -> None:
    manifest = yaml.safe_load(bucket("causes", owner="X", quota="lots"))
    with kext.session() as s:
        r = s.post(f"{kext.url}/apis/rules.kext.io/v1/namespaces/{ns}/buckets", json=manifest)
    assert r.status_code == 422
    status = r.json()
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "spec.owner",
         "message": 'Invalid value: "X": owner must be a lowercase name'},
        {"reason": "FieldValueForbidden", "field": "spec.quota",
         "message": "Forbidden: quota must be a quantity of at most 10Gi, not lots"},
    ]


def test_a_transition_rule_keeps_a_field_immutable(kext: KextProcess, ns: str) -> None:
    assert create(kext, ns, bucket("immutable", storageClass="fast")).returncode == 0
    changed = kext.kubectl("patch", "-n", ns, "bucket", "immutable", "--type=merge", "-p",
                           json.dumps({"spec": {"storageClass": "slow"}}), check=False)
    assert changed.returncode != 0
    assert ('spec.storageClass: Invalid value: "slow": storageClass is immutable'
            in changed.stderr)
    other = kext.kubectl("patch", "-n", ns, "bucket", "immutable", "--type=merge", "-p",
                         json.dumps({"spec": {"replicas": 3}}))
    assert "patched" in other.stdout


def test_rules_are_published_for_kubectl_explain(kext: KextProcess) -> None:
    with kext.session() as s:
        doc = s.get(f"{kext.url}/openapi/v3/apis/rules.kext.io/v1").json()
    bucket_schema = next(v for k, v in doc["components"]["schemas"].items()
                         if k.endswith(".Bucket"))
    rules = bucket_schema["properties"]["spec"]["x-kubernetes-validations"]
    assert rules[0]["message"] == "replicas must be between minReplicas and maxReplicas"
    explained = kext.kubectl("explain", "buckets.spec.owner").stdout
    assert "FIELD: owner <string>" in explained


def test_ratcheting_lets_an_old_object_change_an_unrelated_field(
        etcd_server: EtcdServer, tmp_path: Path, ns: str) -> None:
    prefix = f"/kext-test-{uuid.uuid4().hex[:8]}"
    storage = {"prefix": prefix, "etcd": {"endpoints": [etcd_server.endpoint]}}
    loose = start_kext(tmp_path / "loose", etcd_server.endpoint,
                       resources=[{"file": str(CRD)}], storage=storage)
    try:
        result = create(loose, ns, bucket("legacy", owner="a-very-long-owner-name"))
        assert result.returncode == 0, result.stderr
    finally:
        loose.stop()

    tightened = yaml.safe_load(CRD.read_text())
    owner = tightened["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["owner"]
    owner["x-kubernetes-validations"].append(
        {"rule": "self.size() <= 8", "message": "owner may have at most 8 characters"})
    tight_crd = tmp_path / "tightened.yaml"
    tight_crd.write_text(yaml.safe_dump(tightened))
    tight = start_kext(tmp_path / "tight", etcd_server.endpoint,
                       resources=[{"file": str(tight_crd)}], storage=storage)
    try:
        # New objects meet the tightened rule...
        refused = create(tight, ns, bucket("newcomer", owner="a-very-long-owner-name"))
        assert "owner may have at most 8 characters" in refused.stderr
        # ...the stored one may still change what the tightened rule does not look at...
        patched = tight.kubectl("patch", "-n", ns, "bucket", "legacy", "--type=merge", "-p",
                                json.dumps({"spec": {"replicas": 3}}), check=False)
        assert patched.returncode == 0, patched.stderr
        # ...but not keep breaking it with a new value.
        renamed = tight.kubectl("patch", "-n", ns, "bucket", "legacy", "--type=merge", "-p",
                                json.dumps({"spec": {"owner": "another-long-owner"}}),
                                check=False)
        assert "owner may have at most 8 characters" in renamed.stderr
    finally:
        tight.stop()


def test_kext_check_reports_a_rule_that_does_not_compile(tmp_path: Path) -> None:
    import subprocess
    import sys

    broken = yaml.safe_load(CRD.read_text())
    spec = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"].append({"rule": "self.replicas == 'three'"})
    crd = tmp_path / "broken.yaml"
    crd.write_text(yaml.safe_dump(broken))
    server = tmp_path / "server.yaml"
    server.write_text(yaml.safe_dump({
        "apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
        "storage": {"etcd": {"endpoints": ["http://127.0.0.1:1"]}},
        "resources": [{"file": str(crd)}]}))
    result = subprocess.run([sys.executable, "-m", "kext", "check", "--config", str(server)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert ("spec.versions[0].schema.openAPIV3Schema.properties[spec]"
            ".x-kubernetes-validations[2].rule: Invalid value: apiextensions.ValidationRule"
            in result.stderr + result.stdout)
    assert "found no matching overload for '_==_' applied to '(int, string)'" in (
        result.stderr + result.stdout)
