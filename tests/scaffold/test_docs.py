"""`kext docs`: the API reference says what each declared schema says, in Markdown and one
self-contained HTML page."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from kext.api.resource import ResourceDefinition, parse_crd
from kext.cli import main
from kext.docs import document, render_html, render_markdown
from kext.docs.model import KindDoc
from kext.scaffold import init_project
from tests.kext_process import REPO


def _crd(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    return manifest


def _docs(manifest: dict[str, Any]) -> list[KindDoc]:
    definition, problems = parse_crd(manifest, "test")
    assert problems == [] and isinstance(definition, ResourceDefinition)
    return document(definition, manifest)


@pytest.fixture(scope="module")
def website(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("p") / "p"
    init_project(root, "example.com")
    return _crd(root / "resources/websites.yaml")


class _Page(HTMLParser):
    """The text, element ids and links of an HTML page, and every tag used."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value:
                self.links.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_field_tree_of_widgets() -> None:
    [doc] = _docs(_crd(REPO / "config/resources/widgets.yaml"))
    fields = {f.path: f for f in doc.fields}
    assert list(fields) == [
        "apiVersion", "kind", "metadata", "spec", "spec.size", "spec.color", "spec.tags",
        "spec.dimensions", "spec.dimensions.width", "spec.dimensions.height", "status",
        "status.phase", "status.observedGeneration"]
    size = fields["spec.size"]
    assert (size.type, size.default, size.constraints, size.depth) == (
        "integer", "1", ("minimum: 1",), 1)
    assert fields["spec.color"].enum == ('"red"', '"green"', '"blue"')
    assert fields["spec.tags"].type == "[]string"
    assert fields["spec.dimensions.width"].required
    assert not fields["spec.dimensions"].required
    assert fields["status.observedGeneration"].format == "int64"
    assert fields["spec.dimensions.width"].name == "width"
    assert fields["spec.dimensions.width"].parent == "spec.dimensions."


def test_lists_maps_and_int_or_string() -> None:
    crd = _crd(REPO / "config/resources/gadgets.yaml")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"].update({
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "required": ["name"], "properties": {
                      "name": {"type": "string"},
                      "target": {"x-kubernetes-int-or-string": True,
                                 "anyOf": [{"type": "integer"}, {"type": "string"}]}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "limits": {"type": "object", "additionalProperties": {
            "type": "integer", "minimum": 0, "exclusiveMinimum": True}},
    })
    [doc] = _docs(crd)
    fields = {f.path: f for f in doc.fields}
    assert fields["spec.ports"].type == "[]object"
    assert fields["spec.ports"].constraints == (
        "x-kubernetes-list-type: map", 'x-kubernetes-list-map-keys: ["name"]')
    assert fields["spec.ports[*].name"].required
    assert fields["spec.ports[*].target"].type == "int-or-string"
    assert fields["spec.labels"].type == "map[string]string"
    assert "spec.labels.*" not in fields  # nothing to say beyond the map's type
    assert fields["spec.limits.*"].constraints == ("minimum: 0 (exclusive)",)
    assert fields["spec.limits.*"].name == "*"


def test_cel_rules_with_their_messages(website: dict[str, Any]) -> None:
    [doc] = _docs(website)
    [rule] = {f.path: f for f in doc.fields}["spec.tls"].rules
    assert (rule.rule, rule.message) == ("!self.enabled || has(self.secretName)",
                                         "tls.secretName is required when tls.enabled is true")
    assert not rule.transition
    page = render_html([doc], "server.yaml")
    assert "<code>!self.enabled || has(self.secretName)</code>" in page
    assert "message: tls.secretName is required when tls.enabled is true" in page
    markdown = render_markdown([doc], "server.yaml")
    assert ("CEL rule `!self.enabled \\|\\| has(self.secretName)`: tls.secretName is required "
            "when tls.enabled is true") in markdown


def test_example_objects_come_from_the_defaults(website: dict[str, Any]) -> None:
    [widget] = _docs(_crd(REPO / "config/resources/widgets.yaml"))
    assert widget.example == {
        "apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
        "metadata": {"name": "example-widget", "namespace": "default"},
        "spec": {"size": 1}}  # dimensions is optional and holds no default: left out
    [site] = _docs(website)
    assert site.example["spec"] == {"replicas": 1, "tier": "free", "paths": ["/"],
                                    "tls": {"enabled": False}}
    [gadget] = _docs(_crd(REPO / "config/resources/gadgets.yaml"))
    assert "namespace" not in gadget.example["metadata"]  # cluster-scoped

    crd = copy.deepcopy(website)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["required"] = ["host", "owner"]
    spec["properties"]["owner"] = {"type": "object", "required": ["team", "level"],
                                   "properties": {"team": {"type": "string"},
                                                  "level": {"type": "integer", "minimum": 3}}}
    [doc] = _docs(crd)
    assert doc.example["spec"]["host"] == "example"
    assert doc.example["spec"]["owner"] == {"team": "example", "level": 3}


def test_the_page_is_self_contained_with_an_anchor_per_field(website: dict[str, Any]) -> None:
    docs = _docs(website) + _docs(_crd(REPO / "config/resources/widgets.yaml"))
    docs.sort(key=lambda d: (d.group, d.kind))
    page = _Page(render_html(docs, "server.yaml"))
    assert page.tags.isdisjoint({"script", "link", "img", "iframe", "object"})
    assert all(link.startswith("#") for link in page.links)
    for doc in docs:
        assert doc.anchor in page.ids
        for field in doc.fields:
            assert doc.field_anchor(field) in page.ids
    for link in page.links:  # every link lands somewhere (browsers percent-decode fragments)
        assert unquote(link[1:]) in page.ids
    text = " ".join(" ".join(page.text).split())
    assert "example.kext.io/v1alpha1" in text and "web.example.com/v1alpha1" in text
    assert "Short names ws" in text and "Scope Namespaced" in text
    assert "Python validation hooks website_hooks:free_websites_are_small" in text


def test_descriptions_are_escaped() -> None:
    crd = _crd(REPO / "config/resources/gadgets.yaml")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["description"] = "<script>alert(1)</script> a | b"
    [doc] = _docs(crd)
    page = render_html([doc], "server.yaml")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a \\| b" not in page
    assert "<script>alert(1)</script> a \\| b |" in render_markdown([doc], "server.yaml")


def test_kext_docs_writes_both_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    init_project(root, "example.com")
    monkeypatch.chdir(root)
    assert main(["create", "resource", "--group", "ops", "--version", "v1", "--kind", "Backup",
                 "--scale"]) == 0
    capsys.readouterr()
    assert main(["docs", "--config", "server.yaml", "--out", "docs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["wrote docs/index.md", "wrote docs/index.html"]
    markdown = (root / "docs/index.md").read_text()
    assert markdown.startswith("# API reference\n\n2 kinds in 2 API groups")
    assert "- [Backup v1](#backup.v1.ops.example.com)" in markdown
    assert re.search(r"\| Subresources \| status .*, scale \(autoscaling/v1 Scale: "
                     r"specReplicasPath \.spec\.replicas", markdown)
    html = (root / "docs/index.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and 'id="backup.v1.ops.example.com"' in html


def test_kext_docs_reports_a_bad_configuration(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("apiVersion: kext.io/v1alpha1\nkind: ServerConfig\n"
                      "resources:\n  - file: missing.yaml\n")
    assert main(["docs", "--config", str(config), "--out", str(tmp_path / "docs")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "resources[0].file: no such file: missing.yaml"]
    assert not (tmp_path / "docs").exists()
