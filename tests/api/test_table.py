"""meta.k8s.io Table output (kubectl get) and PartialObjectMetadata."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kext.api.errors import StatusError
from kext.api.resource import PrinterColumn, Version
from kext.api.table import (
    JSONPath,
    TableConvertor,
    human_duration,
    parse_include_object,
    partial_object_metadata,
    partial_object_metadata_list,
    table_convertor,
)

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)

WIDGET: dict[str, Any] = {
    "apiVersion": "example.com/v1", "kind": "Widget",
    "metadata": {"name": "w1", "namespace": "default", "resourceVersion": "7",
                 "creationTimestamp": "2024-01-01T11:55:00Z"},
    "spec": {"size": 3, "ratio": 2, "color": "red", "tags": ["a", "b"], "on": True},
    "status": {"conditions": [{"type": "Synced", "status": "False"},
                              {"type": "Ready", "status": "True"}]},
}


def version(*columns: PrinterColumn) -> Version:
    return Version(name="v1", served=True, storage=True, schema={"type": "object"},
                   printer_columns=columns)


COLUMNS = (
    PrinterColumn("Size", "integer", ".spec.size", priority=1),
    PrinterColumn("Ratio", "number", ".spec.ratio"),
    PrinterColumn("Color", "string", ".spec.color", description="The color."),
    PrinterColumn("Tags", "string", ".spec.tags"),
    PrinterColumn("First", "string", ".spec.tags[0]"),
    PrinterColumn("On", "boolean", ".spec.on"),
    PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
    PrinterColumn("Missing", "string", ".spec.nothing"),
    PrinterColumn("Created", "date", ".metadata.creationTimestamp"),
)


def test_default_columns_are_name_and_age() -> None:
    convertor = TableConvertor(version())
    names = [(c["name"], c["type"], c["format"]) for c in convertor.column_definitions]
    assert names == [("Name", "string", "name"), ("Age", "date", "")]
    assert convertor.cells(WIDGET, NOW) == ["w1", "5m"]


def test_declared_columns_replace_age() -> None:
    convertor = TableConvertor(version(*COLUMNS))
    defs = convertor.column_definitions
    assert [c["name"] for c in defs] == ["Name", "Size", "Ratio", "Color", "Tags", "First", "On",
                                         "Ready", "Missing", "Created"]
    assert defs[1]["priority"] == 1
    assert defs[2]["description"] == (
        "Custom resource definition column (in JSONPath format): .spec.ratio")
    assert defs[3]["description"] == "The color."
    assert convertor.cells(WIDGET, NOW) == [
        "w1", 3, 2.0, "red", '["a","b"]', "a", True, "True", None, "5m"]


def test_table_object_shapes() -> None:
    convertor = TableConvertor(version())
    table = convertor.table([WIDGET], resource_version="7", now=NOW)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "7"}
    [row] = table["rows"]
    assert row["cells"] == ["w1", "5m"]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": WIDGET["metadata"]}
    full = convertor.table([WIDGET], include_object="Object", now=NOW)
    assert full["rows"][0]["object"] is WIDGET
    none = convertor.table([WIDGET], include_object="None", no_headers=True, now=NOW)
    assert none["rows"][0]["object"] is None and none["columnDefinitions"] is None


def test_list_table_carries_continue() -> None:
    table = TableConvertor(version()).table(
        [], resource_version="9", continue_token="abc", remaining_item_count=4)
    assert table["rows"] == []
    assert table["metadata"] == {"resourceVersion": "9", "continue": "abc",
                                 "remainingItemCount": 4}


def test_include_object_parameter() -> None:
    assert parse_include_object(None) == "Metadata"
    assert parse_include_object("Object") == "Object"
    with pytest.raises(StatusError) as exc:
        parse_include_object("All")
    assert (exc.value.code, exc.value.message) == (400, 'unrecognized includeObject value: "All"')


def test_partial_object_metadata_list() -> None:
    out = partial_object_metadata_list([WIDGET], resource_version="7", continue_token="c")
    assert out["kind"] == "PartialObjectMetadataList"
    assert out["metadata"] == {"resourceVersion": "7", "continue": "c"}
    assert out["items"] == [partial_object_metadata(WIDGET)]


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (150, "2m30s"), (600, "10m"),
    (3 * 3600 + 120, "3h2m"), (10 * 3600, "10h"), (3 * 86400 + 3600, "3d1h"),
    (30 * 86400, "30d"), (3 * 365 * 86400, "3y"), (10 * 365 * 86400, "10y"),
])
def test_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_dates_that_are_not_timestamps() -> None:
    convertor = TableConvertor(version(PrinterColumn("When", "date", ".spec.when")))
    assert convertor.cells({"metadata": {"name": "x"}, "spec": {"when": "soon"}}, NOW) == [
        "x", "<invalid>"]


def test_jsonpath_subset() -> None:
    doc = {"a": {"b.c": 1, "list": [{"k": 1}, {"k": 2}, {"k": 3}]}}
    assert JSONPath("{.a['b.c']}").find(doc) == [1]
    assert JSONPath(".a.list[*].k").find(doc) == [1, 2, 3]
    assert JSONPath(".a.list[-1].k").find(doc) == [3]
    assert JSONPath(".a.list[0:2].k").find(doc) == [1, 2]
    assert JSONPath(".a.list[?(@.k>1)].k").find(doc) == [2, 3]
    assert JSONPath("..k").find(doc) == [1, 2, 3]
    assert JSONPath(".a.nope.deeper").find(doc) == []


def test_convertor_is_built_once_per_version() -> None:
    v = version()
    assert table_convertor(v) is table_convertor(v)
