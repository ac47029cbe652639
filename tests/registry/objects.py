"""The resources registry and server tests are written against: config/resources' Widget
(namespaced, status subresource, printer columns, a selectable field) and Gadget
(cluster-scoped), and objects of them as a client would send them."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import yaml

from kext.api.errors import StatusError
from kext.api.resource import ResourceDefinition, parse_crd
from kext.registry.store import UpdatedObject
from tests.kext_process import REPO

Object = dict[str, Any]
GROUP = "example.kext.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@functools.cache
def definition(plural: str) -> ResourceDefinition:
    """The parsed CRD of config/resources/<plural>.yaml (parsed once: it is immutable)."""
    crd = yaml.safe_load((REPO / f"config/resources/{plural}.yaml").read_text())
    parsed, problems = parse_crd(crd, plural)
    assert parsed is not None, problems
    return parsed


def definition_with_hooks(plural: str, hooks: dict[str, list[str]]) -> ResourceDefinition:
    """config/resources/<plural>.yaml with its `kext.io/hooks` annotation set to hooks."""
    crd = yaml.safe_load((REPO / f"config/resources/{plural}.yaml").read_text())
    crd["metadata"]["annotations"] = {"kext.io/hooks": json.dumps(hooks)}
    parsed, problems = parse_crd(crd, plural)
    assert parsed is not None, problems
    return parsed


def widget(name: str = "w", *, labels: dict[str, str] | None = None,
           finalizers: list[str] | None = None, **spec: Any) -> Object:
    """A Widget as a client sends it (color blue unless given)."""
    metadata: Object = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    return {"apiVersion": API_VERSION, "kind": "Widget", "metadata": metadata,
            "spec": {"color": "blue", **spec}}


def gadget(name: str = "g", **spec: Any) -> Object:
    """A Gadget (cluster-scoped) as a client sends it."""
    return {"apiVersion": API_VERSION, "kind": "Gadget", "metadata": {"name": name},
            "spec": {"model": "m1", **spec}}


async def refused(call: Awaitable[object]) -> StatusError:
    """The StatusError an awaitable raises (failing the test when it raises none)."""
    with pytest.raises(StatusError) as raised:
        await call
    return raised.value


def change(edit: Callable[[Object], object]) -> UpdatedObject:
    """A patch-like update function: edit(obj) applied to a copy of the current object."""
    async def updated(current: Object | None) -> Object:
        assert current is not None
        new = copy.deepcopy(current)
        edit(new)
        return new
    return updated
