"""The suite: bring up etcd and kext (or use given ones), seed, run every scenario at every
concurrency against both targets, and collect one results dictionary (results.json)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import orjson

from benchmarks import watch
from benchmarks.client import Endpoint, client_ssl_context, close_all, open_connections
from benchmarks.h2client import h2_ssl_context, open_lanes
from benchmarks.loadgen import CPUMeter, Stats, drive
from benchmarks.processes import (
    REPO,
    Etcd,
    Kext,
    kext_auth_config,
    rss_bytes,
    write_front_proxy_files,
)
from benchmarks.profile import Profiler
from benchmarks.scenarios import (
    POOL,
    Created,
    Scenario,
    crud_scenarios,
    list_namespace,
)
from benchmarks.targets import (
    GROUP,
    EtcdTarget,
    KextTarget,
    delete_prefix,
    put_many,
    stored_widget,
)
from kext.storage.etcd3 import EtcdClient

PLURAL = "widgets"
PROFILED = ("create", "get")  # request scenarios --profile samples (and the largest fan-out)
# The aggregator's path: HTTP/2 connections kube-apiserver's proxy pools to a backend (Go's
# transport opens more only when the server's MAX_CONCURRENT_STREAMS is reached), and the
# identity it asserts for the user it proxies (X-Remote-*, trusted through the front-proxy
# certificate).
H2_POOL = 4
FRONT_PROXY_CN = "front-proxy-client"
AGGREGATED_USER = (("X-Remote-User", "bench-user"), ("X-Remote-Group", "system:masters"),
                   ("X-Remote-Group", "system:authenticated"))


@dataclass(frozen=True)
class Size:
    """How much the suite does: the default size, or --quick (a smoke run)."""

    name: str
    levels: tuple[int, ...]  # concurrency levels of every request scenario
    duration: float  # seconds of each timed run
    warmup: float  # seconds of unmeasured load before each timed run
    pool: int  # objects get and update pick from
    small_list: int
    large_list: int
    watchers: tuple[int, ...]  # fan-out sizes
    watch_rate: float  # writes per second during fan-out
    watch_duration: float  # seconds of writes per fan-out run
    idle_watchers: int  # watchers opened for the memory figure
    ceiling_duration: float  # seconds per level of the client-alone measurement
    idle_streams: int  # idle HTTP/2 watch streams opened on the aggregator's path
    h2_pool: int = H2_POOL  # the aggregator's pooled HTTP/2 connections


DEFAULT = Size("default", levels=(1, 8, 32, 128), duration=5.0, warmup=0.5, pool=1000,
               small_list=100, large_list=10000, watchers=(10, 100, 1000), watch_rate=20.0,
               watch_duration=5.0, idle_watchers=1000, ceiling_duration=2.0,
               idle_streams=10000)
QUICK = Size("quick", levels=(1, 8), duration=0.5, warmup=0.1, pool=200, small_list=100,
             large_list=10000, watchers=(10, 100), watch_rate=20.0, watch_duration=1.5,
             idle_watchers=100, ceiling_duration=0.5, idle_streams=300)


@dataclass
class Given:
    """Endpoints given on the command line instead of processes the suite starts."""

    etcd: str = ""
    kext: str = ""
    kext_certs: str = ""
    kext_prefix: str = "/registry"
    kext_pid: int | None = None
    etcd_pid: int | None = None
    front_proxy_certs: str = ""  # a given kext's front-proxy client ca.crt, client.crt/.key
    sar_kubeconfig: str = ""  # Delegated authorization: the cluster SubjectAccessReviews go to


class Progress:
    """One line per measurement on stderr, with the time since the start; on a terminal, a
    live count of operations while a run is going."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.live = stream.isatty()

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.start)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def line(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        self.stream.write(f"[{self.elapsed()}] {text}\n")
        self.stream.flush()

    def ticker(self, label: str) -> Callable[[int], None] | None:
        """A callback showing a run's operation count live (None when not on a terminal)."""
        if not self.live:
            return None

        def tick(ops: int) -> None:
            self.stream.write(f"\r\033[K[{self.elapsed()}] {label} ... {ops} ops")
            self.stream.flush()
        return tick


def _fmt(stats: dict[str, Any]) -> str:
    cpu = " ".join(f"{k} {v:.2f}" for k, v in stats.get("cpu_cores", {}).items())
    errors = f"  ERRORS {stats['errors']}: {stats.get('first_error', '')[:120]}" \
        if stats["errors"] else ""
    return (f"{stats['ops_per_s']:9.1f} ops/s  p50 {stats['p50_ms']:7.2f} ms  "
            f"p99 {stats['p99_ms']:7.2f} ms  cpu[{cpu}]{errors}")


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing, zero or NaN."""
    if a is None or b is None or not b or a != a or b != b:  # None, zero or NaN
        return None
    return round(a / b, 3)


@dataclass
class Suite:
    """One run of the suite; `processes()` brings etcd and kext up, then `run()` measures."""

    size: Size
    given: Given
    progress: Progress = field(default_factory=Progress)
    profile_dir: Path | None = None  # --profile: py-spy kext during PROFILED runs, files here
    workers: int | str = 1  # --workers: serving.workers of the kext the suite starts
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    only: tuple[str, ...] = ()  # sections to run (client, memory, requests, watch, workers)
    profiled: tuple[str, ...] = PROFILED  # the request scenarios --profile samples
    results: dict[str, Any] = field(default_factory=dict)

    # set up by start()
    etcd_process: Etcd | None = None
    kext_process: Kext | None = None
    etcd_endpoint: str = ""
    kext_prefix: str = ""
    kext_pid: int | None = None
    etcd_pid: int | None = None
    kext_target: KextTarget | None = None
    aggregator_target: KextTarget | None = None  # the aggregator's path, None if not set up
    etcd_target: EtcdTarget | None = None
    etcd_client: EtcdClient | None = None
    watch_note: str = ""

    def wanted(self, section: str) -> bool:
        return not self.only or section in self.only

    # -- processes

    @contextlib.contextmanager
    def processes(self) -> Iterator[None]:
        """etcd and kext for the run (started here unless given), stopped afterwards."""
        finished = False
        try:
            if self.given.etcd:
                self.etcd_endpoint = self.given.etcd
                self.etcd_pid = self.given.etcd_pid
                self.progress.line(f"using etcd at {self.etcd_endpoint}")
            else:
                self.etcd_process = Etcd()
                self.etcd_process.start()
                self.etcd_endpoint = self.etcd_process.endpoint
                self.etcd_pid = self.etcd_process.pid
                self.progress.line(f"started etcd at {self.etcd_endpoint} "
                                   f"(pid {self.etcd_pid}, data in /dev/shm)")
            if self.given.kext:
                url = urlsplit(self.given.kext)
                certs = Path(self.given.kext_certs)
                self.kext_prefix = self.given.kext_prefix.rstrip("/")
                self.kext_pid = self.given.kext_pid
                host, port = url.hostname or "127.0.0.1", url.port or 443
                self.progress.line(f"using kext at {self.given.kext}")
            else:
                self.kext_prefix = f"/kext-bench-{self.run_id}"
                self.kext_process = Kext(self.etcd_endpoint, self.kext_prefix,
                                         workers=self.workers)
                front_proxy = write_front_proxy_files(self.kext_process.directory / "front-proxy",
                                                      FRONT_PROXY_CN)
                self.kext_process.extra_config = kext_auth_config(
                    front_proxy["ca.crt"], FRONT_PROXY_CN, self.given.sar_kubeconfig)
                self.kext_process.start()
                certs = self.kext_process.cert_dir
                self.kext_pid = self.kext_process.pid
                host, port = "127.0.0.1", self.kext_process.port
                self.progress.line(f"started kext at {self.kext_process.url} "
                                   f"(pid {self.kext_pid})")
            context = client_ssl_context(str(certs / "ca.crt"), str(certs / "admin.crt"),
                                         str(certs / "admin.key"))
            self.kext_target = KextTarget(Endpoint(host, port, context), f"bench-{self.run_id}-")
            proxy_dir = (Path(self.given.front_proxy_certs) if self.given.front_proxy_certs
                         else None if self.kext_process is None
                         else self.kext_process.directory / "front-proxy")
            if proxy_dir is not None:
                h2_context = h2_ssl_context(str(certs / "ca.crt"), str(proxy_dir / "client.crt"),
                                            str(proxy_dir / "client.key"))
                self.aggregator_target = KextTarget(
                    Endpoint(host, port, h2_context), f"bench-{self.run_id}-",
                    h2_pool=self.size.h2_pool, headers=AGGREGATED_USER, name="aggregator")
            yield
            finished = True
        finally:
            if self.kext_process is not None:
                process = self.kext_process.process
                if process is not None and process.poll() is not None:
                    self.progress.line(f"kext exited during the run with code "
                                       f"{process.returncode}")
                    finished = False
                self.kext_process.stop()
                if finished:
                    self.kext_process.cleanup()
                else:
                    self.progress.line(f"kext's log is kept: {self.kext_process.log_path}")
            if self.etcd_process is not None:
                self.etcd_process.stop()

    def pids(self) -> dict[str, int | tuple[int, ...] | None]:
        kext: int | tuple[int, ...] | None = self.kext_pid
        if self.kext_process is not None and self.kext_pid:
            kext = (self.kext_pid, *self.kext_process.worker_pids())  # with its workers
        return {"kext": kext, "etcd": self.etcd_pid, "client": os.getpid()}

    def meter(self, kext: Kext | None = None) -> CPUMeter:
        """CPU of kext (the suite's, or the one given: supervisor and workers together, each
        worker also on its own as kext[i]), etcd, the client and the rest of the machine."""
        kext = kext or self.kext_process
        if kext is None or kext.process is None:
            return CPUMeter(self.pids())
        workers = kext.worker_pids()
        return CPUMeter({**self.pids(), "kext": (kext.pid, *workers)},
                        {f"kext[{i}]": pid for i, pid in enumerate(workers)})

    @property
    def kext(self) -> KextTarget:
        assert self.kext_target is not None
        return self.kext_target

    @property
    def etcd(self) -> EtcdTarget:
        assert self.etcd_target is not None
        return self.etcd_target

    @property
    def client(self) -> EtcdClient:
        assert self.etcd_client is not None
        return self.etcd_client

    @property
    def kext_watch_prefix(self) -> str:
        """The etcd key prefix of kext's Widgets (namespace and name follow)."""
        return f"{self.kext_prefix}/{GROUP}/{PLURAL}/"

    def kext_key(self, namespace: str, name: str = "") -> bytes:
        """The etcd key kext keeps a Widget of (bench) namespace under."""
        full = self.kext.namespace_prefix + namespace
        return f"{self.kext_prefix}/{GROUP}/{PLURAL}/{full}/{name}".encode()

    # -- the run

    async def run(self) -> dict[str, Any]:
        self.results = {"meta": self.meta(), "client": {}, "memory": {}, "scenarios": [],
                        "watch": {}}
        self.results["meta"]["only"] = list(self.only)
        self.etcd_client = EtcdClient([self.etcd_endpoint])
        await self.etcd_client.connect()
        self.etcd_target = EtcdTarget(self.etcd_client, f"/kext-bench-raw-{self.run_id}/")
        try:
            await self.kext.check()
            if self.wanted("client"):
                await self.client_ceiling()
            else:
                self.results["meta"]["config"] = self._config()
            available = await self.watch_available()
            if self.wanted("memory"):
                await self.memory(available)  # writes the large list's objects too
            elif self.wanted("requests") or self.wanted("workers"):
                await self.seed_large_list()
            if self.wanted("requests") or self.wanted("workers"):
                await self.seed()
            if self.wanted("requests"):
                await self.request_scenarios()
            if self.wanted("watch"):
                await self.fanout(available)
            if self.wanted("workers"):
                await self.workers_scenarios()
        finally:
            await self.cleanup()
            await self.etcd_client.close()
        self.results["meta"]["wall_seconds"] = round(time.monotonic() - self.progress.start, 1)
        return self.results

    def meta(self) -> dict[str, Any]:
        def version(package: str) -> str:
            try:
                return importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                return "not installed"

        def git(*args: str) -> str:
            try:
                return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                      text=True, timeout=10).stdout.strip()
            except OSError:
                return ""

        cpu_model = ""
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        memory = ""
        with contextlib.suppress(OSError), open("/proc/meminfo") as f:
            memory = f.readline().split(":", 1)[1].strip()
        return {
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "size": asdict(self.size),
            "versions": {
                "python": platform.python_version(),
                **{p: version(p) for p in ("kext", "Twisted", "aetcd", "grpcio", "protobuf",
                                           "orjson", "pyOpenSSL", "cryptography",
                                           "matplotlib")},
                "kext_git": git("rev-parse", "--short", "HEAD")
                + (" (with uncommitted changes)" if git("status", "--porcelain") else ""),
            },
            "machine": {
                "cpu": cpu_model,
                "cpus": os.cpu_count(),
                "cpus_usable": len(os.sched_getaffinity(0)),
                "memory": memory,
                "kernel": platform.release(),
            },
            "config": {},
        }

    def _config(self) -> dict[str, Any]:
        """What the suite ran against, recorded once processes are up."""
        etcd_version = ""
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(
                f"{self.etcd_endpoint}/version", timeout=5) as response:
            etcd_version = orjson.loads(response.read()).get("etcdserver", "")
        config: dict[str, Any] = {
            "etcd": {"endpoint": self.etcd_endpoint, "version": etcd_version,
                     "started_by_suite": self.etcd_process is not None},
            "kext": {"url": f"https://{self.kext.endpoint.authority}",
                     "started_by_suite": self.kext_process is not None,
                     "key_prefix": self.kext_prefix},
            "client": "benchmarks.client: HTTP/1.1 keep-alive over TLS, one connection per "
                      "worker, client certificate auth, one asyncio event loop (this process)",
            "etcd_client": "aetcd gRPC stubs on one channel shared by the workers",
        }
        if self.aggregator_target is not None:
            authz = ("Delegated (SubjectAccessReview)" if self.given.sar_kubeconfig
                     else "AlwaysAllow")
            config["aggregator"] = (
                "benchmarks.h2client: HTTP/2 as Go's transport (4 MiB stream windows, "
                "WINDOW_UPDATE every 4 KiB consumed), the workers' requests multiplexed on "
                f"{self.size.h2_pool} pooled connections (more when kext's "
                "MAX_CONCURRENT_STREAMS needs them), the front-proxy client certificate and "
                f"X-Remote-User/-Group on every request; authorization {authz}; ratios "
                "against the same etcd runs as HTTP/1.1's")
        if self.etcd_process is not None:
            config["etcd"]["flags"] = ("one member, data dir on tmpfs (/dev/shm), "
                                       "--heartbeat-interval 10 --election-timeout 100")
        if self.kext_process is not None:
            config["kext"]["config"] = self.kext_process.config()
        return config

    # -- client ceiling

    async def client_ceiling(self) -> None:
        """The client alone: against a trivial endpoint served by Go (etcd's /version over
        TLS with a client certificate), and against kext's /healthz (the cheapest request
        through kext's TLS, authentication and filter chain)."""
        self.results["meta"]["config"] = self._config()
        trivial = Etcd(tls=True)
        trivial.start()
        try:
            files = trivial.tls_files
            url = urlsplit(trivial.endpoint)
            endpoint = Endpoint("127.0.0.1", url.port or 0,
                                client_ssl_context(files["ca"], files["client_cert"],
                                                   files["client_key"]))
            rows = []
            for level in self.size.levels:
                stats = await self._plain_load(endpoint, "/version", level,
                                               {"server": trivial.pid})
                rows.append({"concurrency": level, **stats})
                self.progress.line(f"client alone  c={level:<4d} trivial TLS  {_fmt(stats)}")
            self.results["client"]["trivial"] = rows
            if self.aggregator_target is not None:
                h2_endpoint = Endpoint("127.0.0.1", url.port or 0, h2_ssl_context(
                    files["ca"], files["client_cert"], files["client_key"]))
                rows = []
                for level in self.size.levels:
                    stats = await self._plain_load(h2_endpoint, "/version", level,
                                                   {"server": trivial.pid}, h2=True)
                    rows.append({"concurrency": level, **stats})
                    self.progress.line(f"client alone  c={level:<4d} trivial h2   "
                                       f"{_fmt(stats)}")
                self.results["client"]["trivial_h2"] = rows
        finally:
            trivial.stop()
        rows = []
        for level in self.size.levels:
            stats = await self._plain_load(self.kext.endpoint, "/healthz", level,
                                           {"kext": self.kext_pid})
            rows.append({"concurrency": level, **stats})
            self.progress.line(f"client alone  c={level:<4d} kext /healthz {_fmt(stats)}")
        self.results["client"]["kext_healthz"] = rows
        if self.aggregator_target is not None:
            rows = []
            for level in self.size.levels:
                # as the aggregator sends every request: kube answers a front-proxy
                # certificate without the identity headers 401, /healthz too
                stats = await self._plain_load(self.aggregator_target.endpoint, "/healthz",
                                               level, {"kext": self.kext_pid}, h2=True,
                                               headers=AGGREGATED_USER)
                rows.append({"concurrency": level, **stats})
                self.progress.line(f"client alone  c={level:<4d} kext h2 /healthz "
                                   f"{_fmt(stats)}")
            self.results["client"]["kext_healthz_h2"] = rows
        self.results["client"]["note"] = (
            "trivial: GET /version over TLS with a client certificate from a TLS etcd "
            "started for this (a Go server, so the client is the limit); kext_healthz: GET "
            "/healthz on kext (TLS, authentication, filters, no storage); *_h2: the same over "
            f"HTTP/2 (benchmarks/h2client.py, c streams on up to {self.size.h2_pool} "
            "connections). The client's own ceiling in any run is its ops/s divided by its "
            "cpu (client_ceiling_ops_per_s in each row).")

    async def _plain_load(self, endpoint: Endpoint, path: str, level: int,
                          server: dict[str, int | None], h2: bool = False,
                          headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        connections: list[Any] = list(
            await open_lanes(endpoint, level, self.size.h2_pool, headers) if h2
            else await open_connections(endpoint, level))
        try:
            async def op(worker: int, seq: int) -> bool:
                response = await connections[worker].request("GET", path)
                return response.status == 200

            await drive(op, level, duration=self.size.warmup)
            meter = CPUMeter({**server, "client": os.getpid()})
            stats = await drive(op, level, duration=self.size.ceiling_duration, meter=meter)
        finally:
            close_all(connections)
        return stats.summary()

    # -- watch availability and memory

    async def watch_available(self) -> bool:
        watchers = watch.KextWatchers(self.kext, self.client, self.kext_watch_prefix, "probe",
                                      1)
        try:
            await watchers.open(timeout=15.0)
        except watch.WatchNotAvailable as exc:
            self.watch_note = str(exc)
            self.progress.line(f"watch not available: {exc}")
            return False
        watchers.close()
        return True

    async def _settled_rss(self, pid: int | None, timeout: float = 10.0) -> int | None:
        """pid's resident size once it stops changing (1 s within 0.5 %), or after timeout."""
        if not pid:
            return None
        samples: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            samples.append(rss_bytes(pid))
            recent = samples[-5:]
            if len(recent) == 5 and max(recent) - min(recent) <= 0.005 * max(recent):
                break
            await asyncio.sleep(0.25)
        return samples[-1]

    async def _write_objects(self, ns: str, n: int) -> float:
        """n Widgets of namespace ns written straight into etcd under kext's keys, seen by
        kext once this returns; returns their mean raw JSON size."""
        full_ns = self.kext.namespace_prefix + ns
        values = [(self.kext_key(ns, f"o{i}"), stored_widget(full_ns, f"o{i}", i))
                  for i in range(n)]
        await put_many(self.client, values)
        await self.kext.sync(ns)  # kext has seen the writes
        return sum(len(v) for _, v in values) / n

    async def seed_large_list(self) -> None:
        """The large list's objects under both targets (what memory() writes as it
        measures)."""
        n = self.size.large_list
        ns = list_namespace(n)
        await self._write_objects(ns, n)
        await put_many(self.client, [(self.etcd.key(ns, f"o{i}"), stored_widget(ns, f"o{i}", i))
                                     for i in range(n)])

    async def memory(self, watch_available: bool) -> None:
        """Resident size per 10,000 stored objects and per 1,000 idle watchers, for kext and
        etcd. The objects are written twice, n at a time, straight into etcd under kext's
        keys: first the large list's, then as many more in a namespace of their own; the
        second batch is the figure (the first also raises each process's allocator to its
        working size: a Python process keeps the memory its transient objects used)."""
        n = self.size.large_list
        ns = list_namespace(n)
        kext_start = await self._settled_rss(self.kext_pid)
        etcd_start = await self._settled_rss(self.etcd_pid)
        raw_json = await self._write_objects(ns, n)
        kext_before = await self._settled_rss(self.kext_pid)
        etcd_before = await self._settled_rss(self.etcd_pid)
        await self._write_objects("memory", n)
        kext_after = await self._settled_rss(self.kext_pid)
        etcd_after = await self._settled_rss(self.etcd_pid)
        count, _ = await self.kext.list_count(ns)
        if count != n:
            raise RuntimeError(f"kext lists {count} of the {n} objects written")
        scale = 10000 / n
        objects: dict[str, Any] = {
            "objects": n,
            "kext_rss_before": kext_before, "kext_rss_after": kext_after,
            "etcd_rss_before": etcd_before, "etcd_rss_after": etcd_after,
            "kext_bytes_per_10k": _delta(kext_before, kext_after, scale),
            "etcd_bytes_per_10k": _delta(etcd_before, etcd_after, scale),
            "kext_first_batch_bytes_per_10k": _delta(kext_start, kext_before, scale),
            "etcd_first_batch_bytes_per_10k": _delta(etcd_start, etcd_before, scale),
            "note": "objects written to etcd directly (kext sees them through its watch, if "
                    "it caches), then a consistent list of one item through kext; resident "
                    "size once settled; the second of two batches of n (the first is "
                    "*_first_batch_*).",
        }
        objects["ratio"] = ratio(objects["kext_bytes_per_10k"], objects["etcd_bytes_per_10k"])
        objects["raw_json_bytes_per_object"] = round(raw_json)
        if objects["kext_bytes_per_10k"] is not None:
            objects["kext_bytes_per_object"] = round(objects["kext_bytes_per_10k"] / 10000)
            objects["kext_per_raw_json"] = ratio(objects["kext_bytes_per_object"], raw_json)
        self.results["memory"]["objects"] = objects
        self.progress.line(f"memory        {n} objects: kext +{_mib(objects['kext_bytes_per_10k'])}"
                           f" etcd +{_mib(objects['etcd_bytes_per_10k'])} per 10k (first "
                           f"batch: kext +{_mib(objects['kext_first_batch_bytes_per_10k'])})")
        await put_many(self.client, [(self.etcd.key(ns, f"o{i}"), stored_widget(ns, f"o{i}", i))
                                     for i in range(n)])

        m = self.size.idle_watchers
        scale = 1000 / m
        watchers_result: dict[str, Any] = {"watchers": m}
        if watch_available:
            before = await self._settled_rss(self.kext_pid)
            kext_watchers = watch.KextWatchers(self.kext, self.client, self.kext_watch_prefix,
                                               "idle", m)
            await kext_watchers.open()
            after = await self._settled_rss(self.kext_pid)
            kext_watchers.close()
            watchers_result["kext_bytes_per_1k"] = _delta(before, after, scale)
        else:
            watchers_result["kext_bytes_per_1k"] = None
            watchers_result["kext_note"] = self.watch_note
        before = await self._settled_rss(self.etcd_pid)
        etcd_watchers = watch.EtcdWatchers(self.client, self.etcd.prefix + "idle/", m)
        await etcd_watchers.open(await self.etcd.current_revision() + 1)
        after = await self._settled_rss(self.etcd_pid)
        await etcd_watchers.close()
        watchers_result["etcd_bytes_per_1k"] = _delta(before, after, scale)
        watchers_result["ratio"] = ratio(watchers_result["kext_bytes_per_1k"],
                                         watchers_result["etcd_bytes_per_1k"])
        watchers_result["note"] = ("kext: one HTTPS connection per watch stream; etcd: one "
                                   "gRPC watch stream per watcher on one channel")
        self.results["memory"]["watchers"] = watchers_result
        self.progress.line(
            f"memory        {m} idle watchers: kext "
            f"{_mib(watchers_result['kext_bytes_per_1k'])} etcd "
            f"{_mib(watchers_result['etcd_bytes_per_1k'])} per 1k")
        if watch_available and self.aggregator_target is not None:
            await self.idle_streams()

    async def idle_streams(self) -> None:
        """Idle HTTP/2 watch streams on the aggregator's path: how many kext holds (every
        one established, and still open once kext's memory has settled) and kext's resident
        size per stream."""
        n = self.size.idle_streams
        target = self.aggregator_target
        assert target is not None
        before = await self._settled_rss(self.kext_pid)
        streams = watch.KextWatchers(target, self.client, self.kext_watch_prefix, "idle-h2", n)
        result: dict[str, Any] = {"streams": n}
        try:
            await streams.open(timeout=120.0)
            after = await self._settled_rss(self.kext_pid)
            result["held"] = sum(1 for c in streams.connections if not c.ended)
            result["connections"] = len({getattr(c, "connection", c)
                                         for c in streams.connections})
            delta = _delta(before, after, 1.0)
            result["kext_bytes_per_stream"] = None if delta is None else round(delta / n)
        except watch.WatchNotAvailable as exc:
            result["held"] = streams.ready
            result["error"] = str(exc)
        finally:
            streams.close()
        self.results["memory"]["idle_h2_streams"] = result
        self.progress.line(f"memory        {n} idle HTTP/2 watch streams: held "
                           f"{result['held']} on {result.get('connections', '?')} connections, "
                           f"kext {result.get('kext_bytes_per_stream')} bytes per stream"
                           + (f"; {result['error']}" if result.get("error") else ""))

    # -- request scenarios

    async def seed(self) -> None:
        """The pool get/update work on and the small list, under both targets."""
        for ns, count, letter in ((POOL, self.size.pool, "p"),
                                  (list_namespace(self.size.small_list), self.size.small_list,
                                   "o")):
            full = self.kext.namespace_prefix + ns
            names = [f"{letter}{i}" for i in range(count)]
            await put_many(self.client, [(self.kext_key(ns, name), stored_widget(full, name, i))
                                         for i, name in enumerate(names)])
            await put_many(self.client, [(self.etcd.key(ns, name), stored_widget(ns, name, i))
                                         for i, name in enumerate(names)])
            listed, _ = await self.kext.list_count(ns)
            if listed != count:
                raise RuntimeError(f"kext lists {listed} of the {count} objects seeded in {ns}")
        self.progress.line(f"seeded        {self.size.pool} objects for get/update, "
                           f"{self.size.small_list} and {self.size.large_list} for lists")

    async def request_scenarios(self) -> None:
        created = Created()
        for scenario in crud_scenarios(self.size.pool, created, self.size.small_list,
                                       self.size.large_list):
            rows = []
            for level in self.size.levels:
                kext_stats = await self._run_kext(scenario, level, self.kext)
                self.progress.line(f"{scenario.name:<18} c={level:<4d} kext {_fmt(kext_stats)}")
                h2_stats = None
                if self.aggregator_target is not None:
                    h2_stats = await self._run_kext(scenario, level, self.aggregator_target)
                    self.progress.line(f"{scenario.name:<18} c={level:<4d} h2   "
                                       f"{_fmt(h2_stats)}")
                etcd_stats = await self._run_etcd(scenario, level)
                r = ratio(kext_stats["ops_per_s"], etcd_stats["ops_per_s"])
                r2 = ratio(h2_stats["ops_per_s"], etcd_stats["ops_per_s"]) if h2_stats else None
                self.progress.line(f"{scenario.name:<18} c={level:<4d} etcd {_fmt(etcd_stats)}"
                                   f"  kext/etcd {r}" + (f" h2/etcd {r2}" if h2_stats else ""))
                row: dict[str, Any] = {
                    "concurrency": level, "kext": kext_stats, "etcd": etcd_stats,
                    "ratio": {
                        "ops_per_s": r,
                        "p50": ratio(kext_stats["p50_ms"], etcd_stats["p50_ms"]),
                        "p99": ratio(kext_stats["p99_ms"], etcd_stats["p99_ms"]),
                    },
                }
                if h2_stats is not None:
                    row["aggregator"] = h2_stats
                    row["aggregator_ratio"] = {
                        "ops_per_s": r2,
                        "p50": ratio(h2_stats["p50_ms"], etcd_stats["p50_ms"]),
                        "p99": ratio(h2_stats["p99_ms"], etcd_stats["p99_ms"]),
                    }
                rows.append(row)
            self.results["scenarios"].append({"name": scenario.name, "title": scenario.title,
                                              "levels": rows})

    def _large(self, scenario: Scenario) -> bool:
        return scenario.name.startswith(f"list-{self.size.large_list}-")

    async def _run_kext(self, scenario: Scenario, level: int,
                        target: KextTarget, other: Kext | None = None) -> dict[str, Any]:
        """scenario at level through target: the suite's kext (or another one, other, whose
        process is metered instead)."""
        connections = await target.connect(level)
        try:
            if scenario.warmup and not self._large(scenario):
                warm = scenario.kext_op(target, connections, level)
                await drive(warm.op, level, duration=self.size.warmup)
            work = scenario.kext_op(target, connections, level)
            profiled = (scenario.name in self.profiled and level == self.profiled_level
                        and other is None)
            suffix = "" if target.name == "kext" else f"-{target.name}"
            label = f"{scenario.name} c={level} {target.name}"
            with self.profiler(f"{scenario.name}-c{level}{suffix}", profiled):
                if other is None:
                    stats = await self._drive(work.op, work.total, level, label)
                else:
                    stats = await drive(work.op, level, duration=self.size.duration,
                                        meter=self.meter(other),
                                        progress=self.progress.ticker(label))
        finally:
            close_all(connections)
        return stats.summary()

    @property
    def profiled_level(self) -> int:
        """The concurrency of the profiled runs: the highest level up to 32."""
        return max([level for level in self.size.levels if level <= 32] or self.size.levels)

    @contextlib.contextmanager
    def profiler(self, name: str, wanted: bool = True) -> Iterator[None]:
        """py-spy on kext for the duration of the block (with --profile, for a wanted run)."""
        if not wanted or self.profile_dir is None or not self.kext_pid:
            yield
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile_dir / f"profile-{name}.txt"
        with Profiler(self.kext_pid, path) as profiler:
            yield
        summary = profiler.summary()
        summary["file"] = path.name
        self.results.setdefault("profiles", {})[name] = summary
        top = ", ".join(f"{area} {pct}%" for area, pct in summary.get("area_self_percent",
                                                                        [])[:5])
        self.progress.line(f"profiled      {name}: {summary.get('samples', 0)} samples; "
                           f"{top or summary.get('error', '')}")

    async def _run_etcd(self, scenario: Scenario, level: int) -> dict[str, Any]:
        if scenario.warmup and not self._large(scenario):
            warm = scenario.etcd_op(self.etcd, level)
            await drive(warm.op, level, duration=self.size.warmup)
        work = scenario.etcd_op(self.etcd, level)
        stats = await self._drive(work.op, work.total, level, f"{scenario.name} c={level} etcd")
        return stats.summary()

    async def _drive(self, op: Any, total: int | None, level: int, label: str) -> Stats:
        return await drive(op, level, duration=None if total is not None else self.size.duration,
                           total=total, meter=self.meter(), progress=self.progress.ticker(label))

    # -- watch fan-out

    async def fanout(self, available: bool) -> None:
        rate, duration = self.size.watch_rate, self.size.watch_duration
        section: dict[str, Any] = {
            "available": available, "note": self.watch_note, "write_rate": rate,
            "write_seconds": duration, "levels": [],
            "method": "a writer creates objects at a steady rate (through kext, over the "
                      "path measured; for etcd, directly in etcd); delivery latency = watcher "
                      "reads the event - writer about to write it",
        }
        self.results["watch"] = section
        paths = [self.kext] if available else []
        if available and self.aggregator_target is not None:
            paths.append(self.aggregator_target)
        # the writer alone: its create p99 with no watchers, per path
        for target in paths:
            alone = await watch.kext_fanout(target, self.client, self.kext_watch_prefix,
                                            f"fanout-0-{target.name}", 0, rate, duration,
                                            self.meter())
            section[f"writer_alone_{target.name}"] = alone.summary()
            self.progress.line(f"watch writer alone {target.name}: create p99 "
                               f"{alone.summary()['writer_p99_ms']} ms")
        largest = max(self.size.watchers)
        for n in self.size.watchers:
            row: dict[str, Any] = {"watchers": n, "kext": None}
            for target in paths:
                key = target.name
                suffix = "" if key == "kext" else f"-{key}"
                result = await watch.kext_fanout(
                    target, self.client, self.kext_watch_prefix,
                    f"fanout-{n}-{key}", n, rate, duration, self.meter(),
                    self.profiler(f"watch-fanout-{n}{suffix}", n == largest))
                row[key] = result.summary()
                if key == "aggregator":
                    row["aggregator_connections"] = len(result.connections)
                self.progress.line(f"watch fan-out N={n:<5d} {key:<4.4s} "
                                   f"{_fmt_watch(row[key])}")
            etcd_result = await watch.etcd_fanout(self.client, self.etcd.prefix, f"fanout-{n}",
                                                  n, rate, duration, self.meter())
            row["etcd"] = etcd_result.summary()
            self.progress.line(f"watch fan-out N={n:<5d} etcd {_fmt_watch(row['etcd'])}")
            for key, name in (("kext", "ratio"), ("aggregator", "aggregator_ratio")):
                if row.get(key) is not None:
                    row[name] = {
                        "events_per_s": ratio(row[key]["events_per_s"],
                                              row["etcd"]["events_per_s"]),
                        "p50": ratio(row[key]["p50_ms"], row["etcd"]["p50_ms"]),
                        "p99": ratio(row[key]["p99_ms"], row["etcd"]["p99_ms"]),
                    }
            section["levels"].append(row)

    # -- workers

    async def workers_scenarios(self) -> None:
        """get and create at each concurrency through a kext with serving.workers 1, 2 and
        auto (one per core), each started for it on a key prefix of its own, beside the
        etcd figures of the same run (SPEC section 9, "workers")."""
        if self.given.kext:
            return
        etcd = {(s["name"], row["concurrency"]): row["etcd"]
                for s in self.results["scenarios"] for row in s["levels"]}
        section: dict[str, Any] = {"counts": [1, 2, "auto"], "runs": [], "note": (
            "each count on a kext of its own (its own key prefix and pool); cpu kext = the "
            "supervisor and its workers together, kext[i] = worker i alone")}
        self.results["workers"] = section
        scenarios = [s for s in crud_scenarios(self.size.pool, Created(), self.size.small_list,
                                               self.size.large_list)
                     if s.name in ("create", "get")]
        for workers in section["counts"]:
            prefix = f"{self.kext_prefix}-workers-{workers}"
            kext = Kext(self.etcd_endpoint, prefix, workers=workers)
            kext.start()
            try:
                certs = kext.cert_dir
                target = KextTarget(Endpoint("127.0.0.1", kext.port, client_ssl_context(
                    str(certs / "ca.crt"), str(certs / "admin.crt"), str(certs / "admin.key"))),
                    self.kext.namespace_prefix)
                pool = target.namespace_prefix + POOL
                await put_many(self.client, [
                    (f"{prefix}/{GROUP}/{PLURAL}/{pool}/p{i}".encode(),
                     stored_widget(pool, f"p{i}", i)) for i in range(self.size.pool)])
                await target.sync(POOL)
                self.progress.line(f"workers {workers}: kext pid {kext.pid}, workers "
                                   f"{kext.worker_pids() or 'none (serves itself)'}")
                for scenario in scenarios:
                    for level in self.size.levels:
                        stats = await self._run_kext(scenario, level, target, kext)
                        base = etcd.get((scenario.name, level), {})
                        r = ratio(stats["ops_per_s"], base.get("ops_per_s"))
                        self.progress.line(f"{scenario.name:<7} workers {workers!s:<4} "
                                           f"c={level:<4d} kext {_fmt(stats)}  kext/etcd {r}")
                        section["runs"].append({"workers": workers, "scenario": scenario.name,
                                                "concurrency": level, "kext": stats,
                                                "ratio_to_etcd": r})
            finally:
                kext.stop()
                kext.cleanup()
                with contextlib.suppress(Exception):
                    await delete_prefix(self.client, f"{prefix}/")

    # -- cleanup

    async def cleanup(self) -> None:
        """Remove what the run wrote (matters when the endpoints were given)."""
        if self.etcd_client is None or self.kext_target is None:
            return
        with contextlib.suppress(Exception):
            await delete_prefix(self.etcd_client, self.etcd.prefix)
            await delete_prefix(self.etcd_client,
                                f"{self.kext_prefix}/{GROUP}/{PLURAL}/{self.kext.namespace_prefix}")


def _delta(before: int | None, after: int | None, scale: float) -> int | None:
    if before is None or after is None:
        return None
    return int((after - before) * scale)


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1024 / 1024:.1f} MiB"


def _fmt_watch(s: dict[str, Any]) -> str:
    cpu = " ".join(f"{k} {v:.2f}" for k, v in s.get("cpu_cores", {}).items())
    writer = f"  create p99 {s['writer_p99_ms']} ms" if s.get("writer_p99_ms") else ""
    return (f"{s['events_per_s']:9.1f} events/s  delivered {s['delivered_events']}/"
            f"{s['expected_events']}  p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms"
            f"{writer}  cpu[{cpu}]")
