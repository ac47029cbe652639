"""Prometheus collectors with kube-apiserver's metric names, label names, label values and
buckets, so dashboards built for kube-apiserver (and extension servers built on
k8s.io/apiserver) work on kext unchanged.

Each API server builds its own `Metrics`: its collectors live on its own registry, which its
/metrics serves; nothing is registered process-wide. Counters carry no `_created` series
(kube-apiserver has none): /metrics leaves them out.

What records a metric is handed this object; storage is handed `etcd` (an EtcdMetrics, the
observer kext.storage.etcd3 reports to), since storage knows nothing of metrics.

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

__all__ = ["AdmissionMetrics", "CacheSource", "EtcdMetrics", "FamilySamples", "Gauge",
           "Metrics", "StorageCollector", "UnsuffixedCounter", "WatchEventCounts", "WorkerSums",
           "exposition", "family_samples", "merge", "parse_samples"]

# kube-apiserver's buckets for apiserver_request_duration_seconds.
REQUEST_DURATION_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
    30, 45, 60,
)
# kube's buckets for authentication_ and authorization_duration_seconds:
# ExponentialBuckets(0.001, 2, 15).
AUTH_DURATION_BUCKETS = tuple(0.001 * 2**i for i in range(15))
# kube-apiserver's buckets for apiserver_watch_events_sizes: ExponentialBuckets(1024, 2, 8).
WATCH_EVENT_SIZE_BUCKETS = tuple(1024 * 2**i for i in range(8))
# kube-apiserver's buckets for apiserver_response_sizes: ExponentialBuckets(1000, 10, 7).
RESPONSE_SIZE_BUCKETS = tuple(1000.0 * 10**i for i in range(7))
# etcd_request_duration_seconds uses the request-duration buckets.
ETCD_REQUEST_BUCKETS = REQUEST_DURATION_BUCKETS

# kube-apiserver's admission buckets: 5 ms to 2.5 s for steps and controllers, up to 25 s for
# webhooks (they time out at 30 s at most).
ADMISSION_STEP_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1.0, 2.5)
ADMISSION_WEBHOOK_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10, 25)
POLICY_CHECK_BUCKETS = (0.0000005, 0.001, 0.01, 0.1, 1.0)

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


class UnsuffixedCounter(Collector):
    """Counts by one label, exposed under exactly `name`: kube-apiserver's
    `authentication_attempts` has no `_total`, which prometheus_client adds to every Counter
    (so this one is exposed untyped)."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.counts: dict[str, int] = {}

    def inc(self, value: str) -> None:
        self.counts[value] = self.counts.get(value, 0) + 1

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, "unknown")
        for value, count in self.counts.items():
            metric.add_sample(self.name, {self.label: value}, count)
        yield metric


