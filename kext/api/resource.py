"""A declared resource: the parts of an apiextensions.k8s.io/v1 CustomResourceDefinition
that serving needs, read once at start-up."""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509

from kext.api import meta
from kext.api.errors import (
    Cause,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_many,
)
from kext.api.schema import Schema, structural_problems
from kext.api.versions import compare_versions


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
class ScaleSubresource:
    """`subresources.scale`: where a custom resource keeps what an autoscaling/v1 Scale shows
    (jsonPaths as written, e.g. `.spec.replicas`; label_selector_path "" when not set)."""

    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str = ""


@dataclass(frozen=True)
class Version:
    """One entry of `spec.versions`."""

    name: str
    served: bool
    storage: bool
    schema: dict[str, Any]  # openAPIV3Schema
    status_subresource: bool = False
    scale: ScaleSubresource | None = None
    printer_columns: tuple[PrinterColumn, ...] = ()
    selectable_fields: tuple[str, ...] = ()  # jsonPaths, e.g. ".spec.color"
    deprecated: bool = False
    deprecation_warning: str = ""
    # The schema compiled once, its validation rules with it (None: no schema was given).
    compiled: Schema | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ServiceReference:
    """`clientConfig.service`: a webhook reached as `https://<name>.<namespace>.svc:<port><path>`."""

    namespace: str
    name: str
    path: str = ""
    port: int = 443


@dataclass(frozen=True)
class WebhookClientConfig:
    """`spec.conversion.webhook.clientConfig`: a URL or a Service, and the PEM CA bundle the
    webhook's serving certificate verifies against (empty: the system's trust store)."""

    url: str = ""
    service: ServiceReference | None = None
    ca_bundle: bytes = b""

    @property
    def address(self) -> str:
        """The URL kext posts to (a Service as its cluster DNS name, as kube resolves it)."""
        if self.service is None:
            return self.url
        s = self.service
        return f"https://{s.name}.{s.namespace}.svc:{s.port}{s.path}"


@dataclass(frozen=True)
class Conversion:
    """`spec.conversion`: strategy None (apiVersion rewritten) or Webhook, with the webhook's
    client config and the ConversionReview versions it understands, in its order."""

    strategy: str = "None"
    webhook: WebhookClientConfig | None = None
    review_versions: tuple[str, ...] = ()


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
    # Python hooks by import path ("package.module:callable"), see kext.admission.hooks;
    # "conversion" holds at most one, the converter (see kext.registry.conversion).
    hooks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    conversion: Conversion = field(default_factory=Conversion)

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

    def api_version(self, version: str) -> str:
        """`<group>/<version>`."""
        return f"{self.group}/{version}"

    def deprecation_warning(self, version: Version) -> str:
        """The Warning every request to a deprecated version carries ("" when it is not):
        its deprecationWarning, or kube's default text naming the preferred served,
        non-deprecated version of higher priority (`g/v1beta1 Widget is deprecated; use
        g/v1 Widget`)."""
        if not version.deprecated:
            return ""
        if version.deprecation_warning:
            return version.deprecation_warning
        text = f"{self.group}/{version.name} {self.kind} is deprecated"
        newer = [v.name for v in self.versions if v.served and not v.deprecated
                 and compare_versions(version.name, v.name) < 0]
        if not newer:
            return text
        best = max(newer, key=functools.cmp_to_key(compare_versions))
        return f"{text}; use {self.group}/{best} {self.kind}"


# -- reading a CustomResourceDefinition manifest

CRD_API_VERSION = "apiextensions.k8s.io/v1"
HOOKS_ANNOTATION = "kext.io/hooks"
HOOK_KINDS = ("defaulting", "validation", "status", "conversion")
CONVERSION_STRATEGIES = ("None", "Webhook")
CONVERSION_REVIEW_VERSIONS = ("v1", "v1beta1")  # what kext (and kube) can speak, in kube's order
PRINTER_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
PRINTER_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64",
                          "password")
