"""The official `kubernetes` Python client (DynamicClient) against a real kext."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import config, dynamic
from kubernetes.client.exceptions import ApiException

from tests.kext_process import KextProcess


@pytest.fixture(scope="module")
def widgets(kext: KextProcess) -> Iterator[dynamic.Resource]:
    api_client = config.new_client_from_config(config_file=kext.kubeconfig)
    dyn = dynamic.DynamicClient(api_client)
    yield dyn.resources.get(api_version="example.kext.io/v1alpha1", kind="Widget")
    api_client.close()


def _widget(name: str, size: int = 1, **spec: object) -> dict[str, object]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": size, "color": "red", **spec}}


@pytest.fixture
def ns() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def test_crud(widgets: dynamic.Resource, ns: str) -> None:
    created = widgets.create(body=_widget("a"), namespace=ns)
    assert created.metadata.uid and created.metadata.resourceVersion
    got = widgets.get(name="a", namespace=ns)
    assert got.spec.size == 1
    body = got.to_dict()
    body["spec"]["size"] = 7
    replaced = widgets.replace(body=body, namespace=ns)
    assert replaced.spec.size == 7
    assert int(replaced.metadata.resourceVersion) > int(got.metadata.resourceVersion)
    patched = widgets.patch(name="a", namespace=ns, body={"spec": {"color": "blue"}},
                            content_type="application/merge-patch+json")
    assert (patched.spec.size, patched.spec.color) == (7, "blue")
    assert [i.metadata.name for i in widgets.get(namespace=ns).items] == ["a"]
    widgets.delete(name="a", namespace=ns)
    with pytest.raises(ApiException) as info:
        widgets.get(name="a", namespace=ns)
    assert info.value.status == 404


def test_stale_update_conflicts(widgets: dynamic.Resource, ns: str) -> None:
    first = widgets.create(body=_widget("c"), namespace=ns).to_dict()
    widgets.patch(name="c", namespace=ns, body={"spec": {"size": 2}},
                  content_type="application/merge-patch+json")
    first["spec"]["size"] = 3
    with pytest.raises(ApiException) as info:
        widgets.replace(body=first, namespace=ns)
    assert info.value.status == 409
    assert '"reason":"Conflict"' in info.value.body.replace(" ", "")
    assert widgets.get(name="c", namespace=ns).spec.size == 2


def test_schema_violation_names_each_field(widgets: dynamic.Resource, ns: str) -> None:
    bad = _widget("v", size=0, color="purple", tags="notalist")
    with pytest.raises(ApiException) as info:
        widgets.create(body=bad, namespace=ns)
    assert info.value.status == 422
    import json

    status = json.loads(info.value.body)
    fields = sorted(c["field"] for c in status["details"]["causes"])
    assert fields == ["spec.color", "spec.size", "spec.tags"]
    assert status["reason"] == "Invalid"


def test_pagination_with_writes_between_pages(widgets: dynamic.Resource, ns: str) -> None:
    for i in range(120):
        widgets.create(body=_widget(f"w{i:03d}"), namespace=ns)
    seen: list[str] = []
    token = None
    page_rvs = set()
    while True:
        page = widgets.get(namespace=ns, limit=25, _continue=token)
        seen += [i.metadata.name for i in page.items]
        page_rvs.add(page.metadata.resourceVersion)
        # writes between pages: neither new objects nor deletions show up in this listing
        widgets.create(body=_widget(f"late{len(seen)}"), namespace=ns)
        token = page.metadata["continue"]
        if not token:
            break
    assert seen == [f"w{i:03d}" for i in range(120)]
    assert len(page_rvs) == 1  # every page is the same snapshot
