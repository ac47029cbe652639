"""Prometheus collectors with kube-apiserver's metric names, label names, label values and
buckets, so dashboards built for kube-apiserver (and extension servers built on
k8s.io/apiserver) work on kext unchanged.

Each API server builds its own `Metrics`: its collectors live on its own registry, which its
/metrics serves; nothing is registered process-wide. Counters carry no `_created` series
(kube-apiserver has none): /metrics leaves them out.

What records a metric is handed this object; storage is handed `etcd` (an EtcdMetrics, the
observer kext.storage.etcd3 reports to), since storage knows nothing of metrics."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["CacheSource", "EtcdMetrics", "Gauge", "Metrics", "StorageCollector",
           "WatchEventCounts"]

# kube-apiserver's buckets for apiserver_request_duration_seconds.
REQUEST_DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
    30, 45, 60,
)
# kube-apiserver's buckets for apiserver_watch_events_sizes: ExponentialBuckets(1024, 2, 8).
WATCH_EVENT_SIZE_BUCKETS = tuple(1024 * 2**i for i in range(8))
# kube-apiserver's buckets for apiserver_response_sizes: ExponentialBuckets(1000, 10, 7).
RESPONSE_SIZE_BUCKETS = tuple(1000.0 * 10**i for i in range(7))
# etcd_request_duration_seconds uses the request-duration buckets.
ETCD_REQUEST_BUCKETS = REQUEST_DURATION_BUCKETS

REQUEST_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope",
                  "component", "code")
# apiserver_longrunning_requests, apiserver_response_sizes (and, with code,
# apiserver_request_terminations_total) carry no dry_run
REQUEST_LABELS_WITHOUT_DRY_RUN = ("verb", "group", "version", "resource", "subresource",
                                  "scope", "component")
# since kube 1.34 storage metrics are labelled by group and resource
GROUP_RESOURCE = ("group", "resource")
# kube-apiserver labels watch events by the watched group, version and resource.
WATCH_LABELS = ("group", "version", "resource")


class CacheSource(Protocol):
    """What the collector reads from a watch cache when scraped."""

    @property
    def object_count(self) -> int: ...
    @property
    def watcher_count(self) -> int: ...
    @property
    def etcd_watch_count(self) -> int: ...
    @property
    def terminated_watchers(self) -> int: ...
    @property
    def last_sync_resource_version(self) -> int: ...
    @property
    def window(self) -> int: ...


class StorageCollector(Collector):
    """Gauges and counters read from the watch caches when scraped, so nothing is updated on
    the request path: apiserver_storage_objects (kube's deprecated name) and
    apiserver_resource_objects, apiserver_registered_watchers,
    apiserver_terminated_watchers_total, apiserver_watch_cache_resource_version,
    watch_cache_capacity (kext's caches have a fixed window), and kext_etcd_watches (etcd
    watch streams held: one per watch cache, however many clients watch)."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, str, str, str, CacheSource]] = []

    def add(self, group: str, version: str, kind: str, resource: str,
            cache: CacheSource) -> None:
        self.sources.append((group, version, kind, resource, cache))

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily(
            "apiserver_storage_objects",
            "[DEPRECATED, consider using apiserver_resource_objects instead] Number of stored "
            "objects at the time of last check split by kind.",
            labels=["resource"],
        )
        resource_objects = GaugeMetricFamily(
            "apiserver_resource_objects",
            "Number of stored objects at the time of last check split by kind.",
            labels=GROUP_RESOURCE,
        )
        watchers = GaugeMetricFamily(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            labels=["group", "version", "kind"],
        )
        terminated = CounterMetricFamily(
            "apiserver_terminated_watchers",
            "Counter of watchers closed due to unresponsiveness broken by resource type.",
            labels=GROUP_RESOURCE,
        )
        revision = GaugeMetricFamily(
            "apiserver_watch_cache_resource_version",
            "Current resource version of watch cache broken by resource type.",
            labels=GROUP_RESOURCE,
        )
        capacity = GaugeMetricFamily(
            "watch_cache_capacity", "Total capacity of watch cache broken by resource type.",
            labels=GROUP_RESOURCE,
        )
        watches = GaugeMetricFamily(
            "kext_etcd_watches",
            "Number of etcd watch streams kext holds per resource (one per watch cache).",
            labels=["resource"],
        )
        for group, version, kind, resource, cache in self.sources:
            qualified = f"{resource}.{group}"
            objects.add_metric([qualified], cache.object_count)
            resource_objects.add_metric([group, resource], cache.object_count)
            watchers.add_metric([group, version, kind], cache.watcher_count)
            terminated.add_metric([group, resource], cache.terminated_watchers)
            # as kube: modulo 10^15, exactly representable in a float
            revision.add_metric([group, resource],
                                cache.last_sync_resource_version % 1_000_000_000_000_000)
            capacity.add_metric([group, resource], cache.window)
            watches.add_metric([qualified], cache.etcd_watch_count)
        yield from (objects, resource_objects, watchers, terminated, revision, capacity,
                    watches)


class EtcdMetrics:
    """What storage reports (the kext.storage.etcd3.StoreObserver protocol), by the group and
    resource of the key: etcd_request_duration_seconds, etcd_requests_total and
    etcd_request_errors_total by operation; apiserver_storage_events_received_total and
    etcd_bookmark_total from watches; apiserver_watch_cache_initializations_total (a watch
    cache watches its resource once per initialization: it lists, then watches from the
    list's revision, and does both again only when it has to start over). Keys are
    `<prefix>/<group>/<resource>/...`; one outside the declared resources is labelled with
    an empty group and resource, so labels stay bounded."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("operation", *GROUP_RESOURCE)
        self.request_duration = Histogram(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            labels, buckets=ETCD_REQUEST_BUCKETS, registry=registry,
        )
        self.requests = Counter(
            "etcd_requests_total", "Etcd request counts for each operation and object type.",
            labels, registry=registry,
        )
        self.request_errors = Counter(
            "etcd_request_errors_total",
            "Etcd failed request counts for each operation and object type.",
            labels, registry=registry,
        )
        self.events_received = Counter(
            "apiserver_storage_events_received_total",
            "Number of etcd events received split by kind.", GROUP_RESOURCE, registry=registry,
        )
        self.bookmarks = Counter(
            "etcd_bookmark_total",
            "Number of etcd bookmarks (progress notify events) split by kind.",
            GROUP_RESOURCE, registry=registry,
        )
        self.cache_initializations = Counter(
            "apiserver_watch_cache_initializations_total",
            "Counter of watch cache initializations broken by resource type.",
            GROUP_RESOURCE, registry=registry,
        )
        self._prefix = "/registry/"
        self._resources: set[tuple[str, str]] = set()
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def add_resource(self, prefix: str, group: str, resource: str) -> None:
        """Label the keys of group/resource under the storage prefix by them."""
        self._prefix = prefix.rstrip("/") + "/"
        self._resources.add((group, resource))
        for family in (self.events_received, self.bookmarks, self.cache_initializations):
            family.labels(group, resource)  # present at 0 from the start

    def group_resource(self, key: str) -> tuple[str, str]:
        if key.startswith(self._prefix):
            parts = key[len(self._prefix):].split("/", 2)
            if len(parts) >= 2 and (parts[0], parts[1]) in self._resources:
                return parts[0], parts[1]
        return "", ""

    def etcd_request(self, operation: str, key: str, seconds: float, failed: bool) -> None:
        group, resource = self.group_resource(key)
        children = self._children.get((operation, group, resource))
        if children is None:
            children = self._children[(operation, group, resource)] = (
                self.request_duration.labels(operation, group, resource),
                self.requests.labels(operation, group, resource),
            )
        children[0].observe(seconds)
        children[1].inc()
        if failed:
            self.request_errors.labels(operation, group, resource).inc()

    def etcd_events(self, key: str, count: int) -> None:
        self.events_received.labels(*self.group_resource(key)).inc(count)

    def etcd_bookmark(self, key: str) -> None:
        self.bookmarks.labels(*self.group_resource(key)).inc()

    def etcd_watch_started(self, key: str) -> None:
        self.cache_initializations.labels(*self.group_resource(key)).inc()


class WatchEventCounts:
    """Events sent to the watchers of one group, version and resource, and their sizes.
    Plain counts, read when scraped: recording runs once per event per watcher, where a
    prometheus_client Counter and Histogram (locks, per-call label checks) cost eight times
    as much. Written and read on the event loop only."""

    __slots__ = ("buckets", "count", "total_bytes")

    def __init__(self) -> None:
        self.count = 0
        self.total_bytes = 0
        self.buckets = [0] * (len(WATCH_EVENT_SIZE_BUCKETS) + 1)  # the last one is +Inf

    def record(self, size: int) -> None:
        self.count += 1
        self.total_bytes += size
        self.buckets[bisect_left(WATCH_EVENT_SIZE_BUCKETS, size)] += 1


class WatchEventsCollector(Collector):
    """apiserver_watch_events_total and apiserver_watch_events_sizes, from the counts."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], WatchEventCounts] = {}

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "apiserver_watch_events", "Number of events sent in watch clients",
            labels=WATCH_LABELS,
        )
        sizes = HistogramMetricFamily(
            "apiserver_watch_events_sizes", "Watch event size distribution in bytes",
            labels=WATCH_LABELS,
        )
        for labels, counts in self.counts.items():
            events.add_metric(labels, counts.count)
            cumulative, buckets = 0, []
            for bound, n in zip((*map(float, WATCH_EVENT_SIZE_BUCKETS), "+Inf"), counts.buckets,
                                strict=True):
                cumulative += n
                buckets.append((str(bound), cumulative))
            sizes.add_metric(labels, buckets, counts.total_bytes)
        yield from (events, sizes)


