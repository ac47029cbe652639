"""Prometheus collectors with kube-apiserver's metric names, label names, label values and
buckets, so dashboards built for kube-apiserver (and extension servers built on
k8s.io/apiserver) work on kext unchanged.

Each API server builds its own `Metrics`: its collectors live on its own registry, which its
/metrics serves; nothing is registered process-wide.

With several workers (serving.workers), /metrics on any worker answers for all of them: the
supervisor asks every worker for its samples (`Metrics.samples()`), sums them (`merge`;
`WorkerSums` keeps the counts of workers that died, so no counter ever goes back) and the
worker renders the sum (`exposition`)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Protocol, TypedDict, cast

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

__all__ = ["CacheSource", "FamilySamples", "Gauge", "Metrics", "StorageCollector",
           "WatchEventCounts", "WorkerSums", "exposition", "family_samples", "merge"]

# kube-apiserver's buckets for apiserver_request_duration_seconds.
REQUEST_DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
    30, 45, 60,
)
# kube-apiserver's buckets for apiserver_watch_events_sizes: ExponentialBuckets(1024, 2, 8).
WATCH_EVENT_SIZE_BUCKETS = tuple(1024 * 2**i for i in range(8))

REQUEST_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope",
                  "component", "code")
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


class StorageCollector(Collector):
    """Gauges and counters read from the watch caches when scraped, so nothing is updated on
    the request path: apiserver_storage_objects, apiserver_registered_watchers,
    apiserver_terminated_watchers_total, and kext_etcd_watches (etcd watch streams held:
    one per watch cache, however many clients watch)."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, str, str, str, CacheSource]] = []

    def add(self, group: str, version: str, kind: str, resource: str,
            cache: CacheSource) -> None:
        self.sources.append((group, version, kind, resource, cache))

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            labels=["resource"],
        )
        watchers = GaugeMetricFamily(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            labels=["group", "version", "kind"],
        )
        terminated = CounterMetricFamily(
            "apiserver_terminated_watchers",
            "Counter of watchers closed due to unresponsiveness broken by resource type.",
            labels=["resource"],
        )
        watches = GaugeMetricFamily(
            "kext_etcd_watches",
            "Number of etcd watch streams kext holds per resource (one per watch cache).",
            labels=["resource"],
        )
        for group, version, kind, resource, cache in self.sources:
            qualified = f"{resource}.{group}"
            objects.add_metric([qualified], cache.object_count)
            watchers.add_metric([group, version, kind], cache.watcher_count)
            terminated.add_metric([qualified], cache.terminated_watchers)
            watches.add_metric([qualified], cache.etcd_watch_count)
        yield from (objects, watchers, terminated, watches)


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
            ("verb", "group", "version", "resource", "subresource", "scope", "component"),
            registry=self.registry,
        )
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
        return generate_latest(self.registry)

    def samples(self) -> list[FamilySamples]:
        """This server's metrics as plain data, for the sum across workers."""
        return family_samples(self.registry)


# -- the sum across workers

class FamilySamples(TypedDict):
    """One metric family as plain data (JSON between processes): its samples are
    [sample name, labels, value]."""

    name: str
    type: str
    help: str
    unit: str
    samples: list[tuple[str, dict[str, str], float]]


# Gauges a sum would misread: every worker's cache holds every object, so the stored count is
# any one worker's (the largest); the processes' start is the earliest, their fd limit one.
LARGEST_GAUGES = frozenset({"apiserver_storage_objects", "process_max_fds"})
EARLIEST_GAUGES = frozenset({"process_start_time_seconds"})
# Families whose samples keep counting over the processes' lives (summed, and kept when a
# worker dies); gauges describe the processes alive now.
CUMULATIVE_TYPES = frozenset({"counter", "histogram", "summary"})


