"""Example strategy hooks for Widgets, declared in a CRD with the annotation

    kext.io/hooks: '{"defaulting": ["examples.widget_hooks:default_tags"],
                     "validation": ["examples.widget_hooks:red_widgets_are_small"],
                     "status": ["examples.widget_hooks:phase"]}'

Each receives the object being written and the stored one (None on create).
"""

from __future__ import annotations

from typing import Any

Object = dict[str, Any]


def default_tags(obj: Object, old: Object | None) -> None:
    """A widget without tags gets one naming its color."""
    spec = obj.setdefault("spec", {})
    if not spec.get("tags"):
        spec["tags"] = [spec.get("color", "plain")]


def red_widgets_are_small(obj: Object, old: Object | None) -> list[str]:
    """Reject red widgets bigger than 5: the message reaches the client in a 422."""
    spec = obj.get("spec", {})
    if spec.get("color") == "red" and spec.get("size", 0) > 5:
        return ["red widgets may not be bigger than 5"]
    return []


def phase(obj: Object, old: Object | None) -> None:
    """Status computed on every write: Pending for a new widget, Ready once it was updated."""
    status = obj.setdefault("status", {})
    status["phase"] = "Pending" if old is None else "Ready"
    status["observedGeneration"] = obj["metadata"].get("generation", 1)
