"""Hostile and malformed requests against a real kext on a real etcd: each class answers what
kube-apiserver answers (a clear 4xx; the few 5xx are kube's own, cited), never a hang or a
silent close, and kext serves normally afterwards (each group ends with a health check and a
create and get).

Where kube's answer comes from (k8s.io/apiserver, k8s.io/apimachinery, Go's net/http; the
snapshot read for this is the kubernetes/apiserver and kubernetes/apimachinery default
branches of July 2026, Go 1.27):

- body nested past the limit: 400 "exceeded max depth" (kube at 10000, kext at 100).
  Source: apimachinery pkg/util/json (maxDepth), yaml.v2 scannerc.go (max_flow_level);
  handlers/create.go transformDecodeError.
- YAML `!!int x` and other misfit core tags: 400 "cannot decode !!str `x` as a !!int".
  Source: yaml.v2 resolve.go resolve(); sigs.k8s.io/yaml YAMLToJSON.
- YAML unknown tags (`!foo`, `!!set`): ignored: the node's plain value.
  Source: yaml.v2 resolve.go resolvableTag().
- YAML number of thousands of digits: a string (then 422 where the schema wants an integer);
  `!!int` of it 400.
  Source: yaml.v2 resolve.go (ParseInt, ParseUint, ParseFloat fail: string).
- YAML .inf/.nan: 400 "json: unsupported value".
  Source: sigs.k8s.io/yaml YAMLToJSON (json.Marshal).
- YAML alias bomb: 400 (kube: "excessive aliasing"; kext refuses every alias).
  Source: yaml.v2 decode.go allowedAliasRatio.
- `limit`, `timeoutSeconds`, `gracePeriodSeconds` not an int64: 400 `strconv.ParseInt: parsing
  "…": value out of range`.
  Source: apimachinery pkg/runtime/conversion.go Convert_Slice_string_To_int64 (first value),
  handlers/get.go listOpts (NewBadRequest).
- `resourceVersion` not a uint64: 400 "invalid resource version: …".
  Source: apiserver pkg/storage/interfaces.go ValidateListOptions, api_object_versioner.go
  ParseResourceVersion.
- `resourceVersion` ahead of etcd (past int64 too): 504 Timeout "Too large resource version".
  Source: apiserver pkg/storage/errors.go NewTooLargeResourceVersionError.
- continue token with rv past int64: 400 "continue key is not valid: json: cannot unmarshal
  number …".
  Source: apiserver pkg/storage/continue.go DecodeContinue.
- JSON patch path without "/": 422 Invalid "… doc is missing path".
  Source: handlers/patch.go applyJSPatch (NewGenericServerResponse 422); evanphx/json-patch
  findObject.
- JSON patch path "/a~9": applied: "~9" is a literal (field "a~9").
  Source: evanphx/json-patch decodePatchKey.
- JSON patch of > 10000 operations: 413.
  Source: handlers/patch.go maxJSONPatchOperations.
- DeleteOptions field of the wrong type: 400 `json: cannot unmarshal string into Go struct field
  DeleteOptions.dryRun of type []string`.
  Source: handlers/delete.go DeleteResource (NewBadRequest of the decode error); body or query,
  never both.
- apply with `spec: 5` / undeclared field: 500, no reason, "failed to create typed patch object
  …" (kube's own 500: kubernetes#139253 and #122480 open).
  Source: apimachinery managedfields/internal/structuredmerge.go Apply;
  responsewriters/status.go ErrorToAPIStatus.
- create with a numeric metadata.resourceVersion: 500, no reason, "resourceVersion should not be
  set on objects to be created"; a non-numeric one is dropped (201).
  Source: apiserver pkg/storage/etcd3/store.go Create (ErrResourceVersionSetOnCreate,
  PrepareObjectForStorage).
- object too big for etcd: 500, no reason, "etcdserver: request is too large" (kube retries once
  without managedFields).
  Source: handlers/rest.go isTooLargeError, create.go/update.go; ErrorToAPIStatus.
- write whose answer was lost (connection reset mid-transaction): 500, no reason, the gRPC
  error; never 503.
  Source: apiserver pkg/storage/etcd3/store.go Create/GuaranteedUpdate return the client error;
  ErrorToAPIStatus.
- header block > 1 MiB (+4 KiB), > 500 lines: 431 "431 Request Header Fields Too Large", close.
  Source: Go net/http server.go (MaxHeaderBytes 1<<20 in secure_serving.go,
  DefaultMaxHeaderValueCount).
- absurd Content-Length: kube reads up to the 3 MiB limit, then 413 "Request entity too large:
  limit is 3145728"; kext answers it at once.
  Source: handlers/rest.go limitedReadBody.
- bad chunk size: kube: 500 from the handler's body read (ErrorToAPIStatus); kext: 400 and
  close, as Go answers every other framing error.
  Source: Go net/http transfer.go; handlers/create.go.
- bare CR, binary garbage, missing Host: 400 "400 Bad Request", close.
  Source: Go net/http server.go readRequest.
- headers dribbled slowly: closed without an answer after ReadHeaderTimeout (32 s).
  Source: secure_serving.go ReadHeaderTimeout; net/http isCommonNetReadError.
- POST/PUT/PATCH/DELETE on /watch/: 405 MethodNotAllowed "the server does not allow this method
  on the requested resource" (an aggregated server's go-restful routes; kube's own CRD handler
  would open a watch).
  Source: apiserver pkg/server/handler.go serviceErrorHandler.
- watch `timeoutSeconds` negative / repeated: no validation: a negative timeout has passed (the
  watch ends at once); the first value counts.
  Source: handlers/get.go handleWatch; conversion.go.
- HTTP/2 header list too large: Go: 431 on the stream; kext (h2): GOAWAY ENHANCE_YOUR_CALM past
  h2's 64 KiB.
  Source: golang.org/x/net/http2 server; python-h2.

Not here: a watch open at SIGTERM ending without the chunked terminator (graceful shutdown's).
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
import requests
import yaml

from tests import fuzz
from tests.etcd import EtcdServer
from tests.kext_process import (
    RESOURCES,
    KextProcess,
    free_port,
    status_of,
    wait_until_ready,
    write_config,
)

GROUP = "/apis/example.kext.io/v1alpha1"
BLOBS = "/apis/example.kext.io/v1"

# A resource that keeps whatever it is given, so deep values reach every walk kext has
# (prune, default, validate, CEL, the field manager, encoding, Table).
BLOB_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: blobs.example.kext.io}
spec:
  group: example.kext.io
  names: {kind: Blob, listKind: BlobList, plural: blobs, singular: blob}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
              x-kubernetes-validations:
                - {rule: "!has(self.forbidden)", message: "forbidden is forbidden"}
      additionalPrinterColumns:
        - {name: A, type: string, jsonPath: .spec.a}
"""


