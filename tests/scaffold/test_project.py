"""`kext init`: the project it writes is valid as written, and nothing is overwritten."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from kext.cli import main
from kext.config import load_config
from kext.scaffold import ScaffoldError, init_project
from tests.kext_process import REPO

FILES = ["server.yaml", "resources/websites.yaml", "website_hooks.py",
         "tests/test_websites.py", "README.md", "PROJECT", ".gitignore"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my-api"
    init_project(root, "example.com")
    return root


def _hooks(root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("website_hooks", root / "website_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_writes_the_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "my-api"
    assert main(["init", str(root), "--domain", "example.com"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:len(FILES)] == [f"created {root / name}" for name in FILES]
    assert out[len(FILES):] == [
        f"next: cd {root} && kext --config server.yaml",
        f"then, in another terminal in {root}: kubectl --kubeconfig var/certs/kubeconfig "
        "get websites",
        f"test: cd {root} && python3 -m pytest -q",
    ]
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == \
        sorted(FILES)
    assert yaml.safe_load((root / "PROJECT").read_text()) == {
        "domain": "example.com", "projectName": "my-api"}
    assert (root / ".gitignore").read_text().splitlines()[1] == "var/"


def test_server_yaml_is_the_embedded_default(project: Path) -> None:
    """Every line of config/server.yaml but its header comment and its resources, so the
    project keeps up with the embedded default."""
    def body(text: str) -> list[str]:
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
        return [line for line in lines[start:] if not line.startswith("  - file: ")]

    generated = (project / "server.yaml").read_text()
    assert body(generated) == body((REPO / "config/server.yaml").read_text())
    assert yaml.safe_load(generated)["resources"] == [{"file": "resources/websites.yaml"}]
    assert generated.startswith("# my-api: `kext --config server.yaml`, run in this directory")


def test_the_project_checks_as_written(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)  # its paths are relative to the project directory
    config = load_config("server.yaml")
    [website] = config.resources
    assert website.name == "websites.web.example.com"
    assert website.hooks == {"defaulting": ("website_hooks:default_host",),
                             "validation": ("website_hooks:free_websites_are_small",)}
    version = website.storage_version
    assert version.status_subresource
    assert [c.name for c in version.printer_columns] == [
        "Host", "Tier", "Replicas", "Phase", "Age"]
    tls = version.schema["properties"]["spec"]["properties"]["tls"]
    assert tls["x-kubernetes-validations"] == [{
        "rule": "!self.enabled || has(self.secretName)",
        "message": "tls.secretName is required when tls.enabled is true"}]
    assert config.storage.etcd.endpoints == []  # the embedded etcd
    assert (config.serving.cert_dir, config.storage.embedded.data_dir) == (
        "var/certs", "var/etcd")


def test_the_hooks_default_and_validate(project: Path) -> None:
    hooks = _hooks(project)
    site = {"metadata": {"name": "blog"}, "spec": {"tier": "free", "replicas": 1}}
    hooks.default_host(site, None)
    assert site["spec"]["host"] == "blog.example.com"
    assert hooks.free_websites_are_small(site, None) == []
    site["spec"]["replicas"] = 3
    assert hooks.free_websites_are_small(site, None) == [
        "free websites run at most 2 replicas; set spec.tier to pro for more"]
    site["spec"]["tier"] = "pro"
    assert hooks.free_websites_are_small(site, None) == []


def test_the_generated_python_is_lint_clean(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
         str(REPO / "pyproject.toml"), str(project)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_never_overwrites(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "README.md").write_text("mine\n")
    with pytest.raises(ScaffoldError) as error:
        init_project(root, "example.com")
    assert error.value.problems == [
        f"{root / 'README.md'}: already exists; kext does not overwrite files"]
    assert [p.name for p in root.iterdir()] == ["README.md"]
    assert (root / "README.md").read_text() == "mine\n"


def test_init_checks_the_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "p"), "--domain", "Example.com"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("--domain 'Example.com': a lowercase RFC 1123 subdomain")
    assert not (tmp_path / "p").exists()
