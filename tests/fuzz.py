"""Property-based hostile requests against a running kext, generated from its own OpenAPI v3
document with hypothesis: every operation kext publishes (path, method, query parameters,
request content types, body schema), with bodies drawn from the body's schema and then
spoiled (wrong types, numbers past int64, deep nesting, long strings, junk bytes, YAML tags),
query parameters drawn from their schema and spoiled the same way. The property: kext never
answers 5xx, except the answers kube itself gives as 500 (see ALLOWED_5XX).

In the test suite a few hundred cases run (tests/integration/test_hostile.py); a larger run
starts its own etcd and kext:

    python -m tests.fuzz --examples 5000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# kube's own 5xx answers to such requests (cited in tests/integration/test_hostile.py):
# server-side apply of a value that does not fit the schema (managedfields
# structuredmerge.go), a create naming a numeric resourceVersion
# (storage.ErrResourceVersionSetOnCreate), and a resourceVersion ahead of storage
# (storage.NewTooLargeResourceVersionError, a 504).
ALLOWED_5XX = ("failed to create typed patch object",
               "resourceVersion should not be set on objects to be created",
               "Too large resource version")

INT64_EDGES = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -1, 0]
HOSTILE_STRINGS = ["", "..", "%2F", "a" * 300, "\u0000", "\ud7ff\ue000", "-1", "1e400",
                   "99999999999999999999", "9223372036854775808", "!!int x", "<<", "~"]
NAMES = ["fuzz-a", "fuzz-b", "Fuzz_Bad", "a" * 254, "x.y", "-", "..", "%00"]


@dataclass
class Case:
    method: str
    path: str
    query: list[tuple[str, str]]
    content_type: str | None
    body: bytes | None
    accept: str | None


@dataclass
class Report:
    cases: int = 0
    by_code: dict[int, int] = field(default_factory=dict)
    failures: list[tuple[Case, int, str]] = field(default_factory=list)


# -- strategies from the OpenAPI schema


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 20:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"].get(name, {})
        seen += 1
    if schema.get("allOf"):
        schema = {**_resolve(doc, schema["allOf"][0]),
                  **{k: v for k, v in schema.items() if k != "allOf"}}
    return schema


def json_values(depth: int = 3) -> st.SearchStrategy[Any]:
    """Any JSON value, a few levels deep."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=20), st.sampled_from(HOSTILE_STRINGS))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=12 if depth else 1)


def deep(levels: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """Objects or arrays nested `levels` deep (around kext's limit of 100)."""
    def build(n: int, as_list: bool) -> Any:
        value: Any = 1
        for _ in range(n):
            value = [value] if as_list else {"a": value}
        return value
    return st.builds(build, levels, st.booleans())


def hostile_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(INT64_EDGES), st.sampled_from(HOSTILE_STRINGS),
        deep(st.integers(90, 130)), json_values(),
        st.text(min_size=1000, max_size=5000), st.floats(-1e308, 1e308),
    )


