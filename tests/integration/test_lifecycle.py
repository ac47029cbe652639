"""kext's life as an operator sees it: the embedded default, SIGTERM, and etcd going away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
import yaml

from tests.etcd import EtcdServer
from tests.kext_process import REPO, free_port, start_kext


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_embedded_default_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """The shape of config/server.yaml (no endpoints: embedded etcd), on ports of its own."""
    config = yaml.safe_load((REPO / "config/server.yaml").read_text())
    port = free_port()
    config["serving"]["port"] = port
    config["serving"]["certDir"] = str(tmp_path / "certs")
    config["storage"]["embedded"] = {"dataDir": str(tmp_path / "etcd")}
    config["resources"] = [{"file": str(REPO / "config/resources/widgets.yaml")}]
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "kext.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "kext", "--config", str(path)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"https://127.0.0.1:{port}"
    ca = str(tmp_path / "certs" / "ca.crt")

    def ready() -> bool:
        if not os.path.exists(ca):
            return False
        try:
            return requests.get(f"{url}/readyz?verbose", verify=ca, timeout=2).ok
        except requests.RequestException:
            return False

    try:
        _wait_for(ready, 60, "kext on embedded etcd to be ready")
        verbose = requests.get(f"{url}/readyz?verbose", verify=ca, timeout=5).text
        assert "[+]etcd ok" in verbose
        kubeconfig = str(tmp_path / "certs" / "kubeconfig")
        listed = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "widgets"],
                                capture_output=True, text=True, timeout=30)
        assert "No resources found" in listed.stderr
        etcd_pids = _children(process.pid)
        assert etcd_pids, "the embedded etcd runs as kext's child"
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(30) == 0
        _wait_for(lambda: not any(_alive(p) for p in etcd_pids), 15, "embedded etcd to stop")
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    output = (tmp_path / "kext.log").read_text()
    assert "kext is serving widgets.example.kext.io" in output
    assert "Traceback" not in output


def test_etcd_outage_fails_readyz_and_kext_recovers(
    make_etcd: Callable[..., EtcdServer], tmp_path: Path
) -> None:
    etcd = make_etcd()
    kext = start_kext(tmp_path, etcd.endpoint)
    http = kext.session()
    widgets = f"{kext.url}/apis/example.kext.io/v1alpha1/namespaces/default/widgets"
    body = {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": "before"}, "spec": {"size": 1}}
    try:
        assert http.post(widgets, json=body).status_code == 201
        etcd.stop()

        def readyz_fails() -> bool:
            return http.get(f"{kext.url}/readyz", timeout=10).status_code == 500

        _wait_for(readyz_fails, 30, "readyz to fail without etcd")
        assert "[-]etcd failed" in http.get(f"{kext.url}/readyz?verbose", timeout=10).text
        down = http.post(widgets, json={**body, "metadata": {"name": "during"}}, timeout=30)
        assert down.status_code in (503, 504), down.text
        assert down.json()["kind"] == "Status"

        etcd.start()
        _wait_for(lambda: http.get(f"{kext.url}/readyz", timeout=10).status_code == 200, 30,
                  "readyz to pass again")
        assert http.get(f"{widgets}/before").status_code == 200
        after = http.post(widgets, json={**body, "metadata": {"name": "after"}}, timeout=30)
        assert after.status_code == 201
    finally:
        code = kext.stop()
    assert code == 0  # SIGTERM: a clean stop
