"""The `kext` command: run the server, check a configuration, generate certificates.

    kext [--config FILE]                 run the server (default config/server.yaml)
    kext check [--config FILE]           validate the configuration and resource definitions
    kext certs --dir DIR [--hosts ...]   CA, serving cert, client CA, admin cert, kubeconfig
    kext certs --service NAME --namespace NS --dir DIR   CA and serving cert for a Service
    kext manifests --config FILE [--namespace NS] [--image IMG] [--ca-file CA.pem]
                                         the cluster objects for `kubectl apply -f -`
    kext init DIR --domain D             a new project: server.yaml, a resource, hooks, a test
    kext create resource --group G ...   add a resource to the project in this directory
    kext docs [--config FILE] --out DIR  an API reference: DIR/index.md and DIR/index.html
    kext doctor [--kubeconfig F]         why kext's APIService is not Available (exit 0 or 1)
    kext --version                       kext's version and the Kubernetes API level it follows

Every flag of every command is described by `kext [COMMAND ...] --help`.

Exit codes: 0 success, 2 bad configuration or usage (one line per problem on stderr).
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys
from collections.abc import Sequence
from typing import Any

from kext import __version__
from kext.config import LOG_LEVELS, ConfigError, ServerConfig, load_config, unimplemented

DEFAULT_CONFIG = "config/server.yaml"
EXIT_BAD_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kext` console script and of `python -m kext`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, (args.log_level or "info").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "certs" and args.service:
        return _service_certs(args.dir, args.service, args.namespace, args.cluster_domain)
    if args.command == "certs":
        return _certs(args.dir, args.hosts, args.server)
    if args.command == "manifests":
        from kext.manifests import command

        return command(args.config, args.namespace, args.image, args.ca_file, args.ca_key_file,
                       args.cert_dir)
    if args.command in ("init", "create", "docs"):
        return _scaffold(args)
    if args.command == "doctor":
        return _doctor(args)
    config = _load(args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    if args.command == "check":
        names = [definition.name for definition in config.resources]
        noun = "resource" if len(names) == 1 else "resources"
        listed = f" ({', '.join(names)})" if names else ""
        print(f"ok: {len(names)} {noun}{listed}{_admission_summary(config)}")
        return 0
    from kext.server.app import run  # imported here: `check` and `certs` need no server

    if args.log_level:  # the flag wins over logging.level
        config.logging.level = args.log_level
    return run(config)


def _admission_summary(config: ServerConfig) -> str:
    """`; admission: 1 hook, 2 webhooks (a.example.com, b.example.com), 1
    ValidatingAdmissionPolicy (small) with 2 bindings`, or ""."""
    admission = config.admission
    parts = []
    if admission.hooks:
        parts.append(f"{len(admission.hooks)} hook{'s' if len(admission.hooks) > 1 else ''}")
    if admission.webhooks:
        names = ", ".join(dict.fromkeys(w.name for w in admission.webhooks))
        parts.append(f"{len(admission.webhooks)} webhook"
                     f"{'s' if len(admission.webhooks) > 1 else ''} ({names})")
    if admission.policies:
        policies, bindings = len(admission.policies), len(admission.bindings)
        names = ", ".join(p.policy.name for p in admission.policies)
        parts.append(f"{policies} ValidatingAdmissionPolic{'ies' if policies > 1 else 'y'} "
                     f"({names}) with {bindings} binding{'s' if bindings != 1 else ''}")
    return f"; admission: {', '.join(parts)}" if parts else ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kext",
        description="A Kubernetes extension (aggregated) API server. "
        "Without a command, runs the server.",
    )
    from kext.api.discovery import KUBE_VERSION

    parser.add_argument(
        "--version", action="version",
        version=f"kext {__version__} (serves the Kubernetes API as kube-apiserver "
        f"{KUBE_VERSION} does)",
        help="print kext's version and exit",
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the server configuration to run with (default {DEFAULT_CONFIG}; relative paths "
        "in it resolve against the current directory)",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS,
                        help="overrides logging.level of the configuration (default info)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate the configuration and resource definitions (exit 0 or 2)",
        description="Validate the configuration and its resource definitions. "
        "Prints `ok: ...` and exits 0, or prints one line per problem and exits 2.",
    )
    # SUPPRESS keeps `kext --config F check` working: the subcommand only sets it when given.
    check.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                       help=f"the configuration to check (default {DEFAULT_CONFIG})")
    certs = commands.add_parser(
        "certs",
        help="generate a CA, serving certificate, client CA, admin certificate and kubeconfig",
        description="Write ca.crt/ca.key (serving CA), apiserver.crt/apiserver.key, "
        "client-ca.crt/client-ca.key, admin.crt/admin.key (CN=kext-admin, O=system:masters) "
        "and a kubeconfig into DIR. Existing valid files are kept.",
    )
    certs.add_argument("--dir", required=True, help="where to write the files")
    certs.add_argument(
        "--hosts",
        action="extend",
        nargs="+",
        default=[],
        metavar="HOST",
        help="extra DNS names or IP addresses for the serving certificate "
        "(space- or comma-separated); localhost, 127.0.0.1 and ::1 are always included",
    )
    certs.add_argument(
        "--server",
        default="https://127.0.0.1:8443",
        metavar="URL",
        help="the server URL written into the kubeconfig (default https://127.0.0.1:8443)",
    )
    certs.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help="instead: ca.crt/ca.key and tls.crt/tls.key (the serving certificate of the "
        "Service NAME in --namespace, for NAME.NS.svc and NAME.NS.svc.cluster.local) in DIR",
    )
    certs.add_argument("--namespace", default="default", metavar="NS",
                       help="with --service: the Service's namespace (default default)")
    certs.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                       help="with --service: the cluster's DNS domain, for the "
                       "NAME.NS.svc.DOMAIN name (default cluster.local)")
    from kext.manifests import add_arguments

    add_arguments(commands.add_parser(
        "manifests",
        help="the cluster objects of a kext install, for `kubectl apply -f -`",
        description="Write the objects the helm chart (deploy/helm/kext) installs with its "
        "defaults, as one YAML stream: the resource definitions come from FILE (its other "
        "settings are for a local run; the cluster's server.yaml is the chart's). Notes and "
        "the files written go to stderr.",
    ))
    _scaffold_parsers(commands)
    doctor = commands.add_parser(
        "doctor",
        help="check kext's installation in a cluster, one line per check (exit 0 or 1)",
        description="Explain why an APIService of kext's is not Available: the APIService, "
        "its Service and endpoints, the caBundle against kext's serving certificate, the "
        "auth-delegation RBAC, discovery through kube-apiserver, clock skew.",
    )
    doctor.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="the server.yaml kext runs with (its API groups are checked)")
    doctor.add_argument("--kubeconfig", default="", metavar="FILE",
                        help="default $KUBECONFIG, ~/.kube/config, else in-cluster")
    doctor.add_argument("--context", default="", help="the kubeconfig context to use")
    doctor.add_argument("--namespace", default="", metavar="NS",
                        help="the namespace kext is installed in (default: the APIService's)")
    doctor.add_argument("--service-account", default="", metavar="NAME",
                        help="kext's ServiceAccount (default: read from its pods)")
    return parser


def _doctor(args: argparse.Namespace) -> int:
    from kext import doctor

    try:
        config = load_config(args.config)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_CONFIG
    return doctor.main(config, args.kubeconfig, args.context, args.namespace,
                       args.service_account)


def _service_certs(cert_dir: str, service: str, namespace: str, cluster_domain: str) -> int:
    from kext.certs import ensure_service_certs

    try:
        result = ensure_service_certs(cert_dir, service, namespace, cluster_domain=cluster_domain)
    except OSError as error:
        print(f"{cert_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for path, what in [
        (result.ca_file, "CA certificate (the APIService caBundle)"),
        (result.ca_key_file, "CA key"),
        (result.cert_file, f"serving certificate for {', '.join(result.hosts)}"),
        (result.key_file, "serving key"),
    ]:
        verb = "wrote" if path in result.written else "kept"
        print(f"{verb:5} {path}: {what}")
    print(f"caBundle: {base64.b64encode(result.ca.cert_pem).decode('ascii')}")
    return 0


def _scaffold_parsers(commands: Any) -> None:
    """`kext init`, `kext create resource` and `kext docs` (kext.scaffold, kext.docs)."""
    init = commands.add_parser(
        "init", help="write a new project: server.yaml, an example resource, hooks, a test",
        description="Write a new kext project into DIR: server.yaml (the embedded default), "
        "an example resource in the API group web.DOMAIN with Python hooks, a pytest test, a "
        "README and a PROJECT file. Existing files are never overwritten.",
    )
    init.add_argument("dir", metavar="DIR", help="the project directory (created if absent)")
    init.add_argument("--domain", required=True, metavar="D",
                      help="the domain of the project's API groups, e.g. example.com")
    create = commands.add_parser(
        "create", help="add to the project in this directory",
        description="Add to the kext project in the current directory (made by `kext init`).")
    what = create.add_subparsers(dest="what", metavar="WHAT", required=True)
    resource = what.add_parser(
        "resource", help="add a resource: resources/<plural>.yaml, registered in server.yaml",
        description="Add a CustomResourceDefinition for the API group G.<domain> (the domain "
        "from ./PROJECT; G as given when it contains a dot) as resources/<plural>.yaml and "
        "list it in ./server.yaml. Existing files are never overwritten.",
    )
    resource.add_argument("--group", required=True, metavar="G",
                          help="the API group: G.<domain>, or G itself when it contains a dot")
    resource.add_argument("--version", required=True, metavar="V",
                          help="the API version, e.g. v1alpha1")
    resource.add_argument("--kind", required=True, metavar="K",
                          help="the kind, CamelCase, e.g. Widget")
    resource.add_argument("--plural", metavar="P",
                          help="the resource name in URLs (default: the kind's English plural, "
                          "lower case)")
    resource.add_argument("--scope", default="Namespaced", choices=("Namespaced", "Cluster"),
                          help="whether objects live in a namespace (default Namespaced)")
    resource.add_argument("--status", action="store_true", help="add the status subresource")
    resource.add_argument("--scale", action="store_true",
                          help="add the scale subresource (and status, which it reads)")
    resource.add_argument("--hooks", action="store_true",
                          help="add a Python hooks module, named in the kext.io/hooks annotation")
    docs = commands.add_parser(
        "docs", help="write an API reference (Markdown and one HTML page)",
        description="Write DIR/index.md and DIR/index.html: every served group, version and "
        "kind of the configuration's resources, their fields, validation, printer columns "
        "and an example object.",
    )
    docs.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                      help=f"the configuration whose resources to document (default "
                      f"{DEFAULT_CONFIG})")
    docs.add_argument("--out", required=True, metavar="DIR",
                      help="where to write index.md and index.html (created if absent)")


def _scaffold(args: argparse.Namespace) -> int:
    if args.command == "init":
        from kext.scaffold import run_init

        return run_init(args.dir, args.domain)
    if args.command == "create":
        from kext.scaffold import run_create_resource

        return run_create_resource(args.group, args.version, args.kind, args.plural,
                                   args.scope, args.status, args.scale, args.hooks)
    from kext.docs import run_docs

    return run_docs(args.config, args.out)


def _load(path: str) -> ServerConfig | None:
    """The configuration at path, or None after printing its problems to stderr."""
    try:
        config = load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None
    problems = unimplemented(config)
    for problem in problems:
        print(problem, file=sys.stderr)
    return None if problems else config


def _certs(cert_dir: str, hosts: Sequence[str], server_url: str) -> int:
    from kext.certs import ensure_self_signed

    names = [name for item in hosts for name in item.split(",") if name.strip()]
    try:
        result = ensure_self_signed(cert_dir, names, server_url)
    except OSError as error:
        print(f"{cert_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    files = [
        (result.ca_file, "serving CA certificate (the APIService caBundle)"),
        (result.ca_key_file, "serving CA key"),
        (result.cert_file, "serving certificate"),
        (result.key_file, "serving key"),
        (result.client_ca_file, "client CA certificate (authentication.clientCAFile)"),
        (result.client_ca_key_file, "client CA key"),
        (result.admin_cert_file, "admin client certificate (CN=kext-admin, O=system:masters)"),
        (result.admin_key_file, "admin client key"),
        (result.kubeconfig, f"kubeconfig for {server_url}"),
    ]
    for path, what in files:
        verb = "wrote" if path in result.written else "kept"
        print(f"{verb:5} {path}: {what}")
    with open(result.ca_file, "rb") as f:
        print(f"caBundle: {base64.b64encode(f.read()).decode('ascii')}")
    return 0