class AdmissionMetrics(Collector):
    """The apiserver_admission_* metrics (cf. apiserver pkg/admission/metrics): latency of the
    admission steps (type "admit" or "validate"), of each Python hook (as kube's admission
    controllers) and of each webhook (type "admit" or "validating", kube's words), and counts
    of webhook calls and rejections. The counts are plain dicts read when scraped; written on
    the event loop only."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.step = Histogram(
            "apiserver_admission_step_admission_duration_seconds",
            "Admission sub-step latency histogram in seconds, broken out for each operation "
            "and API resource and step type (validate or admit).",
            ("type", "operation", "rejected"), buckets=ADMISSION_STEP_BUCKETS,
            registry=registry,
        )
        self.controller = Histogram(
            "apiserver_admission_controller_admission_duration_seconds",
            "Admission controller latency histogram in seconds, identified by name and broken "
            "out for each operation and API resource and type (validate or admit).",
            ("name", "type", "operation", "rejected"), buckets=ADMISSION_STEP_BUCKETS,
            registry=registry,
        )
        self.webhook = Histogram(
            "apiserver_admission_webhook_admission_duration_seconds",
            "Admission webhook latency histogram in seconds, identified by name and broken out "
            "for each operation and API resource and type (validate or admit).",
            ("name", "type", "operation", "rejected"), buckets=ADMISSION_WEBHOOK_BUCKETS,
            registry=registry,
        )
        # the ValidatingAdmissionPolicy plugin's (cf. policy/validating/metrics)
        policy_labels = ("policy", "policy_binding", "error_type", "enforcement_action")
        self.policy_check = Counter(
            "apiserver_validating_admission_policy_check_total",
            "Validation admission policy check total, labeled by policy and further identified "
            "by binding and enforcement action taken.", policy_labels, registry=registry)
        self.policy_latency = Histogram(
            "apiserver_validating_admission_policy_check_duration_seconds",
            "Validation admission latency for individual validation expressions in seconds, "
            "labeled by policy and further including binding and enforcement action taken.",
            policy_labels, buckets=POLICY_CHECK_BUCKETS, registry=registry)
        self.requests: dict[tuple[str, str, str, str, str], int] = {}
        self.rejections: dict[tuple[str, str, str, str, str], int] = {}
        self.fail_open: dict[tuple[str, str], int] = {}
        registry.register(self)

    def observe_policy_check(self, policy: str, binding: str, error_type: str, action: str,
                             seconds: float) -> None:
        """One validation's outcome: error_type no_error, compile_error, invalid_error or
        out_of_budget; action (enforcement_action) allow, deny, warn or audit."""
        labels = (policy, binding, error_type, action)
        self.policy_check.labels(*labels).inc()
        self.policy_latency.labels(*labels).observe(seconds)

    def observe_step(self, step: str, operation: str, rejected: bool, seconds: float) -> None:
        self.step.labels(step, operation, _bool(rejected)).observe(seconds)

    def observe_controller(self, name: str, step: str, operation: str, rejected: bool,
                           seconds: float) -> None:
        self.controller.labels(name, step, operation, _bool(rejected)).observe(seconds)

    def observe_webhook(self, name: str, step: str, operation: str, rejected: bool, code: int,
                        seconds: float) -> None:
        """One webhook call (kube's ObserveWebhook): its latency and its count by HTTP code
        (0: kext failed before an answer; above 600 counted as 600)."""
        key = (name, step, operation, str(min(code, 600)), _bool(rejected))
        self.requests[key] = self.requests.get(key, 0) + 1
        self.webhook.labels(name, step, operation, _bool(rejected)).observe(seconds)

    def observe_webhook_rejection(self, name: str, step: str, operation: str, error_type: str,
                                  code: int) -> None:
        """error_type: calling_webhook_error, apiserver_internal_error or no_error."""
        key = (name, step, operation, error_type, str(min(code, 600)))
        self.rejections[key] = self.rejections.get(key, 0) + 1

    def observe_webhook_fail_open(self, name: str, step: str) -> None:
        self.fail_open[(name, step)] = self.fail_open.get((name, step), 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "apiserver_admission_webhook_request",
            "Admission webhook request total, identified by name and broken out for each "
            "admission type (validating or admit) and operation. Additional labels specify "
            "whether the request was rejected or not and an HTTP status code. Codes greater "
            "than 600 are truncated to 600, to keep the metrics cardinality bounded.",
            labels=["name", "type", "operation", "code", "rejected"],
        )
        for labels, count in self.requests.items():
            requests.add_metric(labels, count)
        # kube's counter is called ..._rejection_count: exposed untyped, as a counter would
        # gain a _total suffix here
        rejections = Metric(
            "apiserver_admission_webhook_rejection_count",
            "Admission webhook rejection count, identified by name and broken out for each "
            "admission type (validating or admit) and operation. Additional labels specify an "
            "error type (calling_webhook_error or apiserver_internal_error if an error "
            "occurred; no_error otherwise) and optionally a non-zero rejection code if the "
            "webhook rejects the request with an HTTP status code (honored by the apiserver "
            "when the code is greater or equal to 400). Codes greater than 600 are truncated "
            "to 600, to keep the metrics cardinality bounded.",
            "unknown",
        )
        for (name, step, operation, error_type, code), count in self.rejections.items():
            rejections.add_sample(
                "apiserver_admission_webhook_rejection_count",
                {"name": name, "type": step, "operation": operation, "error_type": error_type,
                 "rejection_code": code}, count)
        fail_open = Metric(
            "apiserver_admission_webhook_fail_open_count",
            "Admission webhook fail open count, identified by name and broken out for each "
            "admission type (validating or admit).",
            "unknown",
        )
        for (name, step), count in self.fail_open.items():
            fail_open.add_sample("apiserver_admission_webhook_fail_open_count",
                                 {"name": name, "type": step}, count)
        yield from (requests, rejections, fail_open)


def _bool(value: bool) -> str:
    return "true" if value else "false"


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
        self.admission = AdmissionMetrics(self.registry)
        ProcessCollector(registry=self.registry)

        # Authentication and authorization, with kube's names (endpoints/filters/metrics.go,
        # token/cache/stats.go, authorizerfactory/metrics.go); kext_authorization_cache is
        # kext's own: kube counts no SubjectAccessReview cache hits.
        self.authentication_attempts = UnsuffixedCounter(
            "authentication_attempts", "Counter of authenticated attempts.", "result")
        self.registry.register(self.authentication_attempts)
        self.authentication_duration = Histogram(
            "authentication_duration_seconds",
            "Authentication duration in seconds broken out by result.",
            ("result",), buckets=AUTH_DURATION_BUCKETS, registry=self.registry,
        )
        self.authorization_attempts = Counter(
            "authorization_attempts_total",
            "Counter of authorization attempts broken down by result. It can be either "
            "'allowed', 'denied', 'no-opinion' or 'error'.",
            ("result",), registry=self.registry,
        )
        self.authorization_duration = Histogram(
            "authorization_duration_seconds",
            "Authorization duration in seconds broken out by result.",
            ("result",), buckets=AUTH_DURATION_BUCKETS, registry=self.registry,
        )
        self.token_cache_requests = Counter(
            "authentication_token_cache_request_total",
            "TokenReview answers looked up in the cache, by hit or miss.", ("status",),
            registry=self.registry,
        )
        self.authorization_cache_requests = Counter(
            "kext_authorization_cache_request_total",
            "SubjectAccessReview answers looked up in the cache, by hit or miss.",
            ("status",), registry=self.registry,
        )
        self.delegated_authn_requests = Counter(
            "apiserver_delegated_authn_request_total",
            "Number of HTTP requests partitioned by status code.", ("code",),
            registry=self.registry,
        )
        self.delegated_authz_requests = Counter(
            "apiserver_delegated_authz_request_total",
            "Number of HTTP requests partitioned by status code.", ("code",),
            registry=self.registry,
        )

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

    def samples(self) -> list[FamilySamples]:
        """This server's metrics as plain data, for the sum across workers."""
        return family_samples(self.registry)


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
# any one worker's (the largest), as are a cache's revision and capacity; the processes' start
# is the earliest, their fd limit one.
LARGEST_GAUGES = frozenset({"apiserver_storage_objects", "apiserver_resource_objects",
                            "apiserver_watch_cache_resource_version", "watch_cache_capacity",
                            "process_max_fds"})
EARLIEST_GAUGES = frozenset({"process_start_time_seconds"})
# Families whose samples keep counting over the processes' lives (summed, and kept when a
# worker dies); gauges describe the processes alive now.
CUMULATIVE_TYPES = frozenset({"counter", "histogram", "summary"})


def family_samples(registry: CollectorRegistry) -> list[FamilySamples]:
    """Every family a registry collects (without `_created` samples), as plain data."""
    return [FamilySamples(name=family.name, type=family.type, help=family.documentation,
                          unit=family.unit,
                          samples=[(s.name, dict(s.labels), s.value) for s in family.samples])
            for family in _WithoutCreated(registry).collect()]


def _combine(family: FamilySamples, a: float, b: float) -> float:
    if family["name"] in EARLIEST_GAUGES:
        return min(a, b)
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
                             else _combine(merged[name], seen[1], value))
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
