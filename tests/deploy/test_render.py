"""The chart renderer behaves as helm does where the chart relies on it: value merging and
typing, named templates, include/tpl/required/fail/lookup, the built-in objects, partials and
NOTES.txt left out, documents split. Checked on a small chart made here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.render import Renderer

TEMPLATES = {
    "_helpers.tpl": '{{- define "t.greeting" -}}hello {{ .name }}{{- end -}}\n',
    "NOTES.txt": "not a manifest: {{ .Release.Name }}\n",
    "config.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
  namespace: {{ .Release.Namespace }}
data:
  greeting: {{ include "t.greeting" (dict "name" .Values.who) | quote }}
  tpl: {{ tpl .Values.pattern . | quote }}
  chart: {{ printf "%s-%s-%s" .Chart.Name .Chart.Version .Chart.AppVersion | quote }}
  service: {{ .Release.Service | quote }}
  template: {{ .Template.Name | quote }}
  basePath: {{ .Template.BasePath | quote }}
  kinds: {{ printf "%T %T %T" .Values.count .Values.fromSet .Values.text | quote }}
  count: {{ .Values.count | quote }}
  missing: "{{ .Values.nothing }}"
  gone: {{ hasKey .Values "dropped" | quote }}
  nested: {{ toJson .Values.nested | quote }}
  list: {{ toJson .Values.items | quote }}
  lookup: {{ lookup "v1" "Secret" "ns" "name" | toJson | quote }}
  monitoring: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
  apps: {{ .Capabilities.APIVersions.Has "apps/v1" | quote }}
  roundTrip: {{ .Values.nested | toYaml | fromYaml | toJson | quote }}
---
# only a comment
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ required "secretName is required" .Values.secretName }}
""",
    "fail.yaml": "{{ if .Values.explode }}{{ fail \"exploded on request\" }}{{ end }}\n",
}

VALUES = {
    "who": "world", "pattern": "{{ .Release.Name }} in {{ .Release.Namespace }}",
    "count": 3, "fromSet": 0, "text": "x", "dropped": "default", "secretName": "s",
    "nested": {"a": 1, "b": {"c": "d", "e": "f"}}, "items": ["one"], "explode": False,
}


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(
        "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: '4.5'\n")
    (root / "values.yaml").write_text(yaml.safe_dump(VALUES))
    for name, text in TEMPLATES.items():
        (root / "templates" / name).write_text(text)
    return root


def run_chart(renderer: Renderer, chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(renderer.binary), "--chart", str(chart), "--name", "rel", "--namespace", "ns",
         *args], capture_output=True, text=True, timeout=60)


def test_helm_semantics(render: Renderer, chart: Path, tmp_path: Path) -> None:
    overrides = tmp_path / "over.yaml"
    overrides.write_text("nested: {b: {c: changed}}\ndropped: null\n")
    result = run_chart(render, chart, "-f", str(overrides), "--set", "fromSet=7",
                                 "--set", "items={two,three}", "--set-string", "text=8",
                                 "--api-versions", "monitoring.coreos.com/v1")
    assert result.returncode == 0, result.stderr
    assert "# Source: demo/templates/config.yaml" in result.stdout
    assert "not a manifest" not in result.stdout and "hello" in result.stdout
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["kind"] for d in documents] == ["ConfigMap", "Secret"]
    data = documents[0]["data"]
    assert documents[0]["metadata"] == {"name": "rel-demo", "namespace": "ns"}
    assert data["greeting"] == "hello world"
    assert data["tpl"] == "rel in ns"
    assert data["chart"] == "demo-1.2.3-4.5"
    assert data["service"] == "Helm"
    assert (data["template"], data["basePath"]) == ("demo/templates/config.yaml",
                                                    "demo/templates")
    # values.yaml numbers decode as float64, --set integers as int64, --set-string as strings.
    assert data["kinds"] == "float64 int64 string"
    assert data["count"] == "3"
    assert data["missing"] == ""  # missingkey=zero, "<no value>" removed
    assert data["gone"] == "false"  # a null in -f deletes the default
    assert data["nested"] == '{"a":1,"b":{"c":"changed","e":"f"}}'  # maps merge
    assert data["list"] == '["two","three"]'  # lists replace
    assert data["lookup"] == "{}"  # no cluster: lookup finds nothing, as under helm template
    assert (data["monitoring"], data["apps"]) == ("true", "true")
    assert data["roundTrip"] == data["nested"]


def test_required_and_fail_stop_the_render(render: Renderer, chart: Path) -> None:
    missing = run_chart(render, chart, "--set", "secretName=")
    assert missing.returncode == 1
    assert "secretName is required" in missing.stderr
    exploded = run_chart(render, chart, "--set", "explode=true")
    assert exploded.returncode == 1
    assert "exploded on request" in exploded.stderr
    without = run_chart(render, chart)
    assert 'monitoring: "false"' in without.stdout  # only the built-in API versions
