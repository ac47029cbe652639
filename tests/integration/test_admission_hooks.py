"""Server-wide Python admission hooks (`admission.hooks`) on a real kext: the README's example
hooks (examples/admission_hooks.py), one mutating and one validating, seen from kubectl."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext, status_of

GROUP = "example.kext.io"
HOOKS = [
    {"hook": "examples.admission_hooks:record_creator", "type": "Mutating"},
    "examples.admission_hooks:frozen_objects",
]


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    workdir: Path = tmp_path_factory.mktemp("kext-hooks")
    process = start_kext(workdir, etcd_server.endpoint, admission={"hooks": HOOKS})
    yield process
    process.stop()


def widget(name: str, **labels: str) -> str:
    return json.dumps({"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget",
                       "metadata": {"name": name, "namespace": "pyhooks", "labels": labels},
                       "spec": {"size": 1}})


def test_a_mutating_hook_sees_the_callers_user_name(kext: KextProcess) -> None:
    kext.kubectl("create", "-f", "-", input=widget("mine"))
    got = json.loads(kext.kubectl("get", "widget", "mine", "-n", "pyhooks", "-o", "json").stdout)
    assert got["metadata"]["annotations"]["example.kext.io/created-by"] == "kext-admin"
    gadget = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Gadget", "metadata": {"name": "gd"}}
    created = kext.session().post(f"{kext.url}/apis/{GROUP}/v1alpha1/gadgets", json=gadget)
    assert created.json()["metadata"]["annotations"] == {
        "example.kext.io/created-by": "kext-admin"}  # every resource passes server-wide hooks


def test_hooks_see_dry_run_and_their_warnings_reach_kubectl(kext: KextProcess) -> None:
    result = kext.kubectl("create", "-f", "-", "--dry-run=server", "-o", "json",
                          input=widget("dry"))
    assert "Warning: dry run: Widget 'dry' was not stored" in result.stderr
    answered = json.loads(result.stdout)
    assert answered["metadata"]["annotations"]["example.kext.io/created-by"] == "kext-admin"
    missing = kext.kubectl("get", "widget", "dry", "-n", "pyhooks", check=False)
    assert "NotFound" in missing.stderr


def test_a_validating_hook_denies_with_its_message_and_code(kext: KextProcess) -> None:
    kext.kubectl("create", "-f", "-", input=widget("ice", **{"example.kext.io/frozen": "true"}))
    refused = kext.kubectl("label", "widget", "ice", "-n", "pyhooks", "color=blue",
                           check=False)
    assert refused.returncode != 0
    assert ('Error from server (Forbidden): admission hook "examples.admission_hooks:'
            "frozen_objects\" denied the request: Widget 'ice' is frozen and cannot be changed; "
            "remove the example.kext.io/frozen label first") in refused.stderr
    url = f"{kext.url}/apis/{GROUP}/v1alpha1/namespaces/pyhooks/widgets/ice"
    deleted = kext.session().delete(url)
    assert deleted.status_code == 403
    assert status_of(deleted)["reason"] == "Forbidden"
    assert "cannot be deleted" in status_of(deleted)["message"]
    kext.kubectl("label", "widget", "ice", "-n", "pyhooks", "example.kext.io/frozen-")
    kext.kubectl("delete", "widget", "ice", "-n", "pyhooks")


def test_a_hook_that_does_not_import_stops_kext_at_start_up(
        etcd_server: EtcdServer, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as failed:
        start_kext(tmp_path, etcd_server.endpoint,
                   admission={"hooks": ["examples.no_such_module:hook"]})
    assert ("kext: admission.hooks[0]: cannot import 'examples.no_such_module:hook': "
            "ModuleNotFoundError: No module named 'examples.no_such_module'") in str(failed.value)
