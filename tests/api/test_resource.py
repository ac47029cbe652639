"""Reading CustomResourceDefinition manifests: what `kext check` tells a user."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kext.api.resource import ScaleSubresource, parse_crd
from kext.certs import new_ca

CRD: dict[str, Any] = yaml.safe_load("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
  annotations:
    kext.io/hooks: |
      defaulting: [widgets.hooks:default]
      validation: ["widgets.hooks:validate", "widgets.more:Checker.check"]
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
    - name: v1beta1
      served: true
      storage: false
      deprecated: true
      deprecationWarning: use v1
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size, priority: 1}
      selectableFields:
        - jsonPath: .spec.color
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
                color: {type: string}
                tags: {type: array, items: {type: string}}
""")


def parse(crd: dict[str, Any]) -> list[str]:
    definition, problems = parse_crd(crd, "resources[0]")
    assert (definition is None) == bool(problems)
    return problems


def edited(path: str, value: Any) -> dict[str, Any]:
    crd = copy.deepcopy(CRD)
    *parents, last = path.split(".")
    node = crd
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return crd


_DELETE = object()
CA_PEM = new_ca("conversion-webhook-ca").cert_pem


def test_a_good_crd() -> None:
    definition, problems = parse_crd(CRD, "resources[0]")
    assert problems == []
    assert definition is not None
    assert definition.name == "widgets.example.com"
    assert (definition.singular, definition.list_kind) == ("widget", "WidgetList")
    assert definition.namespaced and definition.short_names == ("wd",)
    assert definition.storage_version.name == "v1"
    v1 = definition.storage_version
    assert v1.status_subresource and v1.selectable_fields == (".spec.color",)
    assert v1.printer_columns[0].json_path == ".spec.size"
    assert v1.printer_columns[0].priority == 1
    old = definition.version("v1beta1")
    assert old is not None and old.deprecated and old.deprecation_warning == "use v1"
    assert definition.hooks == {
        "defaulting": ("widgets.hooks:default",),
        "validation": ("widgets.hooks:validate", "widgets.more:Checker.check"),
    }


@pytest.mark.parametrize(("path", "value", "problem"), [
    ("apiVersion", "apiextensions.k8s.io/v1beta1",
     'resources[0].apiVersion: Unsupported value: "apiextensions.k8s.io/v1beta1": '
     'supported values: "apiextensions.k8s.io/v1"'),
    ("metadata.name", "widget.example.com",
     'resources[0].metadata.name: Invalid value: "widget.example.com": '
     'must be spec.names.plural+"."+spec.group'),
    ("spec.names.plural", _DELETE, "resources[0].spec.names.plural: Required value"),
    ("spec.scope", "Global",
     'resources[0].spec.scope: Unsupported value: "Global": '
     'supported values: "Cluster", "Namespaced"'),
    ("spec.versions.1.storage", False,
     "resources[0].spec.versions: Invalid value: []: "
     "must have exactly one version marked as storage version"),
    ("spec.versions.0.name", "v1", 'resources[0].spec.versions[1].name: Duplicate value: "v1"'),
    ("spec.versions.1.schema", _DELETE,
     "resources[0].spec.versions[1].schema.openAPIV3Schema: Required value: "
     "schemas are required"),
    ("spec.versions.1.schema.openAPIV3Schema.properties.spec.properties.size",
     {"minimum": 1},
     "resources[0].spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[size]"
     ".type: Required value: must not be empty for specified object fields"),
    ("spec.versions.1.additionalPrinterColumns.0.type", "float",
     'resources[0].spec.versions[1].additionalPrinterColumns[0].type: Unsupported value: '
     '"float": supported values: "boolean", "date", "integer", "number", "string"'),
    ("spec.versions.1.additionalPrinterColumns.0.jsonPath", "spec.size",
     'resources[0].spec.versions[1].additionalPrinterColumns[0].jsonPath: Invalid value: '
     '"spec.size": must be a simple json path starting with .'),
    ("spec.versions.1.selectableFields.0.jsonPath", ".spec.tags",
     'resources[0].spec.versions[1].selectableFields[0].jsonPath: Invalid value: ".spec.tags": '
     "must point to a field of type string, boolean or integer. Enum string fields and "
     "strings with formats are allowed."),
    ("spec.versions.1.selectableFields.0.jsonPath", ".spec.nope",
     'resources[0].spec.versions[1].selectableFields[0].jsonPath: Invalid value: ".spec.nope": '
     "is an invalid path: does not refer to a valid field"),
])
def test_problems_name_the_key(path: str, value: Any, problem: str) -> None:
    assert problem in parse(edited(path, value))


