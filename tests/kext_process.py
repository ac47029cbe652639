"""A real kext process for integration tests: its own config, port, certificates and etcd key
prefix, started with `python -m kext` and stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
RESOURCES = [REPO / "config/resources/widgets.yaml", REPO / "config/resources/gadgets.yaml"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KextProcess:
    """A started kext. `url`, `kubeconfig` and `session()` reach it as the admin user."""

    workdir: Path
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def cert_dir(self) -> Path:
        return self.workdir / "certs"

    @property
    def ca_file(self) -> str:
        return str(self.cert_dir / "ca.crt")

    @property
    def kubeconfig(self) -> str:
        return str(self.cert_dir / "kubeconfig")

    @property
    def admin_cert(self) -> tuple[str, str]:
        return str(self.cert_dir / "admin.crt"), str(self.cert_dir / "admin.key")

    def session(self) -> requests.Session:
        """A requests session that trusts kext's CA and presents the admin certificate."""
        session = requests.Session()
        session.verify = self.ca_file
        session.cert = self.admin_cert
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        return session

    def kubectl(self, *args: str, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this kext with its kubeconfig."""
        result = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=input, capture_output=True, text=True, timeout=60,
            env={**os.environ, "KUBECACHEDIR": str(self.workdir / "kubecache")},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def write_config(workdir: Path, port: int, etcd_endpoint: str, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "kext.io/v1alpha1",
        "kind": "ServerConfig",
        "serving": {"bindAddress": "127.0.0.1", "port": port,
                    "certDir": str(workdir / "certs")},
        "storage": {"prefix": f"/kext-test-{uuid.uuid4().hex[:8]}",
                    "etcd": {"endpoints": [etcd_endpoint]}},
        "resources": [{"file": str(p)} for p in RESOURCES],
    }
    for key, value in overrides.items():
        if key in ("serving", "storage") and isinstance(value, dict):
            config[key] = {**config[key], **value}  # a section's other keys stay
        else:
            config[key] = value
    path = workdir / "server.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_kext(workdir: Path, etcd_endpoint: str, timeout: float = 30.0,
               **overrides: Any) -> KextProcess:
    """Start kext on a free port and wait until /readyz answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(workdir, port, etcd_endpoint, **overrides)
    log_path = workdir / "kext.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "kext", "--config", str(config)],
        stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO,
    )
    kext = KextProcess(workdir, f"https://127.0.0.1:{port}", process, log_path)
    wait_until_ready(kext, timeout)
    return kext


def wait_until_ready(kext: KextProcess, timeout: float = 30.0) -> None:
    """Poll a started kext until /readyz answers 200; stop it and fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kext.process.poll() is not None:
            raise RuntimeError(f"kext exited with {kext.process.returncode}:\n{kext.log()}")
        if os.path.exists(kext.kubeconfig):  # written last of the certificates
            try:
                if kext.session().get(f"{kext.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.1)
    kext.stop()
    raise RuntimeError(f"kext did not become ready in {timeout}s:\n{kext.log()}")


def status_of(response: requests.Response) -> dict[str, Any]:
    """The Status body of an error response (asserting it is one)."""
    body = json.loads(response.content)
    assert body["kind"] == "Status", body
    return body
