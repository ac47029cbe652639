"""deploy/monitoring against a real kext: the dashboard and the alerts only read metrics kext
exports (scraped from it, parsed by prometheus_client), the PrometheusRule has the shape the
Prometheus operator reads, and every dashboard query evaluates over real scrapes.

kubernetes-validate knows no PrometheusRule (it has the built-in kinds' schemas only), so the
rule's shape is checked here against monitoring.coreos.com/v1's fields."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.kext_process import REPO, KextProcess

MONITORING = REPO / "deploy" / "monitoring"
# PromQL words that are not metric names
KEYWORDS = {"sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring",
            "group_left", "group_right", "and", "or", "unless", "bool", "offset", "rate",
            "increase", "changes", "absent", "histogram_quantile", "vector", "le", "inf"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, ranges and
    grouping clauses removed first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        word = match.group()
        following = text[match.end():].lstrip()[:1]
        if word.lower() in KEYWORDS or following == "(":
            continue
        names.add(word)
    return names


def exported(kext: KextProcess) -> set[str]:
    """Every sample name kext's /metrics can have (a histogram's _bucket, _sum, _count; a
    counter's _total), families declared without samples yet included."""
    page = kext.session().get(f"{kext.url}/metrics", timeout=10).text
    names = set()
    for family in text_string_to_metric_families(page):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(
            family.type, ("",))
        names.update(family.name + s for s in suffixes)
    return names


def dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "kext-dashboard.json").read_text())


def alerts() -> dict[str, Any]:
    return yaml.safe_load((MONITORING / "kext-alerts.yaml").read_text())


def expressions() -> dict[str, str]:
    """Where each expression is (panel or alert) -> the expression."""
    out = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for group in alerts()["spec"]["groups"]:
        for rule in group["rules"]:
            out[f"alert {rule['alert']}"] = rule["expr"]
    return out


def test_every_metric_the_dashboard_and_alerts_read_is_exported(kext: KextProcess) -> None:
    names = exported(kext)
    # apiserver_admission_* are the admission chain's: checked once kext exports any of them
    admission = any(n.startswith("apiserver_admission_") for n in names)
    missing = {}
    for where, expr in expressions().items():
        for name in metric_names(expr):
            if name.startswith("apiserver_admission_") and not admission:
                continue
            if name not in names:
                missing[where] = name
    assert not missing
    used = {n for e in expressions().values() for n in metric_names(e)}
    # the request, storage, watch, audit and TLS families all appear somewhere
    for family in ("apiserver_request_total", "apiserver_request_duration_seconds_bucket",
                   "etcd_request_duration_seconds_bucket", "apiserver_watch_cache_resource_version",
                   "apiserver_audit_error_total", "apiserver_tls_handshake_errors_total",
                   "apiserver_admission_step_admission_duration_seconds_bucket"):
        assert family in used, family


def test_the_prometheus_rule_has_the_operators_shape() -> None:
    rule = alerts()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", rule["metadata"]["name"])
    assert set(rule["spec"]) == {"groups"}
    seen = set()
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "partial_response_strategy"}
        assert group["name"] not in seen
        seen.add(group["name"])
        for item in group["rules"]:
            assert set(item) <= {"alert", "record", "expr", "for", "labels", "annotations",
                                 "keep_firing_for"}, item
            assert isinstance(item["expr"], str) and item["expr"].strip()
            assert item["expr"].count("(") == item["expr"].count(")"), item["alert"]
            assert "for" not in item or DURATION.match(item["for"]), item
            assert item["labels"]["severity"] in ("critical", "warning", "info")
            assert {"summary", "description"} <= set(item["annotations"])
            assert all(isinstance(v, str) for v in item["annotations"].values())
            assert 'job="kext"' in item["expr"], item["alert"]  # one selector to change
    assert len({r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}) == sum(
        len(g["rules"]) for g in rule["spec"]["groups"])


def test_the_dashboard_is_grafana_json_and_its_queries_evaluate(kext: KextProcess) -> None:
    board = dashboard()
    assert board["uid"] and board["schemaVersion"] >= 36
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "job", "instance"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], panel["title"]

    spec = importlib.util.spec_from_file_location("kext_dashboard_render",
                                                  MONITORING / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = render  # its dataclasses look their module up
    spec.loader.exec_module(render)
    session = kext.session()
    first = render.scrape(session, kext.url)
    session.get(f"{kext.url}/apis/example.kext.io/v1alpha1/widgets")
    time.sleep(0.2)  # two scrapes apart in time: a rate needs an interval
    second = render.scrape(session, kext.url)
    evaluated = {}
    for where, expr in expressions().items():
        if where.startswith("panel"):
            evaluated[where] = render.Evaluator([first, second], 1).evaluate(expr)
    rate = next(v for k, v in evaluated.items() if "Request rate by verb" in k)
    assert frozenset({("verb", "LIST")}) in rate  # the list between the two scrapes
