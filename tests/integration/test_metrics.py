"""/metrics of a real kext as Prometheus scrapes it: watch events counted and sized as
kube-apiserver counts them, and the endpoint itself behind authentication."""

from __future__ import annotations

import uuid
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.kext_process import KextProcess

GROUP = "/apis/example.kext.io/v1alpha1"
WATCHED = {"group": "example.kext.io", "version": "v1alpha1", "resource": "widgets"}


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": 1, "color": "red"}}


def scrape(kext: KextProcess, name: str, labels: dict[str, str]) -> float:
    """The value of one sample on /metrics (0 while it is absent)."""
    response = kext.session().get(f"{kext.url}/metrics", timeout=10)
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_watch_events_are_counted_and_sized(kext: KextProcess) -> None:
    http = kext.session()
    base = f"{kext.url}{GROUP}/namespaces/m-{uuid.uuid4().hex[:8]}/widgets"
    counted = scrape(kext, "apiserver_watch_events_total", WATCHED)
    sized = scrape(kext, "apiserver_watch_events_sizes_count", WATCHED)
    total_bytes = scrape(kext, "apiserver_watch_events_sizes_sum", WATCHED)
    small = scrape(kext, "apiserver_watch_events_sizes_bucket", {**WATCHED, "le": "1024.0"})

    rv = http.get(base).json()["metadata"]["resourceVersion"]
    with http.get(f"{base}?watch=true&resourceVersion={rv}", stream=True,
                  timeout=30) as watch:
        assert watch.status_code == 200
        for i in range(3):
            assert http.post(base, json=widget(f"m-{i}")).status_code == 201
        frames: list[bytes] = []
        for line in watch.iter_lines():
            if line:
                frames.append(line + b"\n")  # each event is one JSON line
            if len(frames) == 3:
                break

    assert scrape(kext, "apiserver_watch_events_total", WATCHED) == counted + 3
    assert scrape(kext, "apiserver_watch_events_sizes_count", WATCHED) == sized + 3
    assert scrape(kext, "apiserver_watch_events_sizes_sum", WATCHED) == \
        total_bytes + sum(len(f) for f in frames)
    assert all(len(f) <= 1024 for f in frames)
    assert scrape(kext, "apiserver_watch_events_sizes_bucket",
                  {**WATCHED, "le": "1024.0"}) == small + 3


def test_metrics_need_credentials_and_health_does_not(kext: KextProcess) -> None:
    anonymous = requests.get(f"{kext.url}/metrics", verify=kext.ca_file, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["reason"] == "Unauthorized"
    for path in ("/livez/etcd", "/readyz/watch-cache", "/healthz"):
        assert requests.get(f"{kext.url}{path}", verify=kext.ca_file,
                            timeout=10).status_code == 200, path
