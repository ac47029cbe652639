"""`kext create resource`: names checked as kube checks them, the CRD it writes, and
server.yaml edited as text (comments and order kept)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from kext.api.resource import parse_crd
from kext.cli import main
from kext.scaffold import (
    NewResource,
    ScaffoldError,
    create_resource,
    guess_plural,
    init_project,
    register_resource,
)
from kext.scaffold.resource import full_group, manifest, name_problems
from tests.kext_process import REPO


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    init_project(root, "example.com")
    return root


@pytest.mark.parametrize(("kind", "plural"), [
    ("Widget", "widgets"), ("Policy", "policies"), ("Gateway", "gateways"), ("Box", "boxes"),
    ("Status", "statuses"), ("Match", "matches"), ("Mesh", "meshes"), ("Quiz", "quizes"),
])
def test_guess_plural(kind: str, plural: str) -> None:
    assert guess_plural(kind) == plural


def test_names_are_checked_as_kube_checks_a_crd() -> None:
    problems = name_problems(NewResource(group="Shop.example.com", version="V1",
                                         kind="my_kind", plural="my_kinds"))
    assert [p.split(":")[0] for p in problems] == [
        "--group 'Shop.example.com'", "--version 'V1'", "--kind 'my_kind'",
        "--plural 'my_kinds'"]
    assert "RFC 1123 subdomain" in problems[0]
    assert "may have mixed case, but should otherwise match: a DNS-1035 label" in problems[2]
    assert name_problems(NewResource(group="shop.example.com", version="v1beta1",
                                     kind="Order", plural="orders")) == []


def test_group_takes_the_project_domain_unless_it_has_a_dot(project: Path,
                                                            tmp_path: Path) -> None:
    assert full_group("orders", project) == "orders.example.com"
    assert full_group("orders.acme.io", project) == "orders.acme.io"
    with pytest.raises(ScaffoldError) as error:
        full_group("orders", tmp_path)
    assert "--group 'orders': no domain" in error.value.problems[0]
    assert "PROJECT" in error.value.problems[0]


def test_the_starter_crd_is_one_kube_accepts() -> None:
    resource = NewResource(group="ops.example.com", version="v1", kind="Backup",
                           plural="backups", scope="Cluster", scale=True, hooks=True)
    crd = manifest(resource)
    definition, problems = parse_crd(crd, "backups.yaml")
    assert problems == []
    assert definition is not None
    assert (definition.name, definition.namespaced) == ("backups.ops.example.com", False)
    version = definition.storage_version
    assert version.status_subresource  # --scale implies --status
    assert [c.name for c in version.printer_columns] == ["Summary", "Replicas", "Phase", "Age"]
    assert crd["spec"]["versions"][0]["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}
    assert definition.hooks == {"defaulting": ("backup_hooks:default_backup",),
                                "validation": ("backup_hooks:validate_backup",)}


def test_create_resource_adds_files_and_registers_them(project: Path) -> None:
    before = (project / "server.yaml").read_text()
    created = create_resource(project, NewResource(
        group="ops.example.com", version="v1", kind="Backup", plural="backups",
        status=True, hooks=True))
    assert [path for path, _ in created.files] == [
        "resources/backups.yaml", "backup_hooks.py", "server.yaml"]
    after = (project / "server.yaml").read_text()
    assert after == before.replace("  - file: resources/websites.yaml\n",
                                   "  - file: resources/websites.yaml\n"
                                   "  - file: resources/backups.yaml\n")
    text = (project / "resources/backups.yaml").read_text()
    assert text.startswith("# The Backup resource, added by `kext create resource`")
    definition, problems = parse_crd(yaml.safe_load(text), "backups.yaml")
    assert problems == [] and definition is not None

    spec = importlib.util.spec_from_file_location("backup_hooks", project / "backup_hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    obj = {"metadata": {"name": "b"}, "spec": {"summary": "nightly"}}
    assert hooks.default_backup(obj, None) is None
    assert hooks.validate_backup(obj, None) == []


def test_create_resource_refuses_to_overwrite_and_writes_nothing(project: Path) -> None:
    resource = NewResource(group="ops.example.com", version="v1", kind="Backup",
                           plural="backups", hooks=True)
    (project / "backup_hooks.py").write_text("# mine\n")
    before = (project / "server.yaml").read_text()
    with pytest.raises(ScaffoldError) as error:
        create_resource(project, resource)
    assert error.value.problems == [
        "backup_hooks.py: already exists; kext does not overwrite files"]
    assert (project / "server.yaml").read_text() == before
    assert not (project / "resources/backups.yaml").exists()
    assert (project / "backup_hooks.py").read_text() == "# mine\n"


def test_create_resource_refuses_a_resource_declared_already(project: Path) -> None:
    with pytest.raises(ScaffoldError) as error:
        create_resource(project, NewResource(group="web.example.com", version="v1",
                                             kind="Website", plural="sites"))
    assert error.value.problems == [
        "kind Website in group web.example.com is already declared by resources/websites.yaml"]


def test_cli_runs_in_the_project_directory(project: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(project)
    code = main(["create", "resource", "--group", "ops", "--version", "v1", "--kind", "Backup",
                 "--scale"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        "created resources/backups.yaml: CustomResourceDefinition backups.ops.example.com "
        "(kind Backup, version v1, Namespaced; status and scale subresources)",
        "updated server.yaml: resources now lists resources/backups.yaml",
        "next: kext check --config server.yaml && kext --config server.yaml",
        "then, in another terminal: kubectl --kubeconfig var/certs/kubeconfig get backups",
    ]
    assert main(["check", "--config", "server.yaml"]) == 0
    assert "ok: 2 resources (websites.web.example.com, backups.ops.example.com)" in \
        capsys.readouterr().out

    again = main(["create", "resource", "--group", "ops", "--version", "v1", "--kind", "Backup"])
    assert again == 2
    assert capsys.readouterr().err.splitlines() == [
        "backups.ops.example.com is already declared by resources/backups.yaml",
        "server.yaml: already lists resources/backups.yaml",
        "resources/backups.yaml: already exists; kext does not overwrite files",
    ]


# -- server.yaml edited as text

def test_register_keeps_every_line_of_the_embedded_default() -> None:
    text = (REPO / "config/server.yaml").read_text()
    edited = register_resource(text, "resources/things.yaml")
    assert edited == text + "  - file: resources/things.yaml\n"


def test_register_into_an_empty_flow_list_keeps_the_comment_column() -> None:
    text = "kind: ServerConfig\nresources: []      # the CRDs\nlogging: {}\n"
    assert register_resource(text, "resources/a.yaml") == (
        "kind: ServerConfig\nresources:         # the CRDs\n  - file: resources/a.yaml\n"
        "logging: {}\n")


def test_register_without_a_resources_key_appends_one() -> None:
    text = "# mine\nkind: ServerConfig"
    assert register_resource(text, "resources/a.yaml") == (
        "# mine\nkind: ServerConfig\nresources:\n  - file: resources/a.yaml\n")


def test_register_follows_the_list_as_written() -> None:
    unindented = "resources:\n- file: a.yaml\n# later\nlogging:\n  level: info\n"
    assert register_resource(unindented, "b.yaml") == (
        "resources:\n- file: a.yaml\n- file: b.yaml\n# later\nlogging:\n  level: info\n")
    inline_last = ("resources:\n    - file: a.yaml\n    - inline:\n        apiVersion: x\n"
                   "        kind: y\n\n    # - file: old.yaml\nlogging: {}\n")
    assert register_resource(inline_last, "b.yaml") == (
        "resources:\n    - file: a.yaml\n    - inline:\n        apiVersion: x\n"
        "        kind: y\n    - file: b.yaml\n\n    # - file: old.yaml\nlogging: {}\n")
    flow = "resources: [{file: a.yaml}]  # two\n"
    assert register_resource(flow, "b.yaml") == (
        "resources: [{file: a.yaml}, {file: b.yaml}]  # two\n")


def test_register_refuses_what_it_cannot_extend_safely() -> None:
    with pytest.raises(ScaffoldError) as error:
        register_resource("resources: [\n  {file: a.yaml}\n]\n", "b.yaml")
    assert error.value.problems == [
        "server.yaml: cannot add `- file: b.yaml` to its resources list as written; "
        "add it by hand"]
    with pytest.raises(ScaffoldError) as error:
        register_resource("resources: {file: a.yaml}\n", "b.yaml")
    assert error.value.problems == [
        "server.yaml: expected a ServerConfig mapping with a resources list"]
