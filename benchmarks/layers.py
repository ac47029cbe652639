"""`python -m benchmarks.layers [--seconds S] [--concurrency C] [--path h1|h2|both]`: what
each layer of kext costs a cached GET.

Starts an etcd and a kext (as the suite does, with the front-proxy CA for HTTP/2), seeds
Widgets, drives GETs of them at concurrency C over HTTP/1.1 (admin client certificate) and
over HTTP/2 (the aggregator's path), samples kext with py-spy meanwhile, and prints a table:
each sample goes to the layer of its innermost frame that belongs to one (so C code such as
OpenSSL or orjson counts for the layer that called it), and kext's CPU per GET splits in
those proportions."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.client import Endpoint, client_ssl_context, close_all
from benchmarks.h2client import h2_ssl_context
from benchmarks.harness import AGGREGATED_USER, FRONT_PROXY_CN
from benchmarks.loadgen import CPUMeter, drive
from benchmarks.processes import Etcd, Kext, kext_auth_config, write_front_proxy_files
from benchmarks.profile import Profiler, _parse
from benchmarks.targets import GROUP, KextTarget, put_many, stored_widget
from kext.storage.etcd3 import EtcdClient

# (layer, substrings of a frame's file or function that place it there), innermost wins
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("log line", ("logging/", "log_request")),
    ("metrics", ("kext/metrics.py", "prometheus_client/", "with_metrics")),
    ("authorization", ("kext/auth/authorization/", "with_authorization")),
    ("authentication", ("kext/auth/authentication", "kext/auth/user", "with_authentication",
                        "kext/auth/x509", "kext/auth/requestheader", "cryptography/")),
    ("encoding (orjson, negotiation)", ("kext/server/request.py", "kext/server/negotiation",
                                        "kext/server/handlers/transform")),
    ("handler and store (cache read)", ("kext/server/handlers/", "kext/registry/",
                                        "kext/storage/")),
    ("routing and request info", ("kext/server/routes.py", "kext/server/request_info.py")),
    ("other filters (in-flight, timeout, errors)", ("kext/server/filters.py",)),
    ("HTTP (twisted.web / h2, request and response)", (
        "twisted/web/", "kext/server/http.py", "kext/server/h2.py", "h2/", "hpack/",
        "hyperframe/", "urllib/", "email/")),
    ("TLS (OpenSSL via twisted)", ("twisted/protocols/tls.py", "OpenSSL/",
                                   "twisted/internet/_sslverify")),
    ("socket reads and writes (kernel)", ("twisted/internet/tcp.py",
                                          "twisted/internet/abstract.py")),
    ("event loop (asyncio tasks, futures, reactor)", ("asyncio/", "twisted/internet/",
                                                      "selectors.py")),
]


def layer_of(stack: list[tuple[str, str]]) -> str:
    for func, file in reversed(stack):
        where = f"{file} {func}"
        for layer, needles in LAYERS:
            if any(n in where for n in needles):
                return layer
    return "other"


def layer_table(raw: str, detail: bool = False) -> tuple[int, list[tuple[str, float]]]:
    """Samples, and each layer's share (%) of them (detail: print each layer's top leaves)."""
    counts: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or not n.isdigit():
            continue
        stack = [_parse(f) for f in stack_text.split(";")]
        layer = layer_of(stack)
        counts[layer] += int(n)
        leaves.setdefault(layer, Counter())[" ".join(stack[-1])] += int(n)
        total += int(n)
    if detail:
        for layer, leaf in leaves.items():
            print(f"  {layer}: " + "; ".join(f"{k} {v}" for k, v in leaf.most_common(6)))
    return total, [(name, 100.0 * c / total) for name, c in counts.most_common()] if total \
        else []


async def measure(seconds: float, concurrency: int, paths: list[str],
                  detail: bool = False) -> None:
    etcd = Etcd()
    etcd.start()
    kext = Kext(etcd.endpoint, "/layers")
    front = write_front_proxy_files(kext.directory / "front-proxy", FRONT_PROXY_CN)
    kext.extra_config = kext_auth_config(front["ca.crt"], FRONT_PROXY_CN)
    kext.start()
    client = EtcdClient([etcd.endpoint])
    await client.connect()
    try:
        certs = kext.cert_dir
        targets = {
            "h1": KextTarget(Endpoint("127.0.0.1", kext.port, client_ssl_context(
                str(certs / "ca.crt"), str(certs / "admin.crt"), str(certs / "admin.key"))),
                "l-"),
            "h2": KextTarget(Endpoint("127.0.0.1", kext.port, h2_ssl_context(
                str(certs / "ca.crt"), front["client.crt"], front["client.key"])), "l-",
                h2_pool=4, headers=AGGREGATED_USER, name="aggregator"),
        }
        await put_many(client, [(f"/layers/{GROUP}/widgets/l-pool/p{i}".encode(),
                                 stored_widget("l-pool", f"p{i}", i)) for i in range(200)])
        await targets["h1"].sync("pool")
        for path in paths:
            target = targets[path]
            conns = await target.connect(concurrency)

            async def op(worker: int, seq: int, target: KextTarget = target,
                         conns: list[Any] = conns) -> bool:
                return await target.get(conns[worker], "pool", f"p{seq % 200}")

            await drive(op, concurrency, duration=1.0)
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "profile.txt"
                meter = CPUMeter({"kext": kext.pid, "client": os.getpid()})
                with Profiler(kext.pid, out) as profiler:
                    stats = await drive(op, concurrency, duration=seconds, meter=meter)
                raw = out.read_text() if out.exists() else ""
            close_all(conns)
            total, table = layer_table(raw, detail)
            rate = stats.ops_per_s
            cores = stats.cpu.get("kext", 0.0)
            per_get_ms = 1000 * cores / rate if rate else 0.0
            print(f"\n{path}: {rate:.0f} GET/s at c={concurrency}, kext {cores:.2f} cores "
                  f"({per_get_ms:.2f} ms of CPU per GET), other {stats.cpu.get('other', 0):.2f}"
                  f" cores; {total} samples {profiler.error}")
            print("| layer | share of kext's samples | ms of CPU per GET |")
            print("|---|--:|--:|")
            for name, pct in table:
                print(f"| {name} | {pct:.1f} % | {per_get_ms * pct / 100:.3f} |")
    finally:
        await client.close()
        kext.stop()
        kext.cleanup()
        etcd.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--path", choices=("h1", "h2", "both"), default="both")
    parser.add_argument("--detail", action="store_true", help="each layer's top frames")
    args = parser.parse_args(argv)
    paths = ["h1", "h2"] if args.path == "both" else [args.path]
    asyncio.run(measure(args.seconds, args.concurrency, paths, args.detail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
