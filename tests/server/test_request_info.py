"""How request paths resolve to verbs and resources, as kube-apiserver resolves them."""

import pytest

from kext.server.request_info import parse_request_info


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/apis/g.io/v1/namespaces/ns/widgets", {}, ("list", "ns", "widgets", "", "")),
        ("GET", "/apis/g.io/v1/widgets", {}, ("list", "", "widgets", "", "")),
        ("GET", "/apis/g.io/v1/namespaces/ns/widgets", {"watch": ["true"]},
         ("watch", "ns", "widgets", "", "")),
        ("GET", "/apis/g.io/v1/watch/namespaces/ns/widgets", {},
         ("watch", "ns", "widgets", "", "")),
        ("GET", "/apis/g.io/v1/namespaces/ns/widgets/a", {}, ("get", "ns", "widgets", "a", "")),
        ("PUT", "/apis/g.io/v1/namespaces/ns/widgets/a/status", {},
         ("update", "ns", "widgets", "a", "status")),
        ("POST", "/apis/g.io/v1/namespaces/ns/widgets", {}, ("create", "ns", "widgets", "", "")),
        ("PATCH", "/apis/g.io/v1/gadgets/b", {}, ("patch", "", "gadgets", "b", "")),
        ("DELETE", "/apis/g.io/v1/namespaces/ns/widgets", {},
         ("deletecollection", "ns", "widgets", "", "")),
        ("DELETE", "/apis/g.io/v1/namespaces/ns/widgets/a", {},
         ("delete", "ns", "widgets", "a", "")),
        # a list or watch of one object by field selector names it, for authorization
        ("GET", "/apis/g.io/v1/namespaces/ns/widgets",
         {"fieldSelector": ["metadata.name=a"], "watch": ["1"]},
         ("watch", "ns", "widgets", "a", "")),
        ("GET", "/apis/g.io/v1/widgets", {"fieldSelector": ["spec.color=red,metadata.name==b"]},
         ("list", "", "widgets", "b", "")),
        ("GET", "/apis/g.io/v1/widgets", {"fieldSelector": ["metadata.name!=b"]},
         ("list", "", "widgets", "", "")),
        ("GET", "/apis/g.io/v1/widgets", {"fieldSelector": ["metadata.name=a/b"]},
         ("list", "", "widgets", "", "")),
        ("DELETE", "/apis/g.io/v1/widgets", {"fieldSelector": ["metadata.name=a"]},
         ("deletecollection", "", "widgets", "", "")),
    ],
)
def test_resource_requests(method: str, path: str, query: dict[str, list[str]],
                           expected: tuple[str, str, str, str, str]) -> None:
    info = parse_request_info(method, path, query)
    assert info.is_resource_request
    assert (info.verb, info.namespace, info.resource, info.name, info.subresource) == expected
    assert (info.api_group, info.api_version) == ("g.io", "v1")


@pytest.mark.parametrize("path", ["/healthz", "/apis", "/apis/g.io", "/apis/g.io/v1", "/version",
                                  "/openapi/v3/apis/g.io/v1"])
def test_non_resource_requests(path: str) -> None:
    assert not parse_request_info("GET", path, {}).is_resource_request