MAX_SELECTABLE_FIELDS = 16
_IMPORT_PATH = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
)
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_crd(manifest: object, where: str) -> tuple[ResourceDefinition | None, list[str]]:
    """Read an apiextensions.k8s.io/v1 CustomResourceDefinition manifest.

    Returns the definition and no problems, or None and every problem found, one line each,
    `<where>.<field path>: <kube-apiserver's message>` (e.g.
    `resources[0].spec.names.plural: Required value`), checking what kube-apiserver checks
    when it accepts a CRD, including that every version's schema is structural. Python hooks
    are read from the `kext.io/hooks` annotation: a YAML/JSON mapping of defaulting,
    validation and status to lists of "package.module:callable", and conversion to one
    "package.module:callable" (the version converter, see kext.registry.conversion).
    """
    causes: list[Cause] = []
    definition = _parse(manifest, causes)
    if causes:
        return None, [_line(where, c) for c in causes]
    return definition, []


def _line(where: str, cause: Cause) -> str:
    return f"{where}.{cause.field}: {cause.message}" if cause.field else f"{where}: {cause.message}"


def _mapping(value: object, path: str, causes: list[Cause],
             required: bool = True) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if value is None:
        if required:
            causes.append(field_required(path))
        return {}
    causes.append(field_invalid(path, value, "must be an object"))
    return {}


def _boolean(obj: dict[str, Any], key: str, path: str, causes: list[Cause]) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        causes.append(field_invalid(f"{path}.{key}", value, "must be a boolean"))
        return False
    return value


def _strings(obj: dict[str, Any], key: str, path: str, causes: list[Cause]) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        causes.append(field_invalid(f"{path}.{key}", value, "must be a list of strings"))
        return []
    return value


