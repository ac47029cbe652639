"""The `kext` command: run the server, check a configuration, generate certificates.

    kext [--config FILE]                 run the server (default config/server.yaml)
    kext check [--config FILE]           validate the configuration and resource definitions
    kext certs --dir DIR [--hosts ...]   CA, serving cert, client CA, admin cert, kubeconfig
    kext doctor [--kubeconfig F]         why kext's APIService is not Available (exit 0 or 1)

Exit codes: 0 success, 2 bad configuration or usage (one line per problem on stderr).
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys
from collections.abc import Sequence

from kext.config import ConfigError, ServerConfig, load_config, unimplemented

DEFAULT_CONFIG = "config/server.yaml"
EXIT_BAD_CONFIG = 2
LOG_LEVELS = ("debug", "info", "warning", "error")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kext` console script and of `python -m kext`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "certs":
        return _certs(args.dir, args.hosts, args.server)
    if args.command == "doctor":
        return _doctor(args)
    config = _load(args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    if args.command == "check":
        names = [definition.name for definition in config.resources]
        noun = "resource" if len(names) == 1 else "resources"
        listed = f" ({', '.join(names)})" if names else ""
        print(f"ok: {len(names)} {noun}{listed}")
        return 0
    from kext.server.app import run  # imported here: `check` and `certs` need no server

    return run(config)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kext",
        description="A Kubernetes extension (aggregated) API server. "
        "Without a command, runs the server.",
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the server configuration (default {DEFAULT_CONFIG})",
    )
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="default info")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate the configuration and resource definitions (exit 0 or 2)",
        description="Validate the configuration and its resource definitions. "
        "Prints `ok: ...` and exits 0, or prints one line per problem and exits 2.",
    )
    # SUPPRESS keeps `kext --config F check` working: the subcommand only sets it when given.
    check.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE")
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
