"""/metrics of a real kext as Prometheus scrapes it: requests, watch events, storage and
TLS counted and labelled as kube-apiserver counts them, and the endpoint itself behind
authentication."""

from __future__ import annotations

import contextlib
import json
import time
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


def scrape_page(kext: KextProcess) -> dict[str, Any]:
    """Every family on /metrics, parsed by prometheus_client: name -> family."""
    response = kext.session().get(f"{kext.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def counts(page: dict[str, Any], family: str, sample: str) -> dict[tuple[tuple[str, str], ...],
                                                                   float]:
    """The samples called sample of family, by their sorted labels."""
    if family not in page:
        return {}
    return {tuple(sorted(s.labels.items())): s.value for s in page[family].samples
            if s.name == sample}


def delta(after: dict[Any, float], before: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def labels(verb: str, resource: str, scope: str, code: str, *, subresource: str = "",
           dry_run: str = "", group: str = "example.kext.io", version: str = "v1alpha1",
           component: str = "apiserver") -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"verb": verb, "dry_run": dry_run, "group": group, "version": version,
                         "resource": resource, "subresource": subresource, "scope": scope,
                         "component": component, "code": code}.items()))


def health(path: str, code: str = "200", component: str = "") -> tuple[tuple[str, str], ...]:
    return labels("GET", "", "", code, subresource=path, group="", version="",
                  component=component)