def start(workdir: Path, endpoint: str, read_header_timeout: str = "1s") -> KextProcess:
    """A kext serving widgets, gadgets and blobs, closing header-less connections after
    read_header_timeout."""
    workdir.mkdir(parents=True, exist_ok=True)
    crd = workdir / "blobs.yaml"
    crd.write_text(BLOB_CRD)
    port = free_port()
    config = write_config(workdir, port, endpoint,
                          resources=[{"file": str(p)} for p in [*RESOURCES, crd]])
    document = yaml.safe_load(config.read_text())
    document["serving"]["readHeaderTimeout"] = read_header_timeout
    config.write_text(yaml.safe_dump(document))
    log_path = workdir / "kext.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([sys.executable, "-m", "kext", "--config", str(config)],
                               stdout=log_file, stderr=subprocess.STDOUT,
                               cwd=Path(__file__).resolve().parents[2])
    kext = KextProcess(workdir, f"https://127.0.0.1:{port}", process, log_path)
    wait_until_ready(kext)
    return kext


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    process = start(tmp_path_factory.mktemp("hostile"), etcd_server.endpoint)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def http(kext: KextProcess) -> requests.Session:
    return kext.session()


@pytest.fixture
def ns() -> str:
    return f"h-{uuid.uuid4().hex[:8]}"


def widgets(kext: KextProcess, ns: str) -> str:
    return f"{kext.url}{GROUP}/namespaces/{ns}/widgets"


