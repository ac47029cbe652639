"""The parts of serving.workers that run in memory: the configuration key, a worker's settings
as JSON, the split of the in-flight limits, the channel between supervisor and worker, and the
sum of the workers' metrics as Prometheus reads it. tests/integration/test_workers.py runs the
real processes."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kext.certs import new_ca
from kext.config import ConfigError, available_cpus, load_config
from kext.metrics import Metrics, WorkerSums, exposition, merge, parse_samples
from kext.server.channel import Channel, ChannelClosed, RemoteError
from kext.server.config import new_config
from kext.server.process import ServingCertificates
from kext.server.request import APIRequest, Response
from kext.server.request_info import parse_request_info
from kext.server.worker import (
    WORKER_HEADER,
    WorkerSettings,
    inflight_share,
    with_worker_header,
    worker_audit_path,
    worker_settings,
)
from kext.storage.settings import EtcdSettings

REPO = Path(__file__).resolve().parents[2]
HEADER = "apiVersion: kext.io/v1alpha1\nkind: ServerConfig\n"
REQUEST = ("GET", "", "example.kext.io", "v1alpha1", "widgets", "", "resource", "apiserver")


def _config(tmp_path: Path, body: str) -> Any:
    path = tmp_path / "server.yaml"
    path.write_text(HEADER + textwrap.dedent(body))
    return load_config(str(path))


def _problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, body)
    return caught.value.problems


# -- serving.workers

def test_workers_default_to_one_and_auto_is_one_per_core(tmp_path: Path) -> None:
    assert _config(tmp_path, "serving: {}").serving.workers == 1
    assert _config(tmp_path, "serving: {workers: 3}").serving.workers == 3
    assert _config(tmp_path, "serving: {workers: auto}").serving.workers == available_cpus()
    assert available_cpus() >= 1


@pytest.mark.parametrize(("body", "problem"), [
    ("serving: {workers: 0}", "serving.workers: expected a positive integer or auto, got 0"),
    ("serving: {workers: two}", "serving.workers: expected a positive integer or auto, "
                                "got 'two'"),
    ("serving: {workers: true}", "serving.workers: expected a positive integer or auto, "
                                 "got true"),
    ("serving: {workers: 4, maxRequestsInflight: 3}",
     "serving.maxRequestsInflight: expected 0 (no limit) or at least serving.workers (4): the "
     "limit is split across the workers"),
    ("serving: {workers: 2, maxMutatingRequestsInflight: 1}",
     "serving.maxMutatingRequestsInflight: expected 0 (no limit) or at least serving.workers "
     "(2): the limit is split across the workers"),
])
def test_bad_workers_name_the_key(tmp_path: Path, body: str, problem: str) -> None:
    assert _problems(tmp_path, body) == [problem]


def test_no_inflight_limit_is_no_limit_for_every_worker(tmp_path: Path) -> None:
    config = _config(tmp_path, "serving: {workers: 4, maxRequestsInflight: 0}")
    assert [inflight_share(config.serving.max_requests_inflight, i, 4)
            for i in range(4)] == [0, 0, 0, 0]


@pytest.mark.parametrize(("limit", "workers"), [(400, 1), (400, 2), (400, 3), (200, 7), (5, 5)])
def test_the_inflight_limits_are_split_across_the_workers(limit: int, workers: int) -> None:
    shares = [inflight_share(limit, i, workers) for i in range(workers)]
    assert sum(shares) == limit
    assert max(shares) - min(shares) <= 1 and min(shares) >= 1


# -- a worker's settings

def test_a_workers_settings_come_back_from_json_as_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    ca = tmp_path / "webhook-ca.crt"
    ca.write_bytes(new_ca("webhook-ca").cert_pem)
    options = _config(tmp_path, f"""\
        serving: {{workers: 3, maxRequestsInflight: 400, maxMutatingRequestsInflight: 200}}
        authentication:
          requestHeader: {{clientCAFile: "", allowedNames: [front-proxy]}}
        admission:
          webhooks:
            - name: policy.example.com
              url: https://policy:9443/validate
              caFile: {ca}
              type: Validating
              rules: [{{operations: [CREATE], apiGroups: [example.kext.io],
                        apiVersions: ["*"], resources: [widgets]}}]
              namespaceSelector:
                matchExpressions: [{{key: team, operator: In, values: [a, b]}}]
              matchConditions:
                - {{name: not-admin, expression: "request.userInfo.username != 'admin'"}}
        resources:
          - file: config/resources/widgets.yaml
          - file: config/resources/gadgets.yaml
          - inline:
              apiVersion: apiextensions.k8s.io/v1
              kind: CustomResourceDefinition
              metadata: {{name: things.example.kext.io}}
              spec:
                group: example.kext.io
                scope: Namespaced
                names: {{plural: things, singular: thing, kind: Thing, listKind: ThingList}}
                versions:
                  - name: v1
                    served: true
                    storage: true
                    schema:
                      openAPIV3Schema:
                        type: object
                        properties:
                          spec:
                            type: object
                            x-kubernetes-validations: [{{rule: "self.min <= self.max"}}]
                            properties:
                              min: {{type: integer}}
                              max: {{type: integer}}
        """)
    certificates = ServingCertificates("/c/tls.crt", "/c/tls.key", ("/c/client-ca.crt",),
                                       "https://127.0.0.1:8443", "/c/kubeconfig")
    config = new_config(options, certificates,
                        EtcdSettings(endpoints=("http://127.0.0.1:2379",))).complete()
    settings = [worker_settings(config, i, 3, options.logging) for i in range(3)]
    for sent in settings:
        assert WorkerSettings.from_json(sent.to_json()) == sent
    received = WorkerSettings.from_json(settings[1].to_json())
    assert received.config.resources == config.resources  # schemas, columns, hooks
    # each version's schema is compiled again in the worker, its CEL rules with it
    for sent_definition, definition in zip(config.resources, received.config.resources,
                                           strict=True):
        for sent_version, version in zip(sent_definition.versions, definition.versions,
                                         strict=True):
            assert version.compiled is not None and sent_version.compiled is not None
            assert version.compiled.source == sent_version.compiled.source
            assert version.compiled.cel_rules == sent_version.compiled.cel_rules  # how many
    assert received.config.resources[2].versions[0].compiled.cel_rules == 1  # type: ignore[union-attr]
    assert received.config.admission == config.admission  # the webhook: CA, selector, CEL
    assert received.config.admission.webhooks[0].ca_pem == ca.read_bytes()
    assert received.config.serving == certificates
    assert [s.config.max_requests_inflight for s in settings] == [134, 133, 133]
    assert [s.config.max_mutating_requests_inflight for s in settings] == [67, 67, 66]
    assert received.config.anonymous_paths == config.anonymous_paths
    assert received.logging == options.logging


@pytest.mark.parametrize(("path", "index", "expected"), [
    ("var/audit.log", 1, "var/audit-worker-1.log"),
    ("/var/log/kext/audit", 0, "/var/log/kext/audit-worker-0"),
    ("-", 1, "-"),
    ("", 1, ""),
])
def test_each_worker_writes_an_audit_file_of_its_own(path: str, index: int,
                                                     expected: str) -> None:
    assert worker_audit_path(path, index) == expected


@pytest.mark.asyncio
async def test_every_response_of_a_worker_says_which_it_is() -> None:
    async def handler(request: APIRequest) -> Response:
        return Response(200, b"{}", headers=[("Warning", "299 - x")])

    response = await with_worker_header(handler, 1)(APIRequest(
        method="GET", path="/healthz", query={}, headers={}, body=b"",
        info=parse_request_info("GET", "/healthz", {})))
    assert response.headers == [("Warning", "299 - x"), (WORKER_HEADER, "1")]


# -- the channel

async def _pair(a_methods: dict[str, Any],
                b_methods: dict[str, Any]) -> tuple[Channel, Channel]:
    left, right = socket.socketpair()
    return await Channel.open(left, a_methods), await Channel.open(right, b_methods)


@pytest.mark.asyncio
async def test_either_end_of_the_channel_calls_the_other() -> None:
    told: list[Any] = []

    async def double(n: Any) -> Any:
        return n * 2

    async def heard(params: Any) -> None:
        told.append(params)

    async def gather(_: Any) -> Any:
        return await supervisor.call("double", 21)  # a call back while answering one

    supervisor, worker = await _pair({"gather": gather, "serving": heard}, {"double": double})
    try:
        assert await worker.call("gather") == 42
        worker.notify("serving", {"pid": 7})
        assert await supervisor.call("double", "ab") == "abab"
        for _ in range(100):
            if told:
                break
            await asyncio.sleep(0.01)
        assert told == [{"pid": 7}]
    finally:
        supervisor.close()
        worker.close()


@pytest.mark.asyncio
async def test_a_failing_method_and_a_closed_channel_fail_the_call() -> None:
    async def broken(_: Any) -> Any:
        raise ValueError("no samples")

    async def never(_: Any) -> Any:
        await asyncio.Event().wait()

    supervisor, worker = await _pair({"broken": broken, "never": never}, {})
    with pytest.raises(RemoteError, match="ValueError: no samples"):
        await worker.call("broken")
    with pytest.raises(RemoteError, match="no method 'missing'"):
        await worker.call("missing")
    waiting = asyncio.ensure_future(worker.call("never"))
    await asyncio.sleep(0.01)
    supervisor.close()
    with pytest.raises(ChannelClosed):
        await waiting
    await asyncio.wait_for(worker.closed.wait(), 1)
    with pytest.raises(ChannelClosed):
        await worker.call("broken")


# -- the sum of the workers' metrics

def _values(text: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples if s.name == name}


class _Cache:
    def __init__(self, objects: int, watchers: int) -> None:
        self.object_count, self.watcher_count = objects, watchers
        self.etcd_watch_count, self.terminated_watchers = 1, 0
        self.last_sync_resource_version, self.window = 7, 1024


def _worker_metrics(requests: int, seconds: float, objects: int, watchers: int,
                    inflight: int) -> Metrics:
    metrics = Metrics()
    for _ in range(requests):
        metrics.requests_total.labels(*REQUEST, "200").inc()
        metrics.request_duration.labels(*REQUEST).observe(seconds)
    metrics.current_inflight.labels("readOnly").set(inflight)
    metrics.storage.add("example.kext.io", "v1alpha1", "Widget", "widgets",
                        _Cache(objects, watchers))
    return metrics


def test_the_sum_of_one_process_reads_as_its_own_metrics() -> None:
    metrics = _worker_metrics(3, 0.01, 5, 2, 1)
    text = exposition(merge([parse_samples(metrics.samples())]))
    own = metrics.exposition()
    for name in ("apiserver_request_total", "apiserver_request_duration_seconds_bucket",
                 "apiserver_storage_objects", "apiserver_current_inflight_requests"):
        assert _values(text, name) == _values(own, name)
    assert text.splitlines()[:3] == own.splitlines()[:3]  # HELP, TYPE, first sample


def test_counters_and_histograms_are_summed_and_gauges_read_as_kube_would() -> None:
    a = _worker_metrics(3, 0.01, objects=5, watchers=2, inflight=1)
    b = _worker_metrics(4, 0.3, objects=5, watchers=1, inflight=2)
    text = exposition(merge([a.samples(), b.samples()]))
    [total] = _values(text, "apiserver_request_total").values()
    assert total == 7
    buckets = {dict(k)["le"]: v
               for k, v in _values(text, "apiserver_request_duration_seconds_bucket").items()}
    assert (buckets["0.025"], buckets["0.4"], buckets["+Inf"]) == (3, 7, 7)
    [count] = _values(text, "apiserver_request_duration_seconds_count").values()
    assert count == 7
    # every worker caches every object: the stored count is one worker's, not the sum
    assert list(_values(text, "apiserver_storage_objects").values()) == [5]
    assert list(_values(text, "apiserver_registered_watchers").values()) == [3]
    assert _values(text, "apiserver_current_inflight_requests") == {
        (("request_kind", "readOnly"),): 3}
    [started_a] = _values(a.exposition(), "process_start_time_seconds").values()
    [started_b] = _values(b.exposition(), "process_start_time_seconds").values()
    assert list(_values(text, "process_start_time_seconds").values()) == [
        min(started_a, started_b)]


def test_a_worker_that_exits_leaves_its_counts_in_the_sum_and_its_gauges_out() -> None:
    sums = WorkerSums()
    sums.update((0, 100), _worker_metrics(3, 0.01, 5, 0, inflight=1).samples())
    sums.update((1, 101), _worker_metrics(4, 0.01, 5, 0, inflight=2).samples())

    def read(name: str) -> list[float]:
        return list(_values(exposition(sums.families()), name).values())

    assert read("apiserver_request_total") == [7]
    sums.retire((1, 101))
    assert read("apiserver_request_total") == [7]  # a counter never goes back
    assert read("apiserver_current_inflight_requests") == [1]
    sums.update((1, 102), _worker_metrics(1, 0.01, 5, 0, inflight=0).samples())  # restarted
    assert read("apiserver_request_total") == [8]
    assert read("apiserver_request_duration_seconds_count") == [8]
    sums.workers.set(2)
    assert read("kext_workers") == [2]
    assert read("kext_worker_restarts_total") == [0]