class Metrics:
    """One API server's collectors, on its own registry (with the process_* metrics, as
    kube-apiserver exposes them). Whatever records a metric is handed this object."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests_total = Counter(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, dry run value, group, "
            "version, resource, scope, component, and HTTP response code.",
            REQUEST_LABELS, registry=self.registry,
        )
        self.request_duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, "
            "version, resource, subresource, scope and component.",
            REQUEST_LABELS[:-1], buckets=REQUEST_DURATION_BUCKETS, registry=self.registry,
        )
        self.current_inflight = Gauge(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per "
            "request kind in last second.",
            ("request_kind",), registry=self.registry,
        )
        self.longrunning = Gauge(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, "
            "version, resource, scope and component. Not all requests are tracked this way.",
            REQUEST_LABELS_WITHOUT_DRY_RUN, registry=self.registry,
        )
        self.response_sizes = Histogram(
            "apiserver_response_sizes",
            "Response size distribution in bytes for each group, version, verb, resource, "
            "subresource, scope and component.",
            REQUEST_LABELS_WITHOUT_DRY_RUN, buckets=RESPONSE_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.request_terminations = Counter(
            "apiserver_request_terminations_total",
            "Number of requests which apiserver terminated in self-defense.",
            (*REQUEST_LABELS_WITHOUT_DRY_RUN, "code"), registry=self.registry,
        )
        self.tls_handshake_errors = Counter(
            "apiserver_tls_handshake_errors_total",
            "Number of requests dropped with 'TLS handshake error from' error",
            registry=self.registry,
        )
        self.audit_events = Counter(
            "apiserver_audit_event_total",
            "Counter of audit events generated and sent to the audit backend.",
            registry=self.registry,
        )
        self.audit_errors = Counter(
            "apiserver_audit_error_total",
            "Counter of audit events that failed to be audited properly. Plugin identifies "
            "the plugin affected by the error.",
            ("plugin",), registry=self.registry,
        )
        self.audit_levels = Counter(
            "apiserver_audit_level_total",
            "Counter of policy levels for audit events (1 per request).",
            ("level",), registry=self.registry,
        )
        self.etcd = EtcdMetrics(self.registry)
        self.watch_events = WatchEventsCollector()
        self.registry.register(self.watch_events)
        self.storage = StorageCollector()
        self.registry.register(self.storage)
        ProcessCollector(registry=self.registry)

    def watch_event_counts(self, group: str, version: str, resource: str) -> WatchEventCounts:
        """The counts the watches of group/version/resource record their events in."""
        key = (group, version, resource)
        counts = self.watch_events.counts.get(key)
        if counts is None:
            counts = self.watch_events.counts[key] = WatchEventCounts()
        return counts

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this server's metrics."""
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated(Collector):
    """A registry's metrics without the `_created` samples prometheus_client adds to counters
    and histograms: kube-apiserver exposes none, and prometheus_client's switch for them
    (disable_created_metrics) is process-wide."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():  # fresh objects on every collect
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric
