"""`kext create resource`: a new CustomResourceDefinition in a kext project, registered in its
server.yaml.

The API group is `<group>.<domain>` with the domain from the project's PROJECT file, as
apiserver-boot builds it, or the group as given when it contains a dot. Names are checked as
kube-apiserver checks a CRD's. server.yaml is edited as text, so its comments and key order
stay; the edit is checked by parsing the result before anything is written.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kext.api import meta
from kext.api.resource import CRD_API_VERSION, HOOKS_ANNOTATION, parse_crd
from kext.scaffold.files import ScaffoldError, render, replace_text, write_new
from kext.scaffold.project import EXIT_USAGE, PROJECT_FILE, read_domain

SERVER_CONFIG = "server.yaml"
RESOURCES_DIR = "resources"
SCOPES = ("Namespaced", "Cluster")


@dataclass(frozen=True)
class NewResource:
    """What `kext create resource` was asked for, with the group completed."""

    group: str
    version: str
    kind: str
    plural: str
    scope: str = "Namespaced"
    status: bool = False
    scale: bool = False  # implies status: the scale subresource reads .status.replicas
    hooks: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def hooks_module(self) -> str:
        return f"{self.singular.replace('-', '_')}_hooks"

    @property
    def hooks_function(self) -> str:
        return self.singular.replace("-", "_")


def guess_plural(kind: str) -> str:
    """The lower-case English plural of a kind: Policy -> policies, Gateway -> gateways,
    Box -> boxes (kube's own guess turns every trailing y into ies)."""
    singular = kind.lower()
    if re.search(r"(s|x|z|ch|sh)$", singular):
        return singular + "es"
    if re.search(r"[^aeiou]y$", singular):
        return singular[:-1] + "ies"
    return singular + "s"


def full_group(group: str, root: Path) -> str:
    """group completed with the project's domain, unless it already holds a dot."""
    if "." in group:
        return group
    domain = read_domain(root)
    if domain is None:
        raise ScaffoldError([
            f"--group {group!r}: no domain to complete it with: {root / PROJECT_FILE} is "
            f"missing or has no domain (run `kext create resource` in a directory made by "
            f"`kext init`, or give the whole group, e.g. {group}.example.com)"
        ])
    return f"{group}.{domain}"


def name_problems(resource: NewResource) -> list[str]:
    """Why kube-apiserver would refuse these names in a CRD, one line per flag."""
    problems = []
    for problem in meta.is_dns1123_subdomain(resource.group):
        problems.append(f"--group {resource.group!r}: {problem}")
    for problem in meta.is_dns1035_label(resource.version):
        problems.append(f"--version {resource.version!r}: {problem}")
    for problem in meta.is_dns1035_label(resource.kind.lower()):
        problems.append(f"--kind {resource.kind!r}: may have mixed case, but should otherwise "
                        f"match: {problem}")
    for problem in meta.is_dns1035_label(resource.plural):
        problems.append(f"--plural {resource.plural!r}: {problem}")
    if resource.scope not in SCOPES:
        problems.append(f"--scope {resource.scope!r}: must be Namespaced or Cluster")
    return problems


def manifest(resource: NewResource) -> dict[str, Any]:
    """The starter CustomResourceDefinition: a schema with one example spec field, printer
    columns, and the status and scale subresources when asked for."""
    has_status = resource.status or resource.scale
    kind = resource.kind
    spec_properties: dict[str, Any] = {
        "summary": {"type": "string", "maxLength": 256,
                    "description": f"What this {kind} is for: an example field to replace "
                                   f"with your own."},
    }
    columns: list[dict[str, Any]] = [
        {"name": "Summary", "type": "string", "jsonPath": ".spec.summary"},
    ]
    properties: dict[str, Any] = {
        "spec": {"type": "object", "description": f"The desired state of the {kind}.",
                 "properties": spec_properties},
    }
    subresources: dict[str, Any] = {}
    if resource.scale:
        spec_properties["replicas"] = {
            "type": "integer", "format": "int32", "minimum": 0, "default": 1,
            "description": f"How many replicas the {kind} runs (kubectl scale sets it).",
        }
        columns.append({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"})
    if has_status:
        status_properties: dict[str, Any] = {
            "phase": {"type": "string", "description": f"Where the {kind} is in its life."},
            "observedGeneration": {"type": "integer", "format": "int64",
                                   "description": "The metadata.generation this status "
                                                  "describes."},
        }
        if resource.scale:
            status_properties["replicas"] = {
                "type": "integer", "format": "int32", "minimum": 0,
                "description": "How many replicas run.",
            }
            status_properties["selector"] = {
                "type": "string",
                "description": "The label selector of the replicas, for autoscalers.",
            }
        properties["status"] = {"type": "object", "description": f"The observed state of "
                                f"the {kind}.", "properties": status_properties}
        subresources["status"] = {}
        columns.append({"name": "Phase", "type": "string", "jsonPath": ".status.phase"})
    if resource.scale:
        subresources["scale"] = {"specReplicasPath": ".spec.replicas",
                                 "statusReplicasPath": ".status.replicas",
                                 "labelSelectorPath": ".status.selector"}
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})

    version: dict[str, Any] = {
        "name": resource.version, "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object",
                                       "description": f"A {kind}.",
                                       "properties": properties}},
    }
    if subresources:
        version["subresources"] = subresources
    version["additionalPrinterColumns"] = columns
    metadata: dict[str, Any] = {"name": resource.name}
    if resource.hooks:
        module, function = resource.hooks_module, resource.hooks_function
        metadata["annotations"] = {HOOKS_ANNOTATION: json.dumps({
            "defaulting": [f"{module}:default_{function}"],
            "validation": [f"{module}:validate_{function}"],
        })}
    return {
        "apiVersion": CRD_API_VERSION,
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": resource.group,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": resource.plural,
                      "singular": resource.singular},
            "scope": resource.scope,
            "versions": [version],
        },
    }


