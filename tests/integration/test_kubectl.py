"""kubectl against a real kext, as a new user would drive it."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.kext_process import REPO, KextProcess

WIDGET = """
apiVersion: example.kext.io/v1alpha1
kind: Widget
metadata:
  name: {name}
spec:
  size: {size}
  color: red
"""


@pytest.fixture
def ns(kext: KextProcess) -> str:
    """A namespace name of its own per test (kext has no Namespace objects to create)."""
    return f"t-{uuid.uuid4().hex[:8]}"


def test_empty_list_says_no_resources_found(kext: KextProcess, ns: str) -> None:
    result = kext.kubectl("get", "widgets", "-n", ns)
    assert "No resources found" in result.stderr + result.stdout


def test_create_get_and_table_columns(kext: KextProcess, ns: str) -> None:
    created = kext.kubectl("create", "-n", ns, "-f", str(REPO / "config/examples/widget.yaml"))
    assert "widget.example.kext.io/example created" in created.stdout
    table = kext.kubectl("get", "widgets", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "COLOR", "PHASE", "AGE"]
    assert table[1].split()[:3] == ["example", "2", "blue"]
    as_yaml = kext.kubectl("get", "widget", "example", "-n", ns, "-o", "yaml").stdout
    assert "uid:" in as_yaml and "creationTimestamp:" in as_yaml and "generation: 1" in as_yaml
    short = kext.kubectl("get", "wd", "-n", ns, "-o", "name").stdout.strip()
    assert short == "widget.example.kext.io/example"


def test_apply_twice_reports_unchanged(kext: KextProcess, ns: str) -> None:
    manifest = WIDGET.format(name="applied", size=4)
    first = kext.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    assert "widget.example.kext.io/applied created" in first.stdout
    second = kext.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    assert "widget.example.kext.io/applied unchanged" in second.stdout
    third = kext.kubectl("apply", "-n", ns, "-f", "-", input=WIDGET.format(name="applied", size=5))
    assert "configured" in third.stdout
    got = json.loads(kext.kubectl("get", "widget", "applied", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["size"] == 5
    assert got["metadata"]["generation"] == 2


def test_patch_label_replace_and_delete(kext: KextProcess, ns: str) -> None:
    kext.kubectl("create", "-n", ns, "-f", "-", input=WIDGET.format(name="p", size=1))
    kext.kubectl("patch", "widget", "p", "-n", ns, "--type", "merge", "-p", '{"spec":{"size":3}}')
    kext.kubectl("patch", "widget", "p", "-n", ns, "--type", "json",
                 "-p", '[{"op":"replace","path":"/spec/color","value":"green"}]')
    kext.kubectl("label", "widget", "p", "-n", ns, "tier=gold")
    got = json.loads(kext.kubectl("get", "widget", "p", "-n", ns, "-o", "json").stdout)
    assert got["spec"] == {"size": 3, "color": "green"}
    assert got["metadata"]["labels"] == {"tier": "gold"}
    assert got["metadata"]["generation"] == 3  # the label did not bump it

    # an edit-style replace: get, change, put back with the resourceVersion
    got["spec"]["color"] = "blue"
    kext.kubectl("replace", "-f", "-", input=json.dumps(got))
    selected = kext.kubectl("get", "widgets", "-n", ns, "-l", "tier=gold", "-o", "name").stdout
    assert selected.strip() == "widget.example.kext.io/p"
    by_field = kext.kubectl("get", "widgets", "-n", ns, "--field-selector", "spec.color=blue",
                            "-o", "name").stdout
    assert by_field.strip() == "widget.example.kext.io/p"

    # the same replace again carries a stale resourceVersion now
    stale = kext.kubectl("replace", "-f", "-", input=json.dumps(got), check=False)
    assert stale.returncode != 0
    assert "the object has been modified" in stale.stderr

    deleted = kext.kubectl("delete", "widget", "p", "-n", ns)
    assert 'widget.example.kext.io "p" deleted' in deleted.stdout
    # (kubectl get of a missing name also asks /api for the namespace, which only a full
    # cluster serves; list instead)
    assert kext.kubectl("get", "widgets", "-n", ns, "-o", "name").stdout.strip() == ""


def test_invalid_object_names_every_bad_field(kext: KextProcess, ns: str) -> None:
    bad = """
apiVersion: example.kext.io/v1alpha1
kind: Widget
metadata:
  name: bad
spec:
  size: 0
  color: purple
"""
    result = kext.kubectl("create", "-n", ns, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert 'The Widget "bad" is invalid' in result.stderr
    assert "spec.size" in result.stderr and "spec.color" in result.stderr


def test_explain_and_api_resources(kext: KextProcess) -> None:
    explained = kext.kubectl("explain", "widgets.spec").stdout
    assert "KIND:       Widget" in explained
    assert "size\t<integer>" in explained
    resources = kext.kubectl("api-resources", "--api-group", "example.kext.io").stdout
    rows = {line.split()[0]: line.split() for line in resources.splitlines()[1:]}
    assert rows["widgets"] == ["widgets", "wd", "example.kext.io/v1alpha1", "true", "Widget"]
    assert rows["gadgets"][-2:] == ["false", "Gadget"]


def test_cluster_scoped_resource(kext: KextProcess) -> None:
    name = f"g-{uuid.uuid4().hex[:6]}"
    gadget = f"""
apiVersion: example.kext.io/v1alpha1
kind: Gadget
metadata:
  name: {name}
spec: {{}}
"""
    kext.kubectl("create", "-f", "-", input=gadget)
    assert name in kext.kubectl("get", "gadgets").stdout
    kext.kubectl("delete", "gadget", name)


def test_server_side_apply_with_conflicts(kext: KextProcess, ns: str) -> None:
    manifest = WIDGET.format(name="ssa", size=4)
    first = kext.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=manifest)
    assert "serverside-applied" in first.stdout
    got = json.loads(kext.kubectl("get", "widget", "ssa", "-n", ns, "-o", "json",
                                  "--show-managed-fields").stdout)
    entry = got["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    assert entry["fieldsV1"] == {"f:spec": {"f:color": {}, "f:size": {}}}

    kext.kubectl("patch", "widget", "ssa", "-n", ns, "--type", "merge", "-p",
                 '{"spec":{"size":9}}')
    changed = WIDGET.format(name="ssa", size=5)
    conflict = kext.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=changed,
                            check=False)
    assert conflict.returncode != 0
    assert 'conflict with "kubectl-patch"' in conflict.stderr and ".spec.size" in conflict.stderr
    kext.kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-",
                 input=changed)
    size = kext.kubectl("get", "widget", "ssa", "-n", ns, "-o", "jsonpath={.spec.size}").stdout
    assert size == "5"