def _parse(manifest: object, causes: list[Cause]) -> ResourceDefinition | None:
    if not isinstance(manifest, dict):
        causes.append(field_invalid("", manifest, "must be a CustomResourceDefinition manifest"))
        return None
    api_version = manifest.get("apiVersion")
    if api_version != CRD_API_VERSION:
        causes.append(field_not_supported("apiVersion", api_version, [CRD_API_VERSION]))
    if manifest.get("kind") != "CustomResourceDefinition":
        causes.append(field_not_supported("kind", manifest.get("kind"),
                                          ["CustomResourceDefinition"]))
    metadata = _mapping(manifest.get("metadata"), "metadata", causes)
    spec = _mapping(manifest.get("spec"), "spec", causes)

    group = meta.string_field(spec, "group", "spec", causes)
    if not group:
        causes.append(field_required("spec.group"))
    else:
        if "." not in group:
            causes.append(field_invalid("spec.group", group,
                                        "should be a domain with at least one dot"))
        problems = meta.is_dns1123_subdomain(group)
        if problems:
            causes.append(field_invalid("spec.group", group, ",".join(problems)))

    names = _mapping(spec.get("names"), "spec.names", causes)
    plural, singular, kind, list_kind, short_names, categories = _names(names, causes)
    name = meta.string_field(metadata, "name", "metadata", causes)
    if not name:
        causes.append(field_required("metadata.name"))
    elif plural and group and name != f"{plural}.{group}":
        causes.append(field_invalid("metadata.name", name,
                                    'must be spec.names.plural+"."+spec.group'))
    hooks = _hooks(metadata, causes)

    scope = spec.get("scope")
    if not scope:
        causes.append(field_required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        causes.append(field_not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    if spec.get("preserveUnknownFields") not in (None, False):
        causes.append(field_invalid("spec.preserveUnknownFields", spec["preserveUnknownFields"],
                                    "must be false"))
    conversion = _conversion(spec.get("conversion"), causes)
    if hooks.get("conversion") and conversion.strategy == "Webhook":
        causes.append(field_invalid(
            f"metadata.annotations[{HOOKS_ANNOTATION}].conversion", hooks["conversion"][0],
            "a conversion hook needs spec.conversion.strategy None: the hook is the converter"))

    versions = _versions(spec.get("versions"), causes)
    if causes:
        return None
    return ResourceDefinition(
        group=group, plural=plural, singular=singular, kind=kind, list_kind=list_kind,
        namespaced=scope == "Namespaced", versions=tuple(versions),
        short_names=tuple(short_names), categories=tuple(categories), hooks=hooks,
        conversion=conversion,
    )


def _names(names: dict[str, Any], causes: list[Cause]
           ) -> tuple[str, str, str, str, list[str], list[str]]:
    path = "spec.names"
    plural = meta.string_field(names, "plural", path, causes)
    kind = meta.string_field(names, "kind", path, causes)
    singular = meta.string_field(names, "singular", path, causes)
    list_kind = meta.string_field(names, "listKind", path, causes)
    if not plural:
        causes.append(field_required(f"{path}.plural"))
    for key, value in (("plural", plural), ("singular", singular)):
        problems = meta.is_dns1035_label(value) if value else []
        if problems:
            causes.append(field_invalid(f"{path}.{key}", value, ",".join(problems)))
    if not kind:
        causes.append(field_required(f"{path}.kind"))
    for key, value in (("kind", kind), ("listKind", list_kind)):
        problems = meta.is_dns1035_label(value.lower()) if value else []
        if problems:
            causes.append(field_invalid(
                f"{path}.{key}", value,
                "may have mixed case, but should otherwise match: " + ",".join(problems)))
    if kind and list_kind == kind:
        causes.append(field_invalid(f"{path}.listKind", list_kind,
                                    "kind and listKind may not be the same"))
    short_names = _strings(names, "shortNames", path, causes)
    categories = _strings(names, "categories", path, causes)
    for key, values in (("shortNames", short_names), ("categories", categories)):
        for i, value in enumerate(values):
            problems = meta.is_dns1035_label(value)
            if problems:
                causes.append(field_invalid(f"{path}.{key}[{i}]", value, ",".join(problems)))
    return (plural, singular or kind.lower(), kind, list_kind or f"{kind}List", short_names,
            categories)


def _hooks(metadata: dict[str, Any], causes: list[Cause]) -> dict[str, tuple[str, ...]]:
    annotations = metadata.get("annotations")
    causes.extend(meta.validate_annotations(annotations, "metadata.annotations"))
    if not isinstance(annotations, dict) or HOOKS_ANNOTATION not in annotations:
        return {}
    path = f"metadata.annotations[{HOOKS_ANNOTATION}]"
    raw = annotations[HOOKS_ANNOTATION]
    if not isinstance(raw, str):
        return {}
    try:
        parsed = yaml.load(raw, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        causes.append(field_invalid(path, raw, f"must be a YAML or JSON mapping: {exc}"))
        return {}
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        causes.append(field_invalid(
            path, raw, 'must be a mapping like {"validation": ["package.module:callable"]}'))
        return {}
    hooks: dict[str, tuple[str, ...]] = {}
    for kind, paths in parsed.items():
        if kind not in HOOK_KINDS:
            causes.append(field_not_supported(f"{path}.{kind}", kind, HOOK_KINDS))
            continue
        if kind == "conversion":
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or len(paths) != 1:
                causes.append(field_invalid(f"{path}.{kind}", paths,
                                            'must be one "package.module:callable"'))
                continue
        if not isinstance(paths, list):
            causes.append(field_invalid(f"{path}.{kind}", paths,
                                        'must be a list of "package.module:callable"'))
            continue
        for i, target in enumerate(paths):
            if not isinstance(target, str) or not _IMPORT_PATH.fullmatch(target):
                causes.append(field_invalid(f"{path}.{kind}[{i}]", target,
                                            'must be "package.module:callable"'))
        hooks[kind] = tuple(p for p in paths if isinstance(p, str))
    return hooks


def _versions(value: object, causes: list[Cause]) -> list[Version]:
    path = "spec.versions"
    if not isinstance(value, list) or not value:
        if value is not None and not isinstance(value, list):
            causes.append(field_invalid(path, value, "must be a list of versions"))
        else:
            causes.append(field_required(path, "must have exactly one version marked as "
                                               "storage version"))
        return []
    versions: list[Version] = []
    seen: set[str] = set()
    storage = 0
    for i, item in enumerate(value):
        at = f"{path}[{i}]"
        if not isinstance(item, dict):
            causes.append(field_invalid(at, item, "must be an object"))
            continue
        version = _version(item, at, causes)
        if version is None:
            continue
        if version.name in seen:
            causes.append(field_duplicate(f"{at}.name", version.name))
        seen.add(version.name)
        storage += version.storage
        versions.append(version)
    if storage != 1 and len(versions) == len(value):
        causes.append(field_invalid(path, [v.name for v in versions if v.storage],
                                    "must have exactly one version marked as storage version"))
    return versions


def _version(item: dict[str, Any], at: str, causes: list[Cause]) -> Version | None:
    before = len(causes)
    name = meta.string_field(item, "name", at, causes)
    if not name:
        causes.append(field_required(f"{at}.name"))
    else:
        problems = meta.is_dns1035_label(name)
        if problems:
            causes.append(field_invalid(f"{at}.name", name, ",".join(problems)))
    served = _boolean(item, "served", at, causes)
    storage = _boolean(item, "storage", at, causes)
    deprecated = _boolean(item, "deprecated", at, causes)
    warning = meta.string_field(item, "deprecationWarning", at, causes)
    if warning and not deprecated:
        causes.append(field_invalid(f"{at}.deprecationWarning", warning,
                                    "can only be set for deprecated versions"))
    elif len(warning) > 256:
        causes.append(field_invalid(f"{at}.deprecationWarning", warning,
                                    "must be <= 256 characters long"))

    schema_holder = _mapping(item.get("schema"), f"{at}.schema", causes, required=False)
    schema = schema_holder.get("openAPIV3Schema")
    schema_problems = structural_problems(schema, f"{at}.schema.openAPIV3Schema")
    causes.extend(schema_problems)
    compiled = None
    if not schema_problems and isinstance(schema, dict):
        # Rules compile only on a schema kube accepts; what does not compile is a CRD error.
        compiled = Schema(schema)
        causes.extend(compiled.rule_problems(f"{at}.schema.openAPIV3Schema"))

    subresources = _mapping(item.get("subresources"), f"{at}.subresources", causes,
                            required=False)
    status = subresources.get("status")
    if status is not None and not isinstance(status, dict):
        causes.append(field_invalid(f"{at}.subresources.status", status, "must be an object"))
    scale = _scale(subresources.get("scale"), f"{at}.subresources", causes)
    columns = _printer_columns(item.get("additionalPrinterColumns"),
                               f"{at}.additionalPrinterColumns", causes)
    selectable = _selectable_fields(item.get("selectableFields"), schema,
                                    f"{at}.selectableFields", causes)
    if len(causes) != before:
        return None
    return Version(
        name=name, served=served, storage=storage,
        schema=schema if isinstance(schema, dict) else {},
        status_subresource=status is not None, scale=scale, printer_columns=tuple(columns),
        selectable_fields=tuple(selectable), deprecated=deprecated,
        deprecation_warning=warning, compiled=compiled,
    )


def _printer_columns(value: object, path: str, causes: list[Cause]) -> list[PrinterColumn]:
    if value is None:
        return []
    if not isinstance(value, list):
        causes.append(field_invalid(path, value, "must be a list of columns"))
        return []
    columns = []
    for i, col in enumerate(value):
        at = f"{path}[{i}]"
        if not isinstance(col, dict):
            causes.append(field_invalid(at, col, "must be an object"))
            continue
        name = meta.string_field(col, "name", at, causes)
        if not name:
            causes.append(field_required(f"{at}.name"))
        type_ = meta.string_field(col, "type", at, causes)
        if not type_:
            causes.append(field_required(f"{at}.type",
                                         "must be one of " + ",".join(PRINTER_COLUMN_TYPES)))
        elif type_ not in PRINTER_COLUMN_TYPES:
            causes.append(field_not_supported(f"{at}.type", type_, PRINTER_COLUMN_TYPES))
        fmt = meta.string_field(col, "format", at, causes)
        if fmt and fmt not in PRINTER_COLUMN_FORMATS:
            causes.append(field_not_supported(f"{at}.format", fmt, PRINTER_COLUMN_FORMATS))
        json_path = meta.string_field(col, "jsonPath", at, causes)
        if not json_path:
            causes.append(field_required(f"{at}.jsonPath"))
        elif not json_path.startswith("."):
            causes.append(field_invalid(f"{at}.jsonPath", json_path,
                                        "must be a simple json path starting with ."))
        priority = col.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            causes.append(field_invalid(f"{at}.priority", priority, "must be an integer"))
            priority = 0
        columns.append(PrinterColumn(
            name=name, type=type_, json_path=json_path,
            description=meta.string_field(col, "description", at, causes),
            priority=priority, format=fmt,
        ))
    return columns


def _selectable_fields(value: object, schema: object, path: str,
                       causes: list[Cause]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        causes.append(field_invalid(path, value, "must be a list of selectable fields"))
        return []
    paths: list[str] = []
    for i, item in enumerate(value):
        at = f"{path}[{i}].jsonPath"
        json_path = item.get("jsonPath") if isinstance(item, dict) else None
        if not json_path:
            causes.append(field_required(at))
            continue
        if not isinstance(json_path, str):
            causes.append(field_invalid(at, json_path, "must be a string"))
            continue
        why = _selectable_problem(json_path, schema)
        if why:
            causes.append(field_invalid(at, json_path, why))
            continue
        if json_path in paths:
            causes.append(field_duplicate(at, json_path))
            continue
        paths.append(json_path)
    if len(value) > MAX_SELECTABLE_FIELDS:
        causes.append(field_too_many(path, len(value), MAX_SELECTABLE_FIELDS))
    return paths


def _selectable_problem(json_path: str, schema: object) -> str:
    """Why a selectable field's jsonPath is unusable: it must name, in dot notation, a
    string, integer or boolean field of the schema."""
    if not json_path.startswith(".") or "[" in json_path or json_path == ".":
        return "is an invalid path: must be a simple json path in dot notation starting with ."
    node: Any = schema
    for key in json_path[1:].split("."):
        props = node.get("properties") if isinstance(node, dict) else None
        if isinstance(props, dict) and key in props:
            node = props[key]
        elif isinstance(node, dict) and isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return "is an invalid path: does not refer to a valid field"
    if not isinstance(node, dict) or node.get("type") not in ("string", "integer", "boolean"):
        return ("must point to a field of type string, boolean or integer. Enum string fields "
                "and strings with formats are allowed.")
    return ""


def _scale(value: object, at: str, causes: list[Cause]) -> ScaleSubresource | None:
    """`subresources.scale`, checked as ValidateCustomResourceDefinitionSubresources does."""
    if value is None:
        return None
    scale = _mapping(value, f"{at}.scale", causes)
    paths: dict[str, str] = {}
    for key, under in (("specReplicasPath", (".spec.",)), ("statusReplicasPath", (".status.",)),
                       ("labelSelectorPath", (".spec.", ".status."))):
        where = f"{at}.scale.{key}"
        json_path = meta.string_field(scale, key, f"{at}.scale", causes)
        paths[key] = json_path
        if not json_path:
            if key != "labelSelectorPath":
                causes.append(field_required(where))
            continue
        if not json_path.startswith("."):
            causes.append(field_invalid(where, json_path,
                                        "must be a simple json path starting with ."))
        elif not json_path.startswith(under):
            causes.append(field_invalid(
                where, json_path, "should be a json path under "
                + (" or ".join(u.rstrip(".") for u in under) if len(under) == 1
                   else "either .spec or .status")))
    return ScaleSubresource(paths["specReplicasPath"], paths["statusReplicasPath"],
                            paths["labelSelectorPath"])


def _conversion(value: object, causes: list[Cause]) -> Conversion:
    """`spec.conversion`, checked as validateCustomResourceConversion does (field paths as
    apiextensions.k8s.io/v1 spells them)."""
    path = "spec.conversion"
    conversion = _mapping(value, path, causes, required=False)
    strategy = conversion.get("strategy", "None")
    if strategy not in CONVERSION_STRATEGIES:
        causes.append(field_not_supported(f"{path}.strategy", strategy, CONVERSION_STRATEGIES))
        return Conversion()
    webhook = _mapping(conversion.get("webhook"), f"{path}.webhook", causes, required=False)
    if strategy != "Webhook":
        if webhook:
            causes.append(field_forbidden(f"{path}.webhook",
                                          "should not be set when strategy is not set to Webhook"))
        return Conversion()
    if not webhook:
        causes.append(field_required(f"{path}.webhook", "required when strategy is set to Webhook"))
        return Conversion()
    client = _webhook_client_config(webhook.get("clientConfig"), f"{path}.webhook.clientConfig",
                                    causes)
    versions = _review_versions(webhook.get("conversionReviewVersions"),
                                f"{path}.webhook.conversionReviewVersions", causes)
    return Conversion("Webhook", client, tuple(versions))


def _webhook_client_config(value: object, path: str, causes: list[Cause]) -> WebhookClientConfig:
    config = _mapping(value, path, causes)
    url = meta.string_field(config, "url", path, causes)
    service_raw = config.get("service")
    service: ServiceReference | None = None
    if bool(url) == (service_raw is not None):
        causes.append(field_required(path, "exactly one of url or service is required"))
    elif url:
        causes.extend(_url_problems(url, f"{path}.url"))
    else:
        service = _service(service_raw, f"{path}.service", causes)
    ca_bundle = b""
    raw_ca = config.get("caBundle")
    if raw_ca is not None:
        ca_bundle = _ca_bundle(raw_ca, f"{path}.caBundle", causes)
    return WebhookClientConfig(url, service, ca_bundle)


_FORM = "; desired format: https://host[/path]"


def _url_problems(url: str, path: str) -> list[Cause]:
    """ValidateWebhookURL with https forced."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return [field_required(path, f"url must be a valid URL: {exc}{_FORM}")]
    problems = []
    if parts.scheme != "https":
        problems.append(field_invalid(path, parts.scheme,
                                      f"'https' is the only allowed URL scheme{_FORM}"))
    if not parts.netloc:
        problems.append(field_invalid(path, parts.netloc, f"host must be specified{_FORM}"))
    if "@" in parts.netloc:
        problems.append(field_invalid(path, parts.netloc.rpartition("@")[0],
                                      "user information is not permitted in the URL"))
    if parts.fragment:
        problems.append(field_invalid(path, parts.fragment,
                                      "fragments are not permitted in the URL"))
    if parts.query:
        problems.append(field_invalid(path, parts.query,
                                      "query parameters are not permitted in the URL"))
    return problems


def _service(value: object, path: str, causes: list[Cause]) -> ServiceReference | None:
    """ValidateWebhookService."""
    service = _mapping(value, path, causes)
    name = meta.string_field(service, "name", path, causes)
    namespace = meta.string_field(service, "namespace", path, causes)
    if not name:
        causes.append(field_required(f"{path}.name"))
    if not namespace:
        causes.append(field_required(f"{path}.namespace"))
    port = service.get("port", 443)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        causes.append(field_invalid(f"{path}.port", port,
                                    "port is not valid: must be between 1 and 65535, inclusive"))
        port = 443
    url_path = meta.string_field(service, "path", path, causes)
    if url_path not in ("", "/"):
        if not url_path.startswith("/"):
            causes.append(field_invalid(f"{path}.path", url_path, "must start with a '/'"))
        steps = url_path[1:].removesuffix("/").split("/")
        for i, step in enumerate(steps):
            if not step:
                causes.append(field_invalid(f"{path}.path", url_path,
                                            f"segment[{i}] may not be empty"))
                continue
            for problem in meta.is_dns1123_subdomain(step):
                causes.append(field_invalid(f"{path}.path", url_path,
                                            f"segment[{i}]: {problem}"))
    if not name or not namespace:
        return None
    return ServiceReference(namespace, name, url_path, port)


def _ca_bundle(value: object, path: str, causes: list[Cause]) -> bytes:
    """caBundle: base64 of PEM certificates (as every []byte field of a manifest)."""
    if not isinstance(value, str):
        causes.append(field_invalid(path, value, "must be a base64-encoded string"))
        return b""
    try:
        pem = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        causes.append(field_invalid(path, value, "illegal base64 data"))
        return b""
    if not pem.strip():
        return b""  # as kube: a whitespace-only bundle is no bundle
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        causes.append(field_invalid(path, value, "unable to load root certificates: unable to "
                                                 "parse bytes as PEM block"))
        return b""
    return pem


def _review_versions(value: object, path: str, causes: list[Cause]) -> list[str]:
    """validateConversionReviewVersions."""
    if value is None or value == []:
        causes.append(field_required(path))
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        causes.append(field_invalid(path, value, "must be a list of strings"))
        return []
    seen: set[str] = set()
    for i, version in enumerate(value):
        if version in seen:
            causes.append(field_invalid(f"{path}[{i}]", version, "duplicate version"))
            continue
        seen.add(version)
        for problem in meta.is_dns1035_label(version):
            causes.append(field_invalid(f"{path}[{i}]", version, problem))
    if not seen & set(CONVERSION_REVIEW_VERSIONS):
        causes.append(field_invalid(path, value, "must include at least one of "
                                    + ", ".join(CONVERSION_REVIEW_VERSIONS)))
    return list(dict.fromkeys(value))