def family_samples(registry: CollectorRegistry) -> list[FamilySamples]:
    """Every family a registry collects, as plain data."""
    return [FamilySamples(name=family.name, type=family.type, help=family.documentation,
                          unit=family.unit,
                          samples=[(s.name, dict(s.labels), s.value) for s in family.samples])
            for family in registry.collect()]


def _combine(family: FamilySamples, sample: str, a: float, b: float) -> float:
    if sample.endswith("_created") or family["name"] in EARLIEST_GAUGES:
        return min(a, b)  # when the series started: the first process to start it
    if family["type"] == "gauge" and family["name"] in LARGEST_GAUGES:
        return max(a, b)
    return a + b  # counters, histogram buckets, counts and sums; in-flight and other gauges


def merge(sources: Iterable[list[FamilySamples]]) -> list[FamilySamples]:
    """The families of several processes as one: counters and histograms summed sample by
    sample (same name and labels), gauges summed (in-flight requests, watchers, memory)
    except those in LARGEST_GAUGES and EARLIEST_GAUGES; families and samples in the order
    first seen."""
    merged: dict[str, FamilySamples] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], tuple[dict[str, str],
                                                                          float]]] = {}
    for families in sources:
        for family in families:
            name = family["name"]
            if name not in merged:
                merged[name] = FamilySamples(name=name, type=family["type"], help=family["help"],
                                             unit=family["unit"], samples=[])
                values[name] = {}
            into = values[name]
            for sample, labels, value in family["samples"]:
                key = (sample, tuple(sorted(labels.items())))
                seen = into.get(key)
                into[key] = (labels, value if seen is None
                             else _combine(merged[name], sample, seen[1], value))
    for name, family in merged.items():
        family["samples"] = [(sample, labels, value)
                             for (sample, _), (labels, value) in values[name].items()]
    return list(merged.values())


class _Families(Collector):
    def __init__(self, families: list[FamilySamples]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            metric = Metric(family["name"], family["help"], family["type"], family["unit"])
            for sample, labels, value in family["samples"]:
                metric.add_sample(sample, labels, value)
            yield metric


def exposition(families: list[FamilySamples]) -> bytes:
    """The Prometheus text exposition of families, as a registry of them would give it."""
    return generate_latest(cast(CollectorRegistry, _Families(families)))


class WorkerSums:
    """The supervisor's sum of its workers' metrics: each worker's latest samples, and the
    counters and histograms of the workers that exited (a restarted worker starts from zero;
    without them the sum would go back and Prometheus would read a counter reset). Its own
    registry holds the supervisor's process metrics and kext_workers /
    kext_worker_restarts_total."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.workers = Gauge("kext_workers", "Number of kext worker processes running.",
                             registry=self.registry)
        self.restarts = Counter("kext_worker_restarts", "Number of kext worker processes "
                                "restarted after they exited.", registry=self.registry)
        self.latest: dict[Hashable, list[FamilySamples]] = {}
        self.exited: list[FamilySamples] = []

    def update(self, worker: Hashable, families: list[FamilySamples]) -> None:
        """A worker's (one process's) samples, as it just reported them."""
        self.latest[worker] = families

    def retire(self, worker: Hashable) -> None:
        """The worker's process exited: its counts stay in the sums, its gauges leave them."""
        families = self.latest.pop(worker, None)
        if families is not None:
            cumulative = [f for f in families if f["type"] in CUMULATIVE_TYPES]
            self.exited = merge([self.exited, cumulative])

    def families(self) -> list[FamilySamples]:
        """The sum over every worker and the supervisor."""
        return merge([*self.latest.values(), self.exited, family_samples(self.registry)])


def parse_samples(data: Any) -> list[FamilySamples]:
    """Families as they came over the channel (JSON: the samples are lists)."""
    return [FamilySamples(name=f["name"], type=f["type"], help=f["help"], unit=f["unit"],
                          samples=[(s[0], s[1], float(s[2])) for s in f["samples"]])
            for f in data]