def manifest_text(resource: NewResource) -> str:
    """The starter CRD as a YAML file with a comment on what to do next."""
    header = (f"# The {resource.kind} resource, added by `kext create resource`: edit its schema "
              f"and printer\n# columns, then run `kext check --config {SERVER_CONFIG}`.\n")
    if resource.hooks:
        header += f"# Its Python hooks are in {resource.hooks_module}.py.\n"
    body = yaml.dump(manifest(resource), Dumper=_IndentedDumper, sort_keys=False, width=100)
    return header + body


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as kext's own manifests are written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


# -- server.yaml, edited as text

_RESOURCES_KEY = re.compile(r"resources[ \t]*:(?P<rest>[^\r\n]*)")
_COMMENT = re.compile(r"(^|[ \t])#")


def _split_comment(rest: str) -> tuple[str, str]:
    """A YAML line's value and its trailing comment (with the blanks before it)."""
    found = _COMMENT.search(rest)
    if found is None:
        return rest.strip(), ""
    start = found.start() if found.group(1) == "" else found.start() + 1
    value = rest[:start]
    return value.strip(), rest[len(value.rstrip()):]


def register_resource(text: str, file: str, source: str = SERVER_CONFIG) -> str:
    """text (a server.yaml) with `- file: <file>` appended to its top-level `resources:` list,
    every other line unchanged. Raises ScaffoldError when the list is written in a way this
    edit cannot extend safely."""
    before = _parse(text, source)
    entry = f"- file: {file}"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    at = next((i for i, line in enumerate(lines) if _RESOURCES_KEY.fullmatch(line.rstrip("\r\n"))),
              None)
    if at is None:
        lines.append(f"resources:\n  {entry}\n")
    else:
        match = _RESOURCES_KEY.fullmatch(lines[at].rstrip("\r\n"))
        assert match is not None
        value, comment = _split_comment(match["rest"])
        if value == "":
            last, indent = at, None
            for i in range(at + 1, len(lines)):
                stripped = lines[i].strip()
                if not stripped or stripped.startswith("#"):
                    continue
                column = len(lines[i]) - len(lines[i].lstrip(" "))
                if column == 0 and not (stripped == "-" or stripped.startswith("- ")):
                    break
                if indent is None and stripped.startswith("-"):
                    indent = lines[i][:column]
                last = i
            lines.insert(last + 1, f"{'  ' if indent is None else indent}{entry}\n")
        elif value == "[]":
            # Blank out the [] so a trailing comment keeps its column.
            lines[at] = f"resources:{match['rest'].replace('[]', '  ', 1)}".rstrip() + "\n"
            lines.insert(at + 1, f"  {entry}\n")
        elif value.startswith("[") and value.endswith("]") and value[1:-1].strip():
            extended = f"[{value[1:-1].rstrip()}, {{file: {file}}}]"
            lines[at] = f"resources: {extended}{comment}\n"
        else:
            raise ScaffoldError([f"{source}: cannot add `{entry}` to its resources list as "
                                 f"written; add it by hand"])
    new_text = "".join(lines)
    after = _parse(new_text, source)
    expected = {**before, "resources": [*(before.get("resources") or []), {"file": file}]}
    if after != expected:
        raise ScaffoldError([f"{source}: cannot add `{entry}` to its resources list safely; "
                             f"add it by hand"])
    return new_text


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ScaffoldError([f"{source}: not valid YAML: {' '.join(str(error).split())}"]
                            ) from None
    if document is None:
        return {}
    resources = document.get("resources") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(resources or [], list):
        raise ScaffoldError([f"{source}: expected a ServerConfig mapping with a resources list"])
    return document


