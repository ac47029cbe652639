"""What a new user meets in the first minutes, on real kext processes: the README's "Try it"
walkthrough run as written, stopping kext however it was started, status lines with their
reason phrases, and error texts in kube's words (no Python in them)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.etcd import EtcdServer
from tests.kext_process import (
    REPO,
    KextProcess,
    free_port,
    start_kext,
    wait_until_ready,
    write_config,
)

README = REPO / "README.md"
KEXT = Path(sys.executable).parent / "kext"


def walkthrough() -> str:
    """The fenced shell block of the README's "Try it" section, as written."""
    text = README.read_text()
    section = text[text.index("## Try it"):]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start:section.index("```", start)]


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_readme_walkthrough_runs_in_order_as_written(tmp_path: Path) -> None:
    """The README's commands, run in order by bash (`set -euo pipefail`: each must succeed)
    against kext started with the README's command on the shipped config/server.yaml, in a
    directory laid out like the repository (config/ is the repository's, var/ is fresh). The
    one substitution: the port 8443, in server.yaml and in the commands, becomes a free port,
    so the test runs beside anything else on the machine. KUBECACHEDIR keeps kubectl's cache
    in the test's directory."""
    port = free_port()
    config = tmp_path / "config"
    config.mkdir()
    for name in ("resources", "examples"):
        (config / name).symlink_to(REPO / "config" / name)
    server_yaml = (REPO / "config/server.yaml").read_text()
    assert "port: 8443" in server_yaml
    (config / "server.yaml").write_text(server_yaml.replace("port: 8443", f"port: {port}"))
    script = walkthrough()
    assert "8443" in script
    script = script.replace("8443", str(port))

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["KUBECACHEDIR"] = str(tmp_path / "kubecache")
    log = open(tmp_path / "kext.log", "wb")  # noqa: SIM115 - closed below
    kext = subprocess.Popen([str(KEXT), "--config", "config/server.yaml"], cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    ca = tmp_path / "var/certs/ca.crt"

    def ready() -> bool:
        if kext.poll() is not None:
            raise AssertionError((tmp_path / "kext.log").read_text())
        try:
            return ca.exists() and requests.get(f"https://127.0.0.1:{port}/readyz",
                                                verify=str(ca), timeout=2).ok
        except requests.RequestException:
            return False

    try:
        _wait(ready, 60, "kext on the embedded default")
        ran = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=240)
        kext.send_signal(signal.SIGINT)  # the README's Ctrl-C
        assert kext.wait(30) == 0
    finally:
        if kext.poll() is None:
            kext.kill()
        log.close()
    assert ran.returncode == 0, f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
    out = ran.stdout
    assert "No resources found in default namespace." in ran.stderr
    assert "widget.example.kext.io/example created" in out
    tables = [line.split() for line in out.splitlines() if line.startswith("example ")]
    assert tables[0][:3] == ["example", "2", "blue"] and len(tables[0]) == 4  # no PHASE yet
    assert tables[1][:4] == ["example", "2", "blue", "Ready"]
    assert "widget.example.kext.io/example serverside-applied" in out
    assert "manager: kubectl-patch" in out  # the manager the README's conflict names
    assert 'widget.example.kext.io "example" deleted' in out
    assert "[+]etcd ok" in out and "apiserver_request_total" in out
    printed = (tmp_path / "kext.log").read_text()
    kubeconfig = tmp_path / "var/certs/kubeconfig"
    assert f"try: kubectl --kubeconfig {kubeconfig} get widgets" in printed
    assert "Traceback" not in printed


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_background_kext_stops_on_sigint_and_sigterm(
        etcd_server: EtcdServer, tmp_path: Path, signum: signal.Signals) -> None:
    """Started as a script's `kext &` starts it: with SIGINT ignored (inherited SIG_IGN)."""
    port = free_port()
    config = write_config(tmp_path, port, etcd_server.endpoint)
    log_path = tmp_path / "kext.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kext", "--config", str(config)], cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        kext = KextProcess(tmp_path, f"https://127.0.0.1:{port}", process, log_path)
        try:
            wait_until_ready(kext)
            process.send_signal(signum)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert f"{signum.name}: stopping" in kext.log()


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    process = start_kext(tmp_path_factory.mktemp("first"), etcd_server.endpoint)
    yield process
    process.stop()


def test_status_lines_carry_the_standard_reason_phrases(kext: KextProcess) -> None:
    context = ssl.create_default_context(cafile=kext.ca_file)
    context.load_cert_chain(*kext.admin_cert)
    port = int(kext.url.rsplit(":", 1)[1])
    ns = f"t-{uuid.uuid4().hex[:8]}"
    path = f"/apis/example.kext.io/v1alpha1/namespaces/{ns}/widgets"
    answers = []
    for method, body, content_type in [
        ("POST", b'{"apiVersion":"example.kext.io/v1alpha1","kind":"Widget",'
                 b'"metadata":{"name":"w"},"spec":{"size":0}}', "application/json"),
        ("PATCH", b"{}", "application/strategic-merge-patch+json"),
        ("GET", b"", "application/json"),
    ]:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        try:
            target = path if method == "POST" else f"{path}/w"
            connection.request(method, target, body, {"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            answers.append((response.status, response.reason))
        finally:
            connection.close()
    assert answers == [(422, "Unprocessable Entity"), (415, "Unsupported Media Type"),
                       (404, "Not Found")]


def test_a_failing_json_patch_test_is_worded_as_kube_words_it(kext: KextProcess) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    kext.kubectl("create", "-n", ns, "-f", str(REPO / "config/examples/widget.yaml"))
    failed = kext.kubectl("patch", "widget", "example", "-n", ns, "--type", "json", "-p",
                          '[{"op":"test","path":"/spec/size","value":9}]', check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "The request is invalid: the server rejected our request due to an error in our "
        "request: testing value /spec/size failed: test failed")
    removed = kext.kubectl("patch", "widget", "example", "-n", ns, "--type", "json", "-p",
                           '[{"op":"remove","path":"/spec/nothing/here"}]', check=False)
    assert re.search(r'remove operation does not apply: doc is missing path: '
                     r'"/spec/nothing/here": missing value$', removed.stderr.strip())
    assert "<class" not in failed.stderr + removed.stderr

