"""The one Accept parser: q-values rank clauses, q=0 refuses a type, wildcards yield to
specific types of the same q, and header order breaks the remaining ties."""

from __future__ import annotations

import pytest

from kext.api.accept import JSON, YAML, MediaRange, negotiate_media_type, parse_accept
from kext.api.discovery import DiscoveryFormat, negotiate_discovery
from kext.api.openapi import accepts_json


def kinds(header: str | None) -> list[str]:
    return [f"{r.type}/{r.subtype}" for r in parse_accept(header)]


def first(header: str | None) -> str | None:
    return negotiate_media_type(header, (JSON, YAML), lambda clause, media_type: media_type)


def test_missing_blank_and_bare_star_headers_accept_anything() -> None:
    for header in (None, "", "  ", "*"):
        assert kinds(header) == ["*/*"]
        assert first(header) == JSON  # the server's first media type


@pytest.mark.parametrize(("header", "ranked"), [
    # a higher q first, whatever the order
    ("application/yaml;q=0.5, application/json", ["application/json", "application/yaml"]),
    ("text/html;q=0.1, application/json;q=0.9, application/yaml;q=0.95",
     ["application/yaml", "application/json", "text/html"]),
    # equal q: a specific type before type/*, before */*
    ("*/*, application/*, application/yaml", ["application/yaml", "application/*", "*/*"]),
    # equal q and specificity: header order
    ("application/yaml, application/json", ["application/yaml", "application/json"]),
    # q first: a wildcard with the higher q outranks a specific type
    ("application/yaml;q=0.5, */*", ["*/*", "application/yaml"]),
])
def test_clauses_rank_by_q_then_specificity_then_order(header: str, ranked: list[str]) -> None:
    assert kinds(header) == ranked


def test_q_zero_and_unreadable_q_refuse_the_type() -> None:
    assert kinds("application/json;q=0, application/yaml;q=abc, text/plain") == ["text/plain"]
    assert first("application/json;q=0") is None
    assert first("application/json;q=0, application/yaml") == YAML
    assert first("application/json;q=0.0, */*;q=0.1") == JSON  # */* still admits JSON


def test_parameters_are_kept_and_normalised() -> None:
    (clause,) = parse_accept('Application/JSON; AS="Table" ;g=meta.k8s.io;v=v1;q=0.8')
    assert clause == MediaRange("application", "json",
                                {"as": "Table", "g": "meta.k8s.io", "v": "v1"}, 0.8)


def test_malformed_clauses_are_dropped() -> None:
    assert kinds("json, /json, application/, a/b/c, ,application/yaml") == ["application/yaml"]


def test_matching_follows_kube() -> None:
    assert MediaRange("application", "*", {}).matches(JSON)
    assert MediaRange("*", "*", {}).matches(YAML)
    assert not MediaRange("*", "json", {}).matches(JSON)
    assert not MediaRange("application", "json", {}).matches(YAML)


def test_a_clause_the_server_cannot_honour_passes_to_the_next() -> None:
    def only_plain(clause: MediaRange, media_type: str) -> str | None:
        return None if clause.params else media_type

    assert negotiate_media_type("application/json;x=1, application/yaml;q=0.5",
                                (JSON, YAML), only_plain) == YAML
    assert negotiate_media_type("application/json;x=1", (JSON, YAML), only_plain) is None


def test_discovery_and_openapi_honour_q_values() -> None:
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert negotiate_discovery(f"application/json;q=0.9, {aggregated}") is (
        DiscoveryFormat.AGGREGATED_V2)
    assert negotiate_discovery(f"{aggregated};q=0.1, application/json;q=0.2") is (
        DiscoveryFormat.LEGACY)
    assert negotiate_discovery("application/json;q=0, */*;q=0") is None
    assert not accepts_json("application/json;q=0")
    assert accepts_json("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, */*;q=0.1")
