"""Python strategy hooks declared per resource by import path ("package.module:callable").

Kinds (the keys of the CRD's `kext.io/hooks` annotation):
- defaulting(obj, old) -> None: mutate obj in place; runs before schema validation.
- validation(obj, old) -> list[str] | None: messages that reject the write with 422 Invalid.
- status(obj, old) -> None: compute fields (e.g. `.status`) in place after validation.
`old` is None on create. A hook may be a coroutine function.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

HOOK_KINDS = ("defaulting", "validation", "status")

Hook = Callable[[dict[str, Any], dict[str, Any] | None], Any]


def load_hook(path: str) -> Hook:
    """Import "package.module:callable" (the working directory is searched too, as
    `python -m` does, so a project's own hooks import without installing them)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    hook = module
    for part in attr.split("."):
        hook = getattr(hook, part)
    if not callable(hook):
        raise TypeError(f"{path} is not callable")
    return hook


async def call_hook(hook: Hook, obj: dict[str, Any], old: dict[str, Any] | None) -> Any:
    """Run a hook, awaiting it when it is a coroutine function."""
    result = hook(obj, old)
    if inspect.isawaitable(result):
        result = await result
    return result
