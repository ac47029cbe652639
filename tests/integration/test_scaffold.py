"""`kext init`, `kext create resource` and `kext docs` as a new user runs them: the project
checks, serves on its embedded etcd (driven with kubectl), passes its own test the way its
README says to run it, and its API reference renders in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kext_process import REPO, KextProcess, free_port, wait_until_ready

KEXT = [sys.executable, "-m", "kext"]
BACKUP = """
apiVersion: ops.example.com/v1
kind: Backup
metadata:
  name: nightly
spec:
  summary: nightly-db
"""
WEBSITE = """
apiVersion: web.example.com/v1alpha1
kind: Website
metadata:
  name: {name}
spec:
  replicas: {replicas}
"""


def kext(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*KEXT, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"kext {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by `kext init`, with a resource added by `kext create resource`."""
    base = tmp_path_factory.mktemp("scaffold")
    kext("init", "shop", "--domain", "example.com", cwd=base)
    root = base / "shop"
    created = kext("create", "resource", "--group", "ops", "--version", "v1", "--kind",
                   "Backup", "--status", "--hooks", cwd=root)
    assert created.stdout.splitlines()[:3] == [
        "created resources/backups.yaml: CustomResourceDefinition backups.ops.example.com "
        "(kind Backup, version v1, Namespaced; status subresource)",
        "created backup_hooks.py: defaulting and validation hooks, named in the CRD's "
        "kext.io/hooks annotation",
        "updated server.yaml: resources now lists resources/backups.yaml",
    ]
    checked = kext("check", "--config", "server.yaml", cwd=root)
    assert checked.stdout == "ok: 2 resources (websites.web.example.com, backups.ops.example.com)\n"
    return root


@pytest.fixture
def served(project: Path) -> Iterator[KextProcess]:
    """`kext --config server.yaml` in the project, on its embedded etcd; the port is the only
    edit (8443 may be taken on a shared machine)."""
    config = project / "server.yaml"
    original = config.read_text()
    port = free_port()
    config.write_text(original.replace("\n  port: 8443\n", f"\n  port: {port}\n", 1))
    log_path = project / "kext.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*KEXT, "--config", "server.yaml"], cwd=project,
                                   stdout=log, stderr=subprocess.STDOUT)
    server = KextProcess(project / "var", f"https://127.0.0.1:{port}", process, log_path)
    try:
        wait_until_ready(server, timeout=60)
        yield server
    finally:
        server.stop()
        config.write_text(original)


def test_the_project_serves_on_its_embedded_etcd(served: KextProcess) -> None:
    assert served.kubeconfig == str(served.workdir / "certs/kubeconfig")  # var/certs/kubeconfig
    empty = served.kubectl("get", "backups")
    assert "No resources found in default namespace." in empty.stderr + empty.stdout
    created = served.kubectl("create", "-f", "-", input=BACKUP)
    assert created.stdout.strip() == "backup.ops.example.com/nightly created"
    table = served.kubectl("get", "backups").stdout.splitlines()
    assert table[0].split() == ["NAME", "SUMMARY", "PHASE", "AGE"]
    assert table[1].split()[:2] == ["nightly", "nightly-db"]
    got = json.loads(served.kubectl("get", "backup", "nightly", "-o", "json").stdout)
    assert got["spec"] == {"summary": "nightly-db"}
    assert got["metadata"]["generation"] == 1

    # the init example: its hooks and printer columns, through kubectl
    refused = served.kubectl("create", "-f", "-", check=False,
                             input=WEBSITE.format(name="big", replicas=3))
    assert refused.returncode != 0
    assert "free websites run at most 2 replicas" in refused.stderr
    served.kubectl("create", "-f", "-", input=WEBSITE.format(name="blog", replicas=2))
    sites = served.kubectl("get", "ws").stdout.splitlines()
    assert sites[0].split() == ["NAME", "HOST", "TIER", "REPLICAS", "PHASE", "AGE"]
    assert sites[1].split()[:4] == ["blog", "blog.example.com", "free", "2"]


def test_the_projects_own_test_passes_as_its_readme_says(project: Path) -> None:
    readme = (project / "README.md").read_text()
    run, test = re.findall(r"```sh\n(.*?)\n```", readme, re.S)[:2]
    assert run == "kext --config server.yaml"
    # "in the Python environment where kext is installed": this one, first on PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(test, shell=True, cwd=project, env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^4 passed", result.stdout.splitlines()[-1]), result.stdout


class _Text(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.feed(html)

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def _field_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every field of a schema, dotted, `[*]` for list items."""
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path
        yield from _field_paths(child, f"{path}.")
        items = child.get("items")
        if isinstance(items, dict):
            yield from _field_paths(items, f"{path}[*].")


def test_the_api_reference_renders_in_chromium(project: Path, tmp_path: Path) -> None:
    crd_files = sorted((REPO / "config/resources").glob("*.yaml")) + sorted(
        (project / "resources").glob("*.yaml"))
    config = tmp_path / "server.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
        "resources": [{"file": str(path)} for path in crd_files]}))
    kext("docs", "--config", str(config), "--out", "docs", cwd=tmp_path)
    page = (tmp_path / "docs/index.html").read_text()
    text = "".join(_Text(page).chunks)
    for path in crd_files:
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        version = crd["spec"]["versions"][0]
        assert f"{kind}{crd['spec']['group']}/{version['name']}" in text  # the heading
        fields = list(_field_paths(version["schema"]["openAPIV3Schema"]))
        assert len(fields) >= 4
        missing = [field for field in fields if field not in text]
        assert not missing, f"{path.name}: fields missing from the page: {missing}"
        for column in version["additionalPrinterColumns"]:
            assert column["jsonPath"] in text
    assert "!self.enabled || has(self.secretName)" in text  # the example's CEL rule
    assert "tls.secretName is required when tls.enabled is true" in text

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (`apt-get install chromium`; .ci/run installs "
                    "it): the page was checked, not rendered")
    png = tmp_path / "docs.png"
    # Tall enough for the whole page (headless Chromium shoots the window, not the page).
    height = 600 + 900 * page.count('<section class="kind"') + 50 * page.count("<tr")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'chromium'}", f"--window-size=1280,{height}",
         f"--screenshot={png}", (tmp_path / "docs/index.html").as_uri()],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, height)
    assert len(data) > 100_000, "the screenshot is nearly blank"
