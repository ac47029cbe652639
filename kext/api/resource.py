"""A declared resource: the parts of an apiextensions.k8s.io/v1 CustomResourceDefinition
that serving needs, read once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PrinterColumn:
    """One `additionalPrinterColumns` entry (jsonPath as written, e.g. `.spec.size`)."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class Version:
    """One entry of `spec.versions`."""

    name: str
    served: bool
    storage: bool
    schema: dict[str, Any]  # openAPIV3Schema
    status_subresource: bool = False
    printer_columns: tuple[PrinterColumn, ...] = ()
    selectable_fields: tuple[str, ...] = ()  # jsonPaths, e.g. ".spec.color"
    deprecated: bool = False
    deprecation_warning: str = ""


@dataclass(frozen=True)
class ResourceDefinition:
    """A resource kext serves, as declared by a CRD manifest."""

    group: str
    plural: str
    singular: str
    kind: str
    list_kind: str
    namespaced: bool
    versions: tuple[Version, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Python strategy hooks by import path ("package.module:callable"), see registry.strategy.
    hooks: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The CRD name: `<plural>.<group>`."""
        return f"{self.plural}.{self.group}"

    @property
    def storage_version(self) -> Version:
        return next(v for v in self.versions if v.storage)

    @property
    def served_versions(self) -> tuple[Version, ...]:
        return tuple(v for v in self.versions if v.served)

    def version(self, name: str) -> Version | None:
        """The served version called name, or None."""
        return next((v for v in self.versions if v.name == name and v.served), None)
