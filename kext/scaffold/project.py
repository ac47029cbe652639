"""`kext init DIR --domain D`: a new project that runs and tests as it is written.

The project holds the embedded default server.yaml (its paths relative to DIR, where kext is
run), an example Website resource in the API group `web.<D>` with Python hooks, a test that
starts it on its embedded etcd, a README and a PROJECT file recording the domain for
`kext create resource` (as apiserver-boot and kubebuilder record theirs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from kext.api import meta
from kext.scaffold.files import ScaffoldError, render, write_new

PROJECT_FILE = "PROJECT"
EXIT_USAGE = 2
EXAMPLE_GROUP = "web"  # the example resource's group, before the domain
EXAMPLE_PLURAL = "websites"


def domain_problems(domain: str) -> list[str]:
    """Why domain cannot suffix API groups (a DNS subdomain, as kube checks a group)."""
    problems = meta.is_dns1123_subdomain(domain)
    if not problems and len(f"{EXAMPLE_GROUP}.{domain}") > 253:
        problems.append("must be no more than 249 characters")
    return [f"--domain {domain!r}: {problem}" for problem in problems]


def init_project(directory: Path, domain: str) -> list[Path]:
    """Write a new project into directory (created if absent; files already there are never
    overwritten: then nothing is written). Returns the files written."""
    problems = domain_problems(domain)
    if directory.exists() and not directory.is_dir():
        problems.append(f"{directory}: exists and is not a directory")
    if problems:
        raise ScaffoldError(problems)
    group = f"{EXAMPLE_GROUP}.{domain}"
    values = {"project": directory.resolve().name, "domain": domain, "group": group,
              "plural": EXAMPLE_PLURAL}
    files = {
        directory / "server.yaml": render("server.yaml.tmpl", **values),
        directory / "resources" / f"{EXAMPLE_PLURAL}.yaml": render("websites.yaml.tmpl",
                                                                  **values),
        directory / "website_hooks.py": render("website_hooks.py.tmpl", **values),
        directory / "tests" / f"test_{EXAMPLE_PLURAL}.py": render("test_websites.py.tmpl",
                                                                 **values),
        directory / "README.md": render("README.md.tmpl", **values),
        directory / PROJECT_FILE: render("PROJECT.tmpl", **values),
        directory / ".gitignore": render("gitignore.tmpl", **values),
    }
    write_new(files)
    return list(files)


def read_domain(root: Path) -> str | None:
    """The domain recorded in root's PROJECT file, or None when there is none."""
    try:
        document: Any = yaml.safe_load((root / PROJECT_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    domain = document.get("domain") if isinstance(document, dict) else None
    return domain if isinstance(domain, str) and domain else None


def run_init(directory: str, domain: str) -> int:
    """`kext init`: write the project, say what was written and what to run next."""
    target = Path(directory)
    try:
        written = init_project(target, domain)
    except ScaffoldError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    for path in written:
        print(f"created {path}")
    where = f"cd {target} && " if target != Path(".") else ""
    print(f"next: {where}kext --config server.yaml")
    print(f"then, in another terminal in {target}: "
          f"kubectl --kubeconfig var/certs/kubeconfig get {EXAMPLE_PLURAL}")
    print(f"test: {where}python3 -m pytest -q")
    return 0
