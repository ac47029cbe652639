"""The benchmark suite runs end to end in its --quick size (a smoke test: no timing
assertions; the figures themselves belong to benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        shutil.which("etcd") is None,
        reason="the benchmark starts a real etcd: install one (apt-get install etcd-server)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("matplotlib") is None,
        reason="the benchmark draws its plots with matplotlib: pip install -e '.[bench]'",
    ),
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `python -m benchmarks --quick` run: its output directory and its progress text."""
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, f"benchmark failed:\n{result.stdout}\n{result.stderr}"
    return out, result.stderr


def _number(value: object) -> bool:
    return isinstance(value, int | float) and value == value  # not NaN


def test_writes_results_report_and_plots(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    for name in ("results.json", "report.md", "throughput.png", "latency.png", "ratio.png",
                 "watch.png", "client.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "throughput.png").read_bytes().startswith(b"\x89PNG")


def test_every_scenario_has_numbers_for_both_targets(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    names = {s["name"] for s in results["scenarios"]}
    assert {"create", "get", "update", "delete", "list-100-rv0", "list-100-rv-empty",
            "list-10000-rv0", "list-10000-rv-empty", "list-10000-limit500"} <= names
    for scenario in results["scenarios"]:
        assert [row["concurrency"] for row in scenario["levels"]] == [1, 8]
        for row in scenario["levels"]:
            for target in ("kext", "aggregator", "etcd"):  # aggregator: HTTP/2, front proxy
                stats = row[target]
                assert stats["errors"] == 0, (scenario["name"], target, stats)
                assert stats["ops"] > 0, (scenario["name"], target)
                assert all(_number(stats[k]) for k in ("ops_per_s", "p50_ms", "p99_ms"))
            assert _number(row["ratio"]["ops_per_s"])
    watch = results["watch"]
    assert [row["watchers"] for row in watch["levels"]] == [10, 100]
    for row in watch["levels"]:
        assert row["etcd"]["delivered_events"] == row["etcd"]["expected_events"] > 0
        if watch["available"]:
            assert _number(row["kext"]["events_per_s"]) and _number(row["ratio"]["p99"])
            assert _number(row["aggregator"]["events_per_s"])
            assert _number(row["aggregator"]["writer_p99_ms"])
    memory = results["memory"]
    assert _number(memory["objects"]["kext_bytes_per_10k"])
    assert _number(memory["objects"]["etcd_bytes_per_10k"])
    assert _number(memory["watchers"]["etcd_bytes_per_1k"])
    idle = memory["idle_h2_streams"]
    assert idle["held"] == idle["streams"] > 0, idle  # every idle HTTP/2 watch stream held
    assert len(results["client"]["trivial"]) == 2
    meta = results["meta"]
    assert meta["versions"]["python"] and meta["machine"]["cpus"]
    assert meta["config"]["etcd"]["version"]


def test_report_names_the_ratios(quick_run: tuple[Path, str]) -> None:
    out, progress = quick_run
    report = (out / "report.md").read_text()
    assert "kext / raw etcd" in report
    results = json.loads((out / "results.json").read_text())
    create = next(s for s in results["scenarios"] if s["name"] == "create")
    assert f"**{create['levels'][0]['ratio']['ops_per_s']:.2f}x**" in report
    assert "| create | 1 |" in report and "watchers" in report
    assert "create" in progress and "ops/s" in progress  # progress was shown as it ran


def test_get_and_create_run_with_one_two_and_auto_workers(quick_run: tuple[Path, str]) -> None:
    out, _ = quick_run
    workers = json.loads((out / "results.json").read_text())["workers"]
    runs = {(r["workers"], r["scenario"], r["concurrency"]): r for r in workers["runs"]}
    assert set(runs) == {(w, s, c) for w in (1, 2, "auto") for s in ("create", "get")
                         for c in (1, 8)}
    for run in runs.values():
        assert run["kext"]["errors"] == 0 and run["kext"]["ops"] > 0, run
        assert _number(run["ratio_to_etcd"])
    # with 2 workers, each worker's CPU is measured (kext[0], kext[1]) beside the total
    assert {"kext", "kext[0]", "kext[1]"} <= set(runs[(2, "get", 8)]["kext"]["cpu_cores"])
    assert "## serving.workers" in (out / "report.md").read_text()