def blobs(kext: KextProcess, ns: str) -> str:
    return f"{kext.url}{BLOBS}/namespaces/{ns}/blobs"


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": 1, **spec}}


def blob(name: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1", "kind": "Blob", "metadata": {"name": name},
            "spec": spec}


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def assert_serving(kext: KextProcess) -> None:
    """kext is healthy and serves a normal create and get."""
    session = kext.session()
    assert session.get(f"{kext.url}/readyz", timeout=10).status_code == 200
    name = f"ok-{uuid.uuid4().hex[:8]}"
    base = widgets(kext, "serving")
    assert session.post(base, json=widget(name), timeout=10).status_code == 201
    got = session.get(f"{base}/{name}", timeout=10)
    assert got.status_code == 200 and got.json()["spec"]["size"] == 1


def message(response: requests.Response) -> str:
    text: str = status_of(response)["message"]
    return text


# -- deep nesting


def test_bodies_nested_past_the_limit_are_400(kext: KextProcess, http: requests.Session,
                                              ns: str) -> None:
    base = blobs(kext, ns)
    deep = blob("deep", nested(150))
    as_json = http.post(base, json=deep)
    assert as_json.status_code == 400
    assert message(as_json).endswith("exceeded max depth of 100")
    as_yaml = http.post(base, data=yaml.safe_dump(deep),
                        headers={"Content-Type": "application/yaml"})
    assert as_yaml.status_code == 400
    assert "exceeded max depth of 100" in message(as_yaml)
    flow = "apiVersion: example.kext.io/v1\nkind: Blob\nmetadata: {name: f}\nspec: {a: "
    very_deep = http.post(base, data=flow + "[" * 5000 + "]" * 5000 + "}",
                          headers={"Content-Type": "application/yaml"})
    assert very_deep.status_code == 400
    assert http.post(base, json=blob("base", {"a": 1})).status_code == 201
    merge = http.patch(f"{base}/base", json={"spec": nested(150)},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert merge.status_code == 400
    assert message(merge) == "error decoding patch: exceeded max depth of 100"
    json_patch = http.patch(f"{base}/base", data=json.dumps(
        [{"op": "add", "path": "/spec/b", "value": nested(150)}]),
        headers={"Content-Type": "application/json-patch+json"})
    assert json_patch.status_code == 400
    apply = http.patch(f"{base}/base", data=json.dumps(blob("base", nested(150))),
                       params={"fieldManager": "t"},
                       headers={"Content-Type": "application/apply-patch+yaml"})
    assert apply.status_code == 400
    assert_serving(kext)


def test_json_patches_cannot_build_an_object_past_the_limit(
        kext: KextProcess, http: requests.Session, ns: str) -> None:
    base = blobs(kext, ns)
    assert http.post(base, json=blob("tower", nested(60))).status_code == 201
    # each patch is shallow enough; the object it would make is not
    path = "/spec" + "/a" * 60
    patch = [{"op": "add", "path": path, "value": nested(60)}]
    refused = http.patch(f"{base}/tower", data=json.dumps(patch),
                         headers={"Content-Type": "application/json-patch+json"})
    assert refused.status_code == 422
    assert status_of(refused)["reason"] == "Invalid"
    assert "exceeded max depth of 100" in message(refused)
    assert_serving(kext)


def test_the_deepest_accepted_object_survives_every_path(
        kext: KextProcess, http: requests.Session, ns: str) -> None:
    """An object just inside the limit goes through create, get, list, Table, watch,
    update, merge patch, JSON patch and apply: no walk of kext's runs out of stack."""
    base = blobs(kext, ns)
    spec = nested(96, "leaf")
    created = http.post(base, json=blob("edge", spec))
    assert created.status_code == 201, created.text
    assert http.get(f"{base}/edge").json()["spec"] == spec
    assert http.get(base).json()["items"][0]["spec"] == spec
    table = http.get(base, headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert table.status_code == 200
    current = http.get(f"{base}/edge").json()
    current["spec"]["b"] = 1
    assert http.put(f"{base}/edge", json=current).status_code == 200
    assert http.patch(f"{base}/edge", json={"spec": {"c": nested(90)}}, headers={
        "Content-Type": "application/merge-patch+json"}).status_code == 200
    assert http.patch(f"{base}/edge", data=json.dumps(
        [{"op": "add", "path": "/spec/d", "value": nested(90)}]),
        headers={"Content-Type": "application/json-patch+json"}).status_code == 200
    applied = http.patch(f"{base}/edge", data=json.dumps(blob("edge", nested(96, "x"))),
                         params={"fieldManager": "deep", "force": "true"},
                         headers={"Content-Type": "application/apply-patch+yaml"})
    assert applied.status_code == 200, applied.text
    with http.get(base, params={"watch": "1", "timeoutSeconds": "1"}, stream=True) as watch:
        first = json.loads(next(watch.iter_lines()))
    assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "edge"
    assert_serving(kext)


# -- YAML as kube decodes it


@pytest.mark.parametrize(("value", "tag"), [("!!int x", "int"), ("!!float x", "float"),
                                            ("!!bool x", "bool"), ("!!null x", "null"),
                                            ("!!timestamp x", "timestamp")])
def test_yaml_core_tags_with_misfit_values_are_400(kext: KextProcess, http: requests.Session,
                                                   ns: str, value: str, tag: str) -> None:
    body = f"apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata: {{name: t}}\n" \
           f"spec: {{size: {value}}}\n"
    response = http.post(widgets(kext, ns), data=body,
                         headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400
    assert message(response).endswith(f"cannot decode !!str `x` as a !!{tag}")


def test_yaml_decodes_to_json_as_yaml_v2_does(kext: KextProcess, http: requests.Session,
                                              ns: str) -> None:
    base = blobs(kext, ns)
    digits = "1" * 5000  # past Python's int-string limit
    body = ("apiVersion: example.kext.io/v1\nkind: Blob\nmetadata: {name: v2}\nspec:\n"
            f"  huge: {digits}\n  tagged: !foo bar\n  set: !!set {{a}}\n  yes: on\n"
            "  hex: 0x1F\n  big: 9223372036854775808\n  when: 2001-12-14\n"
            "  bin: !!binary aGVsbG8=\n  time: 1:30\n")
    created = http.post(base, data=body, headers={"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    assert spec == {"huge": digits, "tagged": "bar", "set": {"a": None}, "true": True,
                    "hex": 31, "big": 9.223372036854776e18, "when": "2001-12-14",
                    "bin": "hello", "time": "1:30"}
    # a number kube's YAML cannot hold is a string, which the schema refuses
    size = http.post(widgets(kext, ns), data=(
        "apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata: {name: s}\n"
        f"spec: {{size: {digits}}}\n"), headers={"Content-Type": "application/yaml"})
    assert size.status_code == 422
    assert "must be of type integer" in message(size)
    tagged = http.post(base, data=f"spec: !!int {digits}\n",
                       headers={"Content-Type": "application/yaml"})
    assert tagged.status_code == 400
    assert "as a !!int" in message(tagged)
    infinite = http.post(base, data="spec: {a: .inf}\n",
                         headers={"Content-Type": "application/yaml"})
    assert infinite.status_code == 400
    assert message(infinite).endswith("json: unsupported value: +Inf")
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n"
    aliased = http.post(base, data=bomb, headers={"Content-Type": "application/yaml"})
    assert aliased.status_code == 400
    assert "aliases are not accepted" in message(aliased)
    assert_serving(kext)


# -- numbers out of range


def test_list_parameters_are_int64(kext: KextProcess, http: requests.Session,
                                   ns: str) -> None:
    base = widgets(kext, ns)
    limit = http.get(base, params={"limit": "99999999999999999999"})
    assert limit.status_code == 400
    assert message(limit) == \
        'strconv.ParseInt: parsing "99999999999999999999": value out of range'
    syntax = http.get(base, params={"limit": "ten"})
    assert message(syntax) == 'strconv.ParseInt: parsing "ten": invalid syntax'
    assert http.get(base, params={"limit": "9223372036854775807"}).status_code == 200
    timeout = http.get(base, params={"timeoutSeconds": "soon"})
    assert timeout.status_code == 400
    rv = http.get(base, params={"resourceVersion": "99999999999999999999",
                                "resourceVersionMatch": "Exact"})
    assert rv.status_code == 400
    assert message(rv) == (
        'invalid resource version: resourceVersion: Invalid value: "99999999999999999999": '
        'strconv.ParseUint: parsing "99999999999999999999": value out of range')
    ahead = http.get(base, params={"resourceVersion": str(2**63),
                                   "resourceVersionMatch": "Exact"})
    assert ahead.status_code == 504
    assert status_of(ahead)["reason"] == "Timeout"
    assert message(ahead).startswith(f"Timeout: Too large resource version: {2**63}, current: ")
    grace = http.delete(f"{base}/nothing", params={"gracePeriodSeconds": str(2**64)})
    assert grace.status_code == 400
    assert "value out of range" in message(grace)
    assert_serving(kext)


def test_continue_tokens_with_revisions_past_int64_are_400(
        kext: KextProcess, http: requests.Session, ns: str) -> None:
    def token(rv: int) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": "x"}).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    past = http.get(widgets(kext, ns), params={"limit": "1", "continue": token(2**63)})
    assert past.status_code == 400
    assert message(past) == ("invalid continue token: continue key is not valid: json: cannot "
                             f"unmarshal number {2**63} into Go struct field continueToken.rv of "
                             "type int64")
    below = http.get(widgets(kext, ns), params={"limit": "1", "continue": token(-(2**64))})
    assert below.status_code == 400
    assert_serving(kext)


# -- JSON patch pointers, DeleteOptions


def test_json_patch_pointers_as_kube_reads_them(kext: KextProcess, http: requests.Session,
                                                ns: str) -> None:
    base = widgets(kext, ns)
    assert http.post(base, json=widget("p")).status_code == 201
    headers = {"Content-Type": "application/json-patch+json"}
    relative = http.patch(f"{base}/p", json=[{"op": "add", "path": "spec", "value": 1}],
                          headers=headers)
    assert relative.status_code == 422
    assert status_of(relative)["reason"] == "Invalid"
    assert message(relative).endswith('add operation does not apply: doc is missing path: '
                                      '"spec"')
    root = http.patch(f"{base}/p", json=[{"op": "replace", "path": "", "value": {}}],
                      headers=headers)
    assert root.status_code == 422
    tilde = http.patch(f"{base}/p", json=[{"op": "add", "path": "/spec/a~9", "value": 1}],
                       headers=headers)
    assert tilde.status_code == 200  # a literal "~9": the unknown field is pruned, with word
    assert 'unknown field \\"spec.a~9\\"' in tilde.headers.get("Warning", "")
    missing = http.patch(f"{base}/p", json=[{"op": "replace", "path": "/spec/no/x",
                                              "value": 1}], headers=headers)
    assert missing.status_code == 422
    too_many = http.patch(f"{base}/p", json=[{"op": "test", "path": "/spec", "value": {}}]
                          * 10001, headers=headers)
    assert too_many.status_code == 413
    assert "The allowed maximum operations in a JSON patch is 10000, got 10001" in \
        message(too_many)
    assert_serving(kext)


@pytest.mark.parametrize(("body", "expected"), [
    ({"dryRun": "All"},
     "json: cannot unmarshal string into Go struct field DeleteOptions.dryRun of type "
     "[]string"),
    ({"dryRun": [5]},
     "json: cannot unmarshal number 5 into Go struct field DeleteOptions.dryRun of type "
     "string"),
    ({"gracePeriodSeconds": "x"},
     "json: cannot unmarshal string into Go struct field DeleteOptions.gracePeriodSeconds of "
     "type int64"),
    ({"preconditions": [1]},
     "json: cannot unmarshal array into Go struct field DeleteOptions.preconditions of type "
     "v1.Preconditions"),
    ({"orphanDependents": "yes"},
     "json: cannot unmarshal string into Go struct field DeleteOptions.orphanDependents of "
     "type bool"),
    ([1], "json: cannot unmarshal array into Go value of type v1.DeleteOptions"),
])
def test_delete_options_of_the_wrong_type_are_400(kext: KextProcess, http: requests.Session,
                                                  ns: str, body: Any, expected: str) -> None:
    base = widgets(kext, ns)
    assert http.post(base, json=widget("d")).status_code == 201
    response = http.delete(f"{base}/d", json=body)
    assert response.status_code == 400
    assert message(response) == expected
    assert http.get(f"{base}/d").status_code == 200  # not deleted


def test_delete_options_come_from_the_body_when_there_is_one(
        kext: KextProcess, http: requests.Session, ns: str) -> None:
    base = widgets(kext, ns)
    assert http.post(base, json=widget("d")).status_code == 201
    assert http.delete(f"{base}/d", json={"dryRun": ["All"]}).status_code == 200
    assert http.get(f"{base}/d").status_code == 200  # a dry run
    assert_serving(kext)


# -- server-side apply and create, where kube answers 500 itself


def test_apply_of_misfit_values_is_kubes_500(kext: KextProcess, http: requests.Session,
                                             ns: str) -> None:
    """kube (as of 2026) answers these with a 500 of no reason: structuredmerge.go returns
    a plain error (kubernetes/kubernetes#139253, #122480 still open)."""
    base = widgets(kext, ns)
    headers = {"Content-Type": "application/apply-patch+yaml"}
    for spec, problem in [("5", ".spec: expected map, got &value.valueUnstructured{Value:5}"),
                          ("{bogus: 1}", ".spec.bogus: field not declared in schema")]:
        body = f"apiVersion: example.kext.io/v1alpha1\nkind: Widget\nmetadata: {{name: a}}\n" \
               f"spec: {spec}\n"
        response = http.patch(f"{base}/a", data=body, params={"fieldManager": "t"},
                              headers=headers)
        assert response.status_code == 500
        status = status_of(response)
        assert status.get("reason", "") == ""
        assert status["message"] == ("failed to create typed patch object (/a; "
                                     f"example.kext.io/v1alpha1, Kind=Widget): {problem}")
    assert_serving(kext)


def test_create_with_a_resource_version(kext: KextProcess, http: requests.Session,
                                        ns: str) -> None:
    base = widgets(kext, ns)
    for i, rv in enumerate(["abc", "-1", "1.5", str(2**64)]):  # unparsable: dropped, as kube
        body = widget(f"rv{i}")
        body["metadata"]["resourceVersion"] = rv
        created = http.post(base, json=body)
        assert created.status_code == 201, (rv, created.text)
    body = widget("numeric")
    body["metadata"]["resourceVersion"] = "5"
    refused = http.post(base, json=body)
    assert refused.status_code == 500  # kube's ErrResourceVersionSetOnCreate, no reason
    assert message(refused) == "resourceVersion should not be set on objects to be created"
    assert_serving(kext)


# -- too big for etcd


def test_objects_too_big_for_etcd_are_not_an_outage(kext: KextProcess,
                                                    http: requests.Session, ns: str) -> None:
    base = blobs(kext, ns)
    # etcd's --max-request-bytes is 1.5 MiB: below kext's 3 MiB body limit
    for size in (1_600_000, 2_500_000):
        response = http.post(base, json=blob(f"big{size}", {"x": "a" * size}))
        assert response.status_code == 500
        assert message(response) == "etcdserver: request is too large"
        assert "Retry-After" not in response.headers
    assert http.get(f"{kext.url}/readyz").status_code == 200
    over = http.post(base, data=b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}')
    assert over.status_code == 413
    assert message(over) == "Request entity too large: limit is 3145728"
    assert_serving(kext)


# -- a write whose answer is lost


class CuttingProxy:
    """A TCP proxy to etcd that, once armed with a marker, cuts the connection that carried
    a write containing it: after etcd has committed it (the marker comes back in a watch
    event) and before kext has read etcd's answer (held back, then dropped)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.marker = b""
        self.cut = threading.Event()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sent_marker = False
        held = b""
        held_since = 0.0
        try:
            while not self._stop:
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                if sent_marker and held_since and time.monotonic() - held_since > 5:
                    break  # never came back on this connection: cut anyway
                for sock in readable:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    if sock is client:
                        if self.marker and self.marker in data and not self.cut.is_set():
                            sent_marker = True
                            held_since = time.monotonic()
                        upstream.sendall(data)
                    elif sent_marker:
                        held += data
                        if self.marker in held:
                            return  # committed: cut before kext reads the answer
                    else:
                        client.sendall(data)
        finally:
            if sent_marker:
                self.marker = b""
                self.cut.set()
            client.close()
            upstream.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()


def test_a_write_whose_answer_is_lost_is_not_reported_as_not_applied(
        etcd_server: EtcdServer, tmp_path: Path) -> None:
    host, port = etcd_server.endpoint.rsplit("//", 1)[1].split(":")
    proxy = CuttingProxy((host, int(port)))
    kext = start(tmp_path / "kext", f"http://127.0.0.1:{proxy.port}")
    try:
        http = kext.session()
        base = widgets(kext, "lost")
        name = f"lost-{uuid.uuid4().hex}"
        proxy.marker = name.encode()
        response = http.post(base, json=widget(name), timeout=30)
        assert proxy.cut.is_set()
        assert response.status_code == 500  # kube's answer; never 503 "not applied"
        assert "Retry-After" not in response.headers
        assert "the write may or may not have been applied" in message(response)
        assert f"get widgets.example.kext.io {name} to see whether it was" in message(response)
        # etcd had committed it: it is there once kext reconnects
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = http.get(f"{base}/{name}", timeout=10)
            if got.status_code == 200:
                break
            time.sleep(0.1)
        assert got.status_code == 200
        assert_serving(kext)
    finally:
        kext.stop()
        proxy.close()


# -- the connection: Go's limits


def tls_socket(kext: KextProcess, alpn: str = "http/1.1") -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=kext.ca_file)
    context.load_cert_chain(*kext.admin_cert)
    context.set_alpn_protocols([alpn])
    port = int(kext.url.rsplit(":", 1)[1])
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                               server_hostname="127.0.0.1")


def exchange(kext: KextProcess, data: bytes, wait: float = 5.0) -> tuple[bytes, bool, float]:
    """Send data on a fresh TLS connection; (what came back, whether kext closed the
    connection, seconds until then)."""
    sock = tls_socket(kext)
    sock.settimeout(wait)
    started = time.monotonic()
    received = b""
    closed = False
    try:
        sock.sendall(data)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            received += chunk
    except (TimeoutError, ConnectionResetError, BrokenPipeError, ssl.SSLError):
        closed = not isinstance(sys.exc_info()[1], TimeoutError)
    finally:
        sock.close()
    return received, closed, time.monotonic() - started


HOST = b"Host: kext\r\n"


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET / HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * (1100 * 1024) + b"\r\n\r\n",
     b"431 Request Header Fields Too Large"),
    (b"GET /" + b"a" * (1100 * 1024) + b" HTTP/1.1\r\n" + HOST + b"\r\n",
     b"431 Request Header Fields Too Large"),
    (b"GET / HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: v\r\n" % i for i in range(600))
     + b"\r\n", b"431 Request Header Fields Too Large"),
    (b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 1000000000000\r\n\r\n",
     b"413 Request Entity Too Large"),
    (b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 99999999999999999999999\r\n\r\n",
     b"400 Bad Request"),
    (b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", b"400 Bad Request"),
    (b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\rb\r\n\r\n", b"400 Bad Request"),
    (bytes(range(256)) * 4, b"400 Bad Request"),
    (b"GET / HTTP/1.1\r\n\r\n", b"400 Bad Request: missing required Host header"),
])
def test_requests_go_would_refuse_get_its_answer_and_a_close(
        kext: KextProcess, request_bytes: bytes, status: bytes) -> None:
    received, closed, seconds = exchange(kext, request_bytes)
    assert received.startswith(b"HTTP/1.1 " + status + b"\r\n"), received[:200]
    assert b"Connection: close" in received
    assert closed and seconds < 4


def test_long_request_lines_and_headers_within_go_limits_are_served(
        kext: KextProcess) -> None:
    for data in (b"GET /" + b"a" * 16000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
                 b"GET /readyz HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 900_000
                 + b"\r\n\r\n",
                 b"GET /readyz HTTP/1.1\n" + HOST.replace(b"\r", b"") + b"\n"):  # bare LF
        received, _, _ = exchange(kext, data, wait=2)
        assert received.split(b"\r\n", 1)[0] in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK")
    assert_serving(kext)


def test_slow_clients_are_dropped_after_the_read_header_timeout(kext: KextProcess) -> None:
    """readHeaderTimeout is 1 s here (kube's 32 s by default): connections still dribbling
    their headers, or sending nothing at all, are closed without an answer."""
    dribblers = [tls_socket(kext) for _ in range(20)]
    silent = tls_socket(kext)
    started = time.monotonic()
    request = b"GET /readyz HTTP/1.1\r\n" + HOST + b"X-Slow: " + b"a" * 200
    open_ones = list(dribblers)
    for i in range(40):
        for sock in list(open_ones):
            try:
                sock.sendall(request[i:i + 1])
            except OSError:
                open_ones.remove(sock)
        if not open_ones:
            break
        time.sleep(0.1)
    for sock in [*dribblers, silent]:
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            assert sock.recv(100) == b""  # closed, no answer
        sock.close()
    assert time.monotonic() - started < 8
    assert_serving(kext)


def test_http2_header_lists_past_the_limit_end_the_connection_cleanly(
        kext: KextProcess) -> None:
    def request(header_bytes: int) -> list[Any]:
        sock = tls_socket(kext, "h2")
        assert sock.selected_alpn_protocol() == "h2"
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        connection.send_headers(1, [(":method", "GET"), (":path", "/readyz"),
                                    (":scheme", "https"), (":authority", "kext"),
                                    ("x-big", "a" * header_bytes)], end_stream=True)
        seen: list[Any] = []
        sock.settimeout(5)
        try:
            sock.sendall(connection.data_to_send())
            while not any(isinstance(e, (h2.events.StreamEnded,
                                         h2.events.ConnectionTerminated)) for e in seen):
                data = sock.recv(65536)
                if not data:
                    break
                seen.extend(connection.receive_data(data))
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
        finally:
            sock.close()
        return seen

    small = request(100)
    assert any(isinstance(e, h2.events.ResponseReceived) and (b":status", b"200") in e.headers
               for e in small)
    big = request(70_000)
    ended = [e for e in big if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended and ended[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert_serving(kext)


# -- watch paths


def test_watch_paths_take_get_only(kext: KextProcess, http: requests.Session) -> None:
    url = f"{kext.url}{GROUP}/watch/namespaces/default/widgets"
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = http.request(method, url, json={}, timeout=10)
        assert response.status_code == 405
        assert status_of(response)["reason"] == "MethodNotAllowed"
        assert message(response) == \
            "the server does not allow this method on the requested resource"
    assert_serving(kext)


def test_watch_timeouts_as_kube_reads_them(kext: KextProcess, http: requests.Session,
                                           ns: str) -> None:
    base = widgets(kext, ns)
    assert http.post(base, json=widget("w")).status_code == 201
    started = time.monotonic()
    negative = http.get(base, params={"watch": "1", "timeoutSeconds": "-5"}, timeout=10)
    assert negative.status_code == 200  # a timeout that has passed: the watch ends at once
    assert time.monotonic() - started < 3
    started = time.monotonic()
    repeated = http.get(f"{base}?watch=1&timeoutSeconds=1&timeoutSeconds=-5", timeout=10)
    assert repeated.status_code == 200
    assert b'"ADDED"' in repeated.content  # the first value (1 s) counts
    assert time.monotonic() - started >= 0.9
    bad = http.get(base, params={"watch": "1", "timeoutSeconds": "soon"}, timeout=10)
    assert bad.status_code == 400
    assert message(bad) == 'strconv.ParseInt: parsing "soon": invalid syntax'
    assert_serving(kext)


# -- property-based, from kext's own OpenAPI document


def test_generated_hostile_requests_get_no_5xx(kext: KextProcess,
                                               http: requests.Session) -> None:
    """A few hundred requests from kext's OpenAPI v3 document, spoiled (tests/fuzz.py;
    `python -m tests.fuzz` runs thousands)."""
    document = fuzz.openapi_document(http, kext.url, "example.kext.io/v1alpha1")
    report = fuzz.fuzz(http, kext.url, document, examples=300, seconds=25, seed=0)
    assert report.cases >= 50
    assert report.failures == [], report.failures[:5]
    assert_serving(kext)
