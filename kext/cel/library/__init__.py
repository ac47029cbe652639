"""The Kubernetes CEL libraries (k8s.io/apiserver/pkg/cel/library) as function tables: each
module's logic is plain Python, and `FUNCTIONS` lists what CEL sees, by name and typed
overload. kext.cel.environment hands the tables to the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Overload:
    """One typed overload: CEL type signatures of the parameters (the receiver first for a
    member function) and the result, and the Python function that computes it (None: one
    bound to each evaluation, as the authz library's `check` is)."""

    id: str
    params: tuple[str, ...]
    result: str
    impl: Callable[..., Any] | None
    member: bool = False


@dataclass(frozen=True)
class Function:
    name: str
    overloads: tuple[Overload, ...]


def member(name: str, id: str, params: tuple[str, ...], result: str,
           impl: Callable[..., Any] | None) -> Function:
    return Function(name, (Overload(id, params, result, impl, member=True),))


def global_(name: str, id: str, params: tuple[str, ...], result: str,
            impl: Callable[..., Any]) -> Function:
    return Function(name, (Overload(id, params, result, impl),))
