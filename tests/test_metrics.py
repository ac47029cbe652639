"""The watch-event metrics as Prometheus reads them: kube's buckets, one registry each."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kext.metrics import Metrics

WIDGETS = {"group": "example.kext.io", "version": "v1alpha1", "resource": "widgets"}


def values(metrics: Metrics, name: str) -> dict[str, float]:
    """The samples called name, by their `le` label ('' when they have none)."""
    return {s.labels.get("le", ""): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode())
            for s in family.samples if s.name == name}


def test_watch_event_sizes_fall_in_kubes_buckets() -> None:
    metrics = Metrics()
    counts = metrics.watch_event_counts(*WIDGETS.values())
    for size in (100, 1024, 1025, 200_000):
        counts.record(size)
    assert metrics.watch_event_counts(*WIDGETS.values()) is counts  # one per resource
    assert values(metrics, "apiserver_watch_events_total") == {"": 4}
    buckets = values(metrics, "apiserver_watch_events_sizes_bucket")
    assert buckets == {"1024.0": 2, "2048.0": 3, "4096.0": 3, "8192.0": 3, "16384.0": 3,
                       "32768.0": 3, "65536.0": 3, "131072.0": 3, "+Inf": 4}
    assert values(metrics, "apiserver_watch_events_sizes_sum") == {"": 202_149}
    assert values(metrics, "apiserver_watch_events_sizes_count") == {"": 4}
    assert values(Metrics(), "apiserver_watch_events_total") == {}  # another server's
