"""The metadata a client sends, validated by the store as kube's ObjectMeta validation does:
each bad field is a cause of one 422, worded as kube words it."""

from __future__ import annotations

from typing import Any

import pytest

from kext.registry.rest import RequestContext
from kext.registry.store import Store
from tests.registry.objects import VERSION, change, refused, widget

pytestmark = pytest.mark.asyncio

CTX = RequestContext(namespace="ns", field_manager="test")
OWNER = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u-1"}


@pytest.mark.parametrize(("metadata", "field", "message"), [
    ({"labels": {"bad key!": "v"}}, "metadata.labels",
     'Invalid value: "bad key!": name part must consist of alphanumeric characters'),
    ({"labels": {"tier": "not a value"}}, "metadata.labels",
     'Invalid value: "not a value": a valid label must be an empty string or consist of'),
    ({"labels": {"tier": 3}}, "metadata.labels", "Invalid value: 3: must be a string"),
    ({"labels": ["tier"]}, "metadata.labels",
     "must be a map of string keys to string values"),
    ({"annotations": {"a/b/c": "v"}}, "metadata.annotations",
     'Invalid value: "a/b/c": a qualified name must consist of'),
    ({"annotations": {"big": "x" * (256 * 1024)}}, "metadata.annotations",
     "Too long: may not be more than 262144 bytes"),
    ({"annotations": {"n": 1}}, "metadata.annotations", "must be a string"),
    ({"ownerReferences": [{**OWNER, "uid": ""}]}, "metadata.ownerReferences.uid",
     'Invalid value: "": must not be empty'),
    ({"ownerReferences": [{**OWNER, "apiVersion": "apps/"}]},
     "metadata.ownerReferences.apiVersion", "version must not be empty"),
    ({"ownerReferences": [{**OWNER, "controller": True},
                          {**OWNER, "name": "e", "controller": True}]},
     "metadata.ownerReferences",
     'Only one reference can have Controller set to true. Found "true" in references for '
     "Deployment/d and Deployment/e"),
    ({"ownerReferences": [{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}]},
     "metadata.ownerReferences", "/v1, Kind=Event is disallowed from being an owner"),
    ({"ownerReferences": {"kind": "x"}}, "metadata.ownerReferences",
     "must be a list of owner references"),
    ({"finalizers": ["no spaces allowed"]}, "metadata.finalizers",
     'Invalid value: "no spaces allowed": name part must consist of'),
    ({"finalizers": ["orphan", "foregroundDeletion"]}, "metadata.finalizers",
     "finalizer orphan and foregroundDeletion cannot be both set"),
    ({"generateName": "Bad_"}, "metadata.generateName",
     'Invalid value: "Bad_": a lowercase RFC 1123 subdomain must consist of'),
])
async def test_bad_metadata_is_invalid(widgets: Store, metadata: dict[str, Any], field: str,
                                       message: str) -> None:
    body = widget()
    body["metadata"].update(metadata)
    error = await refused(widgets.create(CTX, VERSION, body))
    assert (error.code, error.reason) == (422, "Invalid")
    causes = [(c.field, c.message) for c in error.causes]
    assert any(f == field and message in m for f, m in causes), causes
    assert error.message.startswith('Widget.example.kext.io "')


async def test_a_name_is_required(widgets: Store) -> None:
    body = widget()
    del body["metadata"]["name"]
    error = await refused(widgets.create(CTX, VERSION, body))
    assert error.message == ('Widget.example.kext.io "" is invalid: metadata.name: Required '
                             "value: name or generateName is required")


async def test_good_metadata_is_kept(widgets: Store) -> None:
    body = widget()
    body["metadata"].update(
        labels={"app.kubernetes.io/name": "w", "tier": ""},
        annotations={"Example.COM/Note": "any text, any case"},
        ownerReferences=[{**OWNER, "controller": True, "blockOwnerDeletion": True}],
        finalizers=["example.kext.io/keep"],
    )
    stored = (await widgets.create(CTX, VERSION, body)).object["metadata"]
    for key in ("labels", "annotations", "ownerReferences", "finalizers"):
        assert stored[key] == body["metadata"][key]


async def test_metadata_is_validated_on_update_too(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget())
    error = await refused(widgets.update(CTX, "w", VERSION, change(
        lambda o: o["metadata"].update(labels={"bad key!": "v"}))))
    assert [c.field for c in error.causes] == ["metadata.labels"]


async def test_unknown_metadata_fields_are_pruned(widgets: Store) -> None:
    body = widget()
    body["metadata"]["colour"] = "blue"
    result = await widgets.create(CTX, VERSION, body)
    assert "colour" not in result.object["metadata"]
    assert result.warnings == ['unknown field "metadata.colour"']
