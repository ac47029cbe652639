"""The processes under test: an etcd and a kext started (and stopped) by the benchmark, and
what /proc says about any process (resident size, CPU time)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kext.certs import issue_cert, new_ca
from kext.storage.embedded import HOST, die_with_parent, etcd_command, find_etcd_binary, free_port

REPO = Path(__file__).resolve().parent.parent
WIDGETS = REPO / "config" / "resources" / "widgets.yaml"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory, in memory (/dev/shm) when possible."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def rss_bytes(pid: int) -> int:
    """The resident set size of pid, from /proc/<pid>/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (all CPUs, all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time pid has used so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after timeout."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Etcd:
    """A one-member etcd on free loopback ports, its data in memory (/dev/shm).

    With tls, it serves https and requires a client certificate: the benchmark uses such an
    etcd's /version as the trivial endpoint that measures the client alone."""

    tls: bool = False
    endpoint: str = ""
    process: subprocess.Popen[bytes] | None = None
    directory: Path = field(default_factory=lambda: scratch_dir("kext-bench-etcd-"))
    tls_files: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        client_port, peer_port = free_port(), free_port()
        tls = None
        if self.tls:
            self.tls_files = write_tls_files(self.directory / "tls")
            tls = (self.tls_files["client_ca"], self.tls_files["server_cert"],
                   self.tls_files["server_key"])
        args = etcd_command(
            find_etcd_binary(), name="bench", data_dir=str(self.directory / "data"),
            client_port=client_port, peer_port=peer_port, tls=tls,
            # A one-member cluster elects itself after one election timeout: keep it short.
            extra=("--heartbeat-interval", "10", "--election-timeout", "100",
                   "--quota-backend-bytes", str(8 * 1024**3)),
        )
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://{HOST}:{client_port}"
        log = open(self.directory / "etcd.log", "wb")  # noqa: SIM115 - lives with the process
        # Never outlive the benchmark, even when it is killed.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True, preexec_fn=die_with_parent())
        log.close()
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}: "
                                   f"{(self.directory / 'etcd.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not become healthy within {timeout}s")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        context = None
        url = f"{self.endpoint}/health"
        if self.tls_files:  # /version answers once the listener is up
            context = ssl.create_default_context(cafile=self.tls_files["ca"])
            context.load_cert_chain(self.tls_files["client_cert"], self.tls_files["client_key"])
            url = f"{self.endpoint}/version"
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


def write_tls_files(directory: Path) -> dict[str, str]:
    """A serving CA + serving certificate for 127.0.0.1 and a client CA + client certificate,
    made as kext makes its self-signed material (ECDSA P-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, client_ca = new_ca("bench-ca"), new_ca("bench-client-ca")
    server = issue_cert(ca, "bench", hosts=[HOST, "localhost"])
    client = issue_cert(client_ca, "bench-client", client=True)
    files = {name: str(directory / name) for name in (
        "ca", "server_cert", "server_key", "client_ca", "client_cert", "client_key")}
    Path(files["ca"]).write_bytes(ca.cert_pem)
    Path(files["client_ca"]).write_bytes(client_ca.cert_pem)
    server.write(files["server_cert"], files["server_key"])
    client.write(files["client_cert"], files["client_key"])
    return files


def write_front_proxy_files(directory: Path, common_name: str) -> dict[str, str]:
    """The aggregator's front-proxy material as a cluster has it: a CA (kube's
    requestheader-client-ca-file) and the client certificate kube-apiserver proxies with
    (--proxy-client-cert-file, CN front-proxy-client): ca.crt, client.crt, client.key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca("bench-front-proxy-ca")
    client = issue_cert(ca, common_name, client=True)
    files = {name: str(directory / name) for name in ("ca.crt", "client.crt", "client.key")}
    Path(files["ca.crt"]).write_bytes(ca.cert_pem)
    client.write(files["client.crt"], files["client.key"])
    return files


def kext_auth_config(front_proxy_ca: str, allowed_name: str,
                     sar_kubeconfig: str = "") -> dict[str, Any]:
    """server.yaml's authentication (and, with a kubeconfig, Delegated authorization) for
    the aggregator's path: the front-proxy CA and the name its certificate must carry."""
    config: dict[str, Any] = {"authentication": {"requestHeader": {
        "clientCAFile": front_proxy_ca, "allowedNames": [allowed_name]}}}
    if sar_kubeconfig:
        config["authorization"] = {"mode": "Delegated"}
        config["kubernetes"] = {"kubeconfig": sar_kubeconfig}
    return config


@dataclass
class Kext:
    """A kext process started with `python -m kext --config <file>` against etcd."""

    etcd_endpoint: str
    prefix: str
    directory: Path = field(default_factory=lambda: scratch_dir("kext-bench-kext-"))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    workers: int | str = 1  # serving.workers: N or "auto"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The worker processes of a kext with workers (none when it serves itself)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        with contextlib.suppress(OSError):
            return [int(p) for p in children.read_text().split()]
        return []

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def cert_dir(self) -> Path:
        return self.directory / "certs"

    @property
    def log_path(self) -> Path:
        return self.directory / "kext.log"

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "apiVersion": "kext.io/v1alpha1",
            "kind": "ServerConfig",
            "serving": {"bindAddress": HOST, "port": self.port, "certDir": str(self.cert_dir)},
            "storage": {"prefix": self.prefix, "etcd": {"endpoints": [self.etcd_endpoint]}},
            "resources": [{"file": str(WIDGETS)}],
        }
        if self.workers != 1:
            config["serving"]["workers"] = self.workers
        config.update(self.extra_config)
        return config

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        path = self.directory / "server.yaml"
        path.write_text(yaml.safe_dump(self.config()))
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kext", "--config", str(path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True, preexec_fn=die_with_parent(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kext exited with {self.process.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            if (self.cert_dir / "admin.key").exists():
                context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
                context.load_cert_chain(str(self.cert_dir / "admin.crt"),
                                        str(self.cert_dir / "admin.key"))
                try:
                    with urllib.request.urlopen(f"{self.url}/readyz", timeout=2,
                                                context=context) as response:
                        # with workers: once every one serves (the supervisor then says so)
                        if response.status == 200 and (
                                self.workers == 1
                                or "workers (pids" in self.log_path.read_text(errors="replace")):
                            return
                except (OSError, urllib.error.URLError):
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kext did not become ready within {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
