"""`python -m benchmarks [--quick] [--profile] [--workers N|auto] [--etcd URL]
[--kext URL --kext-certs DIR] [--out DIR]`

Starts its own etcd and kext (unless given), runs every scenario against kext and directly
against etcd, and writes results.json, report.md and PNG plots into
benchmarks/results/<timestamp>/ (or --out)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import os
import sys
from pathlib import Path

import orjson

from benchmarks import report
from benchmarks.harness import DEFAULT, QUICK, Given, Suite

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="kext against raw etcd: throughput, latency, watch fan-out and memory, "
                    "every figure a ratio against etcd measured in the same run.")
    parser.add_argument("--quick", action="store_true",
                        help="a small run (under 2 minutes) that exercises every scenario")
    parser.add_argument("--profile", action="store_true",
                        help="sample kext with py-spy during create and get (at concurrency "
                             "32) and the largest watch fan-out; summaries in the report")
    parser.add_argument("--workers", default="1", metavar="N|auto",
                        help="serving.workers of the kext the suite starts (default 1); get "
                             "and create are also run with workers 1, 2 and auto")
    parser.add_argument("--out", type=Path,
                        help="directory for results.json, report.md and the plots "
                             "(default: benchmarks/results/<timestamp>)")
    parser.add_argument("--etcd", default="",
                        help="an etcd client URL to use instead of starting one (plain http)")
    parser.add_argument("--kext", default="",
                        help="a kext URL (https://host:port) to use instead of starting one; "
                             "needs --etcd (the etcd it stores in) and --kext-certs")
    parser.add_argument("--kext-certs", default="",
                        help="kext's certDir: ca.crt, admin.crt and admin.key")
    parser.add_argument("--kext-prefix", default="/registry",
                        help="the given kext's storage.prefix (default /registry)")
    parser.add_argument("--kext-pid", type=int, default=None,
                        help="the given kext's process id (for its CPU and memory figures)")
    parser.add_argument("--etcd-pid", type=int, default=None,
                        help="the given etcd's process id (for its CPU and memory figures)")
    parser.add_argument("--only", default="",
                        help="run only these sections, comma-separated: client, memory, "
                             "requests, watch, workers (a partial report)")
    parser.add_argument("--profile-scenarios", default="",
                        help="with --profile: the request scenarios to sample, comma-separated "
                             "(default: create,get)")
    parser.add_argument("--watchers", default="",
                        help="fan-out sizes instead of the size's, comma-separated (e.g. 1000)")
    parser.add_argument("--front-proxy-certs", default="",
                        help="for a given kext: a directory with client.crt and client.key, "
                             "the front-proxy client certificate it trusts (requestHeader); "
                             "without it the aggregator's path is not measured")
    parser.add_argument("--sar-kubeconfig", default="",
                        help="run the started kext with Delegated authorization against the "
                             "cluster of this kubeconfig (a SubjectAccessReview per request, "
                             "cached); default: AlwaysAllow")
    args = parser.parse_args(argv)
    problems = []
    if args.kext and not args.etcd:
        problems.append("--kext: also give --etcd, the etcd that kext stores its objects in")
    if args.kext and not args.kext_certs:
        problems.append("--kext: also give --kext-certs, kext's certDir")
    if args.kext_certs:
        for name in ("ca.crt", "admin.crt", "admin.key"):
            if not os.path.exists(os.path.join(args.kext_certs, name)):
                problems.append(f"--kext-certs: {name} not found in {args.kext_certs}")
    if args.front_proxy_certs:
        for name in ("client.crt", "client.key"):
            if not os.path.exists(os.path.join(args.front_proxy_certs, name)):
                problems.append(f"--front-proxy-certs: {name} not found in "
                                f"{args.front_proxy_certs}")
    if args.sar_kubeconfig and args.kext:
        problems.append("--sar-kubeconfig: configures the kext the suite starts, not a given one")
    if args.workers != "auto" and not (args.workers.isdigit() and int(args.workers) >= 1):
        problems.append(f"--workers: expected a positive integer or auto, got {args.workers}")
    elif args.workers != "auto":
        args.workers = int(args.workers)
    if args.etcd.startswith("https://"):
        problems.append("--etcd: only plain http etcd endpoints are supported")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = QUICK if args.quick else DEFAULT
    if args.watchers:
        size = dataclasses.replace(size, watchers=tuple(int(n) for n in args.watchers.split(",")))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or RESULTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    given = Given(etcd=args.etcd, kext=args.kext, kext_certs=args.kext_certs,
                  kext_prefix=args.kext_prefix, kext_pid=args.kext_pid,
                  etcd_pid=args.etcd_pid, front_proxy_certs=args.front_proxy_certs,
                  sar_kubeconfig=args.sar_kubeconfig)
    suite = Suite(size, given, profile_dir=out if args.profile else None, workers=args.workers,
                  only=tuple(x.strip() for x in args.only.split(",") if x.strip()))
    if args.profile_scenarios:
        suite.profiled = tuple(x.strip() for x in args.profile_scenarios.split(","))
    suite.progress.line(f"kext benchmark, {size.name} size; results in {out}")
    with suite.processes():
        results = asyncio.run(suite.run())
    (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report.write(results, out)
    suite.progress.line(f"done in {results['meta']['wall_seconds']} s: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
