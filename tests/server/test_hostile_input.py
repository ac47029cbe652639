"""Hostile input in memory, the cheap half of tests/integration/test_hostile.py: bodies decoded
as kube decodes them (bounded nesting, YAML as yaml.v2 and YAMLToJSON make it JSON), query
numbers with kube's bounds, and the HTTP/1.1 channel's Go limits driven over a string
transport with a fake clock."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from kext.api import nesting
from kext.api.errors import StatusError
from kext.api.yamljson import YAMLDecodeError, resolve, yaml_to_json
from kext.server import options
from kext.server.http import KextChannel, make_site
from kext.server.request import BodyDecodeError, Response, decode_json, decode_yaml


def nested(levels: int, as_list: bool = False) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value] if as_list else {"a": value}
    return value


# -- nesting


def test_check_depth_counts_levels_without_recursion() -> None:
    assert nesting.check_depth(nested(99)) == nested(99)  # 99 + the leaf's mapping
    with pytest.raises(nesting.TooDeepError, match="exceeded max depth of 100"):
        nesting.check_depth(nested(101, as_list=True))
    with pytest.raises(nesting.TooDeepError):
        nesting.check_depth(nested(200_000))  # far past Python's recursion limit


def test_integers_past_int64_become_floats_as_kube_decodes_them() -> None:
    value = {"a": [2**63, -(2**63), 2**63 - 1, True]}
    assert nesting.check_depth(value) == {"a": [9.223372036854776e18, -(2**63), 2**63 - 1,
                                                True]}
    assert isinstance(value["a"][1], int) and value["a"][3] is True


def test_managed_fields_are_measured_apart() -> None:
    obj = {"metadata": {"managedFields": [{"fieldsV1": nested(100)}]}, "spec": nested(90)}
    assert nesting.check_object_depth(obj) is obj
    assert obj["metadata"]["managedFields"][0]["fieldsV1"] == nested(100)
    with pytest.raises(nesting.TooDeepError):
        nesting.check_object_depth({"metadata": {"managedFields": [nested(110)]}})


def test_json_bodies() -> None:
    assert decode_json(b'{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(BodyDecodeError, match="exceeded max depth of 100"):
        decode_json(b"[" * 101 + b"]" * 101)
    with pytest.raises(BodyDecodeError, match="exceeded max depth of 100"):
        decode_json(b"[" * 5000 + b"]" * 5000)  # past orjson's own limit too
    assert decode_json(b'{"n": 9223372036854775808}') == {"n": 9.223372036854776e18}
    with pytest.raises(BodyDecodeError):
        decode_json(b'{"n": 1' + b"0" * 400 + b"}")  # no float64 holds it


# -- YAML as yaml.v2 resolves it


@pytest.mark.parametrize(("text", "tag", "value"), [
    ("y", "bool", True), ("Off", "bool", False), ("~", "null", None), ("", "null", None),
    ("0x1F", "int", 31), ("0o17", "int", 15), ("017", "int", 15), ("0b101", "int", 5),
    ("1_000", "int", 1000), ("-0x10", "int", -16), ("019", "float", 19.0),
    ("1e+5", "float", 1e5), ("1e5", "str", "1e5"), (".5", "float", 0.5),
    ("18446744073709551615", "int", 2**64 - 1), ("1" * 5000, "str", "1" * 5000),
    ("1:30", "str", "1:30"), ("2001-12-14", "timestamp", "2001-12-14"), ("<<", "merge", "<<"),
])
def test_plain_scalars_resolve_as_yaml_v2(text: str, tag: str, value: Any) -> None:
    assert resolve(text) == (tag, value)


def test_yaml_documents_become_json() -> None:
    doc = ("a: !!float 1\nb: !foo bar\nc: !!set {x}\nd: !!binary aGk=\n1: one\n"
           "e: {<<: {f: 1}, g: 2}\nh: '1'\nbig: 9223372036854775808\n")
    assert yaml_to_json(doc, 100) == {"a": 1.0, "b": "bar", "c": {"x": None}, "d": "hi",
                                      "1": "one", "e": {"f": 1, "g": 2}, "h": "1",
                                      "big": 9.223372036854776e18}
    assert yaml_to_json("", 100) is None


@pytest.mark.parametrize(("doc", "problem"), [
    ("a: !!int x", "yaml: line 1: cannot decode !!str `x` as a !!int"),
    ("a: !!null 5", "yaml: line 1: cannot decode !!int `5` as a !!null"),
    ("a: !!binary '%%'", "yaml: line 1: !!binary value contains invalid base64 data"),
    ("a: .nan", "json: unsupported value: NaN"),
    ("a: &x 1\nb: *x", "yaml: line 2: aliases are not accepted in request bodies"),
    ("? [a]\n: 1", "yaml: line 1: a mapping key must be a scalar"),
    ("a: 1\n---\nb: 2", "yaml: line 2: expected a single document in the request body"),
    ("a: " + "[" * 101 + "]" * 101, "yaml: exceeded max depth of 100"),
])
def test_yaml_kube_refuses(doc: str, problem: str) -> None:
    with pytest.raises(YAMLDecodeError) as caught:
        yaml_to_json(doc, 100)
    assert str(caught.value) == problem


def test_yaml_bodies_report_kubes_words() -> None:
    with pytest.raises(BodyDecodeError, match=r"^error converting YAML to JSON: yaml: line 1: "
                                              r"cannot decode !!str `x` as a !!bool$"):
        decode_yaml(b"a: !!bool x")
    with pytest.raises(BodyDecodeError, match=r"^error converting YAML to JSON: yaml: line \d+: "):
        decode_yaml(b"a: [1")
    assert decode_yaml(b'{"apiVersion": "v1", "n": 1e5}') == {"apiVersion": "v1", "n": 1e5}
    with pytest.raises(BodyDecodeError, match="exceeded max"):
        decode_yaml(b"a: " + b"[" * 20000)  # libyaml stops it first (or kext does)
    assert math.isfinite(decode_yaml(b"a: 1e+308")["a"])
    with pytest.raises(yaml.YAMLError):
        yaml_to_json("a: [", 100)


# -- query numbers


def test_int64_parameters_in_strconvs_words() -> None:
    assert options.parse_int64("+5") == 5
    assert options.parse_int64(str(-(2**63))) == -(2**63)
    for value, problem in [("2e3", "invalid syntax"), (" 1", "invalid syntax"),
                           (str(2**63), "value out of range"), ("9" * 5000, "value out of range")]:
        with pytest.raises(StatusError) as caught:
            options.parse_int64(value)
        assert caught.value.code == 400
        assert caught.value.message == f'strconv.ParseInt: parsing "{value}": {problem}'


def test_resource_versions_are_uint64() -> None:
    assert options.parse_resource_version("") == 0
    assert options.parse_resource_version(str(2**64 - 1)) == 2**64 - 1
    for value in ("-1", "1.5", "\u0661", str(2**64)):
        with pytest.raises(StatusError) as caught:
            options.parse_resource_version(value)
        assert caught.value.code == 400
        assert caught.value.message.startswith("invalid resource version: resourceVersion: ")


# -- the HTTP/1.1 channel


async def _never(request: Any) -> Response:
    raise AssertionError("no request should reach the handler")


def connect(clock: Clock, read_header_timeout: float = 32.0) -> tuple[KextChannel,
                                                                       StringTransport]:
    site = make_site(_never, 3 * 1024 * 1024, read_header_timeout)
    channel = site.channel()
    channel.site = site
    channel.requestFactory = site.requestFactory
    channel.callLater = clock.callLater  # type: ignore[method-assign]
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def test_header_blocks_past_go_limits_get_431_and_a_close() -> None:
    # Go reads 1 MiB + 4 KiB of header block before it answers 431
    for data in (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * ((1 << 20) + 5000) + b"\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: v\r\n" * 501,
                 b"GET /" + b"a" * (1 << 21)):  # no end of line at all
        clock = Clock()
        channel, transport = connect(clock)
        channel.dataReceived(data)
        assert transport.value().startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert transport.value().endswith(b"\r\n\r\n431 Request Header Fields Too Large")
        assert not transport.disconnecting  # lingers, so the client reads it, then closes
        clock.advance(0.5)
        assert transport.disconnecting or transport.disconnected


def test_go_sized_header_blocks_are_read() -> None:
    clock = Clock()
    channel, transport = connect(clock)
    block = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: v\r\n" * 499 + b"X-A: " + b"a" * 1_000_000
    channel.dataReceived(block)  # not yet at its end
    assert transport.value() == b""


def test_absurd_content_length_is_413_at_once() -> None:
    clock = Clock()
    channel, transport = connect(clock)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert b'"message":"Request entity too large: limit is 3145728"' in transport.value()


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
    b"\x00\x01\x02 \n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
])
def test_malformed_requests_are_400_and_a_close(data: bytes) -> None:
    clock = Clock()
    channel, transport = connect(clock)
    channel.dataReceived(data)
    assert transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in transport.value()
    clock.advance(0.5)
    assert transport.disconnecting or transport.disconnected


def test_a_connection_without_headers_in_time_is_closed_unanswered() -> None:
    clock = Clock()
    channel, transport = connect(clock, read_header_timeout=1.0)
    for byte in b"GET / HTTP/1.1\r\n":
        channel.dataReceived(bytes([byte]))
        clock.advance(0.05)  # dribbling does not extend the deadline
    clock.advance(0.3)
    assert transport.value() == b""
    assert transport.disconnecting


# -- storage failures as the client sees them


def test_storage_failures_that_are_no_outage() -> None:
    from kext.registry.storeerr import interpret
    from kext.storage import errors as storage_errors

    too_large = interpret(storage_errors.RequestTooLargeError(
        "/k", "etcdserver: request is too large"), "example.kext.io", "widgets", "w")
    assert (too_large.code, too_large.reason, too_large.message) == (
        500, "", "etcdserver: request is too large")
    assert too_large.retry_after_seconds == 0
    lost = interpret(storage_errors.OutcomeUnknownError(
        "/k", "etcd at x did not answer within 5s; the write may or may not have been applied"),
        "example.kext.io", "widgets", "w")
    assert lost.code == 500 and lost.retry_after_seconds == 0
    assert lost.message.endswith("may or may not have been applied: get "
                                 "widgets.example.kext.io w to see whether it was")
    down = interpret(storage_errors.UnavailableError("/k", "etcd is down"),
                     "example.kext.io", "widgets", "w")
    assert down.code == 503  # not sent: safe to retry


def test_chunked_bodies_past_the_limit_are_413_at_once() -> None:
    for chunks in (b"400000\r\n" + b"a" * 100, (b"100000\r\n" + b"a" * 0x100000 + b"\r\n") * 4):
        clock = Clock()
        channel, transport = connect(clock)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + chunks)
        assert transport.value().startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