def test_a_known_mix_of_requests_is_counted_exactly_as_kube_labels_it(
    kext: KextProcess,
) -> None:
    http = kext.session()
    ns = f"mix-{uuid.uuid4().hex[:8]}"
    base = f"{kext.url}{GROUP}/namespaces/{ns}/widgets"
    gadgets = f"{kext.url}{GROUP}/gadgets"
    gadget = f"mix-gadget-{uuid.uuid4().hex[:8]}"
    before = scrape_page(kext)

    assert http.post(base, json=widget("a")).status_code == 201
    assert http.post(f"{base}?dryRun=All", json=widget("b")).status_code == 201
    assert http.post(base, json=widget("a")).status_code == 409
    assert http.get(f"{base}/a").status_code == 200
    assert http.get(f"{base}/a").status_code == 200
    assert http.get(f"{base}/missing").status_code == 404
    assert http.get(base).status_code == 200
    assert http.get(f"{kext.url}{GROUP}/widgets").status_code == 200
    current = http.get(f"{base}/a").json()
    assert http.put(f"{base}/a", json=current).status_code == 200
    assert http.patch(f"{base}/a", json={"spec": {"size": 2}},
                      headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
    applied = http.patch(f"{base}/c?fieldManager=mix", data=json.dumps(widget("c")),
                         headers={"Content-Type": "application/apply-patch+yaml"})
    assert applied.status_code == 201
    status = http.get(f"{base}/a").json()
    status["status"] = {"phase": "Ready"}
    assert http.put(f"{base}/a/status", json=status).status_code == 200
    with http.get(f"{base}?watch=true&timeoutSeconds=1", stream=True, timeout=30) as watching:
        assert watching.status_code == 200
        for _ in watching.iter_lines():
            pass  # to the end of the stream: kube counts a watch when it ends
    assert http.delete(f"{base}/a").status_code == 200
    assert http.delete(base).status_code == 200
    body = {"apiVersion": "example.kext.io/v1alpha1", "kind": "Gadget",
            "metadata": {"name": gadget}, "spec": {"model": "m"}}
    assert http.post(gadgets, json=body).status_code == 201
    assert http.get(gadgets).status_code == 200
    assert http.delete(f"{gadgets}/{gadget}").status_code == 200
    assert http.get(f"{kext.url}/healthz").status_code == 200
    assert http.get(f"{kext.url}/readyz").status_code == 200
    assert http.get(f"{kext.url}/readyz/etcd").status_code == 200  # a check: not counted
    assert http.get(f"{kext.url}/apis").status_code == 200
    assert http.get(f"{kext.url}/version").status_code in (200, 404)  # not counted
    assert http.get(f"{kext.url}{GROUP}/nothings/x").status_code == 404  # not served
    anonymous = requests.get(f"{base}/a", verify=kext.ca_file, timeout=10)
    assert anonymous.status_code == 401  # refused before any handler: not counted

    def page_after() -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:  # the watch is counted when its stream has ended on the server
            page = scrape_page(kext)
            longrunning = counts(page, "apiserver_longrunning_requests",
                                 "apiserver_longrunning_requests")
            if not any(longrunning.values()) or time.monotonic() > deadline:
                return page
            time.sleep(0.05)

    after = page_after()
    total = delta(counts(after, "apiserver_request", "apiserver_request_total"),
                  counts(before, "apiserver_request", "apiserver_request_total"))
    assert total == {
        labels("POST", "widgets", "resource", "201"): 1,
        labels("POST", "widgets", "resource", "201", dry_run="All"): 1,
        labels("POST", "widgets", "resource", "409"): 1,
        labels("GET", "widgets", "resource", "200"): 4,
        labels("GET", "widgets", "resource", "404"): 1,
        labels("LIST", "widgets", "namespace", "200"): 1,
        labels("LIST", "widgets", "cluster", "200"): 1,
        labels("PUT", "widgets", "resource", "200"): 1,
        labels("PATCH", "widgets", "resource", "200"): 1,
        labels("APPLY", "widgets", "resource", "201"): 1,
        labels("PUT", "widgets", "resource", "200", subresource="status"): 1,
        labels("WATCH", "widgets", "namespace", "200"): 1,
        labels("DELETE", "widgets", "resource", "200"): 1,
        labels("DELETE", "widgets", "namespace", "200"): 1,
        labels("POST", "gadgets", "resource", "201"): 1,
        labels("LIST", "gadgets", "cluster", "200"): 1,
        labels("DELETE", "gadgets", "resource", "200"): 1,
        health("/healthz"): 1,
        health("/readyz"): 1,
        health("/apis", component="apiserver"): 1,
    }

    durations = delta(counts(after, "apiserver_request_duration_seconds",
                             "apiserver_request_duration_seconds_count"),
                      counts(before, "apiserver_request_duration_seconds",
                             "apiserver_request_duration_seconds_count"))
    by_labels: dict[Any, float] = {}
    for key, value in total.items():
        without_code = tuple(kv for kv in key if kv[0] != "code")
        by_labels[without_code] = by_labels.get(without_code, 0) + value
    assert durations == by_labels
    buckets = {s.labels["le"] for s in after["apiserver_request_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets == {"0.005", "0.025", "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1.0",
                       "1.25", "1.5", "2.0", "3.0", "4.0", "5.0", "6.0", "8.0", "10.0",
                       "15.0", "20.0", "30.0", "45.0", "60.0", "+Inf"}

    # response sizes: reads only (GET and LIST, health and discovery among them)
    sizes = delta(counts(after, "apiserver_response_sizes", "apiserver_response_sizes_count"),
                  counts(before, "apiserver_response_sizes", "apiserver_response_sizes_count"))
    assert {dict(k)["verb"] for k in sizes} == {"GET", "LIST"}
    assert sum(sizes.values()) == 5 + 2 + 1 + 3  # widget GETs (a 404 too), LISTs, health

    # storage: what kext asked etcd, by operation and the resource's group
    etcd = delta(counts(after, "etcd_requests", "etcd_requests_total"),
                 counts(before, "etcd_requests", "etcd_requests_total"))
    created = (("group", "example.kext.io"), ("operation", "create"), ("resource", "widgets"))
    assert etcd[created] == 3  # a, the duplicate a (refused by etcd's compare), c
    operations = {dict(k)["operation"] for k in etcd}
    assert {"create", "update", "delete"} <= operations
    assert {dict(k)["group"] for k in etcd} <= {"example.kext.io", ""}

    # bounded labels: no object name, namespace or raw path in any label value
    for family in after.values():
        for sample in family.samples:
            for value in sample.labels.values():
                assert value not in ("a", "b", "c", "missing", ns, gadget, "nothings"), sample
                assert "/" not in value or value in ("/healthz", "/livez", "/readyz", "/apis"), \
                    sample
    # and no _created series (kube-apiserver has none)
    assert not [s for f in after.values() for s in f.samples if s.name.endswith("_created")]
    assert counts(after, "apiserver_longrunning_requests", "apiserver_longrunning_requests")


def test_metrics_page_has_the_families_kube_dashboards_read(kext: KextProcess) -> None:
    page = scrape_page(kext)
    expected = {
        "apiserver_request": "counter",
        "apiserver_request_duration_seconds": "histogram",
        "apiserver_response_sizes": "histogram",
        "apiserver_current_inflight_requests": "gauge",
        "apiserver_longrunning_requests": "gauge",
        "apiserver_request_terminations": "counter",
        "apiserver_tls_handshake_errors": "counter",
        "apiserver_watch_events": "counter",
        "apiserver_watch_events_sizes": "histogram",
        "apiserver_storage_objects": "gauge",
        "apiserver_resource_objects": "gauge",
        "apiserver_watch_cache_resource_version": "gauge",
        "apiserver_watch_cache_initializations": "counter",
        "apiserver_terminated_watchers": "counter",
        "apiserver_storage_events_received": "counter",
        "etcd_request_duration_seconds": "histogram",
        "etcd_requests": "counter",
        "etcd_request_errors": "counter",
        "apiserver_audit_event": "counter",
        "apiserver_audit_error": "counter",
        "apiserver_audit_level": "counter",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_start_time_seconds": "gauge",
        "process_open_fds": "gauge",
    }
    assert {name: page[name].type for name in expected if name in page} == expected
    resource = {"group": "example.kext.io", "resource": "widgets"}
    initialized = [s.value for s in page["apiserver_watch_cache_initializations"].samples
                   if s.labels == resource]
    assert initialized == [1.0]  # primed once at start-up
    revisions = [s.value for s in page["apiserver_watch_cache_resource_version"].samples
                 if s.labels == resource]
    assert revisions and revisions[0] > 0


def test_a_failed_tls_handshake_is_counted(kext: KextProcess) -> None:
    def handshake_errors() -> float:
        return scrape(kext, "apiserver_tls_handshake_errors_total", {})

    before = handshake_errors()
    plain = kext.url.replace("https://", "http://")
    with contextlib.suppress(requests.RequestException):
        requests.get(f"{plain}/healthz", timeout=5)  # plain HTTP on the TLS port
    deadline = time.monotonic() + 10
    while handshake_errors() != before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handshake_errors() == before + 1
