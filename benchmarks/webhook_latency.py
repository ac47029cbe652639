"""`python -m benchmarks.webhook_latency [--seconds S] [--concurrency 1 8]`

The latency one allow-all validating webhook adds to a create. One etcd, two kexts on it —
one without admission, one with a webhook called on every Widget create — and the webhook
(tests/webhook_server.py, its own process: Python's threaded HTTPS server, keep-alive) are
started; at each concurrency, creates run for S seconds through each kext, and the same
AdmissionReview is posted straight to the webhook with the same client, so the table shows
the latency added and how much of it is the webhook's own answer. Prints a Markdown table and
writes benchmarks/results/webhook-latency-<timestamp>.json."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

from benchmarks.client import Connection, Endpoint, client_ssl_context, open_connections
from benchmarks.loadgen import CPUMeter, drive
from benchmarks.processes import REPO, Etcd, Kext, scratch_dir, stop_process
from benchmarks.targets import API_VERSION, GROUP, VERSION, widget

RESULTS = Path(__file__).resolve().parent / "results"
WARM_UP = 0.5


def review(name: str) -> bytes:
    """An AdmissionReview like the one kext sends for a Widget create."""
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "request": {
                             "uid": str(uuid.uuid4()),
                             "kind": {"group": GROUP, "version": VERSION, "kind": "Widget"},
                             "resource": {"group": GROUP, "version": VERSION,
                                          "resource": "widgets"},
                             "name": name, "namespace": "bench", "operation": "CREATE",
                             "userInfo": {"username": "kext-admin",
                                          "groups": ["system:masters"]},
                             "object": {**widget(name), "apiVersion": API_VERSION},
                             "oldObject": None, "dryRun": False,
                             "options": {"kind": "CreateOptions",
                                         "apiVersion": "meta.k8s.io/v1"}}})


async def run(seconds: float, concurrencies: list[int]) -> dict[str, Any]:
    etcd = Etcd()
    etcd.start()
    hook_dir = scratch_dir("kext-bench-webhook-")
    hook = subprocess.Popen([sys.executable, "-m", "tests.webhook_server", str(hook_dir)],
                            stdout=subprocess.PIPE, cwd=REPO)
    assert hook.stdout is not None
    port = int(hook.stdout.readline())
    webhook = {"name": "allow.bench.kext.io", "url": f"https://127.0.0.1:{port}/allow",
               "caFile": str(hook_dir / "webhook-ca.crt"),
               "rules": [{"operations": ["CREATE"], "apiGroups": [GROUP],
                          "apiVersions": [VERSION], "resources": ["widgets"]}]}
    plain = Kext(etcd.endpoint, "/bench-webhook-plain")
    hooked = Kext(etcd.endpoint, "/bench-webhook-hooked",
                  extra_config={"admission": {"webhooks": [webhook]}})
    results: dict[str, Any] = {"seconds": seconds, "webhook": webhook, "runs": []}
    try:
        plain.start()
        hooked.start()
        direct = Endpoint("127.0.0.1", port, client_ssl_context(webhook["caFile"]))
        for concurrency in concurrencies:
            row: dict[str, Any] = {"concurrency": concurrency}
            for label, kext in (("without", plain), ("with", hooked)):
                row[label] = await _creates(kext, concurrency, seconds,
                                            {"kext": kext.pid, "etcd": etcd.pid,
                                             "webhook": hook.pid})
            row["webhook alone"] = await _reviews(direct, concurrency, seconds,
                                                  {"webhook": hook.pid})
            results["runs"].append(row)
            print(_line(row), flush=True)
    finally:
        plain.stop()
        hooked.stop()
        stop_process(hook)
        etcd.stop()
        plain.cleanup()
        hooked.cleanup()
    return results


async def _creates(kext: Kext, concurrency: int, seconds: float,
                   pids: dict[str, int]) -> dict[str, Any]:
    certs = kext.cert_dir
    endpoint = Endpoint("127.0.0.1", kext.port, client_ssl_context(
        str(certs / "ca.crt"), str(certs / "admin.crt"), str(certs / "admin.key")))
    connections = await open_connections(endpoint, concurrency)
    run_id = uuid.uuid4().hex[:8]
    path = f"/apis/{GROUP}/{VERSION}/namespaces/bench/widgets"
    names = itertools.count()  # the warm-up and the run number their operations alike

    async def create(index: int, seq: int) -> bool:
        response = await connections[index].request(
            "POST", path, orjson.dumps(widget(f"w-{run_id}-{next(names)}", seq)))
        return response.status == 201

    return await _measure(create, connections, concurrency, seconds, pids)


async def _reviews(endpoint: Endpoint, concurrency: int, seconds: float,
                   pids: dict[str, int]) -> dict[str, Any]:
    connections = await open_connections(endpoint, concurrency)

    async def post(index: int, seq: int) -> bool:
        response = await connections[index].request("POST", "/allow?timeout=10s",
                                                     review(f"w-{seq}"))
        return response.status == 200

    return await _measure(post, connections, concurrency, seconds, pids)


async def _measure(operation: Any, connections: list[Connection], concurrency: int,
                   seconds: float, pids: dict[str, int]) -> dict[str, Any]:
    try:
        await drive(operation, concurrency, duration=WARM_UP)
        stats = await drive(operation, concurrency, duration=seconds, meter=CPUMeter(pids))
    finally:
        for connection in connections:
            connection.close()
    summary: dict[str, Any] = stats.summary()
    return summary


def _line(row: dict[str, Any]) -> str:
    without, with_, alone = row["without"], row["with"], row["webhook alone"]
    errors = sum(r["errors"] for r in (without, with_, alone))
    if errors:
        raise SystemExit(f"{errors} operations failed: "
                         f"{without.get('first_error') or with_.get('first_error')}")
    return (f"c={row['concurrency']}: without {without['p50_ms']:.2f}/{without['p99_ms']:.2f} ms"
            f" {without['ops_per_s']:.0f}/s, with {with_['p50_ms']:.2f}/{with_['p99_ms']:.2f}"
            f" ms {with_['ops_per_s']:.0f}/s, webhook alone {alone['p50_ms']:.2f} ms")


def table(results: dict[str, Any]) -> str:
    lines = [
        "| c | creates/s without / with | p50 ms without / with (added) | p99 ms without / with"
        " | webhook alone p50 / p99 ms | kext cores without / with |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for row in results["runs"]:
        without, with_, alone = row["without"], row["with"], row["webhook alone"]
        added = with_["p50_ms"] - without["p50_ms"]
        lines.append(
            f"| {row['concurrency']} | {without['ops_per_s']:.0f} / {with_['ops_per_s']:.0f} | "
            f"{without['p50_ms']:.2f} / {with_['p50_ms']:.2f} (+{added:.2f}) | "
            f"{without['p99_ms']:.2f} / {with_['p99_ms']:.2f} | "
            f"{alone['p50_ms']:.2f} / {alone['p99_ms']:.2f} | "
            f"{without['cpu_cores'].get('kext', 0):.2f} / "
            f"{with_['cpu_cores'].get('kext', 0):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhook_latency",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.seconds, args.concurrency))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"webhook-latency-{stamp}.json"
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(table(results))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
