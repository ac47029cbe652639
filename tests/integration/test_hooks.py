"""Python strategy hooks declared in a CRD run on every write of a real kext."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.etcd import EtcdServer
from tests.kext_process import REPO, KextProcess, start_kext, status_of

HOOKS = {
    "defaulting": ["examples.widget_hooks:default_tags"],
    "validation": ["examples.widget_hooks:red_widgets_are_small"],
    "status": ["examples.widget_hooks:phase"],
}


@pytest.fixture(scope="module")
def kext_with_hooks(etcd_server: EtcdServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    workdir: Path = tmp_path_factory.mktemp("hooks")
    crd = yaml.safe_load((REPO / "config/resources/widgets.yaml").read_text())
    crd["metadata"]["annotations"] = {"kext.io/hooks": json.dumps(HOOKS)}
    path = workdir / "widgets-with-hooks.yaml"
    path.write_text(yaml.safe_dump(crd))
    process = start_kext(workdir, etcd_server.endpoint, resources=[{"file": str(path)}])
    yield process
    process.stop()


def test_hooks_default_validate_and_compute_status(kext_with_hooks: KextProcess) -> None:
    http = kext_with_hooks.session()
    base = f"{kext_with_hooks.url}/apis/example.kext.io/v1alpha1/namespaces/hooks/widgets"
    body = {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": "h"}, "spec": {"size": 2, "color": "blue"}}
    created = http.post(base, json=body).json()
    assert created["spec"]["tags"] == ["blue"]  # defaulting hook
    assert created["status"] == {"phase": "Pending", "observedGeneration": 1}  # status hook
    patched = http.patch(f"{base}/h", json={"spec": {"size": 3}},
                         headers={"Content-Type": "application/merge-patch+json"}).json()
    assert patched["status"] == {"phase": "Ready", "observedGeneration": 2}
    rejected = http.post(base, json={**body, "metadata": {"name": "big"},
                                     "spec": {"size": 9, "color": "red"}})
    assert rejected.status_code == 422
    assert "red widgets may not be bigger than 5" in status_of(rejected)["message"]


def test_a_hook_message_about_the_whole_object_reads_as_kubes(
        kext_with_hooks: KextProcess) -> None:
    manifest = ("apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata:\n  name: big\n"
                "spec:\n  size: 9\n  color: red\n")
    refused = kext_with_hooks.kubectl("create", "-n", "hooks", "-f", "-", input=manifest,
                                      check=False)
    assert refused.returncode == 1
    # the message of a validation rule on the root of the schema, as kube words one
    assert refused.stderr.strip() == (
        'The Widget "big" is invalid: <nil>: Invalid value: "object": red widgets may not be '
        "bigger than 5")
    answer = kext_with_hooks.session().post(
        f"{kext_with_hooks.url}/apis/example.kext.io/v1alpha1/namespaces/hooks/widgets",
        json=yaml.safe_load(manifest))
    assert status_of(answer)["message"] == (
        'Widget.example.kext.io "big" is invalid: <nil>: Invalid value: "object": red widgets '
        "may not be bigger than 5")