def _declared(root: Path, config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, CRD manifest) for every manifest the configuration declares and that can be
    read; what cannot is `kext check`'s to report."""
    found: list[tuple[str, dict[str, Any]]] = []
    for item in config.get("resources") or []:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("file"), str):
            try:
                documents = list(yaml.safe_load_all((root / item["file"]).read_text("utf-8")))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            found += [(item["file"], d) for d in documents if isinstance(d, dict)]
        elif isinstance(item.get("inline"), dict):
            found.append(("an inline resource", item["inline"]))
        elif "apiVersion" in item:
            found.append(("an inline resource", item))
    return found


def _conflicts(resource: NewResource, root: Path, config: dict[str, Any]) -> list[str]:
    problems = []
    for where, crd in _declared(root, config):
        spec = crd.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        names = spec.get("names")
        names = names if isinstance(names, dict) else {}
        if spec.get("group") != resource.group:
            continue
        if names.get("plural") == resource.plural:
            problems.append(f"{resource.name} is already declared by {where}")
        elif names.get("kind") == resource.kind:
            problems.append(f"kind {resource.kind} in group {resource.group} is already "
                            f"declared by {where}")
    return problems


@dataclass(frozen=True)
class Created:
    """What `kext create resource` wrote: (path relative to the project, what it is)."""

    files: list[tuple[str, str]]


def create_resource(root: Path, resource: NewResource) -> Created:
    """Add the resource to the project at root: resources/<plural>.yaml, with hooks a hooks
    module named in the CRD's kext.io/hooks annotation, and an entry in server.yaml. Writes
    nothing when a name is invalid, a file exists or the resource is declared already."""
    problems = name_problems(resource)
    if problems:
        raise ScaffoldError(problems)
    config_path = root / SERVER_CONFIG
    try:
        config_text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScaffoldError([f"{config_path}: no such file (run `kext create resource` in a "
                             f"directory made by `kext init`)"]) from None
    crd_file = f"{RESOURCES_DIR}/{resource.plural}.yaml"
    config = _parse(config_text, SERVER_CONFIG)
    problems = _conflicts(resource, root, config)
    if any(isinstance(i, dict) and i.get("file") == crd_file for i in config.get("resources")
           or []):
        problems.append(f"{SERVER_CONFIG}: already lists {crd_file}")
    module_file = f"{resource.hooks_module}.py"
    for path in [crd_file] + ([module_file] if resource.hooks else []):
        if (root / path).exists():
            problems.append(f"{path}: already exists; kext does not overwrite files")
    _, crd_problems = parse_crd(manifest(resource), crd_file)
    problems += crd_problems
    if problems:
        raise ScaffoldError(problems)
    new_config = register_resource(config_text, crd_file)

    files = {root / crd_file: manifest_text(resource)}
    subresources = [n for n, on in (("status", resource.status or resource.scale),
                                    ("scale", resource.scale)) if on]
    noun = "subresource" if len(subresources) == 1 else "subresources"
    shown = f"; {' and '.join(subresources)} {noun}" if subresources else ""
    written = [(crd_file, f"CustomResourceDefinition {resource.name} (kind {resource.kind}, "
                          f"version {resource.version}, {resource.scope}{shown})")]
    if resource.hooks:
        files[root / module_file] = render(
            "hooks.py.tmpl", kind_plural=f"{resource.kind} objects", crd_file=crd_file,
            module=resource.hooks_module, function=resource.hooks_function)
        written.append((module_file, "defaulting and validation hooks, named in the CRD's "
                                     f"{HOOKS_ANNOTATION} annotation"))
    write_new(files)
    replace_text(config_path, new_config)
    written.append((SERVER_CONFIG, f"resources now lists {crd_file}"))
    return Created(written)


def run_create_resource(group: str, version: str, kind: str, plural: str | None, scope: str,
                        status: bool, scale: bool, hooks: bool) -> int:
    """`kext create resource`, in the current directory: add the resource, say what was
    added and what to run next."""
    root = Path(".")
    try:
        resource = NewResource(
            group=full_group(group, root), version=version, kind=kind,
            plural=plural or guess_plural(kind), scope=scope, status=status, scale=scale,
            hooks=hooks,
        )
        created = create_resource(root, resource)
    except ScaffoldError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    for path, what in created.files:
        verb = "updated" if path == SERVER_CONFIG else "created"
        print(f"{verb} {path}: {what}")
    print(f"next: kext check --config {SERVER_CONFIG} && kext --config {SERVER_CONFIG}")
    print(f"then, in another terminal: kubectl --kubeconfig {_kubeconfig(root)} "
          f"get {resource.plural}")
    return 0


def _kubeconfig(root: Path) -> str:
    """Where kext writes its kubeconfig for this project's server.yaml."""
    try:
        config = yaml.safe_load((root / SERVER_CONFIG).read_text(encoding="utf-8"))
        cert_dir = config["serving"]["certDir"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        cert_dir = None
    return f"{cert_dir if isinstance(cert_dir, str) and cert_dir else 'var/certs'}/kubeconfig"
