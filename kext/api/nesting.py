"""How deep a JSON value may nest, and its numbers in JSON's (and kube's) range.

kube decodes request bodies with a depth limit of 10000 (apimachinery pkg/util/json
`maxDepth`, and yaml.v2's `max_flow_level`). kext's walks over an object (copy, merge, prune,
default, validate, the field manager, CEL, orjson's encoder at 254 levels) recurse in Python,
under a recursion limit of 1000 frames: at about five frames a level the deepest of them
fails near 190 levels. kext therefore refuses bodies nested deeper than MAX_DEPTH = 100
# metadata.managedFields describe an object's fields this many levels deeper than the fields
# themselves (the list, an entry, fieldsV1, a leaf's {}): the server writes them, so an
# object read back and written again must not fail for them.
MANAGED_FIELDS_EXTRA_DEPTH = 5
levels, which no real object comes near and which leaves every walk twice its headroom.

The one walk here is iterative, so checking a value can never itself run out of stack.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 100
# metadata.managedFields describe an object's fields this many levels deeper than the fields
# themselves (the list, an entry, fieldsV1, a leaf's {}): the server writes them, so an
# object read back and written again must not fail for them.
MANAGED_FIELDS_EXTRA_DEPTH = 5

# kube's JSON numbers: an integer outside int64 is decoded as a float64
# (apimachinery pkg/util/json convertNumber).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class TooDeepError(ValueError):
    """A value nests deeper than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"exceeded max depth of {limit}")
        self.limit = limit


def check_depth(value: Any, limit: int = MAX_DEPTH) -> Any:
    """value itself, its integers outside int64 made floats (as kube decodes them); raises
    TooDeepError when objects and arrays nest more than limit levels (the top-level object
    is level 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _in_range(value)
    if not isinstance(value, (dict, list)):
        return value
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > limit:
            raise TooDeepError(limit)
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1))
            elif isinstance(item, int) and not isinstance(item, bool) and not (
                INT64_MIN <= item <= INT64_MAX
            ):
                container[key] = _in_range(item)  # type: ignore[index]
    return value


def check_object_depth(value: Any, limit: int = MAX_DEPTH) -> Any:
    """check_depth for a Kubernetes object: its metadata.managedFields are measured apart,
    with MANAGED_FIELDS_EXTRA_DEPTH more levels."""
    metadata = value.get("metadata") if isinstance(value, dict) else None
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return check_depth(value, limit)
    managed = metadata.pop("managedFields")
    try:
        check_depth(value, limit)
        metadata["managedFields"] = check_depth(managed, limit + MANAGED_FIELDS_EXTRA_DEPTH)
    finally:
        metadata.setdefault("managedFields", managed)
    return value


def _in_range(number: int) -> int | float:
    if INT64_MIN <= number <= INT64_MAX:
        return number
    try:
        return float(number)
    except OverflowError:
        raise ValueError("a number is out of the range of a float64") from None