def from_schema(doc: dict[str, Any], schema: dict[str, Any],
                depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid for schema (a subset of OpenAPI v3), or now and then a hostile one."""
    schema = _resolve(doc, schema)
    valid: st.SearchStrategy[Any]
    kind = schema.get("type")
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        valid = json_values()
    elif "enum" in schema:
        valid = st.sampled_from(schema["enum"])
    elif schema.get("x-kubernetes-int-or-string"):
        valid = st.one_of(st.integers(0, 100), st.text(max_size=10))
    elif kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if depth > 6 or not properties:
            valid = st.dictionaries(st.text(max_size=8), json_values(1), max_size=3)
        else:
            valid = st.fixed_dictionaries({}, optional={
                name: from_schema(doc, sub, depth + 1) for name, sub in properties.items()})
    elif kind == "array":
        valid = st.lists(from_schema(doc, schema.get("items", {}), depth + 1), max_size=3)
    elif kind == "integer":
        valid = st.integers(schema.get("minimum", -1000), schema.get("maximum", 10**6))
    elif kind == "number":
        valid = st.floats(allow_nan=False, allow_infinity=False)
    elif kind == "boolean":
        valid = st.booleans()
    elif kind == "string":
        valid = st.text(max_size=schema.get("maxLength", 30))
    else:
        valid = json_values(1)
    return st.one_of(valid, valid, valid, hostile_value())


def _object(doc: dict[str, Any], schema: dict[str, Any], gvk: dict[str, str] | None,
            name: str) -> st.SearchStrategy[Any]:
    def finish(value: Any, keep_kind: bool) -> Any:
        if isinstance(value, dict) and gvk and keep_kind:
            value.setdefault("apiVersion", f"{gvk['group']}/{gvk['version']}")
            value.setdefault("kind", gvk["kind"])
            metadata = value.setdefault("metadata", {})
            if isinstance(metadata, dict):
                metadata.setdefault("name", name)
        return value
    return st.builds(finish, from_schema(doc, schema), st.booleans())


def _body(value: Any, content_type: str, spoil: int) -> bytes:
    if spoil == 1:
        return b'{"a": [1, 2'  # truncated JSON
    if spoil == 2:
        return bytes(range(256))
    if spoil == 3:
        return b"spec: !!int x\nmetadata: {name: !!float y}\n"
    if "yaml" in content_type and spoil == 4:
        return yaml.safe_dump(value).encode()
    return json.dumps(value, allow_nan=False).encode()


@st.composite
def cases(draw: st.DrawFn, doc: dict[str, Any]) -> Case:
    """One request to one of the document's operations."""
    operations = [(path, method, op, item)
                  for path, item in sorted(doc["paths"].items())
                  for method, op in sorted(item.items())
                  if method in ("get", "post", "put", "patch", "delete")]
    path, method, op, item = draw(st.sampled_from(operations))
    parameters = [*item.get("parameters", []), *op.get("parameters", [])]
    name = draw(st.sampled_from(NAMES))
    concrete = path.replace("{name}", quote(name, safe="")).replace(
        "{namespace}", draw(st.sampled_from(["default", "fuzz", "..", "a" * 70])))
    query: list[tuple[str, str]] = []
    for parameter in parameters:
        if parameter.get("in") != "query" or not draw(st.booleans()):
            continue
        schema = parameter.get("schema", {})
        values = st.one_of(
            st.sampled_from(["true", "false", "All", "Strict", "Warn", "Exact",
                             "NotOlderThan", "Orphan", "0", "1"]),
            st.integers(-(2**70), 2**70).map(str), st.sampled_from(HOSTILE_STRINGS),
            st.text(max_size=20))
        if schema.get("type") == "integer":
            values = st.one_of(st.integers(-5, 100).map(str), values)
        for _ in range(draw(st.integers(1, 2))):  # a parameter repeated now and then
            query.append((parameter["name"], draw(values)))
    content_type = None
    body = None
    content = op.get("requestBody", {}).get("content", {})
    if content:
        content_type = draw(st.sampled_from(sorted(content)))
        schema = content[content_type].get("schema", {})
        gvk = (op.get("x-kubernetes-group-version-kind") or None)
        if content_type == "application/json-patch+json":
            value = draw(st.lists(st.fixed_dictionaries(
                {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test",
                                        "bogus"]),
                 "path": st.sampled_from(["/spec", "/spec/size", "spec", "/a~9", "", "/",
                                          "/metadata/labels/x", "/spec/tags/-", "/status"])},
                optional={"value": hostile_value(), "from": st.sampled_from(["/spec", "x"])}),
                max_size=4))
        else:
            value = draw(_object(doc, schema, gvk, name))
        body = _body(value, content_type, draw(st.integers(0, 12)))
        if draw(st.integers(0, 10)) == 0:
            content_type = draw(st.sampled_from(["text/plain", "application/json;junk",
                                                 "application/strategic-merge-patch+json"]))
    accept = draw(st.sampled_from([
        None, "application/json", "application/yaml",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io", "*/*", "junk/;;"]))
    return Case(method.upper(), concrete, query, content_type, body, accept)


# -- running them


def send(session: requests.Session, base: str, case: Case, timeout: float = 10.0
         ) -> requests.Response:
    headers = {}
    if case.content_type:
        headers["Content-Type"] = case.content_type
    if case.accept:
        headers["Accept"] = case.accept
    query = [*case.query]
    if case.method == "GET":
        # kube reads a parameter's first value: a watch the fuzz opens ends within 1 s
        query.insert(0, ("timeoutSeconds", "1"))
    return session.request(case.method, base + case.path, params=query, data=case.body,
                           headers=headers, timeout=timeout, stream=True)


def fuzz(session: requests.Session, base: str, doc: dict[str, Any], examples: int,
         seconds: float, seed: int | None = None) -> Report:
    """Send up to `examples` generated requests (stopping after `seconds`); every answer
    that is 5xx and not one of kube's own is a failure."""
    report = Report()
    deadline = time.monotonic() + seconds

    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck),
              derandomize=seed is not None)
    @given(cases(doc))
    def check(case: Case) -> None:
        if time.monotonic() > deadline:
            return
        try:
            response = send(session, base, case)
            # read a bounded prefix: a watch streams
            text = response.raw.read(4096, decode_content=True).decode("utf-8", "replace")
            response.close()
        except requests.RequestException as exc:
            report.cases += 1
            report.failures.append((case, 0, f"no answer: {exc}"))
            return
        report.cases += 1
        report.by_code[response.status_code] = report.by_code.get(response.status_code, 0) + 1
        if response.status_code >= 500 and not any(m in text for m in ALLOWED_5XX):
            report.failures.append((case, response.status_code, text[:500]))

    check()
    return report


def openapi_document(session: requests.Session, base: str, group_version: str
                     ) -> dict[str, Any]:
    response = session.get(f"{base}/openapi/v3/apis/{group_version}", timeout=10)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)

    from tests.etcd import EtcdServer, scratch_dir
    from tests.kext_process import start_kext

    data = scratch_dir("kext-fuzz-")
    etcd = EtcdServer(data / "etcd")
    etcd.start()
    kext = start_kext(data / "kext", etcd.endpoint)
    try:
        session = kext.session()
        doc = openapi_document(session, kext.url, "example.kext.io/v1alpha1")
        started = time.monotonic()
        report = fuzz(session, kext.url, doc, args.examples, args.seconds)
        elapsed = time.monotonic() - started
        healthy = session.get(f"{kext.url}/readyz", timeout=10).status_code == 200
    finally:
        kext.stop()
        etcd.stop()
        shutil.rmtree(data, ignore_errors=True)
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(report.by_code.items()))
    print(f"{report.cases} cases in {elapsed:.0f}s ({codes}); "
          f"{len(report.failures)} failures; readyz {'ok' if healthy else 'FAILED'}")
    for case, code, text in report.failures[:20]:
        print(f"  {code} {case.method} {case.path} {case.query} {case.content_type}: "
              f"{(case.body or b'')[:200]!r} -> {text[:300]}")
    return 0 if not report.failures and healthy else 1


if __name__ == "__main__":
    sys.exit(main())