def test_group_needs_a_dot() -> None:
    crd = edited("spec.group", "example")
    crd["metadata"]["name"] = "widgets.example"
    assert parse(crd) == [
        'resources[0].spec.group: Invalid value: "example": '
        "should be a domain with at least one dot"]


def test_names_rules() -> None:
    crd = edited("spec.names", {"plural": "Widgets", "kind": "Wid get", "listKind": "Wid get"})
    problems = parse(crd)
    assert any(p.startswith('resources[0].spec.names.plural: Invalid value: "Widgets": '
                            "a DNS-1035 label") for p in problems)
    assert any(p.startswith('resources[0].spec.names.kind: Invalid value: "Wid get": '
                            "may have mixed case, but should otherwise match:") for p in problems)
    assert ('resources[0].spec.names.listKind: Invalid value: "Wid get": '
            "kind and listKind may not be the same") in problems


@pytest.mark.parametrize(("hooks", "problem"), [
    ("defaulting: pkg.mod:fn",
     'resources[0].metadata.annotations[kext.io/hooks].defaulting: Invalid value: '
     '"pkg.mod:fn": must be a list of "package.module:callable"'),
    ("validation: [pkg.mod]",
     'resources[0].metadata.annotations[kext.io/hooks].validation[0]: Invalid value: '
     '"pkg.mod": must be "package.module:callable"'),
    ("mutating: [a:b]",
     'resources[0].metadata.annotations[kext.io/hooks].mutating: Unsupported value: '
     '"mutating": supported values: "defaulting", "validation", "status", "conversion"'),
    ("conversion: [a:b, c:d]",
     'resources[0].metadata.annotations[kext.io/hooks].conversion: Invalid value: '
     '["a:b","c:d"]: must be one "package.module:callable"'),
    ("[a:b]", 'resources[0].metadata.annotations[kext.io/hooks]: Invalid value: "[a:b]": '
              'must be a mapping like {"validation": ["package.module:callable"]}'),
])
def test_hook_annotation_problems(hooks: str, problem: str) -> None:
    crd = edited("metadata.annotations", {"kext.io/hooks": hooks})
    assert parse(crd) == [problem]


def test_conversion_hook_and_webhook_settings_are_read() -> None:
    crd = edited("metadata.annotations", {"kext.io/hooks": "conversion: widgets.convert:to"})
    definition, problems = parse_crd(crd, "resources[0]")
    assert definition is not None, problems
    assert definition.hooks["conversion"] == ("widgets.convert:to",)
    assert definition.conversion.strategy == "None"
    ca = base64.b64encode(CA_PEM).decode()
    crd = edited("spec.conversion", {"strategy": "Webhook", "webhook": {
        "conversionReviewVersions": ["v2", "v1"],
        "clientConfig": {"service": {"namespace": "ns", "name": "conv", "path": "/convert"},
                         "caBundle": ca}}})
    definition, problems = parse_crd(crd, "resources[0]")
    assert definition is not None, problems
    conversion = definition.conversion
    assert conversion.strategy == "Webhook"
    assert conversion.review_versions == ("v2", "v1")
    assert conversion.webhook is not None
    assert conversion.webhook.address == "https://conv.ns.svc:443/convert"
    assert conversion.webhook.ca_bundle == CA_PEM


@pytest.mark.parametrize(("conversion", "problem"), [
    ({"strategy": "Magic"}, 'spec.conversion.strategy: Unsupported value: "Magic": supported '
                            'values: "None", "Webhook"'),
    ({"strategy": "Webhook"}, "spec.conversion.webhook: Required value: required when strategy "
                              "is set to Webhook"),
    ({"strategy": "None", "webhook": {"conversionReviewVersions": ["v1"]}},
     "spec.conversion.webhook: Forbidden: should not be set when strategy is not set to Webhook"),
    ({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                                         "clientConfig": {}}},
     "spec.conversion.webhook.clientConfig: Required value: exactly one of url or service is "
     "required"),
    ({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                                         "clientConfig": {"url": "http://x/convert"}}},
     'spec.conversion.webhook.clientConfig.url: Invalid value: "http": \'https\' is the only '
     "allowed URL scheme; desired format: https://host[/path]"),
    ({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v3"],
                                         "clientConfig": {"url": "https://x/convert"}}},
     'spec.conversion.webhook.conversionReviewVersions: Invalid value: ["v3"]: must include at '
     "least one of v1, v1beta1"),
    ({"strategy": "Webhook", "webhook": {"clientConfig": {"url": "https://x/convert"}}},
     "spec.conversion.webhook.conversionReviewVersions: Required value"),
    ({"strategy": "Webhook", "webhook": {
        "conversionReviewVersions": ["v1"],
        "clientConfig": {"url": "https://x/c", "caBundle": base64.b64encode(b"junk").decode()}}},
     'spec.conversion.webhook.clientConfig.caBundle: Invalid value: "anVuaw==": unable to load '
     "root certificates: unable to parse bytes as PEM block"),
])
def test_conversion_problems(conversion: dict[str, Any], problem: str) -> None:
    assert parse(edited("spec.conversion", conversion)) == [f"resources[0].{problem}"]


def test_a_conversion_hook_excludes_a_webhook() -> None:
    crd = edited("spec.conversion", {"strategy": "Webhook", "webhook": {
        "conversionReviewVersions": ["v1"], "clientConfig": {"url": "https://x/convert"}}})
    crd["metadata"]["annotations"] = {"kext.io/hooks": "conversion: [a.b:c]"}
    assert parse(crd) == [
        'resources[0].metadata.annotations[kext.io/hooks].conversion: Invalid value: "a.b:c": '
        "a conversion hook needs spec.conversion.strategy None: the hook is the converter"]


def test_scale_subresource_is_read() -> None:
    crd = edited("spec.versions.1.subresources", {"status": {}, "scale": {
        "specReplicasPath": ".spec.size", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}})
    definition, problems = parse_crd(crd, "resources[0]")
    assert definition is not None, problems
    scale = definition.versions[1].scale
    assert scale == ScaleSubresource(".spec.size", ".status.replicas", ".status.selector")
    assert definition.versions[0].scale is None


@pytest.mark.parametrize(("scale", "problems"), [
    ({}, ["specReplicasPath: Required value", "statusReplicasPath: Required value"]),
    ({"specReplicasPath": ".status.x", "statusReplicasPath": "status.y"},
     ['specReplicasPath: Invalid value: ".status.x": should be a json path under .spec',
      'statusReplicasPath: Invalid value: "status.y": must be a simple json path starting '
      "with ."]),
    ({"specReplicasPath": ".spec.r", "statusReplicasPath": ".status.r",
      "labelSelectorPath": ".metadata.labels"},
     ['labelSelectorPath: Invalid value: ".metadata.labels": should be a json path under '
      "either .spec or .status"]),
])
def test_scale_problems(scale: dict[str, Any], problems: list[str]) -> None:
    crd = edited("spec.versions.1.subresources", {"scale": scale})
    at = "resources[0].spec.versions[1].subresources.scale."
    assert parse(crd) == [at + p for p in problems]


def test_deprecation_warning_defaults_to_kubes_text() -> None:
    definition, _ = parse_crd(CRD, "resources[0]")
    assert definition is not None
    v1beta1, v1 = definition.versions
    assert definition.deprecation_warning(v1beta1) == "use v1"
    assert definition.deprecation_warning(v1) == ""
    crd = edited("spec.versions.0.deprecationWarning", _DELETE)
    definition, _ = parse_crd(crd, "resources[0]")
    assert definition is not None
    assert definition.deprecation_warning(definition.versions[0]) == (
        "example.com/v1beta1 Widget is deprecated; use example.com/v1 Widget")
    # no newer served version to point at: the sentence alone
    crd = edited("spec.versions.1.served", False)
    del crd["spec"]["versions"][0]["deprecationWarning"]
    definition, _ = parse_crd(crd, "resources[0]")
    assert definition is not None
    assert definition.deprecation_warning(definition.versions[0]) == (
        "example.com/v1beta1 Widget is deprecated")


def test_not_a_mapping() -> None:
    assert parse([1, 2]) == [  # type: ignore[arg-type]
        "resources[0]: Invalid value: [1,2]: must be a CustomResourceDefinition manifest"]


@pytest.mark.parametrize("name", ["widgets.yaml", "gadgets.yaml"])
def test_shipped_examples_parse(name: str) -> None:
    path = Path(__file__).parents[2] / "config" / "resources" / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    assert parse(yaml.safe_load(path.read_text())) == []
